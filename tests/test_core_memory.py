"""moofa._core directly: the binding layer's own checks and behaviour."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import moofa
from moofa import _core
from moofa.memory import spec


def test_spec_validation_in_cpp():
    with pytest.raises(ValueError, match="stage stride must be 1 or 2"):
        _core.SpaceSpec(
            stages=[_core.StageSpec(8, 3, False, 2)],
            kernels=[3],
            expands=[2],
            depths=[2],
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
    with pytest.raises(ValueError, match="memory_model"):
        _core.Evaluator(spec(moofa.get_space("ofa")), "nope")


def test_shape_checks():
    ev = moofa.evaluator("ofa")
    assert ev.n_columns == 46
    with pytest.raises(ValueError, match=r"shape \(n, 46\)"):
        ev.peaks(np.zeros((3, 45), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(n, 46\)"):
        ev.peaks(np.zeros(46, np.uint8))
    assert ev.first_invalid(np.zeros((2, 46), np.uint8)) is None
    bad = np.zeros((2, 46), np.uint8)
    bad[1, 3] = 9
    assert ev.first_invalid(bad) == (1, 3)


def test_threads_give_identical_results_and_release_gil():
    ev = moofa.evaluator("moofa")
    rows = moofa.random_subnets(50_000, "moofa", seed=7)
    ref = ev.peaks(rows, threads=1)
    for t in (2, 3, 8):
        np.testing.assert_array_equal(ev.peaks(rows, threads=t), ref)
    # concurrent callers on one evaluator (it is shared through the cache)
    results = [None] * 4

    def work(i):
        results[i] = ev.peaks(rows, threads=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in results:
        np.testing.assert_array_equal(r, ref)


def test_profiles_without_hist():
    ev = moofa.evaluator("moofa")
    rows = moofa.random_subnets(100, "moofa", seed=2)
    with_h = ev.profiles(rows, threads=1, with_hist=True)
    without = ev.profiles(rows, threads=2, with_hist=False)
    assert "hist" not in without
    # without the histogram, avg and std come from integer moments: same values to rounding
    for key in ("peak", "params", "n_layers"):
        np.testing.assert_array_equal(with_h[key], without[key])
    for key in ("avg", "std", "mflops"):
        np.testing.assert_allclose(with_h[key], without[key], rtol=1e-12)


def test_make_divisible_matches_python():
    from moofa.spaces import make_divisible

    for v in np.linspace(0.1, 1000, 997):
        assert _core.make_divisible(float(v)) == make_divisible(float(v))


@pytest.mark.parametrize("threads", [2**31, 10**19, -1, 1025, 1.5, True, "4"])
def test_threads_outside_the_allowed_range_are_refused(threads):
    rows = moofa.random_subnets(3, "moofa", seed=0)
    for fn in (moofa.peak_memory, moofa.profiles):
        with pytest.raises(ValueError, match=r"threads must be an integer in 0\.\.1024 \(0: all cores\)"):
            fn(rows, "moofa", threads=threads)


def test_threads_at_the_limits_give_the_same_peaks():
    rows = moofa.random_subnets(10_000, "moofa", seed=0)
    ref = moofa.peak_memory(rows, "moofa", threads=1)
    for threads in (0, np.int64(3), 1024):
        np.testing.assert_array_equal(moofa.peak_memory(rows, "moofa", threads=threads), ref)


@pytest.mark.parametrize(
    ("space", "model"), [("moofa", "full"), ("ofa", "activations"), ("compofa", "full"), ("moofa-e1-2", "tflm")]
)
def test_config_peak_of_plain_dicts_equals_encoded_rows(space, model):
    """Evaluator.config_peak reads an OFA-style dict in C++; the row path is the reference."""
    sp = moofa.get_space(space)
    ev = moofa.evaluator(space, model)
    rows = moofa.random_subnets(200, space, seed=11)
    rng = np.random.default_rng(3)
    for net, want in zip(moofa.decode(rows, space), ev.peaks(rows, 1)):
        d = net.to_dict()
        first = 0
        for stage, depth in zip(sp.stages, d["d"]):
            for j in range(depth, stage.max_depth):  # idle slots as the tools write them
                junk = [0, None, sp.kernels[-1]][int(rng.integers(3))]
                d["ks"][first + j], d["e"][first + j] = junk, junk if junk != sp.kernels[-1] else 0
            first += stage.max_depth
        if sp.expand_by_depth:  # the finders draw e on their own: not read in coupled spaces
            d["e"] = [float(x) for x in rng.choice(sp.expands, sp.n_slots)]
        if rng.random() < 0.5:
            d = {"ks": tuple(d["ks"]), "e": d["e"], "d": d["d"], "r": [d["image_size"]], "wid": None}
        assert ev.config_peak(d) == int(want)


def test_config_peak_leaves_other_forms_to_the_general_path():
    ev = moofa.evaluator("moofa")
    good = {"ks": [7] * 20, "e": [4] * 20, "d": [4] * 5, "image_size": 224}
    want = int(ev.peaks(moofa.encode([good], "moofa"), 1)[0])
    assert ev.config_peak(good) == want
    assert ev.config_peak({**good, "e": [4.0] * 20}) == want
    for bad in (
        {**good, "ks": [5] * 19},  # wrong length
        {**good, "ks": [6] * 20},  # not a kernel
        {**good, "d": [4, 4, 4, 4, True]},  # bools are not depths
        {**good, "image_size": np.int64(224)},  # numpy scalars: the general path reads them
        {**good, "ks": np.array([7] * 20)},
        {k: v for k, v in good.items() if k != "d"},
        {**good, "image_size": 2**70},
        {**good, "ks": [7] * 19 + [None]},  # an active slot with no kernel
        moofa.Subnet.from_dict(good),
        [good],
    ):
        assert ev.config_peak(bad) is None
