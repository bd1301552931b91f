"""The best subnet for each of many memory budgets at once (a fleet of devices).

>>> import moofa
>>> r = moofa.specialise(["300k", "325k", "400k", "1.2MB"])   # shipped predictor of 'moofa'
>>> r.top1, r.peak, r.configs()

The best subnet under a budget ``B`` is the most accurate point with peak ``<= B`` of the
accuracy-vs-peak Pareto front. :func:`specialise` builds that front once per space,
predictor, memory model and constraints (NSGA-II, then one short evolutionary search just
below each step of the front, which fills in what NSGA-II missed), then answers every
budget by a binary search over the front's peaks. Answers are monotone: a larger budget
never gets a less accurate subnet. Fronts are cached in memory, so later calls with the
same setting skip the build.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._encoding import columns
from ._ext import core
from ._io import atomic_write_text
from .memory import _model_name, evaluator
from .predictor import warn_outside_percent
from .search import (
    ParetoFront,
    _check_options,
    _dive_front,
    _dive_setting,
    _flag,
    _int,
    _latency_limit,
    _limit,
    _loaded_predictor,
    _min_uniformity,
    _resolve_predictor,
    _seed,
    _top1_predictor_name,
)
from .spaces import Space, get_space
from .subnet import Subnet, decode
from .units import MAX_BUDGET, format_items, parse_budget

__all__ = ["SPECIALISE_OPTIONS", "SpecialiseResult", "clear_cache", "read_budgets", "read_table", "specialise"]

_INT64_MAX = 2**63 - 1

# Keyword options of specialise() with their defaults.
SPECIALISE_OPTIONS: dict[str, Any] = {
    "max_mflops": None,  # optional constraint, as in moofa.search
    "max_params": None,  # optional constraint
    "min_uniformity": None,  # optional constraint: Profile.uniformity, as in moofa.search
    "max_latency_ms": None,  # optional constraint: latency by latency_table, as in moofa.search
    "latency_table": None,  # a moofa.latency.LatencyTable or the path of one
    "memory_model": "full",  # "full", "activations" ("mcu") or "tflm", as in moofa.search
    "bytes_per_item": None,  # to read byte budgets: None is 4 (float32), or 1 under "tflm"
    "threads": 0,  # 0: all cores; results never depend on it
    "predictor_input": "rows",  # what a callable predictor receives, as in moofa.search
    # quality knobs: the NSGA-II front ...
    "population": 600,
    "generations": 80,
    # ... then, at both ends of each step of the front, a short evolutionary search
    "refine_population": 100,
    "refine_generations": 40,
    "refine_passes": 3,  # rounds of refinement (each round only visits steps not refined yet)
    "max_knots": 256,  # at most this many refinement searches (and local searches) per round
    # then a Pareto local search: every subnet one gene (or one block's kernel and expand) away
    # from a front point is scored, better ones join the front, until none does or this many rounds
    "polish_rounds": 20,
    # then, for MLP predictors with two or more hidden layers (whose best subnets sit in narrow
    # basins: see moofa.search's dive), a branch and bound of dive_nodes nodes from the front's
    # point at each of dive_knots steps spread over it, and one without a peak limit from the
    # largest, then climbed (None: search's default, 3,125; 0: none)
    "dive_nodes": None,
    "dive_knots": 8,
    "cache": True,  # keep the front in memory for later calls with the same setting
}

_CACHE_SIZE = 16
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached front (the next call of :func:`specialise` builds its front again)."""
    with _cache_lock:
        _cache.clear()


