"""Shape rules for picking and indexing: `item` (one value of a multi-value output such
as RNN's (out, h)) and `slice` (a subscript written as text, "[:, -1, :]"), and the
parser that turns that text into the tuple torch indexes with.  No torch import here."""
from __future__ import annotations

import re

from .core import REQUIRED, ShapeError, format_shape, rule, tensor

NONE = {}

# --- picking from multi-values and indexing ------------------------------------------

@rule("item", index=REQUIRED)
def _item(a, inputs):
    if len(inputs) != 1:
        raise ShapeError(f"item takes 1 input but got {len(inputs)}")
    (x,) = inputs
    if not isinstance(x, list):
        raise ShapeError(f"item takes one value of a multi-value output such as RNN's (out, h), "
                         f"but its input is the single tensor {format_shape(x)}", arg="index",
                         hint="drop the item node")
    i = a["index"]
    if not isinstance(i, int) or isinstance(i, bool) or not -len(x) <= i < len(x):
        raise ShapeError(f"item index {i!r} is out of range for {len(x)} values "
                         f"{format_shape(x)}", arg="index")
    if x[i] is None:
        raise ShapeError(f"value {i} of {format_shape(x)} is None: the layer gives nothing there", arg="index",
                         hint="with need_weights: false, MultiheadAttention gives no weights; drop that flag "
                              "to read them")
    return x[i], NONE


_INT = re.compile(r"[+-]?\d+")


def parse_index(text) -> tuple:
    """"[:, -1, :]" -> (slice(None), -1, slice(None)); ints, a:b:c with optional
    parts, '...', 'None'.  A parser, never eval."""
    if not isinstance(text, str):
        raise ShapeError(f"an index is a string like \"[:, -1]\", not {text!r}", arg="at")
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    parts = s.split(",")
    if len(parts) > 1 and not parts[-1].strip():
        parts.pop()                       # x[0,] is x[(0,)]

    def number(p, item):
        p = p.strip()
        if not p:
            return None
        if not _INT.fullmatch(p):
            raise ShapeError(f"bad index {text!r}: {item.strip()!r} is not an int, a slice "
                             "a:b:c, '...' or 'None'", arg="at")
        if len(p) > 30:         # int() refuses more than 4300 digits; no dim is this large anyway
            raise ShapeError(f"bad index: {p[:20]}... is too large", arg="at")
        return int(p)

    items = []
    for part in parts:
        p = part.strip()
        if p == "...":
            items.append(Ellipsis)
        elif p == "None":
            items.append(None)
        elif ":" in p:
            bits = p.split(":")
            if len(bits) > 3:
                raise ShapeError(f"bad index {text!r}: {p!r} has more than two ':'", arg="at")
            items.append(slice(*[number(b, part) for b in bits]))
        elif not p:
            raise ShapeError(f"bad index {text!r}: an empty item", arg="at")
        else:
            items.append(number(p, part))
    if items.count(Ellipsis) > 1:
        raise ShapeError(f"bad index {text!r}: more than one '...'", arg="at")
    return tuple(items)


def index_shape(x, index):
    """The shape of x[index] for a tuple from parse_index."""
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > len(x):
        raise ShapeError(f"index {_index_text(index)} has {used} indices but the input "
                         f"{format_shape(x)} has only {len(x)} dims", arg="at")
    index = list(index)
    fill = [slice(None)] * (len(x) - used)
    if Ellipsis in index:
        k = index.index(Ellipsis)
        index[k:k + 1] = fill
    else:
        index += fill
    out, pos = [], 0
    for it in index:
        if it is None:
            out.append(1)
            continue
        d = x[pos]
        pos += 1
        if isinstance(it, int):
            if isinstance(d, int) and not -d <= it < d:
                raise ShapeError(f"index {it} is out of range for dim {pos - 1} of size {d} "
                                 f"(input {format_shape(x)})", arg="at")
            continue
        if it.step is not None and it.step <= 0:
            raise ShapeError(f"slice step must be positive, not {it.step}", arg="at")
        if isinstance(d, int):
            out.append(len(range(*it.indices(d))))
        elif it.start in (None, 0) and it.stop is None and it.step in (None, 1):
            out.append(d)               # a full slice keeps "N"
        else:
            out.append(None)
    return tuple(out)


def _index_text(index):
    def one(i):
        if i is Ellipsis:
            return "..."
        if isinstance(i, slice):
            s = ":".join("" if v is None else str(v) for v in (i.start, i.stop))
            return s + (f":{i.step}" if i.step is not None else "")
        return str(i)
    return "[" + ", ".join(one(i) for i in index) + "]"


@rule("slice", at=REQUIRED)
def _slice(a, inputs):
    (x,) = tensor(a.type, inputs)
    return index_shape(x, parse_index(a["at"])), NONE
