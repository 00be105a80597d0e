"""Optimizers and learning-rate schedulers from a spec's `train` section.

Any torch.optim optimizer and lr_scheduler class the catalog knows, by name,
with its own arguments (the schema has already checked them).  Schedulers step
once per epoch by default, or per batch with `interval: step`; ReduceLROnPlateau
steps on the monitored metric.
"""
from __future__ import annotations

from .. import registry
from ..resolve import resolve_target


def make_optimizer(entry, parameters):
    """The spec's optimizer (a train config Component).  Where torch has a fused kernel for it (Adam, AdamW, SGD, Adagrad on
    the CPU or a GPU) and the spec chose neither `fused` nor `foreach`, the fused one is used:
    the same update, about a quarter faster per step than torch's default on the CPU."""
    cls = resolve_target(registry.CATALOG["optimizers"][entry.type]["target"])
    args = dict(entry.args)
    parameters = list(parameters)
    accepts = registry.CATALOG["optimizers"][entry.type]["args"]
    if "fused" in accepts and "fused" not in args and "foreach" not in args \
            and parameters and all(p.device.type in ("cpu", "cuda") for p in parameters):
        try:
            return cls(parameters, fused=True, **args)
        except (RuntimeError, ValueError):   # no fused kernel for this device, dtype or option
            pass
    return cls(parameters, **args)


def make_scheduler(entry, optimizer, epochs: int, steps_per_epoch: int):
    """(scheduler or None, "epoch" or "step") for a train config's scheduler Component (or None)."""
    if entry is None:
        return None, "epoch"
    args = dict(entry.args)
    interval = entry.interval
    # Fill the run's length where the scheduler needs it and the spec left it out.
    total = epochs * steps_per_epoch if interval == "step" else epochs
    if entry.type == "OneCycleLR":
        args.setdefault("total_steps", epochs * steps_per_epoch)
        interval = "step"
    if "T_max" in registry.FILLED_BY_TRAINER.get(entry.type, ()):
        args.setdefault("T_max", max(total, 1))
    cls = resolve_target(registry.CATALOG["schedulers"][entry.type]["target"])
    return cls(optimizer, **args), interval


def step_scheduler(scheduler, monitored) -> None:
    if scheduler is None:
        return
    if type(scheduler).__name__ == "ReduceLROnPlateau":
        if monitored is not None:
            scheduler.step(monitored)
        return
    scheduler.step()
