"""`specbuild tune SPEC`: a hyperparameter search over the spec's `tune:` section (docs/tuning.md)."""
from __future__ import annotations

from .train import EXIT_CODES


def add_tune_command(sub) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna, as the spec's tune: section says",
                       epilog=EXIT_CODES + ", 130 interrupted (Ctrl-C; the study is kept: --resume)")
    p.add_argument("spec")
    p.add_argument("--trials", type=int, help="trials to run (tune.trials)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite in the tune folder)")
    p.add_argument("--study", metavar="NAME", help="the study's name (default: the spec's name)")
    p.add_argument("--out", help="the tune folder (default: runs/<spec name>-tune-<time>)")
    p.add_argument("--resume", metavar="DIR", help="a tune folder whose study to continue")
    p.set_defaults(run=_tune)


def _tune(args) -> int:
    from ..tune.study import run_study_command
    return run_study_command(args)
