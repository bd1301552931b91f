"""Balanced dataset builder: bins filled evenly, interrupted runs resume without
losing or repeating a sample, peaks checked against the independent oracle."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import oracle
import pytest
from conftest import read_jsonl

import moofa
from moofa.dataset import bin_edges, build_dataset


def fake_top1(config: dict) -> float:
    """A deterministic stand-in for evaluating a subnet on a validation set."""
    return 40.0 + 0.1 * sum(config["ks"]) + 0.5 * sum(config["d"]) + config["image_size"] / 100


class Interrupt(Exception):
    pass


class Evaluator:
    def __init__(self, stop_after: int | None = None):
        self.calls: list[dict] = []
        self.stop_after = stop_after

    def __call__(self, config):
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise Interrupt
        self.calls.append(config)
        return fake_top1(config)


def key(config, space):
    """A subnet's identity: its active choices (inactive slots do not exist)."""
    sp = moofa.get_space(space)
    out, slot = [config["image_size"], tuple(config["d"])], 0
    for stage, depth in zip(sp.stages, config["d"]):
        out.append(tuple(config["ks"][slot : slot + depth]))
        out.append(tuple(config["e"][slot : slot + depth]))
        slot += stage.max_depth
    return tuple(out)


def test_interrupted_build_resumes_without_loss_or_repeats(tmp_path):
    space, n_per_bin = "moofa", 6
    edges = bin_edges(space, 5)
    out = tmp_path / "set.jsonl"
    first = Evaluator(stop_after=13)
    with pytest.raises(Interrupt):
        build_dataset(space, first, out, n_per_bin=n_per_bin, bins=5, seed=3, progress=False)
    partial = read_jsonl(out)
    assert len(partial) == 13
    # Round-robin order: even an interrupted set is balanced to within one sample per bin.
    counts = Counter(r["bin"] for r in partial)
    assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == 5
    # A crash in the middle of writing a line leaves a partial line behind.
    with open(out, "a") as f:
        f.write('{"ks": [3, 5, 7')
    second = Evaluator()
    summary = build_dataset(space, second, out, n_per_bin=n_per_bin, bins=5, seed=3, progress=False)
    records = read_jsonl(out)
    assert summary["records"] == len(records) == 5 * n_per_bin
    assert summary["evaluated"] == len(second.calls) == 5 * n_per_bin - 13
    assert summary["per_bin"] == [n_per_bin] * 5 and summary["short_bins"] == []
    # Nothing evaluated twice, nothing lost, every record where it belongs.
    all_calls = [key(c, space) for c in first.calls + second.calls]
    assert len(set(all_calls)) == len(all_calls) == len(records)
    assert {key(r, space) for r in records} == set(all_calls)
    assert Counter(r["bin"] for r in records) == {b: n_per_bin for b in range(5)}
    sp = moofa.get_space(space)
    for r in records:
        assert r["top1"] == fake_top1(r)
        peak = oracle.evaluate(sp, r["ks"], r["e"], r["d"], r["image_size"])["peak"]
        assert r["peak_memory"] == peak
        b = r["bin"]
        assert edges[b] <= peak and (peak < edges[b + 1] or (b == 4 and peak == edges[-1]))
    # A finished set: running again evaluates nothing.
    third = Evaluator()
    again = build_dataset(space, third, out, n_per_bin=n_per_bin, bins=5, seed=3, progress=False)
    assert again["evaluated"] == 0 and third.calls == [] and read_jsonl(out) == records


def test_tight_bins_are_filled_in_every_space(tmp_path):
    # The two tightest of ten bins hold ~0.07% of uniform moofa subnets; CompOFA's
    # coupling must survive the skewed sampler.
    for space in ("moofa", "compofa"):
        edges = bin_edges(space, 10)
        ev = Evaluator()
        s = build_dataset(
            space, ev, tmp_path / f"{space}.jsonl", n_per_bin=3, bins=list(edges[:4]), seed=0, progress=False
        )
        assert s["per_bin"] == [3, 3, 3] and s["short_bins"] == []
        for r in read_jsonl(tmp_path / f"{space}.jsonl"):
            moofa.Subnet.from_dict(r).validate(space)


def test_unreachable_bins_are_reported(tmp_path):
    # No OFA subnet peaks between 1.20M and 1.25M items (peaks take ~40 distinct values).
    s = build_dataset(
        "ofa",
        Evaluator(),
        tmp_path / "o.jsonl",
        n_per_bin=2,
        bins=[1_200_000, 1_250_000],
        max_draws=50_000,
        progress=False,
    )
    assert s["short_bins"] == [0] and s["records"] == 0


