"""`specbuild train --nproc N`: data parallelism on torch.distributed (gloo, on the CPU).

Two workers with the spec's global batch compute what one process computes; metrics under DDP
are the single-process metrics of the same weights; a killed worker ends the run naming its
rank, with a whole checkpoint that two workers resume; and a run of two workers killed at
random step checkpoints resumes to exactly the weights of one never killed.
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
import torch

from cli_runner import run_cli
from conftest import REPO
from specbuild.training.checkpoint import load_checkpoint
from test_train_resume import KILL_SPEC, assert_same_run, mtime

DEADLINE_S = 600
QUICK = ("--data", "mnist-sample", "--no-download", "--seed", "0")


def weights(folder: Path) -> dict:
    return load_checkpoint(folder / "last.pt")["model"]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def final_row(folder: Path) -> dict:
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize("spec, extra", [
    ("fnn", ("--epochs", "1")),
    # Adam divides each step by the root of its second moments: where a weight's gradients are
    # all but zero (dead ReLU inputs of fc1), last-bit differences in how the gradient is summed
    # (one batch, or two halves all-reduced) change that weight's update by up to the lr (1.4e-5
    # measured here).  Plain SGD shows the data parallelism itself: equal within 1e-6.
    ("multi_output", ("--epochs", "1", "--limit", "1000", "--set", "train.optimizer.type=SGD",
                      "--set", "train.optimizer.lr=0.01")),
])
def test_two_workers_compute_what_one_process_computes(spec, extra, tmp_path, capsys):
    path = REPO / "specs" / f"{spec}.yaml"
    code, _, err = run_cli(capsys, "train", path, *QUICK, *extra, "--out", tmp_path / "one")
    assert code == 0, err
    environ, handler = dict(os.environ), signal.getsignal(signal.SIGINT)
    code, out, err = run_cli(capsys, "train", path, *QUICK, *extra, "--out", tmp_path / "two", "--nproc", "2")
    assert code == 0, err
    assert out == ""               # the workers report; the launching process prints nothing of its own
    # torchrun's launcher sets signal handlers and OMP_NUM_THREADS in its caller: put back
    assert dict(os.environ) == environ and signal.getsignal(signal.SIGINT) is handler
    assert max_difference(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-6
    # the metrics the two workers gathered are those one process computes on the same weights
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "two" / "last.pt", "--json", *QUICK[:3],
                             *(extra[2:4] if "--limit" in extra else ()))
    assert code == 0, err
    alone, gathered = json.loads(out), final_row(tmp_path / "two")
    shared = [k for k in alone if k.startswith("val_") and k in gathered]
    assert shared and all(abs(alone[k] - gathered[k]) < 1e-6 for k in shared), (alone, gathered)


def start(args, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("SPECBUILD_DEBUG", "WORLD_SIZE", "RANK")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as f:       # its own session: the launcher and its workers are killed as one
        return subprocess.Popen([sys.executable, "-m", "specbuild", *map(str, args)], cwd=REPO, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def workers(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != launcher.pid:
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, IndexError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


def wait_for(condition, proc: subprocess.Popen, what: str) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)
    return True


def kill_all(launcher: subprocess.Popen) -> None:
    """SIGKILL the workers and the launcher at once (the workers run in sessions of their own)."""
    pids = list(workers(launcher).values())
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(timeout=DEADLINE_S)
    for pid in pids:                      # gone, not left running on their own
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) and time.monotonic() < deadline:
            time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


STEPS_SPEC = KILL_SPEC.replace("  epochs: 10", "  epochs: 2\n  checkpoint_every: 2")


def test_a_killed_worker_ends_the_run_naming_its_rank_and_two_workers_resume(tmp_path):
    spec = tmp_path / "steps.yaml"
    spec.write_text(STEPS_SPEC)
    out, log = tmp_path / "run", tmp_path / "log.txt"
    proc = start(["train", spec, "--limit", 600, "--out", out, "--no-download", "--nproc", 2], log)
    assert wait_for(lambda: (out / "last.pt").exists() and len(workers(proc)) == 2, proc, "a step checkpoint"), \
        log.read_text()
    os.kill(workers(proc)[1], signal.SIGKILL)
    assert proc.wait(timeout=DEADLINE_S) == 1, log.read_text()
    text = log.read_text()
    assert "worker rank 1 of 2 was killed by SIGKILL; the others were stopped" in text, text
    assert f"continue with specbuild train --resume {out} --nproc 2" in text
    state = load_checkpoint(out / "last.pt")             # whole: it loads, weights-only
    assert state["model"] and len(state["rng_ranks"]) == 2
    log = tmp_path / "resume.txt"
    proc = start(["train", spec, "--resume", out, "--limit", 600, "--no-download", "--nproc", 2], log)
    assert proc.wait(timeout=DEADLINE_S) == 0, log.read_text()
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_two_workers_killed_at_random_steps_resume_to_the_unbroken_run_exactly(tmp_path):
    """Dropout in the spec: each worker's random state is saved and restored as its own."""
    spec = tmp_path / "steps.yaml"
    spec.write_text(STEPS_SPEC)
    common = ["--limit", 600, "--no-download", "--nproc", 2]
    log = tmp_path / "unbroken.txt"
    proc = start(["train", spec, "--out", tmp_path / "unbroken", *common], log)
    assert proc.wait(timeout=DEADLINE_S) == 0, log.read_text()
    unbroken = load_checkpoint(tmp_path / "unbroken" / "last.pt")

    out = tmp_path / "run"
    rng = random.Random(int(time.time()))
    positions = []
    for attempt in range(3):
        args = ["train", spec, "--out", out, *common] if attempt == 0 else ["train", spec, "--resume", out, *common]
        log = tmp_path / f"log{attempt}.txt"
        proc = start(args, log)
        before = mtime(out / "last.pt")
        for _ in range(rng.randint(1, 3)):
            if not wait_for(lambda: mtime(out / "last.pt") != before, proc, "a step checkpoint"):
                break
            before = mtime(out / "last.pt")
        kill_all(proc)
        state = load_checkpoint(out / "last.pt")
        positions.append((state["epoch"], (state.get("position") or {}).get("batch")))
    print(f"positions after each kill (epoch, batch): {positions}", file=sys.__stderr__)
    assert any(batch for _, batch in positions), "no kill landed mid-epoch"
    if load_checkpoint(out / "last.pt")["epoch"] < 2:
        log = tmp_path / "final.txt"
        proc = start(["train", spec, "--resume", out, *common], log)
        assert proc.wait(timeout=DEADLINE_S) == 0, log.read_text()
    assert_same_run(unbroken, load_checkpoint(out / "last.pt"))
    assert torch.equal(unbroken["rng_ranks"][1]["torch"], load_checkpoint(out / "last.pt")["rng_ranks"][1]["torch"])


def test_a_gan_is_refused_under_several_workers(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", REPO / "specs" / "gan.yaml", "--limit", 64, "--epochs", 1,
                           "--out", tmp_path / "gan", "--no-download", "--nproc", 2)
    assert code == 1
    assert "data-parallel training of a GAN is not supported yet" in err
