"""Latency tables: lookup against an independent sum, the constraint in the searches, files,
resume, bad input. Timing quality (table vs measured end-to-end latency) is in
benchmarks/test_latency.py."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import moofa
import moofa.latency as ml
from moofa.spaces import Space, Stage

TINY = Space(
    "lat-tiny",
    stages=(Stage(16, 2), Stage(24, 2, se=True), Stage(32, 1, act="h_swish")),
    kernels=(3, 5),
    expands=(2, 4),
    depths=(1, 2),
    resolutions=(32, 48),
    first_conv_width=8,
    first_block_width=8,
    final_expand_width=64,
    feature_mix_width=96,
    n_classes=10,
)
QUICK = {"warmup": 0, "repeats": 1, "clock": "cpu"}


def python_sum(table: ml.LatencyTable, nets) -> np.ndarray:
    """The additive model spelled out per subnet, from the table's arrays (not its lookup)."""
    sp = table.space
    out = []
    for net in nets:
        net = moofa.Subnet.from_dict(net, sp) if isinstance(net, dict) else net
        r = sp.resolutions.index(net.image_size)
        total = table.stem_ms[r] + table.head_ms[r]
        slot = 0
        for s, stage in enumerate(sp.stages):
            for j in range(net.d[s]):
                k = sp.kernels.index(net.ks[slot + j])
                e = sp.expands.index(float(net.e[slot + j]))
                total += table.blocks_ms[s, 0 if j == 0 else 1, r, k, e]
            slot += stage.max_depth
        out.append(total)
    return np.array(out)


def synthetic_table(space, seed=0, resolutions=None) -> ml.LatencyTable:
    """A table of made-up figures (for the lookup and the constraint: no timing needed)."""
    sp = moofa.get_space(space)
    rng = np.random.default_rng(seed)
    stem, head, blocks = ml._empty_arrays(sp)
    for r, size in enumerate(sp.resolutions):
        if resolutions is not None and size not in resolutions:
            continue
        stem[r], head[r] = rng.uniform(0.5, 2.0, 2) * (size / 100) ** 2
        # Larger kernels and expands cost more, as measured ones do, with +-10% noise.
        grow = 1 + 0.5 * np.arange(len(sp.kernels))[:, None] + 0.7 * np.arange(len(sp.expands))[None, :]
        scale = rng.uniform(0.05, 1.0, blocks.shape[:2])[:, :, None, None]
        blocks[:, :, r] = scale * grow * rng.uniform(0.9, 1.1, blocks[:, :, r].shape) * (size / 100) ** 2
    for s, stage in enumerate(sp.stages):
        if stage.max_depth == 1:
            blocks[s, 1] = np.nan
    return ml.LatencyTable(sp, stem, head, blocks, {"runtime": "synthetic"})


@pytest.fixture(scope="module")
def tiny_table(one_torch_thread):
    pytest.importorskip("torch")
    return ml.build_table(TINY, **QUICK)


# --- the lookup -------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["moofa", "compofa", "ofa"])
def test_predict_equals_independent_sum(space):
    table = synthetic_table(space, seed=3)
    rows = moofa.subnet.random_subnets(300, space, seed=1)
    nets = moofa.subnet.decode(rows, space)
    expected = python_sum(table, nets)
    np.testing.assert_allclose(table.predict(rows), expected, rtol=1e-12)
    np.testing.assert_allclose(table.predict(nets), expected, rtol=1e-12)
    np.testing.assert_allclose(table.predict([n.to_dict() for n in nets[:5]]), expected[:5], rtol=1e-12)


def test_measured_table_lookup_equals_independent_sum(tiny_table):
    assert tiny_table.complete and tiny_table.resolutions == TINY.resolutions
    assert np.all(tiny_table.stem_ms > 0) and np.all(tiny_table.head_ms > 0)
    nets = moofa.subnet.decode(moofa.subnet.random_subnets(100, TINY, seed=2), TINY)
    np.testing.assert_allclose(tiny_table.predict(nets), python_sum(tiny_table, nets), rtol=1e-12)


