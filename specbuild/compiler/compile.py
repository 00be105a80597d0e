"""Compile a checked spec into a torch.fx GraphModule.

Compile, don't interpret: each layer node becomes a submodule named after the
node (so `state_dict` keys match the hand-written module: `fc1.weight`), each
tensor function a direct call, and the forward is generated Python that costs
what a hand-written forward costs.  Blocks become child GraphModules, `repeat:`
an nn.Sequential of fresh copies, `share:` a second call of the same submodule.
"""
from __future__ import annotations

import dataclasses
import operator
import re
import warnings

import torch.fx as fx
from torch import nn

from .. import registry
from ..errors import SpecError, did_you_mean
from ..spec.graph import Graph, Node
from ..spec.infer import total_params
from ..resolve import resolve_target
from ..shapes.index import parse_index
from ..spec.validate import Checked, check

DEFAULT_MAX_PARAMS = 2_000_000_000
_VARIADIC = {"operator.add", "operator.mul"}      # folded pairwise: a + b + c


def build_model(spec, *, network: str | None = None, overrides: dict | None = None,
                max_params: int = DEFAULT_MAX_PARAMS, outputs=None) -> fx.GraphModule:
    """A GraphModule for a spec (path, YAML/JSON text, dict or Spec).

    A spec with several `networks` needs `network=` naming one.  Models over
    `max_params` parameters are refused before any weight is allocated.
    `outputs` (a node name, list or dict) replaces the declared outputs: the
    trainer uses it to return just the nodes its losses read (the logits); the
    weights and their names stay the same.
    """
    checked = spec if isinstance(spec, Checked) else check(spec, overrides=overrides)
    name = pick_network(checked, network)
    graph = checked.graphs.networks[name]
    shapes = checked.shapes[name]
    total = total_params(shapes)
    if total > max_params:
        raise SpecError(f"the model has {total:,} parameters, over the limit of {max_params:,}",
                        file=checked.spec.file, path=".".join(graph.path) or "layers",
                        hint="this would need about "
                             f"{total * 4 / 2**30:,.1f} GiB for float32 weights alone; shrink the layers, "
                             "or pass max_params= to build_model if you mean it")
    if outputs is not None:
        missing = [n for n in ([outputs] if isinstance(outputs, str) else list(
            outputs.values() if isinstance(outputs, dict) else outputs)) if n not in graph.nodes and n not in graph.inputs]
        if missing:
            raise SpecError(f"no node named {missing[0]!r} to output", file=checked.spec.file, path="outputs")
        graph = dataclasses.replace(graph, outputs=outputs)
    return _compile_graph(graph, shapes, checked, class_name=_class_name(name))


def build_models(spec, *, overrides: dict | None = None, max_params: int = DEFAULT_MAX_PARAMS) -> dict:
    """Every network of a spec, by name (the GAN's generator and discriminator)."""
    checked = check(spec, overrides=overrides)
    return {name: build_model(checked, network=name, max_params=max_params) for name in checked.graphs.networks}


def pick_network(checked: Checked, network: str | None) -> str:
    names = list(checked.graphs.networks)
    if network is None:
        if len(names) == 1:
            return names[0]
        raise SpecError(f"the spec has several networks ({', '.join(names)})", file=checked.spec.file,
                        path="networks", hint="say which to build, e.g. network=" + repr(names[0]))
    if network not in names:
        raise SpecError(f"the spec has no network {network!r}", file=checked.spec.file, path="networks",
                        hint=did_you_mean(network, names) or "it has: " + ", ".join(names))
    return network


def _class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part) or "Model"


