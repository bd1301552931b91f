"""C++ evaluator vs the independent Python oracle on random user-defined spaces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
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
