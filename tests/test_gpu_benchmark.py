"""benchmarks/gpu.py --dry-run: the GPU benchmark's script runs, on the CPU, in seconds, and
prints one line per configuration with its figures as numbers."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(fnn|cnn)\s+(\S+)\s+precision=(fp32|bf16|fp16) batch=(\d+) epoch_s=(\d+\.\d+) "
                  r"samples_per_s=(\d+) accuracy=(\d\.\d+)$")


def test_the_gpu_benchmark_dry_run_prints_one_line_per_configuration():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    rows = [LINE.match(line) for line in lines]
    assert all(rows), lines
    assert [(m[1], m[2], int(m[4])) for m in rows] == [
        ("fnn", "specbuild", 32), ("fnn", "minimal", 32), ("cnn", "specbuild", 512), ("cnn", "minimal", 512)]
    for m in rows:
        seconds, per_second, accuracy = float(m[5]), int(m[6]), float(m[7])
        assert seconds > 0 and per_second > 0 and 0 <= accuracy <= 1, m[0]
        # --dry-run trains on 256 samples: samples_per_s is 256 / epoch_s, rounded to a whole number
        assert abs(per_second - 256 / seconds) <= 0.5 + 1e-3 * per_second, m[0]
    assert "limit 256" in done.stdout and "CPU" in done.stdout
