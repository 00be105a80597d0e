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

import collections.abc
import inspect
import json
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
    "MultiheadAttention": {"embed_dim": int, "num_heads": int, "dropout": float, "bias": bool,
                           "add_bias_kv": bool, "add_zero_attn": bool, "kdim": typing.Optional[int],
                           "vdim": typing.Optional[int], "batch_first": bool},
}

NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}


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
                 "args": describe_args(cls, _MANUAL_ARGS.get(name), _MANUAL_HINTS.get(name)),
                 "inputs": _forward_arity(cls)}
        if _settable(entry):
            (losses if "Loss" in name else layers)[name] = entry
    optimizers = {name: {"target": f"torch.optim.{name}", "args": describe_args(cls)}
                  for name, cls in _classes(torch.optim, torch.optim.Optimizer) if name != "Optimizer"}
    sched_base = torch.optim.lr_scheduler.LRScheduler
    schedulers = {name: {"target": f"torch.optim.lr_scheduler.{name}", "args": describe_args(cls)}
                  for name, cls in _classes(torch.optim.lr_scheduler, sched_base)
                  if name not in {"LRScheduler", "_LRScheduler", "ChainedScheduler", "SequentialLR",
                                 "LambdaLR", "MultiplicativeLR"}}  # these take Python callables
    schedulers = {name: entry for name, entry in schedulers.items() if _settable(entry)}
    return {"torch_version": torch.__version__.split("+")[0],
            "layers": layers, "losses": losses, "optimizers": optimizers, "schedulers": schedulers}


def render(catalog: dict) -> str:
    # keys in their own order: layers sorted by name, arguments in the order torch takes them
    return json.dumps(catalog, indent=1) + "\n"


def main(argv=None) -> int:
    CATALOG_PATH.write_text(render(build_catalog()))
    print(f"wrote {CATALOG_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
