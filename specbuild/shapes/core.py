"""Shape inference without torch: every layer's output shape and parameter count
are known before any weight exists (like Caffe's per-layer shape rules).

A shape is a tuple of dims including the batch dim; a dim is an int, a symbol
(the string "N" for the batch size) or None (unknown).  Several values (RNN's
`(out, h)`, chunk) are a list of shapes, possibly nested.  The rules live in
`layers`, `rearrange`, `sequence` (torch.nn layers), `ops`, `index`, `tensors`
and `attention` (functional ops); this module holds the public API and the helpers
they share.  Nothing here imports torch
except `infer_on_meta`, lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import did_you_mean

REQUIRED = object()          # default marking an argument the spec must give
# Counts that rules loop over (stacked layers, chunks): bounded, so a typo cannot hang validation.
MAX_COUNT = 10_000
_TORCH_KWARGS = ("device", "dtype")   # factory kwargs every torch.nn layer takes


class ShapeError(Exception):
    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        self.message, self.hint, self.arg = message, hint, arg
        super().__init__(message + (f" ({hint})" if hint else ""))


class DtypeError(ShapeError):
    """Input `index` of a `who` (a type name) is `got`, but it needs `want` ("float32 input").
    For a nested layer, `within` is where it sits in its outer layer ("layers.1", "module")
    and `via`, when its input came through the nested layers before it, the last of them."""

    def __init__(self, who: str, want: str, got, index: int = 0, hint: str | None = None,
                 within: str | None = None, via: str | None = None):
        self.who, self.want, self.got, self.index, self.within, self.via = who, want, got, index, within, via
        where = f"{within} ({who})" if within else who
        source = f"{via} gives" if via else f"its input {index} is"
        super().__init__(f"{where} needs {want}, but {source} {got}", hint)


@dataclass
class Inferred:
    output: tuple | list
    args: dict
    params: int
    # parameter name -> shape; compare=False keeps equality to the three fields above
    param_shapes: dict = field(default_factory=dict, compare=False, repr=False)
    # torch's name of the output's dtype ("float32"); a list, shaped like `output`, for a multi-value
    dtype: str | list = field(default="float32", compare=False, repr=False)


# type name -> (rule function, defaults); filled by the rule modules (imported by the package)
RULES: dict[str, tuple] = {}
INFERRED_ARGS: dict[str, tuple[str, ...]] = {}
# type name -> policy(a, inputs, dtypes, output, params, inner) -> output dtype; filled by `dtypes`
DTYPE_RULES: dict = {}
FLOAT32 = "float32"


def rule(*names, inferred=(), **defaults):
    """Register fn(a: Args, inputs) -> (output, {param name: shape}) for `names`."""
    def register(fn):
        for name in names:
            RULES[name] = (fn, defaults)
            if inferred:
                INFERRED_ARGS[name] = tuple(inferred)
        return fn
    return register


def has_rule(type_name: str) -> bool:
    return type_name in RULES


def infer(type_name: str, args: dict, inputs: list, dtypes: list | None = None,
          forward: dict | None = None) -> Inferred:
    """The output shape, filled arguments, parameters and output dtype of one layer.  `dtypes`
    are its inputs' dtypes (torch's names, lists for multi-values; None in it means float32).
    Without `dtypes` only the shapes are checked, and the dtype given is torch's default's.
    An input given as None is a forward parameter left out before one given by name;
    `forward` holds the constants of the layer's forward call (a rule reads them as a.forward)."""
    if type_name not in RULES:
        raise ShapeError(f"no shape rule for {type_name!r}", did_you_mean(type_name, RULES))
    fn, defaults = RULES[type_name]
    a = Args(type_name, args or {}, defaults)
    a.forward = dict(forward or {})
    values = [None if x is None else _as_value(x) for x in inputs]
    if dtypes is not None:
        a.dtypes = [_default_dtype(x, d) for x, d in zip(values, list(dtypes) + [None] * len(values))]
    output, shapes, *inner = fn(a, values)      # a rule of nested layers also gives their dtype
    inner = inner[0] if inner else None
    params = sum(math.prod(s) for s in shapes.values())
    return Inferred(output, a.out, params, dict(shapes), _output_dtype(a, values, output, shapes, inner))


def _output_dtype(a, values, output, shapes, inner):
    given = a.dtypes if a.dtypes is not None else [_default_dtype(x, None) for x in values]
    policy = DTYPE_RULES.get(a.type)
    try:
        if policy is not None:
            return policy(a, values, given, output, shapes, inner)
    except DtypeError:
        if a.dtypes is not None:
            raise
    return inner if inner is not None else _like(output, FLOAT32)


def _default_dtype(value, dtype):
    """An input's dtype, float32 where none is given, shaped like the value."""
    if isinstance(value, list):
        ds = dtype if isinstance(dtype, list) and len(dtype) == len(value) else [dtype] * len(value)
        return [_default_dtype(v, d) for v, d in zip(value, ds)]
    return dtype if isinstance(dtype, str) else FLOAT32


