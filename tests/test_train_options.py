"""train: options that change how a run goes: early stopping, the best checkpoint, gradient clipping."""
import torch

import specbuild
from specbuild.training.session import seed_everything
from specbuild.training.checkpoint import load_checkpoint
from cli_runner import read_history, run_cli_text

TINY = """\
specbuild: 1
name: tiny
inputs: {x: [10]}
layers:
  - {name: fc1, type: Linear, out_features: 16}
  - {type: relu}
  - {name: fc2, type: Linear, out_features: 1}
train:
  data: {dataset: diabetes, batch_size: 16}
  loss: {type: MSELoss}
  optimizer: {type: SGD, lr: 0.05}
  metrics: [mse]
"""


def spec_file(tmp_path, extra=""):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + extra)
    return path


def test_early_stopping_stops_when_the_monitored_metric_stalls(tmp_path, capsys):
    # lr 0: nothing changes, so val_loss never improves after epoch 1
    spec = spec_file(tmp_path, "  early_stopping: {patience: 2}\n")
    rc, text = run_cli_text(capsys, "train", spec, "--lr", 0, "--epochs", 10, "--out", tmp_path / "run")
    assert rc == 0, text
    assert [row["epoch"] for row in read_history(tmp_path / "run")] == [1, 2, 3]
    assert "early stopping: val_loss has not improved for 2 epochs" in text


def test_best_checkpoint_is_the_best_epoch_by_the_monitor(tmp_path, capsys):
    spec = spec_file(tmp_path, "  monitor: val_mse\n")
    rc, text = run_cli_text(capsys, "train", spec, "--epochs", 4, "--out", tmp_path / "run")
    assert rc == 0, text
    rows = read_history(tmp_path / "run")
    best_epoch = min(rows, key=lambda row: row["val_mse"])["epoch"]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == best_epoch and best["best"]["metric"] == "val_mse"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 4


def test_gradient_clipping_bounds_each_update(tmp_path):
    def weights(clip, epochs):
        extra = f"  clip_grad_norm: {clip}\n" if clip else ""
        run = specbuild.train(spec_file(tmp_path, extra), epochs=epochs, lr=0.1, out=tmp_path / f"run-{clip}-{epochs}")
        return torch.cat([p.detach().flatten() for p in run.model.parameters()])

    seed_everything(0)                           # the trainer's seeding, then its model: the initial weights
    start = torch.cat([p.detach().flatten() for p in specbuild.build_model(spec_file(tmp_path)).parameters()])
    clipped = weights(1e-6, 1)                   # SGD: each of the ~23 steps moves at most lr * 1e-6
    free = weights(None, 1)
    assert 0 < (clipped - start).norm() < 23 * 0.1 * 1e-6 * 1.01
    assert (free - start).norm() > 1e-2


def test_resume_needs_no_spec_and_train_needs_one_or_the_other(tmp_path, capsys):
    spec = spec_file(tmp_path)
    rc, text = run_cli_text(capsys, "train", spec, "--epochs", 1, "--out", tmp_path / "run")
    assert rc == 0, text
    rc, text = run_cli_text(capsys, "train", "--resume", tmp_path / "run", "--epochs", 2)
    assert rc == 0, text
    assert [row["epoch"] for row in read_history(tmp_path / "run")] == [1, 2]
    rc, text = run_cli_text(capsys, "train")
    assert rc == 1 and "train needs a spec, or --resume" in text


def test_log_softmax_outputs_are_turned_into_probabilities_not_taken_as_them():
    from specbuild.training.objectives import Objective, outputs_probabilities
    from specbuild.spec.graph import Node
    assert outputs_probabilities(Node("p", "softmax", {}, [], ()))
    assert not outputs_probabilities(Node("lp", "log_softmax", {}, [], ()))
    nll = Objective("lp", torch.nn.NLLLoss(), "NLLLoss", "lp", "label", 1.0, "classification")
    log_probs = torch.log_softmax(torch.randn(5, 3), dim=1)
    torch.testing.assert_close(nll.probabilities(log_probs, False), log_probs.exp())
