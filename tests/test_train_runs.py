"""Where a run goes and what a resume continues: the run folder is made only once training
starts, never over another run; a spec given with --resume must be the checkpoint's model;
a changed optimizer starts afresh and says so; a run with nothing to train says so."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cli_runner import read_history, run_cli, write_text
from specbuild.training.checkpoint import load_checkpoint

SPEC = """\
specbuild: 1
name: tiny
inputs: {x: [4]}
layers:
  - {name: fc1, type: Linear, out_features: 8}
  - {type: relu}
  - {name: fc2, type: Linear, out_features: 3}
outputs: fc2
train:
  data: {dataset: iris, batch_size: 16}
  loss: {type: CrossEntropyLoss}
  optimizer: {type: Adam, lr: 0.01}
  epochs: 1
"""


@pytest.fixture
def run(tmp_path, capsys):
    """A finished one-epoch run of SPEC: its folder."""
    spec = write_text(tmp_path, SPEC)
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run")
    assert rc == 0, err
    return tmp_path / "run"


def test_a_run_that_fails_to_start_leaves_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_text(tmp_path, SPEC.replace("iris", "wine"))      # 13 features for a 4-feature input
    rc, _, err = run_cli(capsys, "train", spec)
    assert rc == 1 and "data set 'wine' gives x samples of shape [13]" in err
    assert not (tmp_path / "runs").exists()


def test_a_new_run_refuses_a_folder_holding_another_run(run, capsys, tmp_path):
    before = (run / "last.pt").read_bytes()
    rc, _, err = run_cli(capsys, "train", tmp_path / "spec.yaml", "--out", run)
    assert rc == 1
    assert err.strip() == (f"--out {run} already holds a run (last.pt); writing there would overwrite it — "
                           f"resume that run with --resume {run}, or give another --out")
    assert (run / "last.pt").read_bytes() == before


def test_a_resume_refuses_to_write_into_another_runs_folder(run, capsys, tmp_path):
    other = tmp_path / "other"
    rc, _, err = run_cli(capsys, "train", tmp_path / "spec.yaml", "--out", other)
    assert rc == 0, err
    before = (other / "last.pt").read_bytes()
    rc, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", 2, "--out", other)
    assert rc == 1
    assert err.strip() == (f"--out {other} already holds a run (last.pt); writing there would overwrite it — "
                           f"drop --out to continue in {run}, or give an empty folder")
    assert (other / "last.pt").read_bytes() == before
    rc, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", 2, "--out", tmp_path / "fresh")
    assert rc == 0, err                                       # an empty folder takes the continued run
    assert [row["epoch"] for row in read_history(tmp_path / "fresh")] == [1, 2]


def test_out_at_a_file_or_under_one_is_refused(tmp_path, capsys):
    spec = write_text(tmp_path, SPEC)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    rc, _, err = run_cli(capsys, "train", spec, "--out", a_file)
    assert rc == 1 and err.strip() == f"--out {a_file} is a file, not a folder — give a new folder for the run"
    rc, _, err = run_cli(capsys, "train", spec, "--out", a_file / "run")
    assert rc == 1 and err.strip() == (f"cannot make the run folder {a_file / 'run'}: {a_file} is a file — "
                                       "give --out a folder you can write to")
    assert a_file.read_text() == "mine"


def test_out_where_no_folder_can_be_made_is_a_clear_error(tmp_path, capsys):
    spec = write_text(tmp_path, SPEC)
    rc, _, err = run_cli(capsys, "train", spec, "--out", "/proc/specbuild-run")
    assert rc == 1 and err.strip() == ("cannot make the run folder /proc/specbuild-run: No such file or directory — "
                                       "give --out a folder you can write to")


def test_a_spec_given_with_resume_must_be_the_checkpoints_model(run, capsys, tmp_path):
    same = write_text(tmp_path, SPEC.replace("lr: 0.01", "lr: 0.02"), "same_model.yaml")   # only train: differs
    rc, _, err = run_cli(capsys, "train", same, "--resume", run, "--epochs", 2)
    assert rc == 0, err
    other = write_text(tmp_path, SPEC.replace("out_features: 8", "out_features: 9"), "other.yaml")
    rc, _, err = run_cli(capsys, "train", other, "--resume", run, "--epochs", 3)
    assert rc == 1
    assert err.strip() == (f"{other}: layers: --resume continues the run in {run / 'last.pt'}, whose spec differs "
                           "from this one at 'layers' — drop the spec to continue that run as it was, or train "
                           "this spec as a new run")


def test_resume_with_another_optimizer_starts_it_afresh_and_says_so(run, capsys):
    rc, out, err = run_cli(capsys, "train", "--resume", run, "--epochs", 2, "--set", "train.optimizer.type=SGD")
    assert rc == 0, err
    assert ("train.optimizer is now SGD, not the checkpoint's Adam: the optimizer starts afresh, so the run "
            "will not match one never stopped") in err
    state = load_checkpoint(run / "last.pt")
    group = state["optimizer"]["param_groups"][0]
    assert state["epoch"] == 2 and "momentum" in group and "betas" not in group      # SGD's state, not Adam's


def test_nothing_to_train_is_an_error_not_an_empty_success(run, capsys, tmp_path):
    rc, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", 1)
    assert rc == 1
    assert err.strip() == ("train.epochs: the run has trained 1 epochs, and train.epochs is 1: there is nothing "
                           "left to train — resume with --epochs 2 or more to train further")
    spec = write_text(tmp_path, SPEC.replace("epochs: 1", "epochs: 0"), "zero.yaml")
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "zero")
    assert rc == 1
    assert err.strip() == "train.epochs: train.epochs is 0: there is nothing to train — give --epochs 1 or more"
    assert not os.path.exists(tmp_path / "zero")


def test_training_on_token_ids_an_embedding_cannot_look_up_is_refused(tmp_path, capsys):
    import numpy as np
    data = tmp_path / "ids.npz"
    x = np.arange(40 * 10, dtype=np.int64).reshape(40, 10) % 1000
    x[7, 3] = 1200                                              # past Embedding(1000, 64)'s table
    np.savez(data, x=x, label=np.arange(40) % 10)
    spec = str(Path(__file__).resolve().parent.parent / "specs" / "embedding.yaml")
    rc, _, err = run_cli(capsys, "train", spec, "--data", data, "--epochs", 1, "--out", tmp_path / "run")
    assert rc == 1
    # the sample's index is its place in the train split, which a seeded permutation draws
    assert re.fullmatch(re.escape(f"train: input x of data set '{data}' holds the id 1200 (sample ") + r"\d+"
                        + re.escape("), but embedding (Embedding) has 1000 rows: ids run from 0 to 999 — give ids "
                                    "below 1000, or train a spec whose embedding has num_embeddings of at least 1201"),
                        err.strip()), err
    assert not (tmp_path / "run").exists()


def test_integer_data_fed_to_an_input_without_a_dtype_trains_as_validated(tmp_path, capsys):
    # validation takes an input without a dtype as float32 and lets it feed a Linear; the data set's
    # integer token ids must reach the model as float32 too (they were kept int64: torch refused)
    spec = write_text(tmp_path, SPEC.replace("{x: [4]}", "{x: [10]}").replace("out_features: 3", "out_features: 10")
                      .replace("{dataset: iris, batch_size: 16}", "{dataset: tokens, batch_size: 16, samples: 64}"),
                      "ids.yaml")
    rc, out, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run")
    assert rc == 0, err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
