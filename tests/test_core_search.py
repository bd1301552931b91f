"""moofa._core search bindings: evolve, nsga2, non_dominated, LinearScorer.

Ground truth: oracle.py (layer-by-layer peaks), numpy one-hot models and brute force.
"""

from __future__ import annotations

import _thread
import threading

import numpy as np
import oracle
import pytest
import search_helpers as helpers
from conftest import FIXTURES

import moofa
from moofa import _core
from moofa.memory import spec

SPACES = ["ofa", "compofa", "moofa", "moofa-e346", "moofa-e1-2"]


def random_linear(space: str, seed: int = 0):
    """(scorer, weights, bias) of a random linear model, weights N(0, 1), bias 70."""
    scorer = helpers.random_linear(space, seed, shift=0.0, bias=70.0)
    return scorer, np.asarray(scorer.weights, dtype=np.float32), 70.0


def checked_predictor(space: str, budget: int, base):
    """``base`` as a Python predictor that asserts every batch is valid (columns, CompOFA
    coupling, peak <= budget) and that no subnet is scored twice; returns it with the set
    of scored subnets and the batch sizes."""
    seen: set[bytes] = set()
    batches: list[int] = []
    tables = helpers.SlotTables(space)

    def predictor(rows):
        assert rows.dtype == np.uint8 and rows.shape[1] == moofa.get_space(space).n_columns
        moofa.decode(rows, space)  # checks every column, CompOFA's depth -> expand coupling too
        assert np.all(tables.peaks(rows) <= budget)
        for row in rows:
            key = bytes(canonical(space, row))
            assert key not in seen, "a subnet was scored twice"
            seen.add(key)
        batches.append(len(rows))
        return base.score(rows)

    return predictor, seen, batches


def oracle_peak(space: str, row: np.ndarray, **kw) -> int:
    net = moofa.decode(row[None, :], space)[0]
    return oracle.evaluate(moofa.get_space(space), net.ks, net.e, net.d, net.image_size, **kw)["peak"]


# --- LinearScorer ------------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES)
def test_linear_scorer_equals_numpy_one_hot_model(space):
    scorer, w, b = random_linear(space, seed=1)
    rows = moofa.random_subnets(500, space, seed=2)
    configs = [n.to_dict() for n in moofa.decode(rows, space)]
    expected = helpers.one_hot(configs, space) @ w.astype(np.float64) + b
    np.testing.assert_allclose(scorer.score(rows), expected, rtol=0, atol=1e-3)
    np.testing.assert_allclose(scorer.score(rows, threads=2), scorer.score(rows, threads=1))


def test_linear_scorer_rejects_bad_weights_and_rows():
    sp = spec(moofa.get_space("moofa"))
    n = _core.LinearScorer.n_features(sp)
    assert n == 4 + 20 * 3 + 20 * 3  # the published 124-dim encoding
    with pytest.raises(ValueError, match="124"):
        _core.LinearScorer(sp, np.zeros(n - 1, np.float32), 0.0)
    with pytest.raises(ValueError, match="finite"):
        _core.LinearScorer(sp, np.full(n, np.nan, np.float32), 0.0)
    scorer = _core.LinearScorer(sp, np.zeros(n, np.float32), 0.0)
    rows = moofa.random_subnets(3, "moofa", seed=0)
    rows[1, 0] = 4  # resolution index out of range
    with pytest.raises(ValueError, match="row 1, column 0"):
        scorer.score(rows)
    with pytest.raises(ValueError, match=r"\(n, 46\)"):
        scorer.score(rows[:, :10])


