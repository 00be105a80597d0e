"""The trainer's command line and Python API: train options, evaluate, predict.

* train's options (--epochs, --batch-size, --lr, --seed, --set, --device, --out)
  land in the run folder's spec.yaml and do what they say; a seed makes a run
  repeatable and another seed changes it.
* `specbuild evaluate CHECKPOINT` prints loss and metrics (also as JSON), the
  same numbers the run logged for that data.
* `specbuild predict CHECKPOINT` reads .npz, .pt and image files; CSV on stdout,
  JSON with --out x.json; its classes are those of a forward pass over the same
  held-out digits that evaluate uses.
* `specbuild.train(...)` returns a Run with the history and the model.
* `--device cuda` without a GPU is a clear error.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_runner import read_history as history, run_cli
import torch

import specbuild
from specbuild.training.checkpoint import load_checkpoint
from specbuild.cli.main import main
from specbuild.spec.loader import load_spec

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
N_TEST = 64          # held-out digits evaluate and predict are compared on


def timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A cnn trained one epoch on 512 bundled digits (quietly, through the Python API)."""
    from specbuild.training.progress import Progress
    from specbuild.training.trainer import train
    out = tmp_path_factory.mktemp("cnn") / "run"
    run = train(str(SPECS / "cnn.yaml"), data="mnist-sample", epochs=1, limit=512, out=str(out), download=False,
                progress=Progress(io.StringIO(), quiet=True))
    assert run.history[-1]["val_accuracy"] > 0.5
    return out


# --- train options --------------------------------------------------------------------

def test_options_land_in_the_spec_and_take_effect(tmp_path, capsys):
    out = tmp_path / "chosen-folder"
    rc, stdout, _ = run_cli(capsys, "train", SPECS / "fnn.yaml", "--data", "mnist-sample", "--limit", 100,
                            "--epochs", 2, "--batch-size", 25, "--lr", 0.003, "--seed", 7, "--device", "cpu",
                            "--set", "train.optimizer.type=SGD", "--set", "train.optimizer.momentum=0.5",
                            "--set", "train.optimizer.weight_decay=1e-4",      # a number, as in a spec file
                            "--set", "train.metrics=[accuracy]", "--out", out, "--no-download")
    assert rc == 0
    assert f"run folder: {out}" in stdout and "final: train_loss" in stdout
    ran = load_spec(out / "spec.yaml").data["train"]
    assert ran["epochs"] == 2 and ran["seed"] == 7 and ran["device"] == "cpu"
    assert ran["data"]["dataset"] == "mnist-sample" and ran["data"]["batch_size"] == 25
    assert ran["optimizer"] == {"type": "SGD", "lr": 0.003, "momentum": 0.5, "weight_decay": 1e-4}
    assert ran["metrics"] == ["accuracy"]

    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2]                         # --epochs
    assert all(r["lr"] == 0.003 for r in rows)                          # --lr
    assert {k for k in rows[0] if k.startswith("val_")} == {"val_loss", "val_accuracy"}     # --set train.metrics
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 2 * math.ceil(100 / 25)                     # --batch-size: 4 steps an epoch
    group = state["optimizer"]["param_groups"][0]
    assert group["lr"] == 0.003 and group["momentum"] == 0.5 and "betas" not in group   # SGD, not Adam
    assert group["weight_decay"] == 1e-4
    assert state["model"]["fc1.weight"].device.type == "cpu"


def test_a_spec_whose_data_is_a_plain_name_takes_data_options(tmp_path, capsys):
    """`data: diabetes` is short for {dataset: diabetes}; --batch-size must not lose the name."""
    text = (SPECS / "single_output.yaml").read_text().replace("data: {dataset: diabetes, batch_size: 32}",
                                                              "data: diabetes")
    assert "data: diabetes\n" in text
    spec = tmp_path / "plain.yaml"
    spec.write_text(text)
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", spec, "--batch-size", 16, "--epochs", 1, "--limit", 48, "--out", out)
    assert rc == 0, err
    assert load_spec(out / "spec.yaml").data["train"]["data"] == {"dataset": "diabetes", "batch_size": 16, "limit": 48}
    assert load_checkpoint(out / "last.pt")["step"] == 3


