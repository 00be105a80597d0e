"""A mistake on the command line is a message naming the bad value, exit status 1.

Every `specbuild` command is driven here with bad option values, bad files and bad
`--set` keys.  Each case asserts the exit status, the whole message line (what is
wrong, the bad value, the hint) and, through the `cli` fixture, that nothing said
"internal error" or printed a traceback.  The exit codes themselves: 0 done, 1 the
user's input, 2 usage, 3 a bug in specbuild (the only "internal error").
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import pickle
import argparse
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from specbuild.cli.main import main
from specbuild.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
FNN = SPECS / "fnn.yaml"
QUICK = ("--data", "mnist-sample", "--limit", 32, "--epochs", 1, "--no-download")

LOGITS = """\
specbuild: 1
name: logits
inputs: {x: [1, 28, 28]}
layers:
  - {type: flatten}
  - {name: fc, type: Linear, out_features: 10}
train:
  data: {dataset: mnist-sample}
  loss: {type: CrossEntropyLoss}
"""
BINARY = """\
specbuild: 1
name: binary
inputs: {x: [30]}
layers:
  - {name: fc, type: Linear, out_features: 1}
train:
  data: {dataset: breast-cancer, normalize: standard}
  loss: {type: BCEWithLogitsLoss}
"""


def _train(spec, out: Path, **options) -> Path:
    from specbuild.training.progress import Progress
    from specbuild.training.trainer import train
    train(str(spec), epochs=1, limit=64, out=str(out), download=False, progress=Progress(io.StringIO(), quiet=True),
          **options)
    return out / "last.pt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints of tiny one-epoch runs: a softmax classifier, an Embedding model, logits classifiers."""
    root = tmp_path_factory.mktemp("trained")
    (root / "logits.yaml").write_text(LOGITS)
    (root / "binary.yaml").write_text(BINARY)
    return {"fnn": _train(FNN, root / "fnn", data="mnist-sample"),
            "embedding": _train(SPECS / "embedding.yaml", root / "embedding"),
            "logits": _train(root / "logits.yaml", root / "logits"),
            "binary": _train(root / "binary.yaml", root / "binary")}


def only_line(result) -> str:
    """The one line a failed command printed (on stderr, nothing on stdout)."""
    assert result.out == "", result.out
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def fails(result, line: str) -> None:
    assert (result.rc, only_line(result)) == (1, line)


# --- exit codes -----------------------------------------------------------------------------

def test_help_states_the_exit_codes(cli):
    top = cli("--help")
    assert top.rc == 0
    assert ("exit status: 0 done, 1 a problem with the input (a spec, a file, an option's value: reported, no "
            "traceback), 2 usage, 3 a bug in specbuild, 130 interrupted (Ctrl-C)") in " ".join(top.out.split())
    train = cli("train", "--help")
    assert "130 interrupted (Ctrl-C; a checkpoint is kept)" in " ".join(train.out.split())
    for command in ("summary", "graph", "evaluate", "predict"):
        assert "exit status: 0 done, 1 a problem with the input" in " ".join(cli(command, "--help").out.split())
    assert "exit status: 0 every spec is valid, 1 a spec has a problem" in " ".join(cli("validate", "--help").out.split())