# --- the front ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Front:
    rows: np.ndarray  # canonical rows, sorted by peak; score strictly increasing
    top1: np.ndarray  # float32
    peak: np.ndarray  # int64
    mflops: np.ndarray  # float64
    params: np.ndarray  # int64
    evaluations: int
    seconds: float


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def _build_front(
    ev, scorer, sp: Space, constraints: dict, opts: dict, seed: int, native: bool, exact: tuple | None, model: str
) -> _Front:
    start = time.perf_counter()
    threads = opts["threads"]
    raw = core.nsga2(
        ev,
        scorer,
        **constraints,
        population=opts["population"],
        generations=opts["generations"],
        seed=seed,
        threads=threads,
    )
    if raw["interrupted"]:
        raise KeyboardInterrupt
    rows, top1, peak = raw["rows"], raw["scores"].astype(np.float32), raw["peaks"].astype(np.int64)
    evaluations = int(raw["evaluations"])
    if len(rows) == 0:
        raise ValueError(
            "no subnet satisfying the constraints was found (max_mflops, max_params, min_uniformity, "
            "max_latency_ms): loosen them"
        )  # pragma: no cover (nsga2 raises first)

    def refine(knot: int) -> dict:
        try:
            out = core.evolve(
                ev,
                scorer,
                max_peak=knot,
                **constraints,
                population=opts["refine_population"],
                generations=opts["refine_generations"],
                seed=seed,
                threads=1,
            )
        except ValueError as exc:
            # The evolution's random start found nothing that fits this knot and the
            # constraints (the front's own point does): nothing to add here.
            if "no subnet satisfying the constraints" not in str(exc):
                raise
            return {"best_row": np.zeros(0, np.uint8), "evaluations": 0}
        if out["interrupted"]:
            raise KeyboardInterrupt
        return out

    refined: set[int] = set()
    workers = (threads or _cpu_count()) if native else 1
    for _ in range(opts["refine_passes"] if opts["refine_generations"] > 0 else 0):
        # Both ends of each step of the front: its own peak (a search held tight at that
        # level) and one item below the next step (the best for every budget in between);
        # and no limit at all: the best subnet of the space.
        ends = {int(p) for p in peak} | {int(p) - 1 for p in peak[1:]} | {_INT64_MAX}
        knots = sorted(k for k in ends if k not in refined)
        if len(knots) > opts["max_knots"]:
            pick = np.unique(np.linspace(0, len(knots) - 1, opts["max_knots"]).round().astype(int))
            knots = [knots[i] for i in pick]
        if not knots:
            break
        refined.update(knots)
        if workers > 1 and len(knots) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(knots))) as pool:
                results = list(pool.map(refine, knots))
        else:
            results = [refine(k) for k in knots]
        found = [r for r in results if len(r["best_row"])]
        if not found:
            break
        evaluations += sum(int(r["evaluations"]) for r in results)
        new_rows = np.stack([r["best_row"] for r in found]).astype(np.uint8)
        rows = np.concatenate([rows, new_rows])
        top1 = np.concatenate([top1, np.array([r["best_score"] for r in found], dtype=np.float32)])
        peak = np.concatenate([peak, ev.peaks(new_rows, threads=1).astype(np.int64)])
        keep = core.non_dominated(top1, peak, None)
        rows, top1, peak = rows[keep], top1[keep], peak[keep]
    if exact is not None and opts["dive_nodes"] > 0 and opts["dive_knots"] > 0:
        rows, top1, peak, climbed = _dive_front(
            ev, scorer, sp, model, constraints, exact, (rows, top1, peak), opts["dive_knots"], opts["dive_nodes"]
        )
        evaluations += climbed
    if opts["polish_rounds"] > 0 and (not isinstance(scorer, core.Scorer) or hasattr(scorer, "score")):
        rows, top1, peak, spent = _polish(
            ev, scorer, sp, constraints, rows, top1, peak, opts["polish_rounds"], opts["max_knots"]
        )
        evaluations += spent
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    prof = ev.profiles(rows, 1, False)
    return _Front(
        rows=rows,
        top1=top1,
        peak=peak,
        mflops=np.asarray(prof["mflops"], dtype=np.float64),
        params=np.asarray(prof["params"], dtype=np.int64),
        evaluations=evaluations,
        seconds=time.perf_counter() - start,
    )


