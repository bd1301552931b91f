"""moofa.optimum: the branch and bound against an exhaustive, independent enumeration.

Ground truth: every subnet of small user-defined spaces, its peak, MFLOPs and parameters
from the plain layer-by-layer oracle (tests/oracle.py) and its score from a float64 numpy
forward pass of the predictor on the one-hot encoding built here.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from oracle import evaluate
from search_helpers import mlp_forward

import moofa
from moofa._ext import core

SMALL = moofa.Space(
    name="test-optimum-small",
    stages=(moofa.Stage(16, 2, max_depth=2), moofa.Stage(24, 2, se=True, max_depth=2), moofa.Stage(40, 1, max_depth=2)),
    kernels=(3, 5),
    expands=(2, 4),
    depths=(1, 2),
    resolutions=(96, 128),
)
COUPLED = moofa.Space(
    name="test-optimum-coupled",
    stages=(moofa.Stage(16, 2, max_depth=3), moofa.Stage(32, 2, max_depth=3)),
    kernels=(3, 5, 7),
    expands=(3, 6),
    depths=(2, 3),
    resolutions=(96, 128, 160),
    expand_by_depth={2: 3, 3: 6},
)


def enumerate_space(sp: moofa.Space) -> list[dict]:
    """Every subnet of sp as dict(ks, e, d, image_size) over the active slots, with the
    oracle's peak (both memory models), MFLOPs and params and the one-hot features."""
    per_stage = []
    for st in sp.stages:
        options = []
        for d in sp.depths:
            n = min(d, st.max_depth)
            if sp.expand_by_depth is not None:
                expands = [(sp.expand_by_depth[d],) * n]
            else:
                expands = list(itertools.product(sp.expands, repeat=n))
            for ks in itertools.product(sp.kernels, repeat=n):
                for es in expands:
                    options.append((d, ks, es))
        per_stage.append(options)
    nets = []
    n_res, n_k, n_e = len(sp.resolutions), len(sp.kernels), len(sp.expands)
    n_slots = sum(st.max_depth for st in sp.stages)
    for ri, r in enumerate(sp.resolutions):
        for combo in itertools.product(*per_stage):
            ks, es, ds = [], [], []
            feats = [ri]
            slot = 0
            for st, (d, k_st, e_st) in zip(sp.stages, combo):
                ds.append(d)
                for p in range(st.max_depth):
                    if p < len(k_st):
                        ks.append(k_st[p])
                        es.append(e_st[p])
                        feats.append(n_res + slot * n_k + sp.kernels.index(k_st[p]))
                        feats.append(n_res + n_slots * n_k + slot * n_e + sp.expands.index(e_st[p]))
                    else:
                        ks.append(sp.kernels[0])
                        es.append(sp.expand_by_depth[d] if sp.expand_by_depth else sp.expands[0])
                    slot += 1
            full = evaluate(sp, ks, es, ds, r)
            act = evaluate(sp, ks, es, ds, r, activations_only=True)
            nets.append(
                {
                    "ks": ks,
                    "e": es,
                    "d": ds,
                    "image_size": r,
                    "peak_full": full["peak"],
                    "peak_activations": act["peak"],
                    "mflops": full["mflops"],
                    "params": full["params"],
                    "feats": feats,
                }
            )
    return nets


def forward(nets: list[dict], pred: moofa.Predictor) -> np.ndarray:
    n_in = pred.weights[0].shape[0]
    x = np.zeros((len(nets), n_in))
    for i, net in enumerate(nets):
        x[i, net["feats"]] = 1.0
    return mlp_forward(pred, x)


def random_predictor(sp: moofa.Space, hidden: tuple, seed: int, skip: bool) -> moofa.Predictor:
    rng = np.random.default_rng(seed)
    n_in = core.LinearScorer.n_features(moofa.memory.spec(sp))
    sizes = [n_in, *hidden, 1]
    weights = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [(rng.normal(size=b) * 0.5).astype(np.float32) for b in sizes[1:]]
    s = rng.normal(size=n_in).astype(np.float32) if skip else None
    return moofa.Predictor(sp, weights, biases, skip=s, scale=0.2, offset=50.0)


@pytest.fixture(scope="module")
def small_nets():
    return enumerate_space(SMALL)


@pytest.fixture(scope="module")
def coupled_nets():
    return enumerate_space(COUPLED)


def brute_best(nets, scores, budget, model="full", max_mflops=None, max_params=None):
    ok = np.array([n[f"peak_{model}"] <= budget for n in nets])
    if max_mflops is not None:
        ok &= np.array([n["mflops"] <= max_mflops for n in nets])
    if max_params is not None:
        ok &= np.array([n["params"] <= max_params for n in nets])
    assert ok.any()
    return float(scores[ok].max())


def _key(sp: moofa.Space, ks, es, ds, image_size) -> tuple:
    active = []
    slot = 0
    for st, d in zip(sp.stages, ds):
        for p in range(st.max_depth):
            if p < min(d, st.max_depth):
                active.append((ks[slot], es[slot]))
            slot += 1
    return (image_size, tuple(ds), tuple(active))


