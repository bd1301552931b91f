"""moofa's evaluator and predictors behind the interface OFA's search tools call.

OFA's ``EvolutionFinder`` (and the MOOFA fork of it) asks an *efficiency predictor* for
``get_efficiency(arch_dict)`` (older tutorials: ``predict_efficiency``) of one config at a
time and compares it with the constraint, and an *accuracy predictor* for
``predict_acc(list_of_dicts)`` (older: ``predict_accuracy``) of a population; the newer
finder draws and mutates configs through ``accuracy_predictor.arch_encoder``
(``random_sample_arch``, ``mutate_resolution``, ``mutate_arch``)::

    from moofa.integrations.ofa import AccuracyPredictor, EfficiencyPredictor
    efficiency = EfficiencyPredictor("moofa")            # peak memory, items
    accuracy = AccuracyPredictor("moofa")                # the shipped predictor, top-1 %
    finder = EvolutionFinder(efficiency_predictor=efficiency, accuracy_predictor=accuracy)
    best_acc, best_arch, best_peak = finder.run_evolution_search(constraint=325_000)[...]

Configs are accepted as those tools write them: keys ``ks``, ``e``, ``d`` and
``image_size`` (or ``r: [size]``; other keys such as ``wid`` are ignored), with any value,
``0`` or ``None`` in the slots beyond a stage's depth. For a space that couples expand to
depth (CompOFA) the ``e`` of a config is not read: every slot takes the expand its stage's
depth implies (CompOFA's rule, d=2,3,4 -> e=3,4,6; ``moofa.Subnet.coupled``), because the
finders draw ``e`` independently of ``d``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence

import numpy as np

from ..memory import _model_name, _scale
from ..spaces import Space
from ..subnet import Subnet, _nice
from ._context import Context

__all__ = ["AccuracyPredictor", "ArchEncoder", "EfficiencyPredictor"]

_METRICS = ("peak", "mflops", "params")


class EfficiencyPredictor:
    """``get_efficiency(arch_dict)``: the config's peak memory under ``memory_model``
    (items; bytes with ``bytes_per_item``, or under ``"tflm"``), or its ``"mflops"`` /
    ``"params"`` with ``metric=``. Thread-safe; the evaluation is moofa's C++ evaluator."""

    def __init__(
        self,
        space: str | Space = "moofa",
        memory_model: str = "full",
        *,
        metric: str = "peak",
        bytes_per_item: float | None = None,
    ):
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}")
        self.metric = metric
        self.memory_model = _model_name(memory_model)
        self.context = Context(space, memory_model=self.memory_model, threads=1, need_predictor=False)
        self._evaluator = self.context.evaluator
        self._scale = 1 if bytes_per_item is None else _scale(bytes_per_item)

    @property
    def space(self) -> Space:
        return self.context.space

    def row(self, arch_dict) -> np.ndarray:
        """The config's encoded row (``moofa.encode`` layout), coupling applied."""
        return self.context.config_row(arch_dict)

    def get_efficiency(self, arch_dict: Mapping) -> float:
        if self.metric == "peak" and self._scale == 1:
            # One C++ call for a plain dict (the finders ask one config at a time); None:
            # another form, or a value that is not a choice, for the path that names it.
            peak = self._evaluator.config_peak(arch_dict)
            if peak is not None:
                return peak
        row = self.context.config_row(arch_dict)[None, :]
        if self.metric == "peak":
            v = int(self._evaluator.peaks(row, threads=1)[0]) * self._scale
            return int(v) if float(v).is_integer() else v
        prof = self._evaluator.profiles(row, threads=1, with_hist=False)
        return float(prof["mflops"][0]) if self.metric == "mflops" else int(prof["params"][0])

    predict_efficiency = get_efficiency  # OFA's tutorial finder calls it so

    def get_efficiencies(self, arch_dicts: Sequence[Mapping]) -> np.ndarray:
        """Many configs at once (one C++ call)."""
        rows = self.context.encode(list(arch_dicts))
        if self.metric == "peak":
            return self._evaluator.peaks(rows) * self._scale
        prof = self._evaluator.profiles(rows, with_hist=False)
        return prof[self.metric]

    def get_active_subnet_config(self, arch_dict: Mapping) -> dict:
        """The config with idle slots reset and coupling applied (a ``moofa.Subnet`` dict)."""
        return self.context.subnets(self.row(arch_dict)[None, :])[0].to_dict()

    def __repr__(self) -> str:
        return (
            f"EfficiencyPredictor(space={self.space.name!r}, memory_model={self.memory_model!r}, "
            f"metric={self.metric!r})"
        )


