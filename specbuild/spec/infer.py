"""Shape inference over a spec's graphs, before any weight exists.

Walks each network in topological order, asking each node's shape rule (see
`shapes`) for its output shape and dtype, the sizes it infers (`in_features`...) and
its parameter count.  The inputs' dtypes are those the spec declares (float32 when it
declares none).  Blocks are inferred with the shapes and dtypes they are called with,
`repeat:` chains the rule, `share:` reuses the shared layer's arguments.  A mismatch
becomes a Problem at the node, naming the upstream node and both shapes (or dtypes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import registry
from ..errors import Problem
from .blocks import block_instance, with_values
from .graph import Graph, Node
from .bounds import check_positions
from .ties import check_ties
from ..shapes.rearrange import inside
from ..shapes.core import FLOAT32, DtypeError, Inferred, ShapeError, format_shape, has_rule, infer, infer_on_meta

BATCH = "N"


@dataclass
class NodeShape(Inferred):
    """A node's inferred output, arguments, parameters and dtype; blocks keep their inner nodes."""
    inner: dict = field(default_factory=dict, compare=False, repr=False)   # node -> NodeShape (blocks, repeats)
    type: str | None = field(default=None, compare=False, repr=False)     # the layer type (a copy's, an item's)
    graph: object = field(default=None, compare=False, repr=False)        # a block's graph, as this use has it


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
        dtypes = {n: i.dtype_name for n, i in graph.inputs.items()}
        try:
            checked.shapes[name] = infer_graph(graph, env, checked, problems, dtypes=dtypes)
        except _TooBig:
            problems.append(checked.spec.problem(
                f"the model expands to more than {MAX_EXPANDED_NODES:,} layers (blocks used inside blocks)",
                graph.path or ("layers",), hint="a spec this large is almost surely a mistake in `blocks:`"))
            break
    return problems


def infer_graph(graph: Graph, env: dict, checked, problems: list[Problem], depth: int = 0,
                dtypes: dict | None = None) -> dict:
    """Each node's NodeShape; `env` holds the inputs' shapes and `dtypes` their dtypes."""
    results: dict[str, NodeShape] = {}
    env, dtypes = dict(env), dict(dtypes or {})
    for name in graph.order:
        node = graph.nodes.get(name)
        if node is None:
            continue
        checked.expanded_nodes += node.repeat
        if checked.expanded_nodes > MAX_EXPANDED_NODES:
            raise _TooBig()
        if any(ref not in env for ref in node.reads()):
            continue   # an upstream node failed and was reported already
        try:
            forward = {key: Named(env[value], dtypes.get(value, FLOAT32)) if isinstance(value, str) else value
                       for key, value in node.forward.items()}
            ins = In([env[r] for r in node.inputs], [dtypes.get(r, FLOAT32) for r in node.inputs], forward)
            results[name] = infer_node(node, graph, ins, results, checked, problems, depth)
            env[name], dtypes[name] = results[name].output, results[name].dtype
        except _Failed:
            continue
    check_ties(graph, results, checked.spec, problems)
    check_positions(graph, results, checked.spec, problems)
    return results


@dataclass
class In:
    """A node's inputs: their shapes and dtypes, and its `forward:` arguments (a constant, or
    the Named shape and dtype of the node it reads)."""
    shapes: list
    dtypes: list
    forward: dict = field(default_factory=dict)


@dataclass
class Named:
    shape: tuple
    dtype: str


def infer_node(node: Node, graph: Graph, ins: In, done: dict, checked, problems, depth) -> NodeShape:
    if node.share is not None:
        shared = done.get(node.share)
        if shared is None:
            raise _Failed()
        target = graph.nodes[node.share]
        if target.repeat == 1:
            result = _one(target.type, shared.args, ins, node, graph, checked, problems, depth)
            return NodeShape(result.output, shared.args, 0, {}, result.dtype, inner=result.inner)
        # a repeated layer is called as a whole: every copy, each with its own (inferred) sizes
        current, inner = ins, {}
        for copy in range(target.repeat):
            refs = [f"{node.share}.{copy - 1}"] if copy else None
            inner[str(copy)] = _one(target.type, shared.inner[str(copy)].args, current, node, graph,
                                    checked, problems, depth, refs)
            current = In([inner[str(copy)].output], [inner[str(copy)].dtype], ins.forward)
        return NodeShape(current.shapes[0], shared.args, 0, {}, current.dtypes[0], inner=inner)
    if node.repeat == 1 and not node.copies:
        return _one(node.type, node.args, ins, node, graph, checked, problems, depth)
    current, inner, total = ins, {}, 0
    for copy in range(node.repeat):
        refs = [f"{node.name}.{copy - 1}"] if copy else None   # copy k reads copy k-1, not `in:`
        copy_args = {**node.args, **node.copies[copy]} if node.copies else node.args
        inner[str(copy)] = result = _one(node.type, copy_args, current, node, graph, checked, problems, depth, refs)
        total += result.params
        current = In([result.output], [result.dtype], ins.forward)
    return NodeShape(current.shapes[0], result.args, total, {}, current.dtypes[0], inner=inner)