def _like(output, dtype):
    if isinstance(output, list):
        return [_like(o, dtype) for o in output]
    return dtype


def format_shape(shape) -> str:
    """("N", 32, None) -> "[N, 32, ?]"; a list of shapes -> "([N, 5], [1, N, 5])"; a value a layer
    does not give (None in a multi-value) -> "None"."""
    if shape is None:
        return "None"
    if isinstance(shape, list) and not _is_dims(shape):
        return "(" + ", ".join(format_shape(s) for s in shape) + ")"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _is_dims(x) -> bool:
    return all(d is None or isinstance(d, (int, str)) and not isinstance(d, bool) for d in x)


def _as_value(x):
    """A shape as a tuple (a non-empty list of plain dims counts as one shape too);
    a multi-value as a list of values."""
    if isinstance(x, tuple) or (isinstance(x, list) and x and _is_dims(x)):
        if not _is_dims(x) or any(isinstance(d, int) and d < 0 for d in x):
            raise ShapeError(f"bad input shape {x!r}: dims are ints >= 0, 'N' or None")
        return tuple(x)
    if isinstance(x, list):   # None in a multi-value: a value the layer does not give (need_weights: false)
        return [None if v is None else _as_value(v) for v in x]
    raise ShapeError(f"bad input shape {x!r}: a shape is a tuple of dims")


