from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
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
    assert main(["search", "--budget", "1.6MB", "--generations", "20", "--layers"]) == 0
    text = capsys.readouterr().out
    assert "predicted top-1" in text and "<- peak" in text
    assert main(["search", "--budget", "100k"]) == 2
    assert "299,520" in capsys.readouterr().err


def test_search_exact_islands_and_dive(capsys):
    assert main(["search", "--space", "moofa", "--budget", "400k", "--exact", "--generations", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    proven = moofa.optimum("400k", "moofa", generations=20)
    assert out["proven_optimal"] and out["top1"] == pytest.approx(proven.top1) and out["config"] == proven.config
    assert main(["search", "--budget", "400k", "--generations", "40", "--islands", "2", "--dive-nodes", "50"]) == 0
    text = capsys.readouterr().out
    r = moofa.search("400k", generations=40, islands=2, dive_nodes=50)
    assert f"20 generations x 2 islands, a dive of {r.dive_nodes:,} branch-and-bound nodes" in text
    assert f"{r.top1:.2f} %" in text
    # A race: 4 islands, the best 2 go on (40 generations: the race after 1, then 1 + 36 // 2).
    assert main(["search", "--budget", "400k", "--generations", "40", "--islands", "4", "--survivors", "2"]) == 0
    text = capsys.readouterr().out
    r = moofa.search("400k", generations=40, islands=4, survivors=2)
    assert r.generations == 19 and "19 generations x 4 islands (2 after the race)" in text
    assert f"{r.top1:.2f} %" in text
    assert main(["search", "--budget", "400k", "--generations", "20", "--transfer", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = moofa.search("400k", generations=20, transfer=True)
    assert out["config"] == r.config and out["evaluations"] == r.evaluations
    assert r.evaluations > moofa.search("400k", generations=20).evaluations
    # A dive turns transfer on; --no-transfer turns it off.
    assert (
        main(["search", "--budget", "400k", "--generations", "20", "--dive-nodes", "30", "--no-transfer", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    r = moofa.search("400k", generations=20, dive_nodes=30, transfer=False)
    assert out["config"] == r.config and out["evaluations"] == r.evaluations
    assert r.evaluations < moofa.search("400k", generations=20, dive_nodes=30).evaluations
    assert main(["search", "--budget", "400k", "--islands", "2", "--survivors", "3"]) == 2
    assert "survivors must be an integer in [1, 2]" in capsys.readouterr().err
    assert main(["search", "--budget", "400k", "--time-limit", "2"]) == 2
    assert "--time-limit applies to --exact only" in capsys.readouterr().err
    assert main(["search", "--budget", "400k", "--islands", "0"]) == 2
    assert "islands must be an integer" in capsys.readouterr().err


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


def test_search_answers_first(capsys):
    assert main(["search", "--budget", "325k", "--generations", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    r = moofa.search("325k", generations=30)
    assert lines[0].startswith("best subnet of space 'moofa' under 325,000 items")
    assert lines[1].startswith(f"fits              yes: peak {r.peak:,} items = {100 * r.peak / 325_000:.1f}%")
    assert lines[2].startswith(
        f"predicted top-1   {r.top1:.2f} %  by the shipped 'moofa' predictor (ImageNet, 5-fold CV"
    )
    assert lines[3].startswith(f"compute           {r.mflops:.1f} MFLOPs")
    net = r.subnet
    stage0 = ",".join(map(str, net.ks[: net.d[0]]))
    assert lines[4].startswith(f"config            r={net.image_size} d={','.join(map(str, net.d))} ks={stage0}|")
    assert not any("<- peak" in line for line in lines) and len(lines) < 15  # the layer table needs --layers


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("(default: 325k)", "(default: 500)", "(default: 100)", "(default: moofa)", "(default: top1)"):
        assert fragment in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_pareto_with_mflops_says_three_objectives(capsys):
    assert main(["pareto", "--mflops", "--generations", "5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "three-objective front: top-1 up, peak memory down, MFLOPs down" in out.splitlines()[0]
    assert "on the three-objective front" in out.splitlines()[-1]


@pytest.fixture
def user_space(tmp_path):
    space = moofa.Space(
        "cli-user-space",
        (moofa.Stage(24, 2), moofa.Stage(40, 2), moofa.Stage(64, 2)),
        kernels=(3, 5),
        expands=(2, 4),
        depths=(1, 2),
        resolutions=(96, 128),
        n_classes=10,
    )
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(space.to_dict()))
    return space, path


def test_user_space_without_predictor_names_the_ways_out(user_space, capsys):
    _, path = user_space
    assert main(["search", "--space", str(path), "--budget", "200k"]) == 2
    err = capsys.readouterr().err
    assert "space 'cli-user-space' has no shipped predictor: give --predictor PATH" in err
    assert "--objective mflops|params" in err
    assert main(["pareto", "--space", str(path), "--generations", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "give --predictor PATH" in err and "--objective" not in err  # pareto has no proxy objective


@pytest.mark.parametrize("objective", ["mflops", "params"])
def test_user_space_with_a_proxy_objective(user_space, capsys, objective):
    space, path = user_space
    args = ["search", "--space", str(path), "--budget", "200k", "--generations", "30", "--objective", objective]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "a capacity proxy, not predicted accuracy" in text and "predicted top-1" not in text
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] is None and out["objective"]["proxy"] is True and out["peak"] <= 200_000
    # The proxy is what was maximised: no subnet under the budget has more of it among a random sample.
    sample = moofa.random_subnets(2000, space, seed=1)
    prof = moofa.profiles(sample, space)
    fitting = prof["peak"] <= 200_000
    assert out["objective"]["score"] == pytest.approx(out[objective], rel=1e-6)
    assert out[objective] >= prof[objective][fitting].max()


def test_user_space_with_its_predictor_file(user_space, tmp_path, capsys):
    space, path = user_space
    n = moofa.predictor.one_hot_size(space)
    rng = np.random.default_rng(0)
    pred = moofa.Predictor(
        space,
        [rng.normal(size=(n, 8)), rng.normal(size=(8, 1))],
        [np.zeros(8), np.zeros(1)],
        offset=60.0,
        metadata={"name": "user-pred"},
    )
    _, js = pred.save(tmp_path / "user-pred")
    args = ["search", "--space", str(path), "--budget", "200k", "--generations", "30", "--predictor", str(js)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "by predictor 'user-pred'" in text
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] == pytest.approx(float(pred.predict([out["config"]])[0]), abs=1e-4)
    # A predictor for another space is refused, naming both.
    assert main(["search", "--space", str(path), "--predictor", "moofa"]) == 2
    assert "predictor 'moofa' is for space 'moofa'" in capsys.readouterr().err
