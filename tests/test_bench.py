"""moofa.bench: the shipped problem set is consistent with the shipped predictors and the
independent oracle, and the scorer computes regret, feasibility and evaluations correctly."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import integrations_oracle as ref
import numpy as np
import pytest

import moofa
import moofa.bench as bench

PROBLEMS = bench.problems()
ORACLE_MODELS = ("full", "activations")  # the oracle has no TFLM arena planner


def test_problem_set_is_fixed_and_versioned():
    assert bench.VERSION == "1"
    names = [p.name for p in PROBLEMS]
    assert len(names) == len(set(names)) >= 10
    assert {p.space for p in PROBLEMS} >= {"moofa", "ofa", "compofa", "moofa-e1-2"}
    assert {p.memory_model for p in PROBLEMS} >= {"full", "activations", "tflm"}
    for p in PROBLEMS:
        assert p.version == bench.VERSION and p.provenance and not p.stale
        assert p.certified == p.provenance.startswith("certified")
    with pytest.raises(ValueError, match="version"):
        bench.problems("0")
    with pytest.raises(ValueError, match="problem"):
        bench.problem("nope")


@pytest.mark.parametrize("p", PROBLEMS, ids=str)
def test_each_optimum_is_a_feasible_subnet_scoring_the_optimum(p):
    net = moofa.Subnet.from_dict(p.optimum_subnet).validate(p.space)
    if p.memory_model in ORACLE_MODELS:
        assert ref.peak(net, p.space, p.memory_model) <= p.budget
        assert ref.top1([net], p.space, p.predictor)[0] == pytest.approx(p.optimum, abs=1e-3)
    else:
        assert moofa.profile(net, p.space, memory_model=p.memory_model).peak <= p.budget
    s = bench.score(p, [net])
    assert s.regret == pytest.approx(0, abs=1e-4) and s.feasible and s.evaluations == 1


@pytest.mark.parametrize("p", [p for p in PROBLEMS if p.memory_model != "tflm"], ids=str)
def test_a_default_search_does_not_beat_the_best_known(p):
    r = moofa.search(**p.search_kwargs(), seed=123)
    assert r.top1 <= p.optimum + 1e-4


def test_score_regret_feasibility_and_curve_against_the_oracle():
    p = bench.problem("moofa-400k")
    rows = moofa.random_subnets(300, p.space, seed=7)
    nets = moofa.decode(rows, p.space)
    peaks = np.array([ref.peak(n, p.space) for n in nets])
    top1 = ref.top1(nets, p.space)
    fits = peaks <= p.budget
    assert fits.any() and not fits.all()
    best = np.maximum.accumulate(np.where(fits, top1, -np.inf))
    want_curve = np.where(np.isfinite(best), p.optimum - best, np.inf)
    for answers in (rows, nets, [n.to_dict() for n in nets], list(rows)):
        s = bench.score(p, answers)
        np.testing.assert_allclose(s.curve, want_curve, atol=1e-3)
        assert s.regret == pytest.approx(want_curve[-1], abs=1e-3)
        assert s.infeasible == int((~fits).sum()) and s.answers == s.evaluations == 300
        assert s.best_peak == peaks[np.argmax(np.where(fits, top1, -np.inf))]
    first = int(np.argmax(fits))
    assert s.evaluations_to(1e9) == first + 1 and s.evaluations_to(-1) is None
    assert bench.score(p, rows, evaluations=5000).evaluations == 5000


def test_infeasible_and_invalid_answers():
    p = bench.problem("moofa-325k")
    sp = moofa.get_space(p.space)
    largest = moofa.Subnet(
        ks=[max(sp.kernels)] * sp.n_slots, e=[max(sp.expands)] * sp.n_slots, d=[4] * 5, image_size=224
    )
    s = bench.score(p, [largest])
    assert s.regret == math.inf and not s.feasible and s.infeasible == 1
    assert bench.score(p, []).regret == math.inf
    with pytest.raises(ValueError, match="image_size"):
        bench.score(p, [{"ks": [7] * 20, "e": [4] * 20, "d": [4] * 5, "image_size": 100}])
    with pytest.raises(ValueError, match="evaluations"):
        bench.score(p, [largest], evaluations=-1)


def test_score_takes_a_search_result():
    p = bench.problem("ofa-325k")
    r = moofa.search(**p.search_kwargs(), max_evaluations=500)
    s = bench.score(p, r)
    assert s.evaluations == r.evaluations <= 600 and s.answers == 1
    assert s.regret == pytest.approx(p.optimum - ref.top1([r.subnet], p.space)[0], abs=1e-3)


@pytest.mark.parametrize("optimiser", bench.OPTIMISERS)
def test_run_each_optimiser_at_a_fixed_evaluation_count(optimiser):
    if optimiser.startswith("pymoo"):
        pytest.importorskip("pymoo", reason="needs pymoo: pip install 'moofa[integrations]'")
    if optimiser.startswith("optuna"):
        pytest.importorskip("optuna", reason="needs optuna: pip install 'moofa[integrations]'")
    p = bench.problem("compofa-500k")
    s = bench.run(p, optimiser, evaluations=200, seed=0)
    assert s.evaluations <= 200 + 100  # moofa.search stops at the generation that reaches it
    assert s.feasible and -1e-4 <= s.regret < 15
    # The best answer is checked independently.
    assert ref.peak(s.best_subnet, p.space) <= p.budget
    assert s.regret == pytest.approx(p.optimum - ref.top1([s.best_subnet], p.space)[0], abs=1e-3)


def test_cli_list_and_run():
    out = subprocess.run(
        [sys.executable, "-m", "moofa", "bench", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert all(p.name in out for p in PROBLEMS)
    out = subprocess.run(
        [sys.executable, "-m", "moofa.bench", "run", "--optimiser", "random,moofa", "--evaluations", "100"]
        + ["--problems", "moofa-325k", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["optimiser"] for r in recs] == ["random", "moofa"]
    table = bench.format_table(recs)
    assert "moofa-325k" in table and "| random | moofa |" in table
    bad = subprocess.run(
        [sys.executable, "-m", "moofa.bench", "run", "--optimiser", "sgd"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "optimiser" in bad.stderr


def test_missing_pymoo_is_one_line_naming_the_extra():
    block = "import sys; sys.modules['pymoo'] = None; "
    cli = subprocess.run(
        [sys.executable, "-c", block + "from moofa.cli import main; sys.exit(main(sys.argv[1:]))"]
        + ["bench", "run", "--optimiser", "pymoo-ga", "--evaluations", "10", "--problems", "moofa-325k"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and cli.stderr.strip() == 'moofa bench needs pymoo: pip install "moofa[integrations]"'
    api = subprocess.run(
        [sys.executable, "-c", block + "from moofa.integrations.pymoo import MoofaProblem; MoofaProblem()"],
        capture_output=True,
        text=True,
    )
    assert (
        api.returncode == 1
        and "ImportError: this moofa plug-in needs pymoo: pip install 'moofa[integrations]'" in api.stderr
    )
