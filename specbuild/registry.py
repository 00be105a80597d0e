"""The closed table of names a spec may use.

A spec's `type:` resolves only through this table: the torch.nn layer classes
(read from `torch_catalog.json`, written by `catalog_gen`), a curated set of
tensor functions, two wrappers that take a layer, and the types a user
registers from Python with `register_layer`.  A spec never names an import
path, so `type: os.system` is just an unknown name.  Nothing here imports torch.
"""
from __future__ import annotations

import builtins
import inspect
import json
import keyword
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .inputs import DTYPES


IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CATALOG: dict = json.loads(Path(__file__).with_name("torch_catalog.json").read_text())

# Metric names; specbuild.metrics computes them (a test keeps the two in step).
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "mse", "mae", "r2")
# Names torch takes (catalog_gen reads them from torch; spec/graph.py's naming rule refuses them):
# the attributes every built model has, which no layer (a submodule) can be named, and the globals
# the generated forward reads, which no input (a parameter of that forward) may hide.
MODULE_ATTRIBUTES = frozenset(CATALOG["names"]["module_attributes"]) | frozenset(dir(object))
FORWARD_GLOBALS = frozenset(CATALOG["names"]["forward_globals"]) | frozenset(dir(builtins)) | {"self"}
# Scheduler arguments the trainer fills from the run's length when a spec leaves them out.
FILLED_BY_TRAINER = {"CosineAnnealingLR": ("T_max",)}


# How compile turns each kind of call into torch: the `call` of a LayerType.  compiler.compile
# has one emitter or builder per kind (a test keeps the two in step).  A tensor function becomes
# a node of the generated forward:
CALLS = {
    "function": "target(*inputs, **args)",
    "method": "inputs[0].method(*args[operand], **other args): view",
    "index": "inputs[0][args[operand]], read as `parse` says: item, slice",
    "list": "target([*inputs], **args): cat, stack",
    "variadic": "target folded pairwise over the inputs, a + b + c: add, mul",
    "training": "target(*inputs, **args), args[operand] times self.training (dropout in training only): "
                "scaled_dot_product_attention",
    "sized": "target(inputs[0].size(args[operand]), device=inputs[0].device): arange",
    "literal": "target(args[operand], **other args, device=inputs[0].device), the input only placing it: constant",
    # ... a module type becomes a submodule the node owns:
    "module": "target(**args), a torch.nn layer",
    "wrapper": "target(built args[operand], **other args), around an inner layer: weight_norm",
    "sequential": "target(*built args[operand]): Sequential",
    "user": "factory(**args), a type registered with register_layer",
}
# How the `index` operand is read: "index" is a subscript written as text, "[:, -1, :]".
PARSES = ("index",)


@dataclass(frozen=True)
class LayerType:
    name: str
    kind: str                 # "module" | "function" | "wrapper" | "user"
    target: str               # what it becomes, e.g. "torch.nn.Linear", "torch.relu"
    args: dict                # argument -> {"schema": {...}, "required": bool, "default": ...}
    inputs: tuple = (1, 1)    # least and most inputs the layer takes
    doc: str = ""
    factory: Callable | None = field(default=None, compare=False)   # user types only
    shape_rule: Callable | None = field(default=None, compare=False)  # user types only
    call: str = "module"      # how compile calls it: a key of CALLS
    operand: str | None = None  # the argument passed by position, not keyword (view's shape, item's index);
    #                             for `training` the one that applies in training only (a dropout probability)
    parse: str | None = None    # how the operand's text is read (one of PARSES); None: as it is
    explicit: tuple = ()      # arguments passed at their default when the spec leaves them out
    forward: tuple = ()       # a module's forward parameters, in order (what `forward:` may name)

    def __post_init__(self):
        if self.call not in CALLS or self.parse not in (None, *PARSES):
            raise ValueError(f"{self.name}: unknown call {self.call!r} or parse {self.parse!r}")

    @property
    def makes_module(self) -> bool:
        """True when the node owns a submodule (and so its weights); False for tensor functions."""
        return self.kind != "function"


def _arg(schema=None, default=inspect.Parameter.empty, **extra) -> dict:
    entry = {"schema": dict(schema or {}, **extra), "required": default is inspect.Parameter.empty}
    if default is not inspect.Parameter.empty:
        entry["default"] = default
    return entry


INT = {"type": "integer"}
NUM = {"type": "number"}
DIM = {"type": "integer"}
DIMS = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
                  {"type": "null"}]}    # torch: "dim 1 appears multiple times in the list of dims"
