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
import re
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli as run_cli_streams, run_cli_text as run_cli
import torch

from specbuild.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"


def last_line(text: str) -> str:
    """The last line printed: the error, after any epoch lines."""
    return text.rstrip("\n").splitlines()[-1]


def missing_message(name: str, folder: str, roots: list) -> str:
    """The whole message for a torchvision set found in none of `roots` (searched as the loader does)."""
    searched = ", ".join(f"{p}" for root in roots for p in (root, f"{root}/{name}", f"{root}/{folder}/raw"))
    return (f"train.data: data set {name!r} was not found in {searched} and could not be downloaded "
            "(downloading is off) — download it once with network access, pass --data-root DIR holding "
            "its files, or train on the bundled digits with --data mnist-sample")


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


@pytest.fixture
def cache(no_local_data):
    return no_local_data.parent / "cache"


@pytest.mark.parametrize("data", [["--data", "mnist"], []], ids=["--data mnist", "the spec's own mnist"])
def test_missing_data_set_names_the_fix(data, no_local_data, cache, tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = run_cli_streams(capsys, "train", SPECS / "cnn.yaml", *data, "--no-download", "--data-root",
                                      no_local_data, "--epochs", 1, "--out", out)
    assert rc == 1 and stdout == ""
    assert err == missing_message("mnist", "MNIST", [no_local_data, cache]) + "\n"
    assert_no_training(out)


def test_evaluate_on_a_missing_data_set_names_the_fix(no_local_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--epochs", 1, "--limit", 40, "--out", out,
                       "--no-download")
    assert rc == 0, text
    rc, stdout, err = run_cli_streams(capsys, "evaluate", out / "last.pt", "--data", "fashion-mnist", "--no-download",
                                      "--data-root", no_local_data)
    assert rc == 1 and stdout == ""
    assert err == missing_message("fashion-mnist", "FashionMNIST", [no_local_data, no_local_data.parent / "cache"]) + "\n"


# --- data that does not fit the spec -----------------------------------------------------------

def test_image_spec_on_tabular_data_stops_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "cnn.yaml", "--data", "diabetes", "--epochs", 1, "--out", out,
                       "--no-download")
    assert rc == 1
    # the hint names the data sets that fit
    assert last_line(text) == ("inputs.x: data set 'diabetes' gives x samples of shape [10] but the spec's input x "
                               "is [1, 28, 28] — declare the input as [10] (or any shape with 10 elements), or train "
                               "on a data set with samples of shape [1, 28, 28]: mnist-sample, mnist, fashion-mnist, "
                               "kmnist")
    assert_no_training(out)


def test_two_input_spec_on_one_input_data(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "multi_input.yaml", "--data", "diabetes", "--epochs", 1, "--out", out,
                       "--no-download")
    assert rc == 1
    assert last_line(text) == ("train.data: data set 'diabetes' gives 1 input(s) but the spec has 2 (x1, x2) — "
                               "mnist-side gives two inputs (an image and a 10-d side vector)")
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
    assert last_line(text) == (f"inputs.x: data set '{data}' gives x samples of shape [5] but the spec's input x is "
                               "[10] — declare the input as [5] (or any shape with 5 elements), or train on a data "
                               "set with samples of shape [10]: diabetes, tokens")
    assert_no_training(out)
    misnamed = write_npz(tmp_path / "misnamed.npz", features=rng.normal(size=(40, 10)).astype("float32"),
                         y=rng.normal(size=(40, 1)).astype("float32"))
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", misnamed, "--epochs", 1,
                       "--out", out)
    assert rc == 1
    assert last_line(text) == (f"inputs.x: {misnamed} has no array named 'x' for the spec's input x — its arrays "
                               "are: features, y; name each input's array after the input")
    assert_no_training(out)


def test_labels_beyond_the_models_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = write_npz(tmp_path / "twenty.npz", x=rng.normal(size=(40, 1, 28, 28)).astype("float32"),
                     label=rng.integers(0, 20, 40))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "fnn.yaml", "--data", data, "--epochs", 1, "--out", out)
    assert rc == 1
    assert last_line(text) == ("train.data: the data's 'label' labels run from 0 to 19, but 'fc2' gives 10 class "
                               "scores (labels 0 to 9) — give 'fc2' 20 outputs, or use data whose labels fit")
    assert_no_training(out)


# --- a non-finite loss -----------------------------------------------------------------------

def test_huge_lr_stops_in_the_first_epoch_without_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--lr", "1e30", "--epochs", 3, "--limit", 100,
                       "--out", out, "--no-download")
    assert rc == 1
    assert re.fullmatch(r"specbuild: the loss became nan at epoch 1, step \d+; "
                        r"no epoch finished, so no checkpoint was written", last_line(text)), text
    assert not (out / "last.pt").exists()


def test_divergence_after_an_epoch_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """A StepLR that multiplies the lr by 1e30 after epoch 1: epoch 2 diverges."""
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--epochs", 3, "--limit", 100, "--out", out,
                       "--no-download", "--set", "train.scheduler={type: StepLR, step_size: 1, gamma: 1.0e+30}")
    assert rc == 1
    assert re.fullmatch(rf"specbuild: the loss became (nan|inf) at epoch 2, step \d+; "
                        rf"the last good checkpoint is {re.escape(str(out / 'last.pt'))}", last_line(text)), text
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
    assert last_line(text) == ("specbuild: the held-out loss became nan at epoch 1, step 1; "
                               "no epoch finished, so no checkpoint was written")
    assert not (out / "last.pt").exists()


