"""Shape rules for torch.nn layer families: output shape and parameter shapes from
the spec's args (torch's constructor keywords, torch's defaults) and the input
shapes, in pure Python.  Each rule returns (output, {parameter name: shape}) with
torch's parameter names.  Here: linear, conv, pool, norm, dropout, activations;
`rearrange` and `sequence` hold the rest."""
from __future__ import annotations

import math

from .core import (REQUIRED, ShapeError, format_shape, known, norm_dim, rank, rule,
                     same_dim, tensor, too_small)

R = REQUIRED


def _bias(name, n, on):
    return {name: (n,)} if on else {}


@rule("Identity", **{"*": None})
def _identity(a, inputs):
    return tensor(a.type, inputs)[0], {}


@rule("Linear", inferred=("in_features",), in_features=R, out_features=R, bias=True)
def _linear(a, inputs):
    (x,) = tensor(a.type, inputs)
    rank(a.type, x, lo=1)
    n_in = a.check_size("in_features", x[-1], "features", x)
    out = a.int("out_features")
    return x[:-1] + (out,), {"weight": (out, n_in), **_bias("bias", out, a["bias"])}


@rule("Bilinear", inferred=("in1_features", "in2_features"), in1_features=R,
      in2_features=R, out_features=R, bias=True)
def _bilinear(a, inputs):
    x, y = tensor(a.type, inputs, 2)
    rank(a.type, x, lo=1)
    n1 = a.check_size("in1_features", x[-1], "features", x)
    n2 = a.check_size("in2_features", y[-1] if y else None, "features", y)
    try:
        if len(x) != len(y):
            raise ValueError
        lead = tuple(same_dim(p, q) for p, q in zip(x[:-1], y[:-1]))
    except ValueError:
        raise ShapeError(f"Bilinear's inputs {format_shape(x)} and {format_shape(y)} "
                         "differ before the last dim") from None
    out = a.int("out_features")
    return lead + (out,), {"weight": (out, n1, n2), **_bias("bias", out, a["bias"])}


# --- convolutions and pooling -------------------------------------------------------

_DIMS = {1: "L", 2: "H, W", 3: "D, H, W"}


def _spatial(a, x, n):
    r = rank(a.type, x, n + 1, n + 2, what=f" ([N,] C, {_DIMS[n]})")
    return r - n - 1      # the channel dim: 0 unbatched, 1 batched


