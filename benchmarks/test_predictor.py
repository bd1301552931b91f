"""Batched predictor inference: moofa's C++ kernels vs torch and numpy (BLAS) on the
same weights, 100k configs, the same thread count, one run:

    python -m pytest benchmarks/test_predictor.py --benchmark-columns=min,median,ops

Every benchmark checks its result against a float64 forward pass. The ISA benchmarks time
the AVX2 and AVX-512 kernels side by side (one thread, same rows, interleaved rounds) where
the CPU has both, and check each against the portable kernel.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import moofa
from moofa._ext import core
from moofa.predictor import one_hot

N = 100_000
THREADS = 2
WIDE_ISAS = [isa for isa in ("avx2", "avx512") if core.isa_supported(isa)]
SCALAR_CHECK = 10_000  # rows checked against the portable kernel (slow on the 400-wide net)
SHARED = Path(os.environ.get("MOOFA_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def reference(pred: moofa.Predictor, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(zip(pred.weights, pred.biases)):
        h = h @ w.astype(np.float64) + b
        if i + 1 < len(pred.weights):
            h = np.maximum(h, 0)
    y = h[:, 0] + (x @ pred.skip.astype(np.float64) if pred.skip is not None else 0)
    return pred.offset + pred.scale * y


def numpy_forward(pred: moofa.Predictor, x: np.ndarray) -> np.ndarray:
    """The same MLP as dense float32 matmuls on the one-hot input (numpy's BLAS)."""
    h = x
    for i, (w, b) in enumerate(zip(pred.weights, pred.biases)):
        h = h @ w + b
        if i + 1 < len(pred.weights):
            np.maximum(h, 0, out=h)
    y = h[:, 0] + (x @ pred.skip if pred.skip is not None else 0)
    return pred.offset + pred.scale * y


def torch_forward(pred: moofa.Predictor):
    torch = pytest.importorskip("torch")
    mods = []
    for i, (w, b) in enumerate(zip(pred.weights, pred.biases)):
        lin = torch.nn.Linear(*w.shape)
        lin.weight.data.copy_(torch.from_numpy(w.T.copy()))
        lin.bias.data.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i + 1 < len(pred.weights):
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).eval()
    skip = None if pred.skip is None else torch.from_numpy(pred.skip)

    def run(x):
        with torch.inference_mode():
            y = net(x)[:, 0]
            if skip is not None:
                y = y + x @ skip
            return (pred.offset + pred.scale * y).numpy()

    return run


CASES = {
    "shipped-moofa": lambda: moofa.load_predictor("moofa"),
    "published-ofa-400x3": lambda: moofa.load_predictor(SHARED / "reference" / "predictors" / "ofa.pth.tar"),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    if request.param.startswith("published"):
        if not SHARED.is_dir():
            pytest.skip("needs ../shared (published .pth.tar checkpoints); set MOOFA_SHARED")
        pytest.importorskip("torch")
    pred = CASES[request.param]()
    rows = moofa.random_subnets(N, pred.space, seed=0)
    x = one_hot(rows, pred.space)
    return request.param, pred, rows, x, reference(pred, x)


def timed(benchmark, name, fn, *args):
    # Fixed rounds: a 400-wide net takes seconds per 100k configs in the slow baselines.
    rounds = 3 if name.startswith("published") else 7
    return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=1)


def check(got, want):
    assert got.shape == (N,)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


def test_moofa_cpp(benchmark, case):
    name, pred, rows, _, want = case
    benchmark.group = f"predictor {name} {N // 1000}k configs"
    benchmark.extra_info["isa"] = pred.isa
    got = timed(benchmark, name, pred.scorer.score, rows, THREADS)
    check(got, want)


def test_moofa_cpp_portable_kernel(benchmark, case):
    name, pred, rows, _, want = case
    if name.startswith("published"):
        pytest.skip("the portable kernel is only timed on the shipped predictor (15 s a round here)")
    benchmark.group = f"predictor {name} {N // 1000}k configs"
    generic = moofa.Predictor(
        pred.space, pred.weights, pred.biases, skip=pred.skip, scale=pred.scale, offset=pred.offset, isa="generic"
    )
    got = timed(benchmark, name, generic.scorer.score, rows, THREADS)
    check(got, want)


