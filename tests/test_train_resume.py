"""Resuming a run: exact parity on the CPU, SIGKILL at any moment, Ctrl-C.

* Parity: a run of 2 epochs and a run stopped after epoch 1 (`--epochs 1`) then
  resumed (`--resume ... --epochs 2`) end with exactly the same weights,
  optimizer state and history: for the cnn (shuffled batches), for the dropout
  spec (so restoring the global RNG matters: a control run without it differs),
  and with schedulers stepping per epoch and per batch.
* SIGKILL: a `python -m specbuild.cli.main train` subprocess is killed while it
  writes a checkpoint, right after one was written, and at a random moment;
  every time the folder's last.pt loads (weights_only), `--resume` continues,
  and the run killed three times ends with the weights of a run never stopped.
* Ctrl-C: SIGINT to a real `specbuild train` process gives exit 130, a loadable
  last.pt at the step where it paused, the message, no traceback, and --resume
  continues without repeating an epoch (test_train_interrupt.py checks, in-process,
  that such a resume ends bitwise where a run never stopped ends).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import run_cli_text as run_cli
import torch

from specbuild.training.checkpoint import CheckpointError, load_checkpoint

REPO = Path(__file__).resolve().parent.parent
# any single wait on a subprocess: a hang guard only.  A healthy wait takes seconds; on a loaded
# 2-core machine (load 10) training ran ~30x slower than idle, so the guard is far above that
DEADLINE_S = 600


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in history]


def assert_same_run(full: dict, resumed: dict) -> None:
    assert full["epoch"] == resumed["epoch"] and full["step"] == resumed["step"]
    assert same_state(full["model"], resumed["model"]), "the resumed run's weights differ"
    a, b = full["optimizer"]["state"], resumed["optimizer"]["state"]
    assert a.keys() == b.keys()
    assert all(same_state(a[k], b[k]) for k in a), "the resumed run's optimizer state differs"
    assert full["scheduler"] == resumed["scheduler"]
    assert without_time(full["history"]) == without_time(resumed["history"])


# --- parity: 2 epochs == 1 epoch + resume -------------------------------------------------

DROPOUT_STEP_SCHEDULER = (REPO / "specs" / "dropout.yaml").read_text().replace(
    "  epochs: 5", "  scheduler: {type: ExponentialLR, gamma: 0.98, interval: step}\n  clip_grad_norm: 1.0\n  epochs: 5")
STEP_LR = ["--set", "train.scheduler.type=StepLR", "--set", "train.scheduler.step_size=1",
           "--set", "train.scheduler.gamma=0.5"]

PARITY = {
    # name: (spec path or text, extra train options, resume from the folder (True) or its last.pt)
    "cnn": ("specs/cnn.yaml", [], True),
    "dropout-steplr-dotted-set": ("specs/dropout.yaml", STEP_LR, False),
    "dropout-per-step-scheduler-spec-file": (DROPOUT_STEP_SCHEDULER, [], True),
}


def spec_path(source: str, tmp_path: Path) -> str:
    if source.startswith("specs/"):
        return str(REPO / source)
    path = tmp_path / "spec.yaml"
    path.write_text(source)
    return str(path)


def parity_runs(tmp_path, capsys, source, extra, from_folder, limit=160):
    spec = spec_path(source, tmp_path)
    common = ["--data", "mnist-sample", "--limit", limit, "--no-download", "--seed", 5, "--batch-size", 32]
    rc, text = run_cli(capsys, "train", spec, "--epochs", 2, "--out", tmp_path / "full", *common, *extra)
    assert rc == 0, text
    rc, text = run_cli(capsys, "train", spec, "--epochs", 1, "--out", tmp_path / "part", *common, *extra)
    assert rc == 0, text
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 1
    target = tmp_path / "part" if from_folder else tmp_path / "part" / "last.pt"
    rc, text = run_cli(capsys, "train", spec, "--resume", target, "--epochs", 2, "--limit", limit, "--no-download")
    assert rc == 0, text
    assert f"run folder: {tmp_path / 'part'}" in text          # the resumed run continues its own folder
    return load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")


@pytest.mark.parametrize("case", PARITY)
def test_resume_gives_exactly_the_weights_of_an_unbroken_run(case, tmp_path, capsys):
    source, extra, from_folder = PARITY[case]
    full, resumed = parity_runs(tmp_path, capsys, source, extra, from_folder)
    assert full["epoch"] == 2
    assert_same_run(full, resumed)
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    if case != "cnn":        # the scheduler really ran: the lr changed between the epochs
        assert rows[1]["lr"] < rows[0]["lr"] < 1e-3
        assert resumed["scheduler"] is not None


def test_dropout_parity_depends_on_restoring_the_rng(tmp_path, capsys, monkeypatch):
    """Control: with the RNG restore switched off, the resumed dropout run differs, so the
    parity above really checks it."""
    import specbuild.training.session as session
    monkeypatch.setattr(session, "set_rng_state", lambda state: None)
    full, resumed = parity_runs(tmp_path, capsys, "specs/dropout.yaml", [], True)
    assert not same_state(full["model"], resumed["model"])


def test_resume_keeps_the_runs_limit(tmp_path, capsys):
    spec = REPO / "specs" / "single_output.yaml"
    rc, text = run_cli(capsys, "train", spec, "--epochs", 1, "--limit", 40, "--out", tmp_path / "run", "--no-download")
    assert rc == 0, text
    rc, text = run_cli(capsys, "train", spec, "--resume", tmp_path / "run", "--epochs", 2, "--no-download")
    assert rc == 0, text
    assert load_checkpoint(tmp_path / "run" / "last.pt")["data_info"]["sizes"]["train"] == 40


def test_resume_for_more_epochs_with_a_one_cycle_schedule(tmp_path, capsys):
    spec = REPO / "specs" / "single_output.yaml"
    common = ["--limit", 40, "--no-download"]
    rc, text = run_cli(capsys, "train", spec, "--epochs", 1, "--out", tmp_path / "run", *common,
                       "--set", "train.scheduler={type: OneCycleLR, max_lr: 0.01}")
    assert rc == 0, text
    rc, text = run_cli(capsys, "train", spec, "--resume", tmp_path / "run", "--epochs", 2, *common)
    assert rc == 1 and "planned for" in text and "--epochs 1" in text   # says why, and what works


# --- processes: SIGKILL and Ctrl-C -----------------------------------------------------------

KILL_SPEC = """\
specbuild: 1
name: killme
inputs: {x: [1, 28, 28]}
layers:
  - {type: flatten}
  - {name: fc1, type: Linear, out_features: 1024}
  - {type: relu}
  - {name: drop, type: Dropout, p: 0.3}
  - {name: fc2, type: Linear, out_features: 10}
