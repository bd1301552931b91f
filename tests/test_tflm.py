"""moofa.tflm (TFLM's arena head emulated from the space and the subnet) against TensorFlow Lite
Micro itself: random subnets are exported with moofa.export.tflite, allocated in TFLM (one
child process for all of them) and TFLM's measured head must equal the emulated one to the
byte; the emulated graph must be the exported model's graph, tensor for tensor."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys

import pytest

import moofa
from moofa import tflm

# Small resolutions (and the spaces' 128 and 160) keep the exports fast; odd feature sizes
# and every stride/padding case are among them.
RESOLUTIONS = (32, 40, 48, 56, 64, 96, 128, 160)
COUNTS = {"moofa-e1-2": 200, "moofa": 50, "ofa": 50, "compofa": 10, "no-mix": 10}

# Child: reads length-prefixed models from stdin, allocates each in TFLM, prints one JSON line
# per model with TFLM's arena head and tail.
_CHILD = r"""
import json, os, struct, sys
from tflite_micro.python.tflite_micro import runtime
from moofa.deploy import _parse_allocations, allocations_text
out = os.fdopen(os.dup(1), "w")
stdin = sys.stdin.buffer
while True:
    n = stdin.read(4)
    if len(n) < 4:
        break
    model = stdin.read(struct.unpack("<I", n)[0])
    interp = runtime.Interpreter.from_bytes(model, arena_size=1 << 26)
    head, tail = _parse_allocations(allocations_text(interp))
    del interp
    out.write(json.dumps({"head": head, "tail": tail}) + "\n")
    out.flush()
"""


def tflm_allocations(models: list[bytes]) -> list[dict]:
    """TFLM's measured arena head and tail of each model, all in one child process."""
    data = b"".join(struct.pack("<I", len(m)) + m for m in models)
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=data, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert len(rows) == len(models)
    return rows


def small_space(name: str) -> moofa.Space:
    if name == "no-mix":  # no feature mix, an identity first block, one input channel
        return dataclasses.replace(
            moofa.get_space("moofa-e1-2"),
            name=name,
            resolutions=RESOLUTIONS,
            feature_mix_width=0,
            first_conv_width=8,
            first_block_width=8,
            in_channels=1,
        )
    return dataclasses.replace(moofa.get_space(name), resolutions=RESOLUTIONS)