def _compile_graph(graph: Graph, shapes: dict, checked: Checked, class_name: str) -> fx.GraphModule:
    root = nn.Module()
    fx_graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for input_name in graph.inputs:
        env[input_name] = fx_graph.create_node("placeholder", input_name, name=input_name)
    for name in graph.order:
        node = graph.nodes.get(name)
        if node is None:
            continue
        args = [env[ref] for ref in node.inputs]
        if node.share is not None:
            env[name] = fx_graph.create_node("call_module", node.share, tuple(args), name=name)
            continue
        shape = shapes[name]
        entry = registry.lookup(node.type)
        if entry is not None and not entry.makes_module:
            env[name] = _call_function(fx_graph, entry, node, shape.args, args)
            continue
        root.add_module(name, _module_for(node, shape, checked))
        env[name] = fx_graph.create_node("call_module", name, tuple(args), name=name)
    fx_graph.output(_outputs(graph, env))
    module = fx.GraphModule(root, fx_graph, class_name=class_name)
    if module.graph.eliminate_dead_code():   # calls no output needs (the linter warns of them)
        module.recompile()
    module.graph.lint()
    # GraphModule wraps __call__ to reprint the generated code on errors; that wrapper alone costs
    # ~0.7 us a call (4% of a small model's forward).  The traceback still shows the generated
    # line without it, so calls go straight to nn.Module.__call__, as a hand-written module's do.
    # (type(module) is a class of this instance's own: GraphModule makes one per instance.)
    type(module).__call__ = nn.Module.__call__
    return module


def _outputs(graph: Graph, env: dict):
    if isinstance(graph.outputs, dict):
        return {key: env[name] for key, name in graph.outputs.items()}
    if isinstance(graph.outputs, list):
        return tuple(env[name] for name in graph.outputs)
    return env[graph.outputs]


def _module_for(node: Node, shape, checked: Checked) -> nn.Module:
    """The submodule a node owns: one layer, a block's GraphModule, or repeated copies."""
    if node.repeat > 1:
        return nn.Sequential(*[_one_module(node.type, copy, checked, node) for copy in
                               (shape.inner[str(i)] for i in range(node.repeat))])
    return _one_module(node.type, shape, checked, node)


def _one_module(type_name: str, shape, checked: Checked, node: Node) -> nn.Module:
    blocks = checked.graphs.blocks
    if type_name in blocks:
        return _compile_graph(blocks[type_name], shape.inner, checked, class_name=_class_name(type_name))
    return instantiate(type_name, shape.args)


def instantiate(type_name: str, args: dict) -> nn.Module:
    """Build a registered layer from its (shape-filled) arguments, nested layers included."""
    entry = registry.lookup(type_name)
    built = {key: _built(value) for key, value in args.items()}
    if entry.kind == "user":
        return entry.factory(**built)
    factory = resolve_target(entry.target)
    if type_name == "Sequential":
        return factory(*built["layers"])
    if entry.kind == "wrapper":
        inner = built.pop("module")
        with warnings.catch_warnings():   # the spec asks for this layout (weight_g, weight_v) on purpose
            warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
            return factory(inner, **built)
    return factory(**built)


def _built(value):
    """An argument as torch takes it: nested layers built, lists as tuples."""
    if isinstance(value, dict) and "type" in value:
        return instantiate(value["type"], {k: v for k, v in value.items() if k != "type"})
    if isinstance(value, list) and value and all(isinstance(v, dict) and "type" in v for v in value):
        return [_built(v) for v in value]
    return _tuple_lists(value)


def _tuple_lists(value):
    """torch takes tuples where JSON has lists (kernel_size: [3, 3])."""
    return tuple(value) if isinstance(value, list) else value


def _call_function(fx_graph: fx.Graph, entry, node: Node, args: dict, inputs: list) -> fx.Node:
    target = entry.target
    name = node.name
    if target in _VARIADIC:
        fn = resolve_target(target)
        out = inputs[0]
        for i, other in enumerate(inputs[1:]):
            last = i == len(inputs) - 2
            out = fx_graph.create_node("call_function", fn, (out, other), name=name if last else f"{name}_{i}")
        return out
    if node.type in ("cat", "stack"):
        return fx_graph.create_node("call_function", resolve_target(target), (list(inputs),),
                                    {"dim": args.get("dim", 0)}, name=name)
    if node.type == "item":
        return fx_graph.create_node("call_function", operator.getitem, (inputs[0], args["index"]), name=name)
    if node.type == "slice":
        return fx_graph.create_node("call_function", operator.getitem, (inputs[0], parse_index(args["at"])), name=name)
    if node.type == "view":
        return fx_graph.create_node("call_method", "view", (inputs[0], *args["shape"]), name=name)
    kwargs = {key: _tuple_lists(value) for key, value in args.items() if value is not None}
    if node.type == "flatten":
        kwargs.setdefault("start_dim", 1)   # keeps the batch, as nn.Flatten does
    return fx_graph.create_node("call_function", resolve_target(target), tuple(inputs), kwargs, name=name)