TINY_WITHOUT_OPTIMIZER = """\
specbuild: 1
name: tiny
inputs: {x: [10]}
layers:
  - {name: fc1, type: Linear, out_features: 8}
  - {type: relu}
  - {name: fc2, type: Linear, out_features: 1}
train:
  data: {dataset: diabetes}
  loss: {type: MSELoss}
"""


def test_lr_option_on_a_spec_without_an_optimizer(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_WITHOUT_OPTIMIZER)
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", spec, "--lr", 0.01, "--epochs", 1, "--limit", 32, "--out", out)
    assert rc == 0, err
    assert history(out)[0]["lr"] == 0.01


def test_cosine_scheduler_takes_its_length_from_the_run(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_WITHOUT_OPTIMIZER + "  scheduler: {type: CosineAnnealingLR}\n")
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", spec, "--epochs", 2, "--limit", 32, "--out", out)
    assert rc == 0, err
    assert history(out)[-1]["lr"] == pytest.approx(0.0, abs=1e-12)     # T_max = 2 epochs: annealed to eta_min


def test_same_seed_same_run_other_seed_other_run(tmp_path, capsys):
    def run(name, seed):
        out = tmp_path / name
        rc, _, err = run_cli(capsys, "train", SPECS / "dropout.yaml", "--data", "mnist-sample", "--limit", 128,
                             "--epochs", 2, "--seed", seed, "--out", out, "--no-download")
        assert rc == 0, err
        return timeless(history(out)), load_checkpoint(out / "last.pt")["model"]

    a_rows, a_model = run("a", 11)
    b_rows, b_model = run("b", 11)
    c_rows, c_model = run("c", 12)
    assert a_rows == b_rows
    assert all(torch.equal(a_model[k], b_model[k]) for k in a_model)
    assert a_rows[0]["train_loss"] != c_rows[0]["train_loss"]
    assert not torch.equal(a_model["fc1.weight"], c_model["fc1.weight"])


@pytest.mark.parametrize("device, needs, present", [
    ("cuda", "a CUDA GPU", torch.cuda.is_available()),
    ("mps", "an Apple GPU (MPS)", bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()))])
def test_a_device_that_is_absent_is_a_clear_error(tmp_path, capsys, cnn_run, device, needs, present):
    if present:
        pytest.skip(f"this machine has {needs}")
    out = tmp_path / "run"
    message = (f"device {device!r} needs {needs}, and none is available here — use --device cpu, "
               "or auto to take the best one here")
    rc, _, err = run_cli(capsys, "train", SPECS / "single_output.yaml", "--device", device, "--epochs", 1,
                         "--out", out, "--no-download")
    assert rc == 1 and err.strip() == message
    assert not out.exists()                      # a run that cannot start leaves no folder behind
    rc, _, err = run_cli(capsys, "evaluate", cnn_run / "last.pt", "--device", device, "--limit", 10)
    assert rc == 1 and err.strip() == message


def test_bad_option_values_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(SPECS / "cnn.yaml"), "--device", "tpu"])
    assert exit_.value.code == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


# --- evaluate -------------------------------------------------------------------------

def test_evaluate_prints_the_metrics_the_run_logged(cnn_run, capsys):
    logged = history(cnn_run)[-1]
    rc, stdout, _ = run_cli(capsys, "evaluate", cnn_run / "last.pt", "--data", "mnist-sample", "--limit", 512,
                            "--no-download")
    assert rc == 0
    lines = dict(line.split(None, 1) for line in stdout.splitlines())
    assert lines["data"] == "mnist-sample" and lines["samples"] == "512" and lines["epoch"] == "1"
    for key in ("val_loss", "val_accuracy", "val_precision", "val_recall", "val_f1", "val_roc_auc"):
        assert float(lines[key]) == pytest.approx(logged[key], abs=1e-4), key

    rc, stdout, _ = run_cli(capsys, "evaluate", cnn_run / "best.pt", "--limit", N_TEST, "--data", "mnist-sample",
                            "--json", "--no-download")
    assert rc == 0
    metrics = json.loads(stdout)
    assert metrics["samples"] == N_TEST and metrics["data"] == "mnist-sample"
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and math.isfinite(metrics["val_loss"])