NESTED = {"$ref": "#/$defs/nested_layer"}
INTS = {"type": "array", "items": {"anyOf": [INT, {"$ref": "#/$defs/variable"}]}}    # sizes: [4, "${d}"]
VALUE = {"$ref": "#/$defs/tensor_value"}      # a number, a bool or a (nested, rectangular) list of them

# name -> (target, args) or (target, args, {further LayerType fields}): how it is called
# (a plain target(*inputs, **args) when not said), its (least, most) inputs.  Defaults are
# torch's, except flatten's start_dim=1, which keeps the batch as nn.Flatten does.
_ELEMENTWISE = {
    "relu": ("torch.relu", {}), "sigmoid": ("torch.sigmoid", {}), "tanh": ("torch.tanh", {}),
    "exp": ("torch.exp", {}), "log": ("torch.log", {}), "abs": ("torch.abs", {}),
    "silu": ("torch.nn.functional.silu", {}),
    "softplus": ("torch.nn.functional.softplus", {"beta": _arg(NUM, 1.0), "threshold": _arg(NUM, 20.0)}),
    "elu": ("torch.nn.functional.elu", {"alpha": _arg(NUM, 1.0)}),
    "leaky_relu": ("torch.nn.functional.leaky_relu", {"negative_slope": _arg(NUM, 0.01)}),
    "gelu": ("torch.nn.functional.gelu", {"approximate": _arg({"enum": ["none", "tanh"]}, "none")}),
    "softmax": ("torch.softmax", {"dim": _arg(DIM)}),
    "log_softmax": ("torch.log_softmax", {"dim": _arg(DIM)}),
    "clamp": ("torch.clamp", {"min": _arg({"type": ["number", "null"]}, None),
                              "max": _arg({"type": ["number", "null"]}, None)}),
}
_SHAPE_OPS = {
    "flatten": ("torch.flatten", {"start_dim": _arg(DIM, 1), "end_dim": _arg(DIM, -1)},
                {"explicit": ("start_dim",)}),
    "reshape": ("torch.reshape", {"shape": _arg({"type": "array", "items": INT})}),
    "view": ("torch.Tensor.view", {"shape": _arg({"type": "array", "items": INT})},
             {"call": "method", "operand": "shape"}),
    "permute": ("torch.permute", {"dims": _arg({"type": "array", "items": INT})}),
    "transpose": ("torch.transpose", {"dim0": _arg(DIM), "dim1": _arg(DIM)}),
    "unsqueeze": ("torch.unsqueeze", {"dim": _arg(DIM)}),
    "squeeze": ("torch.squeeze", {"dim": _arg(DIMS, None)}),
    "mean": ("torch.mean", {"dim": _arg(DIMS, None), "keepdim": _arg({"type": "boolean"}, False)}),
    "sum": ("torch.sum", {"dim": _arg(DIMS, None), "keepdim": _arg({"type": "boolean"}, False)}),
    "amax": ("torch.amax", {"dim": _arg(DIMS, None), "keepdim": _arg({"type": "boolean"}, False)}),
    "amin": ("torch.amin", {"dim": _arg(DIMS, None), "keepdim": _arg({"type": "boolean"}, False)}),
    "chunk": ("torch.chunk", {"chunks": _arg(INT), "dim": _arg(DIM, 0)}),
    "split": ("torch.split", {"split_size_or_sections": _arg({"anyOf": [INT, INTS]}), "dim": _arg(DIM, 0)}),
    "unflatten": ("torch.unflatten", {"dim": _arg(DIM), "sizes": _arg(INTS)}),
    "expand": ("torch.Tensor.expand", {"size": _arg(INTS)}, {"call": "method", "operand": "size"}),
    "repeat_interleave": ("torch.repeat_interleave", {"repeats": _arg(INT),
                                                      "dim": _arg({"type": ["integer", "null"]}, None)}),
    "tril": ("torch.tril", {"diagonal": _arg(INT, 0)}),
    "triu": ("torch.triu", {"diagonal": _arg(INT, 0)}),
    "item": ("operator.getitem", {"index": _arg(INT)}, {"call": "index", "operand": "index"}),
    "slice": ("operator.getitem", {"at": _arg({"type": "string", "pattern": r"^\s*\[.*\]\s*$"})},
              {"call": "index", "operand": "at", "parse": "index"}),
}
_JOIN = {"inputs": (2, 64), "call": "list", "explicit": ("dim",)}
_FOLD = {"inputs": (2, 64), "call": "variadic"}
_MERGE_OPS = {
    "cat": ("torch.cat", {"dim": _arg(DIM, 0)}, _JOIN),
    "stack": ("torch.stack", {"dim": _arg(DIM, 0)}, _JOIN),
    "add": ("operator.add", {}, _FOLD),
    "mul": ("operator.mul", {}, _FOLD),
    "sub": ("operator.sub", {}, {"inputs": (2, 2)}),
    "div": ("operator.truediv", {}, {"inputs": (2, 2)}),
    "matmul": ("torch.matmul", {}, {"inputs": (2, 2)}),
    "masked_fill": ("torch.masked_fill", {"value": _arg(NUM)}, {"inputs": (2, 2)}),
    "where": ("torch.where", {}, {"inputs": (3, 3)}),
    "scaled_dot_product_attention": ("torch.nn.functional.scaled_dot_product_attention", {
        "dropout_p": _arg(NUM, 0.0), "is_causal": _arg({"type": "boolean"}, False),
        "scale": _arg({"type": ["number", "null"]}, None)},
        {"inputs": (3, 4), "call": "training", "operand": "dropout_p"}),
}
# Tensors made from an input's size or placed on its device; they have no batch dim.
_FACTORIES = {
    "arange": ("torch.arange", {"dim": _arg(DIM)}, {"call": "sized", "operand": "dim"}),
    "constant": ("torch.tensor", {"value": _arg(VALUE), "dtype": _arg({"enum": [*DTYPES, None]}, None)},
                 {"call": "literal", "operand": "value"}),
}
_AROUND = {"call": "wrapper", "operand": "module"}
_WRAPPERS = {
    "Sequential": ("torch.nn.Sequential", {"layers": _arg({"type": "array", "items": NESTED, "minItems": 1})},
                   {"call": "sequential", "operand": "layers"}),
    "weight_norm": ("torch.nn.utils.weight_norm", {
        "module": _arg(NESTED), "name": _arg({"type": "string"}, "weight"), "dim": _arg(DIM, 0)}, _AROUND),
    "spectral_norm": ("torch.nn.utils.spectral_norm", {
        "module": _arg(NESTED), "name": _arg({"type": "string"}, "weight"),
        "n_power_iterations": _arg(INT, 1), "eps": _arg(NUM, 1e-12), "dim": _arg({"type": ["integer", "null"]}, None)},
        _AROUND),
}