class _Layout:
    """Columns and choices of a space's compact encoding, for the local search."""

    def __init__(self, sp: Space):
        c = columns(sp)
        self.res, self.depth, self.kernel, self.expand = c.resolution, c.depth, c.kernel, c.expand
        self.n_res, self.n_k, self.n_e = len(sp.resolutions), len(sp.kernels), len(sp.expands)
        self.depths = np.asarray(sp.depths, dtype=np.int64)
        self.slot_stage = np.asarray(c.slot_stage, dtype=np.intp)
        first = np.concatenate([[0], np.cumsum([st.max_depth for st in sp.stages])[:-1]]).astype(np.intp)
        self.slot_pos = np.arange(len(self.slot_stage)) - first[self.slot_stage]  # position in its stage
        # coupled expand (CompOFA): the expand index of each depth index, else None
        self.coupled = (
            None
            if not sp.expand_by_depth
            else np.asarray([sp.expands.index(sp.expand_by_depth[d]) for d in sp.depths], dtype=np.uint8)
        )

    def canonical(self, rows: np.ndarray) -> np.ndarray:
        """Idle slots reset as the C++ search resets them (kernel 0, expand 0 or the coupled one)."""
        di = rows[:, self.depth.start + self.slot_stage]  # depth index of each slot's stage
        idle = self.slot_pos[None, :] >= self.depths[di]
        k = rows[:, self.kernel]
        k[idle] = 0
        e = rows[:, self.expand]
        if self.coupled is None:
            e[idle] = 0
        else:
            e[:] = self.coupled[di]
        return rows

    def neighbours(self, row: np.ndarray) -> np.ndarray:
        """Every subnet one change away: the resolution, a stage's depth, or an active block's
        kernel and/or expand (canonical rows)."""
        out = []
        for r in range(self.n_res):
            if r != row[self.res]:
                v = row.copy()
                v[self.res] = r
                out.append(v[None])
        n_stages = self.depth.stop - self.depth.start
        for st in range(n_stages):
            for d in range(len(self.depths)):
                if d != row[self.depth.start + st]:
                    v = row.copy()
                    v[self.depth.start + st] = d
                    out.append(v[None])
        di = row[self.depth.start + self.slot_stage]
        active = np.flatnonzero(self.slot_pos < self.depths[di])
        n_e = 1 if self.coupled is not None else self.n_e
        grid_k, grid_e = np.meshgrid(np.arange(self.n_k), np.arange(n_e), indexing="ij")
        ks, es = grid_k.ravel().astype(np.uint8), grid_e.ravel().astype(np.uint8)
        for j in active:
            v = np.repeat(row[None], len(ks), axis=0)
            v[:, self.kernel.start + j] = ks
            if self.coupled is None:
                v[:, self.expand.start + j] = es
            same = (ks == row[self.kernel.start + j]) & (
                es == row[self.expand.start + j] if self.coupled is None else True
            )
            out.append(v[~same])
        return self.canonical(np.concatenate(out)) if out else np.zeros((0, row.size), np.uint8)


def _score_rows(scorer, rows: np.ndarray) -> np.ndarray:
    score = getattr(scorer, "score", None)
    if isinstance(scorer, core.Scorer):
        out = np.asarray(score(rows, 1), dtype=np.float64)  # type: ignore[misc]
    else:
        out = np.asarray(scorer(rows), dtype=np.float64).reshape(-1)
    if out.shape != (len(rows),) or not np.all(np.isfinite(out)):
        raise ValueError(f"the predictor must return one finite number per config ({len(rows)}), got shape {out.shape}")
    return out