# --- evolve --------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES)
def test_evolve_best_fits_and_its_score_is_the_scorer_s(space):
    scorer, _, _ = random_linear(space)
    budget = moofa.min_peak(space)[0] + 60_000
    out = _core.evolve(moofa.evaluator(space), scorer, max_peak=budget, population=50, generations=30, seed=3)
    row = out["best_row"]
    assert out["best_peak"] == oracle_peak(space, row) <= budget
    assert out["best_score"] == pytest.approx(float(scorer.score(row[None, :])[0]), abs=1e-5)
    history = out["history"]
    assert len(history) == out["generations_run"] + 1 == 31
    assert np.all(np.diff(history) >= 0) and history[-1] == pytest.approx(out["best_score"])
    assert out["evaluations"] <= 50 * 31 and out["candidates"] >= out["evaluations"]


@pytest.mark.parametrize("space", ["ofa", "compofa", "moofa"])
@pytest.mark.parametrize("budget", [325_000, 400_000, 600_000, 800_000])
def test_evolve_reaches_the_exact_optimum_of_a_linear_model(space, budget):
    # A linear one-hot model under a separable peak has an exact optimum (per-stage DP
    # over oracle slot figures): the search must find it.
    scorer, w, b = helpers.ridge_scorer(FIXTURES, f"{space}-imagenet", space)
    best = helpers.exact_linear_optimum(w, b, space, budget, helpers.SlotTables(space))
    out = _core.evolve(moofa.evaluator(space), scorer, max_peak=budget, seed=0)
    assert out["best_score"] == pytest.approx(best, abs=2e-3)


def test_evolve_is_deterministic_across_thread_counts():
    scorer, _, _ = random_linear("moofa")
    ev = moofa.evaluator("moofa")
    # 600 children per generation: the breeding really runs on several threads.
    runs = [
        _core.evolve(ev, scorer, max_peak=400_000, population=600, generations=6, seed=11, threads=t) for t in (1, 2, 3)
    ]
    for other in runs[1:]:
        assert other.keys() == runs[0].keys()
        for key, value in runs[0].items():
            np.testing.assert_array_equal(other[key], value, err_msg=key)
    other_seed = _core.evolve(ev, scorer, max_peak=400_000, population=600, generations=6, seed=12)
    assert not np.array_equal(other_seed["history"], runs[0]["history"])


@pytest.mark.parametrize("space", ["compofa", "moofa-e1-2"])
def test_evolve_scores_each_subnet_once_and_only_valid_ones(space):
    budget = moofa.min_peak(space)[0] + 100_000
    base, _, _ = random_linear(space, seed=5)
    predictor, seen, batches = checked_predictor(space, budget, base)
    out = _core.evolve(moofa.evaluator(space), predictor, max_peak=budget, population=40, generations=40, seed=2)
    assert sum(batches) == out["evaluations"] == len(seen)
    assert max(batches) <= 40  # one batch per generation


# --- structure niche and polish ------------------------------------------------------------


@pytest.mark.parametrize("space", ["compofa", "moofa"])
@pytest.mark.parametrize("budget", [325_000, 800_000])
def test_polish_of_every_structure_reaches_the_exact_optimum_of_a_linear_model(space, budget):
    # A linear model under a separable peak: with every depth vector of every resolution in
    # reach (radius = the number of stages, no pruning), one ascent sweep per vector gives
    # each vector's exact optimum, so the polish of a one-generation search must reach the
    # exact optimum (per-stage DP over oracle slot figures), which that search alone does not.
    scorer, w, b = random_linear(space, seed=3)
    best = helpers.exact_linear_optimum(w, b, space, budget, helpers.SlotTables(space))
    ev = moofa.evaluator(space)
    n_stages = moofa.get_space(space).n_stages
    opts = {"max_peak": budget, "population": 100, "generations": 1, "seed": 4}
    plain = _core.evolve(ev, scorer, **opts)
    out = _core.evolve(ev, scorer, **opts, polish_radius=n_stages, polish_keep=10**6)
    assert plain["best_score"] < best - 1e-3
    assert out["best_score"] == pytest.approx(best, abs=2e-3)
    assert oracle_peak(space, out["best_row"]) <= budget
    assert float(scorer.score(out["best_row"][None, :])[0]) == out["best_score"]


