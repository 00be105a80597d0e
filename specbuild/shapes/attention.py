"""The shape rule of scaled_dot_product_attention: query [..., L, E], key [..., S, E] and value
[..., S, Ev] give [..., L, Ev], their batch dims broadcast (torch's math: softmax(q @ k^T) @ v);
an attn_mask, the 4th input, broadcasts to the scores [..., L, S] and excludes is_causal.  No
torch import here."""
from __future__ import annotations

import math

from .core import ShapeError, format_shape, rule, same_dim, tensor
from .ops import NONE, broadcast

_ROLES = ("query", "key", "value", "attn_mask")


def _broadcast(a, shapes, what):
    try:
        return broadcast(a.type, shapes)
    except ShapeError:
        raise ShapeError(f"{a.type}: the batch dims of {what} do not broadcast") from None


def _fits_into(mask, scores) -> bool:
    """Whether `mask` broadcasts to `scores` without growing it (torch adds it to the scores in place)."""
    if len(mask) > len(scores):
        return False
    for m, s in zip(reversed(mask), reversed(scores)):
        if m == 1 or m is None or s is None:
            continue
        try:
            same_dim(m, s)
        except ValueError:
            return False
    return True


@rule("scaled_dot_product_attention", dropout_p=0.0, is_causal=False, scale=None)
def _attention(a, inputs):
    xs = tensor(a.type, inputs, n=4, lo=3)
    for role, x in zip(_ROLES, xs[:3]):
        if len(x) < 2:
            raise ShapeError(f"{a.type}: its {role} {format_shape(x)} needs at least 2 dims ([..., length, features])")
    q, k, v = xs[:3]
    a.prob("dropout_p")
    if not isinstance(a["is_causal"], bool):
        raise ShapeError(f"{a.type} is_causal must be true or false, not {a['is_causal']!r}", arg="is_causal")
    scale = a["scale"]
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or math.isnan(scale)):
        raise ShapeError(f"{a.type} scale must be a number or null, not {scale!r}", arg="scale")
    if len(xs) == 4 and a["is_causal"]:
        raise ShapeError(f"{a.type} takes no attn_mask (its 4th input) with is_causal: true; torch refuses both",
                         arg="is_causal", hint="drop is_causal, or make the mask causal itself")
    shown = f"query {format_shape(q)}, key {format_shape(k)}, value {format_shape(v)}"
    for (i, j, what) in ((q[-1], k[-1], "query's and key's last dims (the features E)"),
                         (k[-2], v[-2], "key's and value's lengths (S, their dim -2)")):
        try:
            same_dim(i, j)
        except ValueError:
            raise ShapeError(f"{a.type}: {what} differ: {i} vs {j} ({shown})") from None
    scores = _broadcast(a, [q[:-2], k[:-2]], f"query {format_shape(q)} and key {format_shape(k)}") + (q[-2], k[-2])
    if len(xs) == 4:
        if not _fits_into(xs[3], scores):
            raise ShapeError(f"{a.type}: its attn_mask {format_shape(xs[3])} does not broadcast to the scores "
                             f"{format_shape(scores)} ([..., L, S] of {shown})")
    batch = _broadcast(a, [scores[:-2], v[:-2]], f"the scores {format_shape(scores)} and value {format_shape(v)}")
    return batch + (q[-2], v[-1]), NONE