@pytest.fixture(scope="module")
def measured():
    """(space, subnet, exported model, TFLM head, TFLM tail) of random subnets of each space."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tflite_micro", reason="tflite-micro has wheels for CPython 3.10-3.12 only (moofa[mcu])")
    import moofa.nn as mnn
    from moofa.export import tflite

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = []
        gen = torch.Generator().manual_seed(0)
        for seed, (name, count) in enumerate(COUNTS.items()):
            sp = small_space(name)
            sup = mnn.Supernet(sp)
            for net in sup.random_subnets(count, seed=seed):
                r = net.image_size
                model = tflite(sup.extract(net).eval(), torch.randn(1, sp.in_channels, r, r, generator=gen))
                cases.append((sp, net, model))
    finally:
        torch.set_num_threads(threads)
    rows = tflm_allocations([m for _, _, m in cases])
    return [(sp, net, model, row["head"], row["tail"]) for (sp, net, model), row in zip(cases, rows)]


def test_emulated_head_is_tflm_head_to_the_byte(measured):
    per_space: dict[str, list[float]] = {}
    wrong = []
    for sp, net, _, head, _ in measured:
        got = tflm.head(net, sp)
        if got != head:
            wrong.append(f"{sp.name} {net}: emulated {got}, TFLM {head}")
        mcu = moofa.profile(net, sp, memory_model="mcu", bytes_per_item=1).peak
        per_space.setdefault(sp.name, []).append(head / mcu)
    for name, ratios in per_space.items():
        print(f"{name}: {len(ratios)} subnets, TFLM head / mcu peak {min(ratios):.2f} - {max(ratios):.2f}")
    assert not wrong, "\n".join(wrong[:10])
    assert {name: len(r) for name, r in per_space.items()} == COUNTS


def test_emulated_graph_is_the_exported_graph(measured):
    for sp, net, model, _, _ in measured:
        exported = tflm.graph_from_tflite(model)
        assert tflm.graph_of(net, sp) == exported, f"{sp.name} {net}"
        assert tflm.plan(exported.buffers()).head == tflm.head(net, sp)


def test_head_is_not_the_live_bytes(measured):
    """The placement matters: the head is at least the most bytes alive at once, and often
    more (fragmentation), so a liveness sum alone would not be exact."""
    above_pairs = 0
    for sp, net, _, head, _ in measured:
        bufs = tflm.graph_of(net, sp).buffers()
        live = max(sum(b.aligned for b in bufs if b.first <= t <= b.last) for t in range(max(b.last for b in bufs) + 1))
        assert head >= live  # no planner beats the most bytes alive at one time
        above_pairs += head > live
    print(f"head above the most bytes alive at once for {above_pairs} of {len(measured)} subnets")
    assert above_pairs > 0


def test_planner_rules():
    B = tflm.Buffer
    # Sizes are rounded up to 16 bytes; disjoint lifetimes share offset 0.
    assert tflm.plan([B("a", 1, 0, 1), B("b", 17, 2, 3)]) == tflm.Plan(32, (0, 0))
    # Largest first, each at the first gap among the placed buffers alive with it.
    p = tflm.plan([B("a", 32, 0, 1), B("b", 64, 1, 2), B("c", 16, 2, 3), B("d", 16, 0, 0)])
    assert p.offsets == (64, 0, 64, 0) and p.head == 96
    p = tflm.plan([B("a", 48, 0, 2), B("b", 16, 0, 0), B("c", 64, 1, 1), B("d", 16, 2, 2)])
    assert p.offsets == (64, 0, 0, 0) and p.head == 112
    # Equal sizes: the one added last is placed first.
    assert tflm.plan([B("a", 16, 0, 1), B("b", 16, 0, 1)]).offsets == (16, 0)
    assert tflm.plan([]) == tflm.Plan(0, ())


def test_bad_input():
    with pytest.raises(TypeError, match="net must be a moofa.Subnet"):
        tflm.head("big", "moofa")
    with pytest.raises(ValueError):
        tflm.head({"ks": [3], "e": [3], "d": [1], "image_size": 224}, "moofa")
    net = moofa.Subnet.from_dict({"ks": [3] * 20, "e": [2] * 20, "d": [2] * 5, "image_size": 128}, "moofa")
    swish = dataclasses.replace(moofa.get_space("moofa"), head_act="swish")
    with pytest.raises(ValueError, match="final_expand: activation 'swish' is not supported"):
        tflm.head(net, swish)
    assert tflm.head(net, "moofa") == tflm.head(net.to_dict(), "moofa")


# --- the C++ evaluator (memory_model="tflm") ------------------------------------------------


def test_cpp_head_is_python_head_is_tflm_head(measured):
    by_space: dict[str, list] = {}
    for sp, net, _, head, _ in measured:
        by_space.setdefault(sp.name, []).append((sp, net, head))
    for cases in by_space.values():
        sp = cases[0][0]
        nets = [net for _, net, _ in cases]
        cpp = moofa.peak_memory(nets, sp, memory_model="tflm")
        assert cpp.tolist() == [head for _, _, head in cases]
        assert cpp.tolist() == [tflm.head(net, sp) for net in nets]
        one = moofa.profile(nets[0], sp, memory_model="tflm")
        assert one.peak == cases[0][2] and one.unit == "bytes" and one.memory_model == "tflm"


@pytest.mark.parametrize("name", ["moofa-e1-2", "moofa", "ofa", "compofa", "moofa-e346"])
def test_cpp_head_matches_the_reference_on_random_rows(name):
    rows = moofa.random_subnets(300, name, seed=11)
    nets = moofa.decode(rows, name)
    cpp = moofa.peak_memory(rows, name, memory_model="tflm", threads=2)
    assert cpp.tolist() == [tflm.head(net, name) for net in nets]
    # Batched profiles agree; the mcu histogram is what profiles carry besides the head.
    prof = moofa.profiles(rows, name, memory_model="tflm")
    assert prof["peak"].tolist() == cpp.tolist()
    mcu = moofa.profiles(rows, name, memory_model="mcu")
    assert prof["mflops"].tolist() == mcu["mflops"].tolist()
    assert moofa.profiles(rows, name, memory_model="tflm", with_hist=True)["peak"].tolist() == cpp.tolist()


def test_search_winner_fits_in_tflm():
    """The winner under a tflm budget allocates in TFLM with a head within the budget (its
    exported model, random weights: the head depends on shapes only)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tflite_micro", reason="tflite-micro has wheels for CPython 3.10-3.12 only (moofa[mcu])")
    import moofa.nn as mnn
    from moofa.export import tflite

    sup = mnn.Supernet("moofa-e1-2")
    models, results = [], []
    for budget in ("96KiB", "128KiB", "256KiB"):
        r = moofa.search(budget, space="moofa-e1-2", memory_model="tflm", bytes_per_item=1, seed=0)
        assert r.peak <= r.budget == moofa.units.parse_budget(budget, 1)
        size = r.subnet.image_size
        models.append(tflite(sup.extract(r.subnet).eval(), torch.randn(1, 3, size, size)))
        results.append(r)
        # A search under the mcu model at the same byte budget picks a winner TFLM cannot fit.
        mcu = moofa.search(budget, space="moofa-e1-2", memory_model="mcu", bytes_per_item=1, seed=0)
        print(f"{budget}: tflm winner head {r.peak}, mcu winner head {tflm.head(mcu.subnet, 'moofa-e1-2')}")
    for r, row in zip(results, tflm_allocations(models)):
        assert row["head"] == r.peak <= r.budget


