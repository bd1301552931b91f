"""moofa.search / moofa.pareto: results fit their budgets, errors are clear, quality
beats a plain Python port of OFA's EvolutionFinder.

Ground truth: oracle.py (layer-by-layer memory, FLOPs, params), a numpy ridge model
fitted on the shared accuracy data, and the OFA port in search_helpers.py.
"""

from __future__ import annotations

import _thread
import json
import math
import threading
import warnings

import numpy as np
import oracle
import pytest
import search_helpers as helpers
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_helpers import random_linear as linear

import moofa
from moofa import _core, report
from moofa.memory import spec
from moofa.search import linear_scorer, sweep

SPACES = ["ofa", "compofa", "moofa", "moofa-e346", "moofa-e1-2"]


@pytest.fixture(scope="module")
def ridge():
    """moofa space: (C++ scorer, numpy weights, bias) of a ridge fit on the published data."""
    return helpers.ridge_scorer(FIXTURES, "moofa-imagenet", "moofa")


def truth(space, net, **kw):
    return oracle.evaluate(moofa.get_space(space), net.ks, net.e, net.d, net.image_size, **kw)


def max_peak(space: str) -> int:
    """The largest peak of a space: every gene at its largest choice (peaks grow with each)."""
    sp = moofa.get_space(space)
    n = sp.n_slots
    return int(
        moofa.peak_memory(
            [
                moofa.Subnet(
                    [max(sp.kernels)] * n, [max(sp.expands)] * n, [max(sp.depths)] * sp.n_stages, max(sp.resolutions)
                )
            ],
            sp,
        )[0]
    )


# --- the result ---------------------------------------------------------------------------------


def test_search_result_is_complete_and_exact(ridge):
    scorer, w, b = ridge
    r = moofa.search("325k", predictor=scorer, seed=0)
    assert isinstance(r, moofa.SearchResult) and isinstance(r.subnet, moofa.Subnet)
    assert r.budget == 325_000 and r.space == "moofa" and r.memory_model == "full"
    assert r.config == r.subnet.to_dict() and moofa.Subnet.from_dict(r.config) == r.subnet
    t = truth("moofa", r.subnet)
    assert r.peak == t["peak"] <= 325_000
    assert r.profile.hist == t["hist"]
    assert (r.avg, r.std) == (pytest.approx(t["avg"]), pytest.approx(t["std"]))
    assert r.mflops == pytest.approx(t["mflops"]) and r.params == t["params"]
    # The score is the ridge model's prediction for that config (numpy, independently).
    assert r.top1 == pytest.approx(float(helpers.one_hot([r.config], "moofa")[0] @ w + b), abs=1e-3)
    assert len(r.history) == r.generations + 1 == 501
    assert np.all(np.diff(r.history) >= 0) and r.history[-1] == pytest.approx(r.top1)
    assert 0 < r.evaluations <= 100 * 501 and r.candidates >= r.evaluations and r.seconds > 0
    assert r.score == r.top1
    data = json.loads(json.dumps(r.to_dict()))
    assert data["config"] == r.config and data["peak"] == r.peak and len(data["history"]) == 501


def test_search_finds_the_exact_optimum_of_the_ridge_model(ridge):
    scorer, w, b = ridge
    tables = helpers.SlotTables("moofa")
    for budget in ("325k", "400k", "800k"):
        r = moofa.search(budget, predictor=scorer)
        best = helpers.exact_linear_optimum(w, b, "moofa", r.budget, tables)
        assert r.top1 == pytest.approx(best, abs=2e-3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    space=st.sampled_from(SPACES),
    model=st.sampled_from(["full", "activations"]),
    where=st.floats(0.0, 1.2),
    seed=st.integers(0, 2**64 - 1),
    limit=st.sampled_from([None, "mflops", "params"]),
    slack=st.floats(1.0, 3.0),
)
def test_every_result_fits_its_budget(space, model, where, seed, limit, slack):
    smallest, small_net = moofa.min_peak(space, memory_model=model)
    budget = int(smallest + where * (max_peak(space) - smallest))
    options = {}
    if limit is not None:
        # Looser than the smallest subnet's figure, so that some subnet satisfies everything.
        value = getattr(moofa.profile(small_net, space), limit) * slack
        options = {"max_mflops": value} if limit == "mflops" else {"max_params": int(value)}
    r = moofa.search(
        budget, space, linear(space, seed % 7), seed=seed, population=12, generations=6, memory_model=model, **options
    )
    t = truth(space, r.subnet, activations_only=model == "activations")
    assert r.peak == t["peak"] <= budget
    if limit == "mflops":
        assert t["mflops"] <= options["max_mflops"]
    if limit == "params":
        assert t["params"] <= options["max_params"]


