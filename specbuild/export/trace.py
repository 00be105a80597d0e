"""One module's forward, traced by torch.fx one level deep, as spec layers.

Each direct child module stays one call (a layer, a Sequential, or a block whose own
forward is traced in turn), and so does each item of a direct child ModuleList: items
called in a chain, each on the one before (`for block in self.h: x = block(x)`), become
one Sequential named after the list, so the keys stay `h.0...`; torch functions and tensor
methods map back to the spec's tensor functions; a child called twice becomes a `share:`.  What cannot be a spec (a
parameter read in forward, Python control flow on a tensor, an unknown function) is a
SpecError naming the construct and the line of the module's source.
"""
from __future__ import annotations

import functools
import inspect
import operator
import os
import traceback

import torch
import torch.fx as fx
from torch import nn

from .. import registry
from ..errors import SpecError
from ..resolve import resolve_target
from .chains import fold_chain, list_of
from .module_args import layer_entry

# tensor methods and functions that are another name of a spec tensor function
_ALIASES = {operator.iadd: "add", operator.imul: "mul", operator.isub: "sub", operator.itruediv: "div",
            torch.add: "add", torch.mul: "mul", torch.sub: "sub", torch.div: "div",
            torch.nn.functional.relu: "relu", torch.nn.functional.sigmoid: "sigmoid",
            torch.nn.functional.tanh: "tanh", torch.softmax: "softmax", torch.nn.functional.softmax: "softmax",
            torch.nn.functional.log_softmax: "log_softmax"}
_METHODS = {"view": "view", "reshape": "reshape", "permute": "permute", "transpose": "transpose",
            "flatten": "flatten", "unsqueeze": "unsqueeze", "squeeze": "squeeze", "mean": "mean", "sum": "sum",
            "split": "split", "chunk": "chunk", "expand": "expand", "softmax": "softmax", "relu": "relu",
            "sigmoid": "sigmoid", "tanh": "tanh", "unflatten": "unflatten", "matmul": "matmul",
            "masked_fill": "masked_fill", "repeat_interleave": "repeat_interleave", "tril": "tril", "triu": "triu",
            "exp": "exp", "log": "log", "abs": "abs", "amax": "amax", "amin": "amin", "clamp": "clamp"}
_SPREAD = {"view", "reshape", "permute", "expand"}      # methods taking their list as separate arguments
_MULTI_VALUE = {"RNN", "LSTM", "GRU", "MultiheadAttention", "split", "chunk"}
_IDENTITY_METHODS = {"contiguous"}
# the functional forms of parameterless layers (torchvision's MobileNetV2 pools with
# F.adaptive_avg_pool2d): written as the layer, which holds no weights, so no key changes
_POOLS = {f"{fn}{n}d": f"{layer}{n}d" for n in (1, 2, 3) for fn, layer in (
    ("adaptive_avg_pool", "AdaptiveAvgPool"), ("adaptive_max_pool", "AdaptiveMaxPool"),
    ("max_pool", "MaxPool"), ("avg_pool", "AvgPool"))}
_NONE = object()


@functools.cache
def _functions() -> dict:
    """Each built-in tensor function's torch callable -> its spec type (resolved once, not per module traced)."""
    table = {}
    for name, entry in registry.BUILTIN_TYPES.items():
        if entry.kind == "function" and entry.call not in ("method", "index"):
            try:
                table.setdefault(resolve_target(entry.target), name)
            except (ImportError, AttributeError):
                continue
    return {**table, **_ALIASES}


