"""C++ evaluator vs the independent Python oracle on random user-defined spaces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oracle import evaluate

import moofa


@st.composite
def user_spaces(draw):
    n_stages = draw(st.integers(1, 6))
    max_depth = draw(st.integers(1, 5))
    depths = sorted(draw(st.sets(st.integers(1, max_depth), min_size=1, max_size=max_depth)))
    stages = tuple(
        moofa.Stage(
            width=draw(st.integers(1, 64)) * draw(st.sampled_from([1, 8])),
            stride=draw(st.sampled_from([1, 2])),
            act=draw(st.sampled_from(["relu", "h_swish"])),
            se=draw(st.booleans()),
            max_depth=max_depth,
        )
        for _ in range(n_stages)
    )
    expands = sorted(draw(st.sets(st.sampled_from([1, 1.5, 2, 2.5, 3, 4, 6]), min_size=1, max_size=4)))
    coupled = draw(st.booleans())
    return moofa.Space(
        name="user",
        stages=stages,
        kernels=sorted(draw(st.sets(st.sampled_from([1, 3, 5, 7, 9]), min_size=1, max_size=3))),
        expands=expands,
        depths=depths,
        resolutions=sorted(draw(st.sets(st.integers(8, 256), min_size=1, max_size=4))),
        first_conv_width=draw(st.integers(1, 40)),
        first_conv_stride=draw(st.sampled_from([1, 2])),
        first_block_width=draw(st.integers(1, 40)),
        final_expand_width=draw(st.integers(1, 1200)),
        feature_mix_width=draw(st.sampled_from([0, 100, 1280])),
        n_classes=draw(st.integers(1, 1000)),
        expand_by_depth={d: draw(st.sampled_from(expands)) for d in depths} if coupled else None,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=user_spaces(), seed=st.integers(0, 2**32 - 1), model=st.sampled_from(["full", "activations"]))
def test_cpp_matches_oracle_on_user_spaces(space, seed, model):
    rows = moofa.random_subnets(20, space, seed=seed)
    nets = moofa.decode(rows, space)
    batch = moofa.profiles(rows, space, memory_model=model, with_hist=True)
    peaks = moofa.peak_memory(rows, space, memory_model=model)
    for i, net in enumerate(nets):
        ref = evaluate(space, net.ks, net.e, net.d, net.image_size, activations_only=model == "activations")
        n = batch["n_layers"][i]
        assert batch["hist"][i, :n].tolist() == ref["hist"]
        assert peaks[i] == ref["peak"] == batch["peak"][i]
        assert batch["params"][i] == ref["params"]
        assert batch["mflops"][i] == pytest.approx(ref["mflops"], rel=1e-9)
        assert batch["avg"][i] == pytest.approx(ref["avg"], rel=1e-9)
        assert batch["std"][i] == pytest.approx(ref["std"], rel=1e-6, abs=1e-6)
        p = moofa.profile(net, space, memory_model=model)
        assert p.hist == ref["hist"] and p.params == ref["params"]


@settings(max_examples=30, deadline=None)
@given(space=user_spaces())
def test_min_peak_is_a_true_minimum(space):
    best, net = moofa.min_peak(space)
    # the returned subnet reaches it ...
    assert moofa.profile(net, space).peak == best
    # ... and no random subnet goes below it
    rows = moofa.random_subnets(2000, space, seed=1)
    assert moofa.peak_memory(rows, space).min() >= best


def test_min_peak_exhaustive_small_space():
    space = moofa.Space(
        name="tiny",
        stages=(moofa.Stage(16, 2, max_depth=2), moofa.Stage(24, 2, se=True, max_depth=2)),
        kernels=(3, 5),
        expands=(1, 2, 4),
        depths=(1, 2),
        resolutions=(32, 48),
        first_conv_width=8,
        first_block_width=8,
        final_expand_width=64,
        feature_mix_width=0,
        n_classes=10,
    )
    # enumerate every subnet with the oracle
    import itertools

    best = None
    for res in space.resolutions:
        for d in itertools.product(space.depths, repeat=2):
            for ks in itertools.product(space.kernels, repeat=4):
                for e in itertools.product(space.expands, repeat=4):
                    peak = evaluate(space, ks, e, d, res)["peak"]
                    best = peak if best is None else min(best, peak)
    assert moofa.min_peak(space)[0] == best


def test_activations_model_drops_weights():
    net = moofa.Subnet(ks=[7] * 20, e=[4] * 20, d=[4] * 5, image_size=224)
    full = moofa.profile(net, "moofa")
    act = moofa.profile(net, "moofa", memory_model="mcu")
    assert act.memory_model == "activations"
    assert all(a < f for a, f in zip(act.hist, full.hist))
    assert act.mflops == full.mflops and act.params == full.params


def test_bytes_per_item_scales():
    net = moofa.Subnet(ks=[3] * 20, e=[2] * 20, d=[2] * 5, image_size=128)
    p = moofa.profile(net, "moofa")
    pb = moofa.profile(net, "moofa", bytes_per_item=4)
    assert pb.peak == 4 * p.peak and pb.hist == [4 * h for h in p.hist] and pb.unit == "bytes"
    assert moofa.peak_memory([net], "moofa", bytes_per_item=1)[0] == p.peak
    np.testing.assert_array_equal(moofa.peak_memory([net], "moofa", bytes_per_item=2), [2 * p.peak])


INT64_MAX = 2**63 - 1
INT32 = st.integers(1, 2**31 - 1)


@st.composite
def large_spaces(draw):
    """Spaces with fields up to int32 size: every figure either fits int64 or must be refused."""
    max_depth = draw(st.integers(1, 3))
    # the deepest choice is allowed, so the largest subnet uses every slot
    depths = sorted({max_depth, *draw(st.sets(st.integers(1, max_depth), max_size=max_depth))})
    stages = tuple(
        moofa.Stage(
            width=draw(INT32), stride=draw(st.sampled_from([1, 2])), se=draw(st.booleans()), max_depth=max_depth
        )
        for _ in range(draw(st.integers(1, 3)))
    )
    expands = sorted(draw(st.sets(st.sampled_from([1, 1.5, 2, 3, 4, 6, 1000.5]), min_size=1, max_size=3)))
    return moofa.Space(
        name="large",
        stages=stages,
        kernels=sorted(draw(st.sets(st.integers(0, 2**30 - 1).map(lambda k: 2 * k + 1), min_size=1, max_size=2))),
        expands=expands,
        depths=depths,
        resolutions=sorted(draw(st.sets(INT32, min_size=1, max_size=2))),
        first_conv_width=draw(INT32),
        first_conv_stride=draw(st.sampled_from([1, 2])),
        first_block_width=draw(INT32),
        final_expand_width=draw(INT32),
        feature_mix_width=draw(st.sampled_from([0, 2**31 - 1])) or draw(st.integers(0, 2**31 - 1)),
        n_classes=draw(INT32),
        expand_by_depth={d: draw(st.sampled_from(expands)) for d in depths} if draw(st.booleans()) else None,
    )


def _largest_figures_overflow(space, model) -> bool:
    """Does the largest subnet (every choice at its maximum) have a figure beyond int64?"""
    d = [max(space.depths)] * space.n_stages
    e = [max(space.expands)] * space.n_slots
    ref = evaluate(space, [max(space.kernels)] * space.n_slots, e, d, max(space.resolutions), activations_only=model)
    return max(ref["hist"]) > INT64_MAX or ref["params"] > INT64_MAX or round(ref["mflops"] * 1e6) > INT64_MAX


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=large_spaces(), seed=st.integers(0, 2**32 - 1), model=st.sampled_from(["full", "activations"]))
def test_large_spaces_give_exact_figures_or_an_overflow_error(space, seed, model):
    rows = moofa.random_subnets(4, space, seed=seed)
    nets = moofa.decode(rows, space)
    activations = model == "activations"
    try:
        batch = moofa.profiles(rows, space, memory_model=model, with_hist=True)
        summary = moofa.profiles(rows, space, memory_model=model)
        peaks = moofa.peak_memory(rows, space, memory_model=model)
    except OverflowError as exc:
        event("refused")
        assert "does not fit int64" in str(exc)
        if not space.expand_by_depth:  # figures grow with every choice: the largest subnet overflows
            assert _largest_figures_overflow(space, activations)
        return
    event("evaluated")
    for i, net in enumerate(nets):
        ref = evaluate(space, net.ks, net.e, net.d, net.image_size, activations_only=activations)
        n = batch["n_layers"][i]
        assert batch["hist"][i, :n].tolist() == ref["hist"]
        assert peaks[i] == ref["peak"] == batch["peak"][i] == summary["peak"][i]
        assert batch["params"][i] == ref["params"] == summary["params"][i]
        assert batch["mflops"][i] == summary["mflops"][i] == pytest.approx(ref["mflops"], rel=1e-12)
        for out in (batch, summary):
            assert out["avg"][i] == pytest.approx(ref["avg"], rel=1e-12)
            assert out["std"][i] == pytest.approx(ref["std"], rel=1e-9, abs=1e-9)
    p = moofa.profile(nets[0], space, memory_model=model)
    ref = evaluate(space, nets[0].ks, nets[0].e, nets[0].d, nets[0].image_size, activations_only=activations)
    assert (p.peak, p.hist, p.params) == (ref["peak"], ref["hist"], ref["params"])
    assert p.std == pytest.approx(ref["std"], rel=1e-9, abs=1e-9)


def test_std_of_large_layers_is_exact_in_batches():
    # dozens of layers of ~1e9 items: their squares summed overflow int64
    space = moofa.Space(
        name="wide",
        stages=(moofa.Stage(4000, 1, max_depth=20),),
        kernels=(3,),
        expands=(1, 6),
        depths=(10, 20),
        resolutions=(640,),
        first_conv_width=8,
        first_block_width=8,
        final_expand_width=64,
        feature_mix_width=0,
        n_classes=10,
    )
    rows = moofa.random_subnets(50, space, seed=0)
    out = moofa.profiles(rows, space)
    for i, net in enumerate(moofa.decode(rows, space)):
        ref = evaluate(space, net.ks, net.e, net.d, net.image_size)
        assert sum(h * h for h in ref["hist"]) > 2**63 and ref["std"] > 1e8
        assert out["std"][i] == pytest.approx(ref["std"], rel=1e-12)
        assert moofa.profile(net, space).std == pytest.approx(ref["std"], rel=1e-12)


@pytest.mark.parametrize("v", [0.0, 1.0, 7.9, 12.0, 99.5, 2.4e9, 1e15, 2**53 + 0.0, 4e18])
@pytest.mark.parametrize("divisor", [1, 8, 16])
def test_make_divisible_matches_python_ints(v, divisor):
    from oracle import make_divisible

    assert moofa._core.make_divisible(v, divisor) == make_divisible(v, divisor)


@pytest.mark.parametrize("v", [1e19, 2.0**63, float("inf"), 1e300])
def test_make_divisible_refuses_what_int64_cannot_hold(v):
    with pytest.raises(OverflowError, match="does not fit int64"):
        moofa._core.make_divisible(v)


def test_make_divisible_refuses_nan_and_bad_divisors():
    with pytest.raises(ValueError, match="NaN"):
        moofa._core.make_divisible(float("nan"))
    with pytest.raises(ValueError, match="divisor"):
        moofa._core.make_divisible(10.0, 0)


def _core_spec(**fields):
    core = moofa._core
    base = dict(
        stages=[core.StageSpec(width=16, stride=2, se=False, max_depth=2)],
        kernels=[3],
        expands=[2.0],
        depths=[1, 2],
        resolutions=[32],
        in_channels=3,
        first_conv_width=8,
        first_conv_kernel=3,
        first_conv_stride=2,
        first_block_width=8,
        final_expand_width=16,
        feature_mix_width=0,
        n_classes=10,
        expand_by_depth=[],
    )
    base.update(fields)
    return core.SpaceSpec(**base)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -float("inf"), 0.5])
def test_core_refuses_bad_expands(bad):
    with pytest.raises(ValueError, match="expands must be finite and >= 1"):
        _core_spec(expands=[2.0, bad])


def test_core_refuses_gigabyte_tables_with_their_size():
    core = moofa._core
    with pytest.raises(ValueError, match=r"memory tables would need .* GiB"):
        _core_spec(
            stages=[core.StageSpec(width=16, stride=1, se=False, max_depth=16)] * 8,
            kernels=list(range(1, 500, 2)),
            expands=[1.0 + i / 100 for i in range(250)],
            resolutions=list(range(1, 251)),
        )
