"""Training: it learns a known function, is deterministic, and refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import moofa
from moofa.predictor import one_hot

torch = pytest.importorskip("torch")
from moofa.predictor_train import cross_validate, kendall_tau, read_records, train_predictor  # noqa: E402


def synthetic(n, seed=0, noise=0.0):
    """Records whose top1 is a known nonlinear function of the config."""
    rows = moofa.random_subnets(n, "moofa", seed=seed)
    x = one_hot(rows, "moofa").astype(np.float64)
    rng = np.random.default_rng(99)
    w = rng.normal(size=124)
    lin = x @ w
    top1 = 70 + 0.3 * lin + 0.05 * np.maximum(lin, 0) ** 2 + noise * rng.normal(size=n)
    return [dict(n.to_dict(), top1=float(t)) for n, t in zip(moofa.decode(rows, "moofa"), top1)]


def test_learns_and_generalises():
    train, test = synthetic(1500, seed=1), synthetic(300, seed=2)
    pred = train_predictor(train, "moofa", members=4, hidden=16, epochs=120, seed=0)
    y = np.array([r["top1"] for r in test])
    got = pred.predict(test)
    assert np.sqrt(np.mean((got - y) ** 2)) < 0.25 * y.std()
    assert pred.layer_sizes == [124, 64, 1] and pred.skip is not None
    oob = pred.metrics["out_of_bag"]
    assert oob["n"] > 0 and oob["rmse"] < 0.5 * y.std()
    # The merged single MLP equals the average of its members (checked by torch).
    x = torch.tensor(one_hot(test, "moofa"))
    with torch.no_grad():
        h = torch.relu(x @ torch.tensor(pred.weights[0]) + torch.tensor(pred.biases[0]))
        y_t = (h @ torch.tensor(pred.weights[1]))[:, 0] + pred.biases[1][0] + x @ torch.tensor(pred.skip)
    np.testing.assert_allclose(got, pred.offset + pred.scale * y_t.numpy(), atol=1e-4)


def test_deterministic_for_a_seed():
    data = synthetic(400, seed=3, noise=0.2)
    a = train_predictor(data, "moofa", members=2, hidden=8, epochs=20, seed=5)
    b = train_predictor(data, "moofa", members=2, hidden=8, epochs=20, seed=5)
    c = train_predictor(data, "moofa", members=2, hidden=8, epochs=20, seed=6)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_cross_validation_reports_each_fold():
    cv = cross_validate(synthetic(300, seed=4), "moofa", folds=3, members=2, hidden=8, epochs=30)
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    assert sum(f["n"] for f in cv["per_fold"]) == 300
    assert 0.5 < cv["kendall_tau_mean"] <= 1


def test_kendall_tau_matches_scipy_definition():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, 300).astype(float)
    b = a + rng.normal(size=300) * 3
    stats = pytest.importorskip("scipy.stats")
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_records(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    rec = {"ks": [3] * 20, "e": [2] * 20, "d": [2] * 5, "image_size": 128, "top1": "x"}
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="top1 must be a finite number"):
        read_records(bad)
    bad.write_text('{"ks": [3, 3\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: not valid JSON"):
        read_records(bad)
    data = synthetic(50)
    with pytest.raises(ValueError, match="members must be an integer >= 1"):
        train_predictor(data, "moofa", members=0)
    with pytest.raises(ValueError, match="val_fraction must be a number in"):
        train_predictor(data, "moofa", val_fraction=0.95)
    with pytest.raises(ValueError, match="Subnet.image_size=100"):
        train_predictor([dict(data[0], image_size=100)], "moofa")


def test_command_line_defaults_are_relative_to_the_current_folder(tmp_path, monkeypatch, capsys):
    from conftest import read_fixture

    from moofa.predictor_train import main

    monkeypatch.chdir(tmp_path)
    # No data folder: a clear error naming --data, nothing written.
    with pytest.raises(ValueError, match="--data: folder 'data/accuracy' not found"):
        main(["--name", "moofa-e1-2"])
    assert not any(tmp_path.iterdir())
    # ./data/accuracy is the default data folder, ./moofa-predictors the default output.
    data = tmp_path / "data" / "accuracy"
    data.mkdir(parents=True)
    recs = read_fixture("accuracy", "moofa-e1-2-imagenette")[:200]
    (data / "moofa-e1-2-imagenette.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    package = Path(moofa.__file__).parent / "predictors"
    before = {p.name: p.stat().st_mtime_ns for p in package.iterdir()}
    assert main(["--name", "moofa-e1-2", "--epochs", "2", "--members", "1", "--hidden", "4"]) == 0
    out = tmp_path / "moofa-predictors"
    assert sorted(p.name for p in out.iterdir()) == ["moofa-e1-2.json", "moofa-e1-2.npz"]
    fresh = moofa.load_predictor(out / "moofa-e1-2.json")
    assert fresh.layer_sizes == [124, 4, 1] and fresh.metadata["training"]["records"] == 200
    assert {p.name: p.stat().st_mtime_ns for p in package.iterdir()} == before


def test_command_line_help_shows_the_defaults(capsys):
    from moofa.predictor_train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ["(default: data/accuracy)", "(default: moofa-predictors)", "(default: 300)", "(default: 0.01)"]:
        assert default in text
