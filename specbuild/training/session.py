"""What every training loop shares: device, seeds, the data order, the run folder,
checkpoints (payload, save, restore) and the handling of a stop.

A loop (the supervised `Trainer`, the `GanLoop`) builds its models and optimizers,
then hands the session its `parts` (name -> module, optimizer or scheduler, or a
dict of them) and calls `session.run(loop)`.  The session checkpoints every part
with the run's state after each epoch, restores all of it on resume, and turns
Ctrl-C into a kept `interrupted.pt`.  So the two loops save, resume and stop alike.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SpecError
from .checkpoint import rng_state, set_rng_state
from .progress import Progress


class TrainingStopped(Exception):
    """The run stopped early: a non-finite loss (exit 1) or Ctrl-C (exit 130); a checkpoint is kept."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Run:
    history: list
    model: object              # the trained module (a dict of them for a GAN)
    run_dir: object
    best: dict | None = None
    task: str = ""
    data_info: dict = field(default_factory=dict)


@dataclass
class Distributed:
    """Where this process stands in a data-parallel job (torchrun sets RANK and WORLD_SIZE)."""
    rank: int = 0
    world_size: int = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            raise SpecError("data-parallel training (WORLD_SIZE > 1) is not supported yet",
                            hint="run specbuild train as a single process")
        return cls()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor   # one process: its outputs are all outputs


def pick_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda, but no CUDA GPU is available here", hint="use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def plain(info: dict) -> dict:
    """Data-set info as plain JSON data, safe for a weights_only checkpoint."""
    return json.loads(json.dumps(info, default=str))


def state_of(part):
    """A part's state_dict; a dict of parts gives a dict of theirs; None stays None."""
    if part is None:
        return None
    if isinstance(part, dict):
        return {name: state_of(p) for name, p in part.items()}
    return part.state_dict()


def load_state(part, state) -> None:
    if part is None or state is None:
        return
    if isinstance(part, dict):
        for name, p in part.items():
            load_state(p, state[name])
        return
    part.load_state_dict(state)


class Session:
    """One training run's shared state.  `history`, `best`, `start_epoch` and `step` are
    the loop's progress; `parts` are what a checkpoint holds besides it."""

    def __init__(self, checked, folder, *, task: str, progress=None, dist: Distributed | None = None):
        self.checked, self.config, self.folder, self.task = checked, checked.train, folder, task
        self.dist = dist or Distributed()
        self.device = pick_device(self.config.device)
        self.epochs = self.config.epochs
        seed_everything(self.config.seed)
        self.shuffle_rng = torch.Generator().manual_seed(self.config.seed)
        self.progress = progress if progress is not None else Progress(sys.stderr)
        self.history, self.best, self.start_epoch, self.step = [], None, 0, 0
        self.parts: dict = {}
        self.extra: dict = {}          # more plain data for every checkpoint (the network's name, data info)

    # -- checkpoints ---------------------------------------------------------
    def payload(self, epoch: int, **extra) -> dict:
        return {"spec": self.checked.data, "task": self.task, "epoch": epoch, "step": self.step,
                "history": self.history, "best": self.best, "rng": rng_state(),
                "shuffle_rng": self.shuffle_rng.get_state(),
                **{name: state_of(part) for name, part in self.parts.items()}, **self.extra, **extra}

    def restore(self, state: dict) -> None:
        """Every part, random state and the loop's progress, as the checkpoint left them."""
        for name, part in self.parts.items():
            load_state(part, state.get(name))
        set_rng_state(state["rng"])
        self.shuffle_rng.set_state(state["shuffle_rng"])
        self.start_epoch, self.step = int(state["epoch"]), int(state.get("step") or 0)
        self.history, self.best = list(state.get("history") or []), state.get("best")

    # -- the epoch loop ------------------------------------------------------
    def run(self, loop) -> None:
        """Epochs from where the run stands to the end: after each, a history row, the
        metrics files and a checkpoint (also best.pt when `loop.update_best` says so)."""
        self.folder.write_spec(self.checked.data)
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.epochs):
                row = loop.one_epoch(epoch)
                improved = loop.update_best(row)
                self.history.append(row)
                self.folder.write_history(self.history)
                self.folder.save(self.payload(epoch + 1), best=improved)
                self.progress.epoch_done(epoch + 1, self.epochs, row)
                if loop.should_stop():
                    break
        except KeyboardInterrupt:
            self.folder.save(self.payload(epoch, interrupted=True), name="interrupted.pt")
            raise TrainingStopped(f"interrupted during epoch {epoch + 1}; saved {self.folder.path / 'interrupted.pt'} "
                                  f"(resume from {self.folder.last} to repeat that epoch)", exit_code=130) from None
        finally:
            self.folder.plot(self.history)

    def stop_if_not_finite(self, value, epoch: int, step: int, what: str = "the loss") -> None:
        if not math.isfinite(value):
            raise TrainingStopped(f"{what} became {value} at epoch {epoch + 1}, step {step + 1}; {self.folder.kept()}",
                                  exit_code=1)
