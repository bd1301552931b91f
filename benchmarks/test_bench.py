"""Per-config overhead of the plug-ins (moofa.integrations) against the C++ core called on
encoded rows, and a small run of the benchmark suite (moofa.bench).

    python -m pytest benchmarks/test_bench.py --benchmark-columns=min,median,rounds

Groups ``plugin-pymoo-*``: ``MoofaProblem._evaluate`` on a population (variables -> rows,
predictor, peak, objectives and constraints) against the two C++ calls it makes on rows
already encoded; its ratio is checked <= 2 (min of interleaved repeats, so that the check
holds on a busy machine). ``plugin-ofa``: ``EfficiencyPredictor.get_efficiency`` on one
OFA-style dict against the core on one encoded row and against the general public path
(``moofa.peak_memory([dict])``). ``plugin-optuna``: ``Objective`` on one trial. Each
benchmark checks its result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from timing import seconds  # noqa: E402

import moofa  # noqa: E402
import moofa.bench as bench  # noqa: E402
from moofa.integrations.ofa import EfficiencyPredictor  # noqa: E402

SPACE, BUDGET = "moofa", 325_000


def _min_time(fn, repeats: int = 200) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.fixture(scope="module")
def core():
    return moofa.load_predictor(SPACE).scorer, moofa.evaluator(SPACE)


def _population(n: int, space: str = SPACE):
    return moofa.random_subnets(n, space, seed=0)


@pytest.mark.parametrize("n", [100, 1000])
def test_core_rows_baseline(benchmark, core, n):
    scorer, ev = core
    rows = _population(n)
    benchmark.group = f"plugin-pymoo-population-{n}"

    def run():
        return scorer.score(rows, 0), ev.peaks(rows, threads=0)

    top1, peaks = benchmark(run)
    assert len(top1) == len(peaks) == n and peaks.min() >= moofa.min_peak(SPACE)[0]
    benchmark.extra_info["per_config_us"] = seconds(benchmark) / n * 1e6


@pytest.mark.parametrize("n", [100, 1000])
@pytest.mark.parametrize("space", ["moofa", "compofa"])
def test_pymoo_problem_evaluate(benchmark, n, space):
    pytest.importorskip("pymoo", reason="needs pymoo: pip install 'moofa[integrations]'")
    from moofa.integrations.pymoo import MoofaProblem

    prob = MoofaProblem(space, budget=BUDGET, objectives=("top1",))
    rows = _population(n, space)
    X = prob.variables(rows)
    benchmark.group = f"plugin-pymoo-population-{n}"
    out: dict = {}
    benchmark(prob._evaluate, X, out)
    scorer, ev = moofa.load_predictor(space).scorer, moofa.evaluator(space)
    np.testing.assert_allclose(-out["F"][:, 0], scorer.score(rows, 1), rtol=1e-6)
    np.testing.assert_array_equal(out["G"][:, 0], ev.peaks(rows) - BUDGET)
    if benchmark.enabled:
        t_core = _min_time(lambda: (scorer.score(rows, 0), ev.peaks(rows, threads=0)))
        t_plugin = _min_time(lambda: prob._evaluate(X, {}))
        ratio = t_plugin / t_core
        benchmark.extra_info.update(ratio_to_core=ratio, per_config_us=seconds(benchmark) / n * 1e6)
        assert ratio <= 2.0, f"MoofaProblem._evaluate takes {ratio:.2f}x the C++ calls on encoded rows"


def _dicts(n: int, space: str = SPACE) -> list[dict]:
    return [net.to_dict() for net in moofa.decode(_population(n, space), space)]


@pytest.mark.benchmark(group="plugin-ofa-one-dict")
def test_ofa_core_one_row_baseline(benchmark, core):
    _, ev = core
    rows = _population(200)
    it = iter(range(10**9))

    def one():
        i = next(it) % 200
        return ev.peaks(rows[i : i + 1], threads=1)[0]

    assert benchmark(one) > 0


@pytest.mark.benchmark(group="plugin-ofa-one-dict")
def test_ofa_efficiency_predictor_one_dict(benchmark):
    ep = EfficiencyPredictor(SPACE)
    dicts = _dicts(200)
    want = moofa.peak_memory(dicts, SPACE)
    it = iter(range(10**9))

    def one():
        i = next(it) % 200
        return ep.get_efficiency(dicts[i])

    benchmark(one)
    assert [ep.get_efficiency(d) for d in dicts] == want.tolist()
    if benchmark.enabled:  # the same 200 configs one at a time, interleaved repeats
        ev = moofa.evaluator(SPACE)
        rows = _population(200)
        singles = [rows[i : i + 1] for i in range(200)]
        t_core = _min_time(lambda: [ev.peaks(r, threads=1) for r in singles], repeats=50)
        t_plugin = _min_time(lambda: [ep.get_efficiency(d) for d in dicts], repeats=50)
        ratio = t_plugin / t_core
        benchmark.extra_info.update(ratio_to_core=ratio)
        assert ratio <= 2.0, f"get_efficiency takes {ratio:.2f}x the C++ call on one encoded row"


@pytest.mark.benchmark(group="plugin-ofa-one-dict")
def test_ofa_general_public_path_one_dict(benchmark):
    dicts = _dicts(200)
    it = iter(range(10**9))

    def one():
        i = next(it) % 200
        return int(moofa.peak_memory([dicts[i]], SPACE)[0])

    assert benchmark(one) > 0


@pytest.mark.benchmark(group="plugin-optuna-one-trial")
def test_optuna_objective_one_trial(benchmark):
    optuna = pytest.importorskip("optuna", reason="needs optuna: pip install 'moofa[integrations]'")
    from moofa.integrations.optuna import Objective

    objective = Objective(SPACE, budget=BUDGET)
    nets = moofa.decode(_population(50), SPACE)
    sp = moofa.get_space(SPACE)
    params_of = []
    for net in nets:
        params = {"image_size": net.image_size, **{f"d[{i}]": d for i, d in enumerate(net.d)}}
        first = 0
        for stage, dd in zip(sp.stages, net.d):
            for j in range(dd):
                params[f"ks[{first + j}]"], params[f"e[{first + j}]"] = net.ks[first + j], net.e[first + j]
            first += stage.max_depth
        params_of.append(params)
    it = iter(range(10**9))
    # A fresh trial per call (a trial takes each constraint once), as optuna hands them out.
    value = benchmark(lambda: objective(optuna.trial.FixedTrial(params_of[next(it) % 50])))
    assert np.isfinite(value)
    got = [objective(optuna.trial.FixedTrial(p)) for p in params_of]
    np.testing.assert_allclose(got, moofa.load_predictor(SPACE).predict(nets), rtol=1e-6)


@pytest.mark.benchmark(group="bench-suite")
def test_bench_suite_small_run(benchmark):
    """Every optimiser on two problems at 200 evaluations: answers feasible where found (random
    sampling and the generic optimisers may find none under a tight budget), moofa's always."""
    have = [o for o in bench.OPTIMISERS if o in ("moofa", "random")]
    for mod, names in (("pymoo", ("pymoo-nsga2", "pymoo-ga")), ("optuna", ("optuna-tpe",))):
        try:
            __import__(mod)
            have += list(names)
        except ImportError:
            pass
    records = benchmark.pedantic(
        bench.run_suite, args=(have, 200, (0,), ["moofa-325k", "compofa-325k"]), rounds=1, iterations=1
    )
    assert len(records) == 2 * len(have)
    for r in records:
        assert r["regret"] >= -1e-4
        if r["optimiser"] == "moofa" or np.isfinite(r["regret"]):
            assert np.isfinite(r["regret"]) and r["best_peak"] <= 325_000
    benchmark.extra_info["table"] = bench.format_table(records)