def test_a_bug_exits_3_and_says_so(capsys, monkeypatch):
    import specbuild.cli.main as cli_main
    monkeypatch.delenv("SPECBUILD_DEBUG", raising=False)

    def broken(args):
        raise RuntimeError("boom")
    monkeypatch.setattr(cli_main, "_list", broken)
    assert main(["list"]) == 3
    assert capsys.readouterr().err == ("specbuild: internal error: RuntimeError: boom\n"
                                       "This is a bug in specbuild; rerun with SPECBUILD_DEBUG=1 for the traceback.\n")
    monkeypatch.setenv("SPECBUILD_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["list"])


def test_a_full_disk_or_a_refused_write_anywhere_is_not_a_bug(cli, monkeypatch):
    import specbuild.cli.main as cli_main

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.csv")
    monkeypatch.setattr(cli_main, "_list", full)
    fails(cli("list"), "specbuild: no space left on device: /data/out.csv")


def test_the_console_script_exits_1_for_a_bad_value_and_2_for_usage(tmp_path):
    """Only a real process shows the status the shell sees."""
    script = Path(sys.executable).with_name("specbuild")
    bad = subprocess.run([str(script), "train", str(FNN), "--lr", "nan", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        1, "", "--lr nan: the learning rate must be a finite number, 0 or more — e.g. --lr 0.001\n")
    usage = subprocess.run([str(script), "train", str(FNN), "--lr", "fast"], capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 2 and "argument --lr: invalid float value: 'fast'" in usage.stderr
    assert not (tmp_path / "run").exists()


# --- the trainer's option values: blamed on the option, checked before anything starts ----------

SEED_RANGE = "a seed is a whole number from -9223372036854775808 to 18446744073709551615 (torch.manual_seed's range)"
LR = "the learning rate must be a finite number, 0 or more — e.g. --lr 0.001"


@pytest.mark.parametrize("option, value, line", [
    ("--lr", "nan", f"--lr nan: {LR}"),
    ("--lr", "-1", f"--lr -1: {LR}"),
    ("--lr", "inf", f"--lr inf: {LR}"),
    ("--lr", "-0.5", f"--lr -0.5: {LR}"),
    ("--seed", "99999999999999999999", f"--seed 99999999999999999999: {SEED_RANGE} — e.g. --seed 0"),
    ("--seed", str(-2**63 - 1), f"--seed {-2**63 - 1}: {SEED_RANGE} — e.g. --seed 0"),
    ("--epochs", "-3", "--epochs -3: a run trains 1 epoch or more — e.g. --epochs 5"),
    ("--epochs", "0", "--epochs 0: a run trains 1 epoch or more — e.g. --epochs 5"),
    ("--batch-size", "0", "--batch-size 0: a batch holds at least 1 sample — e.g. --batch-size 32"),
    ("--limit", "0", "--limit 0: it takes at least 1 sample of each split — e.g. --limit 1000"),
])
def test_bad_train_option_values(option, value, line, cli, tmp_path):
    out = tmp_path / "run"
    options = {"--data": "mnist-sample", "--limit": 32, "--epochs": 1, option: value}
    result = cli("train", FNN, *[part for pair in options.items() for part in pair], "--out", out)
    fails(result, line)
    assert not out.exists()         # refused before a run folder was made


def test_the_seed_range_is_what_torch_takes():
    from specbuild.cli.train import SEED_RANGE as LIMITS
    for seed in LIMITS:
        torch.Generator().manual_seed(seed)
    for seed in (LIMITS[0] - 1, LIMITS[1] + 1):
        with pytest.raises((RuntimeError, ValueError, OverflowError)):
            torch.Generator().manual_seed(seed)


def test_evaluate_limit_0(cli, trained):
    fails(cli("evaluate", trained["fnn"], "--limit", 0),
          "--limit 0: it takes at least 1 sample of each split — e.g. --limit 1000")


# --- where output goes ----------------------------------------------------------------------

def test_graph_out_in_a_folder_that_does_not_exist(cli, tmp_path):
    target = tmp_path / "nowhere" / "x.mmd"
    fails(cli("graph", FNN, "-o", target), f"--out {target}: cannot write here: the folder {target.parent} does "
                                           "not exist — create the folder first, or give another path")
    fails(cli("graph", FNN, "--format", "png", "-o", tmp_path / "nowhere" / "x.png"),
          f"--out {tmp_path / 'nowhere' / 'x.png'}: cannot write here: the folder {target.parent} does not exist "
          "— create the folder first, or give another path")


def test_graph_out_at_a_folder_or_under_a_file(cli, tmp_path):
    fails(cli("graph", FNN, "-o", tmp_path),
          f"--out {tmp_path}: cannot write here: it is a folder — give a file name inside it, e.g. {tmp_path}/out.txt")
    (tmp_path / "notes.txt").write_text("x")
    target = tmp_path / "notes.txt" / "x.mmd"
    fails(cli("graph", FNN, "-o", target), f"--out {target}: cannot write here: {tmp_path}/notes.txt is a file, not "
                                           "a folder — give --out a file in a folder you can write to")


def test_graph_out_where_writing_is_refused(cli, tmp_path, monkeypatch):
    target = str(tmp_path / "locked.mmd")
    real_open, real_access = builtins.open, os.access

    def refusing_open(file, mode="r", *args, **kwargs):
        if str(file) == target and "w" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", target)
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", refusing_open)
    fails(cli("graph", FNN, "-o", target),
          f"--out {target}: cannot write here: permission denied — give --out a file in a folder you can write to")
    # a PNG is refused before it is drawn
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode))
    fails(cli("graph", FNN, "--format", "png", "-o", tmp_path / "x.png"),
          f"--out {tmp_path / 'x.png'}: cannot write here: permission denied — give --out a file in a folder you "
          "can write to")
    assert os.listdir(tmp_path) == []


def test_graph_png_on_a_full_disk(cli, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Figure, "savefig", full)
    fails(cli("graph", FNN, "--format", "png", "-o", tmp_path / "x.png"),
          f"--out {tmp_path / 'x.png'}: cannot write here: no space left on the device — free some space, or write "
          "to another disk")


def test_predict_out_in_a_folder_that_does_not_exist(cli, trained, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1, 28, 28), dtype="float32"))
    target = tmp_path / "nowhere" / "p.csv"
    fails(cli("predict", trained["fnn"], tmp_path / "x.npz", "-o", target),
          f"--out {target}: cannot write here: the folder {target.parent} does not exist — create the folder "
          "first, or give another path")