def _conv(n, transposed):
    extra = {"output_padding": 0} if transposed else {}

    @rule(f"ConvTranspose{n}d" if transposed else f"Conv{n}d", inferred=("in_channels",),
          in_channels=R, out_channels=R, kernel_size=R, stride=1, padding=0, dilation=1,
          groups=1, bias=True, padding_mode="zeros", **extra)
    def conv(a, inputs):
        (x,) = tensor(a.type, inputs)
        c = _spatial(a, x, n)
        c_in = a.check_size("in_channels", x[c], "channels", x)
        c_out, g = a.int("out_channels"), a.int("groups")
        for name, v in (("in_channels", c_in), ("out_channels", c_out)):
            if v % g:
                raise ShapeError(f"{a.type}: {name} {v} is not divisible by groups {g} "
                                 f"(input {format_shape(x)})", arg="groups")
        k, s, d = a.ints("kernel_size", n, 1), a.ints("stride", n, 1), a.ints("dilation", n, 1)
        pad = a["padding"]
        mode = a.choice("padding_mode", ("zeros",) if transposed else
                        ("zeros", "reflect", "replicate", "circular"))
        if isinstance(pad, str) and not transposed:
            if a.choice("padding", ("same", "valid")) == "same" and s != (1,) * n:
                raise ShapeError(f"{a.type}: padding='same' needs stride 1, not {a['stride']}",
                                 arg="padding")
        p = (0,) * n if pad == "valid" else None if pad == "same" else a.ints("padding", n)
        op = a.ints("output_padding", n) if transposed else (0,) * n
        out = list(x)
        out[c] = c_out
        for i in range(n):
            L, j = x[c + 1 + i], c + 1 + i
            if op[i] >= s[i] and op[i] >= d[i]:
                raise ShapeError(f"{a.type}: output_padding {a['output_padding']} must be "
                                 f"smaller than stride or dilation", arg="output_padding")
            if not known(L) or p is None:
                out[j] = L if p is None else None
                continue
            if mode == "reflect" and p[i] >= L or mode == "circular" and p[i] > L:
                too_small(a, x, j, "padding", f"{mode} padding {p[i]}")
            span = d[i] * (k[i] - 1) + 1              # the dilated kernel
            if transposed:
                out[j] = (L - 1) * s[i] - 2 * p[i] + span + op[i]
                if out[j] < 1:
                    too_small(a, x, j, "padding", f"output size {out[j]}")
            elif L + 2 * p[i] < span:
                too_small(a, x, j, "kernel_size", f"padded {L + 2 * p[i]}, kernel "
                           f"{k[i]}" + (f" dilated to {span}" if d[i] > 1 else ""))
            else:
                out[j] = (L + 2 * p[i] - span) // s[i] + 1
        w = (c_in, c_out // g) if transposed else (c_out, c_in // g)
        return tuple(out), {"weight": w + k, **_bias("bias", c_out, a["bias"])}


def _pool_size(a, x, j, k, s, p, d, ceil):
    L = x[j]
    if not known(L):
        return None
    if p > k // 2:
        raise ShapeError(f"{a.type}: padding {p} is more than half of kernel_size {k}",
                         arg="padding")
    out = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= L + p:
        out -= 1                                   # the last window must start inside
    if out < 1:
        too_small(a, x, j, "kernel_size", f"padded {L + 2 * p}, kernel {k}"
                   + (f" dilated to {d * (k - 1) + 1}" if d > 1 else ""))
    return out


def _pool(kind, n):
    defaults = dict(kernel_size=R, stride=None, padding=0, ceil_mode=False)
    if kind == "Max":
        defaults.update(dilation=1, return_indices=False)
    elif kind == "Avg":
        defaults.update(count_include_pad=True, **({"divisor_override": None} if n > 1 else {}))
    else:
        defaults = dict(norm_type=R, kernel_size=R, stride=None, ceil_mode=False)

    @rule(f"{kind}Pool{n}d", **defaults)
    def pool(a, inputs):
        (x,) = tensor(a.type, inputs)
        c = _spatial(a, x, n)
        k = a.ints("kernel_size", n, 1)
        s = k if a["stride"] is None or a["stride"] == [] else a.ints("stride", n, 1)
        p = a.ints("padding", n) if "padding" in defaults else (0,) * n
        d = a.ints("dilation", n, 1) if kind == "Max" else (1,) * n
        if kind != "Max" and n == 3:        # torch's avg_pool3d checks this before padding
            for i in range(n):
                if known(x[c + 1 + i]) and x[c + 1 + i] < k[i]:
                    too_small(a, x, c + 1 + i, "kernel_size", f"kernel {k[i]}, before padding")
        out = x[:c + 1] + tuple(_pool_size(a, x, c + 1 + i, k[i], s[i], p[i], d[i],
                                           a["ceil_mode"]) for i in range(n))
        return ([out, out] if kind == "Max" and a["return_indices"] else out), {}


def _adaptive(kind, n):
    extra = {"return_indices": False} if kind == "Max" else {}

    @rule(f"Adaptive{kind}Pool{n}d", output_size=R, **extra)
    def pool(a, inputs):
        (x,) = tensor(a.type, inputs)
        c = _spatial(a, x, n)
        size = a["output_size"]
        size = [size] * n if isinstance(size, int) else size
        if not isinstance(size, (list, tuple)) or len(size) != n or any(
                (v is not None or n == 1) and (not isinstance(v, int) or v < 1) for v in size):
            raise ShapeError(f"{a.type}.output_size must be an int >= 1 or {n} of them"
                             + (" (None keeps the input's size)" if n > 1 else "")
                             + f", not {a['output_size']!r}", arg="output_size")
        out = x[:c + 1] + tuple(x[c + 1 + i] if v is None else v for i, v in enumerate(size))
        return ([out, out] if a["return_indices"] else out), {}


for _n in (1, 2, 3):
    _conv(_n, False)
    _conv(_n, True)
    for _k in ("Max", "Avg", "LP"):
        _pool(_k, _n)
    _adaptive("Max", _n)
    _adaptive("Avg", _n)


def _fractional(n):
    @rule(f"FractionalMaxPool{n}d", kernel_size=R, output_size=None, output_ratio=None,
          return_indices=False)
    def pool(a, inputs):
        (x,) = tensor(a.type, inputs)
        c = _spatial(a, x, n)
        k = a.ints("kernel_size", n, 1)
        if (a["output_size"] is None) == (a["output_ratio"] is None):
            raise ShapeError(f"{a.type} needs exactly one of output_size and output_ratio",
                             arg="output_size")
        if a["output_size"] is not None:
            size = a.ints("output_size", n, 1)
        else:
            r = a["output_ratio"]
            rs = [r] * n if isinstance(r, (int, float)) else r
            if not isinstance(rs, (list, tuple)) or len(rs) != n or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1
                    for v in rs):
                raise ShapeError(f"{a.type}.output_ratio must be in (0, 1), not {r!r}",
                                 arg="output_ratio")
            size = tuple(int(L * v) if known(L) else None for L, v in zip(x[c + 1:], rs))
        for i, (L, o) in enumerate(zip(x[c + 1:], size)):
            # torch: output + kernel - 1 <= input in 2d, < input in 3d
            if known(L, o) and (o + k[i] - 1 > L - (n == 3) or o < 1):
                too_small(a, x, c + 1 + i, "kernel_size", f"an output of {o} with kernel "
                           f"{k[i]} needs {o + k[i] - 1}")
        out = x[:c + 1] + size
        return ([out, out] if a["return_indices"] else out), {}


