"""`specbuild tune SPEC`: a hyperparameter search over the spec's `tune:` section (docs/tuning.md)."""
from __future__ import annotations

import sys

from .train import EXIT_CODES, check_options


def add_tune_command(sub) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna, as the spec's tune: section says",
                       epilog=EXIT_CODES + ", 130 interrupted (Ctrl-C; the study is kept: --resume)")
    p.add_argument("spec", nargs="?", help="the spec, with a tune: section (not with --resume, which has its own)")
    p.add_argument("--trials", type=int, help="trials the study runs in all (tune.trials)")
    p.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds (tune.timeout)")
    p.add_argument("--storage", metavar="URL", help="the study's database, e.g. postgresql://user:pw@host/db "
                                                   "(default: sqlite in the tune folder)")
    p.add_argument("--study", metavar="NAME", help="the study's name (default: the spec's name)")
    p.add_argument("--out", help="the tune folder (default: runs/<spec name>-tune-<time>)")
    p.add_argument("--resume", metavar="DIR", help="a tune folder whose study to continue")
    p.add_argument("--data", help="every trial's data set (train.data.dataset)")
    p.add_argument("--data-root", help="folder holding the data set's files")
    p.add_argument("--limit", type=int, help="every trial uses only the first N samples of each split")
    p.add_argument("--epochs", type=int, help="every trial's train.epochs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param or a dotted key in every "
                                                                       "trial (and in best.yaml)")
    p.set_defaults(run=_tune)


def _tune(args) -> int:
    from ..spec.variables import parse_overrides
    from ..training.session import TrainingStopped
    from ..tune.study import tune
    check_options(args, ("epochs", "limit", "trials", "timeout"))
    try:
        tune(args.spec, trials=args.trials, timeout=args.timeout, storage=args.storage, study=args.study,
             out=args.out, resume=args.resume, overrides=parse_overrides(args.set), limit=args.limit,
             data=args.data, epochs=args.epochs, data_root=args.data_root, device=args.device)
    except TrainingStopped as stop:
        print(f"specbuild: {stop}", file=sys.stderr)
        return stop.exit_code
    return 0