@pytest.mark.parametrize("space", ["compofa", "moofa-e1-2"])
def test_polish_scores_each_subnet_once_and_only_valid_ones(space):
    budget = moofa.min_peak(space)[0] + 100_000
    base, _, _ = random_linear(space, seed=5)
    predictor, seen, batches = checked_predictor(space, budget, base)
    kw = {"max_peak": budget, "population": 40, "generations": 10, "seed": 2}
    plain = _core.evolve(moofa.evaluator(space), base, **kw)
    out = _core.evolve(moofa.evaluator(space), predictor, **kw, polish_radius=2)
    assert sum(batches) == out["evaluations"] == len(seen) > plain["evaluations"]
    # The polish runs after the evolution: it can only raise the best score.
    assert out["best_score"] >= plain["best_score"]
    assert np.array_equal(out["history"], plain["history"])


def test_polish_respects_mflops_params_and_uniformity_limits():
    space = "ofa"
    scorer, _, _ = random_linear(space, seed=6)
    limits = {"max_peak": 700_000, "max_mflops": 150.0, "max_params": 4_000_000, "min_uniformity": 0.2}
    out = _core.evolve(
        moofa.evaluator(space), scorer, **limits, population=30, generations=5, seed=1, polish_radius=3, polish_keep=50
    )
    net = moofa.decode(out["best_row"][None, :], space)[0]
    truth = oracle.evaluate(moofa.get_space(space), net.ks, net.e, net.d, net.image_size)
    assert truth["peak"] <= 700_000 and truth["mflops"] <= 150.0 and truth["params"] <= 4_000_000
    hist = np.asarray(truth["hist"], dtype=float)
    assert hist.mean() / hist.max() >= 0.2


def test_niche_and_polish_are_deterministic_across_thread_counts():
    scorer, _, _ = random_linear("moofa", seed=7)
    ev = moofa.evaluator("moofa")
    runs = [
        _core.evolve(
            ev,
            scorer,
            max_peak=400_000,
            population=600,
            generations=6,
            seed=3,
            threads=t,
            polish_radius=2,
            depth_niche=2,
        )
        for t in (1, 3)
    ]
    for key, value in runs[0].items():
        np.testing.assert_array_equal(runs[1][key], value, err_msg=key)


def test_structure_niche_off_for_a_zero_share_is_the_plain_search():
    scorer, _, _ = random_linear("moofa", seed=8)
    ev = moofa.evaluator("moofa")
    kw = {"max_peak": 400_000, "population": 50, "generations": 30, "seed": 9}
    a = _core.evolve(ev, scorer, **kw, depth_niche=0)
    b = _core.evolve(ev, scorer, **kw, depth_niche_share=0.0)
    c = _core.evolve(ev, scorer, **kw)
    np.testing.assert_array_equal(a["history"], b["history"])
    assert not np.array_equal(a["history"], c["history"]) or not np.array_equal(a["best_row"], c["best_row"])


def canonical(space: str, row: np.ndarray) -> np.ndarray:
    """Idle slots zeroed (their genes do not change the subnet), computed independently."""
    sp = moofa.get_space(space)
    out = row.copy()
    s, n = sp.n_stages, sp.n_slots
    first = 0
    for i, stage in enumerate(sp.stages):
        depth = sp.depths[row[1 + i]]
        for j in range(depth, stage.max_depth):
            out[1 + s + first + j] = 0
            out[1 + s + n + first + j] = 0
        first += stage.max_depth
    return out


def test_evolve_stops_at_max_evaluations():
    scorer, _, _ = random_linear("moofa")
    out = _core.evolve(
        moofa.evaluator("moofa"), scorer, max_peak=500_000, population=30, generations=100, max_evaluations=95
    )
    assert out["evaluations"] == 95
    assert out["generations_run"] == 3  # 30 + 30 + 30 + 5