# --- predict --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held_out(cnn_run):
    """The first held-out digits as evaluate sees them, and the classes a forward pass gives."""
    from specbuild.data.load import load_data
    bundle = load_data("mnist-sample", {"x": [1, 28, 28]}, limit=N_TEST, download=False)
    state = load_checkpoint(cnn_run / "last.pt")
    model = specbuild.build_model(state["spec"])
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        probs = model(bundle.test.inputs[0])
    return bundle.test.inputs[0], probs


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_predict_npz_gives_the_forward_pass_classes(cnn_run, held_out, tmp_path, capsys):
    x, probs = held_out
    path = tmp_path / "digits.npz"
    np.savez(path, x=x.numpy())
    rc, stdout, _ = run_cli(capsys, "predict", cnn_run / "last.pt", path, "--device", "cpu")
    assert rc == 0
    rows = parse_csv(stdout)
    assert list(rows[0]) == ["source", "class"] + [f"p{j}" for j in range(10)]
    assert [r["source"] for r in rows] == [f"digits.npz[{i}]" for i in range(N_TEST)]
    assert [int(r["class"]) for r in rows] == probs.argmax(1).tolist()
    got = torch.tensor([[float(r[f"p{j}"]) for j in range(10)] for r in rows])
    assert torch.allclose(got, probs, atol=1e-5)
    assert torch.allclose(got.sum(1), torch.ones(N_TEST), atol=1e-4)


def test_predict_pt_file_and_json_output(cnn_run, held_out, tmp_path, capsys):
    x, probs = held_out
    path = tmp_path / "digits.pt"
    torch.save({"x": x[:10]}, path)
    target = tmp_path / "predictions.json"
    rc, stdout, err = run_cli(capsys, "predict", cnn_run / "last.pt", path, "--out", target)
    assert rc == 0 and stdout == "" and f"wrote 10 predictions to {target}" in err
    rows = json.loads(target.read_text())
    assert [r["class"] for r in rows] == probs[:10].argmax(1).tolist()
    assert rows[0]["source"] == "digits.pt[0]" and isinstance(rows[0]["p0"], float)
    # one sample given without its batch dimension
    torch.save({"x": x[0]}, path)
    rc, stdout, _ = run_cli(capsys, "predict", cnn_run / "last.pt", path, "--format", "json")
    assert rc == 0 and [r["class"] for r in json.loads(stdout)] == [int(probs[0].argmax())]


def test_predict_names_the_class_where_the_data_named_them(cnn_run, held_out, tmp_path, capsys):
    """A run on a set that names its classes (fashion-mnist, cifar10...) records the names in its
    checkpoint's data_info; predict prints each row's name beside its id.  Here the digits' run with
    fashion-mnist's names written in, as such a run writes them."""
    from specbuild.data.images import CLASS_NAMES
    from specbuild.training.checkpoint import save_checkpoint
    x, probs = held_out
    state = load_checkpoint(cnn_run / "last.pt")
    names = list(CLASS_NAMES["fashion-mnist"])
    state["data_info"]["targets"]["label"]["names"] = names
    named = tmp_path / "named.pt"
    save_checkpoint(named, state)
    path = tmp_path / "digits.npz"
    np.savez(path, x=x[:8].numpy())
    rc, stdout, _ = run_cli(capsys, "predict", named, path)
    assert rc == 0
    rows = parse_csv(stdout)
    assert list(rows[0])[:3] == ["source", "class", "class_name"]
    assert [r["class_name"] for r in rows] == [names[int(c)] for c in probs[:8].argmax(1)]
    # without names (the digits' own run) there is no such column
    rc, stdout, _ = run_cli(capsys, "predict", cnn_run / "last.pt", path)
    assert rc == 0 and "class_name" not in parse_csv(stdout)[0]


