"""Per-type shape and parameter rules, pure Python without torch.

`core` holds the rule table and the helpers rules share; each other module
registers the rules of one family with `@rule`, and `dtypes` the dtype each type
takes and gives.  They are imported here, once,
so every rule is registered whenever any part of `specbuild.shapes` is used, and
no rule module is ever imported from below (as timm's models/__init__ does).
"""
from . import core, ops, index, tensors, attention, layers, rearrange, sequence, dtypes  # noqa: F401  (registers every rule)
