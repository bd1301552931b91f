"""Find the most accurate subnet that fits a peak-memory budget.

>>> import moofa
>>> r = moofa.search("325k")                     # shipped predictor of the 'moofa' space
>>> r.top1, r.peak, r.config

The loops run in C++ (``moofa._core.evolve`` / ``moofa._core.nsga2``): OFA's
evolutionary search with constraint-aware operators, every candidate checked against the
budget by the exact memory evaluator before the predictor scores it, no subnet scored
twice, deterministic for a seed whatever the thread count.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._ext import core
from ._progress import Progress
from .memory import Profile, _model_name, evaluator, min_peak, profile, spec
from .predictor import PredictionRangeWarning, Predictor, load_predictor, warn_outside_percent
from .spaces import Space, get_space
from .subnet import Subnet, decode, encode
from .units import format_items, parse_budget

__all__ = [
    "PREDICTOR_INPUTS",
    "SEARCH_OPTIONS",
    "ParetoFront",
    "SearchResult",
    "linear_scorer",
    "optimum",
    "pareto",
    "search",
    "sweep",
]

# The C++ options with their defaults and limits: the one place they are defined.
_EVOLUTION = core.EvolutionOptions()
_NSGA = core.ParetoOptions()
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1

# Keyword options of search() beyond its named arguments, with their defaults.
SEARCH_OPTIONS: dict[str, Any] = {
    "parent_ratio": _EVOLUTION.parent_ratio,  # share of the population kept as parents each generation
    "mutation_ratio": _EVOLUTION.mutation_ratio,  # share of the children bred by mutation (the rest: crossover)
    "mutate_prob": _EVOLUTION.mutate_prob,  # per block slot (kernel + expand) and per stage depth
    "resolution_mutate_prob": _EVOLUTION.resolution_mutate_prob,  # input resolution
    "resolution_niche": _EVOLUTION.resolution_niche,  # parents kept per input resolution first (0: plain OFA)
    # generations without a new best before the population is drawn afresh (0: never)
    "restart_patience": _EVOLUTION.restart_patience,
    # parents kept per structure (resolution + first two stage depths) first, for a share of the generations
    "depth_niche": _EVOLUTION.depth_niche,
    "depth_niche_share": _EVOLUTION.depth_niche_share,
    # stage changes of the final structure polish, and depth vectors it tunes per resolution (0: no polish)
    "polish_radius": _EVOLUTION.polish_radius,
    "polish_keep": _EVOLUTION.polish_keep,
    "max_mflops": None,  # optional constraint
    "max_params": None,  # optional constraint
    "min_uniformity": None,  # optional constraint: Profile.uniformity (avg / max layer) in [0, 1]
    # "full" (paper: inputs + outputs + weights), "activations" (MCU) or "tflm" (TFLM's arena
    # head of the int8 graph, in bytes)
    "memory_model": "full",
    # to read byte budgets such as "1.3MB": None is 4 (float32), or 1 under "tflm" (int8)
    "bytes_per_item": None,
    "threads": _EVOLUTION.threads,  # 0: auto (all cores from population 512, else 1); same results
    "max_tries": _EVOLUTION.max_tries,  # candidates drawn per child before it is given up
    "max_evaluations": None,  # stop the evolution after this many predictor evaluations
    "predictor_input": "rows",  # what a callable predictor receives, see PREDICTOR_INPUTS
    "max_latency_ms": None,  # optional constraint: latency by latency_table, in ms
    "latency_table": None,  # a moofa.latency.LatencyTable or the path of one (moofa.latency.build_table)
    # "evolution"; "exact" (moofa.optimum: linear or MLP predictors, "full" or
    # "activations"); "auto": exact where it applies, else evolution
    "method": "evolution",
    # branch-and-bound nodes after the evolution, from its best subnet (0: none); None: 1 per
    # 16 evaluations (population x generations / 16) for MLPs with two or more hidden layers
    # under "full"/"activations", else none. A dive that finishes proves the optimum.
    "dive_nodes": None,
    # independent evolutions that share population x generations, best kept; run on parallel
    # threads. None: 12 for MLPs with two or more hidden layers (the dive's rule), else 1.
    # Island 0 uses seed, the others seeds derived from it.
    "islands": None,
    # scores of a final steepest ascent over single-gene moves (resolution, a stage depth, a
    # slot's kernel/expand) from the best subnet, after the dive (0: none); None: population
    # x generations // 16 for MLPs with two or more hidden layers, else 0
    "climb_evaluations": None,
    # also find the best subnet without the peak limit, then a Pareto local search (score,
    # peak) from it and the budget's best down to the budget: the best subnets of some deep
    # predictors at small budgets are reached from the large ones (docs/search.md). None: on
    # wherever the dive runs (the unlimited best is then a dive without the peak limit, run
    # beside the budget's dive); True elsewhere runs a whole search without the peak limit
    "transfer": None,
    # islands that go on after a race early in the evolution (the best by then; see
    # docs/search.md); the others stop there. None: 2 with four islands or more, else all.
    "survivors": None,
}
SEARCH_METHODS = ("evolution", "exact", "auto")
# A callable predictor receives a batch as: "rows" a uint8 array from moofa.encode (fastest),
# "subnets" a list of moofa.Subnet, "dicts" a list of OFA-style config dicts.
PREDICTOR_INPUTS = ("rows", "subnets", "dicts")
# Keyword options of pareto() without budgets (NSGA-II), with their defaults.
_PARETO_OPTIONS: dict[str, Any] = {
    **{k: SEARCH_OPTIONS[k] for k in ("max_mflops", "max_params", "memory_model", "bytes_per_item")},
    "min_uniformity": SEARCH_OPTIONS["min_uniformity"],
    **{k: SEARCH_OPTIONS[k] for k in ("max_evaluations", "predictor_input")},
    "mutation_ratio": _NSGA.mutation_ratio,
    "mutate_prob": _NSGA.mutate_prob,
    "resolution_mutate_prob": _NSGA.resolution_mutate_prob,
    "threads": _NSGA.threads,
    "max_tries": _NSGA.max_tries,
    **{k: SEARCH_OPTIONS[k] for k in ("max_latency_ms", "latency_table")},
    # branch-and-bound dives from up to dive_knots points of a ("top1", "peak") front, each
    # under its point's peak, and one from the largest under max_peak, then climbed;
    # dive_nodes nodes each (None: search's default for deep MLPs)
    "dive_nodes": None,
    "dive_knots": 8,
}
_OBJECTIVES = ("top1", "peak", "mflops", "uniformity")


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The best subnet found under a budget, with everything needed to trust and deploy it.

    Memory figures are in items (numbers held in RAM; x4 for float32 bytes).
    ``top1`` is the predictor's score (predicted top-1 in percent for moofa's predictors).
    ``history[g]`` is the best score after generation ``g`` (``history[0]``: the initial
    population). ``evaluations`` counts predictor evaluations (all distinct subnets),
    ``candidates`` the subnets bred and checked against the constraints.
    """

    subnet: Subnet
    top1: float
    peak: int
    avg: float
    std: float
    mflops: float
    params: int
    profile: Profile
    history: np.ndarray
    evaluations: int
    candidates: int
    seconds: float
    budget: int
    space: str = "moofa"
    memory_model: str = "full"
    seed: int = 0
    generations: int = 0
    constraints: dict = field(default_factory=dict)
    latency_ms: float | None = None  # by the latency table, when the search was given one
    # True when no subnet meeting the constraints scores higher: moofa.optimum or the
    # search's dive finished its branch and bound (the evolution alone never proves it).
    proven_optimal: bool = False
    islands: int = 1  # independent evolutions (generations is the longest one's)
    survivors: int = 1  # islands that ran to the end (the others lost the race)
    dive_nodes: int = 0  # branch-and-bound nodes of the search's dive under the budget (0: none)
    climb_evaluations: int = 0  # scores of the final climb (0: none; counted in evaluations)
    # scores of the transfer: its search or climb without the peak limit and its polish (0:
    # none; counted in evaluations)
    transfer_evaluations: int = 0

    @property
    def config(self) -> dict:
        """The subnet as an OFA-style dict (``ks``, ``e``, ``d``, ``image_size``)."""
        return self.subnet.to_dict()

    @property
    def score(self) -> float:
        return self.top1

    def to_dict(self) -> dict:
        """JSON-ready summary (what ``moofa search --json`` prints)."""
        return {
            "space": self.space,
            "budget": self.budget,
            "memory_model": self.memory_model,
            "constraints": dict(self.constraints),
            **({} if self.latency_ms is None else {"latency_ms": self.latency_ms}),
            "config": self.config,
            "top1": self.top1,
            "peak": self.peak,
            "avg": self.avg,
            "std": self.std,
            "mflops": self.mflops,
            "params": self.params,
            "hist": list(self.profile.hist),
            "layers": list(self.profile.layers),
            "history": [float(v) for v in self.history],
            "evaluations": self.evaluations,
            "candidates": self.candidates,
            "generations": self.generations,
            "seconds": self.seconds,
            "seed": self.seed,
            "proven_optimal": self.proven_optimal,
            "islands": self.islands,
            "survivors": self.survivors,
            "dive_nodes": self.dive_nodes,
            "climb_evaluations": self.climb_evaluations,
            "transfer_evaluations": self.transfer_evaluations,
        }

    def __repr__(self) -> str:
        return (
            f"SearchResult(space={self.space!r}, budget={format_items(self.budget)}, "
            f"top1={self.top1:.2f}, peak={self.peak}, mflops={self.mflops:.0f}, "
            f"evaluations={self.evaluations}, seconds={self.seconds:.3f}, "
            f"proven_optimal={self.proven_optimal})"
        )


