"""The observers every run gets from its spec (see session.py for what an observer is):
the facts and report of the run (run_facts.py), and TensorBoard logging when `train.log`
names it."""
from __future__ import annotations

from .run_facts import RunFacts


def standard_observers(checked, folder) -> list:
    observers = [RunFacts()]
    if "tensorboard" in checked.train.log:
        from .tensorboard import TensorBoardLog       # the optional extra: imported only when asked for
        observers.append(TensorBoardLog(checked, folder))
    return observers
