"""What every training loop shares: device, seeds, the data order, the run folder,
checkpoints (payload, save, restore) and the handling of a stop.

A loop (the supervised `Trainer`, the `GanLoop`) builds its models and optimizers,
then hands the session its `parts` (name -> module, optimizer or scheduler, or a
dict of them) and calls `session.run(loop)`; each epoch it draws its batches from
`session.batches`.  The session checkpoints every part with the run's state after
each epoch and restores all of it on resume.

Ctrl-C takes effect between two steps, never inside one: the step in flight
finishes, then `last.pt` records the exact position (the epoch, the batches done,
the data order's seed state at the epoch's start, the loop's running sums and every
random state), so `--resume` continues from the next batch and ends with the weights
a run never stopped ends with.  A second Ctrl-C stops at once.  So the two loops
save, resume and stop alike.

Observers follow a run without being part of its loop (TensorBoard logging, the end-of-run
report, a tuning study's pruner): objects in `session.observers` with any of the methods
`run_start(session, loop)`, `step_end(session, step, scalars)` (scalars: name -> 0-d tensor),
`epoch_end(session, loop, row)` and `run_end(session, loop)`.  Only the writing rank calls
them.  An exception from `epoch_end` stops the run after the epoch's checkpoint, as a pruned
trial must; `run_end` runs however the run ends.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SpecError
from .checkpoint import load_weights, rng_state, set_rng_state
from .distributed import Distributed
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


def _has_mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


# device -> (is it here?, what it needs)
_DEVICES = {"cuda": (torch.cuda.is_available, "a CUDA GPU"), "mps": (_has_mps, "an Apple GPU (MPS)"),
            "cpu": (lambda: True, "")}


def pick_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _has_mps() else "cpu")
    available, needs = _DEVICES.get(name, (lambda: True, ""))
    if not available():
        raise SpecError(f"device {name!r} needs {needs}, and none is available here",
                        hint="use --device cpu, or auto to take the best one here")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def plain(info: dict) -> dict:
    """Data-set info as plain JSON data, safe for a weights_only checkpoint."""
    return json.loads(json.dumps(info, default=str))


class _Paused(Exception):
    """Raised from `Session.batches` between two steps when a stop was asked for."""

    def __init__(self, position: dict):
        super().__init__("paused")
        self.position = position


class _StopRequests:
    """While installed, the first Ctrl-C (SIGINT) only asks the run to stop at the next step
    boundary; a second one raises KeyboardInterrupt at once.  Outside the main thread signal
    handlers cannot be set, and Ctrl-C acts at once as usual."""

    def __init__(self, progress, parallel: bool = False):
        self.progress, self.requested, self._previous, self.parallel = progress, False, None, parallel

    def __enter__(self):
        # a process started with Ctrl-C ignored (`cmd &` in a script) keeps ignoring it; a worker of
        # several does not pause alone (the others would wait in their next collective): torchrun
        # stops them all, and the last step checkpoint (train.checkpoint_every) holds the run
        if threading.current_thread() is threading.main_thread() and not self.parallel \
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress.note("stopping after this step (Ctrl-C again to stop at once, without saving)")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def state_of(part):
    """A part's state_dict; a dict of parts gives a dict of theirs; None stays None."""
    if part is None:
        return None
    if isinstance(part, dict):
        return {name: state_of(p) for name, p in part.items()}
    return part.state_dict()


def load_state(part, state, source=None) -> None:
    """The inverse of state_of; a model's weights that do not fit it are a CheckpointError
    naming the weight (a checkpoint's spec and weights out of step), not torch's RuntimeError."""
    if part is None or state is None:
        return
    if isinstance(part, dict):
        for name, p in part.items():
            load_state(p, state[name], source)
    elif isinstance(part, torch.nn.Module):
        load_weights(part, state, source)
    else:
        part.load_state_dict(state)


def changed_components(state: dict, config, progress) -> tuple:
    """The parts a resume must not load: an optimizer or scheduler whose type the command line
    changed (its state would not fit the new one; the new one starts afresh, and says so)."""
    recorded = (state.get("spec") or {}).get("train") or {}
    skip = []
    for part in ("optimizer", "scheduler"):
        entry = recorded.get(part)
        was = entry.get("type") if isinstance(entry, dict) else None
        now = getattr(getattr(config, part), "type", None)
        if was != now and (was is not None or part == "scheduler"):
            skip.append(part)
            progress.note(f"train.{part} is now {now or 'none'}, not the checkpoint's {was or 'none'}: "
                          f"the {part} starts afresh, so the run will not match one never stopped")
    return tuple(skip)