def all_subnets(sp: Space):
    """Every subnet of a small space, brute force."""
    per_stage = []
    for stage in sp.stages:
        options = []
        for d in sp.depths:
            for ks in itertools.product(sp.kernels, repeat=d):
                es = [(sp.expand_by_depth[d],) * d] if sp.expand_by_depth else itertools.product(sp.expands, repeat=d)
                for e in es:
                    pad = stage.max_depth - d
                    options.append((d, list(ks) + [sp.kernels[0]] * pad, list(e) + [e[0]] * pad))
        per_stage.append(options)
    for size in sp.resolutions:
        for combo in itertools.product(*per_stage):
            yield moofa.Subnet(
                ks=[k for c in combo for k in c[1]],
                e=[x for c in combo for x in c[2]],
                d=[c[0] for c in combo],
                image_size=size,
            )


@pytest.mark.parametrize("coupled", [False, True])
def test_min_latency_is_the_brute_force_minimum(coupled):
    sp = TINY.replace(expand_by_depth={1: 2, 2: 4}) if coupled else TINY
    table = synthetic_table(sp, seed=5)
    nets = list(all_subnets(sp))
    assert len(nets) == (20**3 if not coupled else 6**3) * 2
    assert table.min_ms() == pytest.approx(python_sum(table, nets).min(), rel=1e-12)


def test_partial_table_predicts_only_its_resolutions():
    table = synthetic_table("moofa", resolutions=(128, 160))
    assert table.resolutions == (128, 160) and not table.complete
    net = moofa.Subnet(ks=[3] * 20, e=[3] * 20, d=[2] * 5, image_size=192)
    with pytest.raises(ValueError, match="image_size 192 is not covered.*allowed image sizes: \\[128, 160\\]"):
        table.predict([net])
    smallest = moofa.Subnet(ks=[3] * 20, e=[3] * 20, d=[2] * 5, image_size=128)
    assert 0 < table.min_ms() <= python_sum(table, [smallest])[0]


def test_part_input_shapes_match_a_real_forward(one_torch_thread):
    torch = pytest.importorskip("torch")
    import moofa.nn

    sp = moofa.get_space("moofa")
    sup = moofa.nn.Supernet(sp)
    net = moofa.Subnet(ks=[3] * 20, e=[3] * 20, d=[2, 3, 4, 2, 3], image_size=160)
    model = sup.extract(net).eval()
    seen = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape)))
    head = []
    model.final_expand.register_forward_pre_hook(lambda m, inp: head.append(tuple(inp[0].shape)))
    with torch.inference_mode():
        model(torch.zeros(1, 3, 160, 160))
    shapes = ml.part_input_shapes(sp, 160)
    expected = [shapes[f"s{s}/{'first' if j == 0 else 'other'}"] for s, d in enumerate(net.d) for j in range(d)]
    assert seen == expected and head == [shapes["head"]]


# --- the constraint in the searches ----------------------------------------------------------------


def test_search_respects_max_latency():
    table = synthetic_table("moofa", seed=1)
    free = moofa.search("800k", generations=40, seed=0)
    limit = float(python_sum(table, [free.subnet])[0]) * 0.7  # the unconstrained best is too slow
    assert limit > table.min_ms()
    r = moofa.search("800k", generations=40, seed=0, max_latency_ms=limit, latency_table=table)
    assert python_sum(table, [r.subnet])[0] <= limit
    assert r.peak <= 800_000 and r.constraints["max_latency_ms"] == limit
    assert r.latency_ms == pytest.approx(python_sum(table, [r.subnet])[0], rel=1e-12)
    assert free.latency_ms is None and "latency_ms" not in free.to_dict()
    # A tight limit: children over it are stepped down until they fit, so the search still
    # finds new subnets to score every generation.
    tight = table.min_ms() * 1.2
    r = moofa.search("800k", generations=40, seed=0, max_latency_ms=tight, latency_table=table)
    assert python_sum(table, [r.subnet])[0] <= tight
    assert r.evaluations > 0.5 * 100 * 41


def test_pareto_respects_max_latency(tmp_path):
    table = synthetic_table("moofa", seed=2)
    path = table.save(tmp_path / "t.json")
    limit = table.min_ms() * 1.6
    front = moofa.pareto("moofa", generations=15, population=60, max_latency_ms=limit, latency_table=path)
    assert len(front.subnets) > 0
    assert np.all(python_sum(table, front.subnets) <= limit)
    unconstrained = moofa.pareto("moofa", generations=15, population=60)
    assert np.any(python_sum(table, unconstrained.subnets) > limit)
    sweep = moofa.pareto("moofa", budgets=["400k", "800k"], generations=20, max_latency_ms=limit, latency_table=table)
    assert np.all(python_sum(table, sweep.subnets) <= limit)


