"""`specbuild train`, `evaluate` and `predict`: the trainer's command line.

Options map onto the spec's `train` section (`--epochs 3` is `--set
train.epochs=3`), so the run folder's resolved spec records what actually ran.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys

from ..errors import SpecError

SEED_RANGE = (-2**63, 2**64 - 1)      # what torch.manual_seed (and a torch.Generator) accepts
# the trainer's options: name -> (is the value fine?, what it must be, an example); checked here, so a
# bad value is blamed on the option, before it becomes an override of the spec's `train:` section
OPTION_RULES = {
    "epochs": (lambda v: v >= 1, "a run trains 1 epoch or more", "--epochs 5"),
    "batch_size": (lambda v: v >= 1, "a batch holds at least 1 sample", "--batch-size 32"),
    "lr": (lambda v: math.isfinite(v) and v >= 0, "the learning rate must be a finite number, 0 or more",
           "--lr 0.001"),
    "seed": (lambda v: SEED_RANGE[0] <= v <= SEED_RANGE[1],
             f"a seed is a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]} (torch.manual_seed's range)",
             "--seed 0"),
    "limit": (lambda v: v >= 1, "it takes at least 1 sample of each split", "--limit 1000"),
    "nproc": (lambda v: 1 <= v <= 1024, "a run takes 1 to 1,024 worker processes", "--nproc 2"),
    "trials": (lambda v: v >= 1, "a study runs 1 trial or more", "--trials 20"),
    "timeout": (lambda v: v > 0, "give the seconds after which no trial starts, above 0", "--timeout 3600"),
}
EXIT_CODES = ("exit status: 0 done, 1 a problem with the input (a spec, a file, an option's value: "
              "reported, no traceback), 2 usage, 3 a bug in specbuild")


def add_train_commands(sub) -> None:
    p = sub.add_parser("train", help="train a spec; writes a run folder with metrics, checkpoints and plots",
                       epilog=EXIT_CODES + ", 130 interrupted (Ctrl-C; a checkpoint is kept)")
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
    p.add_argument("--init-from", metavar="FILE", help="start from these weights (.pt, .pth, .bin, .safetensors or a "
                                                        "checkpoint), not fresh ones; every tensor must fit")
    p.add_argument("--limit", type=int, help="use only the first N samples of each split (quick checks)")
    p.add_argument("--no-download", action="store_true", help="never download a data set")
    p.add_argument("--nproc", type=int, metavar="N", help="train with N worker processes on this machine "
                   "(torch.distributed: gloo on the CPU, nccl on CUDA); the spec's batch size is the global one")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="the training step's autocast: bf16, or fp16 with loss scaling (weights stay fp32)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model the training step calls")
    p.add_argument("--fast-step", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the step with CUDA graphs (mode reduce-overhead): small models on CUDA only")
    p.add_argument("--log", action="append", choices=["tensorboard"],
                   help="also log there (train.log): tensorboard writes event files into the run folder")
    p.set_defaults(run=_train)

    p = sub.add_parser("evaluate", help="loss and metrics of a checkpoint on held-out data", epilog=EXIT_CODES)
    p.add_argument("checkpoint")
    p.add_argument("--data")
    p.add_argument("--data-root")
    p.add_argument("--limit", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("predict", help="predictions of a checkpoint for arrays (.npz/.pt) or image files",
                       epilog=EXIT_CODES)
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", "-o", help="write here (.csv or .json); default: CSV on stdout")
    p.add_argument("--format", choices=["csv", "json"])
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.set_defaults(run=_predict)


def check_options(args, names) -> None:
    """A SpecError naming the first of the options `names` whose value breaks its rule."""
    for name in names:
        value = getattr(args, name, None)
        if value is None:
            continue
        fine, must, example = OPTION_RULES[name]
        if not fine(value):
            shown = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
            raise SpecError(f"--{name.replace('_', '-')} {shown}: {must}", hint=f"e.g. {example}")


def write_output(path: str, text: str) -> None:
    """Write a command's output file; a place that cannot be written is the user's to fix."""
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as error:
        raise output_error(path, error) from None


def emit(text: str, out: str | None) -> None:
    """A command's text: into `out` (saying so), or onto stdout."""
    if out:
        write_output(out, text)
        print(f"wrote {out}")
    else:
        print(text, end="")


def check_writable(path: str) -> None:
    """Refuse an output path that cannot be written before the work of making its contents."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise output_error(path, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))


def output_error(path: str, error: OSError) -> SpecError:
    """What is wrong with `--out path`, from the OSError writing it gave."""
    folder = os.path.dirname(os.path.abspath(path))
    hint = "give --out a file in a folder you can write to"
    if os.path.isdir(path):
        reason, hint = "it is a folder", f"give a file name inside it, e.g. {os.path.join(path, 'out.txt')}"
    elif os.path.exists(folder) and not os.path.isdir(folder):
        reason = f"{folder} is a file, not a folder"
    elif not os.path.exists(folder):
        reason, hint = f"the folder {folder} does not exist", "create the folder first, or give another path"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason, hint = "no space left on the device", "free some space, or write to another disk"
    else:
        reason = (error.strerror or str(error)).lower()
    return SpecError(f"--out {path}: cannot write here: {reason}", hint=hint)


def _train(args) -> int:
    if args.spec is None and args.resume is None:
        raise SpecError("train needs a spec, or --resume with a checkpoint or run folder",
                        hint="e.g. specbuild train specs/cnn.yaml, or specbuild train --resume runs/cnn-...")
    check_options(args, ("epochs", "batch_size", "lr", "seed", "limit", "nproc"))
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from .launch import launch
        if args.spec is not None:          # what the workers would refuse, said once, before they start
            from ..spec.validate import check
            from ..training.distributed import refuse_unsupported
            from ..spec.variables import parse_overrides
            refuse_unsupported(check(args.spec, overrides=parse_overrides(args.set)))
        return launch(args.nproc, args.argv, args.out or args.resume)
    from ..spec.variables import parse_overrides
    from ..training.trainer import TrainingStopped, train
    overrides = parse_overrides(args.set)
    try:
        run = train(args.spec, data=args.data, data_root=args.data_root, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, overrides=overrides, device=args.device,
                    seed=args.seed, out=args.out, resume=args.resume, limit=args.limit,
                    download=not args.no_download, init_from=args.init_from, precision=args.precision,
                    compile=args.compile, fast_step=args.fast_step, log=args.log)
    except TrainingStopped as stop:
        print(f"specbuild: {stop}", file=sys.stderr)
        return stop.exit_code
    if os.environ.get("RANK", "0") != "0":        # a worker of several: rank 0 reports
        return 0
    final = run.history[-1] if run.history else {}
    shown = {k: v for k, v in final.items() if isinstance(v, float) and k not in ("lr", "seconds", "train_seconds")}
    print(f"run folder: {run.run_dir}")
    print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return 0


def _evaluate(args) -> int:
    check_options(args, ("limit",))
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
        write_output(args.out, text)
        print(f"wrote {len(rows)} predictions to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
