"""`specbuild tune`: a study over specs/fnn.yaml's learning rate and width, on Optuna.

Every study here is small (2 epochs of 200 MNIST samples a trial), so the file stays quick:
a study into SQLite with its outputs, a killed study resumed, failed and pruned trials, the
pruning observer on its own, a tune section's mistakes at their lines (from both `validate`
and `tune`), Ctrl-C, and two invocations sharing one database.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from cli_runner import line_of, run_cli, write_text
from specbuild.spec.loader import load_spec
from specbuild.spec.tune_checks import parse_tune
from specbuild.tune.trial import MetricMissing, PruneReporter

REPO = Path(__file__).resolve().parent.parent
FNN = (REPO / "specs" / "fnn.yaml").read_text()
QUICK = ("--data", "mnist-sample", "--limit", 200)
PNG = b"\x89PNG\r\n\x1a\n"


def fnn_with(tune: str) -> str:
    """specs/fnn.yaml with fc1's width as the param `hidden`, 2 epochs, and this tune section."""
    text = FNN.replace("{name: fc1, type: Linear, out_features: 128}",
                       '{name: fc1, type: Linear, out_features: "${hidden}"}')
    text = text.replace("\ninputs:\n", "\nparams: {hidden: 32}\ninputs:\n", 1).replace("  epochs: 5\n", "  epochs: 2\n")
    assert "${hidden}" in text and "params:" in text and "epochs: 2" in text
    return text + tune


def study_at(url: str, name: str = "fnn"):
    return optuna.load_study(study_name=name, storage=url)


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


LR_AND_WIDTH = """tune:
  metric: val_accuracy
  direction: maximize
  trials: 4
  sampler: {type: tpe, seed: 1}
  pruner: {type: median, n_startup_trials: 2}
  space:
    train.optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
    hidden: {choice: [16, 32]}
"""


def test_a_study_runs_its_trials_into_sqlite_and_leaves_a_trainable_best_spec(capsys, tmp_path):
    spec, out = write_text(tmp_path, fnn_with(LR_AND_WIDTH)), tmp_path / "tune"
    rc, stdout, err = run_cli(capsys, "tune", spec, *QUICK, "--out", out)
    assert rc == 0, err
    study = study_at(f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 4 and set(states(study)) <= {"COMPLETE", "PRUNED"}
    assert stdout.splitlines()[0].split() == ["trial", "state", "val_accuracy", "params", "error"]
    assert sum(line.split()[1] in ("COMPLETE", "PRUNED") for line in stdout.splitlines()[1:5]) == 4
    assert err.count("trial ") >= 4 and "hidden=" in err            # one line per trial
    summary = json.loads((out / "trials.json").read_text())
    assert summary["study"] == "fnn" and summary["metric"] == "val_accuracy" and summary["direction"] == "maximize"
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2, 3]
    first = summary["trials"][0]
    assert set(first) == {"number", "state", "value", "params", "run", "error", "epochs", "seconds"}
    assert first["run"] == "trials/000" and set(first["params"]) == {"train.optimizer.lr", "hidden"}
    completed = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    best = max(completed, key=lambda t: t["value"])
    assert summary["best"] == {k: best[k] for k in ("number", "value", "params", "run")}
    for trial in summary["trials"]:                 # each a normal run: its folder, spec and epoch lines
        run = out / trial["run"]
        assert (run / "spec.yaml").exists() and "epoch 1/2" in (run / "train.log").read_text()
        assert load_spec(run / "spec.yaml").data["layers"][1]["out_features"] == trial["params"]["hidden"]
    assert (out / "trials.csv").read_text().splitlines()[0].startswith("number,state,val_accuracy,")
    assert (out / "tune.yaml").read_text() == Path(spec).read_text()
    for name in ("history", "importances"):
        assert summary["plots"][name] == f"{name}.png" and (out / f"{name}.png").read_bytes()[:8] == PNG
    page = (out / "report.html").read_text()                       # the study's own report
    assert "Optimisation history" in page and f"trials/{best['run'][-3:]}/report.html" in page

    best_yaml = (out / "best.yaml").read_text()
    assert best_yaml.startswith(f"# best trial of study fnn: trial {best['number']} ({best['run']}), val_accuracy")
    data = load_spec(out / "best.yaml").data
    assert "tune" not in data and data["params"] == {"hidden": best["params"]["hidden"]}
    assert data["layers"][1]["out_features"] == "${hidden}"            # written as the spec wrote it
    assert data["train"]["optimizer"]["lr"] == best["params"]["train.optimizer.lr"]
    assert run_cli(capsys, "validate", out / "best.yaml")[0] == 0
    rc, _, err = run_cli(capsys, "train", out / "best.yaml", *QUICK, "--epochs", 1, "--out", tmp_path / "again")
    assert rc == 0, err


