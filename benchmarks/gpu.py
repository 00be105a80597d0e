"""How busy `specbuild train` keeps a GPU: epoch time, samples per second and accuracy.

Trains the fnn spec (batch 32) and the cnn spec (batch 512), Adam lr 0.001, each for one
measured epoch after a warm-up epoch (torch.compile and CUDA graph capture happen there),
on full Fashion-MNIST when Debian's dataset-fashion-mnist files (or --data-root) are there,
else on the bundled mnist-sample, as
  - specbuild: `specbuild train` as it is,
  - specbuild+fast_step: with --fast-step (torch.compile mode="reduce-overhead": CUDA graphs),
  - minimal: a minimal hand-written loop on the same device (data preloaded there, fused Adam,
    batches by slicing a random permutation): the floor,
and prints one line per configuration:

    fnn  specbuild             precision=fp32 batch=32 epoch_s=4.12034 samples_per_s=14563 accuracy=0.8231

--precision bf16 (or fp16) runs both specbuild configurations with that autocast.  --dry-run
checks the script on the CPU in seconds: 256 samples, no warm-up, no fast path.  Run from the
repository root on a CUDA machine:

    .venv/bin/python benchmarks/gpu.py [--epochs 1] [--warmup 1] [--precision bf16]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import specbuild                                        # noqa: E402
from specbuild.data.load import load_data                 # noqa: E402
from specbuild.training.progress import Progress       # noqa: E402

try:                                                    # the CPU benchmark's FNN, when importable
    from train_throughput import MinimalFNN
except ImportError:                                     # pragma: no cover - a copy of it
    class MinimalFNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(784, 128), nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(torch.flatten(x, start_dim=1))))

LR = 0.001
SPECS = (("fnn", "fnn.yaml", 32), ("cnn", "cnn.yaml", 512))


class MinimalCNN(nn.Module):
    """specs/cnn.yaml by hand, returning the logits its loss reads."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(32 * 14 * 14, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(torch.max_pool2d(torch.relu(self.conv1(x)), 2, 2), start_dim=1)
        return self.fc2(torch.relu(self.fc1(x)))


MINIMAL = {"fnn": MinimalFNN, "cnn": MinimalCNN}


def pick_data(root: str | None) -> str:
    """fashion-mnist when its files are here (Debian's package, or --data-root), else mnist-sample."""
    try:
        load_data({"dataset": "fashion-mnist"}, {"x": [1, 28, 28]}, root=root, download=False, limit=1)
        return "fashion-mnist"
    except Exception:       # noqa: BLE001 - any failure to find it: the bundled set
        return "mnist-sample"


def data_options(spec_file: str, dataset: str) -> dict:
    """The spec's train.data (normalize: ...) with the benchmark's data set."""
    raw = yaml.safe_load((ROOT / "specs" / spec_file).read_text())["train"]["data"]
    options = dict(raw) if isinstance(raw, dict) else {}
    options.pop("batch_size", None)
    return {**options, "dataset": dataset}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minimal_loop(name, options, batch, device, warmup, epochs, root, limit) -> tuple[list[float], float, int]:
    data = load_data(options, {"x": [1, 28, 28]}, root=root, download=False, limit=limit)
    x, y = data.train.inputs[0].to(device), data.train.targets["label"].to(device)
    torch.manual_seed(0)
    model, loss_fn = MINIMAL[name]().to(device), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    times = []
    for _ in range(warmup + epochs):
        sync(device)
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), device=device)
        xs, ys = x[perm], y[perm]
        for i in range(0, len(xs), batch):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xs[i:i + batch]), ys[i:i + batch]).backward()
            opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    model.eval()
    tx, ty = data.test.inputs[0].to(device), data.test.targets["label"].to(device)
    with torch.no_grad():
        right = sum(int((model(tx[i:i + 1024]).argmax(1) == ty[i:i + 1024]).sum()) for i in range(0, len(tx), 1024))
    return times[warmup:], right / len(tx), len(x)


def specbuild_loop(spec_file, dataset, batch, device, warmup, epochs, root, limit, precision, fast_step):
    with tempfile.TemporaryDirectory() as out:
        run = specbuild.train(ROOT / "specs" / spec_file, data=dataset, data_root=root, epochs=warmup + epochs,
                              batch_size=batch, lr=LR, out=out, device=device.type, limit=limit, download=False,
                              precision=precision, fast_step=fast_step or None,
                              progress=Progress(sys.stderr, quiet=True))
    return ([row["train_seconds"] for row in run.history[warmup:]], run.history[-1]["val_accuracy"],
            run.data_info["sizes"]["train"])


def report(name: str, loop: str, precision: str, batch: int, times: list[float], accuracy: float, n: int) -> dict:
    seconds = statistics.median(times)
    row = {"model": name, "loop": loop, "precision": precision, "batch": batch, "epoch_s": seconds,
           "samples_per_s": n / seconds, "accuracy": accuracy}
    print(f"{name:4} {loop:21} precision={precision} batch={batch} epoch_s={seconds:.5f} "
          f"samples_per_s={n / seconds:.0f} accuracy={accuracy:.4f}", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="measured epochs (the median is shown)")
    parser.add_argument("--warmup", type=int, default=1, help="epochs before measuring (compilation, capture)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="specbuild's --precision (the minimal loop stays fp32)")
    parser.add_argument("--limit", type=int, help="only the first N samples of each split")
    parser.add_argument("--data-root", help="folder of the Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="a quick check of the script on the CPU: --limit 256, 1 epoch, no warm-up, no fast path")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.limit, args.epochs, args.warmup = args.limit or 256, 1, 0
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU here (use --dry-run to check the script on the CPU)", file=sys.stderr)
        return 1
    dataset = pick_data(args.data_root)
    fast = device.type == "cuda" and not args.dry_run
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {dataset}{f' (limit {args.limit})' if args.limit else ''}, {where}, torch {torch.__version__}; "
          f"{args.warmup} warm-up + {args.epochs} measured epoch(s)", flush=True)
    for name, spec_file, batch in SPECS:
        common = dict(batch=batch, device=device, warmup=args.warmup, epochs=args.epochs, root=args.data_root,
                      limit=args.limit)
        for loop, fast_step in (("specbuild", False), ("specbuild+fast_step", True)):
            if fast_step and not fast:
                continue
            times, acc, n = specbuild_loop(spec_file, dataset, precision=args.precision, fast_step=fast_step, **common)
            report(name, loop, args.precision, batch, times, acc, n)
        times, acc, n = minimal_loop(name, data_options(spec_file, dataset), **common)
        report(name, "minimal", "fp32", batch, times, acc, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