def _unpool(n):
    @rule(f"MaxUnpool{n}d", kernel_size=R, stride=None, padding=0)
    def unpool(a, inputs):
        # inputs: the pooled values and MaxPool's indices, both the same shape
        x, idx = tensor(a.type, inputs, 2)
        c = _spatial(a, x, n)
        if len(idx) != len(x) or any(known(p, q) and p != q for p, q in zip(x, idx)):
            raise ShapeError(f"{a.type}: indices {format_shape(idx)} must have the shape of "
                             f"its input {format_shape(x)}")
        k = a.ints("kernel_size", n, 1)
        s = k if a["stride"] is None else a.ints("stride", n, 1)
        p = a.ints("padding", n)
        out = list(x)
        for i in range(n):
            L = x[c + 1 + i]
            out[c + 1 + i] = (L - 1) * s[i] - 2 * p[i] + k[i] if known(L) else None
            if known(L) and out[c + 1 + i] < 1:
                too_small(a, x, c + 1 + i, "padding", f"output size {out[c + 1 + i]}")
        return tuple(out), {}


for _n in (1, 2, 3):
    _unpool(_n)
    if _n > 1:
        _fractional(_n)


# --- normalization -------------------------------------------------------------------

def _norm(name, ranks, chan_dim, affine, track, **extra):
    @rule(name, inferred=("num_features",), num_features=R, eps=1e-5, momentum=0.1,
          affine=affine, track_running_stats=track, bias=True, **extra)
    def norm(a, inputs):
        (x,) = tensor(a.type, inputs)
        rank(a.type, x, *ranks) if ranks else rank(a.type, x, lo=2)
        c = chan_dim(len(x))
        num = a.check_size("num_features", x[c], "channels", x)
        instance = name.startswith("Instance")   # the values one channel's statistics see:
        seen = x[c + 1:] if instance else x[:c] + x[c + 1:]     # with N, a batch of 1 is the data's fault
        if known(*seen) and math.prod(seen) == 1:
            raise ShapeError(f"{name} needs more than one {'spatial element' if instance else 'value'} "
                             f"per channel to train, but its input is {format_shape(x)}")
        return x, _affine(a, num, "affine")


