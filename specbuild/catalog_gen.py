"""Regenerate `torch_catalog.json`: what torch offers, read once from torch itself.

The catalog lists the torch.nn layer classes, the losses, the optimizers and the
LR schedulers, each with its constructor arguments as JSON Schema fragments.
`specbuild validate` reads the JSON and never imports torch; this module is the
only one that looks inside torch to write it.  Run after upgrading torch:

    python -m specbuild.catalog_gen          # rewrites specbuild/torch_catalog.json
    python -m specbuild.spec.schema               # then the JSON Schema built from it

A test checks that the checked-in catalog matches the installed torch.
"""
from __future__ import annotations

import builtins
import collections.abc
import fnmatch
import inspect
import json
import keyword
import sys
import types
import typing
from pathlib import Path

CATALOG_PATH = Path(__file__).with_name("torch_catalog.json")

# Not layers: containers, the base class, and classes whose constructor takes tensors.
_NOT_LAYERS = {
    "Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
    "Container", "Parameter", "UninitializedParameter", "UninitializedBuffer", "Buffer",
}
# Arguments a spec never sets: placement is the trainer's job, underscores are private.
_SKIPPED_ARGS = {"self", "device", "dtype", "factory_kwargs", "params", "optimizer", "verbose"}

# Classes whose signature is `*args, **kwargs` or lacks annotations: written out here.
_RNN_ARGS = {
    "input_size": int, "hidden_size": int, "num_layers": (int, 1), "bias": (bool, True),
    "batch_first": (bool, False), "dropout": (float, 0.0), "bidirectional": (bool, False),
}
_MANUAL_ARGS = {
    "RNN": {**_RNN_ARGS, "nonlinearity": (typing.Literal["tanh", "relu"], "tanh")},
    "LSTM": {**_RNN_ARGS, "proj_size": (int, 0)},
    "GRU": dict(_RNN_ARGS),
}
_MANUAL_HINTS = {
    "LPPool1d": {"kernel_size": int},           # F.lp_pool1d multiplies by it: an int, never [k]
    "MultiheadAttention": {"embed_dim": int, "num_heads": int, "dropout": float, "bias": bool,
                           "add_bias_kv": bool, "add_zero_attn": bool, "kdim": typing.Optional[int],
                           "vdim": typing.Optional[int], "batch_first": bool},
}

NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
INT32_MAX = 2**31 - 1

# Values torch refuses that an argument's type cannot say: class-name pattern -> argument -> JSON
# Schema keywords, added to each number in the argument's schema (an int, or each int of a list).
# tests/test_argument_values.py builds each bound's near side and sees torch refuse its far side.
_INT32 = {"maximum": INT32_MAX}                # the pools take C ints on the CPU
_LAYER_BOUNDS = {
    "AvgPool[123]d": {"kernel_size": _INT32, "stride": _INT32, "padding": _INT32,
                      "divisor_override": {"not": {"const": 0}}},
    "MaxPool[123]d": {"kernel_size": _INT32, "stride": _INT32, "padding": _INT32, "dilation": _INT32},
    "LPPool[123]d": {"kernel_size": _INT32, "stride": _INT32, "norm_type": {"not": {"const": 0}}},
    "BatchNorm[123]d": {"eps": {"exclusiveMinimum": 0}},                           # checked in training
    "SyncBatchNorm": {"eps": {"exclusiveMinimum": 0}},
    "CosineSimilarity": {"eps": {"minimum": 0}},
    "CELU": {"alpha": {"not": {"const": 0}}},
    # losses come through the same table
    "CrossEntropyLoss": {"label_smoothing": {"maximum": 1}},
    "HuberLoss": {"delta": {"exclusiveMinimum": 0}},
    "SmoothL1Loss": {"beta": {"minimum": 0}},
    "MultiMarginLoss": {"p": {"enum": [1, 2]}},
}
# a value outside these makes torch's scheduler raise, when built or at a step (ZeroDivisionError)
_SCHEDULER_BOUNDS = {
    "StepLR": {"step_size": {"minimum": 1}},
    "CosineAnnealingLR": {"T_max": {"minimum": 1}},
    "CosineAnnealingWarmRestarts": {"T_0": {"minimum": 1}, "T_mult": {"minimum": 1}},
    "CyclicLR": {"step_size_up": {"exclusiveMinimum": 0}},
    "OneCycleLR": {"pct_start": {"exclusiveMinimum": 0, "maximum": 1}, "div_factor": {"exclusiveMinimum": 0}},
    "ReduceLROnPlateau": {"factor": {"exclusiveMaximum": 1}},
    "LinearLR": {"start_factor": {"exclusiveMinimum": 0, "maximum": 1}, "end_factor": {"minimum": 0, "maximum": 1}},
    "ConstantLR": {"factor": {"exclusiveMinimum": 0, "maximum": 1}},      # 0: its last step divides by it
    "PolynomialLR": {"power": {"minimum": 0}},
}
_OPTIMIZER_BOUNDS = {
    "*": {"lr": {"minimum": 0}, "eps": {"minimum": 0}, "weight_decay": {"minimum": 0}, "momentum": {"minimum": 0},
          "lr_decay": {"minimum": 0}, "initial_accumulator_value": {"minimum": 0}, "momentum_decay": {"minimum": 0},
          "rho": {"minimum": 0, "maximum": 1}, "betas": {"minimum": 0, "exclusiveMaximum": 1}},
    "SparseAdam": {"lr": {"exclusiveMinimum": 0}, "eps": {"exclusiveMinimum": 0}},
    "RMSprop": {"alpha": {"minimum": 0}},
    "Adafactor": {"beta2_decay": {"maximum": 0}, "d": {"minimum": 1}},
    "Muon": {"eps": None},                       # None: torch takes any value (a later pattern wins)
}


