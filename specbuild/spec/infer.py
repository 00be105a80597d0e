"""Shape inference over a spec's graphs, before any weight exists.

Walks each network in topological order, asking each node's shape rule (see
`shapes`) for its output shape, the sizes it infers (`in_features`...) and its
parameter count.  Blocks are inferred with the shapes they are called with,
`repeat:` chains the rule, `share:` reuses the shared layer's arguments.  A
mismatch becomes a Problem at the node, naming the upstream node and both shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import registry
from ..errors import Problem
from .graph import Graph, Node
from ..shapes.core import Inferred, ShapeError, format_shape, has_rule, infer, infer_on_meta

BATCH = "N"


@dataclass
class NodeShape(Inferred):
    """A node's inferred output, arguments and parameters; blocks keep their inner nodes."""
    inner: dict = field(default_factory=dict, compare=False, repr=False)   # node -> NodeShape (blocks, repeats)


class _Failed(Exception):
    pass


def input_shape(spec_input) -> tuple:
    return (BATCH,) + tuple(spec_input.shape or ())


# Blocks inside blocks multiply: 12 blocks each using the next 4 times are 4**12 layers in a 1 KB
# spec.  Inference visits every use, so the total it will visit is bounded.
MAX_EXPANDED_NODES = 200_000


class _TooBig(Exception):
    pass


def infer_shapes(checked) -> list[Problem]:
    """Fill checked.shapes[network][node] and return the problems found."""
    problems: list[Problem] = []
    checked.expanded_nodes = 0
    for name, graph in checked.graphs.networks.items():
        env = {n: input_shape(i) for n, i in graph.inputs.items()}
        try:
            checked.shapes[name] = infer_graph(graph, env, checked, problems)
        except _TooBig:
            problems.append(checked.spec.problem(
                f"the model expands to more than {MAX_EXPANDED_NODES:,} layers (blocks used inside blocks)",
                graph.path or ("layers",), hint="a spec this large is almost surely a mistake in `blocks:`"))
            break
    return problems


def infer_graph(graph: Graph, env: dict, checked, problems: list[Problem], depth: int = 0) -> dict:
    results: dict[str, NodeShape] = {}
    env = dict(env)
    for name in graph.order:
        node = graph.nodes.get(name)
        if node is None:
            continue
        checked.expanded_nodes += node.repeat
        if checked.expanded_nodes > MAX_EXPANDED_NODES:
            raise _TooBig()
        if any(ref not in env for ref in node.inputs):
            continue   # an upstream node failed and was reported already
        try:
            results[name] = infer_node(node, graph, [env[r] for r in node.inputs], results, checked, problems, depth)
            env[name] = results[name].output
        except _Failed:
            continue
    return results


def infer_node(node: Node, graph: Graph, inputs: list, done: dict, checked, problems, depth) -> NodeShape:
    if node.share is not None:
        shared = done.get(node.share)
        if shared is None:
            raise _Failed()
        target = graph.nodes[node.share]
        if target.repeat == 1:
            result = _one(target.type, shared.args, inputs, node, graph, checked, problems, depth)
            return NodeShape(result.output, shared.args, 0, {}, result.inner)
        # a repeated layer is called as a whole: every copy, each with its own (inferred) sizes
        current, inner = inputs, {}
        for copy in range(target.repeat):
            refs = [f"{node.share}.{copy - 1}"] if copy else None
            inner[str(copy)] = _one(target.type, shared.inner[str(copy)].args, current, node, graph,
                                    checked, problems, depth, refs)
            current = [inner[str(copy)].output]
        return NodeShape(current[0], shared.args, 0, {}, inner)
    current, inner, total, args = inputs, {}, 0, node.args
    for copy in range(node.repeat):
        refs = [f"{node.name}.{copy - 1}"] if copy else None   # copy k reads copy k-1, not `in:`
        result = _one(node.type, node.args, current, node, graph, checked, problems, depth, refs)
        if node.repeat > 1:
            inner[str(copy)] = result
        else:
            inner = result.inner
        total += result.params
        args = result.args
        current = [result.output]
    return NodeShape(current[0], args, total, {}, inner)


def _one(type_name, args, inputs, node, graph, checked, problems, depth, refs=None) -> NodeShape:
    blocks = checked.graphs.blocks
    refs = node.inputs if refs is None else refs
    if type_name in blocks:
        if depth > 32:
            raise _Failed()
        block = blocks[type_name]
        env = dict(zip(block.inputs, inputs))
        before = len(problems)
        inner = infer_graph(block, env, checked, problems, depth + 1)
        if len(problems) > before:
            problems.append(checked.spec.problem(f"block {type_name!r} does not fit its input "
                                                 + ", ".join(format_shape(s) for s in inputs)
                                                 + _sources(refs, inputs), node.path,
                                                 node=node.name, hint="see the block's own errors above"))
            raise _Failed()
        outs = [inner[n].output if n in inner else env.get(n) for n in block.output_names()]
        output = outs[0] if not isinstance(block.outputs, (list, dict)) else outs
        return NodeShape(output, dict(args), sum(r.params for r in inner.values()), {}, inner)
    try:
        return _rule(type_name, args, inputs)
    except ShapeError as error:
        problems.append(_mismatch(error, node, refs, inputs, checked.spec))
        raise _Failed() from None


def _rule(type_name, args, inputs) -> NodeShape:
    entry = registry.lookup(type_name)
    if entry is not None and entry.kind == "user":
        if entry.shape_rule is not None:
            output = entry.shape_rule(dict(args), inputs)
            if isinstance(output, Inferred):
                return NodeShape(output.output, output.args, output.params, output.param_shapes)
            return _metered(entry, args, inputs, output)
        found = infer_on_meta(entry.factory, args, inputs)
    elif has_rule(type_name):
        found = infer(type_name, args, inputs)
    else:   # a torch.nn layer no rule covers yet: ask torch on the meta device
        found = infer_on_meta(_torch_factory(entry), args, inputs)
    return NodeShape(found.output, found.args, found.params, found.param_shapes)


def _metered(entry, args, inputs, output) -> NodeShape:
    """A user rule gave only the shape: count the parameters on the meta device."""
    found = infer_on_meta(entry.factory, args, inputs)
    return NodeShape(output, found.args, found.params, found.param_shapes)


def _torch_factory(entry):
    from ..resolve import resolve_target
    return resolve_target(entry.target)


def _mismatch(error: ShapeError, node: Node, refs: list, inputs: list, spec) -> Problem:
    return spec.problem(error.message + _sources(refs, inputs), node.path + _arg_path(error.arg, node.args),
                        node=node.name, hint=error.hint)


def _sources(refs: list, inputs: list) -> str:
    sources = ", ".join(f"{ref} gives {format_shape(shape)}" for ref, shape in zip(refs, inputs))
    return f" (input: {sources})" if sources else ""


def _arg_path(arg, args: dict) -> tuple:
    """The spec path of the argument a rule blames: "in_features", or a nested layer's
    "encoder_layer.nhead" / "layers.2.in_features" (so the line is the nested layer's)."""
    if not arg or arg.split(".")[0] not in args:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in arg.split("."))


def total_params(shapes: dict) -> int:
    return sum(r.params for r in shapes.values())
