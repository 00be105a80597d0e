"""Shape rules for the spec's functional ops (lower-case types: relu, reshape,
cat, slice, ...).  Torch semantics and torch defaults, except flatten's
start_dim, which is 1 (like nn.Flatten) to keep the batch.  Ops have no
parameters.  No torch import here."""
from __future__ import annotations

import math

from .core import (MAX_COUNT, REQUIRED, ShapeError, format_shape, known, norm_dim, rule,
                     same_dim, tensor)

NONE = {}

# --- elementwise ----------------------------------------------------------------


@rule("relu", "sigmoid", "tanh", "exp", "log", "abs", "silu", "elu", "softplus",
      "leaky_relu", "gelu", "clamp", "dropout", "softmax", "log_softmax",
      inplace=False, dim=None, negative_slope=0.01, approximate="none", alpha=1.0,
      beta=1.0, threshold=20.0, min=None, max=None, p=0.5, training=True)
def _elementwise(a, inputs):
    # one rule with the union of the ops' args; reject the args an op lacks
    own = {"relu": ("inplace",), "silu": ("inplace",), "elu": ("alpha", "inplace"),
           "softplus": ("beta", "threshold"), "leaky_relu": ("negative_slope", "inplace"),
           "gelu": ("approximate",), "clamp": ("min", "max"),
           "dropout": ("p", "training", "inplace"), "softmax": ("dim",),
           "log_softmax": ("dim",)}.get(a.type, ())
    for name in a.out:
        if name not in own:
            raise ShapeError(f"{a.type} has no argument {name!r}", arg=name)
    (x,) = tensor(a.type, inputs)
    if a["dim"] is not None:
        norm_dim(a["dim"], len(x), "dim", a.type)
    if a.type == "gelu":
        a.choice("approximate", ("none", "tanh"))
    if a.type == "dropout":
        a.prob("p")
    if a.type == "clamp" and a["min"] is None and a["max"] is None:
        raise ShapeError("clamp needs min or max (or both)", arg="min")
    return x, NONE


# --- rearranging ------------------------------------------------------------------

def _product(dims):
    """Element count as (int coefficient, sorted symbols), or None if a dim is unknown:
    ("N", 4, 4) -> (16, ("N",))."""
    if any(d is None for d in dims):
        return None
    return (math.prod(d for d in dims if isinstance(d, int)),
            tuple(sorted(d for d in dims if isinstance(d, str))))


def _as_dim(count):
    if count is None:
        return None
    coef, syms = count
    if not syms:
        return coef
    return syms[0] if coef == 1 and len(syms) == 1 else None


@rule("flatten", start_dim=1, end_dim=-1)
def _flatten(a, inputs):
    (x,) = tensor(a.type, inputs)
    if not x:                 # a 0-d tensor flattens to [1]; its dims count as one (0 or -1)
        norm_dim(a["start_dim"], 1, "start_dim", a.type)
        norm_dim(a["end_dim"], 1, "end_dim", a.type)
        return (1,), NONE
    s = norm_dim(a["start_dim"], len(x), "start_dim", "flatten")
    e = norm_dim(a["end_dim"], len(x), "end_dim", "flatten")
    if s > e:
        raise ShapeError(f"flatten start_dim {a['start_dim']} comes after end_dim "
                         f"{a['end_dim']} for input {format_shape(x)}", arg="start_dim")
    return x[:s] + (_as_dim(_product(x[s:e + 1])),) + x[e + 1:], NONE


