"""TensorBoard logging (`--log tensorboard`, `train.log: [tensorboard]`): the event files a run
writes, read back with TensorBoard's own reader, hold every step's and epoch's scalars (equal to
metrics.jsonl), the learning rate, a histogram of every parameter per epoch, the model graph and a
GAN's samples; logging leaves the trained weights bitwise as they are without it; a resumed run
continues the series without repeating a step; without the extra the run is refused up front."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")

import specbuild                                                          # noqa: E402
from cli_runner import read_history, run_cli, write_text                  # noqa: E402
from specbuild.training.checkpoint import load_checkpoint                 # noqa: E402
from specbuild.training.session import TrainingStopped                    # noqa: E402
from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# 64 training samples in batches of 16: 4 steps an epoch.  Dropout and BatchNorm make the weights
# depend on every random draw and on the mode each forward pass runs in, so a graph traced in
# training mode, or one drawing from the run's generators, would change them; a per-step scheduler
# gives every step its own learning rate.
SPEC = """\
specbuild: 1
name: logged
inputs: {x: [1, 28, 28]}
layers:
  - {type: flatten}
  - {name: fc1, type: Linear, out_features: 16}
  - {name: norm, type: BatchNorm1d}
  - {type: relu}
  - {name: drop, type: Dropout, p: 0.3}
  - {name: fc2, type: Linear, out_features: 10}
outputs: fc2
train:
  data: {dataset: mnist-sample, batch_size: 16, limit: 64}
  loss: {type: CrossEntropyLoss}
  optimizer: {type: SGD, lr: 0.05, momentum: 0.9}
  scheduler: {type: ExponentialLR, gamma: 0.9, interval: step}
  metrics: [accuracy]
  epochs: 2
  seed: 3
"""
STEPS, EPOCHS, LR, GAMMA = 4, 2, 0.05, 0.9
PARAMETERS = ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "fc2.weight", "fc2.bias"]


def read_events(run: Path) -> ea.EventAccumulator:
    """Everything the run's event files hold (size guidance 0: no sampling)."""
    sizes = {kind: 0 for kind in (ea.SCALARS, ea.HISTOGRAMS, ea.IMAGES, ea.TENSORS, ea.COMPRESSED_HISTOGRAMS)}
    acc = ea.EventAccumulator(str(run / "tensorboard"), size_guidance=sizes)
    acc.Reload()
    return acc


