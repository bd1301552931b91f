"""The evaluator against the published logger: every shared record, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ACCURACY_SETS, BUILTIN_SPACES, read_fixture

import moofa


@pytest.mark.parametrize("space", BUILTIN_SPACES)
def test_profiles_match_published_logger(space):
    records = read_fixture("profiles", space)
    assert len(records) >= 100
    for rec in records:
        assert rec["space"] == space
        p = moofa.profile(rec["config"], space)
        assert p.peak == rec["peak"]
        assert p.hist == rec["hist"]
        assert p.mflops == pytest.approx(rec["mflops"], rel=1e-6)
        assert p.params == rec["params"]
        assert len(p.layers) == len(p.hist)


@pytest.mark.parametrize("space", BUILTIN_SPACES)
def test_batched_profiles_match_published_logger(space):
    records = read_fixture("profiles", space)
    rows = moofa.encode([r["config"] for r in records], space)
    out = moofa.profiles(rows, space, with_hist=True, threads=2)
    for i, rec in enumerate(records):
        n = out["n_layers"][i]
        assert out["hist"][i, :n].tolist() == rec["hist"]
        assert not out["hist"][i, n:].any()
        assert out["peak"][i] == rec["peak"]
        assert out["params"][i] == rec["params"]
        assert out["avg"][i] == pytest.approx(np.mean(rec["hist"]), rel=1e-12)
        assert out["std"][i] == pytest.approx(np.std(rec["hist"]), rel=1e-9)
    np.testing.assert_allclose(out["mflops"], [r["mflops"] for r in records], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(ACCURACY_SETS))
def test_peak_memory_matches_accuracy_sets(name):
    space = ACCURACY_SETS[name]
    records = read_fixture("accuracy", name)
    expected = np.array([r["peak_memory"] for r in records], dtype=np.int64)
    # dicts in, and the encoded fast path, single and multi-threaded
    got = moofa.peak_memory(records, space)
    np.testing.assert_array_equal(got, expected)
    rows = moofa.encode(records, space)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(moofa.peak_memory(rows, space, threads=threads), expected)


def test_design_widths_reference():
    assert moofa.design_widths() == [96, 288, 360, 384, 392, 392]
    sp = moofa.get_space("moofa")
    assert sp.widths == [24, 96, 288, 360, 384]
    assert (sp.final_expand_width, sp.feature_mix_width) == (392, 392)


def test_design_widths_parameters():
    # a different reference configuration gives different (still divisible-by-8) widths
    w = moofa.design_widths(start_width=16, feature_size=40, kernel=5, expand=3, n_widths=4)
    assert len(w) == 4 and all(x % 8 == 0 for x in w)
    assert w != moofa.design_widths()[:4]
    with pytest.raises(ValueError, match="kernel"):
        moofa.design_widths(kernel=0)
    with pytest.raises(ValueError, match="expand"):
        moofa.design_widths(expand=-1)


def test_builtin_spaces_reference_table():
    ofa = moofa.get_space("ofa")
    assert ofa.widths == [24, 40, 80, 112, 160]
    assert [s.stride for s in ofa.stages] == [2, 2, 2, 1, 2]
    assert [s.se for s in ofa.stages] == [False, True, False, True, True]
    assert [s.act for s in ofa.stages] == ["relu", "relu", "h_swish", "h_swish", "h_swish"]
    assert (ofa.first_conv_width, ofa.first_block_width, ofa.final_expand_width, ofa.feature_mix_width) == (
        16,
        16,
        960,
        1280,
    )
    assert ofa.expands == (3, 4, 6)
    comp = moofa.get_space("compofa")
    assert comp.expand_by_depth == {2: 3, 3: 4, 4: 6}
    m = moofa.get_space("moofa")
    assert [s.stride for s in m.stages] == [2] * 5
    assert [s.act for s in m.stages] == ["h_swish", "h_swish", "h_swish", "relu", "h_swish"]
    assert [s.se for s in m.stages] == [False, True, True, False, True]
    assert (m.first_conv_width, m.first_block_width) == (3, 8)
    assert m.expands == (2, 3, 4)
    assert moofa.get_space("moofa-e346").expands == (3, 4, 6)
    assert moofa.get_space("moofa-e1-2").expands == (1, 1.5, 2)
    assert moofa.get_space("moofa-e346").n_classes == 10
    assert moofa.get_space("moofa-e1-2").n_classes == 10
    for name in ("ofa", "compofa", "moofa"):
        assert moofa.get_space(name).n_classes == 1000
    assert moofa.spaces.names()[:5] == BUILTIN_SPACES
