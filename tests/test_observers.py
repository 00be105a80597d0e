"""Observers (training/session.py): what a run tells them, in which order, and what their
failures do to the run."""
from __future__ import annotations

import io

import pytest

from specbuild.training.progress import Progress
from specbuild.training.trainer import train

SPEC = "specs/fnn.yaml"
QUICK = dict(data="mnist-sample", limit=64, epochs=2, batch_size=32)


class Recorder:
    def __init__(self):
        self.events = []

    def run_start(self, session, loop):
        self.events.append(("run_start", session.step))

    def step_end(self, session, step, scalars):
        self.events.append(("step_end", step, sorted(scalars), float(scalars["train_loss"])))

    def epoch_end(self, session, loop, row):
        self.events.append(("epoch_end", row["epoch"], (session.folder.path / "last.pt").exists()))

    def run_end(self, session, loop):
        self.events.append(("run_end", len(session.history)))


def test_an_observer_sees_the_run_start_every_step_every_epoch_and_the_end(tmp_path):
    recorder = Recorder()
    run = train(SPEC, out=tmp_path / "run", observers=[recorder], progress=Progress(io.StringIO()), **QUICK)
    kinds = [event[0] for event in recorder.events]
    assert kinds == ["run_start"] + (["step_end"] * 2 + ["epoch_end"]) * 2 + ["run_end"]
    steps = [event for event in recorder.events if event[0] == "step_end"]
    assert [s[1] for s in steps] == [1, 2, 3, 4] and all(s[2] == ["train_loss"] for s in steps)
    # the epoch's checkpoint is written before the observers hear of the epoch (a pruner may stop it there)
    assert [e for e in recorder.events if e[0] == "epoch_end"] == [("epoch_end", 1, True), ("epoch_end", 2, True)]
    assert recorder.events[-1] == ("run_end", 2) and len(run.history) == 2


class StopAfterFirstEpoch(Recorder):
    def epoch_end(self, session, loop, row):
        super().epoch_end(session, loop, row)
        raise LookupError("enough")


def test_an_exception_from_epoch_end_stops_the_run_after_that_epochs_checkpoint(tmp_path):
    observer = StopAfterFirstEpoch()
    with pytest.raises(LookupError, match="enough"):
        train(SPEC, out=tmp_path / "run", observers=[observer], progress=Progress(io.StringIO()), **QUICK)
    assert observer.events[-1] == ("run_end", 1)        # told of the end all the same
    assert (tmp_path / "run" / "last.pt").exists()


class BrokenAtTheEnd:
    def run_end(self, session, loop):
        raise OSError("disk full")


def test_an_observer_failing_at_the_end_is_a_note_and_masks_nothing(tmp_path):
    log, after = io.StringIO(), Recorder()
    run = train(SPEC, out=tmp_path / "run", observers=[BrokenAtTheEnd(), after], progress=Progress(log), **QUICK)
    assert len(run.history) == 2
    assert "BrokenAtTheEnd failed at the run's end (OSError: disk full)" in log.getvalue()
    assert after.events[-1] == ("run_end", 2)                  # the others still get their turn
    assert (tmp_path / "run" / "report.html").exists()         # and so does the run's own report