def _states_in(db: Path) -> list[str]:
    try:
        with sqlite3.connect(db, timeout=60) as con:      # how long to wait for a lock, not a time limit
            return [row[0] for row in con.execute("SELECT state FROM trials")]
    except sqlite3.Error:            # not made yet, or being written
        return []


def test_a_killed_study_resumes_and_runs_only_the_missing_trials(capsys, tmp_path):
    tune = LR_AND_WIDTH.replace("pruner: {type: median, n_startup_trials: 2}", "pruner: none")
    spec, out = write_text(tmp_path, fnn_with(tune)), tmp_path / "tune"
    env = {k: v for k, v in os.environ.items() if k != "SPECBUILD_DEBUG"}
    command = ["tune", spec, *map(str, QUICK), "--trials", "3", "--out", str(out)]      # --resume keeps --trials
    process = subprocess.Popen([sys.executable, "-m", "specbuild", *command],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while True:         # kill it inside a trial, once one trial has completed
            found = _states_in(out / "study.db")
            if "COMPLETE" in found and "RUNNING" in found:
                break
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "no trial completed within 120 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
    killed = _states_in(out / "study.db")
    assert killed.count("RUNNING") == 1

    rc, stdout, err = run_cli(capsys, "tune", "--resume", out)        # no spec: tune.yaml has it
    assert rc == 0, err
    assert "1 left running by a stopped process marked failed" in err
    trials = study_at(f"sqlite:///{out / 'study.db'}").get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["error"] == "the process running it stopped"
    assert [t.state.name for t in trials].count("COMPLETE") == 2
    rates = [t.params["train.optimizer.lr"] for t in trials if "train.optimizer.lr" in t.params]
    assert len(set(rates)) == len(rates) >= 2        # the seeded sampler goes on, not from its start again
    rows = json.loads((out / "trials.json").read_text())["trials"]
    assert [r["error"] for r in rows if r["state"] == "FAIL"] == ["the process running it stopped"]

    rc, _, err = run_cli(capsys, "tune", "--resume", out)        # nothing left to run
    assert rc == 0 and "3 of 3 trials finished" in err
    assert len(study_at(f"sqlite:///{out / 'study.db'}").trials) == 3


GRID = """tune:
  metric: val_accuracy
  sampler: grid
  pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 0}
  space:
    train.optimizer.lr: {choice: [1.0e-3, 1.0e+30, 1.0e-7]}
"""


def test_a_failing_trial_is_marked_failed_and_a_bad_one_pruned_while_the_study_goes_on(capsys, tmp_path):
    spec, out = write_text(tmp_path, fnn_with(GRID)), tmp_path / "tune"
    rc, stdout, err = run_cli(capsys, "tune", spec, *QUICK, "--out", out)
    assert rc == 0, err
    rows = json.loads((out / "trials.json").read_text())["trials"]     # the grid runs in the order written
    assert [r["params"]["train.optimizer.lr"] for r in rows] == [1.0e-3, 1.0e+30, 1.0e-7]
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "PRUNED"]
    good, nan, slow = rows
    assert good["epochs"] == 2 and good["error"] is None
    assert "the loss became nan" in nan["error"] and nan["value"] is None
    assert "trial failed: the loss became nan" in (out / "trials" / "001" / "train.log").read_text()
    assert "FAIL" in stdout and "the loss became nan" in stdout and "the loss became nan" in err
    assert slow["epochs"] == 1 and slow["value"] < good["value"]         # stopped after its first epoch
    assert len(json.loads((out / "trials" / "002" / "metrics.jsonl").read_text().splitlines()[0])) > 0
    assert len((out / "trials" / "002" / "metrics.jsonl").read_text().splitlines()) == 1
    assert "trial pruned after epoch 1: val_accuracy" in (out / "trials" / "002" / "train.log").read_text()
    notes = json.loads((out / "trials.json").read_text())["notes"]
    assert any("2 completed trials" in note for note in notes)        # one completed: no importances
    assert not (out / "importances.png").exists() and (out / "history.png").exists()


