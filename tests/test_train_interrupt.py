"""Ctrl-C at any moment, then --resume: the run ends with weights bitwise equal to a run never
stopped, its metrics log has each epoch once, and best.pt matches the best epoch last.pt records.

Ctrl-C is a real SIGINT sent to this process at a chosen moment (from the progress display
after a given step, from inside a checkpoint save, from inside the evaluation), so the tests
hit the moments exactly; test_train_resume.py sends one to a real `specbuild train` process.
"""
from __future__ import annotations

import json
import os
import signal
import sys

import pytest
import torch

import specbuild
from specbuild.training import run_folder as run_folder_module
from specbuild.training import trainer as trainer_module
from specbuild.training.checkpoint import load_checkpoint, save_checkpoint
from specbuild.training.progress import Progress
from specbuild.training.session import TrainingStopped

# 256 samples in batches of 32: 8 steps an epoch; dropout, a per-step scheduler and momentum make
# every random state, the data order and the optimizer's state matter to the final weights
SPEC = """\
specbuild: 1
name: stopme
inputs: {x: [1, 28, 28]}
layers:
  - {type: flatten}
  - {name: fc1, type: Linear, out_features: 16}
  - {type: relu}
  - {name: drop, type: Dropout, p: 0.3}
  - {name: fc2, type: Linear, out_features: 10}
outputs: fc2
train:
  data: {dataset: mnist-sample, batch_size: 32, limit: 256}
  loss: {type: CrossEntropyLoss}
  optimizer: {type: SGD, lr: 0.05, momentum: 0.9}
  scheduler: {type: ExponentialLR, gamma: 0.99, interval: step}
  epochs: 3
  seed: 5
"""
STEPS = 8


class SignalAt(Progress):
    """The progress display, sending SIGINT to this process after the given (epoch, step)s."""

    def __init__(self, *moments):
        super().__init__(sys.stderr, quiet=True)
        self.moments, self.epoch, self.notes = set(moments), 0, []

    def epoch_start(self, epoch, epochs, batches):
        self.epoch = epoch

    def step(self, done, loss):
        if (self.epoch, done) in self.moments:
            os.kill(os.getpid(), signal.SIGINT)

    def note(self, text):
        self.notes.append(text)


def train(folder, progress=None, **options):
    return specbuild.train(SPEC, out=str(folder), download=False,
                           progress=progress or Progress(sys.stderr, quiet=True), **options)


def resume(folder, progress=None):
    return specbuild.train(None, resume=str(folder), download=False,
                           progress=progress or Progress(sys.stderr, quiet=True))


