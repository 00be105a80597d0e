"""Helpers the CLI tests share: run `specbuild` in-process, write specs, read run folders.

Importable from any test module (pytest puts tests/ on sys.path, as for guide_modules).
"""
from __future__ import annotations

import json
from pathlib import Path

from specbuild.cli.main import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`specbuild ARGV` in-process: (exit code, stdout, stderr); never a traceback or internal error."""
    capsys.readouterr()                      # drop anything printed before
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exit_:              # argparse's usage errors exit 2
        rc = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in out + err, out + err
    return rc, out, err


def run_cli_text(capsys, *argv) -> tuple[int, str]:
    """As run_cli, with stdout and stderr together."""
    rc, out, err = run_cli(capsys, *argv)
    return rc, out + err


def write_text(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line of `text` containing `fragment`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def read_history(folder: Path) -> list[dict]:
    """A run folder's metrics.jsonl, one dict per epoch."""
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines() if line.strip()]
