"""What goes wrong around training is reported, never a traceback.

* A data set that is not here (and may not be downloaded): exit 1, naming the fix.
* Data that does not fit the spec's inputs: a clear error before any training.
* A non-finite loss: the run stops naming the epoch and step, exit 1, and keeps
  the last good checkpoint when an epoch had finished.
* Unknown optimizer, loss or metric names: did-you-mean with file:line:col.
* Checkpoints are read with weights_only=True: a pickle is refused, never run.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli_text as run_cli
import torch

from specbuild.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"


def assert_no_training(out: Path) -> None:
    for name in ("last.pt", "best.pt", "metrics.jsonl"):
        assert not (out / name).exists(), f"{name} was written: training started"


# --- a data set that is not here -----------------------------------------------------------

@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No cached data sets and no system copies: only what --data-root gives."""
    from specbuild.data import images as image_sets
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("SPECBUILD_DATA", str(cache))
    monkeypatch.setattr(image_sets, "SYSTEM_DIRS", {})
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


@pytest.mark.parametrize("data", [["--data", "mnist"], []], ids=["--data mnist", "the spec's own mnist"])
def test_missing_data_set_names_the_fix(data, no_local_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "cnn.yaml", *data, "--no-download", "--data-root", no_local_data,
                       "--epochs", 1, "--out", out)
    assert rc == 1
    assert "data set 'mnist' was not found" in text and str(no_local_data) in text
    assert "downloading is off" in text
    assert "--data-root" in text and "--data mnist-sample" in text
    assert_no_training(out)


def test_evaluate_on_a_missing_data_set_names_the_fix(no_local_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--epochs", 1, "--limit", 40, "--out", out,
                       "--no-download")
    assert rc == 0, text
    rc, text = run_cli(capsys, "evaluate", out / "last.pt", "--data", "fashion-mnist", "--no-download",
                       "--data-root", no_local_data)
    assert rc == 1 and "data set 'fashion-mnist' was not found" in text and "--data-root" in text


# --- data that does not fit the spec -----------------------------------------------------------

def test_image_spec_on_tabular_data_stops_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "cnn.yaml", "--data", "diabetes", "--epochs", 1, "--out", out,
                       "--no-download")
    assert rc == 1
    assert "data set 'diabetes' gives x samples of shape [10] but the spec's input x is [1, 28, 28]" in text
    assert "mnist-sample" in text          # the hint names data sets that fit
    assert_no_training(out)


def test_two_input_spec_on_one_input_data(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "multi_input.yaml", "--data", "diabetes", "--epochs", 1, "--out", out,
                       "--no-download")
    assert rc == 1 and "gives 1 input(s) but the spec has 2 (x1, x2)" in text and "mnist-side" in text
    assert_no_training(out)


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_user_npz_with_the_wrong_shape(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = write_npz(tmp_path / "wrong.npz", x=rng.normal(size=(40, 5)).astype("float32"),
                     y=rng.normal(size=(40, 1)).astype("float32"))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", data, "--epochs", 1, "--out", out)
    assert rc == 1
    assert "gives x samples of shape [5] but the spec's input x is [10]" in text and "declare the input as [5]" in text
    assert_no_training(out)
    misnamed = write_npz(tmp_path / "misnamed.npz", features=rng.normal(size=(40, 10)).astype("float32"),
                         y=rng.normal(size=(40, 1)).astype("float32"))
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", misnamed, "--epochs", 1,
                       "--out", out)
    assert rc == 1 and "has no array named 'x'" in text and "features" in text
    assert_no_training(out)


def test_labels_beyond_the_models_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = write_npz(tmp_path / "twenty.npz", x=rng.normal(size=(40, 1, 28, 28)).astype("float32"),
                     label=rng.integers(0, 20, 40))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "fnn.yaml", "--data", data, "--epochs", 1, "--out", out)
    assert rc == 1 and "20" in text and "10" in text
    assert_no_training(out)


# --- a non-finite loss -----------------------------------------------------------------------

def test_huge_lr_stops_in_the_first_epoch_without_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--lr", "1e30", "--epochs", 3, "--limit", 100,
                       "--out", out, "--no-download")
    assert rc == 1
    assert "the loss became nan at epoch 1, step " in text
    assert "no epoch finished, so no checkpoint was written" in text
    assert not (out / "last.pt").exists()


def test_divergence_after_an_epoch_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """A StepLR that multiplies the lr by 1e30 after epoch 1: epoch 2 diverges."""
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--epochs", 3, "--limit", 100, "--out", out,
                       "--no-download", "--set", "train.scheduler={type: StepLR, step_size: 1, gamma: 1.0e+30}")
    assert rc == 1
    assert "became nan at epoch 2, step " in text or "became inf at epoch 2, step " in text, text
    assert f"the last good checkpoint is {out / 'last.pt'}" in text
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_weights_that_turn_non_finite_on_the_epochs_last_step(tmp_path, capsys):
    """One step per epoch: the step's loss is finite, the update it makes is not, so the
    held-out evaluation is the first to see it (was: an internal error from scikit-learn)."""
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--lr", "1e30", "--epochs", 2, "--limit", 20,
                       "--out", out, "--no-download")
    assert rc == 1
    assert "the held-out loss became nan at epoch 1, step 1" in text
    assert not (out / "last.pt").exists()