# --- graph --format png of a huge spec ---------------------------------------------------------

def chain(layers: int) -> str:
    return "specbuild: 1\nname: deep\ninputs: {x: [4]}\nlayers:\n" + "  - {type: relu}\n" * layers


def test_png_of_too_many_nodes_is_refused_with_a_hint(cli, write_spec, tmp_path):
    from specbuild.compiler.render import MAX_PNG_NODES
    path = write_spec(chain(MAX_PNG_NODES - 1))           # + the input and the output node: one too many
    fails(cli("graph", path, "--format", "png", "-o", tmp_path / "deep.png"),
          f"--format png: the graph has {MAX_PNG_NODES + 1:,} nodes, too many for a readable picture (at most "
          f"{MAX_PNG_NODES:,}) — draw it as text instead: --format mermaid, or --format dot (Graphviz: dot -Tsvg)")
    assert not (tmp_path / "deep.png").exists()
    assert cli("graph", path, "--format", "dot", "-o", tmp_path / "deep.dot").rc == 0    # text has no limit


def test_the_largest_png_allowed_stays_within_the_pixel_caps(write_spec):
    from specbuild.compiler.render import MAX_PNG_NODES, MAX_PNG_PIXELS, MAX_PNG_SIDE, png_size, spec_graph
    width, height, dpi = png_size(spec_graph(write_spec(chain(MAX_PNG_NODES - 2))))
    assert width * dpi * height * dpi <= MAX_PNG_PIXELS * 1.001
    assert max(width, height) * dpi <= MAX_PNG_SIDE * 1.001
    assert dpi > 40                                        # still legible: 8 pt text is 4+ pixels high


def test_png_is_drawn_at_the_capped_size(cli, tmp_path, monkeypatch):
    import specbuild.compiler.render as render
    monkeypatch.setattr(render, "MAX_PNG_PIXELS", 200_000)
    assert cli("graph", FNN, "--format", "png", "-o", tmp_path / "small.png").rc == 0
    header = (tmp_path / "small.png").read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])
    assert width * height <= 200_000 * 1.02 and width * height > 150_000


