"""Shape rules for the tensor functions that split, repeat, select and make tensors: split,
unflatten, expand, repeat_interleave, tril and triu, masked_fill, where, and the two that make
a tensor without a batch dim, arange (positions: [T]) and constant (a value written in the
spec).  Torch semantics and defaults.  No torch import here."""
from __future__ import annotations

import math

from ..inputs import DTYPES
from .core import MAX_COUNT, REQUIRED, ShapeError, format_shape, known, norm_dim, rank, rule, tensor
from .dtypes import tensor_dtype
from .ops import NONE, _as_dim, _product, broadcast

MAX_RANK = 64          # torch's limit on a tensor's dims


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(a, name, lo, what):
    """A list of ints >= lo, or a ShapeError at `name`."""
    v = a[name]
    if (not isinstance(v, (list, tuple)) or not v or len(v) > MAX_RANK
            or any(not _is_int(s) or s < lo for s in v)):
        raise ShapeError(f"{a.type} {name} must be {what}, not {v!r}", arg=name)
    return list(v)


def _dim_text(d) -> str:
    return "the batch size" if isinstance(d, str) else "unknown"


# --- splitting and reshaping --------------------------------------------------------------

@rule("split", split_size_or_sections=REQUIRED, dim=0)
def _split(a, inputs):
    (x,) = tensor(a.type, inputs)
    d = norm_dim(a["dim"], len(x), "dim", a.type)
    size, arg = x[d], "split_size_or_sections"
    given = a[arg]
    if isinstance(given, (list, tuple)):
        sections = _ints(a, arg, 0, "a size >= 0 or a non-empty list of them")
        if len(sections) > MAX_COUNT:
            raise ShapeError(f"split makes {len(sections):,} pieces, over specbuild's limit of {MAX_COUNT:,}", arg=arg)
        if isinstance(size, str):
            raise ShapeError(f"split: dim {a['dim']} of {format_shape(x)} is the batch size, which the sections "
                             f"{sections} cannot sum to for every batch size", arg="dim",
                             hint="split a dim of known size")
        if known(size) and sum(sections) != size:
            raise ShapeError(f"split: the sections {sections} sum to {sum(sections)}, but dim {a['dim']} of "
                             f"{format_shape(x)} is {size}", arg=arg,
                             hint="the sizes must add up to the dim's size")
        return [x[:d] + (s,) + x[d + 1:] for s in sections], NONE
    if not _is_int(given) or given < 0:
        raise ShapeError(f"split {arg} must be a size >= 0 or a non-empty list of them, not {given!r}", arg=arg)
    if not known(size):      # how many pieces torch makes depends on the size
        raise ShapeError(f"split: dim {a['dim']} of {format_shape(x)} is {_dim_text(size)}, so the number of "
                         "pieces is not known before it runs", arg="dim", hint="split a dim of known size")
    if given == 0:
        if size:
            raise ShapeError(f"split: a split size of 0 splits only a dim of size 0, but dim {a['dim']} of "
                             f"{format_shape(x)} is {size}", arg=arg)
        return [x], NONE
    if -(-size // given) > MAX_COUNT:
        raise ShapeError(f"split makes {-(-size // given):,} pieces, over specbuild's limit of {MAX_COUNT:,}",
                         arg=arg)
    return [x[:d] + (min(given, size - i),) + x[d + 1:] for i in range(0, size, given)] or [x], NONE


@rule("unflatten", dim=REQUIRED, sizes=REQUIRED)
def _unflatten(a, inputs):
    (x,) = tensor(a.type, inputs)
    d = norm_dim(a["dim"], len(x), "dim", a.type)
    sizes = _ints(a, "sizes", -1, "a non-empty list of ints >= 0 (one may be -1)")
    if sizes.count(-1) > 1:
        raise ShapeError(f"unflatten sizes {sizes} has more than one -1", arg="sizes")
    prod, size = math.prod(s for s in sizes if s != -1), x[d]
    text = f"unflatten: dim {a['dim']} of {format_shape(x)} is {size}, which does not split into {sizes}"
    if isinstance(size, str):
        if -1 not in sizes or prod != 1:
            raise ShapeError(text + " for every batch size", arg="sizes", hint="unflatten a dim of known size")
        fill = size
    elif known(size):
        if (not prod or size % prod) if -1 in sizes else size != prod:
            raise ShapeError(text, arg="sizes")
        fill = size // prod if prod else None
    else:
        fill = None
    return x[:d] + tuple(fill if s == -1 else s for s in sizes) + x[d + 1:], NONE


@rule("expand", size=REQUIRED)
def _expand(a, inputs):
    (x,) = tensor(a.type, inputs)
    size = _ints(a, "size", -1, "a list of ints >= -1 (-1 keeps a dim)")
    text = f"expand of {format_shape(x)} to {size}"
    if len(size) < len(x):
        raise ShapeError(f"{text}: it names {len(size)} dims, but its input has {len(x)}", arg="size",
                         hint="list every dim, batch included; -1 keeps one")
    lead, out = len(size) - len(x), []
    for i, s in enumerate(size):
        if i < lead:
            if s == -1:
                raise ShapeError(f"{text}: -1 cannot be a new leading dim ({i})", arg="size")
            out.append(s)
            continue
        have = x[i - lead]
        if s == -1 or s == have:
            out.append(have)
        elif have == 1 or have is None:        # an unknown dim is checked when it runs
            out.append(s)
        else:
            raise ShapeError(f"{text}: dim {i - lead} of the input is {have}"
                             + (" (the batch)" if isinstance(have, str) else "") + f", not 1, so it cannot become {s}",
                             arg="size", hint=f"only dims of size 1 expand; -1 at position {i} keeps the dim")
    return tuple(out), NONE


@rule("repeat_interleave", repeats=REQUIRED, dim=None)
def _repeat_interleave(a, inputs):
    (x,) = tensor(a.type, inputs)
    r = a.int("repeats", lo=0)
    if a["dim"] is None:                 # torch flattens first
        count = _product(x)
        return ((0 if r == 0 else None if count is None else _as_dim((count[0] * r, count[1]))),), NONE
    d = norm_dim(a["dim"], len(x), "dim", a.type)
    n = x[d]
    new = 0 if r == 0 else n * r if known(n) else n if r == 1 else None
    return x[:d] + (new,) + x[d + 1:], NONE


@rule("tril", "triu", diagonal=0)
def _triangle(a, inputs):
    (x,) = tensor(a.type, inputs)
    rank(a.type, x, lo=2)
    if not _is_int(a["diagonal"]):
        raise ShapeError(f"{a.type} diagonal must be an int, not {a['diagonal']!r}", arg="diagonal")
    return x, NONE


# --- selecting ------------------------------------------------------------------------------------

@rule("masked_fill", value=REQUIRED)
def _masked_fill(a, inputs):
    x, mask = tensor(a.type, inputs, n=2)
    v = a["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and math.isnan(v):
        raise ShapeError(f"masked_fill value must be a number, not {v!r}", arg="value")
    return broadcast(a.type, [x, mask]), NONE


@rule("where")
def _where(a, inputs):
    return broadcast(a.type, tensor(a.type, inputs, n=3)), NONE


# --- made without a batch dim -------------------------------------------------------------------

@rule("arange", dim=REQUIRED)
def _arange(a, inputs):
    (x,) = tensor(a.type, inputs)
    return (x[norm_dim(a["dim"], len(x), "dim", a.type)],), NONE


def value_shape(value, depth=0):
    """The shape torch.tensor gives a (nested) list of numbers and bools, or a ShapeError."""
    if isinstance(value, bool) or isinstance(value, (int, float)) and not (
            isinstance(value, float) and math.isnan(value)):
        return ()
    if not isinstance(value, (list, tuple)):
        raise ShapeError(f"constant value holds {value!r}, which is no number or bool", arg="value")
    if depth >= MAX_RANK:
        raise ShapeError(f"constant value is nested more than {MAX_RANK} deep", arg="value")
    shapes = [value_shape(v, depth + 1) for v in value]
    if any(s != shapes[0] for s in shapes):
        raise ShapeError("constant value is not rectangular: its items have the shapes "
                         + ", ".join(format_shape(s) for s in dict.fromkeys(shapes)), arg="value",
                         hint="every row must have as many items")
    return (len(value),) + (shapes[0] if shapes else ())


@rule("constant", value=REQUIRED, dtype=None)
def _constant(a, inputs):
    tensor(a.type, inputs)          # only for its device
    if a["dtype"] is not None and a["dtype"] not in DTYPES:
        raise ShapeError(f"constant dtype {a['dtype']!r} is not one of " + ", ".join(DTYPES), arg="dtype")
    shape = value_shape(a["value"])
    dtype, bad = tensor_dtype(a["value"], a["dtype"])
    if bad is not None:
        raise ShapeError(f"constant value holds {bad}, which {dtype} cannot hold", arg="dtype" if a["dtype"] else "value",
                         hint="give a floating dtype" if isinstance(bad, float) else None)
    return shape, NONE