class _Tracer(fx.Tracer):
    """Every direct child is a leaf, and every item of a direct child ModuleList: it becomes
    one call, traced on its own if it is a block."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return ("." not in qualified_name or list_of(self.root, qualified_name) is not None
                or super().is_leaf_module(module, qualified_name))


class _Virtual:
    """A traced value that is no tensor: x.size(d), x.device, self.training, or p * self.training."""

    def __init__(self, kind: str, source=None, value=None):
        self.kind, self.source, self.value = kind, source, value


def trace(module: nn.Module, where: str) -> fx.Graph:
    """The module's forward as an fx graph, or a SpecError naming the construct and its line."""
    try:
        return _Tracer().trace(module)
    except Exception as error:     # fx raises TraceError, TypeError, RuntimeError...: the message matters
        raise SpecError(_untraceable(error, module, where), hint="a spec is a fixed graph: compute the "
                        "choice from the constructor's arguments (`when:`), not from the data") from None


def _untraceable(error: Exception, module: nn.Module, where: str) -> str:
    try:
        source = inspect.getsourcefile(type(module))
    except TypeError:                 # a class defined where no file is known
        source = None
    frames = [f for f in traceback.extract_tb(error.__traceback__) if source and f.filename == source]
    text = str(error).split("\n")[0]
    if "control flow" in text or "symbolically traced variables cannot be used as inputs to control flow" in text:
        construct = "data-dependent control flow (a Python if/while on a tensor's value)"
    elif "iterate" in text.lower():
        construct = "iterating over a tensor"
    else:
        construct = text
    if frames:
        frame = frames[-1]
        return (f"{where}: {os.path.basename(frame.filename)}:{frame.lineno} in {type(module).__name__}.forward, "
                f"`{frame.line}`: {construct}")
    return f"{where} ({type(module).__name__}): {construct}"