def oracle_score(sp: moofa.Space, net: moofa.Subnet, nets, scores) -> tuple[float, dict]:
    """The enumeration's score and entry of a subnet the search returned."""
    cfg = net.to_dict()
    want = _key(sp, cfg["ks"], cfg["e"], cfg["d"], cfg["image_size"])
    for n, s in zip(nets, scores):
        if _key(sp, n["ks"], n["e"], n["d"], n["image_size"]) == want:
            return float(s), n
    raise AssertionError(f"subnet {cfg} not in the enumeration")


def unseeded(sp, pred, budget, nets, scores, **limits) -> float:
    """The branch and bound alone (no starting subnet from a search): its proven best, checked
    against the enumeration; returns the enumeration's score of the subnet it returned."""
    raw = core.mlp_optimum(
        moofa.evaluator(sp, limits.pop("memory_model", "full")),
        pred.weights,
        pred.biases,
        skip=pred.skip,
        scale=pred.scale,
        offset=pred.offset,
        max_peak=budget,
        **limits,
    )
    assert raw["proven_optimal"] and raw["upper_bound"] == raw["best_score"]
    got, _ = oracle_score(sp, moofa.decode(raw["best_row"][None, :], sp)[0], nets, scores)
    assert raw["best_score"] == pytest.approx(got, abs=1e-6)
    return got


@pytest.mark.parametrize(
    "hidden,skip", [((), False), ((24,), True), ((48,), False), ((16, 16), False), ((24, 12, 8), True)]
)
@pytest.mark.parametrize("quantile", [0.05, 0.4, 1.0])
def test_optimum_matches_enumeration(small_nets, hidden, skip, quantile):
    pred = random_predictor(SMALL, hidden, seed=len(hidden) * 7 + int(quantile * 100), skip=skip)
    scores = forward(small_nets, pred)
    peaks = np.array([n["peak_full"] for n in small_nets])
    budget = int(np.quantile(peaks, quantile))
    want = brute_best(small_nets, scores, budget)
    assert unseeded(SMALL, pred, budget, small_nets, scores) == pytest.approx(want, abs=1e-6)
    r = moofa.optimum(budget, SMALL, pred, population=20, generations=5)
    assert r.proven_optimal
    got, net = oracle_score(SMALL, r.subnet, small_nets, scores)
    assert net["peak_full"] <= budget and r.peak == net["peak_full"]
    assert got == pytest.approx(want, abs=1e-6)
    assert r.top1 == pytest.approx(want, abs=1e-3)  # the predictor's own float32 score


@pytest.mark.parametrize("model", ["full", "activations"])
@pytest.mark.parametrize("hidden", [(32,), (16, 16)])
def test_optimum_under_flops_and_params_limits(small_nets, model, hidden):
    pred = random_predictor(SMALL, hidden, seed=11, skip=True)
    scores = forward(small_nets, pred)
    peaks = np.array([n[f"peak_{model}"] for n in small_nets])
    budget = int(np.quantile(peaks, 0.7))
    max_mflops = float(np.quantile([n["mflops"] for n in small_nets], 0.3))
    max_params = int(np.quantile([n["params"] for n in small_nets], 0.5))
    want = brute_best(small_nets, scores, budget, model, max_mflops, max_params)
    got = unseeded(
        SMALL, pred, budget, small_nets, scores, memory_model=model, max_mflops=max_mflops, max_params=max_params
    )
    assert got == pytest.approx(want, abs=1e-6)
    r = moofa.optimum(
        budget, SMALL, pred, memory_model=model, max_mflops=max_mflops, max_params=max_params, generations=5
    )
    got, net = oracle_score(SMALL, r.subnet, small_nets, scores)
    assert r.proven_optimal and got == pytest.approx(want, abs=1e-6)
    assert net["mflops"] <= max_mflops and net["params"] <= max_params and net[f"peak_{model}"] <= budget


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("hidden", [(40,), (20, 20)])
def test_optimum_in_a_coupled_space(coupled_nets, seed, hidden):
    pred = random_predictor(COUPLED, hidden, seed=seed, skip=seed % 2 == 0)
    scores = forward(coupled_nets, pred)
    peaks = np.array([n["peak_full"] for n in coupled_nets])
    budget = int(np.quantile(peaks, 0.3 * seed))
    want = brute_best(coupled_nets, scores, budget)
    assert unseeded(COUPLED, pred, budget, coupled_nets, scores) == pytest.approx(want, abs=1e-6)
    r = moofa.optimum(budget, COUPLED, pred, population=10, generations=3)
    got, net = oracle_score(COUPLED, r.subnet, coupled_nets, scores)
    assert r.proven_optimal and got == pytest.approx(want, abs=1e-6) and net["peak_full"] <= budget


