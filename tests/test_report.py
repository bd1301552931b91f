"""moofa.report: result summary, Table 1 and the plots (Figs. 5 and 6)."""

from __future__ import annotations

import io
import re

import numpy as np
import oracle
import pytest
import search_helpers as helpers
from conftest import FIXTURES

import moofa
from moofa import report
from moofa._progress import Progress


@pytest.fixture(scope="module")
def predictors():
    return {s: helpers.ridge_scorer(FIXTURES, f"{s}-imagenet", s)[0] for s in ("ofa", "compofa", "moofa")}


def test_format_result_shows_the_facts_and_one_bar_per_layer(predictors):
    r = moofa.search("325k", predictor=predictors["moofa"], generations=50)
    text = report.format_result(r)
    net = r.subnet
    hist = oracle.evaluate(moofa.get_space("moofa"), net.ks, net.e, net.d, net.image_size)["hist"]
    assert f"{r.top1:.2f} %" in text and f"{r.peak:,} items" in text and "325,000 items" in text
    assert moofa.Subnet.from_json(re.search(r"config as JSON\s+(\{.*\})", text).group(1)) == net
    bars = [line for line in text.splitlines() if "#" in line]
    assert len(bars) == len(hist)
    # Bar lengths follow the layer figures; the longest bar is the peak layer.
    lengths = [len(re.search(r"#+", line).group(0)) for line in bars]
    assert lengths.index(max(lengths)) == int(np.argmax(hist)) and "<- peak" in bars[int(np.argmax(hist))]
    assert "#" not in report.format_result(r, bars=False)


def test_table_has_the_shape_of_the_paper_s_table_1(predictors):
    budgets = ["325k", "400k", "800k"]
    rows = report.table(predictors=predictors, budgets=budgets, generations=40)
    assert not rows.interrupted and len(rows) == 9
    for row in rows:
        net = moofa.Subnet.from_dict(row["config"])
        t = oracle.evaluate(moofa.get_space(row["space"]), net.ks, net.e, net.d, net.image_size)
        assert row["peak"] == t["peak"] <= row["budget"]
        assert row["mflops"] == pytest.approx(t["mflops"]) and row["avg"] == pytest.approx(t["avg"])
    text = report.format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["Constraint", "Metric", "ofa", "compofa", "moofa"]
    assert len(lines) == 2 + 3 * 4 + 1  # header, rule, 4 metrics per budget, note
    assert [line.split()[1] for line in lines if line.startswith("Under")] == budgets
    moofa_325 = next(r for r in rows if r["space"] == "moofa" and r["budget"] == 325_000)
    top1_line = next(line for line in lines if line.startswith("Under 325k"))
    assert f"{moofa_325['top1']:.2f} (72.13)" in top1_line  # ours, then the paper's
    assert "305.28" in text and "+-" in text
    plain = report.format_table(rows, paper=False)
    assert "(72.13)" not in plain and len(plain.splitlines()) == len(lines) - 1


def test_table_rejects_predictors_for_other_spaces(predictors):
    with pytest.raises(ValueError, match="not in spaces"):
        report.table(["moofa"], ["400k"], {"ofa": predictors["ofa"]})


def test_plots_are_written(tmp_path, predictors):
    pytest.importorskip("matplotlib")
    r = moofa.search("325k", predictor=predictors["moofa"], generations=20)
    fig5 = report.plot_memory([r, r.profile], tmp_path / "fig5.png")
    rows = report.table(
        ["ofa", "moofa"], ["325k", "800k"], {s: predictors[s] for s in ("ofa", "moofa")}, generations=20
    )
    fig6 = report.plot_pareto(rows, tmp_path / "fig6.png")
    front = moofa.pareto("moofa", predictors["moofa"], generations=20)
    fronts = report.plot_pareto({"nsga2": front}, tmp_path / "front.png")
    for path in (fig5, fig6, fronts):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    with pytest.raises(TypeError, match="plot_pareto"):
        report.plot_pareto([1, 2], tmp_path / "bad.png")
    with pytest.raises(TypeError, match="plot_memory"):
        report.plot_memory([r, "not a result"], tmp_path / "bad.png")
    # Written through a temporary file and os.replace: nothing else is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig5.png", "fig6.png", "front.png"]


def test_plain_progress_bar():
    out = io.StringIO()
    with Progress(4, "sweep", enabled=True, stream=out) as bar:
        for i in range(4):
            bar.update(1, step=i)
    text = out.getvalue()
    assert "sweep [" in text and "4/4" in text and "step=3" in text and text.endswith("\n")
    silent = io.StringIO()
    with Progress(4, "sweep", stream=silent) as bar:  # not a terminal: no bar
        bar.update(4)
    assert silent.getvalue() == ""