class ArchEncoder:
    """Draws and mutates OFA-style config dicts of a space (every slot holds a valid choice,
    as OFA's encoder writes them), for finders that take it from ``accuracy_predictor.arch_encoder``."""

    def __init__(self, space: str | Space = "moofa", seed: int | None = None):
        self.context = Context(space, need_predictor=False)
        self.rng = random.Random(seed)
        self._expands = _nice(self.context.space.expands)

    def random_sample_arch(self) -> dict:
        sp, rng = self.context.space, self.rng
        d = [rng.choice(sp.depths) for _ in range(sp.n_stages)]
        ks = [rng.choice(sp.kernels) for _ in range(sp.n_slots)]
        if sp.expand_by_depth:
            e = [_nice([sp.expand_by_depth[d[s]]])[0] for s in self.context.cols.slot_stage]
        else:
            e = [rng.choice(self._expands) for _ in range(sp.n_slots)]
        return {"ks": ks, "e": e, "d": d, "image_size": rng.choice(sp.resolutions)}

    def mutate_resolution(self, arch_dict: dict, mutate_prob: float) -> None:
        if self.rng.random() < mutate_prob:
            arch_dict["image_size"] = self.rng.choice(self.context.space.resolutions)
            arch_dict.pop("r", None)

    def mutate_arch(self, arch_dict: dict, mutate_prob: float) -> None:
        sp, rng = self.context.space, self.rng
        for j in range(sp.n_slots):
            if rng.random() < mutate_prob:
                arch_dict["ks"][j] = rng.choice(sp.kernels)
                arch_dict["e"][j] = rng.choice(self._expands)
        for s in range(sp.n_stages):
            if rng.random() < mutate_prob:
                arch_dict["d"][s] = rng.choice(sp.depths)
        if sp.expand_by_depth:
            fixed = Subnet.from_dict(arch_dict, sp).coupled(sp)
            arch_dict["e"] = list(fixed.e)

    def sample(self, n: int) -> list[dict]:
        return [copy.deepcopy(self.random_sample_arch()) for _ in range(n)]


class AccuracyPredictor:
    """``predict_acc(list_of_dicts)``: predicted top-1 of configs (percent, or a fraction of 1
    with ``as_fraction=True``, as OFA's predictors report it), a numpy array whose items
    answer ``.item()``. ``predictor``: as for ``moofa.search`` (None: the shipped one)."""

    def __init__(self, space: str | Space = "moofa", predictor=None, *, as_fraction: bool = False, seed=None):
        self.context = Context(space, predictor=predictor)
        self.as_fraction = bool(as_fraction)
        self.arch_encoder = ArchEncoder(self.context.space, seed)

    @property
    def space(self) -> Space:
        return self.context.space

    def predict_acc(self, arch_dicts: Sequence[Mapping]) -> np.ndarray:
        configs = [arch_dicts] if isinstance(arch_dicts, (Mapping, Subnet)) else list(arch_dicts)
        rows = self.context.encode(configs)
        top1 = np.asarray(self.context.evaluate(rows, ("top1",))["top1"], dtype=np.float64)
        return top1 / 100.0 if self.as_fraction else top1

    predict_accuracy = predict_acc  # OFA's tutorial finder calls it so

    def __repr__(self) -> str:
        return f"AccuracyPredictor(space={self.space.name!r}, as_fraction={self.as_fraction})"
