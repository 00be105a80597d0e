"""The observers every run gets from its spec (see session.py for what an observer is):
TensorBoard logging when `train.log` names it."""
from __future__ import annotations


def standard_observers(checked, folder) -> list:
    observers = []
    if "tensorboard" in checked.train.log:
        from .tensorboard import TensorBoardLog       # the optional extra: imported only when asked for
        observers.append(TensorBoardLog(checked, folder))
    return observers
