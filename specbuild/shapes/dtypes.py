"""Dtype rules: which input dtypes each layer type takes and which dtype it gives, in pure
Python beside the shape rules.  Each claim here was read off torch on the CPU (the meta
device skips the kernels' dtype checks: softmax of int64 "runs" there), and
tests/test_dtypes.py keeps every type in step with torch.

A dtype is torch's name ("float32", "int64", "bool"); a multi-value output has a list of
them shaped like the output (LSTM's [out, [h, c]]).  `DTYPE_RULES[type]` is called after
the type's shape rule as policy(a, inputs, dtypes, output, params, inner) and returns the
output's dtype or raises DtypeError; `inner` is the dtype a rule of nested layers found.

In short: a layer with weights takes float32 (its weights' dtype) and gives float32, except
the norm layers, which also take float16 and bfloat16; Embedding takes integer indices;
shape ops keep the dtype; arithmetic follows torch's type promotion (div of ints gives
float32); most activations and every reduction but sum, amax, amin need floating input.
"""
from __future__ import annotations

import math

from ..inputs import DTYPES
from .core import DTYPE_RULES, FLOAT32, DtypeError, _like

FLOATS = ("float32", "float64", "float16", "bfloat16")
INTS = ("int64", "int32")
NUMBERS = FLOATS + INTS
ANY = NUMBERS + ("bool",)
F32 = (FLOAT32,)
MIXED = ("float32", "float16", "bfloat16")     # a norm's float32 weights take these inputs (CPU)
MASKS = (FLOAT32, "bool")                      # attention masks


def describe(accepts) -> str:
    """What a layer takes, in words: "float32 input", "floating-point input"."""
    words = {F32: "float32 input", FLOATS: "floating-point input", INTS: "integer input (int64 or int32)",
             NUMBERS: "numeric input (not bool)", MASKS: "a float32 or bool mask"}
    if tuple(accepts) in words:
        return words[tuple(accepts)]
    return "input of dtype " + ", ".join(accepts[:-1]) + " or " + accepts[-1]


def need(a, dtypes, i, accepts, want=None):
    d = dtypes[i]
    if d not in accepts:
        raise DtypeError(a.type, want or describe(accepts), _text(d), i)
    return d


def _text(d) -> str:
    return d if isinstance(d, str) else "a multi-value (" + ", ".join(map(_text, d)) + ")"


def register(policy, *names):
    for name in names:
        DTYPE_RULES[name] = policy


# --- torch's type promotion ---------------------------------------------------------------------

def _category(d) -> int:
    return 2 if d in FLOATS else 1 if d in INTS else 0


def promote(x, y):
    """torch.promote_types for the dtypes a spec can hold."""
    if x == y:
        return x
    cx, cy = _category(x), _category(y)
    if cx != cy:
        return x if cx > cy else y
    if cx == 2:    # float16 with bfloat16 meets at float32
        return "float64" if "float64" in (x, y) else FLOAT32
    return "int64"


def result_type(dtypes, shapes=None, scalars=()):
    """torch.result_type: tensors with dims decide within a category; 0-d tensors and Python
    scalars (`scalars`: bool, int or float values) count only when of a higher category."""
    shapes = shapes or [None] * len(dtypes)
    dimmed = [d for d, s in zip(dtypes, shapes) if s != ()]
    zero = [d for d, s in zip(dtypes, shapes) if s == ()]
    wrapped = [FLOAT32 if isinstance(v, float) else "bool" if isinstance(v, bool) else "int64"
               for v in scalars if v is not None]

    def fold(ds):
        out = None
        for d in ds:
            out = d if out is None else promote(out, d)
        return out

    def combine(higher, lower):
        if higher is None or lower is None:
            return higher or lower
        if _category(higher) == 2:
            return higher
        if higher == "bool" or _category(lower) > _category(higher):
            return promote(higher, lower)
        return higher
    return combine(fold(dimmed), combine(fold(zero), fold(wrapped)))


# --- policies -----------------------------------------------------------------------------------