def _needs_dim(a: dict, given: dict) -> bool:
    return "keepdim" not in given or a["dim"] is not None


def _finite_range(a: dict, given: dict) -> bool:
    return all(math.isfinite(a[k]) for k in ("lower", "upper")) and a["lower"] <= a["upper"]


def _nesterov(a: dict, given: dict) -> bool:
    return not a["nesterov"] or (a["momentum"] > 0 and a["dampening"] == 0)


def _not_max(option: str):
    def test(a: dict, given: dict) -> bool:
        return a["mode"] != "max" or not a[option]
    return test


def _no_recompute_with_size(a: dict, given: dict) -> bool:
    return not a["recompute_scale_factor"] or a["size"] is None


_KEEPDIM = (("keepdim", "dim"), _needs_dim, "`keepdim` needs `dim`: torch.{type} takes keepdim only with dims",
            "name the dims to reduce, e.g. `dim: [1, 2]`, or drop keepdim")
# What JSON Schema cannot say: a constraint between a type's arguments (a layer's, a tensor
# function's, an optimizer's).  type -> [(arguments, test, message, hint)]: the validator calls
# test(the arguments with their defaults, the arguments the spec gives) and, when it returns False,
# reports the message (formatted with `type` and the arguments) at the first of `arguments` the
# spec gives.  tests/test_argument_values.py shows torch refusing each.
ARG_RELATIONS = {
    "mean": [_KEEPDIM], "sum": [_KEEPDIM],        # amax and amin reduce every dim with dim=()
    "RReLU": [(("lower", "upper"), _finite_range, "`lower` ({lower}) for {type} must be at most `upper` ({upper}), "
               "both finite", "e.g. lower: 0.125, upper: 0.333 (torch's defaults)")],
    "EmbeddingBag": [((option, "mode"), _not_max(option), f"`mode: max` takes no `{option}: true`",
                      f"drop {option}, or use mode sum or mean") for option in ("scale_grad_by_freq", "sparse")],
    "Upsample": [(("recompute_scale_factor", "size"), _no_recompute_with_size,
                  "`recompute_scale_factor: true` goes with `scale_factor`, not with `size`",
                  "drop recompute_scale_factor, or give scale_factor instead of size")],
    "SGD": [(("nesterov", "momentum", "dampening"), _nesterov,
             "`nesterov: true` needs `momentum` above 0 and `dampening` 0 (here {momentum} and {dampening})",
             "e.g. momentum: 0.9, or drop nesterov")],
}


