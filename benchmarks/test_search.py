"""Speed of a full OFA-sized search (population 100, 500 generations, moofa space, 325k):
moofa's C++ search against a plain Python port of OFA's EvolutionFinder, same predictor.

    python -m pytest benchmarks/test_search.py --benchmark-columns=min,median,max,rounds

The predictor is a ridge model on the published one-hot encoding, fitted on the shared
accuracy data (a C++ LinearScorer, also called by the port), so that both sides spend
their time in the search itself. Each benchmark checks its result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import search_helpers as helpers  # noqa: E402
from conftest import FIXTURES  # noqa: E402
from timing import seconds  # noqa: E402

import moofa  # noqa: E402

BUDGET = 325_000
POPULATION, GENERATIONS = 100, 500


@pytest.fixture(scope="module")
def ridge():
    return helpers.ridge_scorer(FIXTURES, "moofa-imagenet", "moofa")


@pytest.fixture(scope="module")
def optimum(ridge):
    _, w, b = ridge
    return helpers.exact_linear_optimum(w, b, "moofa", BUDGET, helpers.SlotTables("moofa"))


@pytest.mark.benchmark(group="search-325k-moofa")
def test_moofa_search(benchmark, ridge, optimum):
    scorer, _, _ = ridge
    r = benchmark(
        moofa.search, BUDGET, "moofa", scorer, seed=0, population=POPULATION, generations=GENERATIONS
    )  # threads=0: auto, one thread at population 100
    assert r.peak <= BUDGET and r.top1 == pytest.approx(optimum, abs=2e-3)
    assert r.generations == GENERATIONS and r.evaluations > 0.9 * POPULATION * (GENERATIONS + 1)
    elapsed = seconds(benchmark)
    benchmark.extra_info.update(
        top1=r.top1,
        evaluations=r.evaluations,
        candidates=r.candidates,
        predictor_evaluations_per_s=r.evaluations / elapsed,
        candidates_checked_per_s=r.candidates / elapsed,
    )


def _run_python_port(benchmark, scorer):
    """One timed run of the Python port of OFA's EvolutionFinder on ``scorer``; returns
    the finder, its best (score, config) and the peak tables it checked budgets with."""
    tables = helpers.SlotTables("moofa")
    accuracy = helpers.port_predictor(scorer, "moofa")

    def run():
        finder = helpers.OFAEvolutionFinder(
            "moofa", tables.peak, accuracy, population_size=POPULATION, max_time_budget=GENERATIONS, seed=0
        )
        _, best = finder.run_evolution_search(BUDGET)
        return finder, best

    finder, best = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        top1=best[0],
        evaluations=finder.evaluations,
        predictor_evaluations_per_s=finder.evaluations / seconds(benchmark),
    )
    return finder, best, tables


@pytest.mark.benchmark(group="search-325k-moofa")
def test_ofa_evolution_finder_python_port(benchmark, ridge, optimum):
    scorer, _, _ = ridge
    finder, best, tables = _run_python_port(benchmark, scorer)
    assert tables.peak(best[1]) <= BUDGET and best[0] <= optimum + 1e-3
    assert finder.evaluations == POPULATION * (GENERATIONS + 1)


# The same search with the shipped MLP predictor of the moofa space (C++ inference).
@pytest.fixture(scope="module")
def shipped():
    return moofa.load_predictor("moofa")


@pytest.mark.benchmark(group="search-325k-moofa-shipped-predictor")
@pytest.mark.parametrize("threads", [1, 2])
def test_moofa_search_shipped_predictor(benchmark, shipped, threads):
    r = benchmark(
        moofa.search, BUDGET, "moofa", shipped, seed=0, population=POPULATION, generations=GENERATIONS, threads=threads
    )
    assert r.peak <= BUDGET and r.generations == GENERATIONS
    assert r.top1 == pytest.approx(float(shipped.predict([r.subnet])[0]), abs=1e-3)
    elapsed = seconds(benchmark)
    benchmark.extra_info.update(
        top1=r.top1,
        evaluations=r.evaluations,
        candidates=r.candidates,
        predictor_evaluations_per_s=r.evaluations / elapsed,
        candidates_checked_per_s=r.candidates / elapsed,
    )


@pytest.mark.benchmark(group="search-325k-moofa-shipped-predictor")
def test_ofa_evolution_finder_python_port_shipped_predictor(benchmark, shipped):
    finder, best, tables = _run_python_port(benchmark, shipped.scorer)
    assert tables.peak(best[1]) <= BUDGET and finder.evaluations == POPULATION * (GENERATIONS + 1)
