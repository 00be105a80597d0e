"""A torch.nn layer instance back to a spec layer: its type and constructor arguments.

torch keeps most constructor arguments as attributes of the same name (`Conv2d.stride`,
`Linear.out_features`); the rest are read where torch puts them (`bias` is whether the
bias exists; a TransformerEncoderLayer's `nhead` is its self_attn's `num_heads`).
Arguments at torch's default are left out, and so are the input sizes shape inference
fills in (`in_channels`, `in_features`...), so that the spec says what a person would.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import registry
from ..errors import SpecError
from ..shapes.core import INFERRED_ARGS


def _transformer_layer(module) -> dict:
    attention = module.self_attn
    activation = module.activation
    name = getattr(activation, "__name__", type(activation).__name__).lower()
    return {"d_model": attention.embed_dim, "nhead": attention.num_heads,
            "dim_feedforward": module.linear1.out_features, "dropout": module.dropout.p,
            "activation": "gelu" if "gelu" in name else "relu", "layer_norm_eps": module.norm1.eps,
            "batch_first": attention.batch_first, "norm_first": module.norm_first,
            "bias": module.linear1.bias is not None}


def _stack(module) -> dict:
    return {"num_layers": len(module.layers), "norm": layer_entry(module.norm) if module.norm is not None else None,
            "enable_nested_tensor": module.enable_nested_tensor, "mask_check": getattr(module, "mask_check", True)}


def _attention(module) -> dict:
    return {"bias": module.in_proj_bias is not None, "add_bias_kv": module.bias_k is not None,
            "kdim": None if module.kdim == module.embed_dim else module.kdim,
            "vdim": None if module.vdim == module.embed_dim else module.vdim}


# type -> arguments torch keeps under another name (the rest are attributes of their own name)
_SPECIAL = {
    "MultiheadAttention": _attention,
    "TransformerEncoderLayer": _transformer_layer,
    "TransformerDecoderLayer": _transformer_layer,
    "TransformerEncoder": lambda m: {"encoder_layer": layer_entry(m.layers[0]), **_stack(m)},
    "TransformerDecoder": lambda m: {"decoder_layer": layer_entry(m.layers[0]), **_stack(m)},
}


def layer_entry(module: nn.Module, keep_inferred: bool = False) -> dict:
    """{"type": ..., arguments...} for a torch.nn layer (weight-normed ones as `weight_norm`)."""
    if hasattr(module, "weight_g") and hasattr(module, "weight_v"):
        return {"type": "weight_norm", "module": _plain_entry(module, keep_inferred, skip=("weight",)),
                **_hook_args(module, "WeightNorm")}
    if hasattr(module, "weight_orig"):
        return {"type": "spectral_norm", "module": _plain_entry(module, keep_inferred, skip=("weight",)),
                **_hook_args(module, "SpectralNorm")}
    if isinstance(module, nn.Sequential):
        return {"type": "Sequential", "layers": [layer_entry(m, keep_inferred) for m in module]}
    return _plain_entry(module, keep_inferred)


def _plain_entry(module: nn.Module, keep_inferred: bool, skip=()) -> dict:
    name = type(module).__name__
    entry = registry.BUILTIN_TYPES.get(name)
    if entry is None or entry.kind != "module" or not type(module).__module__.startswith("torch.nn"):
        raise SpecError(f"{name} is no torch.nn layer specbuild knows", hint="write it as a block, or register it")
    given = _SPECIAL[name](module) if name in _SPECIAL else {}
    args = {}
    for arg, about in entry.args.items():
        if arg in skip:
            continue
        if arg in given:
            value = given[arg]
        elif hasattr(module, arg):
            value = getattr(module, arg)
        else:
            continue
        if isinstance(value, (torch.Tensor, nn.Parameter)) or (value is None and arg == "bias"):
            value = value is not None            # bias: whether the layer has one
        value = _plain(value)
        if "default" in about and value == about["default"]:
            continue
        if not keep_inferred and arg in INFERRED_ARGS.get(name, ()):
            continue
        args[arg] = value
    return {"type": name, **args}


def _plain(value):
    """A value as a spec writes it: tuples and sizes as lists, floats that are whole kept float."""
    if isinstance(value, (tuple, list, torch.Size)):
        items = [_plain(v) for v in value]
        return items[0] if len(set(map(repr, items))) == 1 and len(items) > 1 and _is_repeat_arg(items) else items
    if isinstance(value, dict) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SpecError(f"an argument of type {type(value).__name__} cannot be written in a spec")


def _is_repeat_arg(items) -> bool:
    """(3, 3) is written 3, as torch takes it for kernel_size, stride, padding..."""
    return all(isinstance(v, int) and not isinstance(v, bool) for v in items)


def _hook_args(module: nn.Module, kind: str) -> dict:
    for hook in module._forward_pre_hooks.values():
        if type(hook).__name__ == kind:
            out = {}
            if getattr(hook, "name", "weight") != "weight":
                out["name"] = hook.name
            if kind == "WeightNorm" and getattr(hook, "dim", 0) != 0:
                out["dim"] = hook.dim
            return out
    return {}