def test_search_with_partial_table_stays_in_its_resolutions():
    table = synthetic_table("moofa", seed=4, resolutions=(128, 160))
    r = moofa.search("800k", generations=30, max_latency_ms=table.min_ms() * 3, latency_table=table)
    assert r.subnet.image_size in (128, 160)


def test_constraint_errors(tmp_path):
    table = synthetic_table("moofa")
    with pytest.raises(ValueError, match="max_latency_ms needs latency_table"):
        moofa.search("800k", max_latency_ms=10)
    with pytest.raises(ValueError, match="without max_latency_ms"):
        moofa.search("800k", latency_table=table)
    with pytest.raises(ValueError, match="max_latency_ms=.*below the smallest latency"):
        moofa.search("800k", max_latency_ms=table.min_ms() * 0.99, latency_table=table)
    with pytest.raises(ValueError, match="max_latency_ms must be a finite number > 0"):
        moofa.search("800k", max_latency_ms=-1, latency_table=table)
    with pytest.raises(ValueError, match="built for space 'moofa', which differs from space 'ofa'"):
        moofa.search("800k", space="ofa", max_latency_ms=100, latency_table=table)
    with pytest.raises(TypeError, match="latency_table must be a moofa.latency.LatencyTable or a path"):
        moofa.search("800k", max_latency_ms=100, latency_table=42)
    with pytest.raises(ValueError, match="latency table: .* does not exist"):
        moofa.pareto("moofa", max_latency_ms=100, latency_table=tmp_path / "missing.json")


def test_core_cost_checks_rows_and_shapes():
    table = synthetic_table("moofa")
    bad = moofa.encode([moofa.Subnet(ks=[3] * 20, e=[3] * 20, d=[2] * 5, image_size=128)], "moofa")
    bad[0, 1] = 7  # depth index out of range
    with pytest.raises(ValueError, match=r"d\[0\]"):
        table.cost.costs(bad)
    spec = moofa._encoding.spec(table.space)
    with pytest.raises(ValueError, match="base must have shape \\(4,\\)"):
        moofa._core.AdditiveCost(spec, np.zeros(3), table.slot_ms())
    with pytest.raises(ValueError, match="slots must have shape"):
        moofa._core.AdditiveCost(spec, np.zeros(4), np.zeros((20, 4, 3)))
    with pytest.raises(ValueError, match="slot_cost.* must be a finite number >= 0"):
        moofa._core.AdditiveCost(spec, np.zeros(4), -table.slot_ms() - 1)
    with pytest.raises(ValueError, match="latency and max_latency_ms must be given together"):
        moofa._core.evolve(
            moofa.memory.evaluator("moofa"), lambda rows: np.zeros(len(rows)), max_peak=10**6, latency=table.cost
        )


# --- files and building ---------------------------------------------------------------------------


def test_file_round_trip(tmp_path, tiny_table):
    path = tiny_table.save(tmp_path / "tiny.json")
    back = ml.load_table(path, TINY)
    for name in ("stem_ms", "head_ms", "blocks_ms"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tiny_table, name))
    info = json.loads(path.read_text())
    assert info["format"] == ml.FORMAT and info["complete"] is True
    assert info["runtime"] == "torch" and info["threads"] == 1 and info["torch_version"]
    assert info["settings"] == {
        "method": "context",
        "batch": 1,
        "warmup": 0,
        "repeats": 1,
        "statistic": "median",
        "clock": "cpu",
        "unit": "ms",
    }
    assert "logical cores" in info["cpu"]
    # 2 resolutions x (stem, head) + 3 stages x 2 positions x 2 kernels x 2 expands x 2 resolutions
    assert len(info["entries"]) == 4 + 3 * 2 * 2 * 2 * 2
    assert ml.load_table(path).space == TINY