def test_nan_in_the_users_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype("float32")
    x[:, 3] = np.nan                      # in every sample: the first step meets it
    data = write_npz(tmp_path / "nan.npz", x=x, y=rng.normal(size=(64, 1)).astype("float32"))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", data, "--epochs", 2, "--out", out)
    assert rc == 1 and "the loss became nan at epoch 1, step 1" in text


def test_nan_only_in_the_held_out_data(tmp_path, capsys):
    from specbuild.data.tensors import seeded_split
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype("float32")
    _, held_out = seeded_split(64, 0.2, 0)           # the user file's default split
    x[int(held_out[0]), 3] = np.nan
    data = write_npz(tmp_path / "nan.npz", x=x, y=rng.normal(size=(64, 1)).astype("float32"))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", data, "--epochs", 2, "--out", out)
    assert rc == 1 and "the held-out loss became nan at epoch 1" in text


def test_lr_that_overflows_the_optimizer(tmp_path, capsys):
    # torch's single-tensor Adam raises on the overflow (the fused one, specbuild's default, gives NaN)
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--set", "train.optimizer.lr=1e38",
                       "--set", "train.optimizer.fused=false", "--epochs", 2, "--limit", 100, "--out", out,
                       "--no-download")
    assert rc == 1 and "the optimizer step failed at epoch 1, step 1" in text


def test_lr_that_overflows_the_fused_optimizer(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--set", "train.optimizer.lr=1e38",
                       "--epochs", 2, "--limit", 100, "--out", out, "--no-download")
    assert rc == 1 and "the loss became nan at epoch 1, step" in text
    assert_no_training(out)


# --- unknown names in the spec ---------------------------------------------------------------

def test_unknown_optimizer_loss_and_metric_names(tmp_path, capsys):
    text = (SPECS / "single_output.yaml").read_text()
    text = (text.replace("{type: MSELoss}", "{type: MSELos}").replace("{type: Adam,", "{type: Adamm,")
            .replace("metrics: [mse, mae, r2]", "metrics: [mse, maee, r2]"))
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    lines = text.splitlines()
    line_of = {word: next(i + 1 for i, line in enumerate(lines) if f"type: {word}" in line or f" {word}," in line)
               for word in ("MSELos", "Adamm", "maee")}
    out = tmp_path / "run"
    for argv in (["train", spec, "--epochs", 1, "--out", out, "--no-download"], ["validate", spec]):
        rc, printed = run_cli(capsys, *argv)
        assert rc == 1
        assert f"{spec}:{line_of['MSELos']}:" in printed and "unknown loss type 'MSELos'" in printed
        assert "did you mean 'MSELoss'" in printed
        assert f"{spec}:{line_of['Adamm']}:" in printed and "unknown optimizer type 'Adamm'" in printed
        assert "did you mean 'Adam'" in printed
        assert f"{spec}:{line_of['maee']}:" in printed and "'maee'" in printed and "did you mean 'mae'" in printed
        assert "3 problems found" in printed
    assert not out.exists()           # validation comes first: not even a run folder


def test_unknown_scheduler_through_set(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--set", "train.scheduler.type=StepLRR",
                       "--set", "train.scheduler.step_size=1", "--epochs", 1, "--out", out, "--no-download")
    assert rc == 1 and "StepLRR" in text and "did you mean 'StepLR'" in text
    assert not out.exists()


# --- checkpoints are weights only ----------------------------------------------------------

class Payload:
    """Unpickling this would create a folder: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_checkpoint_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    spec = {"specbuild": 1, "name": "tiny", "inputs": {"x": [10]}, "layers": [{"type": "Linear", "out_features": 1}]}
    evil = tmp_path / "evil.pt"
    torch.save({"spec": spec, "model": Payload(str(marker)), "format": "specbuild-checkpoint"}, evil)
    rc, text = run_cli(capsys, "evaluate", evil, "--data", "diabetes", "--no-download")
    assert rc == 1 and "refused" in text and "pickled Python objects" in text
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 10), dtype="float32"))
    rc, text = run_cli(capsys, "predict", evil, tmp_path / "x.npz")
    assert rc == 1 and "refused" in text
    rc, text = run_cli(capsys, "train", tmp_path / "whatever.yaml", "--resume", evil)
    assert rc == 1 and "refused" in text
    assert not marker.exists(), "unpickling ran code from the checkpoint"


def test_real_checkpoints_load_with_weights_only(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "dropout.yaml", "--data", "mnist-sample", "--epochs", 1, "--limit", 64,
                       "--out", out, "--no-download", "--set", "train.scheduler={type: StepLR, step_size: 1}")
    assert rc == 0, text
    for name in ("last.pt", "best.pt"):
        state = torch.load(out / name, weights_only=True)
        assert state["format"] == "specbuild-checkpoint" and state["spec"]["name"] == "dropout"
        assert {"model", "optimizer", "scheduler", "rng", "shuffle_rng", "history", "epoch"} <= set(state)
        assert all(isinstance(v, torch.Tensor) for v in state["model"].values())
        assert math.isfinite(state["history"][0]["train_loss"])
