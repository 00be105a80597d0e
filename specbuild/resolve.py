"""Turn a registry target such as "torch.nn.Linear" into the object it names.

Only the registry's own targets reach this function, never text from a spec,
and only names inside torch and the operator module resolve.
"""
from __future__ import annotations

import importlib
import operator

_ROOTS = ("torch.nn.functional", "torch.nn.utils", "torch.nn", "torch.optim.lr_scheduler", "torch.optim",
          "torch.Tensor", "torch", "operator")


def resolve_target(target: str):
    if target.startswith("operator."):
        return getattr(operator, target.split(".", 1)[1])
    for root in _ROOTS:
        if target.startswith(root + "."):
            obj = importlib.import_module("torch") if root == "torch.Tensor" else importlib.import_module(root)
            if root == "torch.Tensor":
                obj = obj.Tensor
            for part in target[len(root) + 1:].split("."):
                obj = getattr(obj, part)
            return obj
    raise LookupError(f"{target!r} is outside torch")