# --- predict: images and arrays -----------------------------------------------------------------

def test_predict_missing_corrupt_and_empty_images(cli, trained, tmp_path):
    fnn = trained["fnn"]
    missing = tmp_path / "missing.png"
    fails(cli("predict", fnn, missing), f"predict: no such image file: {missing} — check the path")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    fails(cli("predict", fnn, tmp_path / "corrupt.png"),
          f"predict: cannot read the image {tmp_path / 'corrupt.png'}: not an image file PIL can read — give PNG, "
          "JPEG, BMP, GIF, TIFF or WebP files")
    (tmp_path / "empty.png").write_bytes(b"")
    fails(cli("predict", fnn, tmp_path / "empty.png"),
          f"predict: the image file {tmp_path / 'empty.png'} is empty (0 bytes) — was it written completely? give "
          "another image")


def test_predict_arrays_that_are_no_numbers_or_no_samples(cli, trained, tmp_path):
    fnn = trained["fnn"]
    np.savez(tmp_path / "text.npz", x=np.array(["a", "b"]))
    fails(cli("predict", fnn, tmp_path / "text.npz"), f"predict: array 'x' in {tmp_path / 'text.npz'} holds text, "
          "not numbers — store numbers: e.g. token ids as integers, features as floats")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    fails(cli("predict", fnn, tmp_path / "objects.npz"), f"predict: array 'x' in {tmp_path / 'objects.npz'} holds "
          "Python objects, not numbers — store numbers only (numpy object arrays are never unpickled)")
    np.savez(tmp_path / "scalar.npz", x=np.array(3.0))
    fails(cli("predict", fnn, tmp_path / "scalar.npz"), f"predict: array 'x' in {tmp_path / 'scalar.npz'} is a "
          "single number, not one row per sample — give each array a first dimension of samples, e.g. shape [N, ...]")
    (tmp_path / "noise.npz").write_bytes(os.urandom(256))
    fails(cli("predict", fnn, tmp_path / "noise.npz"), f"predict: {tmp_path / 'noise.npz'} is not a .npz file (a zip "
          "archive of arrays, as numpy.savez writes) — save the arrays with numpy.savez(path, x=inputs, label=labels)")
    missing = tmp_path / "missing.npz"
    fails(cli("predict", fnn, missing), f"predict: no such file: {missing} — give a .npz or .pt file holding the "
          "inputs, or image files")


def test_predict_arrays_with_the_wrong_names(cli, trained, tmp_path):
    path = tmp_path / "named.npz"
    np.savez(path, images=np.zeros((2, 1, 28, 28), dtype="float32"), extra=np.zeros(2))
    fails(cli("predict", trained["fnn"], path), f"predict: {path} has no array named 'x' (its arrays: images, extra) "
          "— name the arrays after the spec's inputs: x")
    np.savez(path, xx=np.zeros((2, 1, 28, 28), dtype="float32"), extra=np.zeros(2))
    fails(cli("predict", trained["fnn"], path), f"predict: {path} has no array named 'x' (its arrays: xx, extra) "
          "— did you mean 'xx'?")


def test_predict_token_ids_beyond_the_embedding(cli, trained, tmp_path):
    path = tmp_path / "ids.npz"
    np.savez(path, x=np.array([[5] * 10, [7] * 9 + [1000]]))
    fails(cli("predict", trained["embedding"], path),
          "predict: input x of ids.npz holds the id 1000 (sample 1), but embedding (Embedding) has 1000 rows: ids "
          "run from 0 to 999 — give ids below 1000, or train a spec whose embedding has num_embeddings of at least "
          "1001")
    np.savez(path, x=np.array([[5] * 10, [-3] * 10]))
    fails(cli("predict", trained["embedding"], path),
          "predict: input x of ids.npz holds the id -3 (sample 1), but embedding (Embedding) has 1000 rows: ids "
          "run from 0 to 999 — ids cannot be negative")


