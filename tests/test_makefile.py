"""The README's two commands stay runnable: `make demo` may be run again and again."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed (.ci/run installs it)")
def test_make_demo_clears_its_run_folder_before_training():
    # train refuses an --out folder that holds a run, so a second `make demo` would fail without it
    plan = subprocess.run(["make", "-n", "demo", "BIN=bin"], cwd=REPO, capture_output=True, text=True, check=True)
    lines = [line.strip() for line in plan.stdout.splitlines() if line.strip()]
    clear = next(i for i, line in enumerate(lines) if line.startswith("rm -rf runs/demo"))
    train = next(i for i, line in enumerate(lines) if "train specs/cnn.yaml" in line and "--out runs/demo" in line)
    assert clear < train
