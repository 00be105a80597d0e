"""Compile a checked spec into a torch.fx GraphModule.

Compile, don't interpret: each layer node becomes a submodule named after the
node (so `state_dict` keys match the hand-written module: `fc1.weight`), each
tensor function a direct call, and the forward is generated Python that costs
what a hand-written forward costs.  Blocks become child GraphModules, `repeat:`
an nn.Sequential of fresh copies, `share:` a second call of the same submodule.
How a type becomes torch is the registry's `call` (like an fx node's opcode): one
emitter per call kind for tensor functions, one builder per kind for modules,
and no case on a type's name here.
"""
from __future__ import annotations

import dataclasses
import operator
import os
import re
import warnings

import torch
import torch.fx as fx
from torch import nn

from .. import registry
from ..errors import SpecError, did_you_mean
from ..inputs import DTYPES
from ..spec.graph import Graph, Node
from ..spec.infer import total_params
from ..resolve import resolve_target
from ..shapes.index import parse_index
from ..spec.validate import Checked, check

DEFAULT_MAX_PARAMS = 2_000_000_000


def build_model(spec, *, network: str | None = None, overrides: dict | None = None,
                max_params: int = DEFAULT_MAX_PARAMS, outputs=None,
                weights: str | os.PathLike | None = None) -> fx.GraphModule:
    """A GraphModule for a spec (path, YAML/JSON text, dict or Spec).

    A spec with several `networks` needs `network=` naming one.  Models over
    `max_params` parameters are refused before any weight is allocated.
    `outputs` (a node name, list or dict) replaces the declared outputs: the
    trainer uses it to return just the nodes its losses read (the logits); the
    weights and their names stay the same.  `weights` (a .pt/.pth/.bin state_dict, a
    .safetensors file or a specbuild checkpoint) replaces the fresh weights; every tensor
    must fit, else a SpecError lists what is missing, unexpected or of another shape
    (compiler/weights.py).
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
    model = _compile_graph(graph, shapes, checked, class_name=_class_name(name))
    if weights is not None:
        from .weights import load_weights_file
        load_weights_file(model, weights, network=name)
    return model


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
            env[name] = _EMITTERS[entry.call](fx_graph, entry, name, shape.args, args)
            continue
        root.add_module(name, _module_for(node, shape, checked))
        keywords = {key: env[value] if isinstance(value, str) else value for key, value in node.forward.items()}
        env[name] = fx_graph.create_node("call_module", name, tuple(args), keywords, name=name)
    fx_graph.output(_outputs(graph, env))
    _tie(root, graph)
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


def _tie(root: nn.Module, graph: Graph) -> None:
    """`tie: {weight: wte.weight}`: the layer's parameter becomes the other's tensor (checked at validation)."""
    for node in graph.nodes.values():
        for param, source in node.tie.items():
            setattr(root.get_submodule(node.name), param, root.get_parameter(source))


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
    if shape.graph is not None:      # a block, as this use instantiated it
        return _compile_graph(shape.graph, shape.inner, checked, class_name=_class_name(type_name))
    entry = registry.lookup(type_name)
    if entry.call == "sequential":   # its layers were inferred one by one: blocks, user types, torch layers
        return resolve_target(entry.target)(*[_one_module(item.type, item, checked, node)
                                              for item in shape.inner.values()])
    return instantiate(type_name, shape.args)


def instantiate(type_name: str, args: dict) -> nn.Module:
    """Build a registered layer from its (shape-filled) arguments, nested layers included."""
    entry = registry.lookup(type_name)
    return _BUILDERS[entry.call](entry, {key: _built(value) for key, value in args.items()})


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


# --- modules: builder(entry, built args) -> nn.Module, one per module call kind ----------------

def _module(entry, built: dict) -> nn.Module:
    return resolve_target(entry.target)(**built)


def _user(entry, built: dict) -> nn.Module:
    return entry.factory(**built)


def _sequential(entry, built: dict) -> nn.Module:
    return resolve_target(entry.target)(*built.pop(entry.operand), **built)


def _wrapper(entry, built: dict) -> nn.Module:
    inner = built.pop(entry.operand)
    with warnings.catch_warnings():   # the spec asks for this layout (weight_g, weight_v) on purpose
        warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
        return resolve_target(entry.target)(inner, **built)


_BUILDERS = {"module": _module, "user": _user, "sequential": _sequential, "wrapper": _wrapper}


# --- tensor functions: emitter(fx graph, entry, name, args, inputs) -> fx.Node, one per call kind --

def _kwargs(entry, args: dict) -> dict:
    """The keyword arguments: lists as tuples, None left out, and the entry's `explicit` ones
    at their default when the spec leaves them out (flatten's start_dim=1, not torch's 0)."""
    kwargs = {key: _tuple_lists(value) for key, value in args.items()
              if value is not None and key != entry.operand}
    for key in entry.explicit:
        kwargs.setdefault(key, entry.args[key]["default"])
    if isinstance(kwargs.get("dtype"), str):         # a spec's dtype name ("long") -> torch.int64
        kwargs["dtype"] = _torch_dtype(kwargs["dtype"])
    return kwargs


def _torch_dtype(name: str):
    return getattr(torch, DTYPES[name])


def _function(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    return fx_graph.create_node("call_function", resolve_target(entry.target), tuple(inputs),
                                _kwargs(entry, args), name=name)


def _method(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    method = entry.target.rsplit(".", 1)[1]          # "torch.Tensor.view" -> x.view(...)
    return fx_graph.create_node("call_method", method, (inputs[0], *args[entry.operand]),
                                _kwargs(entry, args), name=name)


_PARSERS = {"index": parse_index}                    # registry.PARSES: "[:, -1]" -> a subscript


def _index(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    index = args[entry.operand]
    if entry.parse is not None:
        index = _PARSERS[entry.parse](index)
    return fx_graph.create_node("call_function", resolve_target(entry.target), (inputs[0], index), name=name)


def _list(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    return fx_graph.create_node("call_function", resolve_target(entry.target), (list(inputs),),
                                _kwargs(entry, args), name=name)


def _variadic(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    """Folded pairwise, a + b + c; the last call carries the node's name."""
    fn = resolve_target(entry.target)
    out = inputs[0]
    for i, other in enumerate(inputs[1:]):
        last = i == len(inputs) - 2
        out = fx_graph.create_node("call_function", fn, (out, other), name=name if last else f"{name}_{i}")
    return out