def test_predict_refuses_fractional_token_ids_and_takes_whole_floats(cli, trained, tmp_path):
    path = tmp_path / "ids.npz"
    np.savez(path, x=np.array([[5.0] * 10, [5.0] * 9 + [2.5]]))
    fails(cli("predict", trained["embedding"], path),
          "predict: ids.npz's x holds fractional numbers (2.5 in sample 1) but the spec's input x is int64 (ids): "
          "they would be cut to whole numbers — give whole numbers for an integer input such as token ids, or drop "
          "its dtype for float data")
    np.savez(path, x=np.array([[5.0] * 10, [7.0] * 10]))
    whole = cli("predict", trained["embedding"], path)
    np.savez(path, x=np.array([[5] * 10, [7] * 10]))
    assert whole.rc == 0 and whole.out == cli("predict", trained["embedding"], path).out


def test_predict_takes_integer_arrays_for_a_float_input(cli, trained, tmp_path):
    np.savez(tmp_path / "ints.npz", x=np.zeros((2, 1, 28, 28), dtype="int64"))
    np.savez(tmp_path / "floats.npz", x=np.zeros((2, 1, 28, 28), dtype="float32"))
    ints, floats = cli("predict", trained["fnn"], tmp_path / "ints.npz"), cli("predict", trained["fnn"],
                                                                               tmp_path / "floats.npz")
    assert ints.rc == 0 and ints.out.replace("ints", "floats") == floats.out


# --- predict: a class column for classifiers that return logits --------------------------------

def rows(text: str) -> list[dict]:
    import csv
    return list(csv.DictReader(io.StringIO(text)))


def test_predict_gives_a_class_for_logits_and_keeps_the_raw_values(cli, trained, tmp_path):
    state = torch.load(trained["logits"], weights_only=True)
    images = np.random.default_rng(0).random((3, 1, 28, 28)).astype("float32")
    np.savez(tmp_path / "x.npz", x=images)
    result = cli("predict", trained["logits"], tmp_path / "x.npz")
    assert result.rc == 0, result.err
    table = rows(result.out)
    assert list(table[0]) == ["source", "class"] + [str(j) for j in range(10)]
    weight, bias = state["model"]["fc.weight"], state["model"]["fc.bias"]
    logits = torch.from_numpy(images).reshape(3, -1) @ weight.T + bias
    for row, expected in zip(table, logits):
        assert int(row["class"]) == int(expected.argmax())
        assert [float(row[str(j)]) for j in range(10)] == pytest.approx(expected.tolist(), abs=1e-5)


def test_predict_gives_a_class_for_one_binary_logit(cli, trained, tmp_path):
    features = np.random.default_rng(1).normal(size=(6, 30)).astype("float32") * 3
    np.savez(tmp_path / "x.npz", x=features)
    result = cli("predict", trained["binary"], tmp_path / "x.npz")
    assert result.rc == 0, result.err
    table = rows(result.out)
    assert list(table[0]) == ["source", "class", "value"]
    assert [int(r["class"]) for r in table] == [int(float(r["value"]) >= 0) for r in table]


def test_predict_of_a_softmax_output_is_unchanged(cli, trained, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 1, 28, 28), dtype="float32"))
    table = rows(cli("predict", trained["fnn"], tmp_path / "x.npz").out)
    assert list(table[0]) == ["source", "class"] + [f"p{j}" for j in range(10)]


# --- evaluate: data without targets, an empty held-out part ----------------------------------

def test_evaluate_data_without_targets(cli, trained, tmp_path):
    path = tmp_path / "inputs_only.npz"
    np.savez(path, x=np.zeros((10, 1, 28, 28), dtype="float32"))
    fails(cli("evaluate", trained["fnn"], "--data", path),
          f"evaluate: data set '{path}' has no target 'label' to compare 'fc2' with (its targets: none) — evaluate "
          "needs the answers: give data with an array named 'label' beside the inputs")


