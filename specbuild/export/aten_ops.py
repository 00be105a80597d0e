"""ATen operators back to spec layers: the table `specbuild import FILE.pt2` reads graphs with.

An ExportedProgram's graph is ATen operators.  A torch.nn layer's own graph is one operator
on its parameters (aten.linear on weight and bias), read back here as the layer with its
constructor arguments (the sizes from the parameters' shapes); the other operators map to
the spec's tensor functions (aten.relu -> relu) or, where a spec has only a layer for them
(aten.max_pool2d), to that layer.  The table is small on purpose: an operator outside it is
refused by name (export/from_exported.py).
"""
from __future__ import annotations

import torch

from .. import registry
from ..errors import SpecError
from ..shapes.core import INFERRED_ARGS


class Param:
    """A get_attr value: one of the module's own parameters or buffers."""

    def __init__(self, name: str, tensor):
        self.name, self.tensor = name, tensor


def op_name(target) -> str:
    """`aten.add_.Tensor` -> "add" (in-place variants read as the plain operator)."""
    packet = getattr(target, "overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


def op_text(target) -> str:
    """How an operator is named in messages: aten.foo."""
    text = str(target)
    return text.rsplit(".", 1)[0] if text.startswith("aten.") and text.count(".") >= 2 else text


def arguments(node) -> dict:
    """The operator's arguments by name, defaults filled in from its schema."""
    schema = node.target._schema
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def size(value):
    """[3, 3] -> 3, as torch takes kernel_size, stride, padding...; torch.Size and tuples as lists."""
    if isinstance(value, (list, tuple, torch.Size)):
        items = [int(v) for v in value]
        return items[0] if len(items) > 1 and len(set(items)) == 1 else items
    return value


def without_defaults(type_name: str, args: dict) -> dict:
    """Leave out what is at the spec type's default, and what shape inference fills in."""
    entry = registry.BUILTIN_TYPES[type_name]
    inferred = INFERRED_ARGS.get(type_name, ())
    return {k: v for k, v in args.items()
            if k not in inferred and not ("default" in entry.args.get(k, {}) and entry.args[k]["default"] == v)}


def _rank(node) -> int:
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):
        value = value[0]
    if value is None:
        raise SpecError(f"{op_text(node.target)} (node {node.name}): the program keeps no shape for it",
                        hint="export with torch.export, which records each value's shape")
    return value.dim()


# --- operators on a torch.nn layer's own parameters -> that layer -------------------------------
# each: (node, its arguments by name, their values: Param or a graph node) -> (type, args, data input)

def _conv(node, a):
    weight = a["weight"].tensor
    dims = weight.dim() - 2
    args = {"out_channels": weight.shape[0], "kernel_size": size(weight.shape[2:]), "stride": size(a["stride"]),
            "padding": a["padding"] if isinstance(a["padding"], str) else size(a["padding"]),
            "dilation": size(a["dilation"]), "groups": a["groups"], "bias": a["bias"] is not None}
    return f"Conv{dims}d", args, a["input"]


def _conv_transpose(node, a):
    weight = a["weight"].tensor
    dims = weight.dim() - 2
    args = {"out_channels": weight.shape[1] * a["groups"], "kernel_size": size(weight.shape[2:]),
            "stride": size(a["stride"]), "padding": size(a["padding"]), "output_padding": size(a["output_padding"]),
            "dilation": size(a["dilation"]), "groups": a["groups"], "bias": a["bias"] is not None}
    return f"ConvTranspose{dims}d", args, a["input"]


def _linear(node, a):
    return "Linear", {"out_features": a["weight"].tensor.shape[0], "bias": a["bias"] is not None}, a["input"]


def _batch_norm(node, a):
    rank = _rank(node)
    kind = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}.get(rank)
    if kind is None:
        raise SpecError(f"{op_text(node.target)} (node {node.name}) on a {rank}-d input has no BatchNorm layer")
    if a.get("training"):
        raise SpecError(f"{op_text(node.target)} (node {node.name}) normalises with the batch's statistics",
                        hint="export the module in eval mode (module.eval()) before torch.export")
    features = next(v.tensor.shape[0] for v in (a["weight"], a["running_mean"]) if v is not None)
    args = {"num_features": features, "eps": a["eps"], "momentum": a["momentum"],
            "affine": a["weight"] is not None, "track_running_stats": a["running_mean"] is not None}
    return kind, args, a["input"]


def _layer_norm(node, a):
    affine = a["weight"] is not None
    args = {"normalized_shape": size(a["normalized_shape"]), "eps": a["eps"], "elementwise_affine": affine,
            "bias": a["bias"] is not None if affine else True}
    return "LayerNorm", args, a["input"]


def _embedding(node, a):
    rows, width = a["weight"].tensor.shape
    padding = None if a["padding_idx"] == -1 else a["padding_idx"]
    args = {"num_embeddings": rows, "embedding_dim": width, "padding_idx": padding,
            "scale_grad_by_freq": a["scale_grad_by_freq"], "sparse": a["sparse"]}
    return "Embedding", args, a["indices"]


LAYER_OPS = {"conv1d": _conv, "conv2d": _conv, "conv3d": _conv, "conv_transpose1d": _conv_transpose,
             "conv_transpose2d": _conv_transpose, "conv_transpose3d": _conv_transpose, "linear": _linear,
             "batch_norm": _batch_norm, "_native_batch_norm_legit_no_training": _batch_norm,
             "layer_norm": _layer_norm, "embedding": _embedding}
