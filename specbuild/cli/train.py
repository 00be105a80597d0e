"""`specbuild train`, `evaluate` and `predict`: the trainer's command line.

Options map onto the spec's `train` section (`--epochs 3` is `--set
train.epochs=3`), so the run folder's resolved spec records what actually ran.
"""
from __future__ import annotations

import json
import sys


def add_train_commands(sub) -> None:
    p = sub.add_parser("train", help="train a spec; writes a run folder with metrics, checkpoints and plots")
    p.add_argument("spec", nargs="?", help="the spec (optional with --resume, whose checkpoint holds it)")
    p.add_argument("--data", help="data set name or file (overrides train.data.dataset)")
    p.add_argument("--data-root", help="folder holding the data set's files")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param or a dotted key")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default: runs/<spec name>-<time>)")
    p.add_argument("--resume", metavar="PATH", help="a checkpoint or run folder to continue from")
    p.add_argument("--limit", type=int, help="use only the first N samples of each split (quick checks)")
    p.add_argument("--no-download", action="store_true", help="never download a data set")
    p.set_defaults(run=_train)

    p = sub.add_parser("evaluate", help="loss and metrics of a checkpoint on held-out data")
    p.add_argument("checkpoint")
    p.add_argument("--data")
    p.add_argument("--data-root")
    p.add_argument("--limit", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("predict", help="predictions of a checkpoint for arrays (.npz/.pt) or image files")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", "-o", help="write here (.csv or .json); default: CSV on stdout")
    p.add_argument("--format", choices=["csv", "json"])
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.set_defaults(run=_predict)


def _train(args) -> int:
    from ..spec.variables import parse_overrides
    from ..errors import SpecError
    from ..training.trainer import TrainingStopped, train
    if args.spec is None and args.resume is None:
        raise SpecError("train needs a spec, or --resume with a checkpoint or run folder",
                        hint="e.g. specbuild train specs/cnn.yaml, or specbuild train --resume runs/cnn-...")
    overrides = parse_overrides(args.set)
    try:
        run = train(args.spec, data=args.data, data_root=args.data_root, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, overrides=overrides, device=args.device,
                    seed=args.seed, out=args.out, resume=args.resume, limit=args.limit,
                    download=not args.no_download)
    except TrainingStopped as stop:
        print(f"specbuild: {stop}", file=sys.stderr)
        return stop.exit_code
    final = run.history[-1] if run.history else {}
    shown = {k: v for k, v in final.items() if isinstance(v, float) and k not in ("lr", "seconds", "train_seconds")}
    print(f"run folder: {run.run_dir}")
    print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return 0


def _evaluate(args) -> int:
    from ..training.evaluate import evaluate
    metrics = evaluate(args.checkpoint, data=args.data, data_root=args.data_root, limit=args.limit,
                       device=args.device, download=not args.no_download)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        for key, value in metrics.items():
            print(f"{key:24} {value:.4f}" if isinstance(value, float) else f"{key:24} {value}")
    return 0


def _predict(args) -> int:
    from ..training.predict import predict, write_predictions
    rows = predict(args.checkpoint, args.inputs, device=args.device)
    fmt = args.format or ("json" if (args.out or "").endswith(".json") else "csv")
    text = write_predictions(rows, fmt)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {len(rows)} predictions to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
