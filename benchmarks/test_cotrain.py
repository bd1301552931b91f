"""The predictor co-trained during progressive shrinking vs the post-hoc balanced one, on the
CPU pipeline (the ``digits-demo`` config, scikit-learn's digits, torch on one thread).

The tests run in order and share their results (run the whole module):

1. ``train-digits-demo`` group: progressive shrinking without (baseline) and with co-training
   (``cotrain_every`` steps, ``cotrain_subnets`` each). Checked: the two supernets are equal
   bit for bit (co-training measures, it does not train).
2. ``predictor-data-digits-demo`` group: the post-hoc route (baseline), ``build_dataset`` on the
   trained supernet with as many subnet evaluations as co-training made, plus the predictor
   fit; and the co-trained route's own refit (its evaluations were paid in group 1).
3. Quality on a separate balanced test set (other seed, 25 subnets in each of the 8 bins,
   measured on the final supernet, BN recalibrated on batches neither route used; also on
   the post-hoc set's own calibration batches, for comparison): RMSE and Kendall tau of the
   co-trained predictor (``history = "phase"``: the last phase's records, as the run saved it;
   and ``"all"``: every phase's records) and of the post-hoc one (all N evaluations; and the
   first n of its plan, n = the last phase's record count). Printed as a table and written to
   ``$MOOFA_COTRAIN_RESULTS`` (default ``cotrain-results.json`` in pytest's temporary folder).
   Checked: every figure is finite and the evaluation counts match; not which route wins.

Under ``--benchmark-disable`` (each benchmark once, as CI runs them) the same steps run on a
shortened schedule (6 steps an epoch, a measurement every step, 4 test subnets a bin), about
a minute: a check that the comparison runs, not its figures.

    python -m pytest benchmarks/test_cotrain.py -s -p no:cacheprovider --benchmark-columns=min,rounds
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import moofa.nn as mnn  # noqa: E402
from moofa import train as mtrain  # noqa: E402
from moofa.dataset import build_dataset  # noqa: E402
from moofa.pipeline import SubnetEvaluator  # noqa: E402
from moofa.predictor_train import balance_by_bin, kendall_tau, train_predictor  # noqa: E402
from moofa.subnet import Subnet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import one_torch_thread  # noqa: E402, F401  (the fixture, for this module)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BINS = 8
COTRAIN = dict(cotrain_every=4, cotrain_subnets=1, cotrain_bins=BINS, cotrain_predictor_epochs=200)
# Under --benchmark-disable (CI: each benchmark once, as a check) the run is cut short.
QUICK = dict(steps_per_epoch=6)
QUICK_COTRAIN = dict(COTRAIN, cotrain_every=1)
PREDICTOR_EPOCHS = 200
TEST_PER_BIN, QUICK_TEST_PER_BIN, TEST_SEED = 25, 4, 1000
STATE: dict = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("cotrain-bench")


def need(*keys):
    missing = [k for k in keys if k not in STATE]
    if missing:
        pytest.skip(f"run the whole module: needs {missing} from the earlier tests")


def once(benchmark, fn):
    """One timed run (these are minutes, not microseconds); returns (result, seconds)."""
    out = {}

    def run():
        t0 = time.perf_counter()
        out["value"] = fn()
        out["seconds"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1)
    return out["value"], out["seconds"]


def config(**extra):
    return mtrain.load_config("digits-demo", **(QUICK if STATE["quick"] else {}), **extra)


@pytest.mark.benchmark(group="train-digits-demo")
def test_train_plain(benchmark, root):
    STATE["quick"] = bool(getattr(benchmark, "disabled", False))
    result, seconds = once(benchmark, lambda: mtrain.train(config(), root / "plain", progress=False))
    assert result.top1_largest is not None and result.top1_largest > (20 if STATE["quick"] else 50)  # it learned
    STATE["plain"] = (result, seconds)


@pytest.mark.benchmark(group="train-digits-demo")
def test_train_cotrained(benchmark, root):
    need("plain")
    cfg = config(**(QUICK_COTRAIN if STATE["quick"] else COTRAIN))
    result, seconds = once(benchmark, lambda: mtrain.train(cfg, root / "cotrained", progress=False))
    a = mnn.Supernet.load(root / "plain" / "supernet").state_dict()
    b = mnn.Supernet.load(root / "cotrained" / "supernet").state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    recs = [json.loads(line) for line in (root / "cotrained" / "cotrain.jsonl").read_text().splitlines()]
    cot = [m for m in result.metrics if m["kind"] == "cotrain"]
    assert sum(m["records"] for m in cot) == len(recs) > 0
    STATE["cotrained"] = (result, seconds, recs, cot)


def _evaluator(supernet, cfg, seed=0):
    return SubnetEvaluator.for_config(supernet, cfg, seed=seed)


@pytest.mark.benchmark(group="predictor-data-digits-demo")
def test_posthoc_dataset_and_predictor(benchmark, root):
    need("cotrained")
    cfg = config()
    supernet = mnn.Supernet.load(root / "plain" / "supernet")
    n = len(STATE["cotrained"][2])
    per_bin = math.ceil(n / BINS)

    def run():
        out = root / "posthoc.jsonl"
        build_dataset(supernet.space, _evaluator(supernet, cfg), out, n_per_bin=per_bin, bins=BINS, progress=False)
        recs = [json.loads(line) for line in out.read_text().splitlines()][:n]  # the plan's first n: balanced
        return recs, train_predictor(recs, supernet.space, epochs=PREDICTOR_EPOCHS, seed=0)

    (recs, pred), seconds = once(benchmark, run)
    assert (
        len(recs) == n and max(np.bincount([r["bin"] for r in recs])) - min(np.bincount([r["bin"] for r in recs])) <= 1
    )
    STATE["posthoc"] = (recs, pred, seconds, per_bin * BINS)


@pytest.mark.benchmark(group="predictor-data-digits-demo")
def test_cotrained_refit(benchmark, root):
    need("cotrained")
    supernet = mnn.Supernet.load(root / "plain" / "supernet")
    recs = STATE["cotrained"][2]
    last = recs[-1]["phase"]
    phase = [r for r in recs if r["phase"] == last]

    def run():
        return train_predictor(balance_by_bin(phase, seed=0), supernet.space, epochs=PREDICTOR_EPOCHS, seed=0)

    pred, seconds = once(benchmark, run)
    from moofa.predictor import load_predictor

    shipped = load_predictor(root / "cotrained" / "predictor.npz", space=supernet.space)
    nets = [Subnet.from_dict(r) for r in phase]
    assert np.allclose(pred.predict(nets), shipped.predict(nets))  # the refit the run saved
    STATE["cotrained_refit"] = (pred, seconds, len(phase))


def _scores(pred, test):
    y = np.array([r["top1"] for r in test])
    p = pred.predict([Subnet.from_dict(r) for r in test]).astype(np.float64)
    return {"rmse": float(np.sqrt(np.mean((p - y) ** 2))), "kendall_tau": kendall_tau(p, y)}


def test_quality_on_a_balanced_test_set(root, tmp_path_factory):
    need("cotrained", "posthoc", "cotrained_refit", "plain")
    cfg = config()
    supernet = mnn.Supernet.load(root / "plain" / "supernet")
    # The test subnets measured twice: with BN recalibrated on batches neither route used
    # (calibration seed 1: the fair labels), and on the post-hoc set's own batches (seed 0),
    # which shares the post-hoc labels' calibration noise.
    per_bin = QUICK_TEST_PER_BIN if STATE["quick"] else TEST_PER_BIN
    tests, t0 = {}, time.perf_counter()
    for calib_seed in (1, 0):
        test_path = root / f"test-calib{calib_seed}.jsonl"
        build_dataset(
            supernet.space,
            _evaluator(supernet, cfg, seed=calib_seed),
            test_path,
            n_per_bin=per_bin,
            bins=BINS,
            seed=TEST_SEED,
            progress=False,
        )
        tests[calib_seed] = [json.loads(line) for line in test_path.read_text().splitlines()]
    test_seconds = time.perf_counter() - t0
    test = tests[1]
    plain, plain_s = STATE["plain"]
    result, co_s, recs, cot = STATE["cotrained"]
    post_recs, post_pred, post_s, post_evals = STATE["posthoc"]
    refit_pred, refit_s, n_phase = STATE["cotrained_refit"]
    n = len(recs)
    all_pred = train_predictor(balance_by_bin(recs, seed=0), supernet.space, epochs=PREDICTOR_EPOCHS, seed=0)
    post_small = train_predictor(post_recs[:n_phase], supernet.space, epochs=PREDICTOR_EPOCHS, seed=0)
    eval_s = sum(m["eval_seconds"] for m in cot)
    fit_s = sum(m["seconds"] for m in cot)
    preds = {
        "cotrained, last phase's records (as saved)": (refit_pred, n, n_phase),
        "cotrained, every phase's records": (all_pred, n, n),
        "post-hoc balanced, N evaluations": (post_pred, n, n),
        "post-hoc balanced, first n of the plan": (post_small, n_phase, n_phase),
    }
    rows = {k: (_scores(p, test), ev, used) for k, (p, ev, used) in preds.items()}
    shared = {k: _scores(p, tests[0]) for k, (p, _, _) in preds.items()}
    per_bin_last = np.bincount([r["bin"] for r in recs if r["phase"] == recs[-1]["phase"]], minlength=BINS)
    out = {
        "test_set": {"subnets": len(test), "bins": BINS, "seed": TEST_SEED, "build_seconds": round(test_seconds, 1)},
        "evaluations_cotrained": n,
        "records_last_phase": n_phase,
        "per_bin_last_phase": per_bin_last.tolist(),
        "per_bin_all_phases": np.bincount([r["bin"] for r in recs], minlength=BINS).tolist(),
        "seconds": {
            "train_plain": round(plain_s, 1),
            "train_cotrained": round(co_s, 1),
            "cotrain_evaluations_in_run": round(eval_s, 1),
            "cotrain_refits_in_run": round(fit_s, 1),
            "posthoc_build_and_fit": round(post_s, 1),
            "posthoc_evaluations_made": post_evals,
        },
        "predictors": {
            k: {**v[0], "evaluations": v[1], "records": v[2], "on_posthoc_calibration": shared[k]}
            for k, v in rows.items()
        },
    }
    path = Path(os.environ.get("MOOFA_COTRAIN_RESULTS", tmp_path_factory.getbasetemp() / "cotrain-results.json"))
    path.write_text(json.dumps(out, indent=1))
    print(f"\n{json.dumps(out, indent=1)}\nwritten to {path}")
    print("| predictor | subnet evaluations | records used | RMSE | Kendall tau | RMSE, tau (post-hoc's calibration) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, (sc, ev, used) in rows.items():
        sh = shared[k]
        print(
            f"| {k} | {ev} | {used} | {sc['rmse']:.2f} | {sc['kendall_tau']:.3f} | "
            f"{sh['rmse']:.2f}, {sh['kendall_tau']:.3f} |"
        )
    for sc in [r[0] for r in rows.values()] + list(shared.values()):
        assert math.isfinite(sc["rmse"]) and -1 <= sc["kendall_tau"] <= 1
    assert len(test) == len(tests[0]) == per_bin * BINS and len(post_recs) == n