def _affine(a, num, flag):
    if not a[flag]:
        return {}
    return {"weight": (num,), **_bias("bias", num, a["bias"])}


_norm("BatchNorm1d", (2, 3), lambda r: 1, True, True)
_norm("BatchNorm2d", (4,), lambda r: 1, True, True)
_norm("BatchNorm3d", (5,), lambda r: 1, True, True)
_norm("SyncBatchNorm", (), lambda r: 1, True, True, process_group=None)
for _n in (1, 2, 3):   # unbatched (C, *spatial) has its channels at dim 0
    _norm(f"InstanceNorm{_n}d", (_n + 1, _n + 2), lambda r, n=_n: r - n - 1, False, False)


@rule("GroupNorm", inferred=("num_channels",), num_groups=R, num_channels=R, eps=1e-5,
      affine=True, bias=True)
def _group_norm(a, inputs):
    (x,) = tensor(a.type, inputs)
    rank(a.type, x, lo=2)
    c = a.check_size("num_channels", x[1], "channels", x)
    g = a.int("num_groups")
    if c % g:
        raise ShapeError(f"GroupNorm: num_channels {c} is not divisible by num_groups {g}"
                         f" (input {format_shape(x)})", arg="num_groups")
    return x, _affine(a, c, "affine")


def _layer_norm(a, x):
    ns = a.v["normalized_shape"]
    if ns is R or ns is None:
        n = a.check_size("normalized_shape", x[-1] if x else None, "last dim", x)
        return (n,)
    ns_t = (ns,) if isinstance(ns, int) else tuple(ns) if isinstance(ns, (list, tuple)) else ()
    if not ns_t or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in ns_t):
        raise ShapeError(f"{a.type}.normalized_shape must be an int or a list of ints, not "
                         f"{ns!r}", arg="normalized_shape")
    tail = x[len(x) - len(ns_t):] if len(ns_t) <= len(x) else None
    if tail is None or any(known(t) and t != v or isinstance(t, str) for t, v in zip(tail, ns_t)):
        raise ShapeError(f"normalized_shape is {list(ns_t)} but its input {format_shape(x)} "
                         f"ends in {format_shape(tail or x)}",
                         "drop normalized_shape to infer it from the last dim", arg="normalized_shape")
    return ns_t


@rule("LayerNorm", inferred=("normalized_shape",), normalized_shape=R, eps=1e-5,
      elementwise_affine=True, bias=True)
def _layernorm(a, inputs):
    (x,) = tensor(a.type, inputs)
    ns = _layer_norm(a, x)
    if not a["elementwise_affine"]:
        return x, {}
    return x, {"weight": ns, **({"bias": ns} if a["bias"] else {})}


@rule("RMSNorm", inferred=("normalized_shape",), normalized_shape=R, eps=None,
      elementwise_affine=True)
def _rmsnorm(a, inputs):
    (x,) = tensor(a.type, inputs)
    ns = _layer_norm(a, x)
    return x, ({"weight": ns} if a["elementwise_affine"] else {})


@rule("LocalResponseNorm", "CrossMapLRN2d", size=R, alpha=1e-4, beta=0.75, k=1)
def _lrn(a, inputs):
    (x,) = tensor(a.type, inputs)
    rank(a.type, x, 4) if a.type == "CrossMapLRN2d" else rank(a.type, x, lo=3)
    a.int("size")
    return x, {}


# --- dropout and activations ------------------------------------------------------------

