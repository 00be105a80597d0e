"""Checkpoints written by specbuild 0.1.0, before the package moved into subpackages, still
load, evaluate and resume exactly (tests/fixtures/checkpoints-0.1.0/README.md says how they
were made)."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import specbuild
from specbuild.training.checkpoint import load_checkpoint
from specbuild.training.progress import Progress

OLD = Path(__file__).parent / "fixtures" / "checkpoints-0.1.0"


def _copy(name: str, folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(OLD / name, folder / "last.pt")
    return folder


def _assert_same_weights(got: dict, want: dict):
    # Bitwise on the machine type the fixtures were made on (CI's); elsewhere a CPU's own GEMM
    # kernels may round differently, so equal to float32 rounding is what a resume promises
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=key)


def test_old_checkpoint_builds_its_model_strictly():
    state = load_checkpoint(OLD / "mlp.pt")
    model = specbuild.build_model(state["spec"])
    model.load_state_dict(state["model"], strict=True)
    out = model(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.allclose(out.sum(1), torch.ones(2))


def test_old_checkpoint_evaluates_to_its_recorded_metrics(cli):
    result = cli("evaluate", OLD / "mlp.pt", "--device", "cpu", "--json")
    assert result.rc == 0
    metrics = json.loads(result.out)
    assert metrics["epoch"] == 2 and metrics["samples"] == 256
    assert metrics["val_loss"] == pytest.approx(1.7080832719802856, abs=1e-6)
    assert metrics["val_accuracy"] == 0.37109375


@pytest.mark.parametrize("name, epochs", [("mlp", 3), ("gan", 2)])
def test_old_checkpoint_resumes_to_the_weights_the_old_version_reached(tmp_path, name, epochs):
    folder = _copy(f"{name}.pt", tmp_path / "run")
    run = specbuild.train(None, resume=str(folder), epochs=epochs, progress=Progress(sys.stderr, quiet=True))
    want = torch.load(OLD / f"{name}-resumed.pt", weights_only=True)
    got = load_checkpoint(folder / "last.pt")
    assert got["epoch"] == want["epoch"] == epochs
    assert [row["epoch"] for row in run.history] == list(range(1, epochs + 1))
    if name == "gan":
        for role in ("generator", "discriminator"):
            _assert_same_weights(got["model"][role], want["model"][role])
    else:
        _assert_same_weights(got["model"], want["model"])