@pytest.mark.parametrize("space", SPACES)
def test_budget_below_the_smallest_subnet_names_the_minimum(space):
    smallest, _ = moofa.min_peak(space)
    with pytest.raises(ValueError, match=f"at least {smallest}") as err:
        moofa.search(smallest - 1, space, linear(space))
    assert f"{smallest:,}" in str(err.value) and repr(space) in str(err.value)
    # Exactly the minimum works, and finds a subnet of that peak.
    assert moofa.search(smallest, space, linear(space), population=10, generations=3).peak == smallest
    mcu, _ = moofa.min_peak(space, memory_model="activations")
    with pytest.raises(ValueError, match=f"at least {mcu}"):
        moofa.search(mcu - 1, space, linear(space), memory_model="mcu")


def test_byte_budgets_are_read_with_bytes_per_item():
    r = moofa.search("1.3MB", predictor=linear("moofa"), population=10, generations=3)
    assert r.budget == 325_000 and r.peak <= 325_000
    r8 = moofa.search("400kB", predictor=linear("moofa"), population=10, generations=3, bytes_per_item=1)
    assert r8.budget == 400_000 and r8.peak <= 400_000


def test_search_is_deterministic_for_a_seed_whatever_the_threads():
    runs = [
        moofa.search("400k", predictor=linear("moofa"), population=300, generations=8, seed=5, threads=t)
        for t in (1, 2)
    ]
    assert runs[0].config == runs[1].config and runs[0].top1 == runs[1].top1
    np.testing.assert_array_equal(runs[0].history, runs[1].history)
    assert runs[0].evaluations == runs[1].evaluations and runs[0].candidates == runs[1].candidates


def test_polish_through_the_facade_keeps_the_constraints_and_never_lowers_the_score():
    space = "moofa"
    small = moofa.min_peak(space)[1]
    limits = {
        "max_mflops": moofa.profile(small, space).mflops * 2,
        "max_params": moofa.profile(small, space).params * 2,
    }
    for seed in range(3):
        kw = {"population": 20, "generations": 5, "seed": seed, **limits}
        plain = moofa.search("500k", space, linear(space, seed), **kw)
        r = moofa.search("500k", space, linear(space, seed), polish_radius=2, **kw)
        assert r.top1 >= plain.top1 and r.evaluations > plain.evaluations
        t = truth(space, r.subnet)
        assert t["peak"] <= 500_000 and t["mflops"] <= limits["max_mflops"] and t["params"] <= limits["max_params"]


# --- bad input ------------------------------------------------------------------------------------


def test_unknown_options_are_named_with_the_allowed_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['mutation_rate', 'popsize'\]") as err:
        moofa.search("400k", predictor=linear("moofa"), popsize=10, mutation_rate=0.2)
    for allowed in ("mutation_ratio", "mutate_prob", "max_mflops", "memory_model", "threads"):
        assert allowed in str(err.value)
    with pytest.raises(TypeError, match="unknown option"):
        moofa.pareto("moofa", linear("moofa"), budgets=["400k"], popsize=3)
    with pytest.raises(TypeError, match="unknown option"):
        moofa.pareto("moofa", linear("moofa"), parent_ratio=0.3)  # NSGA-II has no parents share


@pytest.mark.parametrize("predictor", [42, "not-a-predictor-path.npz", [1, 2, 3], object()])
def test_non_callable_predictor_is_refused(predictor):
    with pytest.raises((TypeError, ValueError, FileNotFoundError)) as err:
        moofa.search("400k", predictor=predictor)
    assert "predictor" in str(err.value).lower() or "not-a-predictor" in str(err.value)


