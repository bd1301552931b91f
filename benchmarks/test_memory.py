"""Batched evaluator throughput vs a vectorised numpy version of the same rules.

Run: pytest benchmarks/test_memory.py --benchmark-only  (see README for figures)
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy_evaluator import numpy_peaks
from timing import seconds

import moofa

N = 1_000_000


@pytest.fixture(scope="module")
def rows():
    return moofa.random_subnets(N, "moofa", seed=0)


@pytest.fixture(scope="module")
def expected(rows):
    return numpy_peaks(rows, moofa.get_space("moofa"), with_stats=True)


def test_peak_cpp(benchmark, rows, expected):
    benchmark.group = "peak memory, 1M moofa configs"
    ev = moofa.evaluator("moofa")
    peaks = benchmark(ev.peaks, rows, 0)
    np.testing.assert_array_equal(peaks, expected[0])
    benchmark.extra_info["configs_per_s"] = N / seconds(benchmark, "mean")


def test_peak_numpy(benchmark, rows, expected):
    benchmark.group = "peak memory, 1M moofa configs"
    space = moofa.get_space("moofa")
    peaks = benchmark.pedantic(numpy_peaks, args=(rows, space), rounds=3, iterations=1)
    np.testing.assert_array_equal(peaks, expected[0])
    benchmark.extra_info["configs_per_s"] = N / seconds(benchmark, "mean")


def test_profile_cpp(benchmark, rows, expected):
    benchmark.group = "full profile (peak, avg, std, MFLOPs, params), 1M moofa configs"
    ev = moofa.evaluator("moofa")
    out = benchmark(ev.profiles, rows, 0, False)
    np.testing.assert_array_equal(out["peak"], expected[0])
    np.testing.assert_allclose(out["avg"], expected[1], rtol=1e-12)
    np.testing.assert_allclose(out["std"], expected[2], rtol=1e-9)
    benchmark.extra_info["configs_per_s"] = N / seconds(benchmark, "mean")


def test_profile_numpy(benchmark, rows, expected):
    benchmark.group = "full profile (peak, avg, std, MFLOPs, params), 1M moofa configs"
    space = moofa.get_space("moofa")
    peaks, mean, std = benchmark.pedantic(numpy_peaks, args=(rows, space, True), rounds=3, iterations=1)
    np.testing.assert_array_equal(peaks, expected[0])
    benchmark.extra_info["configs_per_s"] = N / seconds(benchmark, "mean")