def series(acc, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def weights(run: Path) -> dict:
    return load_checkpoint(run / "last.pt")["model"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A finished run of SPEC with --log tensorboard: its folder and events."""
    from specbuild.cli.main import main
    folder = tmp_path_factory.mktemp("tb") / "run"
    spec = folder.parent / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["train", str(spec), "--out", str(folder), "--log", "tensorboard"]) == 0
    return folder, read_events(folder)


def test_every_step_logs_its_loss_and_learning_rate(logged):
    folder, acc = logged
    steps = series(acc, "step/train_loss")
    assert [s for s, _ in steps] == list(range(1, STEPS * EPOCHS + 1))
    for row in read_history(folder):            # each epoch's train_loss is the mean of its steps'
        losses = [v for s, v in steps if (row["epoch"] - 1) * STEPS < s <= row["epoch"] * STEPS]
        assert sum(losses) / STEPS == pytest.approx(row["train_loss"], rel=1e-6)
    rates = series(acc, "step/lr")              # after step k the scheduler has stepped k times
    assert [s for s, _ in rates] == list(range(1, STEPS * EPOCHS + 1))
    assert [v for _, v in rates] == pytest.approx([LR * GAMMA ** s for s, _ in rates], rel=1e-6)


def test_every_number_of_each_epoch_is_logged_as_in_metrics_jsonl(logged):
    folder, acc = logged
    history = read_history(folder)
    keys = [k for k in history[0] if k != "epoch"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"} <= set(keys)
    assert {f"epoch/{k}" for k in keys} <= set(acc.Tags()["scalars"])
    for key in keys:
        assert series(acc, f"epoch/{key}") == [(row["epoch"], pytest.approx(row[key], rel=1e-6)) for row in history]


def test_every_parameter_has_a_histogram_per_epoch(logged):
    folder, acc = logged
    final = weights(folder)
    for name in PARAMETERS:
        for kind in ("weights", "grads"):
            entries = acc.Histograms(f"{kind}/{name}")
            assert [e.step for e in entries] == [1, 2]
            assert entries[-1].histogram_value.num == final[name].numel()
        last = acc.Histograms(f"weights/{name}")[-1].histogram_value       # drawn from the final weights
        assert (last.min, last.max) == pytest.approx((final[name].min().item(), final[name].max().item()))
    assert {t.split("/", 1)[1] for t in acc.Tags()["histograms"]} == set(PARAMETERS)   # buffers are no weights


def test_the_graph_names_the_models_layers(logged):
    _, acc = logged
    assert acc.Tags()["graph"]
    names = [node.name for node in acc.Graph().node]
    for layer in ("fc1", "norm", "fc2"):
        assert any(f"[{layer}]" in name for name in names), (layer, names)
    assert not acc.Tags()["tensors"]            # no note: the graph was traced


def test_logging_leaves_the_weights_as_a_run_without_it(logged, tmp_path, capsys):
    folder, _ = logged
    spec = write_text(tmp_path, SPEC)
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "plain")
    assert rc == 0, err
    assert not (tmp_path / "plain" / "tensorboard").exists()
    with_log, without = load_checkpoint(folder / "last.pt"), load_checkpoint(tmp_path / "plain" / "last.pt")
    assert with_log["model"].keys() == without["model"].keys()
    assert all(torch.equal(with_log["model"][k], without["model"][k]) for k in without["model"])  # BN stats too
    a, b = with_log["optimizer"]["state"], without["optimizer"]["state"]
    assert all(torch.equal(a[k]["momentum_buffer"], b[k]["momentum_buffer"]) for k in b)


def test_train_log_in_the_spec_logs_the_same(logged, tmp_path, capsys):
    folder, acc = logged
    spec = write_text(tmp_path, SPEC.replace("  seed: 3\n", "  seed: 3\n  log: [tensorboard]\n"))
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run")
    assert rc == 0, err
    again = read_events(tmp_path / "run")
    assert again.Tags()["scalars"] == acc.Tags()["scalars"]
    assert again.Tags()["histograms"] == acc.Tags()["histograms"] and again.Tags()["graph"]
    for tag in ("step/train_loss", "step/lr", "epoch/val_loss", "epoch/val_accuracy"):
        assert series(again, tag) == series(acc, tag)


def test_a_gan_logs_both_networks_and_its_samples(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", REPO / "specs" / "gan.yaml", "--data", "mnist-sample", "--limit", 64,
                         "--epochs", 1, "--out", tmp_path / "gan", "--log", "tensorboard")
    assert rc == 0, err
    acc = read_events(tmp_path / "gan")
    row = read_history(tmp_path / "gan")[0]
    scalars = set(acc.Tags()["scalars"])
    assert {"step/d_loss", "step/g_loss", "step/lr/generator", "step/lr/discriminator",
            "epoch/lr/generator", "epoch/lr/discriminator"} <= scalars
    assert [s for s, _ in series(acc, "step/g_loss")] == [1, 2]                # 64 samples, batches of 32
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert series(acc, f"epoch/{key}") == [(1, pytest.approx(row[key], rel=1e-6))]
    assert series(acc, "epoch/lr/generator") == [(1, pytest.approx(0.0002))]
    histograms = set(acc.Tags()["histograms"])
    assert {"weights/generator/main.0.weight", "weights/discriminator/main.2.bias"} <= histograms
    images = acc.Images("samples")             # 8 x 8 digits of 28 pixels, 2 pixels apart
    assert [(i.step, i.width, i.height) for i in images] == [(1, 242, 242)]
    names = [node.name for node in acc.Graph().node]
    assert any("[generator]" in n for n in names) and any("[discriminator]" in n for n in names)
    assert (tmp_path / "gan" / "samples" / "epoch_001.png").exists()        # the PNG grids stay


def test_without_the_extra_the_run_is_refused_before_training(tmp_path, capsys, monkeypatch):
    for module in ("tensorboard", "torch.utils.tensorboard"):      # as if the package were not installed
        monkeypatch.setitem(sys.modules, module, None)
    spec = write_text(tmp_path, SPEC)
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "a", "--log", "tensorboard")
    assert rc == 1
    assert err.strip() == ("--log tensorboard needs the tensorboard package, which is not installed — "
                           "install the extra: pip install 'specbuild[tensorboard]'")
    in_spec = write_text(tmp_path, SPEC.replace("  seed: 3\n", "  seed: 3\n  log: [tensorboard]\n"), "logs.yaml")
    rc, _, err = run_cli(capsys, "train", in_spec, "--out", tmp_path / "b")
    assert rc == 1
    assert err.strip() == (f"{in_spec}:20:3: train.log: logging to tensorboard needs the tensorboard package, "
                           "which is not installed — install the extra: pip install 'specbuild[tensorboard]'")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()     # nothing trained


class StopAt:
    """An observer stopping the run at once (as a second Ctrl-C does) after a given step: what was
    logged past the last checkpoint is then in the event files, and the resume must drop it."""

    def __init__(self, step):
        self.step = step

    def step_end(self, session, step, scalars):
        if step == self.step:
            raise KeyboardInterrupt


def test_a_resumed_run_continues_the_series_without_repeating_a_step(logged, tmp_path):
    folder, full = logged
    out = tmp_path / "run"
    with pytest.raises(TrainingStopped):           # stopped in epoch 2, with last.pt at the end of epoch 1
        specbuild.train(SPEC, out=str(out), log=["tensorboard"], download=False, observers=[StopAt(STEPS + 2)])
    assert load_checkpoint(out / "last.pt")["step"] == STEPS
    assert [s for s, _ in series(read_events(out), "step/train_loss")] == list(range(1, STEPS + 3))
    specbuild.train(None, resume=str(out), download=False)
    acc = read_events(out)
    for tag in ("step/train_loss", "step/lr"):     # each step once, as the run never stopped logged it
        assert series(acc, tag) == series(full, tag)
    for tag in ("epoch/val_loss", "epoch/lr"):
        assert series(acc, tag) == series(full, tag)
    assert [e.step for e in acc.Histograms("weights/fc1.weight")] == [1, 2]
    assert len(list((out / "tensorboard").iterdir())) == 2     # one event file per session, in one folder


def test_a_graph_that_cannot_be_traced_is_a_note_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    def refuse(*args, **kwargs):
        raise RuntimeError("Tracer cannot infer type of output\nmore detail")
    monkeypatch.setattr(SummaryWriter, "add_graph", refuse)
    spec = write_text(tmp_path, SPEC)
    rc, _, err = run_cli(capsys, "train", spec, "--epochs", 1, "--out", tmp_path / "run", "--log", "tensorboard")
    assert rc == 0, err
    acc = read_events(tmp_path / "run")
    assert not acc.Tags()["graph"] and acc.Tags()["scalars"]
    note = acc.Tensors("graph/text_summary")[0].tensor_proto.string_val[0].decode()
    assert note == "the model graph could not be traced: Tracer cannot infer type of output"