def _reporter(tmp_path, completed: float | None):
    spec = load_spec(fnn_with(LR_AND_WIDTH))
    config = parse_tune(spec.data["tune"], spec, [])
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    if completed is not None:
        done = study.ask()
        done.report(completed, step=1)
        study.tell(done, completed)
    return PruneReporter(study.ask(), config, spec), spec


def test_the_pruning_observer_stops_a_trial_worse_than_the_median(tmp_path):
    reporter, _ = _reporter(tmp_path, completed=0.9)
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1: val_accuracy 0.1000"):
        reporter.epoch_end(None, None, {"epoch": 1, "val_accuracy": 0.1, "val_loss": 2.0})
    reporter, _ = _reporter(tmp_path, completed=0.9)
    reporter.epoch_end(None, None, {"epoch": 1, "val_accuracy": 0.95})       # better: goes on
    reporter.epoch_end(None, None, {"epoch": 2, "val_accuracy": 0.93})
    assert reporter.best == 0.95 and reporter.epochs == 2
    reporter, _ = _reporter(tmp_path, completed=None)                        # nothing to compare with yet
    reporter.epoch_end(None, None, {"epoch": 1, "val_accuracy": 0.1})


def test_a_metric_the_run_does_not_report_stops_the_study_at_its_line(tmp_path):
    reporter, spec = _reporter(tmp_path, completed=None)
    reporter.metric = "val_f1"
    with pytest.raises(MetricMissing) as caught:
        reporter.epoch_end(None, None, {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5})
    problem = caught.value.error.problems[0]
    assert problem.line == line_of(spec.text, "metric: val_accuracy") and "val_accuracy" in problem.hint
    assert reporter.trial.user_attrs["error"] == "the run reports no column 'val_f1'"


def _bad(metric="val_accuracy", entry="hidden: {choice: [16, 32]}", extra=""):
    return f"tune:\n  metric: {metric}\n{extra}  space:\n    {entry}\n"


