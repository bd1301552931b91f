"""moofa.integrations.optuna: suggest_subnet samples only active slots and respects coupling;
Objective + TPE runs as documented; answers checked by the oracle and a numpy predictor forward."""

from __future__ import annotations

import integrations_oracle as ref
import numpy as np
import pytest

import moofa

optuna = pytest.importorskip("optuna", reason="needs optuna: pip install 'moofa[integrations]'")

from moofa.integrations.optuna import CONSTRAINT_ATTR, Objective, constraints, subnet_of, suggest_subnet  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(objective, seed=0):
    sampler = optuna.samplers.TPESampler(seed=seed)
    return optuna.create_study(directions=objective.directions, sampler=sampler)


@pytest.mark.parametrize("space", ["moofa", "compofa"])
def test_tpe_as_documented(space):
    objective = Objective(space, budget="325k")
    study = _study(objective)
    study.optimize(objective, n_trials=120)
    best = objective.best(study)
    assert best is not None
    best.validate(space)
    assert moofa.peak_memory([best], space)[0] == ref.peak(best, space) <= 325_000
    feasible = objective.feasible_trials(study)
    assert max(t.values[0] for t in feasible) == pytest.approx(ref.top1([best], space)[0], abs=1e-3)
    # optuna 5 reads the constraints set on the trial; the user attribute holds the same.
    for t in study.trials[:20]:
        net = subnet_of(t, space)
        assert t.user_attrs[CONSTRAINT_ATTR] == [ref.peak(net, space) - 325_000]
        assert constraints(t) == t.user_attrs[CONSTRAINT_ATTR]
        assert t.values[0] == pytest.approx(ref.top1([net], space)[0], abs=1e-3)
        if hasattr(t, "constraints"):
            assert list(t.constraints.values()) == t.user_attrs[CONSTRAINT_ATTR]
    assert objective.evaluations == 120


@pytest.mark.parametrize("space", ["moofa", "compofa", "moofa-e1-2"])
def test_suggest_subnet_asks_only_for_active_slots(space):
    sp = moofa.get_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        net = suggest_subnet(trial, space)
        net.validate(space)
        n_active = sum(net.d)
        per_slot = 1 if sp.expand_by_depth else 2
        assert len(trial.params) == 1 + sp.n_stages + per_slot * n_active
        first = 0
        for stage, dd in zip(sp.stages, net.d):
            for j in range(dd, stage.max_depth):  # idle slots: the canonical idle choice, never asked
                assert f"ks[{first + j}]" not in trial.params and net.ks[first + j] == sp.kernels[0]
            first += stage.max_depth
        study.tell(trial, 0.0)


def test_fixed_trial_maps_parameters_to_the_subnet():
    sp = moofa.get_space("moofa")
    params = {"image_size": 192, **{f"d[{i}]": 2 for i in range(sp.n_stages)}}
    for s in range(sp.n_stages):
        for j in range(2):
            params[f"ks[{4 * s + j}]"] = 7
            params[f"e[{4 * s + j}]"] = 3
    net = suggest_subnet(optuna.trial.FixedTrial(params), "moofa")
    assert net.image_size == 192 and net.d == (2,) * 5
    assert net.ks == (7, 7, 3, 3) * 5 and [float(e) for e in net.e] == [3.0, 3.0, 2.0, 2.0] * 5


def test_multi_objective_and_mflops_constraint():
    objective = Objective("moofa", budget="500k", objectives=("top1", "peak"), max_mflops=300)
    assert objective.directions == ["maximize", "minimize"]
    study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.optimize(objective, n_trials=60)
    for t in study.trials[:15]:
        net = subnet_of(t, "moofa")
        p = moofa.profile(net, "moofa")
        assert t.values[1] == ref.peak(net, "moofa")
        assert t.user_attrs[CONSTRAINT_ATTR] == pytest.approx([p.peak - 500_000, p.mflops - 300])


def test_subnet_of_a_foreign_trial_names_the_parameter():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(ValueError, match="image_size"):
        subnet_of(study.trials[0], "moofa")


def test_best_is_none_when_nothing_fits():
    objective = Objective("moofa", budget=moofa.min_peak("moofa")[0])
    study = _study(objective)
    study.optimize(objective, n_trials=5)
    feasible = objective.feasible_trials(study)
    assert (objective.best(study) is None) == (not feasible)
    assert np.all([t.user_attrs[CONSTRAINT_ATTR][0] <= 0 for t in feasible])