outputs: fc2
train:
  data: {dataset: mnist-sample, batch_size: 64}
  loss: {type: CrossEntropyLoss}
  optimizer: {type: SGD, lr: 0.01, momentum: 0.9}
  scheduler: {type: OneCycleLR, max_lr: 0.05}
  epochs: 10
  seed: 3
"""
KILL_LIMIT = 600


def start(args, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SPECBUILD_DEBUG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as f:
        # Ctrl-C acts as it does at a terminal even where this suite runs with SIGINT ignored
        # (a background job of a script), which a child would otherwise inherit
        return subprocess.Popen([sys.executable, "-m", "specbuild.cli.main", *map(str, args)], cwd=REPO, env=env,
                                stdout=f, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_until(condition, proc: subprocess.Popen, what: str) -> bool:
    """Poll every millisecond until condition() holds (True) or the process exits (False)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)
    return True


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE_S)


def note(text: str) -> None:
    """Where the kills landed, for `pytest -s` (capsys holds sys.stdout)."""
    print(text, file=sys.__stderr__)


def temp_files(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if ".tmp-" in n] if folder.is_dir() else []


def mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def assert_checkpoints_whole(folder: Path) -> int:
    """last.pt (and best.pt) load, under weights_only, whatever moment the kill hit; last.pt's epoch."""
    for name in ("last.pt", "best.pt"):
        if (folder / name).exists():
            state = load_checkpoint(folder / name)
            assert state["format"] == "specbuild-checkpoint" and state["model"]
            torch.load(folder / name, weights_only=True)
    return load_checkpoint(folder / "last.pt")["epoch"]