def test_linear_scorer_optimum(small_nets):
    rng = np.random.default_rng(5)
    n = core.LinearScorer.n_features(moofa.memory.spec(SMALL))
    w = rng.normal(size=n).astype(np.float32)
    scorer = moofa.linear_scorer(w, 0.25, space=SMALL)
    x = np.zeros((len(small_nets), n))
    for i, net in enumerate(small_nets):
        x[i, net["feats"]] = 1.0
    scores = x @ w.astype(np.float64) + 0.25
    budget = int(np.quantile([m["peak_full"] for m in small_nets], 0.5))
    r = moofa.optimum(budget, SMALL, scorer, generations=2)
    got, _ = oracle_score(SMALL, r.subnet, small_nets, scores)
    assert r.proven_optimal and got == pytest.approx(brute_best(small_nets, scores, budget), abs=1e-6)


def test_search_method_exact_and_auto():
    r = moofa.search("400k", space="moofa", method="exact")
    assert r.proven_optimal and r.to_dict()["proven_optimal"] is True and "proven_optimal=True" in repr(r)
    auto = moofa.search("400k", space="moofa", method="auto")
    assert auto.proven_optimal and auto.subnet == r.subnet
    evo = moofa.search("400k", space="moofa")
    assert not evo.proven_optimal and evo.top1 <= r.top1 + 1e-4


def test_time_limit_gives_an_unproven_but_valid_answer():
    r = moofa.optimum("800k", space="ofa", time_limit=0.05)
    assert r.peak <= 800_000 and r.proven_optimal is False
    assert r.top1 >= moofa.search("800k", space="ofa").top1 - 1e-4


def test_bad_inputs():
    with pytest.raises(ValueError, match="memory_model"):
        moofa.optimum("128KiB", space="moofa-e1-2", memory_model="tflm")
    with pytest.raises(ValueError, match="predictor"):
        moofa.optimum(10**9, SMALL, lambda rows: np.zeros(len(rows), np.float32))
    with pytest.raises(ValueError, match="time_limit"):
        moofa.optimum("400k", time_limit=-1)
    with pytest.raises(ValueError, match="method"):
        moofa.search("400k", method="fast")
    with pytest.raises(ValueError, match="restart_patience"):
        moofa.search("400k", restart_patience=-1)
    with pytest.raises(TypeError, match="optimum"):
        moofa.optimum("400k", nonsense=1)


@pytest.mark.parametrize("budget", [325_000, 600_000])
def test_linear_optimum_on_moofa_matches_the_stagewise_oracle(budget):
    import search_helpers as helpers
    from conftest import FIXTURES

    scorer, w, b = helpers.ridge_scorer(FIXTURES, "moofa-imagenet", "moofa")
    want = helpers.exact_linear_optimum(w, b, "moofa", budget, helpers.SlotTables("moofa"))
    r = moofa.optimum(budget, "moofa", scorer)
    assert r.proven_optimal and r.peak <= budget and r.top1 == pytest.approx(want, abs=2e-3)


def test_constraints_outside_the_bound_are_refused_or_searched():
    # The branch and bound models peak, MFLOPs and params only: a proof under other limits
    # would be a proof of something else.
    with pytest.raises(ValueError, match="min_uniformity"):
        moofa.optimum("400k", "moofa", min_uniformity=0.6)
    r = moofa.search("400k", "moofa", method="auto", min_uniformity=0.6)
    assert not r.proven_optimal
    hist = np.asarray(r.profile.hist, dtype=float)
    assert hist.mean() / hist.max() >= 0.6


# --- the search's branch-and-bound dive ---------------------------------------------------


@pytest.mark.parametrize("hidden", [(16, 16), (24, 12, 8)])
def test_search_dive_proves_the_optimum_of_deep_predictors(small_nets, hidden):
    pred = random_predictor(SMALL, hidden, seed=len(hidden) + 20, skip=len(hidden) == 3)
    scores = forward(small_nets, pred)
    budget = int(np.quantile([n["peak_full"] for n in small_nets], 0.4))
    want = brute_best(small_nets, scores, budget)
    # The dive (on by default for two or more hidden layers, population x generations / 16
    # nodes: 3,125 here) must finish, and prove it.
    r = moofa.search(budget, SMALL, pred, population=100, generations=500)
    assert r.transfer_evaluations == 0  # proven: nothing to transfer
    got, net = oracle_score(SMALL, r.subnet, small_nets, scores)
    assert r.proven_optimal and got == pytest.approx(want, abs=1e-6) and net["peak_full"] <= budget
    assert r.top1 == pytest.approx(want, abs=1e-3) and r.history[-1] == pytest.approx(r.top1)
    assert r.islands == 12 and r.survivors == 2 and 0 < r.dive_nodes <= 100 * 500 // 16
    assert r.to_dict()["islands"] == 12 and r.to_dict()["survivors"] == 2 and r.to_dict()["dive_nodes"] == r.dive_nodes
    from moofa.report import format_result

    text = format_result(r)
    assert (
        "x 12 islands (2 after the race)" in text
        and f"a dive of {r.dive_nodes:,} branch-and-bound nodes (proven optimal)" in text
    )
    off = moofa.search(budget, SMALL, pred, population=100, generations=500, dive_nodes=0)
    assert not off.proven_optimal and off.top1 <= r.top1 + 1e-5 and off.dive_nodes == 0
    # A one-node dive cannot finish: never proven, never worse than no dive.
    short = moofa.search(budget, SMALL, pred, population=4, generations=2, dive_nodes=1)
    alone = moofa.search(budget, SMALL, pred, population=4, generations=2, dive_nodes=0)
    assert not short.proven_optimal and short.top1 >= alone.top1 - 1e-6