def test_evaluate_token_ids_beyond_the_embedding(cli, trained, tmp_path):
    path = tmp_path / "ids.npz"
    ids = np.full((10, 10), 4)
    ids[:, 3] = 1200
    np.savez(path, x=ids, label=np.arange(10) % 10)
    result = cli("evaluate", trained["embedding"], "--data", path)
    assert result.rc == 1 and only_line(result).startswith(
        f"evaluate: input x of data set '{path}' holds the id 1200 (sample 0), but embedding (Embedding) has 1000 rows")


def test_evaluate_an_empty_held_out_part(trained):
    from specbuild.errors import SpecError
    from specbuild.training.evaluate import evaluate
    with pytest.raises(SpecError) as error:
        evaluate(str(trained["fnn"]), data="mnist-sample", limit=0, download=False)
    assert str(error.value) == ("evaluate: the held-out part of data set 'mnist-sample' is empty: there is nothing to "
                                "evaluate — give a data set with held-out samples (a larger file, or a test: file)")


# --- checkpoints: missing parts, foreign weights, files that are no checkpoint --------------------

def doctored(trained, tmp_path, name: str, change) -> Path:
    state = torch.load(trained["fnn"], weights_only=True)
    change(state)
    torch.save(state, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_checkpoint_missing_model_or_spec(command, cli, trained, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 1, 28, 28), dtype="float32"))
    extra = [tmp_path / "x.npz"] if command == "predict" else ["--limit", 8]
    for key, what in (("model", "the model's weights"), ("spec", "the spec to rebuild the model from")):
        path = doctored(trained, tmp_path, f"no-{key}.pt", lambda s: s.pop(key))
        fails(cli(command, path, *extra), f"{path}: this checkpoint has no {key!r} ({what}) — the file was not "
                                          "written whole by `specbuild train`; use another checkpoint")
    path = doctored(trained, tmp_path, "text-spec.pt", lambda s: s.update(spec="fnn.yaml"))
    fails(cli(command, path, *extra), f"{path}: this checkpoint holds a str as 'spec' (the spec to rebuild the model "
                                      "from) — the file was not written whole by `specbuild train`; use another "
                                      "checkpoint")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_checkpoint_weights_of_another_shape_or_name(command, cli, trained, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 1, 28, 28), dtype="float32"))
    extra = [tmp_path / "x.npz"] if command == "predict" else ["--limit", 8]
    hint = "the weights do not belong to the spec stored with them; use a checkpoint written by `specbuild train`"

    def narrower(state):
        state["model"]["fc2.weight"] = torch.zeros(10, 64)
    path = doctored(trained, tmp_path, "shape.pt", narrower)
    fails(cli(command, path, *extra), f"{path}: the checkpoint's weight fc2.weight has shape [10, 64], but the model "
                                      f"its spec builds wants [10, 128] — {hint}")
    path = doctored(trained, tmp_path, "missing.pt", lambda s: s["model"].pop("fc1.bias"))
    fails(cli(command, path, *extra), f"{path}: the checkpoint lacks the weights: fc1.bias — {hint}")
    path = doctored(trained, tmp_path, "extra.pt", lambda s: s["model"].update({"fc3.weight": torch.zeros(1)}))
    fails(cli(command, path, *extra), f"{path}: the checkpoint holds weights the model has no place for: fc3.weight "
                                      f"— {hint}")