@dataclass(frozen=True, eq=False)
class ParetoFront:
    """Non-dominated subnets: no other found subnet is both more accurate and smaller
    (and, with the ``mflops`` objective, cheaper). Sorted by peak memory.

    ``method`` is ``"nsga2"`` (one multi-objective search) or ``"sweep"`` (one search per
    budget; ``results`` holds them, in budget order). ``interrupted`` is True when Ctrl-C
    ended the work early: what was finished is kept.
    """

    subnets: list
    top1: np.ndarray
    peak: np.ndarray
    mflops: np.ndarray
    rows: np.ndarray
    method: str
    space: str
    objectives: tuple = ("top1", "peak")
    evaluations: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    results: list = field(default_factory=list)
    # Profile.uniformity of each point (avg / max of its layer histogram).
    uniformity: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.subnets)

    def __iter__(self):
        return iter(self.to_dicts())

    def best_under(self, budget, bytes_per_item: float = 4) -> dict | None:
        """The most accurate point of the front whose peak fits ``budget`` (or None)."""
        items = parse_budget(budget, bytes_per_item)
        fits = np.flatnonzero(self.peak <= items)
        if fits.size == 0:
            return None
        return self.to_dicts()[int(fits[np.argmax(self.top1[fits])])]

    def to_dicts(self) -> list[dict]:
        return [
            {"config": net.to_dict(), "top1": float(t), "peak": int(p), "mflops": float(m)}
            for net, t, p, m in zip(self.subnets, self.top1, self.peak, self.mflops)
        ]

    def __repr__(self) -> str:
        return (
            f"ParetoFront(space={self.space!r}, method={self.method!r}, points={len(self)}, "
            f"evaluations={self.evaluations}, interrupted={self.interrupted})"
        )


# --- argument checks --------------------------------------------------------------------