def test_non_callable_object_gives_type_error():
    with pytest.raises(TypeError, match="predictor must be"):
        moofa.search("400k", predictor=object())
    with pytest.raises(TypeError, match="predictor must be"):
        moofa.search("400k", predictor=3.5)


@pytest.mark.parametrize(
    "predictor, message",
    [
        (lambda rows: np.zeros(3), r"returned shape \(3,\) for a batch of 100 configs; expected \(100,\)"),
        (lambda rows: np.full(len(rows), np.nan), r"non-finite score \(nan\)"),
        (lambda rows: [float("inf")] * len(rows), "non-finite score"),
        (lambda rows: None, "returned None"),
        (lambda rows: {"top1": 1}, "one number per config"),
    ],
)
def test_bad_predictor_output_gives_clear_value_errors(predictor, message):
    with pytest.raises(ValueError, match=message):
        moofa.search("400k", predictor=predictor, generations=2)


@pytest.mark.parametrize(
    "option, value",
    [
        ("population", 0),
        ("generations", -1),
        ("seed", -1),
        ("threads", -2),
        ("parent_ratio", 0),
        ("mutate_prob", 1.5),
        ("max_mflops", -3),
        ("max_params", 2.5),
        ("memory_model", "sram"),
        ("max_tries", 0),
        ("predictor_input", "tensors"),
        ("population", True),
        ("max_evaluations", 0),
        # beyond what the C++ types hold: a ValueError with the range, not a binding error
        ("population", 2**40),
        ("population", -(2**40)),
        ("generations", 2**40),
        ("threads", 2**31),
        ("seed", 2**64),
        ("max_params", 10**19),
        ("max_params", 1e19),
        ("max_mflops", math.inf),
        ("max_mflops", math.nan),
        ("max_tries", 2**31),
        ("resolution_niche", 2**31),
        ("max_evaluations", 10**19),
        ("depth_niche", -1),
        ("depth_niche_share", 1.5),
        ("depth_niche_share", math.nan),
        ("polish_radius", -1),
        ("polish_keep", 0),
    ],
)
def test_bad_option_values_name_the_option(option, value):
    kwargs = {"population": 10, "generations": 2, option: value}
    with pytest.raises(ValueError, match=option):
        moofa.search("400k", predictor=linear("moofa"), **kwargs)


@pytest.mark.parametrize(
    "budget, error", [("325 apples", ValueError), (-5, ValueError), (None, TypeError), ("0k", ValueError)]
)
def test_bad_budgets(budget, error):
    with pytest.raises(error, match="budget"):
        moofa.search(budget, predictor=linear("moofa"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_peak": 2**63}, "budget"),
        ({"max_peak": 10**30}, "budget"),
        ({"population": 1}, r"population must be an integer in \[2, 100000\]"),
        ({"population": 2**40}, r"population must be an integer in \[2, 100000\]"),
        ({"generations": -1}, r"generations must be an integer in \[0, 134217727\]"),
        ({"threads": 2**31}, r"threads must be an integer in \[0, 4096\]"),
        ({"max_params": 10**19}, r"max_params must be an integer in \[1, 2\*\*63 - 1\]"),
        ({"max_mflops": math.nan}, "max_mflops must be a finite number"),
        ({"max_evaluations": 10**19}, "max_evaluations"),
        ({"max_tries": 2**31}, "max_tries"),
    ],
)
def test_pareto_bad_values_name_the_option_and_its_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        moofa.pareto("moofa", linear("moofa"), **{"generations": 2, **kwargs})
    if "max_peak" in kwargs:
        with pytest.raises(ValueError, match=r"budget must be below 2\*\*63 items"):
            moofa.search(kwargs["max_peak"], predictor=linear("moofa"))