def _one(type_name, args, ins: In, node, graph, checked, problems, depth, refs=None) -> NodeShape:
    blocks = checked.graphs.blocks
    refs = node.inputs if refs is None else refs
    if type_name in blocks:
        if depth > 32:
            raise _Failed()
        block = block_instance(checked, type_name, args, node, problems)
        if block is None:
            raise _Failed()
        env, dtypes = dict(zip(block.inputs, ins.shapes)), dict(zip(block.inputs, ins.dtypes))
        before = len(problems)
        inner = infer_graph(block, env, checked, problems, depth + 1, dtypes)
        if len(problems) > before:
            problems.append(checked.spec.problem(f"block {type_name!r}{with_values(block, args)} does not fit its input "
                                                 + ", ".join(_shown(s, d) for s, d in zip(ins.shapes, ins.dtypes))
                                                 + _sources(refs, ins), node.path,
                                                 node=node.name, hint="see the block's own errors above"))
            raise _Failed()
        names = block.output_names()
        outs = [inner[n].output if n in inner else env.get(n) for n in names]
        out_dtypes = [inner[n].dtype if n in inner else dtypes.get(n, FLOAT32) for n in names]
        single = not isinstance(block.outputs, (list, dict))
        return NodeShape(outs[0] if single else outs, dict(args), sum(r.params for r in inner.values()), {},
                         out_dtypes[0] if single else out_dtypes, inner=inner, type=type_name, graph=block)
    if _is_sequence(type_name):
        return _sequence(registry.lookup(type_name), args, ins, node, graph, checked, problems, depth, refs)
    try:
        return dataclasses.replace(_rule(type_name, args, ins), type=type_name)
    except ShapeError as error:
        problems.append(_mismatch(error, type_name, node, refs, ins, graph, checked.spec))
        raise _Failed() from None


def _sequence(entry, args, ins: In, node, graph, checked, problems, depth, refs) -> NodeShape:
    """A Sequential's layers as a chain, each inferred as a layer of its own (a block, a type
    registered from Python, a torch layer); `when: false` leaves one out, and the others
    number on, as a conditional append does."""
    items = args.get(entry.operand)
    if not isinstance(items, list) or not items:
        problems.append(checked.spec.problem(f"{entry.name}.{entry.operand} must be a non-empty list of layers",
                                             node.path + (entry.operand,), node=node.name))
        raise _Failed()
    current, inner, total, previous = ins, {}, 0, None
    for i, item in enumerate(items):
        if item.get("when", True) is False:
            continue
        position = str(len(inner))
        item_args = {k: v for k, v in item.items() if k not in ("type", "when")}
        place = Node(node.name, item["type"], item_args, refs, node.path + (entry.operand, i))
        if item["type"] in checked.graphs.blocks or _is_sequence(item["type"]):
            result = _one(item["type"], item_args, current, place, graph, checked, problems, depth, refs)
        else:
            try:
                result = dataclasses.replace(_rule(item["type"], item_args, current), type=item["type"])
            except ShapeError as error:   # said as the Sequential's, like any nested layer's error
                key, at = entry.operand, f"{entry.operand}[{i}]"
                error = inside(error, f"{entry.name}.{at} ({item['type']})", f"{key}.{i}", at,
                               f"{key}[{previous[0]}] ({previous[1]})" if inner else None)
                problems.append(_mismatch(error, entry.name, node, refs, ins, graph, checked.spec))
                raise _Failed() from None
        previous = (i, item["type"])
        inner[position] = result
        total += result.params
        current = In([result.output], [result.dtype])
    filled = {**args, entry.operand: [{"type": r.type, **r.args} for r in inner.values()]}
    return NodeShape(current.shapes[0], filled, total, {}, current.dtypes[0], inner=inner, type=entry.name)


def _is_sequence(type_name) -> bool:
    entry = registry.lookup(type_name)
    return entry is not None and entry.call == "sequential"


def _by_position(entry, ins: In) -> tuple[list, list, dict]:
    """The inputs as the layer's forward takes them: `in:` first, then each `forward:` tensor at its
    parameter's place (None where nothing is given); and the `forward:` constants by name."""
    shapes, dtypes = list(ins.shapes), list(ins.dtypes)
    flags = {key: value for key, value in ins.forward.items() if not isinstance(value, Named)}
    for key, value in ins.forward.items():
        if isinstance(value, Named):
            at = entry.forward.index(key)
            shapes += [None] * (at + 1 - len(shapes))
            dtypes += [None] * (at + 1 - len(dtypes))
            shapes[at], dtypes[at] = value.shape, value.dtype
    return shapes, dtypes, flags


