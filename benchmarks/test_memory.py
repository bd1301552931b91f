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


def test_peak_public(benchmark, rows, expected):
    """moofa.peak_memory on encoded uint8 rows: the same C++ loop, rows checked as they
    are evaluated, no copy. Compare with test_peak_cpp (same run, same group)."""
    benchmark.group = "peak memory, 1M moofa configs"
    peaks = benchmark(moofa.peak_memory, rows, "moofa")
    np.testing.assert_array_equal(peaks, expected[0])
    benchmark.extra_info["configs_per_s"] = N / seconds(benchmark, "mean")


def test_peak_public_vs_private_same_run(rows, expected):
    """Paired timings of the public and the private entry, interleaved so both see the
    same load; the ratio (public / private speed) goes to the output, not to an assert."""
    import time

    ev = moofa.evaluator("moofa")
    public, private = [], []
    for _ in range(7):
        t = time.perf_counter()
        got = moofa.peak_memory(rows, "moofa")
        public.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = ev.peaks(rows, 0)
        private.append(time.perf_counter() - t)
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got, expected[0])
    pub, priv = sorted(public)[3], sorted(private)[3]
    print(
        f"\npeak_memory {N / pub / 1e6:.1f} M configs/s, Evaluator.peaks {N / priv / 1e6:.1f} M configs/s, "
        f"ratio {priv / pub:.2f}"
    )


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