def test_bad_arguments(tmp_path):
    out = tmp_path / "x.jsonl"
    with pytest.raises(TypeError, match="evaluate must be a callable"):
        build_dataset("moofa", 3, out)
    with pytest.raises(ValueError, match="n_per_bin must be a positive integer"):
        build_dataset("moofa", fake_top1, out, n_per_bin=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        build_dataset("moofa", fake_top1, out, bins=[5, 3])
    with pytest.raises(ValueError, match="high must be above low"):
        build_dataset("moofa", fake_top1, out, low="400k", high="300k")
    with pytest.raises(ValueError, match="finite top-1"):
        build_dataset("moofa", lambda c: float("nan"), out, n_per_bin=1, bins=2, progress=False)
    # Resuming with other settings would mix two data sets.
    build_dataset("moofa", fake_top1, tmp_path / "y.jsonl", n_per_bin=1, bins=2, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        build_dataset("moofa", fake_top1, tmp_path / "y.jsonl", n_per_bin=2, bins=2, progress=False)
    (tmp_path / "z.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="without a plan"):
        build_dataset("moofa", fake_top1, tmp_path / "z.jsonl", n_per_bin=1, bins=2, progress=False)
    assert np.all(np.diff(bin_edges("moofa", 3)) > 0)


def test_sharded_build_merges_to_the_single_process_bytes(tmp_path):
    """Ranks run one after another here (no barrier): each evaluates its share of the plan;
    the last one to finish merges, in plan order, into the bytes one process writes."""
    args = dict(n_per_bin=4, bins=3, seed=7, progress=False)
    single = tmp_path / "single.jsonl"
    build_dataset("moofa", fake_top1, single, **args)
    out = tmp_path / "sharded.jsonl"
    evs = [Evaluator() for _ in range(3)]
    results = [build_dataset("moofa", evs[r], out, rank=r, world_size=3, **args) for r in range(3)]
    assert [r["merged"] for r in results] == [False, False, True]
    assert [len(e.calls) for e in evs] == [4, 4, 4]
    assert out.read_bytes() == single.read_bytes()
    assert not list(tmp_path.glob("*.shard-*"))
    # Run again: nothing to evaluate, the same bytes.
    again = build_dataset("moofa", Evaluator(), out, rank=0, world_size=3, **args)
    assert again["evaluated"] == 0 and again["merged"] and out.read_bytes() == single.read_bytes()


def test_sharded_build_resumes_with_another_world_size(tmp_path):
    args = dict(n_per_bin=5, bins=4, seed=1, progress=False)
    single = tmp_path / "single.jsonl"
    build_dataset("moofa", fake_top1, single, **args)
    out = tmp_path / "set.jsonl"
    build_dataset("moofa", Evaluator(), out, rank=0, world_size=2, **args)  # rank 0 done
    first = Evaluator(stop_after=3)
    with pytest.raises(Interrupt):  # rank 1 dies after 3 of its 10 records
        build_dataset("moofa", first, out, rank=1, world_size=2, **args)
    with open(out.with_name("set.jsonl.shard-1-of-2.jsonl"), "a") as f:
        f.write('{"ks": [3, 5')  # torn by the crash
    # Rerun on 3 processes: exactly the 7 missing subnets, split between them.
    evs = [Evaluator() for _ in range(3)]
    for r in range(3):
        build_dataset("moofa", evs[r], out, rank=r, world_size=3, **args)
    redone = [key(c, "moofa") for e in evs for c in e.calls]
    assert len(redone) == len(set(redone)) == 7
    assert not {key(c, "moofa") for c in first.calls} & set(redone)
    assert out.read_bytes() == single.read_bytes()
    # A single process then finds everything done.
    assert build_dataset("moofa", Evaluator(), out, **args)["evaluated"] == 0


def test_shards_that_disagree_are_refused(tmp_path):
    args = dict(n_per_bin=2, bins=2, seed=0, progress=False)
    out = tmp_path / "set.jsonl"
    build_dataset("moofa", fake_top1, out, rank=0, world_size=2, **args)
    shard = out.with_name("set.jsonl.shard-0-of-2.jsonl")
    rec = json.loads(shard.read_text().splitlines()[0])
    # The same subnet, another top-1, in a shard of another world size.
    out.with_name("set.jsonl.shard-0-of-1.jsonl").write_text(json.dumps(rec | {"top1": rec["top1"] + 1}) + "\n")
    with pytest.raises(ValueError, match="different records for plan row 0"):
        build_dataset("moofa", fake_top1, out, rank=1, world_size=2, **args)
    with pytest.raises(ValueError, match="rank must be an integer in"):
        build_dataset("moofa", fake_top1, out, rank=2, world_size=2, **args)
    with pytest.raises(ValueError, match="world_size must be a positive integer"):
        build_dataset("moofa", fake_top1, out, rank=0, world_size=0, **args)