def test_defaults_are_the_cpp_ones():
    import inspect

    from moofa.search import SEARCH_OPTIONS

    evolution, nsga = _core.EvolutionOptions(), _core.ParetoOptions()
    params = inspect.signature(moofa.search).parameters
    assert (params["population"].default, params["generations"].default, params["seed"].default) == (
        evolution.population,
        evolution.generations,
        evolution.seed,
    )
    for name in ("parent_ratio", "mutation_ratio", "mutate_prob", "resolution_mutate_prob", "resolution_niche"):
        assert SEARCH_OPTIONS[name] == getattr(evolution, name)
    assert (SEARCH_OPTIONS["threads"], SEARCH_OPTIONS["max_tries"]) == (evolution.threads, evolution.max_tries)
    assert (nsga.generations, evolution.generations) == (200, 500)
    # NSGA-II runs its own default number of generations: 4 + 200 x 4 evaluations at most.
    front = moofa.pareto("moofa", linear("moofa"), population=4)
    assert 4 < front.evaluations <= 4 + 200 * 4


def test_nsga2_stops_at_max_evaluations():
    front = moofa.pareto("moofa", linear("moofa"), population=30, generations=50, max_evaluations=100)
    assert front.evaluations == 100 and len(front) >= 1


# --- predictors in every form -----------------------------------------------------------------------


def test_callable_predictors_get_rows_subnets_or_dicts():
    scorer = linear("moofa")
    seen = {}

    def on_rows(rows):
        seen["rows"] = rows
        return scorer.score(rows)

    def on_subnets(nets):
        seen["subnets"] = nets
        return scorer.score(moofa.encode(nets, "moofa"))

    def on_dicts(configs):
        seen["dicts"] = configs
        return scorer.score(moofa.encode(configs, "moofa"))

    a = moofa.search("400k", predictor=on_rows, population=20, generations=5)
    b = moofa.search("400k", predictor=on_subnets, population=20, generations=5, predictor_input="subnets")
    c = moofa.search("400k", predictor=on_dicts, population=20, generations=5, predictor_input="dicts")
    d = moofa.search("400k", predictor=scorer, population=20, generations=5)
    assert isinstance(seen["rows"], np.ndarray) and seen["rows"].dtype == np.uint8
    assert all(isinstance(n, moofa.Subnet) for n in seen["subnets"])
    assert all(isinstance(c, dict) and set(c) == {"ks", "e", "d", "image_size"} for c in seen["dicts"])
    assert a.config == b.config == c.config == d.config and a.top1 == b.top1 == c.top1 == d.top1


def test_predictor_objects_with_scorer_or_predict_and_their_space():
    scorer = linear("moofa")

    class WithScorer:
        space = "moofa"

        def __init__(self):
            self.scorer = scorer

    class WithPredict:
        def predict(self, nets):
            return scorer.score(moofa.encode(nets, "moofa"))

    a = moofa.search("400k", predictor=WithScorer(), population=20, generations=5)
    b = moofa.search("400k", predictor=WithPredict(), population=20, generations=5)
    assert a.config == b.config
    foreign = WithScorer()
    foreign.space = "ofa"  # same encoding width, other network: refused
    with pytest.raises(ValueError, match="made for space 'ofa', not for 'moofa'"):
        moofa.search("400k", predictor=foreign)


def test_user_defined_space_needs_a_predictor():
    custom = moofa.get_space("moofa").replace(name="my-moofa", resolutions=(96, 128))
    with pytest.raises(ValueError, match="space 'my-moofa' has no shipped predictor"):
        moofa.search("400k", custom)
    r = moofa.search("400k", custom, linear(custom), population=20, generations=5)
    assert r.subnet.image_size in (96, 128) and truth(custom, r.subnet)["peak"] == r.peak <= 400_000


def test_default_predictor_is_the_shipped_one_or_a_clear_error():
    if not hasattr(moofa, "load_predictor"):
        with pytest.raises(ValueError, match="no shipped predictor"):
            moofa.search("325k")
        return
    default = moofa.search("325k", population=30, generations=20)
    explicit = moofa.search("325k", predictor=moofa.load_predictor("moofa"), population=30, generations=20)
    assert default.config == explicit.config and default.peak <= 325_000
    assert 60 < default.top1 < 80  # predicted ImageNet top-1, in percent


# --- sweeps and fronts --------------------------------------------------------------------------------