def _polish(
    ev, scorer, sp: Space, constraints: dict, rows, top1, peak, rounds: int, max_points: int, max_scores: int = 0
):
    """Pareto local search from the front's points (at most ``max_points`` a round, spread
    over the front; no round starts once ``max_scores`` scores are spent, 0: no limit);
    returns the new front and the scores spent."""
    layout = _Layout(sp)
    done: set[bytes] = set()
    spent = 0
    for _ in range(rounds):
        if max_scores and spent >= max_scores:
            break
        todo = [i for i in range(len(rows)) if rows[i].tobytes() not in done]
        if not todo:
            break
        if len(todo) > max_points:
            todo = [todo[i] for i in np.unique(np.linspace(0, len(todo) - 1, max_points).round().astype(int))]
        done.update(rows[i].tobytes() for i in todo)
        cand = np.unique(np.concatenate([layout.neighbours(rows[i]) for i in todo]), axis=0)
        if constraints:
            prof = ev.profiles(cand, 1, False)
            ok = np.ones(len(cand), dtype=bool)
            if "max_mflops" in constraints:
                ok &= prof["mflops"] <= constraints["max_mflops"]
            if "max_params" in constraints:
                ok &= prof["params"] <= constraints["max_params"]
            if "min_uniformity" in constraints:
                ok &= prof["uniformity"] >= constraints["min_uniformity"]
            if "latency" in constraints:
                ok &= constraints["latency"].costs(cand) <= constraints["max_latency_ms"]
            cand = cand[ok]
        if len(cand) == 0:
            break
        cand_peak = ev.peaks(cand, threads=1).astype(np.int64)
        cand_top1 = _score_rows(scorer, cand).astype(np.float32)
        spent += len(cand)
        rows = np.concatenate([rows, cand])
        top1 = np.concatenate([top1, cand_top1])
        peak = np.concatenate([peak, cand_peak])
        keep = core.non_dominated(top1, peak, None)
        rows, top1, peak = rows[keep], top1[keep], peak[keep]
    return rows, top1, peak, spent


def _predictor_key(predictor) -> tuple:
    if predictor is None:
        return ("shipped",)
    if isinstance(predictor, (str, Path)):
        return ("named", str(predictor))
    return ("object", id(predictor))  # the cache entry holds the object: its id stays its own


# --- budgets ------------------------------------------------------------------------------


def _bytes_per_item(model: str, bytes_per_item) -> float:
    if bytes_per_item is None:
        return 1.0 if model == "tflm" else 4.0
    if model == "tflm" and bytes_per_item != 1:
        raise ValueError(
            f"memory_model='tflm' counts bytes of the int8 graph: pass bytes_per_item=1, got {bytes_per_item!r}"
        )
    return float(bytes_per_item)


def _budgets(budgets, bpi: float) -> np.ndarray:
    if isinstance(budgets, (str, bytes, numbers.Number)) or not isinstance(budgets, (Iterable, np.ndarray)):
        raise TypeError(
            "budgets must be a sequence of budgets (items such as 325000, or strings such as '325k' or "
            f"'256KiB'), got {type(budgets).__name__}; for one budget pass [budget] or use moofa.search"
        )
    if isinstance(budgets, np.ndarray) and budgets.dtype.kind in "iu":
        if budgets.ndim != 1:
            raise ValueError(f"budgets must be one-dimensional, got an array of shape {budgets.shape}")
        items = budgets.astype(np.int64)
        if budgets.dtype.kind == "u" and budgets.size and int(budgets.max()) > MAX_BUDGET:
            raise ValueError("budgets must be below 2**63 items (9.2e18)")
        bad = np.flatnonzero(items < 1)
        if bad.size:
            raise ValueError(f"budgets[{int(bad[0])}] must be a positive number of items, got {int(items[bad[0]])}")
    else:
        values = list(budgets)
        items = np.empty(len(values), dtype=np.int64)
        for i, b in enumerate(values):
            try:
                items[i] = parse_budget(b.item() if isinstance(b, np.generic) else b, bpi)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"budgets[{i}]: {exc}") from None
    if items.size == 0:
        raise ValueError("budgets must hold at least one budget")
    return items


