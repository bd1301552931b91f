"""moofa.design: exact counts and budget-conditioned draws of the subnets under a budget, and the
width search for memory uniformity.

Ground truth: every distinct subnet of small spaces enumerated and evaluated layer by
layer by oracle.py (no moofa code), with its probability under moofa.random_subnets'
law written out by hand; rejection sampling of random subnets for the large spaces.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import oracle
import pytest
from scipy import stats

import moofa
from moofa import design

TINY = moofa.Space(
    name="tiny-design",
    stages=(moofa.Stage(16, 2), moofa.Stage(24, 2, se=True)),
    kernels=(3, 5),
    expands=(2, 3),
    depths=(1, 2),
    resolutions=(32, 48),
    first_conv_width=8,
    first_block_width=8,
    final_expand_width=64,
    feature_mix_width=0,
    n_classes=10,
)
TINY_COUPLED = TINY.replace(name="tiny-design-coupled", expand_by_depth={1: 2, 2: 3})


def enumerate_space(sp: moofa.Space, activations_only: bool = False) -> list[dict]:
    """Every distinct subnet: key, peak and uniformity by the oracle, and its probability
    under moofa.random_subnets (resolution, depths, active genes uniform)."""
    n_r, n_d, n_k, n_e = len(sp.resolutions), len(sp.depths), len(sp.kernels), len(sp.expands)
    per_stage = []
    for st in sp.stages:
        options = []
        for d in sp.depths:
            expands = [sp.expand_by_depth[d]] if sp.expand_by_depth else sp.expands
            for genes in itertools.product(itertools.product(sp.kernels, expands), repeat=d):
                ks = [k for k, _ in genes] + [sp.kernels[0]] * (st.max_depth - d)
                es = [e for _, e in genes] + [expands[0]] * (st.max_depth - d)
                p = 1 / n_d * (1 / (n_k if sp.expand_by_depth else n_k * n_e)) ** d
                options.append((d, tuple(genes), ks, es, p))
        per_stage.append(options)
    out = []
    for r in sp.resolutions:
        for combo in itertools.product(*per_stage):
            ks = [k for o in combo for k in o[2]]
            es = [e for o in combo for e in o[3]]
            ds = [o[0] for o in combo]
            t = oracle.evaluate(sp, ks, es, ds, r, activations_only=activations_only)
            h = np.array(t["hist"], dtype=np.float64)
            out.append(
                {
                    "key": (r, tuple((o[0], o[1]) for o in combo)),
                    "peak": t["peak"],
                    "uniformity": h.mean() / h.max(),
                    "p": math.prod(o[4] for o in combo) / n_r,
                }
            )
    return out


def key_of(net: moofa.Subnet, sp: moofa.Space):
    stages, slot = [], 0
    for st, d in zip(sp.stages, net.d):
        stages.append((d, tuple((net.ks[slot + j], float(net.e[slot + j])) for j in range(d))))
        slot += st.max_depth
    return (net.image_size, tuple(stages))


@pytest.fixture(scope="module", params=["plain", "coupled"])
def tiny(request):
    sp = TINY if request.param == "plain" else TINY_COUPLED
    return sp, {m: enumerate_space(sp, m == "activations") for m in ("full", "activations")}


def budgets_of(subnets):
    peaks = sorted({s["peak"] for s in subnets})
    return [peaks[0], peaks[len(peaks) // 5], peaks[len(peaks) // 2], peaks[-2], peaks[-1]]


# --- counting and sampling ------------------------------------------------------------------


def test_enumeration_is_the_whole_space(tiny):
    sp, subnets = tiny
    assert len(subnets["full"]) == sp.size()
    assert sum(s["p"] for s in subnets["full"]) == pytest.approx(1.0)


@pytest.mark.parametrize("model", ["full", "activations"])
def test_admitted_counts_and_share_match_enumeration(tiny, model):
    sp, subnets = tiny
    for b in budgets_of(subnets[model]):
        under = [s for s in subnets[model] if s["peak"] <= b]
        assert design.admitted(sp, b, memory_model=model) == len(under)
        a = design._Admitted(sp, design._evaluator(sp, model), b)
        assert a.share == pytest.approx(sum(s["p"] for s in under), rel=1e-12)
    assert design.admitted(sp, budgets_of(subnets[model])[0] - 1, memory_model=model) == 0


@pytest.mark.parametrize("model", ["full", "activations"])
def test_sample_admitted_draws_random_subnets_conditioned_on_the_budget(tiny, model):
    sp, subnets = tiny
    b = budgets_of(subnets[model])[2]
    under = [s for s in subnets[model] if s["peak"] <= b]
    total = sum(s["p"] for s in under)
    rows = design.sample_admitted(40000, sp, b, seed=1, memory_model=model)
    assert (moofa.peak_memory(rows, sp, memory_model=model) <= b).all()
    counts: dict = {}
    for net in moofa.decode(rows, sp):
        counts[key_of(net, sp)] = counts.get(key_of(net, sp), 0) + 1
    assert set(counts) <= {s["key"] for s in under}
    observed = np.array([counts.get(s["key"], 0) for s in under], dtype=np.float64)
    expected = np.array([s["p"] / total * len(rows) for s in under])
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    # Same seed, same draws; idle slots are canonical (re-encoding changes nothing).
    again = design.sample_admitted(40000, sp, b, seed=1, memory_model=model)
    assert np.array_equal(rows, again)
    assert np.array_equal(moofa.encode(moofa.decode(rows[:200], sp), sp), rows[:200])


@pytest.mark.parametrize("space", ["moofa", "ofa", "compofa"])
def test_sampling_agrees_with_rejection_sampling_on_builtin_spaces(space):
    rows = moofa.random_subnets(300000, space, seed=0)
    prof = moofa.profiles(rows, space)
    for budget in ("400k", "800k"):
        b = moofa.parse_budget(budget)
        fits = prof["peak"] <= b
        a = design._Admitted(moofa.get_space(space), design._evaluator(moofa.get_space(space), "full"), b)
        se = math.sqrt(a.share * (1 - a.share) / len(rows)) + 1e-12
        assert abs(fits.mean() - a.share) < 5 * se
        drawn = moofa.profiles(design.sample_admitted(20000, space, budget, seed=2), space)
        assert (drawn["peak"] <= b).all()
        u = prof["uniformity"][fits]
        se_u = math.hypot(u.std() / math.sqrt(len(u)), drawn["uniformity"].std() / math.sqrt(20000))
        assert abs(u.mean() - drawn["uniformity"].mean()) < 5 * se_u


def test_no_subnet_under_the_budget():
    low = moofa.min_peak("moofa")[0] - 1
    assert design.admitted("moofa", low) == 0
    with pytest.raises(ValueError, match="no subnet of space 'moofa'"):
        design.sample_admitted(3, "moofa", low)


# --- the width search -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def designed():
    return design.search_widths()


def test_search_widths_is_deterministic_and_keeps_widths_sane(designed):
    assert design.search_widths() == designed
    assert all(w % 8 == 0 and 8 <= w <= 1024 for w in (*designed.widths, designed.final_expand_width))
    assert designed.space.widths == list(designed.widths)
    assert designed.space.final_expand_width == designed.final_expand_width
    assert designed.score >= designed.base_score
    assert all(s >= b for s, b in zip(designed.share, designed.base_share))
    other = design.search_widths(seed=1)
    assert other.score >= other.base_score


def test_designed_widths_are_more_uniform_on_independent_draws(designed):
    # Rejection sampling of plain random subnets, a million per space, not the design's draws.
    n = 1_000_000
    for budget in designed.budgets:
        means, counts = [], []
        for sp in (designed.space, moofa.get_space("moofa")):
            p = moofa.profiles(moofa.random_subnets(n, sp, seed=11), sp)
            fits = p["peak"] <= budget
            means.append(p["uniformity"][fits].mean())
            counts.append(int(fits.sum()))
        assert counts[0] >= 0.9 * counts[1]
        assert means[0] > means[1], budget


def test_search_on_a_small_space_respects_the_admission_floor():
    subnets = enumerate_space(TINY)
    budgets = budgets_of(subnets)[1:3]
    d = design.search_widths(budgets, TINY, max_width=128, n_samples=500)
    assert d.score >= d.base_score
    mine = enumerate_space(d.space)
    for b, s in zip(budgets, d.share):
        base = sum(x["p"] for x in subnets if x["peak"] <= b)
        assert sum(x["p"] for x in mine if x["peak"] <= b) == pytest.approx(s, rel=1e-12)
        assert s >= base * (1 - 1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objective": "accuracy"}, "objective must be one of"),
        ({"memory_model": "tflm"}, "memory_model must be one of"),
        ({"budgets": []}, "budgets must be a non-empty list"),
        ({"budgets": "325k"}, "budgets must be a non-empty list"),
        ({"n_samples": 0}, r"n_samples must be an integer in \[1, 1000000\]"),
        ({"min_width": 4}, r"min_width must be an integer in \[8, 65536\]"),
        ({"max_width": 7}, r"max_width must be an integer in \[8, 65536\]"),
        ({"keep_admitted": -1}, r"keep_admitted must be a number in \[0, 1e6\)"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"max_evaluations": 0}, "max_evaluations must be an integer >= 1"),
    ],
)
def test_bad_search_arguments_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        design.search_widths(**kwargs)


# --- the comparison -------------------------------------------------------------------------


def test_compare_rows_and_table(designed):
    rows = design.compare([designed.space, "ofa"], ("325k", "800k"), n=5000, seed=3)
    assert [(r["space"], r["budget"]) for r in rows] == [
        (designed.space.name, None),
        (designed.space.name, 325_000),
        (designed.space.name, 800_000),
        ("ofa", None),
        ("ofa", 325_000),
        ("ofa", 800_000),
    ]
    for r in rows:
        sp = designed.space if r["space"] != "ofa" else moofa.get_space("ofa")
        peaks = moofa.peak_memory(moofa.random_subnets(5000, sp, seed=3), sp)
        b = r["budget"] if r["budget"] is not None else peaks.max()
        assert r["random_under"] == int((peaks <= b).sum())
        assert r["distinct"] == (sp.size() if r["budget"] is None else design.admitted(sp, b))
        se = math.sqrt(r["share"] * (1 - r["share"]) / 5000)
        assert abs(r["random_under"] / 5000 - r["share"]) <= 5 * se + 1e-9
    table = design.format_comparison(rows)
    assert len(table.splitlines()) == len(rows) + 2
    assert designed.table(budgets=("400k",), n=1000).count("\n") == 2 + 3 * 2 - 1
