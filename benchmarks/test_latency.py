"""Latency tables against measured end-to-end latency (moofa space, 128 and 160 px).

* ``test_table_matches_end_to_end``: a table built on this host (PyTorch, one thread, parts
  timed in context) predicts the measured end-to-end latency of 50 random extracted subnets:
  Spearman >= 0.95 and median absolute error <= 10% (checked). Table and subnets are measured
  in 8 alternating rounds (warmup 1, one timed run each; per figure the median over the
  rounds). Timed: the table's prediction of those 50 subnets.
* ``test_measure_end_to_end`` (baseline, same group): measuring 5 of those subnets end to end
  (what the table replaces), checked against the first measurement of the same subnets.

Both use the CPU time of the measuring thread (``clock="cpu"``), which other load on the
host disturbs far less than wall time; ``MOOFA_LATENCY_CLOCK=wall`` measures wall time (on an
idle host). ``MOOFA_LATENCY_RUNTIME=onnxruntime`` and ``MOOFA_LATENCY_METHOD=standalone`` check
the other runtime and method the same way.

    python -m pytest benchmarks/test_latency.py --benchmark-columns=min,median,max,rounds -s
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import moofa  # noqa: E402
import moofa.latency as ml  # noqa: E402
import moofa.nn as mnn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import one_torch_thread  # noqa: E402, F401  (the fixture, for this module)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = "moofa"
RESOLUTIONS = (128, 160)
N_SUBNETS = 50
CLOCK = os.environ.get("MOOFA_LATENCY_CLOCK", "cpu")
RUNTIME = os.environ.get("MOOFA_LATENCY_RUNTIME", "torch")
METHOD = os.environ.get("MOOFA_LATENCY_METHOD") or None  # unset: the runtime's default
SETTINGS = {"warmup": 1, "repeats": 1, "clock": CLOCK, "runtime": RUNTIME}
# Table and subnets are measured in alternating rounds (each figure: the median over the
# rounds), so that load on the host that comes and goes meets both alike.
ROUNDS = 8


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (no ties among measured times)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def measured():
    sp = moofa.get_space(SPACE)
    sup = mnn.Supernet(sp).eval()
    rows = moofa.subnet.random_subnets(40 * N_SUBNETS, sp, seed=7)
    keep = np.isin(rows[:, 0], [sp.resolutions.index(r) for r in RESOLUTIONS])
    rows = rows[keep][:N_SUBNETS]
    tables, e2e, build_s, e2e_s = [], [], 0.0, 0.0
    for i in range(ROUNDS):
        t0 = time.perf_counter()
        tables.append(ml.build_table(sp, resolutions=RESOLUTIONS, supernet=sup, method=METHOD, seed=i, **SETTINGS))
        t1 = time.perf_counter()
        e2e.append(ml.measure_subnets(rows, sp, supernet=sup, seed=i, **SETTINGS))
        build_s, e2e_s = build_s + t1 - t0, e2e_s + time.perf_counter() - t1
    table = ml.median_table(tables)
    return {"table": table, "rows": rows, "e2e": np.median(e2e, axis=0), "sup": sup, "build_s": build_s, "e2e_s": e2e_s}


@pytest.mark.benchmark(group="latency-moofa")
def test_table_matches_end_to_end(benchmark, measured):
    table, rows, e2e = measured["table"], measured["rows"], measured["e2e"]
    predicted = benchmark(table.predict, rows)
    assert len(rows) == N_SUBNETS and predicted.shape == (N_SUBNETS,)
    rho = spearman(predicted, e2e)
    error = np.abs(predicted - e2e) / e2e
    benchmark.extra_info.update(
        clock=CLOCK,
        runtime=RUNTIME,
        method=table.info["settings"]["method"],
        spearman=rho,
        median_abs_error=float(np.median(error)),
        median_signed_error=float(np.median((predicted - e2e) / e2e)),
        measured_ms_range=[float(e2e.min()), float(e2e.max())],
        table_build_s=measured["build_s"],
        end_to_end_measure_s=measured["e2e_s"],
        cpu=ml.host_cpu(),
    )
    print(f"\nlatency table vs end to end: {benchmark.extra_info}")
    assert rho >= 0.95
    assert np.median(error) <= 0.10


@pytest.mark.benchmark(group="latency-moofa")
def test_measure_end_to_end(benchmark, measured):
    rows = measured["rows"][:5]
    again = benchmark.pedantic(
        ml.measure_subnets, args=(rows, SPACE), kwargs={"supernet": measured["sup"], **SETTINGS, "repeats": 3}, rounds=1
    )
    # The same subnets measured twice agree (the ground truth above is repeatable).
    assert np.median(np.abs(again - measured["e2e"][:5]) / measured["e2e"][:5]) <= 0.2