def test_dive_is_off_by_default_for_one_hidden_layer_and_on_request(coupled_nets):
    pred = random_predictor(COUPLED, (40,), seed=4, skip=True)
    scores = forward(coupled_nets, pred)
    budget = int(np.quantile([n["peak_full"] for n in coupled_nets], 0.5))
    assert not moofa.search(budget, COUPLED, pred, population=8, generations=3).proven_optimal
    r = moofa.search(budget, COUPLED, pred, population=8, generations=3, dive_nodes=10**6)
    got, _ = oracle_score(COUPLED, r.subnet, coupled_nets, scores)
    assert r.proven_optimal and got == pytest.approx(brute_best(coupled_nets, scores, budget), abs=1e-6)


def test_dive_bad_inputs():
    deep = random_predictor(SMALL, (8, 8), seed=0, skip=False)
    budget = 10**9
    with pytest.raises(ValueError, match="dive_nodes"):
        moofa.search(budget, SMALL, deep, dive_nodes=-1)
    with pytest.raises(ValueError, match="dive_nodes must be an integer"):
        moofa.search(budget, SMALL, deep, dive_nodes=2.5)
    with pytest.raises(ValueError, match="dive_nodes: the branch-and-bound dive needs"):
        moofa.search(budget, SMALL, lambda rows: np.zeros(len(rows), np.float32), dive_nodes=10)
    with pytest.raises(ValueError, match="dive_nodes: the branch-and-bound dive needs"):
        moofa.search(budget, SMALL, deep, dive_nodes=10, min_uniformity=0.1)


def test_published_compofa_predictor_optimum_by_default(shared_dir):
    # The published 400x3 CompOFA predictor's best subnet under 325k items sits in a narrow
    # basin (depths 2,4,2,3,4 at 128 px) that the evolution alone never reaches; the
    # default search's dive must reach it and prove it.
    from conftest import read_fixture
    from oracle import evaluate
    from test_predictor import reference_one_hot, torch_published

    path = shared_dir / "reference" / "predictors" / "compofa.pth.tar"
    pred = moofa.load_predictor(path)
    budget = 325_000
    r = moofa.search(budget, "compofa", pred, seed=0)
    assert r.proven_optimal
    cfg = r.subnet.to_dict()
    assert evaluate(moofa.get_space("compofa"), cfg["ks"], cfg["e"], cfg["d"], cfg["image_size"])["peak"] <= budget
    forward = torch_published(path)
    assert forward(reference_one_hot([r.subnet], "compofa"))[0] == pytest.approx(r.top1, abs=1e-3)
    # Lower bounds from elsewhere: the evolution without the dive, and the published
    # dataset's subnets that fit.
    alone = moofa.search(budget, "compofa", pred, seed=0, dive_nodes=0)
    recs = [x for x in read_fixture("accuracy", "compofa-imagenet") if x["peak_memory"] <= budget]
    assert recs and r.top1 >= alone.top1 and r.top1 >= forward(reference_one_hot(recs, "compofa")).max() - 1e-3
    assert r.top1 > alone.top1 + 1.0  # the basin the evolution misses is worth points
    # The dive alone (one island) climbs out of the evolution's basin; history records it.
    dived = moofa.search(budget, "compofa", pred, seed=0, islands=1)
    assert dived.top1 == pytest.approx(r.top1) and dived.proven_optimal and dived.dive_nodes > 0
    assert dived.history[-2] == pytest.approx(alone.top1) and dived.history[-1] == pytest.approx(dived.top1)


# --- the final climb -------------------------------------------------------------------