def _check_options(options: dict, allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{where}() got unknown option(s) {unknown}; allowed: {sorted(allowed)}")


def _int(name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    v = int(value) if ok else 0
    if not ok or v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return v


def _real(value: Any) -> float | None:
    """value as a float when it is a real number (not a bool), else None."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def _ratio(name: str, value: Any, *, open_low: bool = False) -> float:
    v = _real(value)
    if v is None or not math.isfinite(v) or not (v > 0 if open_low else v >= 0) or v > 1:
        raise ValueError(f"{name} must be a number in {'(0' if open_low else '[0'}, 1], got {value!r}")
    return v


def _limit(name: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    v = _real(value)
    ok = v is not None and math.isfinite(v) and v > 0
    if ok and kind is int:
        ok = isinstance(value, numbers.Integral) or (v is not None and v.is_integer())
        ok = ok and int(value) <= _INT64_MAX
    if not ok:
        what = "an integer in [1, 2**63 - 1]" if kind is int else "a finite number > 0"
        raise ValueError(f"{name} must be {what} or None, got {value!r}")
    return kind(value)


def _min_uniformity(value: Any) -> float | None:
    if value is None:
        return None
    v = _real(value)
    if v is None or not 0 <= v <= 1:
        raise ValueError(f"min_uniformity must be a number in [0, 1] (avg / max layer memory) or None, got {value!r}")
    return v


def _latency_limit(opts: dict, sp: Space) -> tuple[float | None, Any]:
    """``max_latency_ms`` and the C++ table it limits (``latency_table``), or (None, None)."""
    limit, table = opts["max_latency_ms"], opts["latency_table"]
    if limit is None and table is None:
        return None, None
    if table is None:
        raise ValueError(
            "max_latency_ms needs latency_table= (a moofa.latency.LatencyTable or the path of one, "
            "from moofa.latency.build_table)"
        )
    if limit is None:
        raise ValueError("latency_table is given without max_latency_ms: pass the latency limit in ms")
    limit = _limit("max_latency_ms", limit, float)
    from .latency import resolve_table

    lat = resolve_table(table, sp)
    smallest = lat.min_ms()
    if limit < smallest:
        raise ValueError(
            f"max_latency_ms={limit:g} is below the smallest latency any subnet of space {sp.name!r} "
            f"reaches by the latency table: {smallest:.4g} ms; use a limit of at least that"
        )
    return limit, lat.cost


def _shared_options(o, opts: dict, population, generations, seed) -> dict:
    """The options evolve and NSGA-II share, checked against the C++ limits of ``o``."""
    max_evaluations = opts["max_evaluations"]
    return {
        "population": _int("population", population, o.MIN_POPULATION, o.MAX_POPULATION),
        "generations": _int("generations", generations, 0, o.MAX_GENERATIONS),
        "mutation_ratio": _ratio("mutation_ratio", opts["mutation_ratio"]),
        "mutate_prob": _ratio("mutate_prob", opts["mutate_prob"]),
        "resolution_mutate_prob": _ratio("resolution_mutate_prob", opts["resolution_mutate_prob"]),
        "seed": _seed(seed),
        "threads": _int("threads", opts["threads"], 0, o.MAX_THREADS),
        "max_tries": _int("max_tries", opts["max_tries"], 1, _INT32_MAX),
        "max_evaluations": 0 if max_evaluations is None else _int("max_evaluations", max_evaluations, 1, _INT64_MAX),
    }


def _seed(seed) -> int:
    return _int("seed", seed, 0, 2**64 - 1)


# --- predictors -------------------------------------------------------------------------


def _architecture(sp: Space) -> tuple:
    """What a predictor's encoding and meaning depend on (not the class count)."""
    return (
        sp.stages,
        sp.kernels,
        sp.expands,
        sp.depths,
        sp.resolutions,
        sp.first_conv_width,
        sp.first_block_width,
        sp.final_expand_width,
        sp.feature_mix_width,
        None if sp.expand_by_depth is None else tuple(sp.expand_by_depth.items()),
    )


def _check_predictor_space(predictor, sp: Space) -> None:
    declared = getattr(predictor, "space", None)
    if declared is None:
        return
    try:
        other = get_space(declared)
    except (TypeError, ValueError):
        return
    if _architecture(other) != _architecture(sp):
        raise ValueError(
            f"the predictor was made for space {other.name!r}, not for {sp.name!r}: "
            f"pass a predictor of space {sp.name!r}"
        )


def _resolve_predictor(predictor, sp: Space, predictor_input: str):
    """A ``_core.Scorer`` or a callable taking encoded rows, for the C++ search."""
    if predictor_input not in PREDICTOR_INPUTS:
        raise ValueError(f"predictor_input must be one of {list(PREDICTOR_INPUTS)}, got {predictor_input!r}")
    predictor = _loaded_predictor(predictor, sp)
    _check_predictor_space(predictor, sp)
    if isinstance(predictor, core.Scorer):
        return predictor
    scorer = getattr(predictor, "scorer", None)
    if isinstance(scorer, core.Scorer):
        return scorer
    fn = predictor if callable(predictor) else getattr(predictor, "predict", None)
    if not callable(fn):
        raise TypeError(
            "predictor must be None (the shipped one), a name or path for moofa.load_predictor, a moofa "
            "predictor, a moofa._core.Scorer, or a callable taking a batch of configs and returning one "
            f"score each; got {type(predictor).__name__}"
        )
    if predictor is not fn or predictor_input != "rows":
        # Objects with .predict (no C++ scorer) and callables that want configs get decoded batches.
        wants = "subnets" if predictor_input == "rows" else predictor_input
        if wants == "subnets":
            return lambda rows: fn(decode(rows, sp))
        return lambda rows: fn([net.to_dict() for net in decode(rows, sp)])
    return fn


def _top1_predictor_name(predictor, sp: Space) -> str | None:
    """The name of a predictor whose scores are top-1 %, or None for other scorers."""
    if predictor is None:
        return sp.name
    if isinstance(predictor, (str, Path)):
        return Path(predictor).stem if isinstance(predictor, Path) or os.sep in predictor else predictor
    if isinstance(predictor, Predictor):
        return predictor.name
    return None


def linear_scorer(weights, bias: float = 0.0, space: str | Space = "moofa"):
    """A C++ scorer for a linear model on the published one-hot encoding.

    ``weights`` has ``len(resolutions) + n_slots * (len(kernels) + len(expands))`` values:
    resolution one-hot, then a kernel one-hot per block slot, then an expand one-hot per
    slot (idle slots contribute nothing): the input layout of OFA's accuracy predictors.
    A ridge regression on measured subnets is a useful light predictor.
    """
    sp = get_space(space)
    w = np.asarray(weights, dtype=np.float64)
    n = core.LinearScorer.n_features(spec(sp))
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) for space {sp.name!r}, got {w.shape}")
    if not np.all(np.isfinite(w)) or not math.isfinite(bias):
        raise ValueError("weights and bias must be finite")
    return core.LinearScorer(spec(sp), w.astype(np.float32), float(bias))


# --- search ------------------------------------------------------------------------------


def _budget_items(budget, sp: Space, model: str, bytes_per_item) -> int:
    if bytes_per_item is None:
        bytes_per_item = 1 if model == "tflm" else 4
    if model == "tflm" and bytes_per_item != 1:
        raise ValueError(
            f"memory_model='tflm' counts bytes of the int8 graph: pass bytes_per_item=1, got {bytes_per_item!r}"
        )
    items = parse_budget(budget, bytes_per_item)  # refuses budgets of 2**63 items or more
    smallest, _ = min_peak(sp, memory_model=model)
    if items < smallest and model == "tflm":
        raise ValueError(
            f"budget {budget!r} ({items:,} bytes) is below the smallest TFLM arena head found for space "
            f"{sp.name!r}: {smallest:,} bytes; use a budget of at least {smallest}"
        )
    if items < smallest:
        raise ValueError(
            f"budget {budget!r} ({items:,} items) is below the smallest peak any subnet of space {sp.name!r} "
            f"can reach under memory model {model!r}: {smallest:,} items ({format_items(smallest)}, "
            f"{smallest * bytes_per_item / 1e3:,.1f} kB at {bytes_per_item:g} bytes per item); "
            f"use a budget of at least {smallest}"
        )
    return items


def search(
    budget,
    space: str | Space = "moofa",
    predictor=None,
    seed: int = _EVOLUTION.seed,
    population: int = _EVOLUTION.population,
    generations: int = _EVOLUTION.generations,
    **options,
) -> SearchResult:
    """The most accurate subnet of ``space`` whose peak memory fits ``budget``.

    ``budget``: items (``325000``), ``"325k"``, or bytes (``"1.3MB"``, read with
    ``bytes_per_item``). ``predictor``: None for the space's shipped predictor, a moofa
    predictor or ``_core.Scorer``, or any callable scoring a batch of configs (higher is
    better; see ``predictor_input``). Other options: see ``SEARCH_OPTIONS``.
    """
    start = time.perf_counter()
    _check_options(options, SEARCH_OPTIONS, "search")
    opts = {**SEARCH_OPTIONS, **options}
    method = opts.pop("method")
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {list(SEARCH_METHODS)}, got {method!r}")
    sp = get_space(space)
    model = _model_name(opts["memory_model"])
    loaded = _loaded_predictor(predictor, sp)  # once: a checkpoint path is read here only
    if method == "exact" or (
        method == "auto" and model != "tflm" and not _beyond_exact(options) and _shallow_exact(loaded)
    ):
        return optimum(
            budget,
            sp,
            loaded,
            seed=seed,
            population=population,
            generations=generations,
            **{k: v for k, v in options.items() if k != "method"},
        )
    items = _budget_items(budget, sp, model, opts["bytes_per_item"])
    constraints = {
        "max_peak": items,
        "max_mflops": _limit("max_mflops", opts["max_mflops"], float),
        "max_params": _limit("max_params", opts["max_params"], int),
        "min_uniformity": _min_uniformity(opts["min_uniformity"]),
    }
    constraints["max_latency_ms"], latency = _latency_limit(opts, sp)
    shared = _shared_options(_EVOLUTION, opts, population, generations, seed)
    scorer = _resolve_predictor(loaded, sp, opts["predictor_input"])
    percent_of = _top1_predictor_name(predictor, sp)
    dive, exact = _dive_setting(
        opts["dive_nodes"], loaded, model, options, shared["population"] * shared["generations"]
    )
    islands = _islands(opts["islands"], loaded, model, options)
    survivors = _survivors(opts["survivors"], islands)
    climb = _climb_setting(opts["climb_evaluations"], loaded, shared["population"] * shared["generations"])
    transfer = _transfer_setting(opts["transfer"], dive)
    raw = _evolve(
        islands,
        survivors,
        evaluator(sp, model),
        scorer,
        constraints,
        shared,
        parent_ratio=_ratio("parent_ratio", opts["parent_ratio"], open_low=True),
        resolution_niche=_int("resolution_niche", opts["resolution_niche"], 0, _INT32_MAX),
        latency=latency,
        restart_patience=_int("restart_patience", opts["restart_patience"], 0, _INT32_MAX),
        depth_niche=_int("depth_niche", opts["depth_niche"], 0, _INT32_MAX),
        depth_niche_share=_ratio("depth_niche_share", opts["depth_niche_share"]),
        polish_radius=_int("polish_radius", opts["polish_radius"], 0, _INT32_MAX),
        polish_keep=_int("polish_keep", opts["polish_keep"], 1, _INT32_MAX),
    )
    if raw["interrupted"]:
        raise KeyboardInterrupt
    net = decode(raw["best_row"][None, :], sp)[0]
    top1, history, proven, dived = float(raw["best_score"]), raw["history"], False, 0
    unlimited = None  # (subnet, score) of the dive without the peak limit
    if dive:
        assert exact is not None
        if transfer:
            (net, top1, proven, dived), unlimited = _dive_both(net, top1, dive, exact, scorer, sp, model, constraints)
            assert proven or unlimited is not None
        else:
            net, top1, proven, dived = _dive(net, top1, dive, exact, scorer, sp, model, constraints)
    climbed = 0
    if climb and not proven:
        net, top1, climbed = _climb(net, top1, climb, scorer, sp, model, constraints, latency)
    transferred = 0
    if transfer and not proven:
        if unlimited is None:  # no dive: a whole search without the peak limit
            with warnings.catch_warnings():  # its scores are checked once, below
                warnings.simplefilter("ignore", PredictionRangeWarning)
                found = search(
                    _INT64_MAX,
                    sp,
                    loaded,
                    seed=seed,
                    population=population,
                    generations=generations,
                    **{k: v for k, v in options.items() if k not in ("transfer", "bytes_per_item")},
                )
            free, free_top1, transferred = found.subnet, found.top1, found.evaluations
        else:
            free, free_top1 = unlimited
            if climb:
                no_peak = dict(constraints, max_peak=_INT64_MAX)
                free, free_top1, transferred = _climb(free, free_top1, climb, scorer, sp, model, no_peak, latency)
        polish = _after_evolution(shared["population"] * shared["generations"])
        net, top1, spent = _transfer(net, top1, free, free_top1, scorer, sp, model, constraints, latency, polish)
        transferred += spent
    if top1 > history[-1]:
        history = np.append(history, np.float32(top1))
    if percent_of is not None:
        warn_outside_percent(top1, percent_of, stacklevel=2)
    return _result(
        net,
        top1,
        sp,
        model,
        history=history,
        evaluations=int(raw["evaluations"]) + climbed + transferred,
        candidates=int(raw["candidates"]),
        seconds=time.perf_counter() - start,
        budget=items,
        seed=shared["seed"],
        generations=int(raw["generations_run"]),
        constraints={k: v for k, v in constraints.items() if v is not None},
        latency_ms=None if latency is None else float(latency.costs(encode([net], sp))[0]),
        proven_optimal=proven,
        islands=islands,
        survivors=survivors,
        dive_nodes=dived,
        climb_evaluations=climbed,
        transfer_evaluations=transferred,
    )


def _result(net: Subnet, top1: float, sp: Space, model: str, **fields) -> SearchResult:
    """A SearchResult whose memory and compute figures are the subnet's own profile."""
    prof = profile(net, sp, memory_model=model)
    return SearchResult(
        subnet=net,
        top1=top1,
        peak=int(prof.peak),
        avg=float(prof.avg),
        std=float(prof.std),
        mflops=float(prof.mflops),
        params=int(prof.params),
        profile=prof,
        space=sp.name,
        memory_model=model,
        **fields,
    )


def _deep(predictor) -> bool:
    """An MLP predictor with two or more hidden layers (the dive's and islands' auto rule)."""
    return isinstance(predictor, Predictor) and len(predictor.weights) >= 3


def _islands(value, predictor, model: str, options: dict) -> int:
    if value is not None:
        return _int("islands", value, 1, 1024)
    # Auto: the deep predictors' basins lie far apart and one evolution settles in one of
    # them; a race of independent evolutions with the same evaluations in all finds the
    # best more often (docs/search.md). The shallow predictors' landscapes want the full length.
    return 12 if _deep(predictor) and model != "tflm" and not _beyond_exact(options) else 1


def _survivors(value, islands: int) -> int:
    if value is not None:
        return _int("survivors", value, 1, islands)
    return islands if islands < 4 else 2


def _island_plan(islands: int, survivors: int, generations: int) -> tuple[int, int]:
    """(generations of an island that runs to the end, race generation; 0: no race).

    Without a race every island runs generations // islands. With one, every island runs
    race (1/25 of the generations, at most 1/(2 x islands) of them) and the survivors the
    rest of population x generations between them: islands x race + survivors x (length -
    race) <= generations."""
    if survivors >= islands:
        return max(1, generations // islands), 0
    race = max(1, min(generations // 25, generations // (2 * islands)))
    return max(race, race + (generations - islands * race) // survivors), race


def _island_seed(seed: int, i: int) -> int:
    """Island 0 keeps the seed (one island is the plain search); the others get seeds
    derived from it that no other seed's island 0 uses in practice."""
    if i == 0:
        return seed
    return int(np.random.SeedSequence([seed, i]).generate_state(2, np.uint32).view(np.uint64)[0])


def _evolve(islands: int, survivors: int, ev, scorer, constraints: dict, shared: dict, **options) -> dict:
    """core.evolve, or ``islands`` independent ones (threads) raced down to ``survivors``,
    best kept."""
    if islands == 1:
        return core.evolve(ev, scorer, **constraints, **shared, **options)
    length, race = _island_plan(islands, survivors, shared["generations"])
    per = dict(shared, generations=length)
    if shared["max_evaluations"]:
        per["max_evaluations"] = max(1, shared["max_evaluations"] * length // max(1, shared["generations"]))
    # Islands run on their own threads; the cores are shared between those that run at once.
    per["threads"] = shared["threads"] or max(1, (os.cpu_count() or 1) // survivors)
    seeds = [_island_seed(shared["seed"], i) for i in range(islands)]
    return core.evolve(
        ev, scorer, **constraints, **per, **options, island_seeds=seeds, survivors=survivors, race_generation=race
    )


def _loaded_predictor(predictor, sp: Space):
    """The predictor object (the shipped one for None, loaded for a name or path), loaded once."""
    if predictor is None:
        try:
            return load_predictor(sp.name)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(
                f"space {sp.name!r} has no shipped predictor ({exc}); pass predictor= (a moofa predictor, "
                "a moofa._core.Scorer, or a callable returning one score per config)"
            ) from None
    if isinstance(predictor, (str, Path)):
        return load_predictor(predictor)
    return predictor


# Default dive: one branch-and-bound node per this many evaluations of the evolution (and
# as many scores for the climb and for the transfer's polish).
_EVALUATIONS_PER_DIVE_NODE = 16


def _after_evolution(evaluations: int) -> int:
    """The default effort of each step after an evolution of ``evaluations``: the dive's
    nodes, the climb's scores, the transfer polish's cap."""
    return max(1, evaluations // _EVALUATIONS_PER_DIVE_NODE)


def _dive_setting(
    value,
    predictor,
    model: str,
    options: dict,
    evaluations: int = _EVOLUTION.population * _EVOLUTION.generations,
) -> tuple[int, tuple | None]:
    """(nodes per branch-and-bound dive, the model it bounds) for ``dive_nodes=value``;
    (0, None): no dive. The default is one node per 16 of the evolution's ``evaluations``."""
    if value is not None:
        nodes = _int("dive_nodes", value, 0, _INT64_MAX)
        exact = None if model == "tflm" or _beyond_exact(options) else _exact_model(predictor)
        if nodes and exact is None:
            raise ValueError(
                "dive_nodes: the branch-and-bound dive needs a linear or MLP predictor, the 'full' or "
                "'activations' memory model and no min_uniformity or latency limit; use dive_nodes=0"
            )
        return (nodes, exact) if nodes else (0, None)
    # Auto: deep MLPs only. Their optima sit in narrow basins that the evolution's local
    # moves miss (docs/search.md); linear and one-hidden-layer predictors reach their proven
    # optima without it.
    if model == "tflm" or _beyond_exact(options) or not _deep(predictor):
        return 0, None
    return _after_evolution(evaluations), _exact_model(predictor)


def _dive(net: Subnet, top1: float, nodes: int, exact: tuple, scorer, sp: Space, model: str, constraints: dict):
    """A branch and bound of at most ``nodes`` nodes from the evolution's best: (subnet,
    score, proven, nodes visited)."""
    raw = _branch_and_bound(exact, sp, model, net, constraints, max_nodes=nodes)
    return (*_adopt(raw, net, top1, scorer, sp), bool(raw["proven_optimal"]), int(raw["nodes"]))


def _flag(name: str, value: Any, auto: bool = False) -> None:
    """Checks a True/False option (``auto``: None is allowed too, and left to the caller)."""
    if not isinstance(value, bool) and not (auto and value is None):
        allowed = "True, False or None (auto)" if auto else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {value!r}")


def _transfer_setting(value, dive: int) -> bool:
    """Whether the search transfers from the unlimited best (``transfer=value``); None: where
    the dive runs (deep MLPs by default), whose unlimited twin then costs no more time."""
    _flag("transfer", value, auto=True)
    return dive > 0 if value is None else value


def _dive_both(net: Subnet, top1: float, nodes: int, exact: tuple, scorer, sp: Space, model: str, constraints: dict):
    """The budget's dive (as _dive) and the same dive without the peak limit, on another
    thread meanwhile: (the budget's dive result, (subnet, score) of the unlimited one, or
    None when the budget's dive proved its optimum and stopped it). The unlimited dive
    hardly depends on its start (its best-bound order does not), so it can start with the
    budget's."""
    no_peak = dict(constraints, max_peak=_INT64_MAX)
    stop = core.StopFlag()  # Ctrl-C reaches only the calling thread's dive
    box: dict[str, Any] = {}

    def unlimited() -> None:
        try:
            box["raw"] = _branch_and_bound(exact, sp, model, net, no_peak, max_nodes=nodes, stop=stop)
        except BaseException as exc:  # re-raised on the calling thread
            box["error"] = exc

    worker = threading.Thread(target=unlimited, name="moofa-unlimited-dive", daemon=True)
    thread: threading.Thread | None = None
    try:
        worker.start()
        thread = worker
    except RuntimeError:  # no thread to spare: one dive after the other
        box["raw"] = _branch_and_bound(exact, sp, model, net, no_peak, max_nodes=nodes)
    try:
        budget = _dive(net, top1, nodes, exact, scorer, sp, model, constraints)
        if budget[2]:  # proven: no transfer, so the unlimited dive's answer is not needed
            stop.set()
    except BaseException:
        stop.set()
        raise
    finally:
        if thread is not None:
            try:
                thread.join()
            except BaseException:  # Ctrl-C while waiting: stop it, then wait the few nodes
                stop.set()
                thread.join()
                raise
    if "error" in box:
        raise box["error"]
    if stop.is_set:
        return budget, None
    return budget, _adopt(box["raw"], net, top1, scorer, sp)


# The Pareto local search of transfer: at most this many rounds, from this many front points each
# (and no round after one score per 16 evaluations of the evolution, as the dive and the climb).
_TRANSFER_ROUNDS, _TRANSFER_POINTS = 20, 256


def _transfer(
    net: Subnet,
    top1: float,
    free: Subnet,
    free_top1: float,
    scorer,
    sp: Space,
    model: str,
    constraints,
    latency,
    max_scores: int,
):
    """A Pareto local search (score up, peak down: specialise's polish) from ``net`` and
    ``free``, the best subnet without a peak limit, until about ``max_scores`` scores; the
    best of its front under the budget when better: (subnet, score, scores spent)."""
    from moofa.specialise import _polish

    ev = evaluator(sp, model)
    rows = encode([net, free], sp)
    limits = {k: constraints[k] for k in ("max_mflops", "max_params", "min_uniformity") if constraints[k] is not None}
    if latency is not None:
        limits.update(latency=latency, max_latency_ms=constraints["max_latency_ms"])
    front_rows, front_top1, front_peak, spent = _polish(
        ev,
        scorer,
        sp,
        limits,
        rows,
        np.array([top1, free_top1], dtype=np.float32),
        ev.peaks(rows, threads=1).astype(np.int64),
        _TRANSFER_ROUNDS,
        _TRANSFER_POINTS,
        max_scores,
    )
    fits = np.flatnonzero(front_peak <= constraints["max_peak"])
    if len(fits):
        best = fits[np.argmax(front_top1[fits])]
        if float(front_top1[best]) > top1:
            return decode(front_rows[best][None, :], sp)[0], float(front_top1[best]), spent
    return net, top1, spent


def _climb_setting(value, predictor, evaluations: int) -> int:
    """Scores of the final climb for ``climb_evaluations=value`` (0: none). Auto: deep MLPs
    only, one score per 16 of the evolution's ``evaluations``: the dive can stop one gene
    short of a better subnet (docs/search.md); the shallow predictors' searches end at
    their optima without it."""
    if value is not None:
        return _int("climb_evaluations", value, 0, _INT64_MAX)
    return _after_evolution(evaluations) if _deep(predictor) else 0


def _climb(net: Subnet, top1: float, limit: int, scorer, sp: Space, model: str, constraints: dict, latency):
    """Steepest ascent from ``net`` (core.climb, at most ``limit`` scores): (subnet, score,
    scores spent)."""
    raw = core.climb(
        evaluator(sp, model), scorer, encode([net], sp), **constraints, latency=latency, max_evaluations=limit
    )
    if raw["interrupted"]:
        raise KeyboardInterrupt
    found = decode(raw["row"][None, :], sp)[0]
    if float(raw["score"]) > top1:
        return found, float(raw["score"]), int(raw["evaluations"])
    return net, top1, int(raw["evaluations"])


def _dive_front(
    ev,
    scorer,
    sp: Space,
    model: str,
    constraints: dict,
    exact: tuple,
    front: tuple,
    knots: int,
    nodes: int,
    ceiling: int = _INT64_MAX,
):
    """Branch-and-bound dives from a two-objective front's points (``front``: rows, top1,
    peak) at up to ``knots`` steps spread over it, each under that point's peak, on threads;
    and one more from the largest under ``ceiling`` (the front's own limit), then climbed
    there: the best subnets of small budgets can be reached from the large ones (search's
    transfer). Better subnets join the front: (rows, top1, peak filtered, the climb's scores)."""
    rows, top1, peak = front
    pick = np.unique(np.linspace(0, len(rows) - 1, min(knots, len(rows))).round().astype(int))
    tasks = [(int(i), int(peak[i])) for i in pick]
    top = int(np.argmax(peak))
    if ceiling > peak[top]:
        tasks.append((top, ceiling))

    def dive(task: tuple[int, int]) -> tuple[Subnet, float, int]:
        i, cap = task
        start = decode(rows[i][None, :], sp)[0]
        raw = _branch_and_bound(exact, sp, model, start, {**constraints, "max_peak": cap}, max_nodes=nodes)
        net, score = _adopt(raw, start, float(top1[i]), scorer, sp)
        if cap == ceiling:
            limits = {
                "max_peak": cap,
                "max_mflops": constraints.get("max_mflops"),
                "max_params": constraints.get("max_params"),
                "min_uniformity": None,  # no dive runs with these two
                "max_latency_ms": None,
            }
            return _climb(net, score, nodes, scorer, sp, model, limits, None)
        return net, score, 0

    workers = min(len(tasks), os.cpu_count() or 1)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(dive, tasks))
    else:
        found = [dive(t) for t in tasks]
    new_rows = encode([net for net, _, _ in found], sp)
    rows = np.concatenate([rows, new_rows])
    top1 = np.concatenate([top1, np.array([t for _, t, _ in found], dtype=np.float32)])
    peak = np.concatenate([peak, ev.peaks(new_rows, threads=1).astype(np.int64)])
    keep = core.non_dominated(top1, peak, None)
    return rows[keep], top1[keep], peak[keep], sum(spent for _, _, spent in found)


def _branch_and_bound(exact: tuple, sp: Space, model: str, start: Subnet, constraints: dict, **limits) -> dict:
    """core.mlp_optimum of the model ``exact`` (see _exact_model) from the incumbent ``start``."""
    weights, biases, skip, scale, offset = exact
    raw = core.mlp_optimum(
        evaluator(sp, model),
        list(weights),
        list(biases),
        skip=skip,
        scale=scale,
        offset=offset,
        max_peak=constraints["max_peak"],
        max_mflops=constraints.get("max_mflops"),
        max_params=constraints.get("max_params"),
        start_row=encode([start], sp),
        **limits,
    )
    if raw["interrupted"]:
        raise KeyboardInterrupt
    return raw


def _adopt(raw: dict, net: Subnet, top1: float, scorer, sp: Space) -> tuple[Subnet, float]:
    """The branch and bound's subnet with the predictor's own (float32) score when it beats
    the incumbent ``net`` (float32 ties between double-ordered subnets keep the incumbent)."""
    found = decode(raw["best_row"][None, :], sp)[0]
    if found != net:
        score = float(scorer.score(encode([found], sp), 1)[0])
        if score > top1:
            return found, score
    return net, top1


def sweep(
    budgets: Iterable, space: str | Space = "moofa", predictor=None, *, progress: bool | None = None, **search_options
) -> list[SearchResult]:
    """One :func:`search` per budget (same seed and options). Ctrl-C stops the sweep and
    returns the budgets already finished (the list has ``interrupted`` set then)."""
    return _sweep(list(budgets), space, predictor, progress, search_options)[0]


class _SweepResults(list):
    interrupted = False


def _sweep(budgets: list, space, predictor, progress, search_options) -> tuple[list, bool]:
    if not budgets:
        raise ValueError("budgets must hold at least one budget")
    sp = get_space(space)
    _check_options(search_options, ("seed", "population", "generations", *SEARCH_OPTIONS), "sweep")
    # Load the predictor once (files are read); search() takes the object, so a deep MLP
    # gets its islands and dive as in a single search.
    predictor = _loaded_predictor(predictor, sp)
    results = _SweepResults()
    try:
        with Progress(len(budgets), f"search {sp.name}", progress) as bar:
            for b in budgets:
                r = search(b, sp, predictor, **search_options)
                results.append(r)
                bar.update(1, budget=format_items(r.budget), top1=f"{r.top1:.2f}")
    except KeyboardInterrupt:
        results.interrupted = True
    return results, results.interrupted


def pareto(
    space: str | Space = "moofa",
    predictor=None,
    *,
    budgets: Iterable | None = None,
    objectives: Sequence[str] = ("top1", "peak"),
    max_peak=None,
    seed: int = _NSGA.seed,
    population: int = _NSGA.population,
    generations: int | None = None,
    progress: bool | None = None,
    **options,
) -> ParetoFront:
    """The accuracy-vs-memory trade-off of a space as a Pareto front.

    With ``budgets``: one search per budget (a sweep, with the defaults of :func:`search`)
    and the non-dominated results. Without: one multi-objective NSGA-II search over the whole
    space (``generations`` defaults to 200, ``population`` is at most 100,000), up to
    ``max_peak`` if given, with the
    objectives ``("top1", "peak")`` or ``("top1", "peak", "mflops")``. Ctrl-C returns what
    was found so far with ``interrupted=True``. ``"uniformity"`` may be added to the
    objectives (maximise :attr:`moofa.Profile.uniformity`); the option ``min_uniformity``
    is a constraint on it (see ``docs/uniformity.md``).
    """
    sp = get_space(space)
    objectives = tuple(objectives) if not isinstance(objectives, str) else (objectives,)
    if (
        set(objectives) - set(_OBJECTIVES)
        or "top1" not in objectives
        or "peak" not in objectives
        or len(set(objectives)) != len(objectives)
    ):
        raise ValueError(
            "objectives must be ('top1', 'peak') followed by any of 'mflops', 'uniformity' "
            f"(e.g. ('top1', 'peak', 'uniformity')), got {objectives!r}"
        )
    with_mflops = "mflops" in objectives
    with_uniformity = "uniformity" in objectives
    start = time.perf_counter()
    if budgets is not None:
        if max_peak is not None:
            raise ValueError("pass either budgets (a sweep) or max_peak (one multi-objective search), not both")
        _check_options(options, SEARCH_OPTIONS, "pareto")
        results, interrupted = _sweep(
            list(budgets),
            sp,
            predictor,
            progress,
            dict(
                options,
                seed=seed,
                population=population,
                generations=_EVOLUTION.generations if generations is None else generations,
            ),
        )
        nets = [r.subnet for r in results]
        top1 = np.array([r.top1 for r in results], dtype=np.float32)
        peak = np.array([r.peak for r in results], dtype=np.int64)
        mflops = np.array([r.mflops for r in results], dtype=np.float64)
        uniformity = np.array([r.profile.uniformity for r in results], dtype=np.float64)
        keep = (
            core.non_dominated(top1, peak, mflops if with_mflops else None, uniformity if with_uniformity else None)
            if results
            else np.zeros(0, dtype=np.int64)
        )
        return ParetoFront(
            subnets=[nets[i] for i in keep],
            top1=top1[keep],
            peak=peak[keep],
            mflops=mflops[keep],
            rows=encode([nets[i] for i in keep], sp) if len(keep) else np.zeros((0, sp.n_columns), np.uint8),
            method="sweep",
            space=sp.name,
            objectives=objectives,
            evaluations=sum(r.evaluations for r in results),
            seconds=time.perf_counter() - start,
            interrupted=interrupted,
            results=list(results),
            uniformity=uniformity[keep],
        )

    _check_options(options, _PARETO_OPTIONS, "pareto")
    opts = {**_PARETO_OPTIONS, **options}
    model = _model_name(opts["memory_model"])
    cap = None if max_peak is None else _budget_items(max_peak, sp, model, opts["bytes_per_item"])
    shared = _shared_options(_NSGA, opts, population, _NSGA.generations if generations is None else generations, seed)
    constraints = {
        "max_mflops": _limit("max_mflops", opts["max_mflops"], float),
        "max_params": _limit("max_params", opts["max_params"], int),
        "min_uniformity": _min_uniformity(opts["min_uniformity"]),
    }
    constraints["max_latency_ms"], latency = _latency_limit(opts, sp)
    loaded = _loaded_predictor(predictor, sp)
    scorer = _resolve_predictor(loaded, sp, opts["predictor_input"])
    knots = _int("dive_knots", opts["dive_knots"], 0, _INT32_MAX)
    dive, exact = _dive_setting(opts["dive_nodes"], loaded, model, options)
    with Progress(shared["generations"], f"pareto {sp.name}", progress) as bar:

        def tick(g: int) -> None:
            bar.update(g - bar.done)

        raw = core.nsga2(
            evaluator(sp, model),
            scorer,
            **({} if cap is None else {"max_peak": cap}),
            **constraints,
            **shared,
            minimize_mflops=with_mflops,
            maximize_uniformity=with_uniformity,
            progress=tick if bar.enabled else None,
            latency=latency,
        )
    rows, top1, peak, mflops, uniformity = raw["rows"], raw["scores"], raw["peaks"], raw["mflops"], raw["uniformity"]
    # Dives on a two-objective front only: a dive maximises top1 under a peak, which says
    # nothing of MFLOPs or uniformity.
    interrupted = bool(raw["interrupted"])
    climbed = 0
    if dive and knots and len(rows) and not (with_mflops or with_uniformity or interrupted):
        assert exact is not None
        ev = evaluator(sp, model)
        try:
            rows, top1, peak, climbed = _dive_front(
                ev,
                scorer,
                sp,
                model,
                constraints,
                exact,
                (rows, top1, peak),
                knots,
                dive,
                _INT64_MAX if cap is None else cap,
            )
        except KeyboardInterrupt:  # Ctrl-C: the front as NSGA-II left it
            interrupted = True
        prof = ev.profiles(rows, 1, False)
        mflops, uniformity = prof["mflops"], prof["uniformity"]
    percent_of = _top1_predictor_name(predictor, sp)
    if percent_of is not None and len(rows):
        warn_outside_percent(top1, percent_of, stacklevel=2)
    return ParetoFront(
        subnets=decode(rows, sp) if len(rows) else [],
        top1=top1,
        peak=peak,
        mflops=mflops,
        rows=rows,
        method="nsga2",
        space=sp.name,
        objectives=objectives,
        evaluations=int(raw["evaluations"]) + climbed,
        seconds=time.perf_counter() - start,
        interrupted=interrupted,
        uniformity=uniformity,
    )


# --- exact optimum ----------------------------------------------------------------------


def _beyond_exact(options: dict) -> list[str]:
    """The constraints among ``options`` that the branch and bound does not model."""
    return [k for k in ("min_uniformity", "max_latency_ms", "latency_table") if options.get(k) is not None]


def _exact_model(predictor) -> tuple | None:
    """(weights, biases, skip, scale, offset) of a loaded predictor (see _loaded_predictor)
    the branch and bound can take (a linear model or a ReLU MLP), or None."""
    if isinstance(predictor, Predictor):
        return (predictor.weights, predictor.biases, predictor.skip, predictor.scale, predictor.offset)
    if isinstance(predictor, core.LinearScorer):
        w = np.asarray(predictor.weights, dtype=np.float32)[:, None]
        return ([w], [np.array([predictor.bias], dtype=np.float32)], None, 1.0, 0.0)
    return None


def _shallow_exact(predictor) -> bool:
    """A predictor whose branch and bound ``method="auto"`` runs to the end: linear or one
    hidden layer (deeper nets get the search's dive, whose node limit bounds its time)."""
    exact = _exact_model(predictor)
    return exact is not None and len(exact[0]) <= 2


def optimum(
    budget,
    space: str | Space = "moofa",
    predictor=None,
    *,
    time_limit: float | None = None,
    **options,
) -> SearchResult:
    """The best subnet of ``space`` under ``budget``, proven by branch and bound.

    For a linear predictor (``linear_scorer``) or a ReLU MLP of any depth (``Predictor``:
    the shipped and the published ones) under the memory models ``"full"`` and
    ``"activations"``: with those the subnets fitting a budget are, per resolution, a
    product of per-block choices, and the predictor's first layer a sum over the blocks,
    which gives a separable upper bound (relaxed through the deeper layers). A proof can
    take long where the bound is loose (free expand ratios with a deep predictor): pass
    ``time_limit``.
    A default :func:`search` runs first and its best subnet starts the branch and bound.
    ``proven_optimal`` is True unless ``time_limit`` (seconds) stopped it; the result is then
    the best found. Other options: those of :func:`search`.
    """
    start = time.perf_counter()
    _check_options(options, ("seed", "population", "generations", *SEARCH_OPTIONS), "optimum")
    opts = {**SEARCH_OPTIONS, **options}
    sp = get_space(space)
    model = _model_name(opts["memory_model"])
    if model == "tflm":
        raise ValueError(
            "memory_model: the exact optimum needs a peak that is a max over layers ('full' or 'activations'); "
            "'tflm' plans the arena over the whole graph: use moofa.search"
        )
    if time_limit is not None:
        limit = _real(time_limit)
        if limit is None or not math.isfinite(limit) or limit <= 0:
            raise ValueError(f"time_limit must be a finite number of seconds > 0 or None, got {time_limit!r}")
    beyond = _beyond_exact(options)
    if beyond:
        raise ValueError(
            f"{', '.join(beyond)}: the exact optimum takes the peak, max_mflops and max_params limits "
            "only (uniformity is no sum over blocks; latency limits are not in the bound); use moofa.search"
        )
    loaded = _loaded_predictor(predictor, sp)  # once, for the bound, the search and the scores
    exact = _exact_model(loaded)
    if exact is None:
        raise ValueError(
            "predictor: the exact optimum needs a linear model (moofa.linear_scorer) or a ReLU MLP "
            "(moofa.Predictor: the shipped and the published predictors); for other predictors use moofa.search"
        )
    evo = search(budget, sp, loaded, **{k: v for k, v in options.items() if k != "method"})
    raw = _branch_and_bound(
        exact,
        sp,
        model,
        evo.subnet,
        {"max_peak": evo.budget, **evo.constraints},
        time_limit=0.0 if time_limit is None else float(time_limit),
    )
    net, top1 = _adopt(raw, evo.subnet, evo.top1, _resolve_predictor(loaded, sp, "rows"), sp)
    return _result(
        net,
        top1,
        sp,
        model,
        history=np.append(evo.history, np.float32(top1)),
        evaluations=evo.evaluations,
        candidates=evo.candidates,
        seconds=time.perf_counter() - start,
        budget=evo.budget,
        seed=evo.seed,
        generations=evo.generations,
        constraints=dict(evo.constraints),
        proven_optimal=bool(raw["proven_optimal"]),
        islands=evo.islands,
        survivors=evo.survivors,
        dive_nodes=evo.dive_nodes,
        climb_evaluations=evo.climb_evaluations,
        transfer_evaluations=evo.transfer_evaluations,
    )
