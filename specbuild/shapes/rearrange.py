"""Shape rules for torch.nn's rearranging, resampling, padding, folding, embedding
and distance layers, and the wrappers that take a layer (weight_norm,
spectral_norm).  Same contract as `layers`: (output, {parameter name: shape})."""
from __future__ import annotations

import math

from ..errors import did_you_mean
from .ops import _flatten, broadcast
from .core import (REQUIRED, DtypeError, ShapeError, format_shape, infer, known, norm_dim, rank,
                     rule, tensor, too_small)

R = REQUIRED
BIG = 10 ** 12


# --- rearranging -----------------------------------------------------------------------

@rule("Flatten", start_dim=1, end_dim=-1)
def _nn_flatten(a, inputs):
    return _flatten(a, inputs)


@rule("Unflatten", dim=R, unflattened_size=R)
def _unflatten(a, inputs):
    (x,) = tensor(a.type, inputs)
    d = norm_dim(a["dim"], len(x), "dim", a.type)
    sizes = a["unflattened_size"]
    if (not isinstance(sizes, (list, tuple)) or list(sizes).count(-1) > 1
            or any(not isinstance(s, int) or s < -1 for s in sizes)):
        raise ShapeError(f"Unflatten.unflattened_size must be a list of ints (one may be -1), "
                         f"not {sizes!r}", arg="unflattened_size")
    prod = math.prod(s for s in sizes if s != -1)
    size = x[d]
    bad = isinstance(size, str) or known(size) and (
        size % prod if -1 in sizes and prod else size != prod)
    if bad:
        raise ShapeError(f"Unflatten: dim {a['dim']} of {format_shape(x)} is {size}, which "
                         f"does not split into {list(sizes)}", arg="unflattened_size")
    fill = size // prod if known(size) and prod else None
    sizes = tuple(fill if s == -1 else s for s in sizes)
    return x[:d] + sizes + x[d + 1:], {}


@rule("ChannelShuffle", groups=R)
def _channel_shuffle(a, inputs):
    (x,) = tensor(a.type, inputs)
    rank(a.type, x, lo=3)
    g = a.int("groups")
    if isinstance(x[1], str) or known(x[1]) and x[1] % g:
        raise ShapeError(f"ChannelShuffle: {x[1]} channels in {format_shape(x)} are not "
                         f"divisible by groups {g}", arg="groups")
    return x, {}


# --- resampling and padding ------------------------------------------------------------

_MODES = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}


@rule("Upsample", size=None, scale_factor=None, mode="nearest", align_corners=None,
      recompute_scale_factor=None)
@rule("UpsamplingNearest2d", "UpsamplingBilinear2d", size=None, scale_factor=None)
def _upsample(a, inputs):
    (x,) = tensor(a.type, inputs)
    if a.type != "Upsample":            # Upsample with a fixed mode
        bilinear = a.type == "UpsamplingBilinear2d"
        a.v.update(mode="bilinear" if bilinear else "nearest", align_corners=bilinear or None)
    mode = a["mode"]
    want = _MODES.get(mode, (3, 4, 5))
    if mode not in _MODES and mode not in ("nearest", "nearest-exact", "area"):
        a.choice("mode", ("nearest", "nearest-exact", "area", *_MODES))
    rank(a.type, x, *(want if isinstance(want, tuple) else (want,)), what=f" for mode {mode!r}")
    if a["align_corners"] is not None and mode not in _MODES:
        raise ShapeError(f"{a.type}: align_corners only goes with the modes "
                         + ", ".join(_MODES), arg="align_corners")
    n = len(x) - 2
    size, sf = a["size"], a["scale_factor"]
    if (size is None) == (sf is None):
        raise ShapeError(f"{a.type} needs exactly one of size and scale_factor", arg="size")
    if size is not None:
        out = a.ints("size", n, 1)
    else:
        sfs = [sf] * n if isinstance(sf, (int, float)) else sf
        if not isinstance(sfs, (list, tuple)) or len(sfs) != n or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf
                for v in sfs):
            raise ShapeError(f"{a.type}.scale_factor must be a positive number or {n} of "
                             f"them, not {sf!r}", arg="scale_factor")
        try:
            out = tuple(math.floor(float(L) * f) if known(L) else None
                        for L, f in zip(x[2:], sfs))
        except OverflowError:       # float(a huge int), or a product beyond float's range
            raise ShapeError(f"{a.type}: scale_factor {sf} makes {format_shape(x)} too large",
                             arg="scale_factor") from None
        if any(v == 0 for v in out):
            raise ShapeError(f"{a.type}: scale_factor {sf} shrinks {format_shape(x)} to "
                             "a zero size", arg="scale_factor")
    return x[:2] + tuple(out), {}


