"""Subnet configs, the compact encoding and input validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BUILTIN_SPACES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import moofa

MAX = dict(ks=[7] * 20, e=[4] * 20, d=[4] * 5, image_size=224)


def test_dict_roundtrip_and_ofa_keys():
    net = moofa.Subnet(**MAX)
    assert moofa.Subnet.from_dict(net.to_dict()) == net
    assert moofa.Subnet.from_json(net.to_json()) == net
    assert json.loads(net.to_json()) == MAX
    # OFA's evolution finder stores the resolution as r=[size]
    ofa_style = {"ks": MAX["ks"], "e": MAX["e"], "d": MAX["d"], "r": [224]}
    assert moofa.Subnet.from_dict(ofa_style) == net
    assert hash(moofa.Subnet(**MAX)) == hash(net)
    with pytest.raises(AttributeError):
        net.image_size = 128


@pytest.mark.parametrize("space", BUILTIN_SPACES)
def test_encode_decode_roundtrip(space):
    rows = moofa.random_subnets(500, space, seed=3)
    nets = moofa.decode(rows, space)
    again = moofa.encode(nets, space)
    # inactive slots are kept as they are, so the round trip is exact
    np.testing.assert_array_equal(again, rows)
    assert moofa.decode(again, space) == nets
    assert rows.dtype == np.uint8 and rows.shape == (500, moofa.get_space(space).n_columns)


def test_encode_accepts_other_integer_dtypes():
    rows = moofa.random_subnets(10, "ofa", seed=0)
    for dtype in (np.int8, np.int32, np.int64, np.uint16):
        np.testing.assert_array_equal(moofa.encode(rows.astype(dtype), "ofa"), rows)
    np.testing.assert_array_equal(moofa.peak_memory(rows.astype(np.int64), "ofa"), moofa.peak_memory(rows, "ofa"))


def test_compofa_coupling_enforced():
    net = dict(ks=[3] * 20, e=[3] * 20, d=[2] * 5, image_size=128)
    moofa.Subnet.from_dict(net).validate("compofa")
    bad = dict(net, e=[4] + [3] * 19)
    with pytest.raises(ValueError, match=r"e\[0\].*couples expand to depth"):
        moofa.encode([bad], "compofa")
    # the encoded path checks the coupling too
    rows = moofa.encode([net], "compofa")
    rows[0, moofa.column_names("compofa").index("e[1]")] = 2
    with pytest.raises(ValueError, match="couples expand to depth"):
        moofa.peak_memory(rows, "compofa")
    # a random compofa subnet always honours the coupling
    for n in moofa.decode(moofa.random_subnets(50, "compofa", seed=1), "compofa"):
        n.validate("compofa")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(ks=[7] * 19), r"Subnet.ks must have 20 entries"),
        (dict(e=[4] * 21), r"Subnet.e must have 20 entries"),
        (dict(d=[4] * 4), r"Subnet.d must have 5 entries"),
        (dict(image_size=100), r"image_size=100 .*allowed: \[128, 160, 192, 224\]"),
        (dict(ks=[4] + [7] * 19), r"ks\[0\]=4 .*allowed: \[3, 5, 7\]"),
        (dict(e=[6] + [4] * 19), r"e\[0\]=6 .*allowed: \[2, 3, 4\]"),
        (dict(d=[5] * 5), r"d\[0\]=5 .*allowed: \[2, 3, 4\]"),
    ],
)
def test_bad_configs_name_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        moofa.profile(dict(MAX, **change), "moofa")
    with pytest.raises(ValueError, match=match):
        moofa.peak_memory([dict(MAX, **change)], "moofa")


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (dict(MAX, ks="7777"), TypeError, "Subnet.ks must be a list of integers"),
        (dict(MAX, ks=[7.5] * 20), TypeError, r"Subnet.ks\[0\] must be an integer"),
        (dict(MAX, d=[float("nan")] * 5), TypeError, r"Subnet.d\[0\] must be an integer"),
        (dict(MAX, d=[float("inf")] * 5), TypeError, r"Subnet.d\[0\] must be an integer"),
        (dict(MAX, e=[None] * 20), TypeError, r"Subnet.e\[0\] must be a finite number"),
        (dict(MAX, image_size="224"), TypeError, "Subnet.image_size must be an integer"),
        ({"ks": MAX["ks"], "e": MAX["e"]}, ValueError, "missing"),
        ([1, 2, 3], TypeError, "subnet config must be a dict"),
    ],
)
def test_malformed_configs(config, error, match):
    with pytest.raises(error, match=match):
        moofa.peak_memory([config], "moofa")


def test_numpy_integers_are_integers():
    # Configs built with numpy (rng.choice, arrays) are common; numpy integers lack __trunc__.
    arr = moofa.Subnet(ks=np.array(MAX["ks"]), e=np.array(MAX["e"]), d=np.array(MAX["d"]), image_size=np.int64(224))
    plain = moofa.Subnet(ks=MAX["ks"], e=MAX["e"], d=MAX["d"], image_size=224)
    assert arr == plain
    assert all(type(k) is int for k in arr.ks + arr.d)
    assert moofa.peak_memory([arr], "moofa")[0] == moofa.peak_memory([plain], "moofa")[0]


def test_unknown_space_and_model():
    with pytest.raises(ValueError, match=r"unknown space 'nope'; known spaces: \['ofa'"):
        moofa.profile(MAX, "nope")
    with pytest.raises(TypeError, match="space must be a name"):
        moofa.profile(MAX, 3)
    with pytest.raises(ValueError, match="memory_model must be one of"):
        moofa.peak_memory([MAX], "moofa", memory_model="fast")
    with pytest.raises(ValueError, match="bytes_per_item"):
        moofa.peak_memory([MAX], "moofa", bytes_per_item=0)
    with pytest.raises(ValueError, match="threads"):
        moofa.peak_memory([MAX], "moofa", threads=-1)


def test_encoded_array_checks():
    rows = moofa.random_subnets(4, "moofa", seed=0)
    with pytest.raises(TypeError, match="integer dtype"):
        moofa.peak_memory(rows.astype(np.float64), "moofa")
    with pytest.raises(ValueError, match=r"shape \(n, 46\)"):
        moofa.peak_memory(rows[:, :-1], "moofa")
    with pytest.raises(ValueError, match=r"shape \(n, 46\)"):
        moofa.peak_memory(rows[None], "moofa")
    bad = rows.copy()
    bad[2, 0] = 4
    with pytest.raises(ValueError, match=r"row 2, column 0 \(image_size\) holds index 4; allowed indices 0..3"):
        moofa.peak_memory(bad, "moofa")
    neg = rows.astype(np.int64)
    neg[1, 7] = -1
    with pytest.raises(ValueError, match=r"row 1, column 7 \(ks\[1\]\)"):
        moofa.peak_memory(neg, "moofa")
    # a non-contiguous view is accepted and gives the same answer
    wide = np.zeros((4, 92), dtype=np.uint8)
    wide[:, ::2] = rows
    np.testing.assert_array_equal(moofa.peak_memory(wide[:, ::2], "moofa"), moofa.peak_memory(rows, "moofa"))
    assert moofa.peak_memory(rows[:0], "moofa").shape == (0,)


@settings(max_examples=200, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.int8, np.int32, np.int64]),
        shape=st.tuples(st.integers(0, 5), st.sampled_from([45, 46, 47])),
        elements=st.integers(-3, 6),
    ),
    as_uint8=st.booleans(),
)
def test_fuzz_encoded_arrays(arr, as_uint8):
    if as_uint8:
        arr = arr.astype(np.uint8)  # negatives wrap to 253..255: out of range too
    """Malformed arrays raise ValueError; valid ones agree with the per-config oracle path."""
    try:
        peaks = moofa.peak_memory(arr, "moofa")
    except ValueError as exc:
        assert "encoded config" in str(exc)
        return
    assert arr.shape[1] == 46
    assert np.all((arr[:, 0] >= 0) & (arr[:, 0] < 4))
    nets = moofa.decode(arr, "moofa")
    assert [moofa.profile(n, "moofa").peak for n in nets] == peaks.tolist()


@settings(max_examples=200, deadline=None)
@given(
    config=st.fixed_dictionaries(
        {
            "ks": st.lists(st.one_of(st.integers(-1, 9), st.floats(allow_nan=True), st.text(max_size=1)), max_size=22),
            "e": st.lists(st.one_of(st.integers(0, 7), st.floats(allow_nan=True)), max_size=22),
            "d": st.lists(st.integers(0, 5), max_size=6),
            "image_size": st.one_of(st.integers(0, 300), st.sampled_from([128, 224]), st.none()),
        }
    )
)
def test_fuzz_configs(config):
    """Malformed configs: a ValueError/TypeError, never a crash or a silent answer."""
    try:
        p = moofa.profile(config, "moofa")
    except (ValueError, TypeError):
        return
    net = moofa.Subnet.from_dict(config).validate("moofa")
    assert p.peak == max(p.hist) and net.image_size in (128, 160, 192, 224)


@pytest.mark.parametrize("space", ["moofa", "compofa"])
def test_random_subnets_memory_stays_near_the_result(space):
    import tracemalloc

    n = 2_000_000
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        rows = moofa.random_subnets(n, space, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows.nbytes == n * moofa.get_space(space).n_columns
    assert peak < 1.25 * rows.nbytes


def test_random_subnets_are_valid_and_cover_every_choice():
    for space in ("moofa", "compofa", "ofa"):
        sp = moofa.get_space(space)
        rows = moofa.random_subnets(5000, sp, seed=1)
        assert rows.dtype == np.uint8 and rows.flags.c_contiguous
        assert moofa.evaluator(sp).first_invalid(rows) is None
        limits = np.array(moofa.memory.spec(sp).column_limits)
        assert (rows.max(axis=0) <= limits - 1).all()
        assert rows[:, 0].max() == len(sp.resolutions) - 1 and rows[:, 1].max() == len(sp.depths) - 1
