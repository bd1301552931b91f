"""moofa._core.MlpPredictor against independent forward passes (numpy float64 here,
torch when installed), on random nets, every instruction set this CPU runs, tile edges,
user-defined spaces, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import moofa
from moofa._ext import core
from moofa.memory import spec

ISAS = [isa for isa in ("generic", "avx2", "avx512") if core.isa_supported(isa)]


def reference_one_hot(rows: np.ndarray, space: moofa.Space) -> np.ndarray:
    """The published encoding, written out loop by loop from REFERENCE.md."""
    n_res, n_k, n_e = len(space.resolutions), len(space.kernels), len(space.expands)
    n_slots, n_stages = space.n_slots, space.n_stages
    out = np.zeros((len(rows), n_res + n_slots * (n_k + n_e)))
    for i, row in enumerate(rows):
        out[i, row[0]] = 1
        slot = 0
        for s, stage in enumerate(space.stages):
            depth = space.depths[row[1 + s]]
            for p in range(stage.max_depth):
                if p < depth:
                    out[i, n_res + slot * n_k + row[1 + n_stages + slot]] = 1
                    out[i, n_res + n_slots * n_k + slot * n_e + row[1 + n_stages + n_slots + slot]] = 1
                slot += 1
    return out


def reference_forward(x, weights, biases, skip=None, scale=1.0, offset=0.0):
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        if i + 1 < len(weights):
            h = np.maximum(h, 0.0)
    y = h[:, 0]
    if skip is not None:
        y = y + x @ skip.astype(np.float64)
    return offset + scale * y


def random_net(n_in, hidden, rng, skip=False):
    sizes = [n_in, *hidden, 1]
    weights = [(rng.normal(size=(a, b)) / np.sqrt(a) * 2).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    biases = [rng.normal(size=b).astype(np.float32) * 0.5 for b in sizes[1:]]
    s = rng.normal(size=n_in).astype(np.float32) if skip else None
    return weights, biases, s


USER_SPACE = moofa.Space(
    name="test-predictor-user",
    stages=(moofa.Stage(16, 2, max_depth=3), moofa.Stage(24, 2, se=True, max_depth=2), moofa.Stage(40, 1)),
    kernels=(3, 5, 7, 9),
    expands=(2, 4),
    depths=(1, 2),
    resolutions=(96, 128),
)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    "hidden,skip",
    [((), False), ((7,), True), ((64,), False), ((33, 50), True), ((400, 400, 400), False), ((5, 130, 17, 9), True)],
)
def test_matches_float64_forward_on_random_nets(isa, hidden, skip):
    rng = np.random.default_rng(len(hidden) * 100 + sum(hidden))
    space = moofa.get_space("moofa")
    weights, biases, s = random_net(124, hidden, rng, skip)
    pred = core.MlpPredictor(spec(space), weights, biases, s, 1.5, -2.0, isa)
    assert pred.isa == isa and pred.layer_sizes == [124, *hidden, 1]
    rows = moofa.random_subnets(777, space, seed=3)
    want = reference_forward(reference_one_hot(rows, space), weights, biases, s, 1.5, -2.0)
    for threads in (1, 2):
        got = pred.score(rows, threads)
        assert got.dtype == np.float32 and got.shape == (777,)
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max() / 100), rtol=0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 5, 47, 48, 49, 97, 2500])
def test_batch_sizes_around_the_tile(isa, n):
    rng = np.random.default_rng(n)
    space = moofa.get_space("ofa")
    weights, biases, s = random_net(124, (40, 24), rng, True)
    pred = core.MlpPredictor(spec(space), weights, biases, s, 1.0, 0.0, isa)
    rows = moofa.random_subnets(n, space, seed=n)
    want = reference_forward(reference_one_hot(rows, space), weights, biases, s)
    np.testing.assert_allclose(pred.score(rows, 2), want, atol=1e-4, rtol=0)
    # Every row is scored on its own: the same config gives the same score anywhere in a batch.
    if n:
        assert pred.score(rows[-1:], 1)[0] == pytest.approx(want[-1], abs=1e-4)


@pytest.mark.parametrize("space_name", ["compofa", "moofa-e1-2", USER_SPACE])
def test_other_spaces_encode_their_own_slots(space_name):
    space = moofa.get_space(space_name)
    n_in = core.MlpPredictor.one_hot_size(spec(space))
    assert n_in == len(space.resolutions) + space.n_slots * (len(space.kernels) + len(space.expands))
    rng = np.random.default_rng(1)
    weights, biases, s = random_net(n_in, (48,), rng, True)
    pred = core.MlpPredictor(spec(space), weights, biases, s)
    rows = moofa.random_subnets(300, space, seed=2)
    want = reference_forward(reference_one_hot(rows, space), weights, biases, s)
    np.testing.assert_allclose(pred.score(rows), want, atol=1e-4, rtol=0)


def test_inactive_slots_do_not_matter():
    space = moofa.get_space("moofa")
    rng = np.random.default_rng(5)
    weights, biases, s = random_net(124, (32,), rng, True)
    pred = core.MlpPredictor(spec(space), weights, biases, s)
    rows = moofa.random_subnets(200, space, seed=4)
    rows[:, 1:6] = 0  # depth 2 everywhere: slots 2 and 3 of each stage are inactive
    changed = rows.copy()
    for stage in range(5):
        for p in (2, 3):
            changed[:, 6 + stage * 4 + p] = (changed[:, 6 + stage * 4 + p] + 1) % 3
            changed[:, 26 + stage * 4 + p] = (changed[:, 26 + stage * 4 + p] + 2) % 3
    np.testing.assert_array_equal(pred.score(rows), pred.score(changed))


def test_concurrent_calls_agree():
    space = moofa.get_space("moofa")
    weights, biases, s = random_net(124, (64, 64), np.random.default_rng(9), True)
    pred = core.MlpPredictor(spec(space), weights, biases, s)
    rows = moofa.random_subnets(5000, space, seed=9)
    want = pred.score(rows, 1)
    results = [None] * 4

    def run(i):
        results[i] = pred.score(rows, 2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_is_a_scorer():
    space = moofa.get_space("moofa")
    weights, biases, _ = random_net(124, (8,), np.random.default_rng(0))
    pred = core.MlpPredictor(spec(space), weights, biases)
    assert isinstance(pred, core.Scorer)
    assert pred.n_columns == space.n_columns


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("hidden", [(64,), (512,), (40, 24)])
def test_int16_first_layer_stays_close(isa, hidden):
    rng = np.random.default_rng(sum(hidden))
    space = moofa.get_space("moofa")
    weights, biases, s = random_net(124, hidden, rng, True)
    exact = core.MlpPredictor(spec(space), weights, biases, s, 2.0, 60.0, isa)
    quant = core.MlpPredictor(spec(space), weights, biases, s, 2.0, 60.0, isa, "int16")
    assert exact.precision == "fp32" and quant.precision == "int16"
    rows = moofa.random_subnets(3000, space, seed=11)
    want = reference_forward(reference_one_hot(rows, space), weights, biases, s, 2.0, 60.0)
    got = quant.score(rows, 2)
    # 15 rounded terms of at most half a quantum each, in every hidden unit.
    assert np.abs(got - want).max() < 1e-3 * (want.max() - want.min())
    assert np.abs(exact.score(rows, 2) - want).max() < 1e-4 * max(1.0, np.abs(want).max() / 100)


def _bad(match, **changes):
    space = moofa.get_space("moofa")
    weights, biases, s = random_net(124, (16,), np.random.default_rng(0), True)
    kw = dict(space=spec(space), weights=weights, biases=biases, skip=s)
    kw.update(changes)
    with pytest.raises(ValueError, match=match):
        core.MlpPredictor(**kw)


def test_bad_weights_are_refused():
    rng = np.random.default_rng(0)
    w0, w1 = rng.normal(size=(124, 16)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)
    b0, b1 = np.zeros(16, np.float32), np.zeros(1, np.float32)
    _bad(r"layers\[0\]: expected 124 inputs", weights=[w0[:100], w1])
    _bad(r"layers\[1\]: expected 16 inputs", weights=[w0, w1[:8]])
    _bad(
        r"last layer must have 1 output",
        weights=[w0, np.zeros((16, 2), np.float32)],
        biases=[b0, np.zeros(2, np.float32)],
    )
    _bad(r"layers\[0\]: bias must hold 16", biases=[b0[:3], b1])
    _bad(r"same length", biases=[b0])
    _bad(r"at least one layer", weights=[], biases=[])
    _bad(r"2-D", weights=[w0.ravel(), w1])
    nan = w0.copy()
    nan[3, 4] = np.nan
    _bad(r"layers\[0\]: weights must be finite", weights=[nan, w1])
    inf = b1.copy()
    inf[0] = np.inf
    _bad(r"layers\[1\]: weights must be finite", biases=[b0, inf])
    _bad(r"skip: must be empty or hold one weight per one-hot feature \(124\)", skip=np.zeros(5, np.float32))
    _bad(r"skip: weights must be finite", skip=np.full(124, np.nan, np.float32))
    _bad(r"isa must be one of", isa="sse9")
    _bad(r"precision must be 'fp32' or 'int16'", precision="bf8")
    _bad(
        r"a linear model has none",
        weights=[np.zeros((124, 1), np.float32)],
        biases=[np.zeros(1, np.float32)],
        precision="int16",
    )
    for isa in ("avx2", "avx512"):
        if not core.isa_supported(isa):
            _bad(r"not supported by this CPU", isa=isa)


def test_bad_rows_are_refused():
    space = moofa.get_space("moofa")
    weights, biases, _ = random_net(124, (8,), np.random.default_rng(0))
    pred = core.MlpPredictor(spec(space), weights, biases)
    with pytest.raises(ValueError, match=r"shape \(n, 46\)"):
        pred.score(np.zeros((3, 45), np.uint8))
    rows = moofa.random_subnets(10, space, seed=0)
    rows[7, 30] = 3
    with pytest.raises(ValueError, match="row 7, column 30"):
        pred.score(rows)
    with pytest.raises(ValueError, match="threads"):
        pred.score(rows[:1], -1)


# --- MOOFA_ISA: the kernel set "auto" means --------------------------------------------------

_ISA_CHILD = """
import sys
import numpy as np
import moofa
try:
    pred = moofa.load_predictor("moofa")