def test_nan_in_the_users_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype("float32")
    x[:, 3] = np.nan                      # in every sample: the first step meets it
    data = write_npz(tmp_path / "nan.npz", x=x, y=rng.normal(size=(64, 1)).astype("float32"))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", data, "--epochs", 2, "--out", out)
    assert rc == 1
    assert last_line(text) == ("specbuild: the loss became nan at epoch 1, step 1; "
                               "no epoch finished, so no checkpoint was written")


def test_nan_only_in_the_held_out_data(tmp_path, capsys):
    from specbuild.data.tensors import seeded_split
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype("float32")
    _, held_out = seeded_split(64, 0.2, 0)           # the user file's default split
    x[int(held_out[0]), 3] = np.nan
    data = write_npz(tmp_path / "nan.npz", x=x, y=rng.normal(size=(64, 1)).astype("float32"))
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--data", data, "--epochs", 2, "--out", out)
    assert rc == 1
    assert re.fullmatch(r"specbuild: the held-out loss became nan at epoch 1, step \d+; "
                        r"no epoch finished, so no checkpoint was written", last_line(text)), text


def test_lr_that_overflows_the_optimizer(tmp_path, capsys):
    # torch's single-tensor Adam raises on the overflow (the fused one, specbuild's default, gives NaN)
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--set", "train.optimizer.lr=1e38",
                       "--set", "train.optimizer.fused=false", "--epochs", 2, "--limit", 100, "--out", out,
                       "--no-download")
    assert rc == 1
    assert last_line(text) == ("specbuild: the optimizer step failed at epoch 1, step 1: value cannot be converted to "
                               "type float without overflow; no epoch finished, so no checkpoint was written")


def test_lr_that_overflows_the_fused_optimizer(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--set", "train.optimizer.lr=1e38",
                       "--epochs", 2, "--limit", 100, "--out", out, "--no-download")
    assert rc == 1
    assert re.fullmatch(r"specbuild: the loss became nan at epoch 1, step \d+; "
                        r"no epoch finished, so no checkpoint was written", last_line(text)), text
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
    # columns: a bad type points at its `type:` key, a bad metric at the list item
    col = {word: lines[line_of[word] - 1].index("type: " + word) + 1 for word in ("MSELos", "Adamm")}
    col["maee"] = lines[line_of["maee"] - 1].index("maee") + 1
    expected = [
        f"{spec}:{line_of['MSELos']}:{col['MSELos']}: train.loss.type (MSELos): unknown loss type 'MSELos'"
        " — did you mean 'MSELoss' or 'BCELoss'?",
        f"{spec}:{line_of['Adamm']}:{col['Adamm']}: train.optimizer.type (Adamm): unknown optimizer type 'Adamm'"
        " — did you mean 'Adam' or 'RAdam' or 'NAdam'?",
        f"{spec}:{line_of['maee']}:{col['maee']}: train.metrics[1]: `metrics` must be one of 'accuracy', 'precision',"
        " 'recall', 'f1', 'roc_auc', 'mse', 'mae', 'r2', not 'maee' — did you mean 'mae'?",
        "3 problems found",
    ]
    for argv in (["train", spec, "--epochs", 1, "--out", out, "--no-download"], ["validate", spec]):
        rc, stdout, err = run_cli_streams(capsys, *argv)
        assert rc == 1 and stdout == ""
        assert err.splitlines() == expected
    assert not out.exists()           # validation comes first: not even a run folder


def test_unknown_scheduler_through_set(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", SPECS / "single_output.yaml", "--set", "train.scheduler.type=StepLRR",
                       "--set", "train.scheduler.step_size=1", "--epochs", 1, "--out", out, "--no-download")
    assert rc == 1
    line = next(i for i, line in enumerate((SPECS / "single_output.yaml").read_text().splitlines(), 1)
                if line.startswith("train:"))
    # the --set key has no line of its own: the message points at the train section it lands in
    assert text == (f"{SPECS / 'single_output.yaml'}:{line}:1: train.scheduler.type (StepLRR): "
                    "unknown scheduler type 'StepLRR' — did you mean 'StepLR' or 'MultiStepLR'?\n")
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
    refusal = (f"{evil}: this file holds pickled Python objects ({os.mkdir.__module__}.mkdir), not just weights: "
               "refused to load it — loading it would run code from the file; load only checkpoints written by "
               "specbuild (spec + state_dict) or ones you trust\n")
    rc, text = run_cli(capsys, "evaluate", evil, "--data", "diabetes", "--no-download")
    assert rc == 1 and text == refusal
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 10), dtype="float32"))
    rc, text = run_cli(capsys, "predict", evil, tmp_path / "x.npz")
    assert rc == 1 and text == refusal
    rc, text = run_cli(capsys, "train", tmp_path / "whatever.yaml", "--resume", evil)
    assert rc == 1 and text == refusal
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
