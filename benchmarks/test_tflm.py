"""memory_model="tflm": the C++ evaluator's TFLM arena head vs its Python reference
(moofa.tflm) vs exporting each subnet and allocating it in TensorFlow Lite Micro, in the same
run; every side's heads must agree with the C++ ones.

Run: pytest benchmarks/test_tflm.py --benchmark-only -s
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from timing import seconds

import moofa
from moofa import tflm

SPACE = "moofa-e1-2"
N = 200_000
N_PYTHON = 500
N_TFLM = 5


@pytest.fixture(scope="module")
def rows():
    return moofa.random_subnets(N, SPACE, seed=0)


@pytest.fixture(scope="module")
def heads(rows):
    return moofa.peak_memory(rows, SPACE, memory_model="tflm")


def test_tflm_cpp(benchmark, rows, heads):
    benchmark.group = f"TFLM arena head, {SPACE}"
    ev = moofa.evaluator(SPACE, "tflm")
    got = benchmark(ev.peaks, rows, 0)
    np.testing.assert_array_equal(got, heads)
    benchmark.extra_info["configs_per_s"] = N / seconds(benchmark, "mean")


def test_tflm_python_reference(benchmark, rows, heads):
    benchmark.group = f"TFLM arena head, {SPACE}"
    nets = moofa.decode(rows[:N_PYTHON], SPACE)
    got = benchmark.pedantic(lambda: [tflm.head(n, SPACE) for n in nets], rounds=3, iterations=1)
    assert got == heads[:N_PYTHON].tolist()
    benchmark.extra_info["configs_per_s"] = N_PYTHON / seconds(benchmark, "mean")


def test_tflm_export_and_allocate(benchmark, rows, heads):
    """The slow side: export each subnet (random weights) and allocate it in TFLM."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tflite_micro", reason="tflite-micro has wheels for CPython 3.10-3.12 only (moofa[mcu])")
    import moofa.nn as mnn
    from moofa.deploy import allocate
    from moofa.export import tflite

    benchmark.group = f"TFLM arena head, {SPACE}"
    sup = mnn.Supernet(SPACE)
    nets = moofa.decode(rows[:N_TFLM], SPACE)

    def measure():
        out = []
        for net in nets:
            r = net.image_size
            model = tflite(sup.extract(net).eval(), torch.randn(1, 3, r, r))
            out.append(allocate(model, 1 << 24).head)
        return out

    got = benchmark.pedantic(measure, rounds=1, iterations=1)
    assert got == heads[:N_TFLM].tolist()
    benchmark.extra_info["configs_per_s"] = N_TFLM / seconds(benchmark, "mean")


def test_tflm_speed_same_run(rows, heads):
    """C++ vs Python reference, interleaved so both see the same load (ratio printed)."""
    ev = moofa.evaluator(SPACE, "tflm")
    nets = moofa.decode(rows[:N_PYTHON], SPACE)
    cpp, py = [], []
    for _ in range(3):
        t = time.perf_counter()
        got = ev.peaks(rows, 0)
        cpp.append((time.perf_counter() - t) / N)
        t = time.perf_counter()
        ref = [tflm.head(n, SPACE) for n in nets]
        py.append((time.perf_counter() - t) / N_PYTHON)
        np.testing.assert_array_equal(got, heads)
        assert ref == heads[:N_PYTHON].tolist()
    c, p = sorted(cpp)[1], sorted(py)[1]
    print(f"\nC++ {1 / c:,.0f} configs/s (all cores), Python reference {1 / p:,.0f} configs/s, ratio {p / c:,.0f}")