def test_load_errors(tmp_path, tiny_table):
    path = tiny_table.save(tmp_path / "t.json")
    with pytest.raises(ValueError, match="built for space 'lat-tiny', which differs from space 'moofa'"):
        ml.load_table(path, "moofa")
    d = json.loads(path.read_text())
    for change, message in [
        ({"format": "other"}, "format must be 'moofa-latency-v1'"),
        ({"entries": {"block/s9/first/r32/k3/e2": 1.0}}, "unknown entry 'block/s9/first"),
        ({"entries": {"stem/r32": -1.0}}, "entry 'stem/r32' must be a finite time >= 0"),
        ({"entries": {"stem/r32": "fast"}}, "entry 'stem/r32' must be a finite time >= 0"),
        ({"space": {"stages": []}}, "'space' is not a moofa space description"),
    ]:
        (tmp_path / "bad.json").write_text(json.dumps({**d, **change}))
        with pytest.raises(ValueError, match=message):
            ml.load_table(tmp_path / "bad.json")
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        ml.load_table(tmp_path / "notjson.json")
    with pytest.raises(ValueError, match="does not exist"):
        ml.load_table(tmp_path / "none.json")


def test_interrupted_build_resumes(tmp_path, monkeypatch, one_torch_thread):
    pytest.importorskip("torch")
    path = tmp_path / "resume.json"
    calls = []
    real = ml._Timer.in_context

    def interrupted(self, *args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[1])
        return real(self, *args)

    monkeypatch.setattr(ml._Timer, "in_context", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ml.build_table(TINY, path=path, **QUICK)
    partial = json.loads(path.read_text())
    assert partial["complete"] is False
    first = partial["entries"]
    # Three context subnets measured, 3 stages x 2 positions each; the first of each resolution
    # also measured its stem and head.
    assert len(first) == 2 * 2 + 3 * 6
    assert not list(tmp_path.glob(".resume.json.*"))  # no temporary file left behind

    calls.clear()
    monkeypatch.setattr(ml._Timer, "in_context", lambda self, *a: (calls.append(a[1]), real(self, *a))[1])
    table = ml.build_table(TINY, path=path, **QUICK)
    assert len(calls) == 8 - 3  # only the (kernel, expand, resolution) groups not yet measured
    assert table.complete
    final = json.loads(path.read_text())
    assert final["complete"] is True and len(final["entries"]) == 4 + 48
    assert {k: final["entries"][k] for k in first} == first  # what was measured is kept

    with pytest.raises(ValueError, match="measured with settings=.*pass the same settings to resume"):
        ml.build_table(TINY, path=path, warmup=1, repeats=1, clock="cpu")
    assert ml.build_table(TINY, path=path, **QUICK).complete  # nothing left to measure


def test_standalone_method_and_measure(one_torch_thread):
    torch = pytest.importorskip("torch")
    table = ml.build_table(TINY, method="standalone", resolutions=[32], **QUICK)
    assert table.resolutions == (32,)
    assert np.all(table.blocks_ms[:, :, 0] > 0)
    assert table.info["settings"]["method"] == "standalone"
    ms = ml.measure(torch.nn.Conv2d(3, 8, 3), (1, 3, 32, 32), repeats=3)
    assert 0 < ms < 1000
    nets = moofa.subnet.random_subnets(2, TINY, seed=0)
    assert np.all(ml.measure_subnets(nets, TINY, **QUICK) > 0)


def test_onnxruntime_runtime(one_torch_thread):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    table = ml.build_table(TINY, "onnxruntime", resolutions=[32], **QUICK)
    assert table.info["runtime"] == "onnxruntime" and table.info["settings"]["method"] == "standalone"
    assert table.info["onnxruntime_version"]
    rows = moofa.subnet.random_subnets(40, TINY, seed=0)
    assert np.all(np.isfinite(table.predict(rows[rows[:, 0] == 0])))
    assert np.all(table.blocks_ms[:, :, 0] > 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "tflite"}, "runtime must be one of \\['torch', 'onnxruntime'\\]"),
        ({"method": "hooks"}, "method must be one of \\['context', 'standalone'\\]"),
        ({"clock": "tsc"}, "clock must be one of \\['wall', 'cpu'\\]"),
        ({"repeats": 0}, "repeats must be an integer >= 1"),
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        (
            {"resolutions": [33]},
            "resolutions must be a non-empty subset of \\[32, 48\\] \\(space 'lat-tiny'\\), got \\[33\\]",
        ),
        ({"resolutions": []}, "resolutions must be a non-empty subset"),
    ],
)
def test_build_errors(kwargs, message):
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=message):
        ml.build_table(TINY, **kwargs)


def test_context_needs_torch_runtime():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match="method='context' times parts with PyTorch hooks"):
        ml.build_table(TINY, "onnxruntime", method="context")