class Session:
    """One training run's shared state.  `history`, `best`, `start_epoch` and `step` are
    the loop's progress; `parts` are what a checkpoint holds besides it."""

    def __init__(self, checked, folder, *, task: str, progress=None, dist: Distributed | None = None):
        self.checked, self.config, self.folder, self.task = checked, checked.train, folder, task
        self.dist = dist or Distributed()
        self.device = pick_device(self.config.device)
        if self.dist.parallel and self.device.type == "cuda":      # one GPU per worker
            self.device = torch.device("cuda", self.dist.local_rank)
        self.epochs = self.config.epochs
        if self.epochs < 1:
            raise SpecError("train.epochs is 0: there is nothing to train", path="train.epochs",
                            hint="give --epochs 1 or more")
        seed_everything(self.config.seed)
        self.shuffle_rng = torch.Generator().manual_seed(self.config.seed)
        self.progress = progress if progress is not None else Progress(sys.stderr, quiet=not self.dist.is_writer)
        self.history, self.best, self.start_epoch, self.step = [], None, 0, 0
        self.parts: dict = {}
        self.extra: dict = {}          # more plain data for every checkpoint (the network's name, data info)
        self.position: dict | None = None   # where a paused run stood inside its next epoch
        self._stops: _StopRequests | None = None
        self.observers: list = []      # see the module docstring

    def notify(self, event: str, *args) -> None:
        """Call `event` on every observer that has it (the writing rank only).  At the run's end
        an observer that fails is a note: the run's own outcome (an error in flight, or a
        finished run) must stand, and the other observers still get their turn."""
        if not self.dist.is_writer:
            return
        for observer in self.observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            if event != "run_end":
                method(self, *args)
                continue
            try:
                method(self, *args)
            except Exception as error:
                self.progress.note(f"note: {type(observer).__name__} failed at the run's end "
                                   f"({type(error).__name__}: {error})")

    def after_step(self, done: int, scalars: dict) -> None:
        """A step is done: the progress bar shows the first scalar; observers get them all."""
        self.progress.step(done, next(iter(scalars.values())))
        if self.observers:
            self.notify("step_end", self.step, scalars)

    # -- checkpoints ---------------------------------------------------------
    def payload(self, epoch: int, **extra) -> dict:
        ranks = self.dist.objects(rng_state()) if self.dist.parallel else None   # every rank's, for exact resumes
        return {"spec": self.checked.data, "task": self.task, "epoch": epoch, "step": self.step,
                "history": self.history, "best": self.best, "rng": ranks[0] if ranks else rng_state(),
                **({"rng_ranks": ranks} if ranks else {}),
                "shuffle_rng": self.shuffle_rng.get_state(),
                **{name: state_of(part) for name, part in self.parts.items()}, **self.extra, **extra}

    def restore(self, state: dict, source=None, skip: tuple = ()) -> None:
        """Every part (but those in `skip`), random state and the loop's progress, as the
        checkpoint (read from `source`) left them, and best.pt brought in line with the best
        epoch it records."""
        for name, part in self.parts.items():
            if name not in skip:
                load_state(part, state.get(name), source)
        ranks = state.get("rng_ranks")
        if self.dist.parallel and ranks is not None and len(ranks) != self.dist.world_size:
            raise SpecError(f"the checkpoint was written by {len(ranks)} workers, and this run has "
                            f"{self.dist.world_size}", hint=f"resume with --nproc {len(ranks)}")
        set_rng_state(ranks[self.dist.rank] if self.dist.parallel and ranks else state["rng"])
        self.shuffle_rng.set_state(state["shuffle_rng"])
        self.start_epoch, self.step = int(state["epoch"]), int(state.get("step") or 0)
        self.history, self.best = list(state.get("history") or []), state.get("best")
        self.position = state.get("position")
        self.folder.repair_best(state, source)
        if self.start_epoch >= self.epochs:
            raise SpecError(f"the run has trained {self.start_epoch} epochs, and train.epochs is {self.epochs}: "
                            "there is nothing left to train", path="train.epochs",
                            hint=f"resume with --epochs {self.start_epoch + 1} or more to train further")

    # -- batches and stops ---------------------------------------------------
    def partial(self, epoch: int, sums: dict) -> dict:
        """The loop's running sums for an epoch: `sums` (zeros) at its start, or what a
        paused run had summed, on the session's device."""
        if self.position is None or self.position["epoch"] != epoch:
            return sums
        saved = self.position["sums"] if "sums_ranks" not in self.position else \
            self.position["sums_ranks"][self.dist.rank]         # each worker summed its own share
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in saved.items()}

    def batches(self, epoch: int, data, batch_size: int, shuffle: bool, sums: dict):
        """Yield (index, (inputs, targets)) for the epoch: this rank's share of each global
        batch.  A run paused inside this epoch gets the same data order back (the shuffle
        state at the epoch's start) and continues after the batches it had done.  Between
        steps, a stop request pauses the run with `sums` (the loop's running sums, updated
        in place) saved in its position; every `train.checkpoint_every` steps, last.pt records the
        same position, so a run killed mid-epoch resumes from the exact next batch."""
        first = 0
        if self.position is not None and self.position["epoch"] == epoch:
            first = int(self.position["batch"])
            self.shuffle_rng.set_state(self.position["shuffle_rng"])
        self.position = None
        epoch_rng = self.shuffle_rng.get_state()
        all_batches = data.batches(batch_size, shuffle=shuffle, generator=self.shuffle_rng,
                                   rank=self.dist.rank, world_size=self.dist.world_size)
        every, total = self.config.checkpoint_every, data.num_batches(batch_size, world_size=self.dist.world_size)
        for i, batch in enumerate(itertools.islice(all_batches, first, None), start=first):
            yield i, batch                # ... and the loop takes its step
            if self._stops is not None and self._stops.requested:
                raise _Paused(self._position(epoch, i + 1, epoch_rng, sums))
            if every and self.step % every == 0 and i + 1 < total:     # the epoch's end saves anyway
                self.folder.save(self.payload(epoch, position=self._position(epoch, i + 1, epoch_rng, sums)))

    def _position(self, epoch: int, batch: int, epoch_rng, sums: dict) -> dict:
        """Where the run stands inside an epoch; with several workers, every one's running sums."""
        position = {"epoch": epoch, "batch": batch, "shuffle_rng": epoch_rng, "sums": dict(sums)}
        if self.dist.parallel:
            position["sums_ranks"] = self.dist.objects({k: v.cpu() if isinstance(v, torch.Tensor) else v
                                                        for k, v in sums.items()})
        return position

    # -- the epoch loop ------------------------------------------------------
    def run(self, loop) -> None:
        """Epochs from where the run stands to the end: after each, a history row, the
        metrics files and a checkpoint (also best.pt when `loop.update_best` says so).
        Ctrl-C pauses between two steps (see the module docstring)."""
        self.folder.write_spec(self.checked.data)
        epoch = self.start_epoch
        self.notify("run_start", loop)
        try:
            with _StopRequests(self.progress, self.dist.parallel) as self._stops:
                for epoch in range(self.start_epoch, self.epochs):
                    row = loop.one_epoch(epoch)
                    improved = loop.update_best(row)
                    self.history.append(row)
                    self.folder.write_history(self.history)
                    self.folder.save(self.payload(epoch + 1), best=improved)
                    self.progress.epoch_done(epoch + 1, self.epochs, row)
                    self.notify("epoch_end", loop, row)
                    if self._stops.requested and epoch + 1 < self.epochs:
                        raise TrainingStopped(f"interrupted after epoch {epoch + 1}; {self.folder.last} holds it "
                                              f"(resume with: specbuild train --resume {self.folder.path})",
                                              exit_code=130)
                    if loop.should_stop():
                        break
        except _Paused as pause:
            self.folder.save(self.payload(epoch, position=pause.position))
            batch = pause.position["batch"]
            raise TrainingStopped(f"interrupted in epoch {epoch + 1} after step {batch}; {self.folder.last} holds "
                                  f"the run from there (resume with: specbuild train --resume {self.folder.path})",
                                  exit_code=130) from None
        except KeyboardInterrupt:
            raise TrainingStopped(f"stopped at once in epoch {epoch + 1}, without saving; {self.folder.kept()}",
                                  exit_code=130) from None
        finally:
            self._stops = None
            self.folder.plot(self.history)
            self.notify("run_end", loop)

    def stop_if_not_finite(self, value, epoch: int, step: int, what: str = "the loss") -> None:
        if not math.isfinite(value):
            raise TrainingStopped(f"{what} became {value} at epoch {epoch + 1}, step {step + 1}; {self.folder.kept()}",
                                  exit_code=1)
