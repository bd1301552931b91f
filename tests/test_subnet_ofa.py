"""Configs as published OFA tools write them: idle slots as 0/None, e drawn independently of d."""

from __future__ import annotations

import pytest

import moofa
from moofa import Subnet


def _published(space="moofa"):
    # Stage 0 has depth 2: its slots 2 and 3 are idle and hold 0 / None.
    return {
        "ks": [7, 5, 0, 0] + [3, 5, 7, 0] + [3] * 12,
        "e": [4, 3, None, None] + [2, 3, 4, None] + [2] * 12,
        "d": [2, 3, 4, 4, 4],
        "r": [224],
    }


def test_idle_zero_and_none_take_the_canonical_choice():
    net = Subnet.from_dict(_published(), "moofa")
    sp = moofa.get_space("moofa")
    assert net.ks[2:4] == (min(sp.kernels),) * 2 and net.ks[7] == min(sp.kernels)
    assert net.e[2:4] == (2, 2) and net.e[7] == 2
    assert net.ks[:2] == (7, 5) and net.e[:2] == (4, 3)  # active slots untouched


def test_encoding_is_canonical_and_matches_an_explicit_config():
    sp = moofa.get_space("moofa")
    filled = _published()
    filled["ks"] = [7, 5, 3, 3] + [3, 5, 7, 3] + [3] * 12
    filled["e"] = [4, 3, 2, 2] + [2, 3, 4, 2] + [2] * 12
    assert moofa.encode(_published(), sp).tolist() == moofa.encode(filled, sp).tolist()
    assert moofa.profile(_published(), sp).peak == moofa.profile(filled, sp).peak
    pred = moofa.load_predictor("moofa")
    assert pred.predict(_published())[0] == pred.predict(filled)[0]


def test_without_a_space_idle_slots_repeat_the_stage_choice():
    net = Subnet.from_dict(_published())
    assert net.ks[:4] == (7, 5, 5, 5) and net.e[:4] == (4, 3, 3, 3)
    assert net.ks[4:8] == (3, 5, 7, 7)


def test_zero_or_none_in_an_active_slot_is_an_error():
    config = _published()
    config["ks"][1] = 0
    with pytest.raises(ValueError, match=r"Subnet.ks\[1\]=0 is not allowed in space 'moofa'"):
        moofa.encode(config, "moofa")
    config = _published()
    config["e"][4] = None
    with pytest.raises(TypeError, match=r"Subnet.e\[4\] must be a finite number, got None"):
        Subnet.from_dict(config)


def test_uncoupled_e_in_a_coupled_space_names_the_repair():
    # OFA's encoder draws e per block, whatever d is; compofa couples e to d.
    config = {"ks": [3] * 20, "e": [6, 4, 3, 6] * 5, "d": [2, 3, 4, 2, 3], "image_size": 224}
    with pytest.raises(ValueError, match=r"couples expand to depth .*Subnet.coupled\('compofa'\)"):
        moofa.encode(config, "compofa")
    net = Subnet.from_dict(config).coupled("compofa")
    assert net.e == (3,) * 4 + (4,) * 4 + (6,) * 4 + (3,) * 4 + (4,) * 4
    assert net.ks == (3,) * 20 and net.d == (2, 3, 4, 2, 3)
    net.validate("compofa")
    # Idle e slots get the coupled value, as the search's canonical rows hold it.
    row = moofa.encode(net, "compofa")
    assert moofa.decode(row, "compofa")[0] == net


def test_coupled_is_a_no_op_for_uncoupled_spaces_and_checks_d():
    net = Subnet(ks=[3] * 20, e=[6] * 20, d=[2] * 5, image_size=224)
    assert net.coupled("ofa") is net
    with pytest.raises(ValueError, match=r"Subnet.d\[0\]=9 is not allowed in space 'compofa'"):
        Subnet(ks=[3] * 20, e=[6] * 20, d=[9] * 5).coupled("compofa")
    with pytest.raises(ValueError, match="Subnet.d must have 5 entries"):
        Subnet(ks=[3] * 20, e=[6] * 20, d=[2] * 4).coupled("compofa")


def test_compofa_idle_slots_take_the_coupled_ratio():
    config = {"ks": [3, 3, 0, 0] * 5, "e": [3, 3, None, None] * 5, "d": [2] * 5, "image_size": 224}
    net = Subnet.from_dict(config, "compofa")
    assert net.e == (3,) * 20 and net.ks == (3,) * 20