def test_evolve_respects_mflops_and_params_limits():
    space = "ofa"
    scorer, _, _ = random_linear(space)
    out = _core.evolve(
        moofa.evaluator(space),
        scorer,
        max_peak=700_000,
        max_mflops=150.0,
        max_params=4_000_000,
        population=40,
        generations=20,
        seed=1,
    )
    net = moofa.decode(out["best_row"][None, :], space)[0]
    truth = oracle.evaluate(moofa.get_space(space), net.ks, net.e, net.d, net.image_size)
    assert truth["peak"] <= 700_000 and truth["mflops"] <= 150.0 and truth["params"] <= 4_000_000


def test_evolve_activations_memory_model():
    scorer, _, _ = random_linear("moofa")
    budget = 150_000  # below the full model's minimum, fine for activations only
    out = _core.evolve(moofa.evaluator("moofa", "activations"), scorer, max_peak=budget, population=30, generations=10)
    assert oracle_peak("moofa", out["best_row"], activations_only=True) <= budget


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"population": 0}, "population"),
        ({"generations": -1}, "generations"),
        ({"parent_ratio": 0.0}, "parent_ratio"),
        ({"mutation_ratio": 1.5}, "mutation_ratio"),
        ({"mutate_prob": -0.1}, "mutate_prob"),
        ({"resolution_mutate_prob": 2.0}, "resolution_mutate_prob"),
        ({"max_tries": 0}, "max_tries"),
        ({"max_peak": 0}, "max_peak"),
        ({"max_mflops": -1.0}, "max_mflops"),
        ({"max_params": 0}, "max_params"),
        ({"resolution_niche": -1}, "resolution_niche"),
        ({"max_evaluations": -5}, "max_evaluations"),
        ({"depth_niche": -1}, "depth_niche"),
        ({"depth_niche_share": 1.5}, "depth_niche_share"),
        ({"polish_radius": -1}, "polish_radius"),
        ({"polish_keep": 0}, "polish_keep"),
    ],
)
def test_evolve_rejects_bad_options(bad, message):
    scorer, _, _ = random_linear("moofa")
    kwargs = {"max_peak": 400_000, "population": 10, "generations": 2, **bad}
    with pytest.raises(ValueError, match=message):
        _core.evolve(moofa.evaluator("moofa"), scorer, **kwargs)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"island_seeds": []}, r"islands: must be 1 to 1024, got 0"),
        ({"island_seeds": [1, 2], "survivors": 0}, r"survivors: must be 1 to the number of islands \(2\), got 0"),
        ({"island_seeds": [1, 2], "survivors": 3}, "survivors"),
        ({"island_seeds": [1, 2, 3], "survivors": 1}, r"race_generation: must be 1 to generations \(4\), got 0"),
        ({"island_seeds": [1, 2, 3], "survivors": 1, "race_generation": 5}, "race_generation"),
        ({"island_seeds": [1, 2], "race_generation": -1}, r"race_generation: must be 0 to generations"),
    ],
)
def test_evolve_rejects_bad_island_options(bad, message):
    scorer, _, _ = random_linear("moofa")
    with pytest.raises(ValueError, match=message):
        _core.evolve(moofa.evaluator("moofa"), scorer, max_peak=400_000, population=10, generations=4, **bad)


def test_evolve_one_island_is_the_plain_evolution():
    scorer, _, _ = random_linear("moofa", seed=3)
    ev = moofa.evaluator("moofa")
    kw = dict(max_peak=400_000, population=20, generations=15)
    plain = _core.evolve(ev, scorer, seed=9, **kw)
    one = _core.evolve(ev, scorer, seed=0, island_seeds=[9], **kw)
    for key in ("best_row", "history"):
        assert np.array_equal(plain[key], one[key])
    assert (plain["evaluations"], plain["candidates"]) == (one["evaluations"], one["candidates"])