def test_table_shape_errors():
    stem, head, blocks = ml._empty_arrays(TINY)
    with pytest.raises(ValueError, match="LatencyTable.blocks_ms must have shape \\(3, 2, 2, 2, 2\\)"):
        ml.LatencyTable(TINY, stem, head, blocks[:2])
    with pytest.raises(ValueError, match="LatencyTable.stem_ms must hold finite times >= 0"):
        ml.LatencyTable(TINY, -np.ones(2), head, blocks)
    empty = ml.LatencyTable(TINY, stem, head, blocks)
    assert empty.resolutions == ()
    with pytest.raises(ValueError, match="is not covered by this latency table; allowed image sizes: \\[\\]"):
        empty.predict(moofa.subnet.random_subnets(1, TINY, seed=0))
    with pytest.raises(ValueError, match="covers no resolution"):
        empty.min_ms()


def test_cli(tmp_path, capsys, one_torch_thread):
    pytest.importorskip("torch")
    from moofa.cli import main

    space_file = tmp_path / "tiny-space.json"
    space_file.write_text(json.dumps(TINY.to_dict()))
    out = tmp_path / "tiny.json"
    args = ["--warmup", "0", "--repeats", "1", "--clock", "cpu", "--resolutions", "32", "--no-progress"]
    assert main(["latency-table", "--space", str(space_file), "--out", str(out), *args]) == 0
    assert "latency table of space 'lat-tiny' at [32] px, torch on 1 thread(s), context" in capsys.readouterr().out
    assert ml.load_table(out, TINY).resolutions == (32,)

    table = synthetic_table("moofa", seed=6)
    path = table.save(tmp_path / "moofa.json")
    limit = table.min_ms() * 1.5
    argv = ["search", "--budget", "800k", "--generations", "20", "--json"]
    assert main([*argv, "--max-latency-ms", str(limit), "--latency-table", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert python_sum(table, [result["config"]])[0] <= limit
    assert result["constraints"]["max_latency_ms"] == limit
    assert result["latency_ms"] == pytest.approx(python_sum(table, [result["config"]])[0])


def test_median_table():
    tables = [synthetic_table("moofa", seed=i, resolutions=(128, 160) if i else None) for i in range(3)]
    med = ml.median_table(tables)
    assert med.info["rounds"] == 3 and med.complete
    # Resolutions only the first table measured keep its figures; the others: the median of three.
    np.testing.assert_array_equal(med.stem_ms[2:], tables[0].stem_ms[2:])
    np.testing.assert_allclose(med.blocks_ms[:, 0, :2], np.median([t.blocks_ms[:, 0, :2] for t in tables], axis=0))
    np.testing.assert_allclose(med.head_ms[:2], np.median([t.head_ms[:2] for t in tables], axis=0))
    with pytest.raises(ValueError, match="median_table: a table was built for space 'ofa'"):
        ml.median_table([tables[0], synthetic_table("ofa")])
    with pytest.raises(TypeError, match="non-empty sequence of moofa.latency.LatencyTable"):
        ml.median_table([])


def test_specialise_meets_latency_and_uniformity_limits():
    table = synthetic_table("moofa", seed=4)
    nets = moofa.subnet.decode(moofa.subnet.random_subnets(2000, "moofa", seed=9), "moofa")
    limit = float(np.quantile(python_sum(table, nets), 0.3))
    budgets = ["400k", "600k", "1M"]
    free = moofa.specialise(budgets, "moofa", population=100, generations=20, cache=False)
    r = moofa.specialise(
        budgets,
        "moofa",
        max_latency_ms=limit,
        latency_table=table,
        min_uniformity=0.45,
        population=100,
        generations=20,
        cache=False,
    )
    assert r.feasible.all() and r.constraints == {"max_latency_ms": limit, "min_uniformity": 0.45}
    got = r.subnets()
    assert (python_sum(table, got) <= limit + 1e-9).all()
    hists = [np.asarray(moofa.profile(n, "moofa").hist, dtype=float) for n in got]
    assert all(h.mean() / h.max() >= 0.45 for h in hists)
    assert (python_sum(table, free.subnets()) > limit).any()  # the limits bind
    assert np.all(r.top1 <= free.top1 + 1e-6)
    with pytest.raises(ValueError, match="max_latency_ms needs latency_table"):
        moofa.specialise(budgets, "moofa", max_latency_ms=limit)