def brute_force_front(top1, peak):
    """Indices of points no other point dominates; of identical points, the first."""

    def beaten(i):
        return any(
            (top1[j] >= top1[i] and peak[j] <= peak[i]) and (top1[j] > top1[i] or peak[j] < peak[i] or j < i)
            for j in range(len(top1))
            if j != i
        )

    return [i for i in range(len(top1)) if not beaten(i)]


def test_pareto_sweep_runs_one_search_per_budget(ridge):
    scorer, _, _ = ridge
    budgets = ["325k", "350k", "400k", "600k", "800k"]
    front = moofa.pareto("moofa", scorer, budgets=budgets, generations=60)
    assert front.method == "sweep" and not front.interrupted
    assert [r.budget for r in front.results] == [325_000, 350_000, 400_000, 600_000, 800_000]
    for r in front.results:
        assert truth("moofa", r.subnet)["peak"] == r.peak <= r.budget
        same = moofa.search(r.budget, predictor=scorer, generations=60)
        assert same.config == r.config  # a sweep is the searches it is made of
    tops, peaks = [r.top1 for r in front.results], [r.peak for r in front.results]
    kept = brute_force_front(tops, peaks)
    assert sorted(front.top1.tolist()) == sorted(tops[i] for i in kept)
    assert np.all(np.diff(front.peak) > 0)
    best = front.best_under("400k")
    assert best["peak"] <= 400_000 and best["top1"] == max(t for t, p in zip(tops, peaks) if p <= 400_000)
    assert front.best_under(10) is None


def test_pareto_nsga2_front(ridge):
    scorer, w, b = ridge
    front = moofa.pareto("moofa", scorer, generations=60, seed=1)
    assert front.method == "nsga2" and len(front) >= 5 and front.evaluations > 0
    assert brute_force_front(front.top1.tolist(), front.peak.tolist()) == list(range(len(front)))
    for net, t1, pk in zip(front.subnets, front.top1, front.peak):
        assert truth("moofa", net)["peak"] == pk
        assert t1 == pytest.approx(float(helpers.one_hot([net.to_dict()], "moofa")[0] @ w + b), abs=1e-3)
    capped = moofa.pareto("moofa", scorer, max_peak="500k", generations=30)
    assert capped.peak.max() <= 500_000
    three = moofa.pareto("moofa", scorer, objectives=("top1", "peak", "mflops"), generations=30)
    assert len(three) >= len(moofa.pareto("moofa", scorer, generations=30))
    with pytest.raises(ValueError, match="objectives"):
        moofa.pareto("moofa", scorer, objectives=("top1", "latency"))
    with pytest.raises(ValueError, match="either budgets"):
        moofa.pareto("moofa", scorer, budgets=["400k"], max_peak="500k")


@pytest.mark.parametrize("how", ["exception", "signal"])
def test_ctrl_c_during_a_sweep_returns_the_finished_budgets(how, ctrl_c):
    scorer = linear("moofa")
    budgets = ["325k", "400k", "500k", "600k"]

    def interrupting(rows):
        # Ctrl-C while the third budget (500k) is searched: its candidates are the first
        # to exceed 400k.
        if np.any(moofa.peak_memory(rows, "moofa") > 400_000):
            if how == "exception":
                raise KeyboardInterrupt
            _thread.interrupt_main()  # a real SIGINT, delivered at the next Python step
        return scorer.score(rows)

    front = moofa.pareto("moofa", interrupting, budgets=budgets, population=20, generations=3)
    assert front.interrupted and [r.budget for r in front.results] == [325_000, 400_000]
    assert all(r.peak <= r.budget for r in front.results) and len(front) >= 1
    swept = sweep(budgets, "moofa", interrupting, population=20, generations=3)
    assert swept.interrupted and [r.budget for r in swept] == [325_000, 400_000]
    rows = report.table(["moofa"], budgets, {"moofa": interrupting}, population=20, generations=3)
    assert rows.interrupted and [row["budget"] for row in rows] == [325_000, 400_000]