class GraphReader:
    """Spec layers of one traced module.  `child(name, module)` turns a child module into a
    layer entry ({"type": ...} with arguments); the rest is read here."""

    def __init__(self, module: nn.Module, where: str, child):
        self.module, self.where, self.child = module, where, child
        self.functions = _functions()
        self.values: dict[fx.Node, object] = {}        # a node -> its spec name, or a _Virtual
        self.multi: set[str] = set()
        self.layers: list[dict] = []
        self.inputs: list[str] = []
        self.called: dict[str, str] = {}                # child target -> the node that called it first

    def read(self) -> dict:
        graph = trace(self.module, self.where)
        for node in graph.nodes:
            getattr(self, "_" + node.op)(node)
        for name in dict.fromkeys(list_of(self.module, layer["name"]) for layer in self.layers):
            if name is not None:
                fold_chain(self, name)
        return {"inputs": self.inputs, "layers": self.layers, "outputs": self.outputs}

    # -- node kinds ----------------------------------------------------------------------------
    def _placeholder(self, node):
        self.inputs.append(node.name)
        self.values[node] = node.name

    def _call_module(self, node):
        target, ins = node.target, self._tensors(node.args)
        keywords = {k: self._value(v) for k, v in node.kwargs.items()}
        if target in self.called:
            self._add(node, {"share": self.called[target]}, ins)
            return
        if "." in target and list_of(self.module, target) is None:
            owner = target.rpartition(".")[0]
            kind = type(self.module.get_submodule(owner)).__name__
            fix = (f"make `{owner}` a module whose forward calls its parts" if kind in ("ModuleDict", "ModuleList")
                   else f"call `self.{owner}` whole, or make `{target.rpartition('.')[2]}` a child of its own")
            raise SpecError(f"{self.where}: forward calls `self.{target}`, a module inside {kind} `{owner}`, not a "
                            "child of its own", hint=f"a spec layer is a child module called whole: {fix} (a "
                            "ModuleList whose items are called in a chain is read as is)")
        self.called[target] = target          # the layer's name (a list item's `h.0` until it is folded)
        entry = self.child(target, self.module.get_submodule(target))
        if entry.get("type") in _MULTI_VALUE or entry.pop("__multi__", False):
            self.multi.add(node.name)
        if keywords:
            entry["forward"] = keywords
        self._add(node, entry, ins, name=target)

    def _get_attr(self, node):
        if node.target == "training":
            self.values[node] = _Virtual("training")
            return
        raise SpecError(f"{self.where}: forward reads `self.{node.target}` directly", hint="a spec's weights live "
                        "in layers: wrap the parameter in a module (or use a layer that owns it)")

    def _call_method(self, node):
        method, x = node.target, node.args[0]
        if method == "size":
            self.values[node] = _Virtual("size", self.values[x], node.args[1] if len(node.args) > 1 else None)
            return
        if method in _IDENTITY_METHODS:
            self.values[node] = self.values[x]
            return
        if method not in _METHODS:
            raise SpecError(f"{self.where}: the tensor method .{method}() has no spec function",
                            hint="see `specbuild list functions` for what a spec may call")
        rest = list(node.args[1:])
        if method in _SPREAD and not (len(rest) == 1 and isinstance(rest[0], (list, tuple))):
            rest = [rest]                          # x.view(a, b) is x.view([a, b])
        self._function(node, _METHODS[method], [x], rest, dict(node.kwargs))

    def _call_function(self, node):
        target = node.target
        if target is getattr and node.args[1] == "device":
            self.values[node] = _Virtual("device", self.values[node.args[0]])
            return
        if target is operator.mul and any(isinstance(self.values.get(a), _Virtual) for a in node.args
                                          if isinstance(a, fx.Node)):
            number = next(a for a in node.args if not isinstance(a, fx.Node))
            self.values[node] = _Virtual("in_training", value=number)       # dropout_p * self.training
            return
        if target is operator.getitem:
            self._getitem(node)
            return
        layer = _POOLS.get(getattr(target, "__name__", ""))
        if layer is not None and getattr(torch.nn.functional, target.__name__, None) is target:
            self._pool(node, layer)
            return
        name = self.functions.get(target)
        if name is None:
            raise SpecError(f"{self.where}: {getattr(target, '__module__', '')}.{getattr(target, '__name__', target)}"
                            f" (node {node.name}) has no spec function",
                            hint="see `specbuild list functions` for what a spec may call")
        entry = registry.BUILTIN_TYPES[name]
        if entry.call == "list":                   # torch.cat([a, b], dim): the list holds the inputs
            self._function(node, name, list(node.args[0]), list(node.args[1:]), dict(node.kwargs))
        else:
            leading = [a for a in node.args if isinstance(a, fx.Node)]
            others = [a for a in node.args if not isinstance(a, fx.Node)]
            self._function(node, name, leading, others, dict(node.kwargs))

    def _output(self, node):
        result = node.args[0]
        if isinstance(result, dict):
            self.outputs = {k: self.values[v] for k, v in result.items()}
        elif isinstance(result, (tuple, list)):
            self.outputs = [self.values[v] for v in result]
        else:
            self.outputs = self.values[result]

    # -- helpers -------------------------------------------------------------------------------
    def _getitem(self, node):
        x, index = node.args
        source = self.values[x]
        if isinstance(source, _Virtual):
            raise SpecError(f"{self.where}: indexing {source.kind} (node {node.name}) cannot be written in a spec",
                            hint="use x.size(d) directly, or fixed sizes")
        if isinstance(index, int) and source in self.multi:
            self._add(node, {"type": "item", "index": index}, [x])
        else:
            self._add(node, {"type": "slice", "at": _index_text(index)}, [x])

    def _pool(self, node, layer: str):
        """F.max_pool2d(x, 2) as {type: MaxPool2d, kernel_size: 2}: the layer's arguments by name,
        those at the layer's defaults left out."""
        parameters = list(inspect.signature(getattr(nn, layer)).parameters.values())
        given = dict(zip([p.name for p in parameters], node.args[1:]), **node.kwargs)
        defaults = {p.name: p.default for p in parameters}
        args = {k: self._plain(v) for k, v in given.items() if k in defaults and v != defaults[k]}
        self._add(node, {"type": layer, **args}, [node.args[0]])
        if args.get("return_indices"):
            self.multi.add(node.name)

    def _function(self, node, name: str, tensors: list, positional: list, keywords: dict):
        entry = registry.BUILTIN_TYPES[name]
        if name == "arange":
            first = node.args[0] if node.args else None
            size = self.values.get(first) if isinstance(first, fx.Node) else None
            if not isinstance(size, _Virtual) or size.kind != "size" or size.value is None:
                raise SpecError(f"{self.where}: torch.arange (node {node.name}) over anything but x.size(dim)",
                                hint="positions are `{type: arange, in: x, dim: 1}`")
            self.layers.append(self._layer(node, {"type": "arange", "dim": size.value}, [size.source]))
            self.values[node] = node.name
            return
        args = {}
        names = [a for a in entry.args if a != "dtype" or name != "constant"]
        for arg_name, value in zip([a for a in names], positional):
            args[arg_name] = value
        args.update(keywords)
        extra_inputs = []
        for key, value in list(args.items()):
            if key == "device":
                del args[key]
                if name == "constant":
                    extra_inputs.append(value.source if isinstance(self.values.get(value), _Virtual) else value)
            elif isinstance(value, fx.Node):
                virtual = self.values.get(value)
                if isinstance(virtual, _Virtual) and virtual.kind == "in_training":
                    args[key] = virtual.value
                else:
                    tensors.append(value)
                    del args[key]
            else:
                args[key] = self._plain(value)
        args.pop("inplace", None)            # F.relu(x, inplace=True): the same values; a spec's relu copies
        args = {k: v for k, v in args.items() if k not in entry.args or v != entry.args[k].get("default", _NONE)}
        refs = [self.values[t] for t in tensors] + extra_inputs
        self.layers.append(self._layer(node, {"type": name, **args}, refs, resolved=True))
        self.values[node] = node.name
        if name in _MULTI_VALUE:
            self.multi.add(node.name)

    def _plain(self, value):
        if isinstance(value, torch.dtype):
            return str(value).removeprefix("torch.")
        if isinstance(value, (list, tuple)):
            out = [self._size_or(v) for v in value]
            return out
        if isinstance(value, fx.Node):
            return self._size_or(value)
        return value

    def _size_or(self, value):
        """A list item: a number, or x.size(0) (the batch) as -1."""
        if isinstance(value, fx.Node):
            virtual = self.values.get(value)
            if isinstance(virtual, _Virtual) and virtual.kind == "size" and virtual.value == 0:
                return -1
            raise SpecError(f"{self.where}: a size computed in forward ({value.name}) cannot be written in a spec",
                            hint="write fixed sizes, with -1 for the batch")
        return self._plain(value)

    def _tensors(self, args) -> list:
        return [a for a in args if isinstance(a, fx.Node)]

    def _value(self, value):
        if isinstance(value, fx.Node):
            return self.values[value]
        return self._plain(value)

    def _add(self, node, entry: dict, ins: list, name: str | None = None):
        self.layers.append(self._layer(node, entry, [self.values[i] for i in ins], resolved=True, name=name))
        self.values[node] = name or node.name

    def _layer(self, node, entry: dict, refs: list, resolved: bool = False, name: str | None = None) -> dict:
        layer = {"name": name or node.name, **entry}
        layer["in"] = refs[0] if len(refs) == 1 else list(refs)
        return layer


def _index_text(index) -> str:
    """x[:, -1, :]'s index as the text `slice` reads."""
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(_part(p) for p in parts) + "]"


def _part(part) -> str:
    if part is Ellipsis:
        return "..."
    if part is None:
        return "None"
    if isinstance(part, slice):
        text = ("" if part.start is None else str(part.start)) + ":" + ("" if part.stop is None else str(part.stop))
        return text + (f":{part.step}" if part.step is not None else "")
    if isinstance(part, int):
        return str(part)
    raise SpecError(f"the index {part!r} cannot be written in a spec", hint="index with numbers and slices")

