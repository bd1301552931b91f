"""Space and Stage validation: bad definitions fail naming the field and what is allowed."""

from __future__ import annotations

import json

import pytest

import moofa
from moofa import Space, Stage

_STAGES = [{"width": 24, "stride": 2}]


@pytest.mark.parametrize(
    ("doc", "error", "match"),
    [
        ({"name": "x"}, ValueError, r"missing required keys \['stages'\]"),
        ({"stages": _STAGES}, ValueError, r"missing required keys \['name'\]"),
        (
            {"name": "x", "stages": _STAGES, "expand_by_depth": [3, 4, 6]},
            TypeError,
            "expand_by_depth must be an object",
        ),
        ({"name": "x", "stages": _STAGES, "expand_by_depth": {"two": 3}}, ValueError, "keys must be depths"),
        ({"name": "x", "stages": _STAGES, "expands": [float("inf")]}, ValueError, "Space.expands must hold finite"),
        ({"name": "x", "stages": _STAGES, "kernels": [3, float("nan")]}, ValueError, "Space.kernels must hold finite"),
        (
            {"name": "x", "stages": _STAGES, "colour": "red"},
            ValueError,
            r"unknown keys \['colour'\]; allowed: \['name'",
        ),
        ({"name": "x", "stages": [{"widht": 24}]}, ValueError, r"Space.stages\[0\]: unknown keys \['widht'\]"),
        ({"name": "x", "stages": [{"stride": 2}]}, ValueError, r"Space.stages\[0\]: missing key 'width'"),
        (
            {"name": "x", "stages": [{"width": 24, "stride": 3}]},
            ValueError,
            r"stages\[0\]: Stage.stride must be 1 or 2",
        ),
        ({"name": "x", "stages": [24]}, TypeError, r"Space.stages\[0\] must be an object"),
        ({"name": "x", "stages": 24}, TypeError, "Space.stages must be a list"),
        ([1, 2], TypeError, "expects a dict"),
    ],
)
def test_from_dict_rejects(doc, error, match):
    with pytest.raises(error, match=match):
        Space.from_dict(doc)


@pytest.mark.parametrize("token", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_json_tokens_are_rejected(token):
    doc = json.loads('{"name": "x", "stages": [{"width": 24}], "expands": [3, ' + token + "]}")
    with pytest.raises(ValueError, match="Space.expands must hold finite numbers"):
        Space.from_dict(doc)
    ratio = json.loads('{"name": "x", "stages": [{"width": 24}], "expand_by_depth": {"2": ' + token + ', "3": 6}}')
    with pytest.raises(ValueError, match="expand_by_depth: ratio for depth 2"):
        Space.from_dict(ratio)


def test_expand_by_depth_as_list_in_the_constructor():
    with pytest.raises(TypeError, match="Space.expand_by_depth must map each depth"):
        Space("x", (Stage(24, 2),), expand_by_depth=[3, 4, 6])  # type: ignore[arg-type]


def test_max_depth_defaults_to_the_deepest_choice():
    sp = Space("shallow", (Stage(24, 2), Stage(32, 2)), depths=(1, 2))
    assert [s.max_depth for s in sp.stages] == [2, 2] and sp.n_slots == 4
    assert [s.max_depth for s in moofa.get_space("ofa").stages] == [4] * 5
    # Given explicitly, it is kept (spare slots allowed) and checked.
    assert Space("spare", (Stage(24, 2, max_depth=3),), depths=(1, 2)).n_slots == 3
    with pytest.raises(ValueError, match=r"stages\[0\].max_depth is 1"):
        Space("x", (Stage(24, 2, max_depth=1),), depths=(1, 2))
    with pytest.raises(ValueError, match="Stage.max_depth must be a positive integer"):
        Stage(24, 2, max_depth=-1)


def test_round_trip_keeps_the_resolved_depth():
    sp = Space("rt", (Stage(24, 2),), depths=(1, 2), kernels=(3,), expands=(2, 3))
    back = Space.from_dict(json.loads(json.dumps(sp.to_dict())))
    assert back == sp and back.stages[0].max_depth == 2
    for name in moofa.spaces.names():
        assert Space.from_dict(moofa.get_space(name).to_dict()) == moofa.get_space(name)
