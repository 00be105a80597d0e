"""`specbuild validate` and what it reads from and writes to.

A FIFO (or a terminal, a device) is refused before it is opened: opening a FIFO waits for a
writer, so reading one would hang.  A reader that leaves early (`validate a.yaml missing.yaml |
head -1`) ends the printing, not the checking: the exit status still says a file failed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import specbuild

from conftest import REPO

FNN = REPO / "specs" / "fnn.yaml"
HINT = "specbuild reads regular files only: save the spec to a file first"


@pytest.fixture
def no_hang():
    """Fail instead of hanging when something waits on a FIFO."""
    def expired(*_):
        raise TimeoutError("validate waited on the FIFO")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_waiting(tmp_path, cli, no_hang):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result = cli("validate", fifo, FNN)
    assert result.rc == 1
    assert result.err == f"{fifo}: is a named pipe (FIFO), not a spec file — {HINT}\n"
    assert result.out == f"{FNN}: ok\n"                  # the other file is still checked
    with pytest.raises(specbuild.SpecError) as caught:
        specbuild.validate(str(fifo))
    assert (caught.value.message, caught.value.hint) == ("is a named pipe (FIFO), not a spec file", HINT)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_refused(cli):
    result = cli("validate", "/dev/null")
    assert (result.rc, result.err) == (1, f"/dev/null: is a character device, not a spec file — {HINT}\n")


def _validate_into_closed_pipe(*files):
    """`specbuild validate FILES` with its stdout a pipe no one reads: the reader has left."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "specbuild", "validate", *map(str, files)], cwd=REPO,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    return done.returncode, done.stderr


def test_exit_status_reflects_a_failed_file_after_the_reader_left(tmp_path):
    missing = tmp_path / "missing.yaml"
    rc, err = _validate_into_closed_pipe(FNN, missing)
    assert rc == 1
    assert err == f"{missing}: no such file\n"            # no "Exception ignored ... BrokenPipeError"


def test_exit_status_is_0_when_every_file_is_valid_and_the_reader_left():
    rc, err = _validate_into_closed_pipe(FNN, FNN)
    assert (rc, err) == (0, "")


def test_head_dash_1_sees_the_first_line_and_the_failure(tmp_path):
    missing = tmp_path / "missing.yaml"
    command = f"{sys.executable} -m specbuild validate {FNN} {missing} | head -1; echo \"${{PIPESTATUS[0]}}\""
    done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == [f"{FNN}: ok", "1"]
    assert done.stderr == f"{missing}: no such file\n"