except ValueError as e:
    print("ValueError:", e)
    sys.exit(3)
rows = moofa.random_subnets(300, "moofa", seed=4)
np.save(sys.argv[1], pred.scorer.score(rows, 1))
print(pred.isa)
"""


def _run_with_isa_env(value: str, out) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOOFA_ISA": value}
    return subprocess.run(
        [sys.executable, "-c", _ISA_CHILD, str(out)], env=env, capture_output=True, text=True, timeout=120
    )


def test_moofa_isa_environment_variable_picks_the_kernel(tmp_path):
    """Each kernel set this CPU runs, named in MOOFA_ISA, is the one "auto" gets: its
    output has the bits of that kernel forced in this process, and all agree."""
    rows = moofa.random_subnets(300, "moofa", seed=4)
    pred = moofa.load_predictor("moofa")
    outputs = {}
    for isa in ISAS:
        proc = _run_with_isa_env(isa, tmp_path / f"{isa}.npy")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.split() == [isa]
        outputs[isa] = np.load(tmp_path / f"{isa}.npy")
        want = pred.with_options(isa=isa).scorer.score(rows, 1)
        assert outputs[isa].tobytes() == want.tobytes()
    for isa in ISAS:
        np.testing.assert_allclose(outputs[isa], outputs["generic"], atol=1e-4, rtol=0)
    proc = _run_with_isa_env("auto", tmp_path / "auto.npy")
    assert proc.returncode == 0 and proc.stdout.split() == [core.best_isa()]


@pytest.mark.parametrize("value", ["avx1024", "AVX2", " avx2", "best"])
def test_moofa_isa_environment_variable_rejects_unknown_values(tmp_path, value):
    proc = _run_with_isa_env(value, tmp_path / "out.npy")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"MOOFA_ISA='{value}'" in proc.stdout
    assert "'auto', 'avx512', 'avx2', 'generic'" in proc.stdout
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_moofa_isa_environment_variable_refuses_a_kernel_the_cpu_lacks(tmp_path, isa):
    if isa in ISAS:
        pytest.skip(f"this CPU runs {isa}")
    proc = _run_with_isa_env(isa, tmp_path / "out.npy")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"MOOFA_ISA='{isa}'" in proc.stdout and "does not support" in proc.stdout


def test_an_explicit_isa_argument_does_not_read_moofa_isa(tmp_path):
    """MOOFA_ISA only replaces the automatic choice: isa="generic" ignores even a bad value."""
    child = _ISA_CHILD.replace('load_predictor("moofa")', 'load_predictor("moofa", isa="generic")')
    env = {**os.environ, "MOOFA_ISA": "bogus"}
    proc = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "g.npy")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["generic"]