def schema_of(annotation) -> dict:
    """A JSON Schema fragment for a Python annotation; {} when nothing JSON can express it."""
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return {}
    if annotation is type(None):
        return {"type": "null"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return dict(INTEGER)
    if annotation is float:
        return dict(NUMBER)
    if annotation is str:
        return {"type": "string"}
    if isinstance(annotation, type):
        import torch
        if issubclass(annotation, torch.nn.Module):
            return {"$ref": "#/$defs/nested_layer"}
        if annotation is torch.Size:
            return {"type": "array", "items": dict(INTEGER)}
        return {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        parts = [schema_of(a) for a in args]
        if any(p == {} for p in parts):
            # A callable or tensor alternative: keep what JSON can say, e.g. activation="gelu".
            parts = [p for p in parts if p]
            if not parts:
                return {}
        return parts[0] if len(parts) == 1 else {"anyOf": _dedupe(parts)}
    if origin in (tuple, list, collections.abc.Sequence, collections.abc.Iterable):
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = [schema_of(a) for a in args]
            if all(i == items[0] for i in items):
                return {"type": "array", "items": items[0], "minItems": len(items), "maxItems": len(items)}
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        return {"type": "array", "items": schema_of(args[0]) if args else {}}
    if origin is collections.abc.Callable:
        return {}
    return {}


def with_bounds(schema: dict, bounds: dict, types=("integer", "number")) -> dict:
    """`schema` with `bounds` (minimum, maximum, not...) on each of its numbers (of `types`) where
    not set yet: a number, each number of a list, of each branch of an anyOf."""
    if not isinstance(schema, dict):
        return schema
    out = {key: [with_bounds(s, bounds, types) for s in value] if key in ("anyOf", "allOf", "prefixItems") else
           {k: with_bounds(s, bounds, types) for k, s in value.items()} if key == "properties" else
           with_bounds(value, bounds, types) if key in ("items", "additionalProperties") else value
           for key, value in schema.items()}
    kinds = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if any(kind in types for kind in kinds):
        out.update({key: value for key, value in bounds.items() if key not in out})
    return out


def _bounded(name: str, args: dict, table: dict) -> dict:
    """The arguments of class `name` with the bounds `table` gives them (its matching patterns, the
    later over the earlier)."""
    found = {}
    for pattern, bounds in table.items():
        if fnmatch.fnmatchcase(name, pattern):
            found.update(bounds)
    for arg, keywords in found.items():
        if arg in args and keywords:
            args[arg] = {**args[arg], "schema": with_bounds(args[arg]["schema"], keywords)}
    return args


def _dedupe(parts):
    out = []
    for p in parts:
        if p not in out:
            out.append(p)
    return out


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_jsonable(v) for v in value)
    return False


def _hints_one_by_one(cls, signature) -> dict:
    namespace = {**vars(typing), **vars(collections.abc), **vars(sys.modules[cls.__module__])}
    found = {}
    for name, param in signature.parameters.items():
        if isinstance(param.annotation, str):
            try:
                found[name] = eval(param.annotation, namespace)  # torch's own annotation text
            except Exception:
                pass
    return found


def describe_args(cls, manual: dict | None = None, hints: dict | None = None) -> dict:
    """name -> {"schema": ..., "required": bool, "default": ...} for a constructor."""
    out = {}
    if manual is not None:
        for name, spec in manual.items():
            ann, default = (spec if isinstance(spec, tuple) else (spec, inspect.Parameter.empty))
            entry = {"schema": schema_of(ann), "required": default is inspect.Parameter.empty}
            if not entry["required"]:
                entry["default"] = default
            out[name] = entry
        return out
    signature = inspect.signature(cls.__init__)
    try:
        found = typing.get_type_hints(cls.__init__)
    except Exception:  # one annotation torch cannot resolve: resolve them one by one
        found = _hints_one_by_one(cls, signature)
    found.update(hints or {})
    for name, param in signature.parameters.items():
        if name in _SKIPPED_ARGS or name.startswith("_"):
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        ann = found.get(name, param.annotation)
        if ann is inspect.Parameter.empty and param.default is not inspect.Parameter.empty \
                and param.default is not None and _jsonable(param.default):
            ann = type(param.default)
        schema = schema_of(ann)
        if schema == {"type": "integer"} and isinstance(param.default, float):
            schema = dict(NUMBER)
        entry = {"schema": schema, "required": param.default is inspect.Parameter.empty}
        if not entry["required"] and _jsonable(param.default):
            entry["default"] = list(param.default) if isinstance(param.default, tuple) else param.default
        out[name] = entry
    return out


def _forward_arity(cls) -> list[int]:
    """[least, most] positional tensors the layer's forward takes."""
    params = [p for name, p in inspect.signature(cls.forward).parameters.items()
              if name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(cls.forward).parameters.values()):
        return [1, 64]
    least = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return [max(least, 1), max(len(params), 1)]


def _forward_names(cls) -> list[str]:
    """The parameters of the layer's forward, in order (a spec's `forward:` keys)."""
    return [name for name, p in inspect.signature(cls.forward).parameters.items()
            if name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _classes(module, base):
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, base) and not name.startswith("_"):
            yield name, obj


def _settable(entry) -> bool:
    """False when a required argument is something no spec can write (a callable, a tensor)."""
    return all(a["schema"] for a in entry["args"].values() if a["required"])


def build_catalog() -> dict:
    import torch
    import torch.nn as nn

    layers, losses = {}, {}
    for name, cls in _classes(nn, nn.Module):
        if name in _NOT_LAYERS or name.startswith("Lazy") or name.endswith("Base") \
                or not cls.__module__.startswith("torch.nn.modules"):
            continue
        entry = {"target": f"torch.nn.{name}",
                 "args": _bounded(name, describe_args(cls, _MANUAL_ARGS.get(name), _MANUAL_HINTS.get(name)),
                                  _LAYER_BOUNDS),
                 "inputs": _forward_arity(cls), "forward": _forward_names(cls)}
        if _settable(entry):
            (losses if "Loss" in name else layers)[name] = entry
    optimizers = {name: {"target": f"torch.optim.{name}", "args": _bounded(name, describe_args(cls), _OPTIMIZER_BOUNDS)}
                  for name, cls in _classes(torch.optim, torch.optim.Optimizer) if name != "Optimizer"}
    sched_base = torch.optim.lr_scheduler.LRScheduler
    schedulers = {name: {"target": f"torch.optim.lr_scheduler.{name}",
                         "args": _bounded(name, describe_args(cls), _SCHEDULER_BOUNDS)}
                  for name, cls in _classes(torch.optim.lr_scheduler, sched_base)
                  if name not in {"LRScheduler", "_LRScheduler", "ChainedScheduler", "SequentialLR",
                                 "LambdaLR", "MultiplicativeLR"}}  # these take Python callables
    schedulers = {name: entry for name, entry in schedulers.items() if _settable(entry)}
    return {"torch_version": torch.__version__.split("+")[0],
            "layers": layers, "losses": losses, "optimizers": optimizers, "schedulers": schedulers,
            "names": taken_names()}


def taken_names() -> dict:
    """The names torch takes, that a spec's layers and inputs must leave alone (spec/graph.py's rule).

    module_attributes: what a built model (a GraphModule instance: its class's attributes and those
    set in __init__, meta, training...) already has, so a layer named so cannot be its submodule.
    forward_globals: the globals torch.fx's generated forward reads besides Python's builtins (torch,
    inf, ...), which an input, a parameter of that forward, would hide.  Python's own names (object's
    attributes, the builtins, the keywords) are left out: they depend on the Python, not on torch.
    """
    import torch.fx as fx
    from torch import nn
    model = fx.GraphModule(nn.Module(), fx.Graph())
    python = set(dir(builtins)) | set(keyword.kwlist)
    # names starting with ___ are what a torch.compile earlier in the process adds to every
    # module (guards' bookkeeping), not what a fresh model has: leaving them out keeps the
    # catalog the same however the process got here
    attributes = {name for name in dir(model) if not name.startswith("___")}
    return {"module_attributes": sorted(attributes - set(dir(object))),
            "forward_globals": sorted(set(getattr(fx.graph, "_illegal_names", ())) - python)}


def render(catalog: dict) -> str:
    # keys in their own order: layers sorted by name, arguments in the order torch takes them
    return json.dumps(catalog, indent=1) + "\n"


def main(argv=None) -> int:
    CATALOG_PATH.write_text(render(build_catalog()))
    print(f"wrote {CATALOG_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
