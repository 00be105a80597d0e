"""Forward cost of a compiled spec over the equivalent hand-written module.

For fnn, cnn, lstm, transformer, resnet18 (against torchvision's, at 64 x 64) and
gpt (against a hand-written nanoGPT, tests/nanogpt.py) at batch 1 and 64, times
both modules' forward passes (eval mode, no grad, the same weights) interleaved
over many rounds and prints the median time ratio built / hand-written.  DESIGN's target
is ~1.00; the acceptance bar is at most 1.05.  Run from the repository root:

    .venv/bin/python benchmarks/forward_overhead.py [--rounds 30]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from guide_modules import CNN, FNN, LSTM, Transformer  # noqa: E402
from nanogpt import GPT  # noqa: E402

from specbuild import build_model  # noqa: E402

# spec name -> (hand-written module, spec overrides, one sample's shape)
CASES = {
    "fnn": (lambda: FNN(), {}, (1, 28, 28)),
    "cnn": (lambda: CNN(), {}, (1, 28, 28)),
    "lstm": (lambda: LSTM(1, 50, 1), {"seq_len": 50}, (50, 1)),
    "transformer": (lambda: Transformer(512, 8, 6), {"seq_len": 16}, (16, 512)),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), {"image_size": 64}, (3, 64, 64)),
    "gpt": (lambda: GPT(), {}, (32,)),
}
TOKENS = {"gpt": 64}     # an integer input: token ids below the vocabulary size


def per_call(module, x, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        module(x)
    return (time.perf_counter() - start) / calls


def calls_for(module, x) -> int:
    """Enough calls for about 20 ms per timing."""
    once = per_call(module, x, 3)
    return max(3, min(2000, int(0.02 / max(once, 1e-7))))


def measure(name: str, batch: int, rounds: int) -> tuple[float, float, float]:
    make, overrides, sample = CASES[name]
    torch.manual_seed(0)
    hand = make().eval()
    built = build_model(ROOT / "specs" / f"{name}.yaml", overrides=overrides).eval()
    built.load_state_dict(hand.state_dict(), strict=True)
    x = (torch.randint(0, TOKENS[name], (batch,) + sample) if name in TOKENS else torch.randn((batch,) + sample))
    ratios, built_times, hand_times = [], [], []
    with torch.no_grad():
        torch.testing.assert_close(built(x), hand(x))
        calls = calls_for(hand, x)
        for _ in range(3):                      # warm up both
            per_call(hand, x, calls), per_call(built, x, calls)
        for r in range(rounds):
            # alternate which goes first, so drift on a noisy machine hits both alike
            if r % 2:
                b, h = per_call(built, x, calls), per_call(hand, x, calls)
            else:
                h, b = per_call(hand, x, calls), per_call(built, x, calls)
            ratios.append(b / h)
            built_times.append(b)
            hand_times.append(h)
    return statistics.median(ratios), statistics.median(built_times), statistics.median(hand_times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--limit", type=float, default=1.05, help="the ratio a case must not exceed")
    parser.add_argument("--models", nargs="+", choices=list(CASES), default=list(CASES), help="which models (all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)   # one thread: timings on a shared, noisy machine stay comparable
    print(f"torch {torch.__version__}, 1 thread, median of {args.rounds} interleaved rounds")
    print(f"{'model':12} {'batch':>5} {'built us':>10} {'hand us':>10} {'ratio':>7}")
    worst = 0.0
    for name in args.models:
        for batch in (1, 64):
            ratio, b, h = measure(name, batch, args.rounds)
            worst = max(worst, ratio)
            print(f"{name:12} {batch:5d} {b * 1e6:10.1f} {h * 1e6:10.1f} {ratio:7.3f}", flush=True)
    verdict = "ok" if worst <= args.limit else "OVER"
    print(f"worst ratio {worst:.3f} (limit {args.limit}): {verdict}")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
