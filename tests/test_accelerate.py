"""--precision, --compile and --fast-step on the CPU (specbuild/training/accelerate.py).

bf16 and fp16 train through the CLI in-process, keep float32 weights in their checkpoints
and resume bitwise; --fast-step is refused off CUDA, and its wiring (mode="reduce-overhead",
a CUDA graph step marked per training step) is checked with torch.compile replaced by a spy;
--compile is checked twice: in-process with the spy (the training step's module, and only it,
is compiled), and for real (inductor, with the machine's C compiler) in a subprocess; bad
values are refused by argparse and the schema.
"""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_runner import read_history, run_cli_text
from specbuild.errors import SpecError
from specbuild.spec.train_config import TrainConfig
from specbuild.training.accelerate import Accelerator, check_precision
from specbuild.training.distributed import Distributed
from specbuild.training.checkpoint import load_checkpoint

FNN = Path(__file__).resolve().parent.parent / "specs" / "fnn.yaml"
QUICK = ("--data", "mnist-sample", "--limit", 256, "--no-download")


def train(capsys, out, *options):
    return run_cli_text(capsys, "train", FNN, *QUICK, "--out", out, *options)


def weights_of(path) -> dict:
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_keeps_float32_weights(tmp_path, capsys, precision):
    rc, text = train(capsys, tmp_path / "run", "--epochs", 2, "--precision", precision)
    assert rc == 0, text
    rows = read_history(tmp_path / "run")
    losses = [row["train_loss"] for row in rows]
    assert all(math.isfinite(v) for v in losses) and losses[1] < losses[0] < math.log(10) + 0.5, losses
    assert rows[-1]["val_accuracy"] > 0.5
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["spec"]["train"]["precision"] == precision          # recorded: a resume runs the same way
    assert {t.dtype for t in state["model"].values()} == {torch.float32}
    assert ("scaler" in state) == (precision == "fp16")
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0 and state["scaler"]["_growth_tracker"] == 16   # 2 epochs of 8 steps


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_resumed_mixed_precision_run_equals_an_unbroken_one(tmp_path, capsys, precision):
    rc, text = train(capsys, tmp_path / "whole", "--epochs", 2, "--precision", precision,
                     "--set", "train.clip_grad_norm=1.0")       # fp16: unscaled before clipping
    assert rc == 0, text
    rc, text = train(capsys, tmp_path / "split", "--epochs", 1, "--precision", precision,
                     "--set", "train.clip_grad_norm=1.0")
    assert rc == 0, text
    rc, text = run_cli_text(capsys, "train", "--resume", tmp_path / "split", "--epochs", 2)
    assert rc == 0, text
    whole, split = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert whole["model"].keys() == split["model"].keys()
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    assert whole.get("scaler") == split.get("scaler")
    assert [r["train_loss"] for r in read_history(tmp_path / "whole")] == \
        [r["train_loss"] for r in read_history(tmp_path / "split")]


def test_fp16_on_the_cpu_is_allowed_when_torch_can_and_refused_clearly_when_not(monkeypatch):
    assert check_precision("fp16", torch.device("cpu")) is torch.float16        # torch 2.4+: CPU autocast fp16
    assert check_precision("fp32", torch.device("cpu")) is None
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_precision("bf16", torch.device("cpu"))       # the probe draws no random numbers: the model's
    assert torch.equal(torch.rand(3), expected)        # first weights do not depend on the precision

    class Refusing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("CPU autocast does not support float16")

    monkeypatch.setattr(torch, "autocast", Refusing)                  # an older torch
    with pytest.raises(SpecError, match=r"--precision fp16 cannot run on cpu .*does not support float16"):
        check_precision("fp16", torch.device("cpu"))


def test_fast_step_is_refused_off_cuda(tmp_path, capsys):
    rc, text = train(capsys, tmp_path / "run", "--epochs", 1, "--device", "cpu", "--fast-step")
    assert rc == 1, text
    assert "--fast-step (train.fast_step) replays the training step as CUDA graphs, and this run trains on cpu" in text
    assert "--compile speeds up the step on any device" in text
    assert not (tmp_path / "run" / "last.pt").exists()


