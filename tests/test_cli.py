from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import DATA, read_jsonl

import moofa
from moofa.cli import main


def test_profile_json_matches_published(capsys, shared_dir):
    rec = read_jsonl(DATA / "profiles" / "ofa.jsonl")[0]
    assert main(["profile", "--space", "ofa", "--config", json.dumps(rec["config"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak"] == rec["peak"] and out["hist"] == rec["hist"] and out["params"] == rec["params"]


def test_profile_flags_and_table(capsys):
    assert main(["profile", "--space", "moofa", "--ks", ",".join(["3"] * 20), "--e", ",".join(["2"] * 20),
                 "--d", "2,2,2,2,2", "--image-size", "128"]) == 0
    text = capsys.readouterr().out
    best, _ = moofa.min_peak("moofa")
    assert f"peak {best:,} items" in text  # this subnet is the space's smallest
    assert "first_conv" in text and "final_expand" in text and "<- peak" in text


def test_profile_config_file_and_bytes(tmp_path, capsys):
    net = moofa.Subnet(ks=[5] * 20, e=[3] * 20, d=[3] * 5, image_size=160)
    path = tmp_path / "net.json"
    path.write_text(net.to_json())
    assert main(["profile", "--config", str(path), "--bytes-per-item", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak"] == 4 * moofa.profile(net, "moofa").peak and out["unit"] == "bytes"


def test_profile_bad_input_is_a_clean_error(capsys):
    assert main(["profile", "--space", "moofa", "--d", "9,9,9,9,9"]) == 2
    err = capsys.readouterr().err
    assert "Subnet.d[0]=9 is not allowed" in err and "Traceback" not in err
    assert main(["profile", "--space", "nope"]) == 2
    assert "unknown space 'nope'" in capsys.readouterr().err
    assert main(["profile", "--config", "missing.json"]) == 2
    assert "neither a JSON object nor an existing file" in capsys.readouterr().err


def test_design_widths_and_spaces(capsys):
    assert main(["design-widths", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [96, 288, 360, 384, 392, 392]
    assert main(["spaces"]) == 0
    text = capsys.readouterr().out
    for name in moofa.spaces.names():
        assert name in text


def test_user_space_from_json_file(tmp_path, capsys):
    sp = moofa.Space(name="mine", stages=(moofa.Stage(16, 2, max_depth=2),), depths=(1, 2), resolutions=(32,),
                     final_expand_width=32, feature_mix_width=0, n_classes=10)
    path = tmp_path / "space.json"
    path.write_text(json.dumps(sp.to_dict()))
    assert moofa.Space.from_dict(json.loads(path.read_text())) == sp
    assert main(["profile", "--space", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    largest = moofa.Subnet(ks=[7, 7], e=[6, 6], d=[2], image_size=32)
    assert out["peak"] == moofa.profile(largest, sp).peak


@pytest.mark.parametrize("argv", [["--version"], ["profile", "--help"]])
def test_entry_point_runs(argv, tmp_path):
    # cwd outside the source tree, so that the installed package is the one imported
    proc = subprocess.run([sys.executable, "-m", "moofa", *argv], capture_output=True, text=True, check=False,
                          cwd=tmp_path)
    assert proc.returncode == 0 and "moofa" in proc.stdout