@rule("PixelShuffle", upscale_factor=R)
@rule("PixelUnshuffle", downscale_factor=R)
def _pixel_shuffle(a, inputs):
    (x,) = tensor(a.type, inputs)
    rank(a.type, x, lo=3)
    up = a.type == "PixelShuffle"
    name = "upscale_factor" if up else "downscale_factor"
    r = a.int(name)
    c, h, w = x[-3:]
    for v, m in ([(c, r * r)] if up else [(h, r), (w, r)]):
        if isinstance(v, str) or known(v) and v % m:
            raise ShapeError(f"{a.type}: {v} in {format_shape(x)} is not divisible by {m} "
                             f"({name} {r})", arg=name)

    if up:
        return x[:-3] + (_mul(c, 1, r * r), _mul(h, r, 1), _mul(w, r, 1)), {}
    return x[:-3] + (_mul(c, r * r, 1), _mul(h, 1, r), _mul(w, 1, r)), {}


def _mul(v, m, d):
    return v * m // d if known(v) else None


def _padding(kind, n):
    extra = {"value": R} if kind == "Constant" else {}

    @rule(f"{kind}Pad{n}d", padding=R, **extra)
    def pad(a, inputs):
        (x,) = tensor(a.type, inputs)
        given = a["padding"]               # like F.pad, a shorter list pads fewer dims
        m = len(given) // 2 if isinstance(given, (list, tuple)) and len(given) in (2, 4, 6) else n
        p = a.ints("padding", 2 * m, -BIG)
        if kind in ("Zero", "Constant"):
            rank(a.type, x, lo=m)
        else:
            rank(a.type, x, m + 1, m + 2)
        out = list(x)
        for i in range(m):                 # (left, right) pads the last dim, then up
            j, lo, hi = len(x) - 1 - i, p[2 * i], p[2 * i + 1]
            if not known(x[j]):
                out[j] = x[j] if lo == hi == 0 else None
                continue
            L = x[j]
            if kind == "Reflection" and max(lo, hi) >= L:
                too_small(a, x, j, "padding", f"reflection pads {lo}, {hi} must be < {L}")
            if kind == "Circular" and max(lo, hi) > L:
                too_small(a, x, j, "padding", f"circular pads {lo}, {hi} must be <= {L}")
            out[j] = L + lo + hi
            if L + min(lo, 0) + min(hi, 0) < 0:        # torch crops first, then pads
                too_small(a, x, j, "padding", f"pads {lo}, {hi} crop more than {L}")
            if out[j] < 1:
                too_small(a, x, j, "padding", f"pads {lo}, {hi} leave {out[j]}")
        return tuple(out), {}


for _n in (1, 2, 3):
    for _k in ("Zero", "Constant", "Reflection", "Replication", "Circular"):
        _padding(_k, _n)