def test_tflm_model_refuses_what_it_cannot_count():
    net = moofa.Subnet.from_dict({"ks": [3] * 20, "e": [2] * 20, "d": [2] * 5, "image_size": 128}, "moofa")
    with pytest.raises(ValueError, match="bytes_per_item must be 1"):
        moofa.profile(net, "moofa", memory_model="tflm", bytes_per_item=4)
    with pytest.raises(ValueError, match="bytes_per_item must be 1"):
        moofa.peak_memory([net], "moofa", memory_model="tflm", bytes_per_item=2)
    assert moofa.peak_memory([net], "moofa", memory_model="tflm", bytes_per_item=1)[0] == tflm.head(net, "moofa")
    with pytest.raises(ValueError, match="pass bytes_per_item=1"):
        moofa.search("256KiB", space="moofa", memory_model="tflm", bytes_per_item=4)
    smallest, _ = moofa.min_peak("moofa-e1-2", memory_model="tflm")
    with pytest.raises(ValueError, match=f"below the smallest TFLM arena head .* {smallest:,} bytes"):
        moofa.search(smallest - 1, space="moofa-e1-2", memory_model="tflm", bytes_per_item=1)
    swish = dataclasses.replace(
        moofa.get_space("moofa"),
        name="moofa-swish",
        stages=tuple(dataclasses.replace(s, act="swish") for s in moofa.get_space("moofa").stages),
    )
    with pytest.raises(ValueError, match=r"stages\[0\].act='swish'"):
        moofa.peak_memory([net], swish, memory_model="tflm")
    with pytest.raises(ValueError, match="memory_model must be one of"):
        moofa.peak_memory([net], "moofa", memory_model="tflite")


@pytest.mark.parametrize("name", ["moofa-e1-2", "moofa", "ofa"])
def test_search_and_pareto_never_exceed_a_tflm_budget(name):
    """The search's operators prune with lower bounds of the head; what it returns must fit
    the exact head (checked with the Python reference)."""
    smallest, _ = moofa.min_peak(name, memory_model="tflm")
    for factor in (1.05, 1.5, 3.0):
        budget = int(smallest * factor)
        for seed in (0, 1):
            r = moofa.search(
                budget, space=name, memory_model="tflm", bytes_per_item=1, seed=seed, population=40, generations=40
            )
            assert r.peak == tflm.head(r.subnet, name) <= budget
    front = moofa.pareto(
        space=name, memory_model="tflm", bytes_per_item=1, seed=0, generations=30, max_peak=int(smallest * 2)
    )
    heads = [tflm.head(net, name) for net in front.subnets]
    assert list(front.peak) == heads and max(heads) <= int(smallest * 2)


def test_tflm_budgets_are_bytes_by_default_and_reported_as_bytes():
    from moofa.report import format_result

    r = moofa.search("96KiB", space="moofa-e1-2", memory_model="tflm", generations=5)
    assert r.budget == 96 * 1024 and r.peak <= r.budget
    assert r.peak == tflm.head(r.subnet, "moofa-e1-2")
    text = format_result(r, bars=True)
    assert "98,304 bytes (96.0 KiB) of TensorFlow Lite Micro arena head" in text
    assert f"arena head {r.peak:,} bytes" in text and "float32" not in text and "items" not in text
    assert r.profile.peak_layer == "" and "<- largest layer" in text and "<- peak" not in text
    # Other memory models keep items and float32 byte budgets.
    assert moofa.search("1.3MB", space="moofa", generations=2).budget == 325_000


def test_balanced_dataset_bins_by_tflm_head(tmp_path):
    import json

    from moofa.dataset import bin_edges, build_dataset

    edges = bin_edges("moofa-e1-2", 3, "80KiB", "300KiB", memory_model="tflm")
    assert edges[0] == 80 * 1024 and edges[-1] == 300 * 1024  # byte strings are int8 bytes under tflm
    out = tmp_path / "set.jsonl"
    build_dataset(
        "moofa-e1-2",
        lambda config: float(config["image_size"]),
        out,
        n_per_bin=2,
        bins=3,
        low="80KiB",
        high="300KiB",
        memory_model="tflm",
        progress=False,
    )
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["bin"] for r in recs) == [0, 0, 1, 1, 2, 2]
    for r in recs:
        head = tflm.head(moofa.Subnet.from_dict(r), "moofa-e1-2")
        assert edges[r["bin"]] <= head <= edges[r["bin"] + 1]
