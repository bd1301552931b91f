from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import moofa


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("325k", 325_000),
        ("325K", 325_000),
        ("1.2M", 1_200_000),
        (" 500 ", 500),
        ("325k items", 325_000),
        ("1.3MB", 325_000),
        ("320KiB", 81_920),
        ("512kB", 128_000),
        ("1MiB", 262_144),
        ("100B", 25),
        (325000, 325_000),
        (325000.9, 325_000),
        ("1e3", 1000),
    ],
)
def test_parse_budget(text, items):
    assert moofa.parse_budget(text) == items


def test_parse_budget_bytes_per_item():
    assert moofa.parse_budget("1.3MB", bytes_per_item=1) == 1_300_000
    assert moofa.parse_budget("325k", bytes_per_item=1) == 325_000  # items stay items


@pytest.mark.parametrize("bad", ["", "abc", "-5k", "12 parsecs", "0", "0.1", "k", "1..2M"])
def test_parse_budget_rejects(bad):
    with pytest.raises(ValueError, match="budget"):
        moofa.parse_budget(bad)


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), float("inf")])
def test_parse_budget_rejects_numbers(bad):
    with pytest.raises(ValueError, match="budget must be a positive"):
        moofa.parse_budget(bad)


@pytest.mark.parametrize("bad", [None, [325000], True])
def test_parse_budget_types(bad):
    with pytest.raises(TypeError, match="budget must be"):
        moofa.parse_budget(bad)


def test_parse_budget_bad_bytes_per_item():
    with pytest.raises(ValueError, match="bytes_per_item"):
        moofa.parse_budget("1MB", bytes_per_item=0)


@given(st.text(max_size=12))
def test_parse_budget_never_crashes(text):
    try:
        v = moofa.parse_budget(text)
    except ValueError:
        return
    assert isinstance(v, int) and v >= 1


@pytest.mark.parametrize(
    ("bad", "match"), [("1e309", "a finite"), ("1e309MB", "a finite"), ("1e30", "below 2\\*\\*63")]
)
def test_parse_budget_rejects_overflowing_text(bad, match):
    with pytest.raises(ValueError, match=f"budget must be {match}"):
        moofa.parse_budget(bad)


@pytest.mark.parametrize("bad", [2**63, 2**64, 9.3e18, np.int64(0), np.uint64(2**63)])
def test_parse_budget_rejects_out_of_int64(bad):
    with pytest.raises(ValueError, match="budget must be"):
        moofa.parse_budget(bad)


def test_parse_budget_largest():
    assert moofa.parse_budget(2**63 - 1) == 2**63 - 1
    assert moofa.parse_budget(np.int64(325_000)) == 325_000


def test_search_with_a_huge_budget_is_a_clean_error():
    with pytest.raises(ValueError, match="budget must be below 2\\*\\*63"):
        moofa.search(2**63, generations=1)