@pytest.fixture(autouse=True)
def ctrl_c_acts():
    """Ctrl-C raises KeyboardInterrupt here, as at a terminal, even where this suite runs with
    SIGINT ignored (a background job of a script), which the trainer respects."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unbroken")
    train(folder)
    return load_checkpoint(folder / "last.pt")


def epochs_logged(folder) -> list[int]:
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_same_as_unbroken(folder, unbroken):
    got = load_checkpoint(folder / "last.pt")
    assert got["epoch"] == unbroken["epoch"] == 3 and got["step"] == unbroken["step"] == 3 * STEPS
    for key, value in unbroken["model"].items():
        assert torch.equal(got["model"][key], value), key
    for key, value in unbroken["optimizer"]["state"].items():
        assert torch.equal(got["optimizer"]["state"][key]["momentum_buffer"], value["momentum_buffer"])
    assert got["scheduler"] == unbroken["scheduler"]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]
    assert strip(got["history"]) == strip(unbroken["history"])
    assert epochs_logged(folder) == [1, 2, 3]
    assert_best_matches_last(folder)


def assert_best_matches_last(folder):
    last = load_checkpoint(folder / "last.pt")
    assert load_checkpoint(folder / "best.pt")["epoch"] == last["best"]["epoch"]


@pytest.mark.parametrize("epoch, step", [(1, 3), (1, STEPS), (2, 1), (3, 5)],
                         ids=["early-in-epoch-1", "after-the-last-step-of-epoch-1", "first-step-of-epoch-2",
                              "inside-the-last-epoch"])
def test_ctrl_c_mid_epoch_then_resume_matches_a_run_never_stopped(tmp_path, unbroken, epoch, step):
    folder = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train(folder, SignalAt((epoch, step)))
    assert stopped.value.exit_code == 130
    assert str(stopped.value) == (f"interrupted in epoch {epoch} after step {step}; {folder / 'last.pt'} holds the "
                                  f"run from there (resume with: specbuild train --resume {folder})")
    paused = load_checkpoint(folder / "last.pt")
    assert paused["epoch"] == epoch - 1 and paused["position"]["batch"] == step
    assert paused["step"] == (epoch - 1) * STEPS + step
    assert epochs_logged(folder) == list(range(1, epoch)) if epoch > 1 else not (folder / "metrics.jsonl").exists()
    resume(folder)
    assert_same_as_unbroken(folder, unbroken)


def test_ctrl_c_during_the_first_save_finishes_it_then_stops(tmp_path, unbroken, monkeypatch):
    folder = tmp_path / "run"
    saves = []

    def save_and_signal(path, payload):
        saves.append(os.path.basename(path))
        if len(saves) == 1:
            os.kill(os.getpid(), signal.SIGINT)     # arrives while last.pt of epoch 1 is written
        save_checkpoint(path, payload)

    monkeypatch.setattr(run_folder_module, "save_checkpoint", save_and_signal)
    with pytest.raises(TrainingStopped) as stopped:
        train(folder)
    assert str(stopped.value) == (f"interrupted after epoch 1; {folder / 'last.pt'} holds it "
                                  f"(resume with: specbuild train --resume {folder})")
    assert saves == ["last.pt", "best.pt"] and load_checkpoint(folder / "last.pt")["epoch"] == 1
    monkeypatch.undo()
    resume(folder)
    assert_same_as_unbroken(folder, unbroken)


def test_ctrl_c_during_the_evaluation_stops_after_that_epoch(tmp_path, unbroken, monkeypatch):
    folder = tmp_path / "run"
    real = trainer_module.evaluate_model
    calls = []

    def evaluate_and_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate_model", evaluate_and_signal)
    with pytest.raises(TrainingStopped, match="^interrupted after epoch 2;"):
        train(folder)
    monkeypatch.undo()
    assert epochs_logged(folder) == [1, 2]
    resume(folder)
    assert_same_as_unbroken(folder, unbroken)


def test_ctrl_c_twice_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    folder = tmp_path / "run"
    progress = SignalAt((2, 2))
    progress.moments = {(2, 2)}
    real_step = progress.step

    def twice(done, loss):               # the second Ctrl-C comes before the next step boundary
        real_step(done, loss)
        real_step(done, loss)

    progress.step = twice
    with pytest.raises(TrainingStopped) as stopped:
        train(folder, progress)
    assert stopped.value.exit_code == 130
    assert str(stopped.value) == (f"stopped at once in epoch 2, without saving; the last good checkpoint is "
                                  f"{folder / 'last.pt'}")
    kept = load_checkpoint(folder / "last.pt")
    assert kept["epoch"] == 1 and "position" not in kept


def test_ctrl_c_in_a_gan_resumes_exactly_too(tmp_path):
    gan = (specbuild.load_spec(str(_repo() / "specs" / "gan.yaml")).data)
    overrides = {"train.epochs": 2, "train.data.limit": 96, "train.data.dataset": "mnist-sample"}
    run = lambda folder, progress: specbuild.train(gan, out=str(folder), overrides=overrides, download=False,
                                                   progress=progress)
    run(tmp_path / "unbroken", Progress(sys.stderr, quiet=True))
    with pytest.raises(TrainingStopped, match="^interrupted in epoch 1 after step 2;"):
        run(tmp_path / "run", SignalAt((1, 2)))
    resume(tmp_path / "run")
    want, got = (load_checkpoint(tmp_path / name / "last.pt") for name in ("unbroken", "run"))
    for role in ("generator", "discriminator"):
        for key, value in want["model"][role].items():
            assert torch.equal(got["model"][role][key], value), (role, key)
    assert epochs_logged(tmp_path / "run") == [1, 2]


def _leave_best_behind(folder):
    """What a kill between writing last.pt and best.pt leaves: best.pt one epoch behind."""
    last = load_checkpoint(folder / "last.pt")
    assert last["best"]["epoch"] == last["epoch"]   # the last epoch was the best: best.pt was due
    stale = {k: v for k, v in last.items() if k not in ("format", "format_version")}
    save_checkpoint(folder / "best.pt", dict(stale, epoch=last["epoch"] - 1))
    return last


def test_a_best_pt_left_behind_by_a_kill_is_repaired_from_last_pt(tmp_path):
    folder = tmp_path / "run"
    train(folder, epochs=2)
    last = _leave_best_behind(folder)
    run_folder_module.RunFolder(folder).repair_best(last, folder / "last.pt")
    assert (folder / "best.pt").read_bytes() == (folder / "last.pt").read_bytes()
    assert_best_matches_last(folder)
    assert not [n for n in os.listdir(folder) if ".tmp-" in n]


def test_best_pt_is_not_touched_when_it_matches_or_the_checkpoint_is_elsewhere(tmp_path):
    folder = tmp_path / "run"
    train(folder, epochs=2)
    before = (folder / "best.pt").stat().st_mtime_ns
    last = load_checkpoint(folder / "last.pt")
    run_folder_module.RunFolder(folder).repair_best(last, folder / "last.pt")        # already matches
    _leave_best_behind(folder)
    stale = (folder / "best.pt").read_bytes()
    run_folder_module.RunFolder(folder).repair_best(last, tmp_path / "elsewhere.pt")  # not this folder's last.pt
    assert (folder / "best.pt").read_bytes() == stale and before


def test_resume_repairs_a_best_pt_left_behind_by_a_kill(tmp_path, unbroken):
    folder = tmp_path / "run"
    train(folder, epochs=2)
    _leave_best_behind(folder)
    specbuild.train(None, resume=str(folder), epochs=3, download=False, progress=Progress(sys.stderr, quiet=True))
    assert_best_matches_last(folder)
    assert_same_as_unbroken(folder, unbroken)


def _repo():
    from conftest import REPO
    return REPO


def test_a_run_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path, unbroken):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)      # as `specbuild train ... &` in a script
    try:
        train(tmp_path / "run", SignalAt((1, 3)))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert_same_as_unbroken(tmp_path / "run", unbroken)
