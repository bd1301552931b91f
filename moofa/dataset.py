"""Balanced accuracy data sets (paper Sec. 3.4): the same number of subnets in every
peak-memory bin, so the predictor also learns the tight budgets that uniform
sampling rarely reaches.

Configs are drawn with the C++ evaluator (millions of peaks per second): uniform
draws first, so each bin holds a uniform sample of its own subnets; bins that
uniform draws cannot fill within ``max_draws`` are topped up with draws skewed
towards the smallest (or largest) choices. The plan (every config to evaluate,
in round-robin bin order) is fixed up front and saved beside the output, so a
resumed run evaluates exactly the configs that are still missing: none lost,
none repeated. Each evaluated record is appended to the JSONL file as one line,
flushed and synced before the next evaluation starts.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ._encoding import columns, spec
from ._io import atomic_write_text
from ._progress import Progress
from .memory import _model_name, evaluator, min_peak
from .spaces import Space, get_space
from .subnet import decode, random_subnets
from .units import parse_budget

__all__ = ["build_dataset", "bin_edges", "plan_dataset"]

PLAN_FORMAT = "moofa-dataset-plan"


def _max_peak(space: Space, memory_model: str) -> int:
    """Peak of the largest subnet (every choice at its largest), and of random draws."""
    ev = evaluator(space, memory_model)
    col = columns(space)
    # column_limits: the number of choices of each column (coupled expands follow the depth)
    row = (np.asarray(spec(space).column_limits, np.int64) - 1).astype(np.uint8)[None, :]
    if space.expand_by_depth:
        row[0, col.expand] = space.expands.index(space.expand_by_depth[max(space.depths)])
    sample = random_subnets(100_000, space, seed=12345)
    return int(max(ev.peaks(row, 1)[0], ev.peaks(sample, 0).max()))


def bin_edges(
    space: str | Space = "moofa", bins: int | Sequence = 10, low=None, high=None, *, memory_model: str = "full"
) -> np.ndarray:
    """Edges of the peak-memory bins (items): ``bins`` equal-width bins from ``low``
    (default: the smallest peak of the space) to ``high`` (default: the largest), or
    the given increasing edges. A bin holds peaks in ``[edge_i, edge_i+1)``; the last
    one includes its upper edge."""
    sp = get_space(space)
    model = _model_name(memory_model)
    per_item = 1 if model == "tflm" else 4  # byte strings ("300kB"): int8 bytes under tflm, else float32
    if not isinstance(bins, (numbers.Integral, Sequence, np.ndarray)) or isinstance(bins, (bool, str)):
        raise TypeError(f"bins must be a number of bins or a list of edges, got {type(bins).__name__}")
    if isinstance(bins, numbers.Integral):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        lo = min_peak(sp, memory_model=model)[0] if low is None else parse_budget(low, per_item)
        hi = _max_peak(sp, model) if high is None else parse_budget(high, per_item)
        if not hi > lo:
            raise ValueError(f"high must be above low, got low={lo} and high={hi} items")
        return np.linspace(lo, hi, int(bins) + 1)
    if low is not None or high is not None:
        raise ValueError("give either bins as a list of edges, or a number of bins with low/high, not both")
    edges = np.asarray([parse_budget(b, per_item) if isinstance(b, str) else b for b in bins], dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise ValueError(f"bin edges must be at least two finite, strictly increasing numbers, got {list(bins)}")
    return edges


def _bin_of(peaks: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, peaks, side="right") - 1
    idx[peaks == edges[-1]] = len(edges) - 2  # the last bin includes its upper edge
    idx[(peaks < edges[0]) | (peaks > edges[-1])] = -1
    return idx


def _skewed(n: int, space: Space, rng: np.random.Generator, towards_small: bool) -> np.ndarray:
    """Random subnets whose choices lean to the smallest (or largest) index, with a
    per-row lean drawn uniformly: reaches the extreme peaks uniform draws miss."""
    rows = random_subnets(n, space, seed=int(rng.integers(2**63)))
    lean = rng.random((n, 1))
    sizes = np.asarray(spec(space).column_limits, np.int64)
    extreme = np.zeros(space.n_columns, np.uint8) if towards_small else (sizes - 1).astype(np.uint8)
    pick = rng.random(rows.shape) < lean
    rows = np.where(pick, extreme[None, :], rows).astype(np.uint8)
    if space.expand_by_depth:  # keep CompOFA's coupling valid
        col = columns(space)
        coupled = np.array([space.expands.index(space.expand_by_depth[d]) for d in space.depths], np.uint8)
        rows[:, col.expand] = coupled[rows[:, col.slot_depth_column]]
    return rows


def plan_dataset(
    space: str | Space,
    n_per_bin: int,
    edges: np.ndarray,
    *,
    seed: int = 0,
    memory_model: str = "full",
    max_draws: int = 4_000_000,
    batch: int = 1 << 18,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Pick ``n_per_bin`` distinct configs per bin: (rows, bin of each row, bins left short).

    Rows come in round-robin bin order (bin 0, 1, ..., then again), so any prefix of
    the plan is balanced too.
    """
    sp = get_space(space)
    ev = evaluator(sp, memory_model)
    n_bins = len(edges) - 1
    rng = np.random.default_rng(seed)
    chosen: list[list[bytes]] = [[] for _ in range(n_bins)]
    seen: set[bytes] = set()

    def take(rows: np.ndarray) -> None:
        bins = _bin_of(ev.peaks(rows, threads).astype(np.float64), edges)
        for b in range(n_bins):
            if len(chosen[b]) >= n_per_bin:
                continue
            for i in np.flatnonzero(bins == b):
                key = _key(rows[i], sp)
                if key not in seen:
                    seen.add(key)
                    chosen[b].append(key)
                    if len(chosen[b]) >= n_per_bin:
                        break

    def full() -> bool:
        return all(len(c) >= n_per_bin for c in chosen)

    for sampler in ("uniform", "small", "large"):
        drawn = 0
        while not full() and drawn < max_draws:
            m = min(batch, max_draws - drawn)
            if sampler == "uniform":
                rows = random_subnets(m, sp, seed=int(rng.integers(2**63)))
            else:
                rows = _skewed(m, sp, rng, towards_small=sampler == "small")
            take(rows)
            drawn += m
    short = [b for b in range(n_bins) if len(chosen[b]) < n_per_bin]
    order_rows, order_bins = [], []
    for i in range(n_per_bin):
        for b in range(n_bins):
            if i < len(chosen[b]):
                order_rows.append(np.frombuffer(chosen[b][i], np.uint8))
                order_bins.append(b)
    rows = np.array(order_rows, np.uint8).reshape(-1, sp.n_columns)
    return rows, np.array(order_bins, np.int64), short