# the input ranks each dropout takes: any (None), these, or at least (an int: feature dropout)
_DROPOUT_RANKS = {"Dropout": None, "AlphaDropout": None, "FeatureAlphaDropout": 2,
                  "Dropout1d": (2, 3), "Dropout2d": (3, 4), "Dropout3d": (4, 5)}
_ACTIVATIONS = {
    "ReLU": dict(inplace=False), "ReLU6": dict(inplace=False), "SELU": dict(inplace=False),
    "SiLU": dict(inplace=False), "Mish": dict(inplace=False),
    "Hardsigmoid": dict(inplace=False), "Hardswish": dict(inplace=False),
    "Sigmoid": {}, "Tanh": {}, "Softsign": {}, "Tanhshrink": {}, "LogSigmoid": {},
    "LeakyReLU": dict(negative_slope=0.01, inplace=False),
    "ELU": dict(alpha=1.0, inplace=False), "CELU": dict(alpha=1.0, inplace=False),
    "GELU": dict(approximate="none"), "Softplus": dict(beta=1.0, threshold=20.0),
    "Hardtanh": dict(min_val=-1.0, max_val=1.0, inplace=False, min_value=None, max_value=None),
    "Threshold": dict(threshold=R, value=R, inplace=False),
    "Hardshrink": dict(lambd=0.5), "Softshrink": dict(lambd=0.5),
    "RReLU": dict(lower=1 / 8, upper=1 / 3, inplace=False),
    "Softmax": dict(dim=None), "LogSoftmax": dict(dim=None), "Softmin": dict(dim=None),
    "Softmax2d": {}, "GLU": dict(dim=-1), "PReLU": dict(num_parameters=1, init=0.25),
}


def _dropout(a, inputs):
    (x,) = tensor(a.type, inputs)
    ranks = _DROPOUT_RANKS[a.type]
    if isinstance(ranks, int):
        rank(a.type, x, lo=ranks)
    elif ranks:
        rank(a.type, x, *ranks)
    a.prob("p")
    return x, {}


def _activation(a, inputs):
    (x,) = tensor(a.type, inputs)
    t = a.type
    if a.v.get("dim") is not None:
        norm_dim(a["dim"], len(x), "dim", t)
    if t == "GELU":
        a.choice("approximate", ("none", "tanh"))
    for old, new in (("min_value", "min_val"), ("max_value", "max_val")):
        if a.v.get(old) is not None:        # torch's deprecated aliases win
            a.v[new] = a.v[old]
    if t == "Hardtanh" and not a["max_val"] > a["min_val"]:
        raise ShapeError(f"Hardtanh: max_val {a['max_val']} must exceed min_val "
                         f"{a['min_val']}", arg="max_val")
    if t == "Softmax2d":
        rank(t, x, 3, 4)
    if t == "GLU":
        d = norm_dim(a["dim"], len(x), "dim", t)
        if known(x[d]) and x[d] % 2 or isinstance(x[d], str):
            raise ShapeError(f"GLU halves dim {a['dim']} but it is {x[d]} in "
                             f"{format_shape(x)}", "give GLU an even size", arg="dim")
        return x[:d] + (x[d] // 2 if known(x[d]) else None,) + x[d + 1:], {}
    if t == "PReLU":
        n = a.int("num_parameters")
        c = x[1] if len(x) >= 2 else x[0] if x else None
        if n != 1 and (isinstance(c, str) or known(c) and c != n or not x):   # 0-d: no channels
            raise ShapeError(f"PReLU.num_parameters is {n} but its input has {c if x else 'no'} channels "
                             f"(input shape {format_shape(x)})", "use 1 or the channel count",
                             arg="num_parameters")
        return x, {"weight": (n,)}
    return x, {}


for _name in _DROPOUT_RANKS:
    rule(_name, p=0.5, inplace=False)(_dropout)
for _name, _defaults in _ACTIVATIONS.items():
    rule(_name, **_defaults)(_activation)