def test_ctrl_c_while_the_cpp_search_runs_returns_the_finished_budgets(ctrl_c):
    # The signal lands while C++ holds no GIL: the search notices it between generations.
    scorer = linear("moofa")
    budgets = [300_000 + 10_000 * i for i in range(60)]
    timer = threading.Timer(0.25, _thread.interrupt_main)
    timer.start()
    try:
        swept = sweep(budgets, "moofa", scorer, generations=500)
    finally:
        timer.cancel()
    assert swept.interrupted and len(swept) < len(budgets)
    assert [r.budget for r in swept] == budgets[: len(swept)]
    assert all(r.peak <= r.budget and r.generations == 500 for r in swept)


def test_concurrent_searches_from_python_threads_agree_with_sequential_ones():
    scorer = linear("moofa")
    budgets = ["325k", "400k", "500k", "800k"]
    sequential = [moofa.search(b, predictor=scorer, generations=100) for b in budgets]
    results = [None] * len(budgets)

    def run(i):
        results[i] = moofa.search(budgets[i], predictor=scorer, generations=100)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(budgets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.config for r in results] == [r.config for r in sequential]
    assert [r.top1 for r in results] == [r.top1 for r in sequential]


def test_progress_bar_on_sweeps(capsys):
    moofa.pareto("moofa", linear("moofa"), budgets=["325k", "400k"], population=10, generations=2, progress=True)
    err = capsys.readouterr().err
    assert "search moofa" in err and "2/2" in err


# --- quality: against a plain Python port of OFA's EvolutionFinder ----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("which", ["ridge", "shipped"])
def test_quality_at_least_that_of_ofa_evolution_finder(ridge, which):
    """Same predictor, same number of predictor evaluations (population 100, 50 generations:
    5,100), 10 seeds: moofa's median best is at least the port's, at 325k, 400k and 800k."""
    scorer = ridge[0] if which == "ridge" else moofa.load_predictor("moofa").scorer
    tables = helpers.SlotTables("moofa")
    accuracy = helpers.port_predictor(scorer, "moofa")
    for budget in (325_000, 400_000, 800_000):
        ours, port = [], []
        for seed in range(10):
            finder = helpers.OFAEvolutionFinder(
                "moofa", tables.peak, accuracy, max_time_budget=50, seed=seed, batch_tables=tables
            )
            _, best = finder.run_evolution_search(budget)
            assert tables.peak(best[1]) <= budget
            r = moofa.search(
                budget, predictor=scorer, seed=seed, population=100, generations=50, max_evaluations=finder.evaluations
            )
            assert r.evaluations <= finder.evaluations == 5_100
            ours.append(r.top1)
            port.append(best[0])
        assert np.median(ours) >= np.median(port), (budget, ours, port)


def test_linear_scorer_helper_checks_its_input():
    n = _core.LinearScorer.n_features(spec(moofa.get_space("moofa")))
    assert isinstance(linear_scorer(np.ones(n), 1.0, "moofa"), _core.Scorer)
    with pytest.raises(ValueError, match=f"shape \\({n},\\)"):
        linear_scorer(np.ones(n + 1), 0.0, "moofa")
    with pytest.raises(ValueError, match="finite"):
        linear_scorer(np.full(n, math.nan), 0.0, "moofa")


def test_a_top1_beyond_100_percent_warns_in_search_and_pareto():
    # A predictor whose every score is 103.5 % (as the published moofa predictor gives at 800k).
    n = moofa.predictor.one_hot_size("moofa")
    w = np.zeros((n, 1))
    w[0, 0] = 0.25  # a little spread, so the search has something to rank
    pred = moofa.Predictor("moofa", [w], [np.zeros(1)], offset=103.5, metadata={"name": "optimistic"})
    with pytest.warns(moofa.predictor.PredictionRangeWarning, match="optimistic"):
        r = moofa.search("800k", predictor=pred, generations=3)
    assert r.top1 > 100
    with pytest.warns(moofa.predictor.PredictionRangeWarning, match="optimistic"):
        moofa.pareto("moofa", pred, generations=2, population=20)
    # A plain callable's scores are not percentages: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        moofa.search("800k", predictor=lambda rows: rows[:, 0].astype(np.float32) + 500.0, generations=3)
