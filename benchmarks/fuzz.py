"""The property test's generator at a large count: random single-layer specs over every
registered type and mutations of the shipped specs (tests/spec_fuzz.py), each either refused
by validation or built and run with the inferred output shapes and dtypes.  Prints how many
of each outcome, the time, and every failure (case id, what it is, the error).  Exits 1 when
any case failed.  Run from the repository root (`make fuzz` runs 20,000 cases):

    .venv/bin/python benchmarks/fuzz.py [--cases 20000] [--seed 8] [--mutations 0.2]
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from spec_fuzz import cases, run  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000, help="how many specs in all (default 20000)")
    parser.add_argument("--seed", type=int, default=8, help="the generator's seed (default 8)")
    parser.add_argument("--mutations", type=float, default=0.2,
                        help="the share of mutated shipped specs among the cases (default 0.2)")
    parser.add_argument("--show", type=int, default=200, help="failures to print in full (default 200)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    warnings.simplefilter("ignore")
    mutations = round(args.cases * args.mutations)
    counts, failures = collections.Counter(), []
    start = time.perf_counter()
    for n, (case_id, spec, what) in enumerate(cases(args.seed, args.cases - mutations, mutations), 1):
        outcome = run(spec)
        counts[outcome.kind] += 1
        if outcome.failed:
            failures.append((case_id, what, outcome))
        if n % 1000 == 0:
            print(f"  {n:,} cases, {time.perf_counter() - start:.0f} s, {len(failures)} failures", flush=True)
    seconds = time.perf_counter() - start
    print(f"\n{sum(counts.values()):,} cases (seed {args.seed}: {args.cases - mutations:,} single-layer, "
          f"{mutations:,} mutations) in {seconds:.0f} s")
    for kind, count in counts.most_common():
        print(f"  {kind:18s} {count:7,}")
    for case_id, what, outcome in failures[:args.show]:
        print(f"\n{case_id} ({what}): {outcome.kind}\n  {outcome.detail}")
    if len(failures) > args.show:
        print(f"\n... and {len(failures) - args.show} more failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
