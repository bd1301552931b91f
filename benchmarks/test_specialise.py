"""A fleet at once: the best subnet for 10,000 budgets with moofa.specialise, against one
moofa.search per budget (the baseline), shipped 'moofa' predictor, default options.

    python -m pytest benchmarks/test_specialise.py --benchmark-columns=min,median,max,rounds

The 10,000 budgets are log-uniform over the feasible range of the 'moofa' space (its
smallest peak to the peak of its largest subnet). Each timed call of moofa.specialise builds
its front from scratch (cache=False: NSGA-II, the refinement searches, decoding the front)
and answers every budget; writing the table is not timed (its time is in extra_info). The
quality check runs in the same benchmark: at 50 of the budgets, drawn at random, the gap
between an individual moofa.search (defaults, seed 0) and moofa.specialise must have a
median <= 0.05 and a maximum <= 0.2 points of predicted top-1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import seconds  # noqa: E402

import moofa  # noqa: E402

N_BUDGETS, N_CHECKED = 10_000, 50


def _largest_peak(space: str) -> int:
    sp = moofa.get_space(space)
    big = moofa.Subnet(
        [max(sp.kernels)] * sp.n_slots,
        [max(sp.expands)] * sp.n_slots,
        [max(sp.depths)] * sp.n_stages,
        max(sp.resolutions),
    )
    return int(moofa.peak_memory([big], sp)[0])


@pytest.fixture(scope="module")
def budgets() -> np.ndarray:
    lo, hi = moofa.min_peak("moofa")[0], _largest_peak("moofa")
    rng = np.random.default_rng(2026)
    return np.exp(rng.uniform(np.log(lo), np.log(hi + 1), N_BUDGETS)).astype(np.int64)


@pytest.fixture(scope="module")
def checked(budgets):
    """Positions of the 50 budgets checked, and the top-1 of one moofa.search at each."""
    picks = np.random.default_rng(7).choice(N_BUDGETS, N_CHECKED, replace=False)
    start = time.perf_counter()
    top1 = np.array([moofa.search(int(budgets[i])).top1 for i in picks])
    return picks, top1, (time.perf_counter() - start) / N_CHECKED


@pytest.mark.benchmark(group="specialise")
def test_specialise_10k_budgets(benchmark, budgets, checked):
    r = benchmark.pedantic(
        lambda: moofa.specialise(budgets, "moofa", cache=False), rounds=5, iterations=1, warmup_rounds=1
    )
    assert len(r) == N_BUDGETS and r.feasible.all() and not r.cached
    assert (r.peak <= budgets).all()
    order = np.argsort(budgets, kind="stable")
    assert (np.diff(r.top1[order]) >= 0).all()  # more budget never gives less
    nets = r.front.subnets
    np.testing.assert_array_equal(moofa.peak_memory(nets, "moofa"), r.front.peak)
    picks, single, per_search = checked
    gaps = single - r.top1[picks]
    median_gap, max_gap = float(np.median(gaps)), float(gaps.max())
    start = time.perf_counter()
    r.to_csv()
    csv_seconds = time.perf_counter() - start
    benchmark.extra_info.update(
        budgets=N_BUDGETS,
        seconds=seconds(benchmark),
        front_points=len(r.front),
        evaluations=r.evaluations,
        checked_budgets=N_CHECKED,
        median_gap=median_gap,
        max_gap=max_gap,
        min_gap=float(gaps.min()),
        individual_search_seconds=per_search,
        csv_seconds=csv_seconds,
    )
    assert median_gap <= 0.05 and max_gap <= 0.2, gaps


@pytest.mark.benchmark(group="specialise")
def test_individual_searches_baseline(benchmark, budgets, checked):
    """One moofa.search per budget for 5 of the checked budgets: time per 5 budgets."""
    picks, single, _ = checked
    some = [int(budgets[i]) for i in picks[:5]]
    results = benchmark.pedantic(lambda: [moofa.search(b) for b in some], rounds=3, iterations=1)
    assert [r.top1 for r in results] == pytest.approx(single[:5].tolist(), abs=0)  # deterministic
    assert all(r.peak <= b for r, b in zip(results, some))
    per_budget = seconds(benchmark) / len(some)
    benchmark.extra_info.update(seconds_per_budget=per_budget, seconds_for_10k_budgets=per_budget * N_BUDGETS)
