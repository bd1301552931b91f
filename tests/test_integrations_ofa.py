"""moofa.integrations.ofa: the adapters behind OFA's EvolutionFinder call pattern.

The ``ofa`` package does not import without torchvision, so the tests drive the adapters with
the Python port of its finder (``search_helpers.OFAEvolutionFinder``), making the calls OFA's
makes: ``arch_manager = accuracy_predictor.arch_encoder``, ``random_sample_arch`` /
``mutate_resolution`` / ``mutate_arch`` on deep copies, per-key crossover of two parents,
``efficiency_predictor.get_efficiency(sample)`` on every candidate until it fits, and
``accuracy_predictor.predict_acc(population)[i].item()``."""

from __future__ import annotations

import copy
import random

import integrations_oracle as ref
import numpy as np
import pytest
import search_helpers as helpers

import moofa
from moofa.integrations.ofa import AccuracyPredictor, EfficiencyPredictor


def ofa_finder(efficiency: EfficiencyPredictor, accuracy: AccuracyPredictor, space: str):
    """The Python port of OFA's EvolutionFinder (search_helpers) wired as OFA wires its own:
    the accuracy predictor's ``arch_encoder`` draws and mutates, ``get_efficiency`` checks
    every candidate, and ``predict_acc(population)[i].item()`` scores (population 40, 15
    generations)."""

    def accuracy_of(pool):
        out = accuracy.predict_acc(pool)
        return [out[i].item() for i in range(len(pool))]

    return helpers.OFAEvolutionFinder(
        space,
        efficiency.get_efficiency,
        accuracy_of,
        population_size=40,
        max_time_budget=15,
        arch_manager=accuracy.arch_encoder,
    )


class OFAStyleArchEncoder:
    """Draws as OFA's encoder does: every slot gets a kernel and an expand of its own, drawn
    independently of depth (so CompOFA's coupling is not respected)."""

    def __init__(self, space, seed=0):
        self.sp, self.rng = moofa.get_space(space), random.Random(seed)

    def random_sample_arch(self):
        sp, rng = self.sp, self.rng
        return {
            "ks": [rng.choice(sp.kernels) for _ in range(sp.n_slots)],
            "e": [rng.choice([int(e) if e.is_integer() else e for e in sp.expands]) for _ in range(sp.n_slots)],
            "d": [rng.choice(sp.depths) for _ in range(sp.n_stages)],
            "image_size": rng.choice(sp.resolutions),
        }

    def mutate_resolution(self, arch, prob):
        if self.rng.random() < prob:
            arch["image_size"] = self.rng.choice(self.sp.resolutions)

    def mutate_arch(self, arch, prob):
        fresh = self.random_sample_arch()
        for key in ("ks", "e", "d"):
            arch[key] = [f if self.rng.random() < prob else v for v, f in zip(arch[key], fresh[key])]


@pytest.mark.parametrize(("space", "budget"), [("moofa", 400_000), ("compofa", 325_000), ("ofa", 325_000)])
def test_evolution_finder_call_pattern(space, budget):
    efficiency = EfficiencyPredictor(space)
    accuracy = AccuracyPredictor(space, seed=0)
    _, (acc, arch, peak) = ofa_finder(efficiency, accuracy, space).run_evolution_search(budget)
    net = moofa.Subnet.from_dict(arch, space).coupled(space)
    assert peak == moofa.peak_memory([net], space)[0] == ref.peak(net, space) <= budget
    assert acc == pytest.approx(ref.top1([net], space)[0], abs=1e-3)


def test_compofa_with_ofa_style_uncoupled_e():
    # OFA's encoder draws e per slot: the adapters read CompOFA's e from d (documented rule).
    efficiency, accuracy = EfficiencyPredictor("compofa"), AccuracyPredictor("compofa")
    accuracy.arch_encoder = OFAStyleArchEncoder("compofa", seed=1)
    _, (acc, arch, peak) = ofa_finder(efficiency, accuracy, "compofa").run_evolution_search(400_000)
    coupled = moofa.Subnet.from_dict(arch, "compofa").coupled("compofa")
    assert peak == ref.peak(coupled, "compofa") <= 400_000
    assert acc == pytest.approx(ref.top1([coupled], "compofa")[0], abs=1e-3)
    rule = efficiency.get_active_subnet_config(arch)
    sp = moofa.get_space("compofa")
    first = 0
    for stage, dd in zip(sp.stages, arch["d"]):
        assert set(rule["e"][first : first + dd]) == {sp.expand_by_depth[dd]}
        first += stage.max_depth


@pytest.mark.parametrize("space", ["moofa", "ofa", "moofa-e1-2"])
def test_dicts_as_published_tools_write_them(space):
    sp = moofa.get_space(space)
    efficiency = EfficiencyPredictor(space)
    rng = random.Random(2)
    for _ in range(60):
        net = moofa.decode(moofa.random_subnets(1, space, seed=rng.randrange(2**32)), space)[0]
        d = net.to_dict()
        zero, none = copy.deepcopy(d), copy.deepcopy(d)
        first = 0
        for stage, dd in zip(sp.stages, d["d"]):
            for j in range(dd, stage.max_depth):
                zero["ks"][first + j] = zero["e"][first + j] = 0  # the MOOFA fork's idle slots
                none["ks"][first + j] = none["e"][first + j] = None
            first += stage.max_depth
        old = {"ks": d["ks"], "e": d["e"], "d": d["d"], "r": [d["image_size"]], "wid": None}  # OFA's tutorial keys
        want = ref.peak(net, space)
        assert efficiency.get_efficiency(d) == efficiency.get_efficiency(zero) == want
        assert efficiency.get_efficiency(none) == efficiency.predict_efficiency(old) == want
    np.testing.assert_array_equal(efficiency.get_efficiencies([d, zero]), [want, want])


def test_metrics_and_memory_models():
    net = moofa.decode(moofa.random_subnets(1, "moofa", seed=5), "moofa")[0]
    d = net.to_dict()
    p = moofa.profile(net, "moofa")
    assert EfficiencyPredictor("moofa", "mcu").get_efficiency(d) == ref.peak(net, "moofa", "activations")
    assert EfficiencyPredictor("moofa", bytes_per_item=4).get_efficiency(d) == 4 * ref.peak(net, "moofa")
    assert EfficiencyPredictor("moofa", metric="mflops").get_efficiency(d) == pytest.approx(p.mflops)
    assert EfficiencyPredictor("moofa", metric="params").get_efficiency(d) == p.params
    frac = AccuracyPredictor("moofa", as_fraction=True).predict_accuracy([d])
    assert frac[0] == pytest.approx(ref.top1([net], "moofa")[0] / 100, abs=1e-5)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"ks": [0] + [7] * 19}, r"ks\[0\]"),
        ({"e": [5] * 20}, r"e\[0\]"),
        ({"d": [9, 2, 2, 2, 2]}, r"d\[0\]"),
        ({"image_size": 100}, "image_size"),
        ({"ks": [7] * 3}, "ks"),
    ],
)
def test_bad_dicts_name_the_field(change, match):
    d = {"ks": [7] * 20, "e": [4] * 20, "d": [2] * 5, "image_size": 224, **change}
    with pytest.raises((ValueError, TypeError), match=match):
        EfficiencyPredictor("moofa").get_efficiency(d)


def test_bad_metric():
    with pytest.raises(ValueError, match="metric"):
        EfficiencyPredictor("moofa", metric="latency")