def test_files_that_are_no_checkpoint(cli, tmp_path):
    noise = tmp_path / "noise.pt"
    noise.write_bytes(b"\x13\x37" + os.urandom(510))
    fails(cli("evaluate", noise), f"{noise}: this file is not a readable checkpoint: it is not a torch file at all (it "
                                  f"starts with {noise.read_bytes()[:4]!r}; torch files are zip archives) — give a "
                                  "checkpoint written by `specbuild train`, e.g. a run folder's last.pt")
    pickle_like = tmp_path / "pickle-like.pt"                  # random bytes behind a pickle's first byte
    pickle_like.write_bytes(b"\x80\x02\xd4" + bytes(range(256)))
    fails(cli("evaluate", pickle_like), f"{pickle_like}: this file is not a readable checkpoint: it is not a torch "
                                        "file at all (its bytes are not a pickle either) — give a checkpoint written "
                                        "by `specbuild train`, e.g. a run folder's last.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    fails(cli("evaluate", empty), f"{empty}: this file is not a readable checkpoint: it is empty — its write was cut "
                                  "off, or it was truncated: use an earlier checkpoint")


def test_a_real_pickle_with_globals_is_named_as_one(cli, tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"spec": {}, "model": argparse.Namespace(a=1)}, protocol=4))
    fails(cli("evaluate", plain), f"{plain}: this file holds pickled Python objects (argparse.Namespace), not just "
                                  "weights: refused to load it — loading it would run code from the file; load only "
                                  "checkpoints written by specbuild (spec + state_dict) or ones you trust")
    saved = tmp_path / "saved.pt"
    torch.save({"spec": {}, "model": argparse.Namespace(a=1)}, saved)
    assert "pickled Python objects (argparse.Namespace)" in cli("predict", saved, plain).err


# --- a full disk while a checkpoint is saved ------------------------------------------------------

