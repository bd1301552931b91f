"""moofa.integrations.pymoo: MoofaProblem runs pymoo's algorithms as its docs show, and every
answer is checked against the layer-by-layer oracle and a numpy forward of the predictor."""

from __future__ import annotations

import integrations_oracle as ref
import numpy as np
import pytest

import moofa

pytest.importorskip("pymoo", reason="needs pymoo: pip install 'moofa[integrations]'")

from pymoo.algorithms.moo.nsga2 import NSGA2  # noqa: E402
from pymoo.algorithms.soo.nonconvex.ga import GA  # noqa: E402
from pymoo.optimize import minimize  # noqa: E402

from moofa.integrations.pymoo import MoofaProblem  # noqa: E402


@pytest.mark.parametrize("space", ["moofa", "compofa", "ofa"])
def test_ga_single_objective_as_documented(space):
    prob = MoofaProblem(space, budget="325k", objectives=("top1",))
    res = minimize(prob, GA(pop_size=50, **prob.operators()), ("n_evals", 1500), seed=0)
    net = prob.subnets(res.X)[0]
    net.validate(space)
    assert moofa.peak_memory([net], space)[0] == ref.peak(net, space) <= 325_000
    assert -res.F[0] == pytest.approx(ref.top1([net], space)[0], abs=1e-3)
    assert res.G[0] == ref.peak(net, space) - 325_000
    assert prob.evaluations == 1500


def test_nsga2_front_is_feasible_and_non_dominated():
    prob = MoofaProblem("moofa", budget="600k", objectives=("top1", "peak"))
    res = minimize(prob, NSGA2(pop_size=60, **prob.operators()), ("n_evals", 1800), seed=1)
    nets = prob.subnets(res.X)
    assert len(nets) >= 3
    top1, peaks = ref.top1(nets, "moofa"), np.array([ref.peak(n, "moofa") for n in nets])
    assert np.all(peaks <= 600_000)
    np.testing.assert_allclose(-res.F[:, 0], top1, atol=1e-3)
    np.testing.assert_array_equal(res.F[:, 1], peaks)
    for i in range(len(nets)):  # no point of the front dominates another
        dominated = (top1 >= top1[i]) & (peaks <= peaks[i]) & ((top1 > top1[i] + 1e-9) | (peaks < peaks[i]))
        assert not dominated.any()


def test_default_real_valued_operators_also_work():
    # pymoo's default GA operators are real-valued: the problem rounds and clips.
    prob = MoofaProblem("moofa", budget="700k")
    res = minimize(prob, GA(pop_size=20), ("n_evals", 400), seed=0)
    assert res.X is not None and res.X.dtype.kind == "f"
    net = prob.subnets(res.X)[0]
    assert ref.peak(net, "moofa") <= 700_000
    assert -res.F[0] == pytest.approx(ref.top1([net], "moofa")[0], abs=1e-3)


def test_variables_round_trip_and_canonical_rows():
    prob = MoofaProblem("moofa", budget="500k")
    rows = moofa.random_subnets(200, "moofa", seed=3)
    nets = moofa.decode(rows, "moofa")
    X = prob.variables(nets)
    assert X.shape == (200, prob.n_var) and prob.n_var == moofa.get_space("moofa").n_columns
    back = prob.subnets(X)
    # Equal up to the idle slots, which the subnets reset: same peak, same prediction.
    np.testing.assert_array_equal(moofa.peak_memory(back, "moofa"), [ref.peak(n, "moofa") for n in nets[:200]])
    np.testing.assert_allclose(moofa.load_predictor("moofa").predict(back), ref.top1(nets, "moofa"), atol=1e-3)
    assert prob.variable_names[:2] == ["image_size", "d[0]"]


