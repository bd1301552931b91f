from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import read_fixture

import moofa
from moofa.cli import main


def test_profile_json_matches_published(capsys):
    rec = read_fixture("profiles", "ofa")[0]
    assert main(["profile", "--space", "ofa", "--config", json.dumps(rec["config"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak"] == rec["peak"] and out["hist"] == rec["hist"] and out["params"] == rec["params"]


def test_profile_flags_and_table(capsys):
    assert (
        main(
            [
                "profile",
                "--space",
                "moofa",
                "--ks",
                ",".join(["3"] * 20),
                "--e",
                ",".join(["2"] * 20),
                "--d",
                "2,2,2,2,2",
                "--image-size",
                "128",
            ]
        )
        == 0
    )
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
    sp = moofa.Space(
        name="mine",
        stages=(moofa.Stage(16, 2, max_depth=2),),
        depths=(1, 2),
        resolutions=(32,),
        final_expand_width=32,
        feature_mix_width=0,
        n_classes=10,
    )
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
    proc = subprocess.run(
        [sys.executable, "-m", "moofa", *argv], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert proc.returncode == 0 and "moofa" in proc.stdout


def test_search_json_fits_budget_and_matches_profile(capsys):
    assert main(["search", "--space", "moofa", "--budget", "400k", "--generations", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = moofa.profile(out["config"], "moofa")
    assert out["peak"] == p.peak <= 400_000 and out["hist"] == p.hist
    # the reported top-1 is the shipped predictor's score of that subnet
    assert out["top1"] == pytest.approx(float(moofa.load_predictor("moofa").predict([out["config"]])[0]), abs=1e-4)


def test_search_summary_and_impossible_budget(capsys):
    assert main(["search", "--budget", "1.6MB", "--generations", "20"]) == 0
    text = capsys.readouterr().out
    assert "predicted top-1" in text and "<- peak" in text
    assert main(["search", "--budget", "100k"]) == 2
    assert "299,520" in capsys.readouterr().err


def test_table_and_pareto(capsys):
    assert (
        main(
            [
                "table",
                "--spaces",
                "ofa,moofa",
                "--budgets",
                "325k,800k",
                "--generations",
                "20",
                "--no-progress",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for r in rows:
        assert moofa.profile(r["config"], r["space"]).peak == r["peak"] <= r["budget"]
    assert (
        main(["pareto", "--space", "ofa", "--max-peak", "500k", "--generations", "10", "--no-progress", "--json"]) == 0
    )
    front = json.loads(capsys.readouterr().out)
    peaks = [pt["peak"] for pt in front]
    tops = [pt["top1"] for pt in front]
    assert peaks == sorted(peaks) and max(peaks) <= 500_000
    assert all(b > a for a, b in zip(tops, tops[1:]))  # non-dominated: more memory buys accuracy


def test_delegated_subcommands_show_their_help(capsys):
    for name in ("train", "pipeline", "train-predictor"):
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "--" in capsys.readouterr().out
