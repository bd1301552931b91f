"""Every moofa._core entry that takes encoded rows checks them: garbage rows give a
ValueError naming the first bad row, its column and the allowed range, valid rows the
exact answer. The expected outcome comes from a plain Python reading of the space's
fields (``first_bad`` below), the expected figures from tests/oracle.py and numpy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oracle import evaluate

import moofa
from moofa._ext import core
from moofa.memory import spec

SPACES = ("moofa", "compofa")


def first_bad(rows: np.ndarray, space: moofa.Space):
    """(row, column) of the first invalid row, or None: written from the encoding's definition."""
    s, n = space.n_stages, space.n_slots
    limits = [len(space.resolutions)] + [len(space.depths)] * s + [len(space.kernels)] * n + [len(space.expands)] * n
    for i, row in enumerate(rows.tolist()):
        for c, v in enumerate(row):
            if v >= limits[c]:
                return i, c
        if space.expand_by_depth:
            slot = 0
            for stage_i, stage in enumerate(space.stages):
                depth = space.depths[row[1 + stage_i]]
                want = space.expands.index(space.expand_by_depth[depth])
                for j in range(depth):
                    if row[1 + s + n + slot + j] != want:
                        return i, 1 + s + n + slot + j
                slot += stage.max_depth
    return None


def one_hot(rows: np.ndarray, space: moofa.Space) -> np.ndarray:
    n_res, n_k, n_e = len(space.resolutions), len(space.kernels), len(space.expands)
    s, n = space.n_stages, space.n_slots
    out = np.zeros((len(rows), n_res + n * (n_k + n_e)))
    for i, row in enumerate(rows.tolist()):
        out[i, row[0]] = 1
        slot = 0
        for stage_i, stage in enumerate(space.stages):
            for p in range(space.depths[row[1 + stage_i]]):
                out[i, n_res + (slot + p) * n_k + row[1 + s + slot + p]] = 1
                out[i, n_res + n * n_k + (slot + p) * n_e + row[1 + s + n + slot + p]] = 1
            slot += stage.max_depth
    return out


class Models:
    """One instance of every C++ entry that reads rows, per space."""

    def __init__(self, name: str):
        self.space = moofa.get_space(name)
        self.spec = spec(self.space)
        rng = np.random.default_rng(0)
        n_in = self.spec.one_hot_size
        self.w0 = rng.normal(size=(n_in, 8)).astype(np.float32)
        self.b0 = rng.normal(size=8).astype(np.float32)
        self.w1 = rng.normal(size=(8, 1)).astype(np.float32)
        self.b1 = rng.normal(size=1).astype(np.float32)
        self.mlp = core.MlpPredictor(self.spec, [self.w0, self.w1], [self.b0, self.b1])
        self.mlp16 = core.MlpPredictor(self.spec, [self.w0, self.w1], [self.b0, self.b1], precision="int16")
        self.lin_w = rng.normal(size=n_in).astype(np.float32)
        self.linear = core.LinearScorer(self.spec, self.lin_w, 0.5)
        self.full = moofa.evaluator(self.space)
        self.act = moofa.evaluator(self.space, "activations")

    def entries(self):
        """(name, callable) of every row-taking entry."""
        return [
            ("SpaceSpec.check_rows", self.spec.check_rows),
            ("Evaluator.peaks", lambda r: self.full.peaks(r, 2)),
            ("Evaluator.peaks/activations", lambda r: self.act.peaks(r, 1)),
            ("Evaluator.profiles", lambda r: self.full.profiles(r, 2, False)),
            ("Evaluator.profiles/hist", lambda r: self.full.profiles(r, 1, True)),
            ("MlpPredictor.score", lambda r: self.mlp.score(r, 2)),
            ("MlpPredictor.score/int16", lambda r: self.mlp16.score(r, 1)),
            ("LinearScorer.score", lambda r: self.linear.score(r, 2)),
            ("moofa.peak_memory", lambda r: moofa.peak_memory(r, self.space)),
            ("moofa.profiles", lambda r: moofa.profiles(r, self.space)),
            ("moofa.decode", lambda r: moofa.decode(r, self.space)),
        ]


MODELS = {name: Models(name) for name in SPACES}


@st.composite
def batches(draw):
    """A batch of valid rows with a few cells overwritten by arbitrary bytes (or all garbage)."""
    name = draw(st.sampled_from(SPACES))
    space = MODELS[name].space
    n = draw(st.integers(0, 6))
    if draw(st.booleans()):
        rows = moofa.random_subnets(n, space, seed=draw(st.integers(0, 2**32 - 1)))
        for _ in range(draw(st.integers(0, 3))):
            if n:
                i, c = draw(st.integers(0, n - 1)), draw(st.integers(0, space.n_columns - 1))
                rows[i, c] = draw(st.integers(0, 255))
    else:
        flat = draw(st.binary(min_size=n * space.n_columns, max_size=n * space.n_columns))
        rows = np.frombuffer(flat, dtype=np.uint8).reshape(n, space.n_columns).copy()
    return name, rows