def test_islands_propagate_predictor_errors_and_ctrl_c(ctrl_c):
    def broken(rows):
        raise RuntimeError("predictor exploded")

    ev = moofa.evaluator("moofa")
    with pytest.raises(RuntimeError, match="predictor exploded"):
        _core.evolve(
            ev,
            broken,
            max_peak=400_000,
            population=10,
            generations=4,
            island_seeds=[1, 2, 3],
            survivors=1,
            race_generation=2,
        )
    # Ctrl-C reaches the calling thread while the islands run on theirs: every island stops.
    scorer, _, _ = random_linear("moofa")
    done = threading.Event()
    presser = threading.Thread(target=_press_ctrl_c_until, args=(done,))
    presser.start()
    try:
        out = _core.evolve(
            ev,
            scorer,
            max_peak=800_000,
            population=30,
            generations=100_000,
            island_seeds=[1, 2, 3, 4],
            survivors=2,
            race_generation=5,
        )
    finally:
        done.set()
        presser.join()
    assert out["interrupted"] is True and 0 < out["generations_run"] < 100_000


def test_evolve_rejects_infeasible_constraints_and_foreign_scorers():
    scorer, _, _ = random_linear("moofa")
    with pytest.raises(ValueError, match="no subnet satisfying the constraints"):
        _core.evolve(
            moofa.evaluator("moofa"), scorer, max_peak=400_000, max_mflops=1.0, population=5, generations=1, max_tries=5
        )
    shallow = moofa.get_space("moofa").replace(name="moofa-3", stages=moofa.get_space("moofa").stages[:3])
    with pytest.raises(ValueError, match="columns"):
        _core.evolve(moofa.evaluator(shallow), scorer, max_peak=400_000, population=5, generations=1)
    with pytest.raises(TypeError, match="predictor must be"):
        _core.evolve(moofa.evaluator("moofa"), 42, max_peak=400_000)


@pytest.mark.parametrize(
    "returned, message",
    [
        (lambda rows: np.zeros(len(rows) + 1), r"shape \(\d+,\)"),
        (lambda rows: np.zeros((len(rows), 2)), r"shape \(\d+, 2\)"),
        (lambda rows: np.where(np.arange(len(rows)) == 3, np.nan, 1.0), r"non-finite score \(nan\) for config 3"),
        (lambda rows: np.full(len(rows), np.inf), "non-finite score"),
        (lambda rows: ["high"] * len(rows), "one number per config"),
        (lambda rows: None, "one number per config"),
    ],
)
def test_callable_predictor_output_is_checked(returned, message):
    with pytest.raises(ValueError, match=message):
        _core.evolve(moofa.evaluator("moofa"), returned, max_peak=400_000, population=10, generations=2)


@pytest.mark.parametrize(
    "returned",
    [
        lambda rows: np.ones(len(rows)) + 1j,
        lambda rows: [complex(1, 0)] * len(rows),
        lambda rows: np.ones(len(rows), dtype=np.complex64),
    ],
)
def test_callable_predictor_complex_scores_are_refused(returned):
    with pytest.raises(TypeError, match="the predictor returned complex scores"):
        _core.evolve(moofa.evaluator("moofa"), returned, max_peak=400_000, population=10, generations=2)
    with pytest.raises(TypeError, match="complex"):
        moofa.pareto("moofa", returned, population=10, generations=2)


