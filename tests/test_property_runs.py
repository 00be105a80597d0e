"""Property: validate means it runs.

For every spec of a fixed, seeded sample (tests/spec_fuzz.py: 3,000 random single-layer specs
round robin over every registered type, and 600 mutations of the shipped specs), either
`check` raises SpecError, or `build_model` builds it and a forward pass on inputs of the
declared shapes and dtypes runs and gives exactly the inferred output shapes and dtypes.
`make fuzz` runs the same generator at 20,000 cases.

A case that fails today for a cause another part of issue 8 owns is in KNOWN with its class:
a strict xfail, so it must keep failing until its fix lands (then it leaves the table), and
any failure not in KNOWN fails the main test.  The case ids follow the registry's types and
the shape oracle's cases; to list this sample's failures afresh:

    .venv/bin/python benchmarks/fuzz.py --seed 1701 --cases 3600 --mutations 0.1667
"""
from __future__ import annotations

import collections
import time
import warnings

import pytest

torch = pytest.importorskip("torch")

from spec_fuzz import TYPES, case, cases, run  # noqa: E402

SEED = 1701
SINGLES, MUTATIONS = 3000, 600
_VALUES = "class 3 (argument values torch refuses)"
_NAMES = "class 1 (names the generated forward cannot take)"
KNOWN: dict = {}   # classes 1 and 3 are fixed: every case of theirs that failed here now runs or is refused


@pytest.fixture
def quiet_torch():
    """One thread, a fixed seed and no warnings, as they were afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(SEED)
            yield
    finally:
        torch.set_num_threads(threads)


def test_validate_means_it_runs(quiet_torch):
    counts, failures, ran = collections.Counter(), [], set()
    start = time.perf_counter()
    for case_id, spec, what in cases(SEED, SINGLES, MUTATIONS):
        if case_id in KNOWN:
            continue
        outcome = run(spec)
        counts[outcome.kind] += 1
        if outcome.kind == "ran" and case_id.startswith("single"):
            ran.add(what)
        if outcome.failed:
            failures.append(f"{case_id} ({what}): {outcome.kind}: {outcome.detail}\n    {spec}")
    seconds = time.perf_counter() - start
    assert not failures, f"{len(failures)} of {sum(counts.values())} cases fail ({seconds:.0f} s):\n" + \
        "\n".join(failures[:20])
    # the sample reaches torch: most types run at least once, and a good share of all cases
    assert counts["ran"] > 0.3 * sum(counts.values()), counts
    assert len(ran) > 0.9 * len(TYPES), sorted(set(TYPES) - ran)


@pytest.mark.parametrize("case_id", [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=v))
                                     for k, v in KNOWN.items()])
def test_known_failures_of_other_classes(case_id, quiet_torch):
    outcome = run(case(SEED, case_id))
    assert not outcome.failed, f"{outcome.kind}: {outcome.detail}"


def test_the_sample_covers_every_registered_type():
    seen = {what for case_id, spec, what in cases(SEED, SINGLES, 0)}
    assert seen == set(TYPES)


def test_known_failures_are_in_the_sample():
    ids = {case_id for case_id, spec, what in cases(SEED, SINGLES, MUTATIONS)}
    assert set(KNOWN) <= ids