def _expect_error(fn, rows, bad):
    row, col = bad
    with pytest.raises(
        ValueError, match=rf"row {row}, column {col} \(.*\) holds (expand )?index {rows[row, col]}"
    ) as e:
        fn(rows)
    msg = str(e.value)
    assert "allowed indices 0.." in msg or "couples expand to depth" in msg


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_every_row_entry_gives_the_exact_answer_or_a_value_error(batch):
    name, rows = batch
    m = MODELS[name]
    bad = first_bad(rows, m.space)
    event("invalid" if bad is not None else "valid")
    if bad is not None:
        for label, fn in m.entries():
            try:
                _expect_error(fn, rows, bad)
            except AssertionError as exc:  # pragma: no cover - names the entry on failure
                raise AssertionError(f"{label}: {exc}") from exc
        assert m.spec.first_invalid(rows) == bad
        assert m.full.first_invalid(rows) == bad
        return
    assert m.spec.first_invalid(rows) is None
    m.spec.check_rows(rows)
    nets = moofa.decode(rows, m.space)
    ref = [evaluate(m.space, net.ks, net.e, net.d, net.image_size) for net in nets]
    ref_act = [evaluate(m.space, net.ks, net.e, net.d, net.image_size, activations_only=True) for net in nets]
    assert m.full.peaks(rows, 2).tolist() == [r["peak"] for r in ref]
    assert m.act.peaks(rows, 1).tolist() == [r["peak"] for r in ref_act]
    assert moofa.peak_memory(rows, m.space).tolist() == [r["peak"] for r in ref]
    for with_hist in (False, True):
        out = m.full.profiles(rows, 1, with_hist)
        assert out["params"].tolist() == [r["params"] for r in ref]
        assert out["n_layers"].tolist() == [len(r["hist"]) for r in ref]
        np.testing.assert_allclose(out["avg"], [r["avg"] for r in ref], rtol=1e-12)
    x = one_hot(rows, m.space)
    hidden = np.maximum(x @ m.w0.astype(np.float64) + m.b0, 0.0)
    np.testing.assert_allclose(m.mlp.score(rows, 2), (hidden @ m.w1 + m.b1)[:, 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(m.linear.score(rows, 2), 0.5 + x @ m.lin_w.astype(np.float64), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", SPACES)
def test_rows_of_the_wrong_shape_are_refused_everywhere(name):
    m = MODELS[name]
    for rows in (np.zeros((3, m.space.n_columns + 1), np.uint8), np.zeros(m.space.n_columns, np.uint8)):
        for label, fn in m.entries():
            if label.startswith("moofa.") and rows.ndim == 1:
                continue  # the facade takes one row as a batch of one
            with pytest.raises(ValueError, match=rf"shape \(n, {m.space.n_columns}\)"):
                fn(rows)


def test_the_reported_segfault_is_a_value_error():
    with pytest.raises(ValueError, match=r"row 0, column 0 \(image_size\) holds index 250; allowed indices 0..3"):
        moofa.evaluator("moofa").peaks(np.full((4, 46), 250, np.uint8))


def test_a_coupled_expand_message_names_the_space_and_the_column():
    sp = moofa.get_space("compofa")
    rows = moofa.random_subnets(2, sp, seed=0)
    col = spec(sp).column_offsets["expand"]  # slot 0: always active
    rows[1, col] = (rows[1, col] + 1) % len(sp.expands)
    with pytest.raises(
        ValueError, match=rf"column {col} \(e\[0\]\) holds expand index .*, but space 'compofa' couples"
    ):
        moofa.load_predictor("compofa").scorer.score(rows)


def test_many_threads_check_and_report_the_first_bad_row():
    rows = moofa.random_subnets(200_000, "moofa", seed=3)
    rows[150_001, 9] = 200
    rows[190_000, 0] = 200
    ev = moofa.evaluator("moofa")
    for threads in (1, 2, 7):
        with pytest.raises(ValueError, match=r"row 150001, column 9 \(ks\[3\]\)"):
            ev.peaks(rows, threads)
        with pytest.raises(ValueError, match=r"row 150001, column 9"):
            ev.profiles(rows, threads, False)


def test_encoded_uint8_rows_reach_the_core_without_a_copy(monkeypatch):
    rows = moofa.random_subnets(1000, "moofa", seed=1)
    seen = []
    ev = moofa.evaluator("moofa")

    class Spy:
        def peaks(self, r, threads):
            seen.append(r)
            return ev.peaks(r, threads)

    monkeypatch.setattr(moofa.memory, "_evaluator", lambda sp, model: Spy())
    moofa.peak_memory(rows, "moofa")
    assert seen[0] is rows


def test_column_layout_comes_from_the_spec():
    for name in ("moofa", "ofa", "compofa"):
        sp = moofa.get_space(name)
        s, n = sp.n_stages, sp.n_slots
        o = spec(sp).column_offsets
        assert o == {"resolution": 0, "depth": 1, "kernel": 1 + s, "expand": 1 + s + n, "end": 1 + s + 2 * n}
        assert spec(sp).slot_stage == [i for i, st_ in enumerate(sp.stages) for _ in range(st_.max_depth)]
        assert spec(sp).stage_first_slot == [sum(x.max_depth for x in sp.stages[:i]) for i in range(s)]
        assert spec(sp).one_hot_size == len(sp.resolutions) + n * (len(sp.kernels) + len(sp.expands))
        names = moofa.column_names(sp)
        assert names[o["kernel"]] == "ks[0]" and names[o["expand"]] == "e[0]" and names[o["depth"]] == "d[0]"


def test_a_scorer_of_another_space_is_refused():
    ofa = moofa.load_predictor("ofa").scorer
    with pytest.raises(ValueError, match=r"built for space 'ofa'.*search runs in space 'moofa'"):
        moofa.search("325k", space="moofa", predictor=ofa, generations=1, population=4)
    w = np.zeros(spec(moofa.get_space("ofa")).one_hot_size, np.float32)
    lin = core.LinearScorer(spec(moofa.get_space("ofa")), w)
    for search in (core.evolve, core.nsga2):
        with pytest.raises(ValueError, match=r"built for space 'ofa'.*'moofa'"):
            search(moofa.evaluator("moofa"), lin, max_peak=10**9, population=4, generations=1)
    assert re.search("ofa", repr(lin.space.name))
    assert lin.space.same_space(spec(moofa.get_space("ofa")))
    assert not lin.space.same_space(spec(moofa.get_space("moofa")))