BAD = {   # id -> (tune section, the fragment of the line at fault, what the message says)
    "path naming nothing": (_bad(entry="hiden: {choice: [16, 32]}"), "hiden: {", "no param named 'hiden'"),
    "did you mean": (_bad(entry="hiden: {choice: [16, 32]}"), "hiden: {", "did you mean 'hidden'?"),
    "dotted path naming nothing": (_bad(entry="train.optimzer.lr: {uniform: [0.1, 0.2]}"), "optimzer",
                                   "unknown key 'optimzer'"),
    "empty choice": (_bad(entry="hidden: {choice: []}"), "{choice: []}", "is empty"),
    "low >= high": (_bad(entry="train.optimizer.lr: {uniform: [0.1, 0.01]}"), "uniform:",
                    "low 0.1 must be below high 0.01"),
    "loguniform from 0": (_bad(entry="train.optimizer.lr: {loguniform: [0, 0.1]}"), "loguniform:",
                          "its low end must be above 0"),
    "choice outside a layer's range": (_bad(entry="hidden: {choice: [0, 64]}"), "{choice: [0, 64]}",
                                       "hidden = 0 makes the spec invalid: layers[1].out_features (fc1)"),
    "int range breaking a layer": (_bad(entry="hidden: {int: [-4, 64]}"), "{int: [-4, 64]}", "hidden = -4 makes the spec"),
    "unknown metric": (_bad(metric="val_acuracy"), "metric:", "did you mean 'val_accuracy'?"),
    "grid over a range": (_bad(entry="train.optimizer.lr: {uniform: [0.1, 0.2]}", extra="  sampler: grid\n"),
                          "sampler:", "grid sampler tries every combination"),
    "pruner option": (_bad(extra="  pruner: {type: hyperband, n_warmup_steps: 2}\n"), "pruner:",
                      "the hyperband pruner has no option 'n_warmup_steps'"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_tune_section_is_reported_at_its_line_by_validate_and_by_tune(capsys, tmp_path, case):
    tune, fragment, message = BAD[case]
    text = fnn_with(tune)
    spec, out = write_text(tmp_path, text), tmp_path / "tune"
    where = f"{spec}:{line_of(text, fragment)}:"
    rc, _, err = run_cli(capsys, "validate", spec)
    assert rc == 1 and message in err and any(line.startswith(where) and message in line
                                              for line in err.splitlines()), err
    rc, _, err = run_cli(capsys, "tune", spec, *QUICK, "--out", out)
    assert rc == 1 and any(line.startswith(where) and message in line for line in err.splitlines()), err
    assert not out.exists()                     # before any trial started


def test_tune_refuses_a_spec_without_a_tune_section_and_a_missing_spec(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "tune", REPO / "specs" / "fnn.yaml", "--out", tmp_path / "t")
    assert rc == 1 and "has no tune: section" in err and "metric: val_accuracy" in err
    rc, _, err = run_cli(capsys, "tune")
    assert rc == 1 and "--resume" in err
    rc, _, err = run_cli(capsys, "tune", "--resume", tmp_path)
    assert rc == 1 and "no study to continue here" in err
    rc, _, err = run_cli(capsys, "tune", REPO / "specs" / "fnn.yaml", "--trials", 0)
    assert rc == 1 and "--trials 0" in err


def test_ctrl_c_stops_the_study_and_says_how_to_resume(capsys, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("specbuild.tune.trial.train", interrupted)
    spec, out = write_text(tmp_path, fnn_with(LR_AND_WIDTH)), tmp_path / "tune"
    rc, _, err = run_cli(capsys, "tune", spec, *QUICK, "--out", out)
    assert rc == 130 and f"specbuild tune --resume {out}" in err
    rows = json.loads((out / "trials.json").read_text())["trials"]
    assert [(r["state"], r["error"]) for r in rows] == [("FAIL", "interrupted (Ctrl-C)")]


def test_studies_on_one_database_share_their_trial_count(capsys, tmp_path):
    tune = LR_AND_WIDTH.replace("pruner: {type: median, n_startup_trials: 2}", "pruner: none")
    spec, url = write_text(tmp_path, fnn_with(tune)), f"sqlite:///{tmp_path / 'shared.db'}"
    rc, _, err = run_cli(capsys, "tune", spec, *QUICK, "--epochs", 1, "--storage", url, "--study", "shared",
                         "--trials", 2, "--out", tmp_path / "a")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "tune", spec, *QUICK, "--epochs", 1, "--storage", url, "--study", "shared",
                         "--trials", 3, "--out", tmp_path / "b")
    assert rc == 0 and "2 of 3 trials finished" in err, err
    assert len(study_at(url, "shared").trials) == 3
    assert not (tmp_path / "a" / "study.db").exists() and sorted(p.name for p in (tmp_path / "b" / "trials").iterdir()) == ["002"]
    summary = json.loads((tmp_path / "b" / "trials.json").read_text())
    assert summary["storage"] == url and [t["run"] for t in summary["trials"]] == [None, None, "trials/002"]
    other = fnn_with(tune.replace("choice: [16, 32]", "choice: [8, 16]"))       # another search, same name
    rc, _, err = run_cli(capsys, "tune", write_text(tmp_path, other, "other.yaml"), *QUICK, "--storage", url,
                         "--study", "shared", "--out", tmp_path / "c")
    assert rc == 1 and "was started with another tune section (its space differs)" in err