class Args:
    """The spec's args of one layer over the rule's torch defaults.  `out` is the
    new dict handed back, with inferred sizes filled in."""

    def __init__(self, type_name, given, defaults):
        if not isinstance(given, dict):
            raise ShapeError(f"{type_name} args must be a mapping, not {given!r}")
        self.type = type_name
        self.out = dict(given)
        self.dtypes: list | None = None  # the inputs' dtypes, set by infer(); None: not checked
        self.forward: dict = {}          # the constants of the forward call (`forward:`), set by infer()
        for name in given:
            layer = type_name[:1].isupper()      # torch.nn layers also take device, dtype
            if name not in defaults and "*" not in defaults and not (layer and name in _TORCH_KWARGS):
                raise ShapeError(f"{type_name} has no argument {name!r}",
                                 did_you_mean(name, defaults), arg=name)
        self.v = {**defaults, **given}

    def __getitem__(self, name):
        v = self.v.get(name)
        if v is REQUIRED:
            raise ShapeError(f"{self.type} needs {name}", arg=name)
        return v

    def fill(self, name, value):
        self.out[name] = self.v[name] = value

    def int(self, name, lo=1, hi=None):
        v = self[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ShapeError(f"{self.type}.{name} must be an int >= {lo}, not {v!r}", arg=name)
        if hi is not None and v > hi:
            raise ShapeError(f"{self.type}.{name} is {v:,}, over specbuild's limit of {hi:,}", arg=name,
                             hint="a count this large is a typo, or a model no machine holds")
        return v

    def ints(self, name, n, lo=0):
        """An int-or-tuple arg (kernel_size: 3 or [3, 3]) as a tuple of n ints."""
        v = self[name]
        vs = [v] * n if isinstance(v, int) else v
        if (not isinstance(vs, (list, tuple)) or len(vs) != n
                or any(not isinstance(x, int) or isinstance(x, bool) or x < lo for x in vs)):
            bound = f" >= {lo}" if lo > -10 ** 9 else ""
            raise ShapeError(f"{self.type}.{name} must be an int{bound} or {n} of them, not {v!r}",
                             arg=name)
        return tuple(vs)

    def choice(self, name, choices):
        v = self[name]
        if v not in choices:
            raise ShapeError(f"{self.type}.{name} is {v!r}, not one of "
                             + ", ".join(map(repr, choices)), arg=name)
        return v

    def prob(self, name):
        v = self[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ShapeError(f"{self.type}.{name} must be a probability in [0, 1], not {v!r}",
                             arg=name)
        return v

    def check_size(self, name, actual, what, shape):
        """Fill an omitted input size from `actual`, or check the given one."""
        if self.v.get(name, REQUIRED) is REQUIRED or self.v[name] is None:
            if not isinstance(actual, int):
                raise ShapeError(f"cannot infer {self.type}.{name}: {what} of its input "
                                 f"{format_shape(shape)} is {_dimname(actual)}",
                                 f"set {name}", arg=name)
            self.fill(name, actual)
            return actual
        given = self.int(name)
        if isinstance(actual, int) and actual != given or isinstance(actual, str):
            raise ShapeError(f"{name} is {given} but its input has {_dimname(actual)} {what} "
                             f"(input shape {format_shape(shape)})",
                             f"drop {name} to infer it, or set it to {actual}"
                             if isinstance(actual, int) else None, arg=name)
        return given


def _dimname(d):
    return "unknown" if d is None else str(d)


# --- helpers shared by the rule modules ------------------------------------------

def tensor(type_name, inputs, n=1, lo=None):
    """Check a layer got `n` single tensors (not multi-values); return them."""
    if lo is None:
        lo = n
    if not lo <= len(inputs) <= n:
        want = str(n) if lo == n else f"{lo} to {n}" if n < 99 else f"{lo} or more"
        raise ShapeError(f"{type_name} takes {want} input(s) but got {len(inputs)}")
    for x in inputs:
        if isinstance(x, list):
            raise ShapeError(f"{type_name} takes a tensor but its input is the multi-value "
                             f"{format_shape(x)}", "pick one value with item")
    return inputs


def rank(type_name, shape, *ranks, lo=None, what=""):
    """Check the input's rank is one of `ranks`, or at least `lo`."""
    if lo is not None and len(shape) < lo or lo is None and len(shape) not in ranks:
        want = f"at least {lo}-d" if lo is not None else " or ".join(f"{r}-d" for r in ranks)
        raise ShapeError(f"{type_name} expects a {want} input{what} but got "
                         f"{format_shape(shape)} ({len(shape)}-d)")
    return len(shape)


def norm_dim(dim, n, arg="dim", type_name="", extra=0):
    """A dim index in [-n-extra, n+extra) as a non-negative index (extra=1 for
    unsqueeze-like ops, which may insert after the last dim)."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise ShapeError(f"{type_name} {arg} must be an int, not {dim!r}", arg=arg)
    m = n + extra
    if not -m <= dim < m:
        raise ShapeError(f"{type_name} {arg} {dim} is out of range for a {n}-d input "
                         f"(valid: {-m} to {m - 1})", arg=arg)
    return dim % m if m else 0


def too_small(a, x, i, arg, detail):
    raise ShapeError(f"{a.type}: {arg} is too large for its input: dim {i} of "
                     f"{format_shape(x)} is {x[i]} ({detail})", arg=arg)


def known(*dims) -> bool:
    return all(isinstance(d, int) for d in dims)


def same_dim(a, b):
    """The dim two shapes agree on, or raise ValueError when they cannot agree for
    every batch size (an int and a symbol, two different ints)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, str) and isinstance(b, str) and a != b:
        return None
    if a != b:
        raise ValueError
    return a


def infer_on_meta(factory, args: dict, inputs: list, dtypes=None, forward: dict | None = None,
                  tensors: dict | None = None) -> Inferred:
    """For a type without a rule: build factory(**args) on the meta device, run it
    on meta tensors with two batch sizes (and two sizes for unknown dims) and read
    off the output shapes and dtypes; a dim that follows the batch size is "N".
    `dtypes` are the inputs' (torch's or the spec's names; None: float32); `forward`
    the forward call's constant keywords and `tensors` its tensor ones: name -> (shape, dtype)."""
    import torch

    runs = ((2, 5), (3, 7))            # (batch size, stand-in for unknown dims)
    inputs = [_as_value(x) for x in inputs]
    dtypes = [_default_dtype(x, d) for x, d in zip(inputs, list(dtypes or []) + [None] * len(inputs))]

    def make(value, dt, n, unknown):
        if isinstance(value, list):
            return tuple(make(v, d, n, unknown) for v, d in zip(value, dt))
        size = [unknown if d is None else n if isinstance(d, str) else d for d in value]
        return torch.zeros(size, dtype=getattr(torch, dt))

    def shape_of(out):
        if out is None:
            return None
        if isinstance(out, torch.Tensor):
            return tuple(out.shape)
        if isinstance(out, (tuple, list)):
            return [shape_of(o) for o in out]
        return out

    def dtype_of(out):
        if isinstance(out, torch.Tensor):
            return str(out.dtype).removeprefix("torch.")
        return [dtype_of(o) for o in out] if isinstance(out, (tuple, list)) else FLOAT32

    def merge(a, b, n):
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
            return tuple(x if x == y else "N" if (x, y) == n else None for x, y in zip(a, b))
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            return [merge(x, y, n) for x, y in zip(a, b)]
        return a if a == b else None

    try:
        with torch.device("meta"), torch.no_grad():
            module = factory(**(args or {}))
            named = {key: (_as_value(shape), _default_dtype(_as_value(shape), dt))
                     for key, (shape, dt) in (tensors or {}).items()}
            outs = [module(*[make(x, d, n, u) for x, d in zip(inputs, dtypes)], **(forward or {}),
                           **{key: make(x, d, n, u) for key, (x, d) in named.items()}) for n, u in runs]
    except ShapeError:
        raise
    except Exception as e:  # torch raises many kinds; the message is what matters
        raise ShapeError(str(e) or repr(e)) from e
    shapes = {}
    if isinstance(module, torch.nn.Module):
        shapes = {k: tuple(p.shape) for k, p in module.named_parameters()}
    return Inferred(merge(shape_of(outs[0]), shape_of(outs[1]), (runs[0][0], runs[1][0])), dict(args or {}),
                    sum(math.prod(s) for s in shapes.values()), shapes, dtype_of(outs[0]))