def test_sigkill_at_any_moment_never_leaves_a_broken_checkpoint(tmp_path, capsys):
    spec = tmp_path / "killme.yaml"
    spec.write_text(KILL_SPEC)
    first = tmp_path / "first"
    out = tmp_path / "run"
    fresh = ["train", spec, "--limit", KILL_LIMIT, "--out", out, "--no-download"]
    resume = ["train", spec, "--resume", out, "--limit", KILL_LIMIT, "--no-download"]
    last = out / "last.pt"
    logs = iter(tmp_path / f"log{i}.txt" for i in range(100))

    # 1. killed while writing its very first checkpoint: there is no last.pt to read, and
    #    --resume says so plainly; a half-written temp file is never taken for one.
    proc = start(["train", spec, "--limit", KILL_LIMIT, "--out", first, "--no-download"], next(logs))
    if wait_until(lambda: temp_files(first), proc, "the first checkpoint write"):
        kill(proc)
    note(f"kill 1: temp files {temp_files(first)}, last.pt exists: {(first / 'last.pt').exists()}")
    if (first / "last.pt").exists():     # the rename won the race against the kill: then it is whole
        assert_checkpoints_whole(first)
    else:
        with pytest.raises(CheckpointError, match="no checkpoint file"):
            load_checkpoint(first / "last.pt")
        rc, text = run_cli(capsys, "train", spec, "--resume", first, "--no-download")
        assert rc == 1 and "holds no checkpoint" in text

    # 2. a fresh start, killed while writing a later checkpoint
    log = next(logs)
    proc = start(fresh, log)
    mine = f".last.pt.tmp-{proc.pid}-"           # this process's temp file, not a stray of the one killed above
    writing_last = lambda: last.exists() and any(n.startswith(mine) for n in temp_files(out))
    assert wait_until(writing_last, proc, "a write of last.pt over an earlier one"), log.read_text()
    kill(proc)
    note(f"kill 2: temp files {temp_files(out)}")
    epochs = [assert_checkpoints_whole(out)]

    # 3. resumed, killed right after last.pt was replaced (before best.pt and the metrics)
    proc = start(resume, next(logs))
    before = mtime(last)
    if wait_until(lambda: mtime(last) != before, proc, "last.pt to change"):
        kill(proc)
    epochs.append(assert_checkpoints_whole(out))

    # 4. resumed, killed at random moments: during start-up or an epoch (training, evaluation, a save)
    rng = random.Random(int(time.time()))
    proc = start(resume, next(logs))
    time.sleep(rng.uniform(0.3, 3.0))
    kill(proc)
    epochs.append(assert_checkpoints_whole(out))
    proc = start(resume, next(logs))
    before = mtime(last)
    if wait_until(lambda: mtime(last) != before, proc, "last.pt to change"):
        time.sleep(rng.uniform(0.0, 0.3))
    kill(proc)
    epochs.append(assert_checkpoints_whole(out))
    note(f"last.pt's epoch after each kill: {epochs}")
    assert epochs == sorted(epochs) and epochs[-1] >= 2, epochs

    # 5. resumed to the end (unless the last kill came after the run had finished: a resume
    #    would then have nothing left to train): it completes, and ends exactly where a run
    #    never killed ends
    if epochs[-1] < 10:
        log = next(logs)
        proc = start(resume, log)
        assert proc.wait(timeout=DEADLINE_S * 2) == 0, log.read_text()
    killed = load_checkpoint(last)
    assert killed["epoch"] == 10
    assert not temp_files(out), "stray temp files were not cleaned up"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 11))

    rc, text = run_cli(capsys, "train", spec, "--limit", KILL_LIMIT, "--out", tmp_path / "unbroken", "--no-download")
    assert rc == 0, text
    assert_same_run(load_checkpoint(tmp_path / "unbroken" / "last.pt"), killed)