@rule("Unfold", kernel_size=R, dilation=1, padding=0, stride=1)
@rule("Fold", output_size=R, kernel_size=R, dilation=1, padding=0, stride=1)
def _fold(a, inputs):
    # Unfold: (N, C, H, W) -> (N, C*kh*kw, blocks); Fold the reverse onto output_size
    (x,) = tensor(a.type, inputs)
    fold = a.type == "Fold"
    c = rank(a.type, x, *((2, 3) if fold else (3, 4))) - (2 if fold else 3)
    k, d = a.ints("kernel_size", 2, 1), a.ints("dilation", 2, 1)
    p, s = a.ints("padding", 2), a.ints("stride", 2, 1)
    spatial = a.ints("output_size", 2, 1) if fold else x[c + 1:]
    blocks = 1
    for i, L in enumerate(spatial):
        n = (L + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 if known(L) else None
        if n is not None and n < 1:
            raise ShapeError(f"{a.type}: kernel_size {a['kernel_size']} is too large for "
                             f"{'output_size' if fold else 'its input'} {format_shape(spatial)}",
                             arg="kernel_size")
        blocks = blocks * n if known(blocks, n) else None
    kk = k[0] * k[1]
    if not fold:
        return x[:c] + (x[c] * kk if known(x[c]) else None, blocks), {}
    if isinstance(x[c], str) or known(x[c]) and x[c] % kk:
        raise ShapeError(f"Fold: dim {c} of {format_shape(x)} is not divisible by the "
                         f"kernel's {kk} elements", arg="kernel_size")
    if isinstance(x[c + 1], str) or known(x[c + 1], blocks) and x[c + 1] != blocks:
        raise ShapeError(f"Fold: its input {format_shape(x)} has {x[c + 1]} blocks but "
                         f"output_size {list(spatial)} makes {blocks}", arg="output_size")
    return x[:c] + (x[c] // kk if known(x[c]) else None,) + spatial, {}


# --- embeddings and wrappers -----------------------------------------------------------

_EMB = dict(num_embeddings=R, embedding_dim=R, padding_idx=None, max_norm=None,
            norm_type=2.0, scale_grad_by_freq=False, sparse=False)


@rule("Embedding", **_EMB)
@rule("EmbeddingBag", mode="mean", include_last_offset=False, **_EMB)
def _embedding(a, inputs):
    num, dim = a.int("num_embeddings"), a.int("embedding_dim")
    pad = a["padding_idx"]
    if pad is not None and not -num <= pad < num:
        raise ShapeError(f"{a.type}.padding_idx {pad} is outside num_embeddings {num}",
                         arg="padding_idx")
    params = {"weight": (num, dim)}
    if a.type == "Embedding":
        (x,) = tensor(a.type, inputs)
        return x + (dim,), params
    mode = a.choice("mode", ("sum", "mean", "max"))
    xs = tensor(a.type, inputs, 3, 1)
    if len(xs[0]) == 2 and len(xs) == 1:       # (bags, bag size)
        return (xs[0][0], dim), params
    if len(xs) < 2 or len(xs[0]) != 1 or len(xs[1]) != 1:
        raise ShapeError(f"EmbeddingBag takes a 2-d input alone or a 1-d input and 1-d offsets, "
                         f"not {format_shape(xs[0])}" + (f" and {format_shape(xs[1])}"
                                                         if len(xs) > 1 else ""))
    if len(xs) == 3:                           # per_sample_weights: one per index
        if mode != "sum" or not _same_shape(xs[2], xs[0]):
            raise ShapeError(f"EmbeddingBag's per_sample_weights {format_shape(xs[2])} go with mode "
                             f"'sum' and the input's shape {format_shape(xs[0])}", arg="mode")
    bags = xs[1][0]
    return ((bags - 1 if a["include_last_offset"] else bags) if known(bags) else None,
            dim), params


def _same_shape(x, y) -> bool:
    return len(x) == len(y) and all(p == q or p is None or q is None for p, q in zip(x, y))


def nested(a, name, inputs, dtypes=None):
    """Infer a nested layer spec ({"type": ..., args...}) held by arg `name` on `inputs` (of
    `dtypes`, the outer layer's own by default), and put it back with its inferred sizes
    filled in."""
    spec = a[name]
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ShapeError(f"{a.type}.{name} must be a layer spec with a 'type', not {spec!r}",
                         arg=name)
    try:
        r = infer(spec["type"], {k: v for k, v in spec.items() if k != "type"}, inputs,
                  dtypes if dtypes is not None or a.dtypes is None else a.dtypes[:len(inputs)])
    except ShapeError as e:
        raise inside(e, f"{a.type}.{name}", name, name) from None
    a.fill(name, {"type": spec["type"], **r.args})
    return r


def inside(e: ShapeError, prefix: str, arg: str, within: str, via: str | None = None) -> ShapeError:
    """A nested layer's error as its outer layer's: "Sequential.layers[1] (Linear): ...", blaming
    argument `arg`.  A dtype error says `within` where the nested layer sits ("layers[1]") and
    `via` which nested layer its input came from, when not from the outer layer's input."""
    if isinstance(e, DtypeError):
        return DtypeError(e.who, e.want, e.got, e.index, e.hint,
                          f"{within}.{e.within}" if e.within else within,
                          f"{within}.{e.via}" if e.via else via)
    return ShapeError(f"{prefix}: {e.message}", e.hint, f"{arg}.{e.arg}" if e.arg else arg)


@rule("Sequential", layers=R)
def _sequential(a, inputs):
    # nn.Sequential of nested layers: parameters are named by position (0.weight, 2.bias)
    layers = a["layers"]
    if not isinstance(layers, list) or not layers:
        raise ShapeError("Sequential.layers must be a non-empty list of layers", arg="layers")
    filled, params, x, dtypes = [], {}, inputs, a.dtypes
    for i, spec in enumerate(layers):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise ShapeError(f"Sequential.layers[{i}] must be a layer spec with a 'type', not {spec!r}", arg="layers")
        try:
            r = infer(spec["type"], {k: v for k, v in spec.items() if k != "type"}, x, dtypes)
        except ShapeError as e:
            raise inside(e, f"Sequential.layers[{i}] ({spec['type']})", f"layers.{i}", f"layers[{i}]",
                         f"layers[{i - 1}] ({layers[i - 1]['type']})" if i else None) from None
        filled.append({"type": spec["type"], **r.args})
        params.update({f"{i}.{k}": v for k, v in r.param_shapes.items()})
        x, dtypes = [r.output], None if a.dtypes is None else [r.dtype]
    a.fill("layers", filled)
    return x[0], params, r.dtype


@rule("weight_norm", module=R, name="weight", dim=0)
def _weight_norm(a, inputs):
    r = nested(a, "module", inputs)
    name, dim = a["name"], a["dim"]
    if name not in r.param_shapes:
        raise ShapeError(f"weight_norm: {a['module']['type']} has no parameter "
                         f"{name!r}", did_you_mean(name, r.param_shapes), arg="name")
    w = r.param_shapes[name]
    params = {k: v for k, v in r.param_shapes.items() if k != name}
    if dim is None or dim == -1:         # torch: norm over the whole weight, g is a scalar
        g = ()
    else:
        d = norm_dim(dim, len(w), "dim", "weight_norm")
        g = tuple(v if i == d else 1 for i, v in enumerate(w))
    return r.output, {**params, name + "_g": g, name + "_v": w}, r.dtype


@rule("spectral_norm", module=R, name="weight", n_power_iterations=1, eps=1e-12, dim=None)
def _spectral_norm(a, inputs):
    # weight becomes weight_orig; the power-iteration vectors u, v are buffers
    r = nested(a, "module", inputs)
    name = a["name"]
    if name not in r.param_shapes:
        raise ShapeError(f"spectral_norm: {a['module']['type']} has no parameter {name!r}",
                         did_you_mean(name, r.param_shapes), arg="name")
    a.int("n_power_iterations")
    dim = a["dim"]
    if dim is not None:
        norm_dim(dim, len(r.param_shapes[name]), "dim", "spectral_norm")
        if dim < 0:          # torch's spectral_norm permutes by dim and keeps it among the others
            raise ShapeError(f"spectral_norm.dim is {dim}; it takes 0 to {len(r.param_shapes[name]) - 1}",
                             "count the dim from the front", arg="dim")
    return r.output, {(k + "_orig" if k == name else k): v for k, v in r.param_shapes.items()}, r.dtype


# --- distances ---------------------------------------------------------------------------

@rule("CosineSimilarity", dim=1, eps=1e-8)
@rule("PairwiseDistance", p=2.0, eps=1e-6, keepdim=False)
def _distance(a, inputs):
    x, y = tensor(a.type, inputs, 2)
    b = broadcast(a.type, [x, y])
    if a.type == "CosineSimilarity":
        d = norm_dim(a["dim"], len(b), "dim", a.type)
        return b[:d] + b[d + 1:], {}
    if a["keepdim"]:
        return b[:-1] + (1,), {}
    return b[:-1], {}