def test_moofa_cpp_int16_first_layer(benchmark, case):
    name, pred, rows, _, want = case
    benchmark.group = f"predictor {name} {N // 1000}k configs"
    quant = pred.with_options(precision="int16")
    got = timed(benchmark, name, quant.scorer.score, rows, THREADS)
    assert got.shape == (N,)
    assert np.abs(got - want).max() <= 0.05  # the reduced-precision contract (docs/predictor.md)


def test_torch(benchmark, case):
    torch = pytest.importorskip("torch")
    name, pred, _, x, want = case
    benchmark.group = f"predictor {name} {N // 1000}k configs"
    run = torch_forward(pred)
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        xt = torch.from_numpy(x)
        got = timed(benchmark, name, run, xt)
    finally:
        torch.set_num_threads(old)
    check(got, want)


def test_numpy_matmul(benchmark, case):
    name, pred, _, x, want = case
    benchmark.group = f"predictor {name} {N // 1000}k configs"
    got = timed(benchmark, name, numpy_forward, pred, x)
    check(got, want)


@pytest.mark.parametrize("isa", WIDE_ISAS)
def test_moofa_cpp_kernel_isa(benchmark, case, isa):
    """Each wide kernel on one thread; its output equals the portable kernel's (up to the
    order of float additions)."""
    name, pred, rows, _, want = case
    benchmark.group = f"predictor kernels {name} {N // 1000}k configs, 1 thread"
    benchmark.extra_info["isa"] = isa
    portable = pred.with_options(isa="generic").scorer.score(rows[:SCALAR_CHECK], 1)
    got = timed(benchmark, name, pred.with_options(isa=isa).scorer.score, rows, 1)
    np.testing.assert_allclose(got[:SCALAR_CHECK], portable, atol=1e-4, rtol=0)
    check(got, want)


def test_avx512_against_avx2_kernel(benchmark, case):
    """The two wide kernels in interleaved rounds of the same run (a busy machine slows
    both alike): extra_info holds each one's best time and avx512 / avx2."""
    if WIDE_ISAS != ["avx2", "avx512"]:
        pytest.skip("this CPU lacks AVX2 or AVX-512")
    name, pred, rows, _, want = case
    benchmark.group = f"predictor kernels {name} {N // 1000}k configs, 1 thread"
    scorers = {isa: pred.with_options(isa=isa).scorer for isa in WIDE_ISAS}
    portable = pred.with_options(isa="generic").scorer.score(rows[:SCALAR_CHECK], 1)
    best = dict.fromkeys(scorers, float("inf"))

    def both():
        for isa, scorer in scorers.items():
            t = time.perf_counter()
            got = scorer.score(rows, 1)
            best[isa] = min(best[isa], time.perf_counter() - t)
            np.testing.assert_allclose(got[:SCALAR_CHECK], portable, atol=1e-4, rtol=0)
        return got

    check(timed(benchmark, name, both), want)
    benchmark.extra_info.update(
        avx2_s=best["avx2"], avx512_s=best["avx512"], avx512_over_avx2=best["avx512"] / best["avx2"]
    )


@pytest.mark.parametrize("isa", WIDE_ISAS)
def test_kernel_results_do_not_depend_on_where_the_weights_lie(isa):
    """The same weights in fresh allocations (each predictor kept alive, so the next one
    lies elsewhere) give the same bits: nothing of an allocation but its values (no
    uninitialised padding, no alignment-dependent code path) reaches the output."""
    rng = np.random.default_rng(0)
    space = moofa.get_space("moofa")
    n_in = len(one_hot(moofa.random_subnets(1, space, seed=0), space)[0])
    weights = [rng.normal(size=(n_in, 24)).astype(np.float32), rng.normal(size=(24, 1)).astype(np.float32)]
    biases = [rng.normal(size=24).astype(np.float32), np.zeros(1, np.float32)]
    rows = moofa.random_subnets(500, space, seed=1)
    keep, outputs = [], set()
    for _ in range(16):
        pred = moofa.Predictor(space, weights, biases, isa=isa)
        keep.append(pred)
        # The raw scores: these random weights predict far outside [0, 100] %, which
        # predict() would warn about.
        outputs.add(pred.scorer.score(rows, 1).tobytes())
    assert len(outputs) == 1


def test_best_isa_is_reported():
    assert core.best_isa() in ("generic", "avx2", "avx512")