def test_ctrl_c_pauses_at_a_step_keeps_last_pt_and_exits_130(tmp_path, capsys):
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    proc = start(["train", REPO / "specs" / "fnn.yaml", "--data", "mnist-sample", "--epochs", 200, "--limit", 1000,
                  "--out", out, "--no-download"], log)
    assert wait_until(lambda: (out / "last.pt").exists(), proc, "the first epoch"), log.read_text()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=DEADLINE_S)
    text = log.read_text()
    assert rc == 130, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "stopping after this step (Ctrl-C again to stop at once, without saving)" in text
    assert f"holds the run from there (resume with: specbuild train --resume {out})" in text \
        or f"holds it (resume with: specbuild train --resume {out})" in text, text
    state = load_checkpoint(out / "last.pt")
    torch.load(out / "last.pt", weights_only=True)
    done = state["epoch"]
    assert done >= 1 and not temp_files(out) and not (out / "interrupted.pt").exists()

    # the run continues from where it paused, logging each epoch once
    rc, text = run_cli(capsys, "train", "--resume", out, "--epochs", done + 1, "--limit", 1000, "--no-download")
    assert rc == 0, text
    assert load_checkpoint(out / "last.pt")["epoch"] == done + 1
    rows = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(1, done + 2))


# --- step checkpoints: killed mid-epoch, resumed from the exact next batch ----------------------

STEP_SPEC = KILL_SPEC.replace("  epochs: 10", "  epochs: 2\n  checkpoint_every: 3")


def test_checkpoint_every_writes_the_position_and_resume_continues_from_the_next_batch(tmp_path, capsys):
    """Killed (SIGKILL) at random steps with train.checkpoint_every set, resumed each time: the run
    ends with weights, optimizer state and history bitwise those of a run never killed."""
    spec = tmp_path / "steps.yaml"
    spec.write_text(STEP_SPEC)
    out = tmp_path / "run"
    fresh = ["train", spec, "--limit", KILL_LIMIT, "--out", out, "--no-download"]
    resume = ["train", spec, "--resume", out, "--limit", KILL_LIMIT, "--no-download"]
    rc, text = run_cli(capsys, "train", spec, "--limit", KILL_LIMIT, "--out", tmp_path / "unbroken", "--no-download")
    assert rc == 0, text
    unbroken = load_checkpoint(tmp_path / "unbroken" / "last.pt")
    steps_per_epoch = unbroken["step"] // 2
    assert steps_per_epoch > 6

    rng = random.Random(int(time.time()))
    positions = []
    for attempt, args in enumerate([fresh] + [resume] * 3):
        log = tmp_path / f"log{attempt}.txt"
        proc = start(args, log)
        before = mtime(out / "last.pt")
        for _ in range(rng.randint(1, 3)):         # let one to three step checkpoints land, then kill
            if not wait_until(lambda: mtime(out / "last.pt") != before, proc, "a step checkpoint"):
                break
            before = mtime(out / "last.pt")
        time.sleep(rng.uniform(0.0, 0.05))
        kill(proc)
        state = load_checkpoint(out / "last.pt")
        positions.append((state["epoch"], (state.get("position") or {}).get("batch"), state["step"]))
    note(f"checkpoint positions after each kill (epoch, batch, step): {positions}")
    assert any(batch for _, batch, _ in positions), "no kill landed mid-epoch"
    assert all(step % 3 == 0 or batch is None for _, batch, step in positions)

    log = tmp_path / "final.txt"
    proc = start(resume, log) if load_checkpoint(out / "last.pt")["epoch"] < 2 else None
    if proc is not None:
        assert proc.wait(timeout=DEADLINE_S) == 0, log.read_text()
    assert_same_run(unbroken, load_checkpoint(out / "last.pt"))