def test_coupled_space_has_no_expand_variables_and_rows_are_valid():
    prob = MoofaProblem("compofa", budget="500k")
    sp = moofa.get_space("compofa")
    assert prob.n_var == 1 + sp.n_stages + sp.n_slots
    assert not any(n.startswith("e[") for n in prob.variable_names)
    X = np.random.default_rng(0).integers(0, prob.xu + 1, size=(300, prob.n_var))
    for net in prob.subnets(X):
        net.validate("compofa")  # raises if e does not follow d
    out: dict = {}
    prob._evaluate(X, out)
    nets = prob.subnets(X)
    np.testing.assert_allclose(-out["F"][:, 0], ref.top1(nets, "compofa"), atol=1e-3)
    np.testing.assert_array_equal(out["G"][:, 0], [ref.peak(n, "compofa") - 500_000 for n in nets])


def test_out_of_range_and_float_variables_are_rounded_and_clipped():
    prob = MoofaProblem("moofa", budget="500k")
    X = np.full((1, prob.n_var), 7.6)
    X[0, 0] = -3.2
    net = prob.subnets(X)[0]
    sp = moofa.get_space("moofa")
    assert net.image_size == sp.resolutions[0] and net.d == (max(sp.depths),) * sp.n_stages
    assert set(net.ks) == {max(sp.kernels)}


def test_more_objectives_constraints_and_memory_models():
    def latency(rows):  # a stand-in lookup: one value per row, minimised
        return rows[:, 0].astype(float) * 2 + 1

    prob = MoofaProblem(
        "moofa-e1-2",
        budget=120_000,
        objectives=("top1", "mflops", ("latency", latency)),
        memory_model="activations",
        max_params=3_000_000,
    )
    assert prob.n_obj == 3 and prob.n_ieq_constr == 2 and prob.constraints == ("peak", "params")
    X = np.random.default_rng(1).integers(0, prob.xu + 1, size=(50, prob.n_var))
    out: dict = {}
    prob._evaluate(X, out)
    rows = prob.rows(X)
    nets = prob.subnets(X)
    prof = moofa.profiles(rows, "moofa-e1-2")
    np.testing.assert_allclose(out["F"][:, 1], prof["mflops"])
    np.testing.assert_allclose(out["F"][:, 2], rows[:, 0] * 2 + 1)
    np.testing.assert_array_equal(out["G"][:, 0], [ref.peak(n, "moofa-e1-2", "activations") - 120_000 for n in nets])
    np.testing.assert_array_equal(out["G"][:, 1], prof["params"] - 3_000_000)


def test_tflm_budget_in_bytes():
    prob = MoofaProblem("moofa-e1-2", budget="160KiB", memory_model="tflm")
    assert prob.budget == 163_840
    res = minimize(prob, GA(pop_size=20, **prob.operators()), ("n_evals", 200), seed=0)
    net = prob.subnets(res.X)[0]
    assert moofa.profile(net, "moofa-e1-2", memory_model="tflm").peak <= 163_840


def test_record_keeps_every_evaluated_row():
    prob = MoofaProblem("moofa", budget="325k", record=True)
    minimize(prob, GA(pop_size=20, **prob.operators()), ("n_evals", 100), seed=0)
    assert sum(len(h) for h in prob.history) == prob.evaluations == 100


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"objectives": ("accuracy",)}, "objectives"),
        ({"objectives": ()}, "objectives"),
        ({"objectives": ("top1", "top1")}, "distinct"),
        ({"budget": 1000}, "budget"),
        ({"memory_model": "ram"}, "memory_model"),
        ({"threads": -1}, "threads"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoofaProblem("moofa", **{"budget": "325k", **kwargs})


def test_bad_variables_shape():
    prob = MoofaProblem("moofa", budget="325k")
    with pytest.raises(ValueError, match="shape"):
        prob.rows(np.zeros((2, 3)))


def test_a_callable_predictor_on_encoded_rows():
    def kernels(rows):  # any batched scorer: here, the sum of kernel indices
        return rows[:, 6:26].sum(axis=1).astype(float)

    prob = MoofaProblem("moofa", budget="500k", predictor=kernels)
    X = np.random.default_rng(4).integers(0, prob.xu + 1, size=(30, prob.n_var))
    out: dict = {}
    prob._evaluate(X, out)
    np.testing.assert_array_equal(-out["F"][:, 0], prob.rows(X)[:, 6:26].sum(axis=1))