def test_callable_predictor_non_finite_scores_are_refused_through_the_facade():
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="the predictor returned a non-finite score"):
            moofa.search("400k", predictor=lambda rows, v=bad: np.full(len(rows), v), population=10, generations=2)
        with pytest.raises(ValueError, match="the predictor returned a non-finite score"):
            moofa.pareto("moofa", lambda rows, v=bad: np.full(len(rows), v), population=10, generations=2)


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_pareto_ctrl_c_in_a_python_predictor_returns_the_front_so_far(how, ctrl_c):
    """As with a C++ predictor: Ctrl-C during NSGA-II gives back the front found so far."""
    scorer, _, _ = random_linear("moofa")
    calls = []

    def predictor(rows):
        calls.append(len(rows))
        if len(calls) == 6:
            if how == "exception":
                raise KeyboardInterrupt
            _thread.interrupt_main()  # a real SIGINT, raised at the next Python step
            for _ in range(1000):  # Python steps: the handler runs in one of them
                pass
        return scorer.score(rows)

    front = moofa.pareto("moofa", predictor, population=20, generations=1000)
    assert front.interrupted and len(front) > 0
    assert front.evaluations == sum(calls[:5])  # the interrupted batch is not counted
    # Interrupted while the initial population is scored: an empty front, not an error.
    calls.clear()
    calls.extend([0] * 5)
    empty = moofa.pareto("moofa", predictor, population=20, generations=10)
    assert empty.interrupted and len(empty) == 0 and empty.evaluations == 0
    # search() turns it into KeyboardInterrupt, as with a C++ predictor.
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        moofa.search("800k", predictor=predictor, population=20, generations=1000)


def test_callable_predictor_exceptions_propagate():
    def broken(rows):
        raise RuntimeError("predictor exploded")

    with pytest.raises(RuntimeError, match="predictor exploded"):
        _core.evolve(moofa.evaluator("moofa"), broken, max_peak=400_000, population=10, generations=2)
    # A column of scores (n, 1), as a regression model returns, is accepted.
    scorer, _, _ = random_linear("moofa")
    out = _core.evolve(
        moofa.evaluator("moofa"), lambda r: scorer.score(r)[:, None], max_peak=400_000, population=10, generations=2
    )
    assert out["evaluations"] > 0


# --- non_dominated and NSGA-II ---------------------------------------------------------------


def brute_force_front(scores, peaks, mflops=None):
    pts = np.stack(
        [-np.asarray(scores, float), np.asarray(peaks, float)]
        + ([np.asarray(mflops, float)] if mflops is not None else []),
        axis=1,
    )
    keep = []
    for i, p in enumerate(pts):
        dominated = np.any(np.all(pts <= p, axis=1) & np.any(pts < p, axis=1))
        duplicate = np.any(np.all(pts[:i] == p, axis=1))
        if not dominated and not duplicate:
            keep.append(i)
    return sorted(keep)


@pytest.mark.parametrize("with_mflops", [False, True])
def test_non_dominated_matches_brute_force(with_mflops):
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 8, n).astype(np.float32)  # ties on purpose
        peaks = rng.integers(0, 8, n).astype(np.int64)
        mflops = rng.integers(0, 5, n).astype(np.float64) if with_mflops else None
        got = _core.non_dominated(scores, peaks, mflops)
        assert sorted(got.tolist()) == brute_force_front(scores, peaks, mflops)
        assert np.all(np.diff(peaks[got]) >= 0)