def single_gene_neighbours(sp: moofa.Space, key: tuple) -> list[tuple]:
    """Keys (_key) of the subnets one gene away: another resolution; another (kernel,
    expand) of one active slot (kernel only when coupled); another depth of one stage, the
    new slots at the first kernel and expand (coupled: the stage's expands follow its depth)."""
    r, ds, active = key
    stages, at = [], 0
    for st, d in zip(sp.stages, ds):
        n = min(d, st.max_depth)
        stages.append(list(active[at : at + n]))
        at += n
    coupled = sp.expand_by_depth

    def make(image_size, depths, per_stage) -> tuple:
        return (image_size, tuple(depths), tuple(pair for stage in per_stage for pair in stage))

    out = [make(other, ds, stages) for other in sp.resolutions if other != r]
    for s_i, stage in enumerate(stages):
        for p_i, (k, e) in enumerate(stage):
            for k2 in sp.kernels:
                for e2 in [e] if coupled else sp.expands:
                    if (k2, e2) != (k, e):
                        new = [list(x) for x in stages]
                        new[s_i][p_i] = (k2, e2)
                        out.append(make(r, ds, new))
        for d2 in sp.depths:
            if d2 == ds[s_i]:
                continue
            n2 = min(d2, sp.stages[s_i].max_depth)
            new = [list(x) for x in stages]
            kept = stage[:n2] + [(sp.kernels[0], sp.expands[0])] * (n2 - len(stage))
            new[s_i] = [(k, coupled[d2]) for k, _ in kept] if coupled else kept
            depths = list(ds)
            depths[s_i] = d2
            out.append(make(r, depths, new))
    return out


@pytest.mark.parametrize("which", ["small", "coupled"])
def test_climb_ends_where_no_single_gene_move_is_better(which, small_nets, coupled_nets):
    # Checked against the enumeration (float64 scores, oracle peaks), from 12 random starts.
    sp, nets = (SMALL, small_nets) if which == "small" else (COUPLED, coupled_nets)
    pred = random_predictor(sp, (16, 8), seed=31, skip=True)
    scores = forward(nets, pred)
    budget = int(np.quantile([n["peak_full"] for n in nets], 0.6))
    table = {
        _key(sp, n["ks"], n["e"], n["d"], n["image_size"]): (float(x), n["peak_full"]) for n, x in zip(nets, scores)
    }
    fitting = [n for n in nets if n["peak_full"] <= budget]
    rng = np.random.default_rng(0)
    moved = 0
    for i in rng.choice(len(fitting), 12, replace=False):
        start = fitting[i]
        row = moofa.encode([moofa.Subnet(start["ks"], start["e"], start["d"], start["image_size"])], sp)
        out = core.climb(moofa.evaluator(sp), pred.scorer, row, max_peak=budget)
        end = moofa.decode(out["row"][None, :], sp)[0].to_dict()
        key = _key(sp, end["ks"], end["e"], end["d"], end["image_size"])
        score, peak = table[key]
        start_score = table[_key(sp, start["ks"], start["e"], start["d"], start["image_size"])][0]
        assert peak <= budget and score >= start_score - 1e-4 and out["score"] == pytest.approx(score, abs=1e-3)
        around = [table[k][0] for k in single_gene_neighbours(sp, key) if k in table and table[k][1] <= budget]
        assert around and max(around) <= score + 1e-3
        assert (out["steps"] > 0) == (key != _key(sp, start["ks"], start["e"], start["d"], start["image_size"]))
        moved += out["steps"] > 0
        # A limit on the scores stops it early: at most that many.
        short = core.climb(moofa.evaluator(sp), pred.scorer, row, max_peak=budget, max_evaluations=3)
        assert short["evaluations"] <= 3 and short["score"] <= out["score"]
    assert moved >= 6  # most random starts are not local optima