def test_compile_hands_the_training_step_model_to_torch_compile(tmp_path, capsys, monkeypatch):
    calls = []

    def spy(model, *args, **kwargs):        # records, and leaves the model as it is
        calls.append((isinstance(model, torch.fx.GraphModule), kwargs))
        return model

    monkeypatch.setattr(torch, "compile", spy)
    rc, text = train(capsys, tmp_path / "run", "--epochs", 1, "--compile")
    assert rc == 0, text
    assert calls == [(True, {})]           # the loss model (no DDP with one process), once; evaluation uncompiled
    assert load_checkpoint(tmp_path / "run" / "last.pt")["spec"]["train"]["compile"] is True


def test_fast_step_compiles_with_cuda_graphs_and_marks_each_step(monkeypatch):
    calls, steps = [], []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: calls.append(kwargs) or model)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    config = TrainConfig(fast_step=True)
    accel = Accelerator(config, torch.device("cuda"))         # fp32: nothing here needs a GPU
    net = torch.nn.Linear(2, 2)
    assert accel.compiled(net) is net and calls == [{"mode": "reduce-overhead"}]
    with accel.context():
        pass
    assert steps == [1] and accel.parts() == {}
    with pytest.raises(SpecError, match="not supported with several workers"):
        Accelerator(config, torch.device("cuda"), Distributed(rank=0, world_size=2))


COMPILED_RUN = """
import sys, torch
from specbuild.cli.main import main
rc = main(["train", sys.argv[1], "--data", "mnist-sample", "--limit", "256", "--epochs", "1", "--no-download",
           "--compile", "--out", sys.argv[2]])
print("rc", rc, "graphs", torch._dynamo.utils.counters["stats"]["unique_graphs"])
"""


def test_compile_runs_torch_compile_for_real(tmp_path):
    # in a process of its own: dynamo patches torch.nn.Module (an attribute the torch catalog
    # test would see), and inductor's start-up is paid once there.  ~10-25 s on 2 cores.
    done = subprocess.run([sys.executable, "-c", COMPILED_RUN, str(FNN), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    rc, graphs = re.search(r"rc (\d+) graphs (\d+)", done.stdout).groups()
    assert rc == "0" and int(graphs) >= 1, done.stdout         # dynamo captured the training step
    rows = read_history(tmp_path / "run")
    assert math.isfinite(rows[0]["train_loss"]) and rows[0]["val_accuracy"] > 0.3
    # the checkpoint holds the plain module's names, not the compiled wrapper's (_orig_mod.)
    assert set(weights_of(tmp_path / "run" / "last.pt")) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_the_spec_sets_them_and_the_command_line_wins(tmp_path, capsys):
    spec = tmp_path / "fnn.yaml"
    spec.write_text(FNN.read_text().replace("  epochs: 5\n", "  epochs: 1\n  precision: bf16\n  fast_step: true\n"))
    rc, text = run_cli_text(capsys, "train", spec, *QUICK, "--out", tmp_path / "a", "--device", "cpu")
    assert rc == 1 and "--fast-step (train.fast_step)" in text, text
    rc, text = run_cli_text(capsys, "train", spec, *QUICK, "--out", tmp_path / "b", "--no-fast-step",
                            "--precision", "fp32")
    assert rc == 0, text
    train_section = load_checkpoint(tmp_path / "b" / "last.pt")["spec"]["train"]
    assert train_section["precision"] == "fp32" and train_section["fast_step"] is False


def test_bad_values_are_refused_with_a_clear_message(tmp_path, capsys):
    rc, text = train(capsys, tmp_path / "a", "--precision", "fp8")
    assert rc == 2 and "argument --precision: invalid choice: 'fp8'" in text, text
    rc, text = train(capsys, tmp_path / "b", "--set", "train.precision=fp8")
    assert rc == 1 and "`precision` must be one of 'fp32', 'bf16', 'fp16', not 'fp8'" in text, text
    rc, text = train(capsys, tmp_path / "c", "--set", "train.compile=3")
    assert rc == 1 and "compile" in text, text


def test_a_gan_refuses_them(capsys):
    gan = FNN.parent / "gan.yaml"
    rc, text = run_cli_text(capsys, "train", gan, "--limit", 64, "--epochs", 1, "--precision", "bf16")
    assert rc == 1 and "a GAN trains in fp32, uncompiled" in text, text