def deb_front_ranks(f: np.ndarray) -> list[int]:
    """Deb's fast non-dominated sort (NSGA-II, 2002), written out plainly: O(n^2) lists."""
    n = len(f)
    dominated: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(n):
            if i != j and np.all(f[i] <= f[j]) and np.any(f[i] < f[j]):
                dominated[i].append(j)
                count[j] += 1
    ranks = [0] * n
    front = [i for i in range(n) if count[i] == 0]
    k = 0
    while front:
        nxt = []
        for i in front:
            ranks[i] = k
            for j in dominated[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        front, k = nxt, k + 1
    return ranks


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("levels", [3, 20, None])
def test_front_ranks_equal_debs_sort(m, levels):
    """Random objective sets with many ties and exact duplicates (few levels per objective)."""
    rng = np.random.default_rng(m * 100 + (levels or 0))
    for n in (0, 1, 2, 7, 150):
        f = rng.normal(size=(n, m)) if levels is None else rng.integers(0, levels, size=(n, m)).astype(float)
        if n > 2:
            f[n // 2] = f[0]  # a duplicate at least
        assert _core.front_ranks(f).tolist() == deb_front_ranks(f), (n, m, levels)


_BIG_PARETO_SCRIPT = r"""
import resource
import numpy as np
import moofa
from moofa import _core
from moofa.memory import spec

sp = moofa.get_space("moofa")
w = np.random.default_rng(0).normal(size=_core.LinearScorer.n_features(spec(sp))).astype(np.float32)
scorer = _core.LinearScorer(spec(sp), w, 70.0)
for mflops in (False, True):
    out = _core.nsga2(moofa.evaluator(sp), scorer, population=20_000, generations=2, minimize_mflops=mflops)
    assert out["evaluations"] == 60_000 and len(out["rows"]) > 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_nsga2_memory_grows_linearly_with_the_population():
    """Population 20,000: the sort that kept per-member domination lists peaked at GBs
    (1.0 GB measured at 10,000, growing with the square); the front assignment needs
    O(population) memory (about 50 MB for the whole process here)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _BIG_PARETO_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_kib = int(proc.stdout.split()[-1])
    assert peak_kib < 600 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_front_ranks_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        _core.front_ranks(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        _core.front_ranks(np.zeros(3))


@pytest.mark.parametrize("space", ["compofa", "moofa"])
def test_nsga2_front_is_non_dominated_exact_and_deterministic(space):
    scorer, _, _ = helpers.ridge_scorer(FIXTURES, f"{space}-imagenet", space)
    cap = 700_000
    ev = moofa.evaluator(space)
    out = _core.nsga2(ev, scorer, max_peak=cap, population=40, generations=25, seed=1, threads=1)
    rows, scores, peaks = out["rows"], out["scores"], out["peaks"]
    assert len(rows) >= 5
    assert sorted(_core.non_dominated(scores, peaks).tolist()) == list(range(len(rows)))
    assert brute_force_front(scores, peaks) == list(range(len(rows)))
    assert np.all(np.diff(peaks) > 0) and np.all(np.diff(scores) > 0)
    assert [oracle_peak(space, r) for r in rows] == peaks.tolist()
    # The stratified initial population starts at the space's smallest peak.
    assert peaks.max() <= cap and peaks.min() == moofa.min_peak(space)[0]
    np.testing.assert_allclose(scorer.score(rows), scores, atol=1e-5)
    again = _core.nsga2(ev, scorer, max_peak=cap, population=40, generations=25, seed=1, threads=2)
    np.testing.assert_array_equal(again["rows"], rows)


def test_nsga2_with_mflops_objective():
    scorer, _, _ = random_linear("moofa", seed=8)
    out = _core.nsga2(moofa.evaluator("moofa"), scorer, minimize_mflops=True, population=30, generations=15)
    truth = [moofa.profile(n, "moofa").mflops for n in moofa.decode(out["rows"], "moofa")]
    np.testing.assert_allclose(out["mflops"], truth)
    assert brute_force_front(out["scores"], out["peaks"], out["mflops"]) == list(range(len(out["rows"])))


def test_nsga2_front_tracks_the_exact_linear_optimum():
    space = "moofa"
    scorer, w, b = helpers.ridge_scorer(FIXTURES, "moofa-imagenet", space)
    tables = helpers.SlotTables(space)
    out = _core.nsga2(moofa.evaluator(space), scorer, max_peak=800_000, population=100, generations=200, seed=0)
    gaps = []
    for budget in range(300_000, 800_001, 25_000):
        best = helpers.exact_linear_optimum(w, b, space, budget, tables)
        gaps.append(best - out["scores"][out["peaks"] <= budget].max())
    assert max(gaps) < 0.5 and np.mean(gaps) < 0.1


def _press_ctrl_c_until(done: threading.Event, every: float = 0.2) -> None:
    # Pressing it again until the search returns makes the test immune to a loaded
    # machine delaying one press past the point where the search had started.
    while not done.wait(every):
        _thread.interrupt_main()


def test_nsga2_ctrl_c_returns_the_front_found_so_far(ctrl_c):
    scorer, _, _ = random_linear("moofa")
    done = threading.Event()
    presser = threading.Thread(target=_press_ctrl_c_until, args=(done,))
    presser.start()
    try:
        out = _core.nsga2(moofa.evaluator("moofa"), scorer, population=20, generations=200_000, seed=0)
    finally:
        done.set()
        presser.join()
    assert out["interrupted"] is True
    assert 0 < out["generations_run"] < 200_000 and len(out["rows"]) > 0


def test_evolve_ctrl_c_stops_between_generations(ctrl_c):
    scorer, _, _ = random_linear("moofa")
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        out = _core.evolve(
            moofa.evaluator("moofa"), scorer, max_peak=800_000, population=50, generations=100_000, seed=0
        )
    finally:
        timer.cancel()
    assert out["interrupted"] is True and 0 < out["generations_run"] < 100_000
    assert len(out["history"]) == out["generations_run"] + 1
    # The facade turns it into KeyboardInterrupt (sweeps catch it and keep finished budgets).
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            moofa.search("800k", predictor=scorer, population=50, generations=100_000)
    finally:
        timer.cancel()


# --- threads that cannot start --------------------------------------------------------------

_THREAD_LIMIT_SCRIPT = r"""
import mmap, resource, sys
import numpy as np
import moofa
from moofa import _core
from moofa.memory import spec

sp = moofa.get_space("moofa")
w = np.random.default_rng(0).normal(size=_core.LinearScorer.n_features(spec(sp))).astype(np.float32)
scorer = _core.LinearScorer(spec(sp), w, 70.0)
predictor = moofa.load_predictor("moofa")
front = _core.nsga2(moofa.evaluator(sp), scorer, population=64, generations=0, threads=1)["rows"]
rows = np.ascontiguousarray(np.resize(front, (400_000, front.shape[1])))

def run(threads):
    return [
        moofa.search("800k", predictor=scorer, population=600, generations=3, threads=threads).config,
        moofa.pareto(predictor=scorer, population=600, generations=3, threads=threads).rows.tolist(),
        moofa.peak_memory(rows, threads=threads).tolist(),
        {k: v.tolist() for k, v in moofa.profiles(rows[:100_000], threads=threads).items()},
        predictor.predict(rows[:100_000], threads=threads).tolist(),
    ]

status = open("/proc/self/status").read().split("VmSize:")[1].split()[0]
limit = int(status) * 1024 + (300 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    mmap.mmap(-1, 300 * (8 << 20))  # the stacks of 300 threads
    sys.exit("the address-space limit does not bite")
except (OSError, MemoryError):
    pass
assert run(300) == run(1)
print("same results")
"""


def test_threads_that_cannot_start_fall_back_to_fewer():
    """Under an address-space limit that leaves room for a few dozen thread stacks,
    threads=300 completes (no abort, no deadlock) with the results of threads=1."""
    import resource
    import subprocess
    import sys

    def stack_8mb():  # glibc sizes thread stacks from RLIMIT_STACK at start-up
        resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))

    # The timeout detects a deadlock; the work itself takes seconds.
    proc = subprocess.run(
        [sys.executable, "-c", _THREAD_LIMIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=stack_8mb,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same results" in proc.stdout


def test_nsga2_population_is_capped_with_a_clear_error():
    scorer, _, _ = random_linear("moofa")
    with pytest.raises(ValueError, match=r"population must be in \[2, 100000\]"):
        _core.nsga2(moofa.evaluator("moofa"), scorer, population=100_001, generations=1)
    with pytest.raises(ValueError, match=r"population must be an integer in \[2, 100000\]"):
        moofa.pareto(predictor=scorer, population=100_001, generations=1)
