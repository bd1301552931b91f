"""End to end on real data (digits), with the defaults of ``moofa pipeline`` (the digits-demo
config): train a tiny supernet, build a balanced accuracy data set, train a predictor, search
under a budget, extract and measure the winner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import moofa  # noqa: E402
from moofa import pipeline, train  # noqa: E402

# The predictor is trained on 80 subnets measured on 355 validation images: its error on one
# subnet is a few points (out-of-bag RMSE ~3), and the search picks the subnet it rates best
# (a winner's curse), so the stated tolerance is 10 points of top-1.
TOLERANCE = 10.0


def test_demo_config_is_the_tiny_space_with_every_phase():
    demo, tiny = train.load_config(pipeline.DEFAULT_CONFIG), train.load_config("digits-tiny")
    assert demo.space_obj().to_dict() == tiny.space_obj().to_dict()
    assert [p.name for p in demo.phases] == [p.name for p in tiny.phases]
    assert [(p.kernels, p.depths, p.expands) for p in demo.phases] == [
        (p.kernels, p.depths, p.expands) for p in tiny.phases
    ]


@pytest.mark.slow
def test_pipeline_end_to_end_with_the_defaults(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert pipeline.main(["--workdir", str(workdir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    # It says where everything went, as absolute paths that exist.
    for what in ("report", "winner (TorchScript)", "supernet weights", "predictor"):
        line = next(line for line in out.splitlines() if line.startswith(what + ":"))
        path = Path(line.split(":", 1)[1].strip())
        assert path.is_absolute() and path.is_file(), line
    res = json.loads((workdir / "report.json").read_text())
    net = moofa.Subnet.from_dict(res["subnet"])
    space = train.load_config(pipeline.DEFAULT_CONFIG).space_obj()
    net.validate(space)
    # Exactly at its computed peak, within the budget.
    assert res["hooked_peak"] == res["cpp_peak"] == moofa.profile(net, space).peak
    assert res["hist_equal"]
    assert res["cpp_peak"] <= res["budget"]
    # Measured accuracy close to the prediction, and far above chance (10%).
    assert abs(res["measured_top1"] - res["predicted_top1"]) <= TOLERANCE, res
    assert res["measured_top1"] > 40, res
    assert res["dataset_records"] == 80 == len((workdir / "accuracy.jsonl").read_text().splitlines())
    # Run again: every stage resumes from what is on disk and finds the same winner.
    weights = workdir / "supernet" / "supernet.npz"
    written = weights.stat().st_mtime_ns
    again = pipeline.run_pipeline(workdir, progress=False)
    assert again.subnet == res["subnet"] and again.measured_top1 == res["measured_top1"]
    assert weights.stat().st_mtime_ns == written  # loaded, not trained again