@rule("reshape", "view", shape=REQUIRED)
def _reshape(a, inputs):
    (x,) = tensor(a.type, inputs)
    shape = a["shape"]
    if (not isinstance(shape, (list, tuple)) or any(
            not (d == "N" or isinstance(d, int) and not isinstance(d, bool) and d >= -1)
            for d in shape)):
        raise ShapeError(f"{a.type} shape must be a list of ints >= -1 or 'N' (the batch), "
                         f"not {shape!r}", arg="shape")
    if list(shape).count(-1) > 1:
        raise ShapeError(f"{a.type} shape {list(shape)} has more than one -1", arg="shape")
    have, want = _product(x), _product([d for d in shape if d != -1])
    out = tuple(shape)
    if have is None:
        return tuple(None if d == -1 else d for d in out), NONE
    text = (f"{a.type} of {format_shape(x)} to {format_shape(shape)}")
    rest = list(have[1])
    for sym in want[1]:
        if sym not in rest:
            raise ShapeError(f"{text}: the input has no batch dim {sym} to keep", arg="shape")
        rest.remove(sym)
    if -1 in shape:
        if want[0] == 0 or have[0] % want[0]:
            raise ShapeError(f"{text}: {_count_text(have)} elements are not a multiple of "
                             f"{want[0]}" + (" for every batch size" if rest else ""), arg="shape",
                             hint="keep the batch with 'N' or -1" if rest else None)
        fill = _as_dim((have[0] // want[0], tuple(rest)))
        return tuple(fill if d == -1 else d for d in out), NONE
    if rest or have[0] != want[0]:
        raise ShapeError(f"{text}: the element counts differ ({_count_text(have)} vs "
                         f"{_count_text(want)})", "keep the batch with 'N' or -1"
                         if rest else None, arg="shape")
    return out, NONE


def _count_text(count):
    return "*".join([*count[1], str(count[0])]) if count[1] else str(count[0])


@rule("permute", dims=REQUIRED)
def _permute(a, inputs):
    (x,) = tensor(a.type, inputs)
    dims = a["dims"]
    if not isinstance(dims, (list, tuple)) or len(dims) != len(x):
        raise ShapeError(f"permute dims {dims!r} must list all {len(x)} dims of its input "
                         f"{format_shape(x)}", arg="dims")
    order = [norm_dim(d, len(x), "dims", "permute") for d in dims]
    if len(set(order)) != len(order):
        raise ShapeError(f"permute dims {list(dims)} repeat a dim", arg="dims")
    return tuple(x[i] for i in order), NONE


@rule("transpose", dim0=REQUIRED, dim1=REQUIRED)
def _transpose(a, inputs):
    (x,) = tensor(a.type, inputs)
    i = norm_dim(a["dim0"], len(x), "dim0", "transpose")
    j = norm_dim(a["dim1"], len(x), "dim1", "transpose")
    out = list(x)
    if out:
        out[i], out[j] = out[j], out[i]
    return tuple(out), NONE


@rule("unsqueeze", dim=REQUIRED)
def _unsqueeze(a, inputs):
    (x,) = tensor(a.type, inputs)
    i = norm_dim(a["dim"], len(x), "dim", "unsqueeze", extra=1)
    return x[:i] + (1,) + x[i:], NONE


@rule("squeeze", dim=None)
def _squeeze(a, inputs):
    # only dims known to be 1 go; an unknown dim or "N" stays (it may not be 1)
    (x,) = tensor(a.type, inputs)
    dim = a["dim"]
    dims = range(len(x)) if dim is None else dim if isinstance(dim, (list, tuple)) else [dim]
    drop = [norm_dim(d, len(x), "dim", "squeeze") for d in dims]
    if len(set(drop)) != len(drop):       # [3, -1] of a 4-d input names dim 3 twice
        raise ShapeError(f"squeeze dim {dim!r} repeats a dim of its {len(x)}-d input", arg="dim")
    return tuple(d for i, d in enumerate(x) if not (i in drop and d == 1)), NONE


# --- joining and broadcasting -------------------------------------------------------

@rule("cat", dim=0)
def _cat(a, inputs):
    xs = tensor(a.type, inputs, n=999, lo=2)
    x0 = xs[0]
    if not x0:
        raise ShapeError("cat cannot join 0-d tensors", "unsqueeze them first")
    d = norm_dim(a["dim"], len(x0), "dim", "cat")
    out = list(x0)
    for k, x in enumerate(xs[1:], 1):
        if len(x) != len(x0):
            raise ShapeError(f"cat input {k} {format_shape(x)} has rank {len(x)} but input 0 "
                             f"{format_shape(x0)} has rank {len(x0)}")
        for i in range(len(x)):
            if i == d:
                out[i] = out[i] + x[i] if known(out[i], x[i]) else None
                continue
            try:
                out[i] = same_dim(out[i], x[i])
            except ValueError:
                raise ShapeError(f"cat along dim {a['dim']}: input {k} {format_shape(x)} "
                                 f"differs from input 0 {format_shape(x0)} at dim {i}",
                                 arg="dim") from None
    return tuple(out), NONE


@rule("stack", dim=0)
def _stack(a, inputs):
    xs = tensor(a.type, inputs, n=999, lo=2)
    d = norm_dim(a["dim"], len(xs[0]), "dim", "stack", extra=1)
    out = list(xs[0])
    for k, x in enumerate(xs[1:], 1):
        try:
            if len(x) != len(out):
                raise ValueError
            out = [same_dim(p, q) for p, q in zip(out, x)]
        except ValueError:
            raise ShapeError(f"stack needs equal shapes but input {k} is {format_shape(x)} "
                             f"and input 0 is {format_shape(xs[0])}") from None
    return tuple(out[:d]) + (len(xs),) + tuple(out[d:]), NONE


def broadcast(type_name, xs):
    out = ()
    for k, x in enumerate(xs):
        n = max(len(out), len(x))
        p, q = (1,) * (n - len(out)) + tuple(out), (1,) * (n - len(x)) + tuple(x)
        dims = []
        for i, (u, v) in enumerate(zip(p, q)):
            if u == 1 or v == 1:
                dims.append(v if u == 1 else u)
            elif u is None or v is None:
                dims.append(v if u is None else u)   # the unknown one is 1 or equal
            else:
                try:
                    dims.append(same_dim(u, v))
                except ValueError:
                    raise ShapeError(f"{type_name}: input {k} {format_shape(x)} does not "
                                     f"broadcast with {format_shape(xs[0]) if k == 1 else format_shape(out)}"
                                     f" (dim {i - n}: {u} vs {v})") from None
        out = tuple(dims)
    return out


@rule("add", "sub", "mul", "div")
def _arith(a, inputs):
    return broadcast(a.type, tensor(a.type, inputs, n=999, lo=2)), NONE


def _matmul2(x, y):
    if not x or not y:
        raise ShapeError(f"matmul needs inputs of at least 1 dim, not {format_shape(x)} "
                         f"and {format_shape(y)}")
    p = (1,) + x if len(x) == 1 else x
    q = y + (1,) if len(y) == 1 else y
    try:
        same_dim(p[-1], q[-2])
    except ValueError:
        raise ShapeError(f"matmul: {format_shape(x)} @ {format_shape(y)}: the inner dims "
                         f"{p[-1]} and {q[-2]} differ") from None
    batch = broadcast("matmul", [p[:-2], q[:-2]]) if len(p) > 2 or len(q) > 2 else ()
    return (batch + ((p[-2],) if len(x) > 1 else ()) + ((q[-1],) if len(y) > 1 else ()))


@rule("matmul")
def _matmul(a, inputs):
    xs = tensor(a.type, inputs, n=999, lo=2)
    out = xs[0]
    for y in xs[1:]:
        out = _matmul2(out, y)
    return out, NONE


@rule("mean", "sum", "amax", "amin", dim=None, keepdim=False)
def _reduce(a, inputs):
    (x,) = tensor(a.type, inputs)
    dim = a["dim"]
    # a float such as 1.0 passes the schema's "integer"; norm_dim refuses it
    dims = [dim] if isinstance(dim, (int, float)) else range(len(x)) if not dim else dim
    drop = [norm_dim(d, len(x), "dim", a.type) for d in dims]
    if len(set(drop)) != len(drop):
        raise ShapeError(f"{a.type} dim {dim!r} repeats a dim", arg="dim")
    if a["keepdim"]:
        return tuple(1 if i in drop else d for i, d in enumerate(x)), NONE
    return tuple(d for i, d in enumerate(x) if i not in drop), NONE


@rule("chunk", chunks=REQUIRED, dim=0)
def _chunk(a, inputs):
    (x,) = tensor(a.type, inputs)
    chunks = a.int("chunks", hi=MAX_COUNT)
    d = norm_dim(a["dim"], len(x), "dim", "chunk")
    size = x[d]
    if not isinstance(size, int):   # how many pieces torch makes depends on the size
        if chunks > 1:
            raise ShapeError(f"chunk: dim {a['dim']} of {format_shape(x)} is "
                             f"{'the batch size' if size else 'unknown'}, so the number of pieces "
                             f"(up to {chunks}) is not known before it runs", arg="dim",
                             hint="chunk a dim of known size")
        return [x], NONE
    step = -(-size // chunks)
    sizes = [min(step, size - i) for i in range(0, size, step)] if step else [0] * chunks
    return [x[:d] + (s,) + x[d + 1:] for s in sizes], NONE