def _rule(type_name, args, ins: In) -> NodeShape:
    entry = registry.lookup(type_name)
    inputs, dtypes, flags = _by_position(entry, ins) if ins.forward else (ins.shapes, ins.dtypes, {})
    if flags or ins.forward and (entry.kind == "user" or not has_rule(type_name)):
        return _forward_rule(entry, type_name, args, inputs, dtypes, ins)
    if entry is not None and entry.kind == "user":
        if entry.shape_rule is not None:
            output = entry.shape_rule(dict(args), inputs)
            if isinstance(output, Inferred):
                return NodeShape(output.output, output.args, output.params, output.param_shapes, output.dtype)
            return _metered(entry, args, ins, output)
        found = infer_on_meta(entry.factory, args, inputs, dtypes)
    elif has_rule(type_name):
        found = infer(type_name, args, inputs, dtypes)
    else:   # a torch.nn layer no rule covers yet: ask torch on the meta device
        found = infer_on_meta(_torch_factory(entry), args, inputs, dtypes)
    return NodeShape(found.output, found.args, found.params, found.param_shapes, found.dtype)


def _forward_rule(entry, type_name, args, inputs, dtypes, ins: In) -> NodeShape:
    """A layer called with `forward:` arguments: a rule that reads them (MultiheadAttention's
    need_weights, attn_mask...), or else torch's answer on the meta device."""
    kwargs = {key: value for key, value in ins.forward.items() if not isinstance(value, Named)}
    if entry.kind != "user" and has_rule(type_name):
        found = infer(type_name, args, inputs, dtypes, forward=kwargs)
    else:
        factory = entry.factory if entry.kind == "user" else _torch_factory(entry)
        tensors = {key: (value.shape, value.dtype) for key, value in ins.forward.items() if isinstance(value, Named)}
        found = infer_on_meta(factory, args, ins.shapes, ins.dtypes, forward=kwargs, tensors=tensors)
    return NodeShape(found.output, found.args, found.params, found.param_shapes, found.dtype)


def _metered(entry, args, ins: In, output) -> NodeShape:
    """A user rule gave only the shape: count the parameters (and find the dtype) on the meta device."""
    found = infer_on_meta(entry.factory, args, ins.shapes, ins.dtypes)
    return NodeShape(output, found.args, found.params, found.param_shapes, found.dtype)


def _torch_factory(entry):
    from ..resolve import resolve_target
    return resolve_target(entry.target)


def _mismatch(error: ShapeError, type_name, node: Node, refs: list, ins: In, graph: Graph, spec) -> Problem:
    if isinstance(error, DtypeError):
        return _dtype_problem(error, type_name, node, refs, graph, spec)
    return spec.problem(error.message + _sources(refs, ins), node.path + _arg_path(error.arg, node.args),
                        node=node.name, hint=error.hint)


def _dtype_problem(error: DtypeError, type_name, node: Node, refs: list, graph: Graph, spec) -> Problem:
    """"Linear 'fc1' needs float32 input, but input 'ids' is int64", with a hint to declare it."""
    where = f"{type_name} {node.name!r}" + (f": its {error.within} ({error.who})" if error.within else "")
    ref = refs[error.index] if error.index < len(refs) else None
    declared = graph.inputs.get(ref) if not error.via and not graph.is_block else None
    if error.via:
        source = f"its {error.via} gives"
    elif ref in graph.inputs:
        source = f"{'block input' if graph.is_block else 'input'} {ref!r} is"
    else:
        source = f"{ref!r} gives"
    hint = _declare(error) if declared is not None else error.hint
    return spec.problem(f"{where} needs {error.want}, but {source} {error.got}", node.path, node=node.name,
                        hint=hint)


def _declare(error: DtypeError) -> str:
    """How to declare a spec input so that the layer takes it."""
    if "integer" in error.want:
        return "declare it `dtype: long` (token ids)"
    if "mask" in error.want or "condition" in error.want:
        return "declare it float32 or bool" if "float" in error.want else "declare it `dtype: bool`"
    if error.want.startswith("float32") and error.got in ("int64", "int32"):
        return "declare it float32, or feed it through an Embedding"
    return "declare it float32" if "float" in error.want else error.hint


def _shown(shape, dtype) -> str:
    return format_shape(shape) + ("" if dtype == FLOAT32 or not isinstance(dtype, str) else f" {dtype}")


def _sources(refs: list, ins: In) -> str:
    sources = ", ".join(f"{ref} gives {_shown(shape, dtype)}"
                        for ref, shape, dtype in zip(refs, ins.shapes, ins.dtypes))
    return f" (input: {sources})" if sources else ""


def _arg_path(arg, args: dict) -> tuple:
    """The spec path of the argument a rule blames: "in_features", or a nested layer's
    "encoder_layer.nhead" / "layers.2.in_features" (so the line is the nested layer's)."""
    if not arg or arg.split(".")[0] not in args:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in arg.split("."))


def total_params(shapes: dict) -> int:
    return sum(r.params for r in shapes.values())
