"""`specbuild train --nproc N`: N workers on this machine, started by torchrun's launcher.

Each worker runs `python -m specbuild train ...` (the same command line, without --nproc)
with RANK, WORLD_SIZE and LOCAL_RANK set, as `torchrun --standalone --nproc-per-node N`
would; training/distributed.py takes it from there.  A worker that fails ends the run:
torchrun stops the others, and the message names the failed rank and how it ended (its own
error, printed by the worker, is above it).
"""
from __future__ import annotations

import os
import signal

from ..errors import SpecError


def without_nproc(argv: list[str]) -> list[str]:
    """The command line as each worker runs it."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str], out: str | None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run
    options = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                            "-m", "specbuild", *without_nproc(argv)])
    saved = _process_state()
    try:
        run(options)
    except ChildFailedError as error:
        rank, failure = _first(error.failures)
        resume = f"specbuild train --resume {out} --nproc {nproc}" if out else "--resume RUN_FOLDER"
        raise SpecError(f"worker rank {rank} of {nproc} {_ended(failure)}; the others were stopped",
                        hint=f"the last checkpoint is whole: continue with {resume}") from None
    finally:
        _restore(saved)
    return 0


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _process_state() -> tuple:
    """What torchrun's launcher changes in the process that calls it (its signal handlers, and
    OMP_NUM_THREADS and more in os.environ): put back afterwards, for a caller that goes on."""
    return dict(os.environ), {s: signal.getsignal(s) for s in _SIGNALS}


def _restore(saved: tuple) -> None:
    environ, handlers = saved
    os.environ.clear()
    os.environ.update(environ)
    for number, handler in handlers.items():
        try:
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        except ValueError:      # not the main thread: it could not have set them either
            pass


def _first(failures: dict):
    """The worker that failed first: not one the launcher stopped (SIGTERM) after it, nor one that
    only lost touch with it; the earliest of the rest."""
    def order(item):
        rank, failure = item
        stopped = failure.exitcode == -signal.SIGTERM
        return (stopped, failure.exitcode == 1 and len(failures) > 1, getattr(failure, "timestamp", 0), rank)
    return min(failures.items(), key=order)


def _ended(failure) -> str:
    code = failure.exitcode
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