def _training(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    """target(*inputs, **args), its args[operand] (a dropout probability) times self.training, so
    that it applies in training only; at 0 (or left out) the call is a plain one, with no extra node."""
    kwargs = _kwargs(entry, args)
    if args.get(entry.operand):
        training = fx_graph.create_node("get_attr", "training", name=f"{name}_training")
        kwargs[entry.operand] = fx_graph.create_node("call_function", operator.mul,
                                                     (args[entry.operand], training), name=f"{name}_{entry.operand}")
    return fx_graph.create_node("call_function", resolve_target(entry.target), tuple(inputs), kwargs, name=name)


def _device(fx_graph: fx.Graph, name: str, x: fx.Node) -> fx.Node:
    return fx_graph.create_node("call_function", getattr, (x, "device"), name=f"{name}_device")


def _sized(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    """target(x.size(dim), device=x.device): arange's positions along a dim of its input."""
    size = fx_graph.create_node("call_method", "size", (inputs[0], args[entry.operand]), name=f"{name}_size")
    return fx_graph.create_node("call_function", resolve_target(entry.target), (size,),
                                {**_kwargs(entry, args), "device": _device(fx_graph, name, inputs[0])}, name=name)


def _literal(fx_graph: fx.Graph, entry, name: str, args: dict, inputs: list) -> fx.Node:
    """target(value, dtype=..., device=x.device): the input only places the tensor."""
    return fx_graph.create_node("call_function", resolve_target(entry.target), (args[entry.operand],),
                                {**_kwargs(entry, args), "device": _device(fx_graph, name, inputs[0])}, name=name)


_EMITTERS = {"function": _function, "method": _method, "index": _index, "list": _list, "variadic": _variadic,
             "training": _training, "sized": _sized, "literal": _literal}