def _key(row: np.ndarray, space: Space) -> bytes:
    """Identity of a subnet: its active choices only (inactive slots do not change it)."""
    col = columns(space)
    r = row.copy()
    position = np.array([p for stage in space.stages for p in range(stage.max_depth)])
    idle = position >= np.asarray(space.depths)[r[col.slot_depth_column]]
    r[col.kernel][idle] = 0
    r[col.expand][idle] = 0
    return r.tobytes()


def _config_key(config: dict, space: Space) -> bytes:
    from .subnet import encode

    return _key(encode([config], space)[0], space)


def _write_json_atomic(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc))


def _read_done(out: Path) -> list[dict]:
    """Records already written; a last line cut by a crash is dropped from the file."""
    if not out.exists():
        return []
    data = out.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut != len(data):  # partial last line: the evaluation it held is redone
        with open(out, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        data = data[:cut]
    records = []
    for lineno, line in enumerate(data.decode().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{out}:{lineno}: not valid JSON ({exc}); the file is not a dataset this builder wrote"
                ) from None
    return records


def build_dataset(
    space: str | Space,
    evaluate: Callable[[dict], float],
    out_path: str | os.PathLike,
    *,
    n_per_bin: int = 100,
    bins: int | Sequence = 10,
    low=None,
    high=None,
    seed: int = 0,
    memory_model: str = "full",
    max_draws: int = 4_000_000,
    progress: bool = True,
    threads: int = 0,
) -> dict:
    """Build (or resume) a balanced accuracy data set as JSONL.

    ``evaluate(config) -> top1`` is called once per planned subnet with an OFA-style
    dict (``ks``, ``e``, ``d``, ``image_size``) and must return its top-1 (percent).
    Each line of ``out_path`` is ``{ks, e, d, image_size, top1, peak_memory, bin}``,
    the format of the published accuracy records (``tests/data/accuracy``) plus the bin index; the plan is saved
    as ``<out_path>.plan.json``. Run it again with the same arguments after an
    interruption: it evaluates only what is missing.

    ``bins``: a number of equal-width bins between ``low`` and ``high`` (items or
    strings like ``"325k"``; default: the smallest and largest peaks of the space),
    or explicit edges. Returns a summary: counts per bin, bins that no draw could
    fill (``short_bins``: no subnet of the space may have a peak there), evaluations
    done by this call.
    """
    sp = get_space(space)
    model = _model_name(memory_model)
    if not callable(evaluate):
        raise TypeError(f"evaluate must be a callable config -> top1, got {type(evaluate).__name__}")
    if isinstance(n_per_bin, bool) or not isinstance(n_per_bin, numbers.Integral) or n_per_bin < 1:
        raise ValueError(f"n_per_bin must be a positive integer, got {n_per_bin!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(out_path, (str, os.PathLike)):
        raise TypeError(f"out_path must be a path, got {type(out_path).__name__}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan_path = out.with_name(out.name + ".plan.json")
    edges = bin_edges(sp, bins, low, high, memory_model=model)
    settings = {
        "space": sp.to_dict(),
        "n_per_bin": int(n_per_bin),
        "edges": edges.tolist(),
        "seed": int(seed),
        "memory_model": model,
        "max_draws": int(max_draws),
    }
    if plan_path.exists():
        try:
            plan = json.loads(plan_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{plan_path}: not valid JSON ({exc})") from None
        if plan.get("format") != PLAN_FORMAT or plan.get("settings") != settings:
            raise ValueError(
                f"{out} was started with other settings ({plan_path}); resume it with the "
                "same space, n_per_bin, bins/low/high, seed and memory_model, or use another "
                "out_path"
            )
        rows = np.array(plan["rows"], np.uint8).reshape(-1, sp.n_columns)
        row_bins = np.array(plan["bins"], np.int64)
        short = plan["short_bins"]
    else:
        if out.exists() and out.stat().st_size:
            raise ValueError(
                f"{out} already exists without a plan ({plan_path.name}): not a dataset this "
                "builder started; use another out_path"
            )
        rows, row_bins, short = plan_dataset(
            sp, int(n_per_bin), edges, seed=int(seed), memory_model=model, max_draws=int(max_draws), threads=threads
        )
        _write_json_atomic(
            plan_path,
            {
                "format": PLAN_FORMAT,
                "settings": settings,
                "rows": rows.tolist(),
                "bins": row_bins.tolist(),
                "short_bins": short,
            },
        )
    peaks = evaluator(sp, model).peaks(rows, threads) if len(rows) else np.zeros(0, np.int64)
    planned = {_key(r, sp): i for i, r in enumerate(rows)}
    done = _read_done(out)
    done_idx = set()
    for rec in done:
        try:
            i = planned[_config_key(rec, sp)]
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"{out} holds a record that is not in its plan: {rec!r}") from None
        if i in done_idx:
            raise ValueError(f"{out} holds the config of plan row {i} twice")
        done_idx.add(i)
    nets = decode(rows, sp) if len(rows) else []
    evaluated = 0
    with Progress(len(rows), "evaluating", enabled=progress, initial=len(done_idx)) as bar, open(out, "a") as f:
        for i, net in enumerate(nets):
            if i in done_idx:
                continue
            config = net.to_dict()
            top1 = evaluate(dict(config))
            if isinstance(top1, bool) or not isinstance(top1, numbers.Real) or not math.isfinite(top1):
                raise ValueError(f"evaluate(config) must return a finite top-1 (percent), got {top1!r} for {config}")
            rec = {**config, "top1": float(top1), "peak_memory": int(peaks[i]), "bin": int(row_bins[i])}
            f.write(json.dumps(rec) + "\n")  # one write per record, synced before the next evaluation
            f.flush()
            os.fsync(f.fileno())
            evaluated += 1
            bar.update(1)
    counts = np.bincount(row_bins, minlength=len(edges) - 1)
    return {
        "path": str(out),
        "plan": str(plan_path),
        "records": len(rows),
        "evaluated": evaluated,
        "per_bin": counts.tolist(),
        "edges": edges.tolist(),
        "short_bins": short,
    }
