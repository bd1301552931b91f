"""Memory uniformity: Profile.uniformity / profiles()["uniformity"], the min_uniformity
constraint of moofa.search and moofa.pareto, and the "uniformity" NSGA-II objective.

Ground truth: oracle.py's layer-by-layer histograms (no moofa code) reduced with numpy
(mean / max), and brute-force dominance checks.
"""

from __future__ import annotations

import math

import numpy as np
import oracle
import pytest
from search_helpers import random_linear as linear

import moofa
from moofa import _core

SPACES = ["ofa", "compofa", "moofa", "moofa-e346", "moofa-e1-2"]


def oracle_uniformity(space, net, activations_only: bool = False) -> float:
    """mean / max of the oracle's histogram."""
    hist = np.array(
        oracle.evaluate(
            moofa.get_space(space), net.ks, net.e, net.d, net.image_size, activations_only=activations_only
        )["hist"],
        dtype=np.float64,
    )
    return float(hist.mean() / hist.max())


def numpy_uniformity(hist: np.ndarray, n_layers: np.ndarray) -> np.ndarray:
    """Row-wise mean / max of zero-padded histograms."""
    h = hist.astype(np.float64)
    return h.sum(axis=1) / (n_layers * h.max(axis=1))


# --- the metric -------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("model", ["full", "activations"])
def test_uniformity_is_mean_over_max_of_the_oracle_histogram(space, model):
    rows = moofa.random_subnets(40, space, seed=3)
    got = moofa.profiles(rows, space, memory_model=model)["uniformity"]
    for net, u in zip(moofa.decode(rows, space), got):
        assert u == pytest.approx(oracle_uniformity(space, net, model == "activations"), rel=1e-12)
        assert 0 < u <= 1


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("model", ["full", "activations", "tflm"])
def test_batched_uniformity_matches_numpy_on_its_histograms(space, model):
    rows = moofa.random_subnets(3000 if model != "tflm" else 200, space, seed=5)
    with_hist = moofa.profiles(rows, space, memory_model=model, with_hist=True)
    summary = moofa.profiles(rows, space, memory_model=model, with_hist=False)
    expected = numpy_uniformity(with_hist["hist"], with_hist["n_layers"])
    # Two C++ paths (histogram, table moments) against numpy.
    np.testing.assert_allclose(with_hist["uniformity"], expected, rtol=1e-12)
    np.testing.assert_allclose(summary["uniformity"], expected, rtol=1e-12)
    # The metric is also the ratio of the reported avg and the largest layer.
    np.testing.assert_allclose(with_hist["avg"] / with_hist["hist"].max(axis=1), expected, rtol=1e-12)


@pytest.mark.parametrize("model", ["full", "activations", "tflm"])
def test_profile_uniformity_from_its_histogram(model):
    for net in moofa.decode(moofa.random_subnets(10, "moofa", seed=7), "moofa"):
        p = moofa.profile(net, "moofa", memory_model=model)
        assert p.uniformity == pytest.approx(np.mean(p.hist) / np.max(p.hist), rel=1e-12)
        assert p.to_dict()["uniformity"] == p.uniformity
        assert f"uniformity {p.uniformity:.3f}" in p.table()
        if model != "tflm":
            # A ratio of histogram figures: the unit does not change it.
            assert moofa.profile(net, "moofa", memory_model=model, bytes_per_item=4).uniformity == pytest.approx(
                p.uniformity, rel=1e-12
            )


def test_moofa_widths_use_memory_more_uniformly_than_ofa_widths():
    # The paper's claim, on the metric: random subnets of moofa have a higher mean uniformity.
    u = {s: moofa.profiles(moofa.random_subnets(20000, s, seed=0), s)["uniformity"].mean() for s in ("ofa", "moofa")}
    assert u["moofa"] > u["ofa"] + 0.1


# --- the constraint ---------------------------------------------------------------------


@pytest.mark.parametrize("min_u", [0.45, 0.55, 0.6])
def test_search_respects_min_uniformity(min_u):
    scorer = linear("moofa")
    free = moofa.search("400k", "moofa", scorer, generations=40, seed=2)
    r = moofa.search("400k", "moofa", scorer, generations=40, seed=2, min_uniformity=min_u)
    assert oracle_uniformity("moofa", r.subnet) >= min_u
    assert r.peak <= 400_000 and r.constraints["min_uniformity"] == min_u
    assert r.profile.uniformity == pytest.approx(oracle_uniformity("moofa", r.subnet), rel=1e-12)
    # The constraint binds: the unconstrained best is less uniform than the strictest bound.
    if min_u == 0.6:
        assert free.profile.uniformity < min_u and r.top1 <= free.top1


def test_pareto_respects_min_uniformity_in_every_point():
    front = moofa.pareto("moofa", linear("moofa"), generations=40, seed=1, min_uniformity=0.5)
    assert len(front) >= 3
    for net, u in zip(front.subnets, front.uniformity):
        assert oracle_uniformity("moofa", net) >= 0.5
        assert u == pytest.approx(oracle_uniformity("moofa", net), rel=1e-12)
    swept = moofa.pareto("moofa", linear("moofa"), budgets=["400k", "800k"], generations=20, min_uniformity=0.5)
    assert all(oracle_uniformity("moofa", net) >= 0.5 for net in swept.subnets)