def test_predict_png_files_of_the_bundled_digits(cnn_run, held_out, tmp_path, capsys):
    """PNGs of the raw held-out digits, normalised by predict as in training: same classes."""
    from PIL import Image
    from specbuild.data.images import sample_arrays
    _, probs = held_out
    images, labels, _, test_index = sample_arrays()
    paths = []
    for i in range(12):
        path = tmp_path / f"digit{i:02d}_label{labels[test_index[i]]}.png"
        Image.fromarray(images[test_index[i]]).save(path)
        paths.append(path)
    rc, stdout, _ = run_cli(capsys, "predict", cnn_run / "last.pt", *paths)
    assert rc == 0
    rows = parse_csv(stdout)
    assert [r["source"] for r in rows] == [p.name for p in paths]
    assert [int(r["class"]) for r in rows] == probs[:12].argmax(1).tolist()
    got = torch.tensor([[float(r[f"p{j}"]) for j in range(10)] for r in rows])
    assert torch.allclose(got, probs[:12], atol=1e-4)


def test_predict_input_errors_are_clear(cnn_run, tmp_path, capsys):
    np.savez(tmp_path / "wrong.npz", image=np.zeros((2, 3, 32, 32), dtype="float32"), other=np.zeros(2))
    rc, _, err = run_cli(capsys, "predict", cnn_run / "last.pt", tmp_path / "wrong.npz")
    assert rc == 1 and "has no array named 'x'" in err
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 3, 32, 32), dtype="float32"))
    rc, _, err = run_cli(capsys, "predict", cnn_run / "last.pt", tmp_path / "shape.npz")
    assert rc == 1 and "the spec wants [1, 28, 28]" in err
    (tmp_path / "notes.txt").write_text("hello")
    rc, _, err = run_cli(capsys, "predict", cnn_run / "last.pt", tmp_path / "notes.txt")
    assert rc == 1 and ".npz, .pt or image files" in err


def test_predict_a_regression_and_a_two_input_model(tmp_path, capsys):
    out = tmp_path / "reg"
    rc, _, err = run_cli(capsys, "train", SPECS / "single_output.yaml", "--epochs", 1, "--limit", 64, "--out", out,
                         "--no-download")
    assert rc == 0, err
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 10), dtype="float32"))
    rc, stdout, _ = run_cli(capsys, "predict", out / "last.pt", tmp_path / "x.npz")
    assert rc == 0
    rows = parse_csv(stdout)
    assert list(rows[0]) == ["source", "value"] and len(rows) == 3

    out = tmp_path / "two"
    rc, _, err = run_cli(capsys, "train", SPECS / "multi_input.yaml", "--epochs", 1, "--limit", 64, "--out", out,
                         "--no-download")
    assert rc == 0, err
    np.savez(tmp_path / "two.npz", x1=np.zeros((2, 1, 28, 28), dtype="float32"), x2=np.eye(10, dtype="float32")[:2])
    rc, stdout, _ = run_cli(capsys, "predict", out / "last.pt", tmp_path / "two.npz")
    assert rc == 0 and len(parse_csv(stdout)) == 2 and "class" in parse_csv(stdout)[0]


# --- the Python API -------------------------------------------------------------------

def test_python_api_returns_history_and_model(tmp_path):
    out = tmp_path / "api"
    run = specbuild.train(str(SPECS / "cnn.yaml"), data="mnist-sample", epochs=2, limit=128, out=str(out),
                          download=False)
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.history == history(out)
    assert Path(run.run_dir) == out and run.task == "classification"
    assert run.best is not None and run.best["metric"] == "val_accuracy"
    assert run.data_info["name"] == "mnist-sample" and run.data_info["sizes"] == {"train": 128, "test": 128}
    assert isinstance(run.model, torch.nn.Module)
    saved = load_checkpoint(out / "last.pt")["model"]
    assert all(torch.equal(v, saved[k]) for k, v in run.model.state_dict().items())
    with torch.no_grad():
        probs = run.model.eval()(torch.zeros(3, 1, 28, 28))
    assert probs.shape == (3, 10) and torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)   # the spec's softmax


def test_python_api_takes_a_spec_as_data_and_overrides(tmp_path):
    spec = load_spec(SPECS / "single_output.yaml").data
    run = specbuild.train(spec, data="diabetes", epochs=1, limit=64, out=str(tmp_path / "run"), seed=3,
                          overrides={"train.optimizer.lr": 0.01}, download=False)
    assert len(run.history) == 1 and run.history[0]["lr"] == 0.01
    assert {"val_mse", "val_mae", "val_r2"} <= set(run.history[0])
    assert run.task == "regression"