MULTI_OUTPUT_OPS = {"_native_batch_norm_legit_no_training", "max_pool2d_with_indices"}   # only [0] read


# --- operators without parameters -> a tensor function, or a layer a spec has only as a layer -----
# each: (arguments by name) -> (spec type, its args, the tensor inputs)

def _unary(spec_type):
    return lambda a: (spec_type, {}, [a["self"]])


def _binary(spec_type):
    def read(a):
        if a.get("alpha", 1) != 1 or a.get("rounding_mode") is not None:
            raise _Unsupported("with alpha or rounding_mode")
        return spec_type, {}, [a["self"], a["other"]]
    return read


def _softmax(spec_type):
    return lambda a: (spec_type, {"dim": a["dim"]}, [a["self"]])


def _pool(kind, keys):
    def read(a):
        args = {k: size(a[k]) if isinstance(a[k], (list, tuple)) else a[k] for k in keys if k in a}
        if args.get("stride") in ([], args["kernel_size"]):
            args["stride"] = None                       # torch's default: the kernel size
        return kind, args, [a["self"]]
    return read


class _Unsupported(Exception):
    """An operator in the table called with arguments a spec cannot write (the text says which)."""


FUNCTION_OPS = {
    "relu": _unary("relu"), "sigmoid": _unary("sigmoid"), "tanh": _unary("tanh"), "silu": _unary("silu"),
    "gelu": lambda a: ("gelu", {"approximate": a["approximate"]}, [a["self"]]),
    "add": _binary("add"), "mul": _binary("mul"), "sub": _binary("sub"), "div": _binary("div"),
    "matmul": lambda a: ("matmul", {}, [a["self"], a["other"]]),
    "softmax": _softmax("softmax"), "_softmax": _softmax("softmax"),
    "log_softmax": _softmax("log_softmax"), "_log_softmax": _softmax("log_softmax"),
    "cat": lambda a: ("cat", {"dim": a["dim"]}, list(a["tensors"])),
    "flatten": lambda a: ("flatten", {"start_dim": a["start_dim"], "end_dim": a["end_dim"]}, [a["self"]]),
    "permute": lambda a: ("permute", {"dims": list(a["dims"])}, [a["self"]]),
    "transpose": lambda a: ("transpose", {"dim0": a["dim0"], "dim1": a["dim1"]}, [a["self"]]),
    "unsqueeze": lambda a: ("unsqueeze", {"dim": a["dim"]}, [a["self"]]),
    "mean": lambda a: ("mean", {"dim": a["dim"][0] if len(a["dim"] or ()) == 1 else a["dim"],
                                "keepdim": a["keepdim"]}, [a["self"]]),
    "max_pool2d": _pool("MaxPool2d", ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "max_pool2d_with_indices": _pool("MaxPool2d", ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "avg_pool2d": _pool("AvgPool2d", ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                      "divisor_override")),
    "adaptive_avg_pool2d": lambda a: ("AdaptiveAvgPool2d", {"output_size": size(a["output_size"])}, [a["self"]]),
    "dropout": lambda a: ("Dropout", {"p": a["p"]}, [a["input"]]),
    "hardtanh": lambda a: ("ReLU6", {}, [a["self"]]) if (a["min_val"], a["max_val"]) == (0, 6) else
    ("Hardtanh", {"min_val": a["min_val"], "max_val": a["max_val"]}, [a["self"]]),
    "select": lambda a: ("slice", {"at": _index(a["dim"], str(a["index"]))}, [a["self"]]),
    "slice": lambda a: ("slice", {"at": _index(a["dim"], _range(a["start"], a["end"], a["step"]))}, [a["self"]]),
}


def _index(dim: int, part: str) -> str:
    """x.select(1, -1) as the text `slice` reads: "[:, -1]" (a negative dim from the end: "[..., -1]")."""
    if dim < 0:
        return "[..., " + ", ".join([part] + [":"] * (-dim - 1)) + "]"
    return "[" + ", ".join([":"] * dim + [part]) + "]"


def _range(start, end, step) -> str:
    text = ("" if start in (None, 0) else str(start)) + ":" + ("" if end is None or end >= 2 ** 62 else str(end))
    return text + ("" if step in (None, 1) else f":{step}")
RESHAPES = {"view": "view", "reshape": "reshape", "_unsafe_view": "view"}     # their sizes need the batch as -1
IDENTITY_OPS = {"clone", "alias", "detach", "contiguous", "lift_fresh_copy"}
IGNORED_OPS = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size"}


def function_entry(node) -> tuple[str, dict, list]:
    """(spec type, its args at non-default values, the tensor inputs) of a parameterless operator."""
    read = FUNCTION_OPS[op_name(node.target)]
    try:
        spec_type, args, inputs = read(arguments(node))
    except _Unsupported as why:
        raise SpecError(f"{op_text(node.target)} (node {node.name}) {why} has no spec counterpart",
                        hint="see `specbuild list functions` for what a spec may call") from None
    if any(not hasattr(x, "op") for x in inputs):       # a number where the spec needs a layer's output
        raise SpecError(f"{op_text(node.target)} (node {node.name}) with a number operand has no spec counterpart",
                        hint="a spec's add, mul, sub, div combine layer outputs")
    return spec_type, without_defaults(spec_type, args), inputs