def test_unreachable_min_uniformity_says_no_subnet_fits():
    with pytest.raises(ValueError, match="no subnet satisfying the constraints"):
        moofa.search("400k", "moofa", linear("moofa"), generations=2, min_uniformity=0.99)


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf, "0.5", True])
def test_bad_min_uniformity_names_the_option_and_its_range(value):
    for call in (
        lambda: moofa.search("400k", "moofa", linear("moofa"), generations=2, min_uniformity=value),
        lambda: moofa.pareto("moofa", linear("moofa"), generations=2, min_uniformity=value),
    ):
        with pytest.raises(ValueError, match=r"min_uniformity must be a number in \[0, 1\]"):
            call()


def test_core_validates_min_uniformity():
    ev = moofa.evaluator("moofa")
    with pytest.raises(ValueError, match=r"min_uniformity must be in \[0, 1\]"):
        _core.evolve(ev, linear("moofa"), max_peak=400_000, min_uniformity=1.5)
    with pytest.raises(ValueError, match=r"min_uniformity must be in \[0, 1\]"):
        _core.nsga2(ev, linear("moofa"), min_uniformity=-1.0)


# --- the objective ----------------------------------------------------------------------


def dominated(points: np.ndarray, i: int) -> bool:
    """Brute force: some other point at least as good in every objective (all minimised)
    and better in one; identical points count the earlier one as dominating."""
    for j in range(len(points)):
        if j == i:
            continue
        le, lt = np.all(points[j] <= points[i]), np.any(points[j] < points[i])
        if le and (lt or j < i):
            return True
    return False


@pytest.mark.parametrize("objectives", [("top1", "peak", "uniformity"), ("top1", "peak", "mflops", "uniformity")])
def test_uniformity_objective_front_is_non_dominated(objectives):
    front = moofa.pareto("moofa", linear("moofa"), objectives=objectives, generations=40, seed=4)
    assert front.objectives == objectives and len(front) >= 5
    truth = [oracle.evaluate(moofa.get_space("moofa"), n.ks, n.e, n.d, n.image_size) for n in front.subnets]
    u = np.array([np.mean(t["hist"]) / max(t["hist"]) for t in truth])
    np.testing.assert_allclose(front.uniformity, u, rtol=1e-12)
    cols = [-front.top1.astype(np.float64), np.array([t["peak"] for t in truth], dtype=np.float64)]
    if "mflops" in objectives:
        cols.append(np.array([t["mflops"] for t in truth]))
    points = np.column_stack([*cols, -u])
    assert not any(dominated(points, i) for i in range(len(points)))
    # A third objective keeps points the two-objective front drops.
    two = moofa.pareto("moofa", linear("moofa"), generations=40, seed=4)
    assert len(front) > len(two)


def test_sweep_front_with_uniformity_objective():
    budgets = ["325k", "400k", "600k", "800k"]
    front = moofa.pareto(
        "moofa", linear("moofa"), budgets=budgets, objectives=("top1", "peak", "uniformity"), generations=20
    )
    results = front.results
    points = np.column_stack(
        [[-r.top1 for r in results], [r.peak for r in results], [-r.profile.uniformity for r in results]]
    )
    keep = [i for i in range(len(results)) if not dominated(points, i)]
    assert [results[i].subnet for i in keep] == front.subnets
    np.testing.assert_allclose(front.uniformity, -points[keep, 2])


def test_non_dominated_with_uniformity_matches_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 60))
        # Few distinct values: many ties.
        top1 = rng.integers(0, 5, n).astype(np.float32)
        peak = rng.integers(0, 5, n).astype(np.int64)
        mflops = rng.integers(0, 4, n).astype(np.float64)
        unif = rng.integers(0, 4, n) / 4.0
        for mf in (None, mflops):
            cols = [-top1.astype(np.float64), peak.astype(np.float64)] + ([] if mf is None else [mf]) + [-unif]
            points = np.column_stack(cols)
            expected = sorted(i for i in range(n) if not dominated(points, i))
            got = _core.non_dominated(top1, peak, mf, unif)
            assert sorted(got.tolist()) == expected, trial
    with pytest.raises(ValueError, match="uniformity"):
        _core.non_dominated(np.zeros(2, np.float32), np.zeros(2, np.int64), None, np.zeros(3))


@pytest.mark.parametrize(
    "objectives", [("top1", "peak", "uniformity", "uniformity"), ("top1", "uniformity"), ("peak", "uniformity")]
)
def test_bad_objectives_name_the_allowed_ones(objectives):
    with pytest.raises(ValueError, match="objectives must be .*'uniformity'"):
        moofa.pareto("moofa", linear("moofa"), objectives=objectives, generations=2)


def test_pareto_options_expose_the_objective_flag():
    o = _core.ParetoOptions()
    assert o.maximize_uniformity is False
    o.maximize_uniformity = True
    assert o.maximize_uniformity is True
