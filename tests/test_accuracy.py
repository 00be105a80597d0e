"""The README's demo is real: the shipped cnn and fnn specs learn the bundled MNIST digits.

These run the full command (3 epochs on the 8,000 bundled training digits) and
check the held-out accuracy the issue promises, and that the cnn run finishes in
under 2 minutes on a 2-core machine.
"""
import json
import time

import pytest

from specbuild.cli.main import main


@pytest.mark.parametrize("spec, floor", [("cnn", 0.95), ("fnn", 0.92)])
def test_three_epochs_on_the_bundled_digits(spec, floor, tmp_path, capsys):
    started = time.perf_counter()
    code = main(["train", f"specs/{spec}.yaml", "--data", "mnist-sample", "--epochs", "3", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - started
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_accuracy"] >= floor
    assert f"val_accuracy {rows[-1]['val_accuracy']:.4f}" in capsys.readouterr().out
    assert elapsed < 120
