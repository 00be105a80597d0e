"""Shared fixtures for the spec-format and validation tests.

`cli(*args)` runs `specbuild` in-process through `main(argv)` and returns what
it printed; it fails the test on a traceback or an "internal error" (a bug of
ours surfacing instead of a reported problem).  `write_spec(text)` puts a spec
text (or bytes) in a tmp file and returns its path as a str.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED_SPECS = sorted(REPO.glob("specs/*.yaml")) + sorted(REPO.glob("specs/*.json"))
# vgg11's classifier, narrowed for tests that build or write it (25088 x 4096 would be 133M parameters,
# half a gigabyte per file written): same layers, same names
VGG11_SMALL_CLASSIFIER = {"layers.3.layers.0.out_features": 64, "layers.3.layers.3.out_features": 64}


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys, monkeypatch):
    from specbuild.cli.main import main

    monkeypatch.delenv("SPECBUILD_DEBUG", raising=False)

    def run(*argv) -> CliResult:
        capsys.readouterr()                      # drop anything printed before
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exit_:              # argparse usage errors
            rc = exit_.code
        out, err = capsys.readouterr()
        result = CliResult(rc, out, err)
        assert "Traceback" not in result.text, result.text
        assert "internal error" not in result.text, result.text
        return result

    return run


@pytest.fixture(scope="session", autouse=True)
def inductor_cache_in_the_session_folder(tmp_path_factory):
    """torch.compile's cache (the tests that compile for real) goes to the session's folder, removed
    with it when the suite passes, not to /tmp/torchinductor_USER, where half a gigabyte would
    outlive the suite; a cache the user chose (TORCHINDUCTOR_CACHE_DIR) is kept."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        yield
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("torchinductor"))
    yield
    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)


@pytest.fixture
def write_spec(tmp_path):
    counter = iter(range(1_000_000))

    def write(text, name: str | None = None, suffix: str = ".yaml") -> str:
        path = tmp_path / (name or f"spec{next(counter)}{suffix}")
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def run(capsys):
    """`specbuild ARGS` in-process: (exit code, stdout, stderr); fails on a traceback."""
    from cli_runner import run_cli

    return lambda *argv: run_cli(capsys, *argv)