def test_climb_in_the_search_and_bad_inputs(small_nets):
    deep = random_predictor(SMALL, (16, 16), seed=7, skip=False)
    budget = int(np.quantile([n["peak_full"] for n in small_nets], 0.5))
    kw = dict(population=6, generations=3, dive_nodes=0, islands=1)
    r = moofa.search(budget, SMALL, deep, seed=1, **kw)
    off = moofa.search(budget, SMALL, deep, seed=1, climb_evaluations=0, **kw)
    # The default for deep MLPs: the climb from the evolution's best, never lower, counted.
    assert off.climb_evaluations == 0 and 0 < r.climb_evaluations <= max(1, 6 * 3 // 16)
    assert r.top1 >= off.top1 and r.evaluations == off.evaluations + r.climb_evaluations
    long = moofa.search(budget, SMALL, deep, seed=1, climb_evaluations=10**6, **kw)
    assert long.top1 >= r.top1 and long.history[-1] == pytest.approx(long.top1)
    from moofa.report import format_result

    assert f"a climb of {long.climb_evaluations:,} evaluations" in format_result(long)
    # Shallow predictors: off unless asked.
    shallow = random_predictor(SMALL, (16,), seed=7, skip=False)
    assert moofa.search(budget, SMALL, shallow, seed=1, **kw).climb_evaluations == 0
    with pytest.raises(ValueError, match="climb_evaluations"):
        moofa.search(budget, SMALL, deep, climb_evaluations=-1)
    row = moofa.encode([r.subnet], SMALL)
    with pytest.raises(ValueError, match="max_evaluations must be >= 0"):
        core.climb(moofa.evaluator(SMALL), deep.scorer, row, max_peak=budget, max_evaluations=-1)
    with pytest.raises(ValueError, match="start must hold one encoded subnet"):
        core.climb(moofa.evaluator(SMALL), deep.scorer, np.concatenate([row, row]), max_peak=budget)
    with pytest.raises(ValueError, match="does not meet the constraints"):
        core.climb(moofa.evaluator(SMALL), deep.scorer, row, max_peak=1000)
    with pytest.raises(ValueError, match=r"threads must be in \[0, 4096\], got -1"):
        core.climb(moofa.evaluator(SMALL), deep.scorer, row, max_peak=budget, threads=-1)


def key_subnet(sp: moofa.Space, key: tuple) -> moofa.Subnet:
    """The Subnet of a _key (idle slots at the first kernel and expand, or the coupled one)."""
    r, ds, active = key
    ks, es, at = [], [], 0
    for st, d in zip(sp.stages, ds):
        n = min(d, st.max_depth)
        for k, e in active[at : at + n]:
            ks.append(k)
            es.append(e)
        idle_e = sp.expand_by_depth[d] if sp.expand_by_depth else sp.expands[0]
        ks += [sp.kernels[0]] * (st.max_depth - n)
        es += [idle_e] * (st.max_depth - n)
        at += n
    return moofa.Subnet(ks, es, list(ds), r)


def test_published_ofa_predictor_climb_at_800k(shared_dir):
    # The published 400x3 OFA predictor at 800k, without transfer: the evolution and the
    # dive stop one resolution and one kernel short of a better subnet (85.105, 160 px); the
    # climb takes both steps (89.087, 192 px) and ends where no single-gene move is better,
    # by torch.
    from oracle import evaluate
    from test_predictor import reference_one_hot, torch_published

    path = shared_dir / "reference" / "predictors" / "ofa.pth.tar"
    pred = moofa.load_predictor(path)
    sp = moofa.get_space("ofa")
    budget = 800_000
    r = moofa.search(budget, "ofa", pred, seed=0, transfer=False)
    off = moofa.search(budget, "ofa", pred, seed=0, climb_evaluations=0, transfer=False)
    assert r.top1 > off.top1 + 1.0 and 0 < r.climb_evaluations
    assert r.subnet.image_size != off.subnet.image_size  # it changed resolution
    forward = torch_published(path)
    assert forward(reference_one_hot([r.subnet], "ofa"))[0] == pytest.approx(r.top1, abs=1e-3)
    cfg = r.subnet.to_dict()
    assert evaluate(sp, cfg["ks"], cfg["e"], cfg["d"], cfg["image_size"])["peak"] <= budget
    around = []
    for k in single_gene_neighbours(sp, _key(sp, cfg["ks"], cfg["e"], cfg["d"], cfg["image_size"])):
        net = key_subnet(sp, k)
        c = net.to_dict()
        if evaluate(sp, c["ks"], c["e"], c["d"], c["image_size"])["peak"] <= budget:
            around.append(net)
    assert len(around) > 100
    assert forward(reference_one_hot(around, "ofa")).max() <= r.top1 + 1e-3


def test_transfer_never_lowers_the_result_and_fits(small_nets):
    from moofa.report import format_result

    pred = random_predictor(SMALL, (16, 16), seed=5, skip=True)
    scores = forward(small_nets, pred)
    for q in (0.2, 0.5):
        budget = int(np.quantile([n["peak_full"] for n in small_nets], q))
        kw = dict(population=8, generations=6, islands=1)
        plain = moofa.search(budget, SMALL, pred, seed=2, transfer=False, **kw)
        # With the dive (a second one without the peak limit) and without (a whole search).
        for extra in ({}, {"dive_nodes": 0, "transfer": True}):
            r = moofa.search(budget, SMALL, pred, seed=2, **kw, **extra)
            got, net = oracle_score(SMALL, r.subnet, small_nets, scores)
            assert net["peak_full"] <= budget and got == pytest.approx(r.top1, abs=1e-3)
            assert r.evaluations > plain.evaluations
            assert plain.transfer_evaluations == 0 and r.transfer_evaluations > 0
            if not extra:  # the same evolution, dive and climb, then the transfer
                assert r.top1 >= plain.top1 and r.dive_nodes == plain.dive_nodes
                assert r.evaluations == plain.evaluations + r.transfer_evaluations
                assert f"a transfer of {r.transfer_evaluations:,}" in format_result(r)
    with pytest.raises(TypeError, match=r"transfer must be True, False or None \(auto\), got 'yes'"):
        moofa.search(budget, SMALL, pred, transfer="yes")


def test_transfer_does_not_depend_on_the_second_thread(small_nets, monkeypatch):
    # The unlimited dive runs on its own thread beside the budget's; where no thread can be
    # started it runs first on the calling one, with the same result.
    import threading

    pred = random_predictor(SMALL, (16, 16), seed=11, skip=False)
    budget = int(np.quantile([n["peak_full"] for n in small_nets], 0.3))
    kw = dict(population=8, generations=6, islands=1, dive_nodes=40)
    threaded = moofa.search(budget, SMALL, pred, seed=4, **kw)
    started = []
    real_start = threading.Thread.start

    def refuse(self):
        if self.name == "moofa-unlimited-dive":
            started.append(self.name)
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    alone = moofa.search(budget, SMALL, pred, seed=4, **kw)
    assert started == ["moofa-unlimited-dive"]
    assert alone.subnet == threaded.subnet and alone.top1 == threaded.top1
    assert (alone.evaluations, alone.dive_nodes) == (threaded.evaluations, threaded.dive_nodes)


def test_published_ofa_predictor_transfer_at_325k(shared_dir):
    # The published OFA predictor's best known subnet under 325k (92.202, at the space's
    # smallest peak, 262,912) is reached from the best subnet without a peak limit (99.344 at
    # 722,448) by a Pareto local search; without transfer the search stops at 82.213.
    from oracle import evaluate
    from test_predictor import reference_one_hot, torch_published

    path = shared_dir / "reference" / "predictors" / "ofa.pth.tar"
    pred = moofa.load_predictor(path)
    budget = 325_000
    plain = moofa.search(budget, "ofa", pred, seed=0, transfer=False)
    r = moofa.search(budget, "ofa", pred, seed=0)
    assert r.top1 > plain.top1 + 5.0
    cfg = r.subnet.to_dict()
    assert evaluate(moofa.get_space("ofa"), cfg["ks"], cfg["e"], cfg["d"], cfg["image_size"])["peak"] <= budget
    assert torch_published(path)(reference_one_hot([r.subnet], "ofa"))[0] == pytest.approx(r.top1, abs=1e-3)


# --- islands ---------------------------------------------------------------------------


def test_islands_are_independent_evolutions_with_the_best_kept(small_nets):
    deep = random_predictor(SMALL, (16, 16), seed=7, skip=False)
    budget = int(np.quantile([n["peak_full"] for n in small_nets], 0.5))
    kw = dict(population=20, generations=40, dive_nodes=0, climb_evaluations=0)
    one = moofa.search(budget, SMALL, deep, seed=3, islands=1, **kw)
    # islands=1 with the deep predictor is the plain evolution, whatever the default.
    plain = moofa.search(budget, SMALL, deep.scorer, seed=3, **kw)
    assert one.subnet == plain.subnet and one.top1 == plain.top1 and one.generations == plain.generations
    # survivors == islands: no race, each island a quarter of the generations.
    four = moofa.search(budget, SMALL, deep, seed=3, islands=4, survivors=4, **kw)
    again = moofa.search(budget, SMALL, deep, seed=3, islands=4, survivors=4, threads=1, **kw)
    assert four.subnet == again.subnet and four.top1 == again.top1  # threads never change results
    assert four.generations == 10 and four.evaluations <= 4 * 20 * 11 and four.survivors == 4
    assert np.all(np.diff(four.history) >= 0) and four.history[-1] == pytest.approx(four.top1)
    # Island 0 runs the seed's own evolution (10 generations): the islands keep the best.
    first = moofa.search(budget, SMALL, deep.scorer, seed=3, population=20, generations=10)
    assert four.top1 >= first.top1
    assert (
        four.peak <= budget
        and oracle_score(SMALL, four.subnet, small_nets, forward(small_nets, deep))[1]["peak_full"] <= budget
    )
    # The default for deep MLPs: twelve islands raced down to two (40 generations: a race
    # after generation 1, then 1 + (40 - 12) // 2 = 15 generations for the two), in a
    # sweep as in a single search.
    default = moofa.search(budget, SMALL, deep, seed=3, **kw)
    assert (default.islands, default.survivors, default.generations) == (12, 2, 15)
    swept = moofa.sweep([budget, budget + 1], SMALL, deep, seed=3, **kw)
    assert [(r.islands, r.survivors) for r in swept] == [(12, 2), (12, 2)] and swept[0].subnet == default.subnet
    with pytest.raises(ValueError, match="islands"):
        moofa.search(budget, SMALL, deep, islands=0)
    with pytest.raises(ValueError, match="survivors"):
        moofa.search(budget, SMALL, deep, islands=4, survivors=5)


def test_island_race_keeps_the_best_islands_at_the_race():
    # Checked against each island run alone: without the structure niche an island's first
    # generations do not depend on how many follow, so an island run for the race's
    # generations alone is the raced island up to the race.
    from moofa.search import _island_seed

    space = moofa.get_space("moofa")
    deep = random_predictor(space, (16, 16), seed=11, skip=False)
    budget = 400_000
    kw = dict(population=10, dive_nodes=0, climb_evaluations=0, depth_niche=0)
    # 100 generations, 6 islands, 2 survivors: the race after generation min(100 // 25,
    # 100 // 12) = 4, the survivors run 4 + (100 - 6 * 4) // 2 = 42.
    raced = moofa.search(budget, space, deep, seed=5, generations=100, islands=6, survivors=2, **kw)
    seeds = [_island_seed(5, i) for i in range(6)]
    short = [moofa.search(budget, space, deep.scorer, seed=s, generations=4, **kw) for s in seeds]
    full = [moofa.search(budget, space, deep.scorer, seed=s, generations=42, **kw) for s in seeds]
    for s, f in zip(short, full):
        assert f.history[4] == s.top1  # the same island up to the race
    order = sorted(range(6), key=lambda i: (-short[i].top1, i))
    won, lost = order[:2], order[2:]
    # The islands differ at the race and at the end (else any pick would pass).
    assert len({r.top1 for r in short}) == 6 and max(full[i].top1 for i in won) != max(full[i].top1 for i in lost)
    assert raced.generations == 42 and (raced.islands, raced.survivors) == (6, 2)
    assert raced.top1 == max(full[i].top1 for i in won)
    assert raced.subnet == max((full[i] for i in won), key=lambda r: r.top1).subnet
    assert raced.evaluations == sum(full[i].evaluations for i in won) + sum(short[i].evaluations for i in lost)
    # history: the best over every island after each generation (a lost island keeps its
    # best at the race).
    runs = [full[i].history for i in won] + [short[i].history for i in lost]
    want = np.max([np.pad(h, (0, 43 - len(h)), mode="edge") for h in runs], axis=0)
    assert len(raced.history) == 43 and np.array_equal(raced.history, want)
    # The race is decided by the scores alone: threads change nothing.
    again = moofa.search(budget, space, deep, seed=5, generations=100, islands=6, survivors=2, threads=1, **kw)
    assert again.subnet == raced.subnet and np.array_equal(again.history, raced.history)


def test_bound_kernels_agree_across_instruction_sets(small_nets):
    # The deep bound's loops are compiled per ISA (MOOFA_ISA picks them, read once per
    # process): every one the CPU runs must prove the same optimum.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, sys, numpy as np, moofa\n"
        "from moofa._ext import core\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_optimum import SMALL, random_predictor\n"
        "pred = random_predictor(SMALL, (24, 12, 8), seed=5, skip=True)\n"
        "raw = core.mlp_optimum(moofa.evaluator(SMALL), pred.weights, pred.biases, skip=pred.skip,\n"
        "    scale=pred.scale, offset=pred.offset, max_peak=int(sys.argv[2]))\n"
        "print(json.dumps({'row': raw['best_row'].tolist(), 'score': raw['best_score'],\n"
        "    'proven': raw['proven_optimal']}))\n"
    )
    budget = int(np.quantile([n["peak_full"] for n in small_nets], 0.6))
    results = {}
    for isa in ("generic", "avx2", "avx512"):
        if not core.isa_supported(isa):
            continue
        env = dict(os.environ, MOOFA_ISA=isa)
        out = subprocess.run(
            [sys.executable, "-c", script, str(Path(__file__).parent), str(budget)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        results[isa] = json.loads(out.stdout)
    pred = random_predictor(SMALL, (24, 12, 8), seed=5, skip=True)
    want = brute_best(small_nets, forward(small_nets, pred), budget)
    for isa, r in results.items():
        assert r["proven"] and r["score"] == pytest.approx(want, abs=1e-6), isa
        assert r["row"] == results["generic"]["row"], isa


def test_ctrl_c_stops_a_long_branch_and_bound():
    # The signal lands while C++ holds no GIL: the branch and bound notices it between nodes
    # and moofa.optimum raises KeyboardInterrupt, as moofa.search does. (The time limit only
    # keeps a broken check from hanging the test.)
    import _thread
    import threading
    import time

    timer = threading.Timer(0.3, _thread.interrupt_main)
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            moofa.optimum("800k", space="ofa", time_limit=30, generations=5)
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 10


def test_stop_flag_stops_a_branch_and_bound_from_another_thread():
    # search's transfer stops its unlimited dive this way (Ctrl-C reaches only the main thread).
    import threading

    pred = random_predictor(moofa.get_space("ofa"), (64, 64), seed=3, skip=False)
    ev = moofa.evaluator("ofa")
    args = (ev, pred.weights, pred.biases)
    kw = dict(skip=pred.skip, scale=pred.scale, offset=pred.offset)
    flag = core.StopFlag()
    assert not flag.is_set
    free = core.mlp_optimum(*args, **kw, max_nodes=2_000, stop=flag)
    assert free["nodes"] > 1_000 and not free["proven_optimal"]  # unset: runs to its node limit
    flag.set()
    assert flag.is_set
    stopped = core.mlp_optimum(*args, **kw, stop=flag, time_limit=30)  # only the flag stops it early
    assert stopped["nodes"] <= 257 and not stopped["proven_optimal"]
    late = core.StopFlag()
    out: dict = {}
    worker = threading.Thread(
        target=lambda: out.update(core.mlp_optimum(*args, **kw, stop=late, time_limit=30)), daemon=True
    )
    worker.start()
    late.set()
    worker.join(timeout=60)
    assert not worker.is_alive() and not out["proven_optimal"] and out["seconds"] < 20