def unary(accepts, out="same"):
    """One tensor in: its dtype must be one of `accepts`; the output keeps it ("same"),
    becomes float32 when not floating ("float") or int64 when not floating ("int64")."""
    def policy(a, inputs, dtypes, output, params, inner):
        d = need(a, dtypes, 0, accepts)
        if out != "same" and d not in FLOATS:
            d = FLOAT32 if out == "float" else "int64"
        return _like(output, d)
    return policy


def pool(accepts, indexed=None):
    """Pooling: a multi-value output is (values, int64 indices); `indexed` is what it takes
    then, when that differs (MaxPool1d takes integers only with return_indices)."""
    def policy(a, inputs, dtypes, output, params, inner):
        if isinstance(output, list):
            return [need(a, dtypes, 0, indexed or accepts), "int64"]
        return need(a, dtypes, 0, accepts)
    return policy


# the largest finite value of each dtype: torch refuses to turn a larger argument into it
_LARGEST = {"float16": 65504.0, "bfloat16": 3.3895e38, FLOAT32: 3.4028e38, "int32": 2 ** 31 - 1,
            "int64": 2 ** 63 - 1}


def _fit(a, dtype, what: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not math.isfinite(v):
        return                                   # inf and nan are every float dtype's
    if abs(v) > _LARGEST.get(dtype, math.inf):   # an int compares exactly, however large
        digits = str(v)
        shown = (f"{v:g}" if isinstance(v, float) else digits if len(digits) < 25
                 else f"{digits[:8]}... ({len(digits)} digits)")
        raise DtypeError(a.type, f"a dtype that holds {what} {shown}", dtype, 0,
                         hint=f"{dtype} holds at most {_LARGEST[dtype]:{',' if dtype in INTS else 'g'}}")


def fitting(policy, *names):
    """`policy`, and the arguments `names` (torch turns them into the output's dtype) fit it:
    ConstantPad's value 1e5 has no float16."""
    def checked(a, inputs, dtypes, output, params, inner):
        d = policy(a, inputs, dtypes, output, params, inner)
        for name in names:
            _fit(a, d, name, a[name])
        return d
    return checked


def lp_pool(accepts):
    """LPPool: as unary(accepts, "float"), and torch turns norm_type, 1 / norm_type and the
    kernel's size into the output's dtype."""
    base = unary(accepts, "float")

    def policy(a, inputs, dtypes, output, params, inner):
        d = base(a, inputs, dtypes, output, params, inner)
        p, k = a["norm_type"], a["kernel_size"]
        kernel = math.prod(k) if isinstance(k, (list, tuple)) else k
        for what, v in (("norm_type", p), ("1 / norm_type", 1 / p), ("the kernel's size", kernel)) if (
                isinstance(p, (int, float)) and p) else ():
            _fit(a, d, what, v)
        return d
    return policy


def weighted(tensors=1):
    """A layer with float32 weights: its first `tensors` inputs (an RNN's state too) must be
    float32; masks after them float32 or bool."""
    def policy(a, inputs, dtypes, output, params, inner):
        for i, d in enumerate(dtypes):
            if i < tensors or isinstance(d, list):
                for leaf in _leaves(d):
                    if leaf != FLOAT32:
                        raise DtypeError(a.type, describe(F32), _text(d), i,
                                         hint=None if i else _weights_hint(leaf))
            else:
                need(a, dtypes, i, MASKS)
        return _like(output, FLOAT32)
    return policy


def _weights_hint(got) -> str:
    if got in INTS:
        return "its weights are float32; token ids go through an Embedding first"
    return "its weights are float32"


def _leaves(d):
    return [leaf for x in d for leaf in _leaves(x)] if isinstance(d, list) else [d]


def norm(stats=False):
    """Norm layers: float32 weights (or BatchNorm's float32 running stats, `stats`) take float32,
    float16 or bfloat16 input; without them any floating input.  The output keeps its dtype."""
    def policy(a, inputs, dtypes, output, params, inner):
        running = stats and a["track_running_stats"]
        return need(a, dtypes, 0, MIXED if params or running else FLOATS)
    return policy


def nested(a, inputs, dtypes, output, params, inner):
    """Sequential and the weight wrappers: the nested layers decided."""
    return inner


def promoting(accepts=ANY, out="same", joins=False):
    """Arithmetic and joins: torch's promotion of the inputs' dtypes, folded pairwise as the
    forward calls it (a + b + c); a 0-d tensor counts less, except in a join (cat, stack).
    out="float": an integer result becomes float32 (div); "floating": it must be floating."""
    def policy(a, inputs, dtypes, output, params, inner):
        for i in range(len(dtypes)):
            need(a, dtypes, i, accepts)
        if joins:
            d = result_type(dtypes)
        else:
            d, shape = dtypes[0], inputs[0]
            for y, dy in zip(inputs[1:], dtypes[1:]):
                d, shape = result_type([d, dy], [shape, y]), () if shape == y == () else None
        if out == "floating" and d not in FLOATS:
            raise DtypeError(a.type, "floating-point input (one input at least)", d, 0)
        return FLOAT32 if out == "float" and d not in FLOATS else d
    return policy


def _matmul(a, inputs, dtypes, output, params, inner):
    d = need(a, dtypes, 0, NUMBERS)
    for i in range(1, len(dtypes)):      # no promotion: one dtype
        need(a, dtypes, i, (d,), f"the dtype of its first input ({d})")
    return d


def _clamp(a, inputs, dtypes, output, params, inner):
    need(a, dtypes, 0, ANY)
    return result_type(dtypes[:1], inputs[:1], (a["min"], a["max"]))


def _item(a, inputs, dtypes, output, params, inner):
    return dtypes[0][a["index"]]


def _embedding(a, inputs, dtypes, output, params, inner):
    for i in range(min(len(dtypes), 2)):      # the indices (and EmbeddingBag's offsets)
        need(a, dtypes, i, INTS, "integer indices (int64 or int32)" if i == 0 else "integer offsets")
    if len(dtypes) == 3:                      # EmbeddingBag's per_sample_weights
        need(a, dtypes, 2, F32, "float32 per_sample_weights")
    return FLOAT32


def _masked_fill(a, inputs, dtypes, output, params, inner):
    need(a, dtypes, 1, ("bool",), "a bool mask")
    d = need(a, dtypes, 0, ANY)
    if d in INTS and isinstance(a["value"], float) and not math.isfinite(a["value"]):
        raise DtypeError(a.type, f"a floating-point input to fill with {a['value']}", d, 0)
    _fit(a, d, "value", a["value"])
    return d


def _where(a, inputs, dtypes, output, params, inner):
    need(a, dtypes, 0, ("bool",), "a bool condition")
    return result_type(dtypes[1:], inputs[1:])


def _attention(a, inputs, dtypes, output, params, inner):
    d = need(a, dtypes, 0, FLOATS)
    for i in (1, 2):
        need(a, dtypes, i, (d,), f"the dtype of its query ({d})")
    if len(dtypes) == 4:      # torch: "bool or float or match query dtype"
        masks = tuple(dict.fromkeys(("bool", FLOAT32, d)))
        need(a, dtypes, 3, masks, "a " + ", ".join(masks[:-1]) + f" or {masks[-1]} mask")
    return d


def _positions(a, inputs, dtypes, output, params, inner):
    return "int64"


def tensor_dtype(value, dtype=None):
    """torch.tensor(value, dtype=dtype)'s dtype (a spec's name, or None: float32 for any float, int64 for
    any int, bool for bools), and a number of `value` it cannot hold, or None.  Integer dtypes hold
    only numbers in their range (1.5 becomes 1); floats hold any (torch turns 1e300 into inf)."""
    leaves, stack = [], [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        else:
            leaves.append(v)
    if dtype is not None:
        d = DTYPES.get(dtype, FLOAT32)
    elif any(isinstance(v, float) for v in leaves) or not leaves:
        d = FLOAT32
    else:
        d = "int64" if any(not isinstance(v, bool) for v in leaves) else "bool"
    for v in leaves if d in INTS else ():
        if isinstance(v, float) and not math.isfinite(v) or abs(v) > _LARGEST[d]:
            return d, v
    return d, None


def _constant(a, inputs, dtypes, output, params, inner):
    return tensor_dtype(a["value"], a["dtype"])[0]


def _unpool(a, inputs, dtypes, output, params, inner):
    d = need(a, dtypes, 0, FLOATS)
    need(a, dtypes, 1, ("int64",), "int64 indices (a MaxPool's with return_indices)")
    return d


# --- the table ----------------------------------------------------------------------------------

def _family(*stems, dims=(1, 2, 3)):
    return [f"{stem}{n}d" for stem in stems for n in dims]


register(unary(ANY), "Identity", "Flatten", "Unflatten", "ChannelShuffle", "PixelShuffle", "PixelUnshuffle",
         *_family("ZeroPad", "CircularPad"), "flatten", "reshape", "view", "permute",
         "transpose", "unsqueeze", "squeeze", "slice", "amax", "amin", "chunk", "split", "unflatten", "expand",
         "repeat_interleave", "tril", "triu")
register(unary(NUMBERS), "ReLU", "ReLU6", "relu", "abs", *_family("ReflectionPad", "ReplicationPad"))
register(fitting(unary(ANY), "value"), *_family("ConstantPad"))
register(fitting(unary(NUMBERS), "min_val", "max_val"), "Hardtanh")
register(fitting(unary(NUMBERS), "value"), "Threshold")
register(unary(FLOATS), "AlphaDropout", "FeatureAlphaDropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
         "dropout", "ELU", "CELU", "GELU", "GLU", "SELU", "SiLU", "Mish", "Hardsigmoid",
         "Hardswish", "LeakyReLU", "LogSigmoid", "Softmax", "Softmax2d", "Softmin", "LogSoftmax", "Softplus",
         "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "CrossMapLRN2d", "softmax",
         "log_softmax", "elu", "gelu", "leaky_relu", "silu", "softplus", "mean", "RMSNorm")
register(fitting(unary(FLOATS), "lambd"), "Hardshrink", "Softshrink")
register(unary(("float32", "float64", "bfloat16")), "RReLU")              # no float16 kernel
register(unary(("float32", "float64")), "LocalResponseNorm")              # 4-d float16 has no kernel
register(unary(FLOATS + ("bool",)), "Unfold", "Fold")
register(unary(ANY, "float"), "sigmoid", "tanh", "exp", "log", "Sigmoid", "Tanh")
register(lp_pool(ANY), "LPPool1d", "LPPool2d")
register(lp_pool(("float32", "float64") + INTS + ("bool",)), "LPPool3d")
register(unary(NUMBERS, "float"), "Softsign", "Tanhshrink")
register(unary(FLOATS + ("int64",)), "AvgPool1d", "AvgPool2d")
register(unary(("float32", "float64", "int64")), "AvgPool3d")
register(unary(ANY, "int64"), "sum")
register(pool(NUMBERS), *_family("MaxPool", dims=(2, 3)))
register(pool(FLOATS, indexed=NUMBERS), "MaxPool1d")
register(pool(FLOATS), *_family("AdaptiveAvgPool", "AdaptiveMaxPool"), "FractionalMaxPool2d",
         "FractionalMaxPool3d")
register(weighted(), "Linear", *_family("Conv", "ConvTranspose"), "PReLU")
register(weighted(2), "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")     # the state too
register(weighted(2), "Bilinear")
register(weighted(3), "MultiheadAttention")
register(weighted(1), "TransformerEncoderLayer", "TransformerEncoder")
register(weighted(2), "TransformerDecoderLayer", "TransformerDecoder", "Transformer")
register(norm(stats=True), *_family("BatchNorm"), "SyncBatchNorm")
register(norm(), *_family("InstanceNorm"), "GroupNorm", "LayerNorm")
register(nested, "Sequential", "weight_norm", "spectral_norm")
register(promoting(), "add", "mul")
register(promoting(joins=True), "cat", "stack")
register(promoting(NUMBERS), "sub")
register(promoting(out="float"), "div")
register(promoting(out="floating"), "CosineSimilarity")
register(promoting(NUMBERS, out="float"), "PairwiseDistance")
register(_matmul, "matmul")
register(fitting(_clamp, "min", "max"), "clamp")
register(_item, "item")
register(_embedding, "Embedding", "EmbeddingBag")
register(_unpool, *_family("MaxUnpool"))
register(_masked_fill, "masked_fill")
register(_where, "where")
register(_attention, "scaled_dot_product_attention")
register(_positions, "arange")
register(_constant, "constant")