# --- the result ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SpecialiseResult:
    """The best subnet found for each budget, in the order the budgets were given.

    Arrays, one entry per budget: ``budget`` (items; bytes under ``memory_model="tflm"``),
    ``feasible`` (False where no subnet fits the budget and the constraints), ``top1`` (the
    predictor's score; NaN where infeasible), ``peak`` (0 where infeasible), ``mflops``
    (NaN where infeasible), ``params`` (0 where infeasible) and ``index`` (the row of
    ``front`` answering the budget; -1 where infeasible). ``front`` is the Pareto front the
    answers come from (a :class:`moofa.ParetoFront`, ``method="specialise"``).

    ``seconds`` is the whole call, ``front_seconds`` the front's build (0.0 when it came
    from the cache, then ``cached`` is True), ``evaluations`` the predictor evaluations of
    that build.
    """

    budget: np.ndarray
    feasible: np.ndarray
    top1: np.ndarray
    peak: np.ndarray
    mflops: np.ndarray
    params: np.ndarray
    index: np.ndarray
    front: ParetoFront
    space: str = "moofa"
    memory_model: str = "full"
    constraints: dict = field(default_factory=dict)
    seed: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    front_seconds: float = 0.0
    cached: bool = False

    def __len__(self) -> int:
        return int(self.budget.size)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> dict:
        """Row ``i`` as a dict: budget, feasible, top1, peak, mflops, params, config (None
        where infeasible)."""
        n = len(self)
        if not isinstance(i, numbers.Integral) or isinstance(i, bool):
            raise TypeError(f"SpecialiseResult indices must be integers, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} budgets")
        i = int(i) % n
        ok = bool(self.feasible[i])
        j = int(self.index[i])
        return {
            "budget": int(self.budget[i]),
            "feasible": ok,
            "top1": float(self.top1[i]) if ok else None,
            "peak": int(self.peak[i]) if ok else None,
            "mflops": float(self.mflops[i]) if ok else None,
            "params": int(self.params[i]) if ok else None,
            "config": self.front.subnets[j].to_dict() if ok else None,
        }

    def subnets(self) -> list[Subnet | None]:
        """The subnet of each budget (None where infeasible)."""
        nets = self.front.subnets
        return [nets[j] if j >= 0 else None for j in self.index.tolist()]

    def configs(self) -> list[dict | None]:
        """The OFA-style config dict of each budget (None where infeasible)."""
        dicts = [net.to_dict() for net in self.front.subnets]
        return [dicts[j] if j >= 0 else None for j in self.index.tolist()]

    def to_dicts(self) -> list[dict]:
        """One dict per budget (as ``result[i]``), JSON-ready."""
        dicts = [net.to_dict() for net in self.front.subnets]
        out = []
        for b, ok, t, p, m, n, j in zip(
            self.budget.tolist(),
            self.feasible.tolist(),
            self.top1.tolist(),
            self.peak.tolist(),
            self.mflops.tolist(),
            self.params.tolist(),
            self.index.tolist(),
        ):
            out.append(
                {
                    "budget": b,
                    "feasible": ok,
                    "top1": t if ok else None,
                    "peak": p if ok else None,
                    "mflops": m if ok else None,
                    "params": n if ok else None,
                    "config": dicts[j] if ok else None,
                }
            )
        return out

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The table as JSON (a header and ``rows``, one per budget); written atomically to
        ``path`` when given."""
        head = {
            "space": self.space,
            "memory_model": self.memory_model,
            "unit": "bytes" if self.memory_model == "tflm" else "items",
            "constraints": dict(self.constraints),
            "seed": self.seed,
        }
        # One row a line (json's C encoder; indent= would take its pure-Python path).
        rows = ",\n".join(json.dumps(row) for row in self.to_dicts())
        text = json.dumps(head)[:-1] + ', "rows": [\n' + rows + "\n]}\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The table as CSV: ``budget, feasible, top1, peak, mflops, params, config`` (the
        config as a JSON object; empty cells where infeasible); written atomically to
        ``path`` when given."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_CSV_COLUMNS)
        for row in self.to_dicts():
            ok = row["feasible"]
            w.writerow(
                [
                    row["budget"],
                    int(ok),
                    repr(row["top1"]) if ok else "",
                    row["peak"] if ok else "",
                    repr(row["mflops"]) if ok else "",
                    row["params"] if ok else "",
                    json.dumps(row["config"], separators=(",", ":")) if ok else "",
                ]
            )
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def __repr__(self) -> str:
        n_ok = int(self.feasible.sum())
        return (
            f"SpecialiseResult(space={self.space!r}, budgets={len(self)}, feasible={n_ok}, "
            f"front={len(self.front)} points, seconds={self.seconds:.3f}, cached={self.cached})"
        )


_CSV_COLUMNS = ("budget", "feasible", "top1", "peak", "mflops", "params", "config")


def read_table(path: str | os.PathLike) -> list[dict]:
    """The rows of a table written by ``SpecialiseResult.to_csv`` or ``.to_json`` (by the
    file's suffix: ``.json``, else CSV), as ``SpecialiseResult.to_dicts()`` gives them."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            raise ValueError(f"{path}: not a specialise table (a JSON object with 'rows')")
        return list(doc["rows"])
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != _CSV_COLUMNS:
        raise ValueError(f"{path}: not a specialise table; expected the columns {list(_CSV_COLUMNS)}")
    out = []
    for rec in reader:
        ok = rec["feasible"] == "1"
        out.append(
            {
                "budget": int(rec["budget"]),
                "feasible": ok,
                "top1": float(rec["top1"]) if ok else None,
                "peak": int(rec["peak"]) if ok else None,
                "mflops": float(rec["mflops"]) if ok else None,
                "params": int(rec["params"]) if ok else None,
                "config": json.loads(rec["config"]) if ok else None,
            }
        )
    return out


# --- specialise ---------------------------------------------------------------------------


def specialise(budgets, space: str | Space = "moofa", predictor=None, *, seed: int = 0, **options) -> SpecialiseResult:
    """The most accurate subnet of ``space`` for each budget of ``budgets``, in their order.

    ``budgets``: a sequence (or 1-D integer array) of budgets as :func:`moofa.search` takes
    them: items (``325000``), ``"325k"``, or bytes (``"1.3MB"``, ``"256KiB"``, read with
    ``bytes_per_item``). A budget below the smallest peak that meets the constraints gets
    an infeasible row (``feasible`` False, ``top1`` NaN); if no budget is feasible, a
    ``ValueError`` names that smallest peak. ``predictor``: as for :func:`moofa.search`.
    Other options: see ``SPECIALISE_OPTIONS``.
    """
    start = time.perf_counter()
    _check_options(options, SPECIALISE_OPTIONS, "specialise")
    opts = {**SPECIALISE_OPTIONS, **options}
    sp = get_space(space)
    model = _model_name(opts["memory_model"])
    bpi = _bytes_per_item(model, opts["bytes_per_item"])
    items = _budgets(budgets, bpi)
    constraints = {
        k: v
        for k, v in (
            ("max_mflops", _limit("max_mflops", opts["max_mflops"], float)),
            ("max_params", _limit("max_params", opts["max_params"], int)),
            ("min_uniformity", _min_uniformity(opts["min_uniformity"])),
        )
        if v is not None
    }
    limit, latency = _latency_limit(opts, sp)
    if latency is not None:
        constraints.update(max_latency_ms=limit, latency=latency)
    nsga = core.ParetoOptions
    knobs = {
        "population": _int("population", opts["population"], nsga.MIN_POPULATION, nsga.MAX_POPULATION),
        "generations": _int("generations", opts["generations"], 0, nsga.MAX_GENERATIONS),
        "refine_population": _int("refine_population", opts["refine_population"], 1, 2**27 - 1),
        "refine_generations": _int("refine_generations", opts["refine_generations"], 0, nsga.MAX_GENERATIONS),
        "refine_passes": _int("refine_passes", opts["refine_passes"], 0, 64),
        "max_knots": _int("max_knots", opts["max_knots"], 1),
        "polish_rounds": _int("polish_rounds", opts["polish_rounds"], 0, 10_000),
        "dive_knots": _int("dive_knots", opts["dive_knots"], 0, 1_000_000),
        "dive_nodes": None if opts["dive_nodes"] is None else _int("dive_nodes", opts["dive_nodes"], 0, 2**63 - 1),
        "threads": _int("threads", opts["threads"], 0, nsga.MAX_THREADS),
    }
    seed = _seed(seed)
    _flag("cache", opts["cache"])
    ev = evaluator(sp, model)
    key = (
        sp,
        model,
        _predictor_key(predictor),
        opts["predictor_input"],
        tuple(sorted(constraints.items())),
        seed,
        tuple((k, v) for k, v in knobs.items() if k != "threads"),
    )
    front: _Front | None = None
    pareto_front: ParetoFront | None = None
    if opts["cache"]:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                front, pareto_front = hit[0], hit[1]
    cached = front is not None
    if front is None or pareto_front is None:
        loaded = _loaded_predictor(predictor, sp)
        scorer = _resolve_predictor(loaded, sp, opts["predictor_input"])
        native = isinstance(scorer, core.Scorer)
        dive, exact = _dive_setting(knobs["dive_nodes"], loaded, model, opts)
        front = _build_front(ev, scorer, sp, constraints, dict(knobs, dive_nodes=dive), seed, native, exact, model)
        percent_of = _top1_predictor_name(predictor, sp)
        if percent_of is not None:
            warn_outside_percent(front.top1, percent_of, stacklevel=2)
        pareto_front = ParetoFront(
            subnets=decode(front.rows, sp),
            top1=front.top1,
            peak=front.peak,
            mflops=front.mflops,
            rows=front.rows,
            method="specialise",
            space=sp.name,
            evaluations=front.evaluations,
            seconds=front.seconds,
        )
        if opts["cache"]:
            with _cache_lock:
                _cache[key] = (front, pareto_front, predictor)
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)

    index = np.searchsorted(front.peak, items, side="right").astype(np.int64) - 1
    feasible = index >= 0
    if not feasible.any():
        smallest = int(front.peak[0])
        unit = "bytes" if model == "tflm" else "items"
        raise ValueError(
            f"every budget is below the smallest peak a subnet of space {sp.name!r} reaches under memory model "
            f"{model!r}{' and the constraints' if constraints else ''}: {smallest:,} {unit} "
            f"({format_items(smallest)}); the largest budget given is {int(items.max()):,} {unit}"
        )
    j = np.where(feasible, index, 0)
    return SpecialiseResult(
        budget=items,
        feasible=feasible,
        top1=np.where(feasible, front.top1[j].astype(np.float64), math.nan),
        peak=np.where(feasible, front.peak[j], 0),
        mflops=np.where(feasible, front.mflops[j], math.nan),
        params=np.where(feasible, front.params[j], 0),
        index=index,
        front=pareto_front,
        space=sp.name,
        memory_model=model,
        constraints={k: v for k, v in constraints.items() if k != "latency"},
        seed=seed,
        evaluations=front.evaluations,
        seconds=time.perf_counter() - start,
        front_seconds=0.0 if cached else front.seconds,
        cached=cached,
    )


def read_budgets(path: str | os.PathLike) -> list[str]:
    """The budgets of a text file, as strings for :func:`specialise`.

    Either a CSV file with a header row that names a ``budget`` column (other columns are
    ignored), or one budget per line (``325000``, ``325k``, ``256KiB``). Blank lines and
    lines starting with ``#`` are skipped.
    """
    path = Path(path)
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{path}: no budgets in the file")
    header = next(csv.reader([lines[0][1]]))
    names = [h.strip().lower() for h in header]
    if "budget" in names:
        col = names.index("budget")
        out = []
        for n, line in lines[1:]:
            cells = next(csv.reader([line]))
            if col >= len(cells) or not cells[col].strip():
                raise ValueError(f"{path}, line {n}: no value in the 'budget' column")
            out.append(cells[col].strip())
        if not out:
            raise ValueError(f"{path}: a header but no budgets")
        return out
    out = []
    for n, line in lines:
        cells = next(csv.reader([line]))
        if len(cells) != 1:
            raise ValueError(
                f"{path}, line {n}: {len(cells)} cells; give one budget per line, or a header row with a "
                "'budget' column"
            )
        out.append(cells[0].strip())
    return out
