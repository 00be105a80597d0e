"""Every shipped spec trains end to end from the command line, on small offline data.

The specs are found by globbing specs/*.yaml, so a new spec is covered without
touching this file: its data set comes from its own `train.data` (image sets
become the bundled `mnist-sample`, everything else is offline already), and the
size params that make transformer, attention and recurrent models slow on a CPU
are shrunk with `--set` wherever a spec has them.

Each run: exit 0, the training loss falls (the last epoch's mean train_loss
below the first's; fixed seed, so the check is deterministic on one machine),
and the run folder holds what run_folder.py promises.  GAN, multi-output and
reconstruction specs get their own checks.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from cli_runner import read_history, run_cli_text as run_cli

from specbuild.spec.loader import load_spec

REPO = Path(__file__).resolve().parent.parent
ALL_SPECS = sorted(REPO.glob("specs/*.yaml"))

LIMIT = 512          # samples per split: enough steps for the loss to fall clearly in 2 epochs
EPOCHS = 2
IMAGE_SETS = {"mnist", "fashion-mnist", "kmnist", "mnist-sample"}      # all [1, 28, 28]: the bundled digits fit
SMALL_PARAMS = {"input_dim": 16, "num_heads": 2, "num_layers": 1, "seq_len": 12, "hidden_size": 16}
# the ImageNet architectures train on the bundled digits: one channel, 28 x 28, ten classes
DIGIT_PARAMS = {"channels": 1, "image_size": 28, "num_classes": 10}
# too large to train in the suite on a CPU; test_architectures.py checks it against torchvision
NOT_TRAINED_HERE = {"vgg11": "133M parameters, and five halvings need 32 x 32 images (the digits are 28 x 28)"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def spec_data(spec: dict) -> str:
    data = (spec.get("train") or {}).get("data", "mnist-sample")
    name = data.get("dataset") if isinstance(data, dict) else data
    return "mnist-sample" if name in IMAGE_SETS else name


def train_args(path: Path, out: Path) -> list[str]:
    spec = load_spec(path).data
    args = ["train", path, "--data", spec_data(spec), "--epochs", EPOCHS, "--limit", LIMIT, "--out", out,
            "--no-download", "--seed", 0]
    params = spec.get("params") or {}
    for name, value in {**SMALL_PARAMS, **(DIGIT_PARAMS if "image_size" in params else {})}.items():
        if name in params:
            args += ["--set", f"{name}={value}"]
    return args


def is_gan(spec: dict) -> bool:
    train = spec.get("train") or {}
    return train.get("task") == "gan" or "generator" in train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Lazily trained run folders, one per spec, shared by the tests below; removed after them
    (resnet50's checkpoints alone are half a gigabyte)."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, tuple[int, str, Path]] = {}

    def get(path: Path, capsys) -> tuple[int, str, Path]:
        if path.name not in done:
            out = root / path.stem
            rc, text = run_cli(capsys, *train_args(path, out))
            done[path.name] = (rc, text, out)
        return done[path.name]

    yield get
    shutil.rmtree(root, ignore_errors=True)


SPECS = [p for p in ALL_SPECS if p.stem not in NOT_TRAINED_HERE]


def test_specs_are_found():
    assert len(SPECS) >= 20 and all(p.suffix == ".yaml" for p in SPECS)
    from test_architectures import REAL
    assert set(NOT_TRAINED_HERE) <= set(REAL) and set(NOT_TRAINED_HERE) <= {p.stem for p in ALL_SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_trains_end_to_end(path, runs, capsys):
    spec = load_spec(path).data
    rc, text, out = runs(path, capsys)
    assert rc == 0, text
    assert f"run folder: {out}" in text
    history = read_history(out)
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))

    for name in ("spec.yaml", "metrics.jsonl", "metrics.csv", "last.pt", "curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == EPOCHS + 1 and csv_lines[0].split(",")[0] == "epoch"
    ran = load_spec(out / "spec.yaml").data
    assert ran["train"]["epochs"] == EPOCHS and ran["train"]["data"]["dataset"] == spec_data(spec)
    assert not list(out.glob(".*.tmp-*")), "a checkpoint temp file was left behind"

    if is_gan(spec):
        assert not (out / "best.pt").exists()      # no monitored metric for a GAN
        for row in history:
            assert math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])
        return
    assert (out / "best.pt").is_file()
    losses = [row["train_loss"] for row in history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"{path.stem}: the training loss did not fall: {losses}"
    assert all(math.isfinite(row["val_loss"]) for row in history)


def gan_specs():
    return [p for p in SPECS if is_gan(load_spec(p).data)]


@pytest.mark.parametrize("path", gan_specs(), ids=lambda p: p.stem)
def test_gan_saves_a_sample_grid_per_epoch(path, runs, capsys):
    rc, text, out = runs(path, capsys)
    assert rc == 0, text
    for epoch in range(1, EPOCHS + 1):
        png = out / "samples" / f"epoch_{epoch:03d}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
    from PIL import Image
    with Image.open(out / "samples" / "epoch_001.png") as image:
        image.load()
        assert min(image.size) > 28 * 2      # a grid of several 28x28 samples, not one
    row = read_history(out)[0]
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(row)
    assert 0.0 <= row["d_real"] <= 1.0 and 0.0 <= row["d_fake"] <= 1.0     # the discriminator's probabilities


def test_multi_output_reports_each_output(runs, capsys):
    rc, text, out = runs(REPO / "specs" / "multi_output.yaml", capsys)
    assert rc == 0, text
    spec = load_spec(REPO / "specs" / "multi_output.yaml").data
    weights = {loss["on"]: loss["weight"] for loss in spec["train"]["loss"]}
    assert weights == {"fc2": 1.0, "fc3": 0.5}
    for row in read_history(out):
        # the class head (fc2) reports the classification metrics, the regression head (fc3) the regression ones
        for key in ("val_fc2_loss", "val_fc2_accuracy", "val_fc2_f1", "val_fc2_roc_auc", "val_fc3_loss", "val_fc3_mse", "val_fc3_mae"):
            assert key in row and math.isfinite(row[key]), key
        assert 0.0 <= row["val_fc2_accuracy"] <= 1.0
        # val_loss is the weighted sum of the two losses
        assert row["val_loss"] == pytest.approx(1.0 * row["val_fc2_loss"] + 0.5 * row["val_fc3_loss"], rel=1e-4)
    history = read_history(out)
    assert history[-1]["val_fc2_accuracy"] > history[0]["val_fc2_accuracy"] - 0.05


def test_multi_output_regression_head_gets_regression_metrics(tmp_path, capsys):
    """With mse among the metrics, the regression head reports it and the class head does not."""
    path = REPO / "specs" / "multi_output.yaml"
    out = tmp_path / "run"
    rc, text = run_cli(capsys, "train", path, "--data", "mnist-sample", "--epochs", 1, "--limit", 128, "--out", out,
                       "--no-download", "--set", "train.metrics=[accuracy, mse, mae]")
    assert rc == 0, text
    row = read_history(out)[0]
    assert {"val_fc2_accuracy", "val_fc3_mse", "val_fc3_mae"} <= set(row)
    assert "val_fc2_mse" not in row and "val_fc3_accuracy" not in row
    assert row["val_fc3_mse"] == pytest.approx(row["val_fc3_loss"], rel=1e-4)     # MSELoss is the mse


@pytest.mark.parametrize("name", ["autoencoder", "encoder_decoder"])
def test_reconstruction_reports_its_error(name, runs, capsys):
    rc, text, out = runs(REPO / "specs" / f"{name}.yaml", capsys)
    assert rc == 0, text
    history = read_history(out)
    for row in history:
        assert {"val_loss", "val_mse", "val_mae"} <= set(row)
        assert "val_accuracy" not in row
        # the loss is MSELoss against the input itself: val_loss is the reconstruction mse
        assert row["val_loss"] == pytest.approx(row["val_mse"], rel=1e-4)
    assert history[-1]["val_mse"] < history[0]["val_mse"]
    from specbuild.training.checkpoint import load_checkpoint
    assert load_checkpoint(out / "last.pt")["task"] == "reconstruction"