def test_disk_full_during_a_save_keeps_the_previous_checkpoint(cli, tmp_path, monkeypatch):
    real_save = torch.save

    def full_from_epoch_2(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", full_from_epoch_2)
    out = tmp_path / "run"
    result = cli("train", FNN, "--data", "mnist-sample", "--limit", 32, "--epochs", 2, "--out", out, "--no-download")
    assert result.rc == 1
    line = result.err.splitlines()[-1]
    name = Path(line.split(":", 1)[0]).name
    assert name in ("last.pt", "best.pt")
    assert line == (f"{out / name}: no space left on the device to save this checkpoint; the previous {name} there "
                    "is intact — free some space (or give --out a folder on another disk), then continue with --resume")
    assert load_checkpoint(out / name)["epoch"] == 1
    assert not [f for f in os.listdir(out) if ".tmp-" in f]


def test_disk_full_on_a_first_save(tmp_path, monkeypatch):
    from specbuild.training.checkpoint import CheckpointError, save_checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(tmp_path / "last.pt", {"spec": {}, "model": {}})
    assert str(error.value) == (f"{tmp_path / 'last.pt'}: no space left on the device to save this checkpoint; nothing "
                                "was written there — free some space (or give --out a folder on another disk), then "
                                "continue with --resume")
    assert isinstance(error.value, OSError) and error.value.errno == errno.EDQUOT
    assert os.listdir(tmp_path) == []


# --- --set: unknown names, paths that lead nowhere, list items ------------------------------------

@pytest.mark.parametrize("spec, assignment, line", [
    ("rnn.yaml", "hiden_size=32", "--set hiden_size=32: the spec has no param named 'hiden_size' — did you mean "
                                  "'hidden_size' or 'input_size'?"),
    ("rnn.yaml", "zzz=1", "--set zzz=1: the spec has no param named 'zzz' — its params are: hidden_size, input_size, "
                          "output_size, seq_len"),
    ("fnn.yaml", "hiden_size=32", "--set hiden_size=32: the spec has no param named 'hiden_size' — declare it under "
                                  "`params:` and use it as ${hiden_size}, or set another value with a dotted key such "
                                  "as train.epochs=3"),
    ("fnn.yaml", "train=3", "--set train=3: the spec has no param named 'train' — `train` is a part of the spec, not "
                            "a param; set a value inside it with a dotted key, e.g. --set train.epochs=3"),
    ("fnn.yaml", "layers=[]", "--set layers=[]: the spec has no param named 'layers' — `layers` is a part of the spec, "
                              "not a param; set a value inside it with a dotted key, e.g. --set layers.0.out_features=64"),
    ("fnn.yaml", "name=other", "--set name=other: the spec has no param named 'name' — `name` is a part of the spec, "
                               "not a param: edit it in the spec file"),
    ("fnn.yaml", "layers.9.out_features=64", "--set layers.9.out_features=64: index 9 is past the end of layers, "
                                             "which has 5 items — its indices run from 0 to 4"),
    ("fnn.yaml", "layers.fc1.out_features=64", "--set layers.fc1.out_features=64: layers is a list, so its items are "
                                               "reached by index, not 'fc1' — 'fc1' is item 1: --set "
                                               "layers.1.out_features=..."),
    ("fnn.yaml", "train.epochs.max=3", "--set train.epochs.max=3: train.epochs is 5, not a mapping or a list, so it "
                                       "has no 'max' inside — set train.epochs itself, e.g. --set train.epochs=..."),
    ("fnn.yaml", "train.metrics.7=mse", "--set train.metrics.7=mse: index 7 is past the end of train.metrics, which "
                                        "has 5 items — its indices run from 0 to 4"),
])
@pytest.mark.parametrize("command", ["validate", "summary", "train"])
def test_bad_set(spec, assignment, line, command, cli, tmp_path):
    extra = ["--out", tmp_path / "run", *QUICK] if command == "train" else []
    fails(cli(command, SPECS / spec, "--set", assignment, *extra), line)
    assert not (tmp_path / "run").exists()


def test_set_reports_every_bad_key_at_once(cli):
    result = cli("validate", FNN, "--set", "hiden=1", "--set", "layers.7.out_features=2")
    assert result.rc == 1 and result.err.splitlines() == [
        "--set hiden=1: the spec has no param named 'hiden' — declare it under `params:` and use it as ${hiden}, or "
        "set another value with a dotted key such as train.epochs=3",
        "--set layers.7.out_features=2: index 7 is past the end of layers, which has 5 items — its indices run from "
        "0 to 4",
        "2 problems found"]


def test_set_paths_the_schema_refuses_are_reported(cli):
    typo = cli("validate", FNN, "--set", "trian.epochs=3")
    assert typo.rc == 1 and "trian: unknown key 'trian' — did you mean 'train'?" in only_line(typo)
    wrong_type = cli("validate", FNN, "--set", "train.epochs=many")
    assert wrong_type.rc == 1 and "train.epochs" in only_line(wrong_type) and "'many'" in only_line(wrong_type)
    under_a_layer = cli("validate", FNN, "--set", "layers.1.out_feature=64")
    assert under_a_layer.rc == 1 and "out_feature" in only_line(under_a_layer)


def test_set_reaches_list_items(cli):
    result = cli("summary", FNN, "--set", "layers.1.out_features=64")
    assert result.rc == 0, result.err
    fc1 = next(line.split() for line in result.out.splitlines() if line.startswith("fc1 "))
    assert fc1[1:] == ["Linear", "flatten_0", "[N,", "64]", "50,240"]        # 784 * 64 + 64
    fc2 = next(line.split() for line in result.out.splitlines() if line.startswith("fc2 "))
    assert fc2[-1] == "650"                                                  # 64 * 10 + 10


@pytest.mark.parametrize("command, extra", [("evaluate", []), ("predict", ["x.npz"])])
def test_a_gan_checkpoint_is_refused_by_the_command_that_was_asked(cli, command, extra):
    gan = Path(__file__).parent / "fixtures" / "checkpoints-0.1.0" / "gan.pt"
    result = cli(command, gan, *extra)
    assert result.rc == 1
    assert result.err.strip() == (f"{command}: this is a GAN checkpoint: it generates samples rather than "
                                  "predicting — its sample grids are in the run folder's samples/")