def _builtin_types() -> dict[str, LayerType]:
    table: dict[str, LayerType] = {}
    for name, entry in CATALOG["layers"].items():
        table[name] = LayerType(name, "module", entry["target"], entry["args"], tuple(entry["inputs"]),
                                forward=tuple(entry.get("forward", ())))
    for kind, group in (("function", _ELEMENTWISE), ("function", _SHAPE_OPS), ("function", _MERGE_OPS),
                        ("function", _FACTORIES), ("wrapper", _WRAPPERS)):
        for name, (target, args, *how) in group.items():
            fields = {"call": kind, **(how[0] if how else {})}
            table[name] = LayerType(name, kind, target, args, **fields)
    return table


BUILTIN_TYPES: dict[str, LayerType] = _builtin_types()
_USER_TYPES: dict[str, LayerType] = {}


def layer_types() -> dict[str, LayerType]:
    """Every type a spec may name now: the built-in ones and those registered from Python."""
    return {**BUILTIN_TYPES, **_USER_TYPES}


def lookup(name: str) -> LayerType | None:
    if not isinstance(name, str):
        return None
    return _USER_TYPES.get(name) or BUILTIN_TYPES.get(name)


def register_layer(name: str, factory: Callable, *, args: dict | None = None,
                   inputs: tuple = (1, 1), shape: Callable | None = None, doc: str = "",
                   replace: bool = False) -> LayerType:
    """Make `type: name` available to specs, building `factory(**args)`.

    `args` maps each argument to a JSON Schema fragment (or None for any value); when
    omitted it is read from the factory's signature.  `shape(args, input_shapes)`
    returns the output shape; without it shapes are found by running the layer on
    torch's meta device.  Registration happens in Python, never from a spec.
    """
    if not isinstance(name, str) or not IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise ValueError(f"layer type name {name!r} must be a Python identifier")
    if name in BUILTIN_TYPES:
        raise ValueError(f"{name!r} is a built-in layer type; choose another name")
    if name in _USER_TYPES and not replace:
        raise ValueError(f"{name!r} is already registered; pass replace=True to replace it")
    if not callable(factory):
        raise TypeError("factory must be callable (an nn.Module class or a function returning one)")
    described = _describe_signature(factory) if args is None else {
        arg: (schema if isinstance(schema, dict) and {"schema", "required"} <= schema.keys()
              else {"schema": dict(schema or {}), "required": False})
        for arg, schema in args.items()}
    entry = LayerType(name, "user", getattr(factory, "__qualname__", repr(factory)), described,
                      tuple(inputs), doc, factory, shape, call="user", forward=_forward_of(factory))
    _USER_TYPES[name] = entry
    return entry


def unregister_layer(name: str) -> None:
    _USER_TYPES.pop(name, None)


_PY_TYPES = {int: INT, float: NUM, bool: {"type": "boolean"}, str: {"type": "string"}}


def _forward_of(factory) -> tuple:
    """The parameters of a registered class's forward (none known for a function returning a module)."""
    try:
        params = inspect.signature(factory.forward).parameters if isinstance(factory, type) else {}
    except (TypeError, ValueError, AttributeError):
        return ()
    return tuple(n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def _describe_signature(factory) -> dict:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    out = {}
    for arg, p in params.items():
        if arg in ("self", "device", "dtype") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        schema = dict(_PY_TYPES.get(p.annotation, {}))
        if not schema and p.default is not p.empty and type(p.default) in _PY_TYPES:
            schema = dict(_PY_TYPES[type(p.default)])
        out[arg] = {"schema": schema, "required": p.default is p.empty}
        if p.default is not p.empty:
            out[arg]["default"] = p.default     # `specbuild list NAME` shows it, as for torch's layers
    return out


def catalog_names(group: str) -> list[str]:
    """Names of the losses, optimizers or schedulers torch offers."""
    return sorted(CATALOG[group])
