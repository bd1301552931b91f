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

import glob
import json
import math
import numbers
import os
import sys
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

__all__ = ["append_record", "bin_edges", "build_dataset", "dataset_main", "plan_dataset", "shard_path"]

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


def _read_lines(path: Path, repair: bool) -> list[str]:
    """The complete lines of ``path`` (none if it is missing). A last line cut by a crash is
    dropped; with ``repair`` it is also cut from the file (only the file's own writer may)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    cut = data.rfind(b"\n") + 1
    if cut != len(data) and repair:  # partial last line: the evaluation it held is redone
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
    return [line for line in data[:cut].decode().splitlines() if line.strip()]


def _parse(path: Path, lines: list[str]) -> list[dict]:
    records = []
    for lineno, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}:{lineno}: not valid JSON ({exc}); the file is not a dataset this builder wrote"
            ) from None
    return records


def _read_done(out: Path) -> list[dict]:
    """Records already written; a last line cut by a crash is dropped from the file."""
    return _parse(out, _read_lines(out, repair=True))


def append_record(f, record: dict) -> None:
    """Append ``record`` as one JSON line to the open text file ``f``, flushed and synced: a
    crash leaves at most a torn last line, which the readers here drop."""
    f.write(json.dumps(record) + "\n")  # one write per record
    f.flush()
    os.fsync(f.fileno())


def shard_path(out: str | os.PathLike, rank: int, world_size: int) -> Path:
    """The file rank ``rank`` of ``world_size`` appends its records to: ``<out>.shard-<r>-of-<w>.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.name}.shard-{int(rank)}-of-{int(world_size)}.jsonl")


def _shards(out: Path) -> list[Path]:
    return sorted(out.parent.glob(glob.escape(out.name) + ".shard-*-of-*.jsonl"))


def _world(rank, world_size) -> tuple[int, int]:
    """(rank, world size): the arguments, else torchrun's ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    if isinstance(world_size, bool) or not isinstance(world_size, numbers.Integral) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    world = int(world_size)
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= int(rank) < world:
        raise ValueError(f"rank must be an integer in [0, world_size={world}), got {rank!r}")
    return int(rank), world


def _torch_barrier() -> Callable[[], None] | None:
    """``torch.distributed.barrier`` when a process group is up (never imports torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.barrier
    return None


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
    rank: int | None = None,
    world_size: int | None = None,
    barrier: Callable[[], None] | None = None,
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

    Several processes (``torchrun``: ``rank``/``world_size`` default to its ``RANK`` and
    ``WORLD_SIZE``): process ``r`` of ``w`` evaluates the plan rows ``i`` with ``i % w == r``
    that no file holds yet, appending each record to ``<out_path>.shard-<r>-of-<w>.jsonl``;
    once every row is done, the shards are merged into ``out_path`` in plan order (the same
    bytes one process writes for the same seed, if ``evaluate`` gives a subnet the same top-1
    on every process) and removed. ``barrier`` (default: ``torch.distributed.barrier`` when a
    process group is up) lets rank 0 alone plan and merge while the others wait; without one
    each process plans (the plan is a function of the seed) and the last to finish merges.
    A rerun after any process was killed evaluates only the rows no shard holds, with any
    number of processes.
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
    if barrier is not None and not callable(barrier):
        raise TypeError(f"barrier must be a callable or None, got {type(barrier).__name__}")
    rank, world = _world(rank, world_size)
    if barrier is None and world > 1:
        barrier = _torch_barrier()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    edges = bin_edges(sp, bins, low, high, memory_model=model)
    settings = {
        "space": sp.to_dict(),
        "n_per_bin": int(n_per_bin),
        "edges": edges.tolist(),
        "seed": int(seed),
        "memory_model": model,
        "max_draws": int(max_draws),
    }
    if world > 1 and barrier is not None:
        if rank == 0:
            rows, row_bins, short, plan_path = _load_or_plan(sp, out, settings, threads)
        barrier()  # the others read the plan rank 0 wrote
        if rank != 0:
            rows, row_bins, short, plan_path = _load_or_plan(sp, out, settings, threads)
    else:
        rows, row_bins, short, plan_path = _load_or_plan(sp, out, settings, threads)
    peaks = evaluator(sp, model).peaks(rows, threads) if len(rows) else np.zeros(0, np.int64)
    planned = {_key(r, sp): i for i, r in enumerate(rows)}
    nets = decode(rows, sp) if len(rows) else []

    def record(i: int) -> dict:
        config = nets[i].to_dict()
        top1 = evaluate(dict(config))
        if isinstance(top1, bool) or not isinstance(top1, numbers.Real) or not math.isfinite(top1):
            raise ValueError(f"evaluate(config) must return a finite top-1 (percent), got {top1!r} for {config}")
        return {**config, "top1": float(top1), "peak_memory": int(peaks[i]), "bin": int(row_bins[i])}

    sharded = world > 1 or bool(_shards(out))
    merged = False
    if not sharded:  # one process, straight into out_path
        done = _index(out, _read_done(out), planned, sp)
        todo = [i for i in range(len(rows)) if i not in done]
        evaluated = _evaluate_into(out, todo, record, progress, len(done))
        merged = True
    else:
        own = shard_path(out, rank, world)
        _read_lines(own, repair=True)  # this process's torn last line, if any
        done = _done_everywhere(out, planned, sp)
        todo = [i for i in range(len(rows)) if i % world == rank and i not in done]
        evaluated = _evaluate_into(own, todo, record, progress, len(rows) - len(todo))
        if barrier is not None:
            barrier()  # every shard complete
            if rank == 0:
                merged = _merge(out, planned, sp, len(rows))
            barrier()  # merged before anyone returns
        else:
            merged = _merge(out, planned, sp, len(rows))  # the last process to finish succeeds
    counts = np.bincount(row_bins, minlength=len(edges) - 1)
    return {
        "path": str(out),
        "plan": str(plan_path),
        "records": len(rows),
        "evaluated": evaluated,
        "per_bin": counts.tolist(),
        "edges": edges.tolist(),
        "short_bins": short,
        "rank": rank,
        "world_size": world,
        "merged": merged,
    }


def _load_or_plan(sp: Space, out: Path, settings: dict, threads: int):
    """The plan saved beside ``out`` (checked against ``settings``), or a new one, saved."""
    plan_path = out.with_name(out.name + ".plan.json")
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
        return rows, np.array(plan["bins"], np.int64), plan["short_bins"], plan_path
    if out.exists() and out.stat().st_size:
        raise ValueError(
            f"{out} already exists without a plan ({plan_path.name}): not a dataset this builder started; "
            "use another out_path"
        )
    edges = np.asarray(settings["edges"], np.float64)
    rows, row_bins, short = plan_dataset(
        sp,
        settings["n_per_bin"],
        edges,
        seed=settings["seed"],
        memory_model=settings["memory_model"],
        max_draws=settings["max_draws"],
        threads=threads,
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
    return rows, row_bins, short, plan_path


def _index(path: Path, records: list[dict], planned: dict, sp: Space) -> dict[int, dict]:
    """Plan row -> record; a record outside the plan, or a row held twice, is an error."""
    done: dict[int, dict] = {}
    for rec in records:
        try:
            i = planned[_config_key(rec, sp)]
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"{path} holds a record that is not in its plan: {rec!r}") from None
        if i in done:
            raise ValueError(f"{path} holds the config of plan row {i} twice")
        done[i] = rec
    return done


def _done_everywhere(out: Path, planned: dict, sp: Space) -> dict[int, str]:
    """Plan row -> its record's line, from ``out`` and every shard (any world size), read only.
    The same row in two files must hold the same record (a deterministic evaluation)."""
    done: dict[int, str] = {}
    for path in [out, *_shards(out)]:
        recs = _parse(path, _read_lines(path, repair=False))
        for i, rec in _index(path, recs, planned, sp).items():
            line = json.dumps(rec)
            if i in done and json.loads(done[i]) != rec:
                raise ValueError(f"{path} and another file hold different records for plan row {i}: {rec!r}")
            done.setdefault(i, line)
    return done


def _evaluate_into(path: Path, todo: list[int], record: Callable[[int], dict], progress: bool, initial: int) -> int:
    with Progress(initial + len(todo), "evaluating", enabled=progress, initial=initial) as bar, open(path, "a") as f:
        for i in todo:
            append_record(f, record(i))  # synced before the next evaluation starts
            bar.update(1)
    return len(todo)


def _merge(out: Path, planned: dict, sp: Space, n_rows: int) -> bool:
    """When every plan row is in ``out`` or a shard: write ``out`` in plan order (atomically),
    remove the shards and return True; else leave everything as it is and return False."""
    done = _done_everywhere(out, planned, sp)
    if len(done) < n_rows:
        return False
    atomic_write_text(out, "".join(done[i] + "\n" for i in range(n_rows)))
    for shard in _shards(out):
        try:
            shard.unlink()
        except FileNotFoundError:  # another process merged at the same time
            pass
    return True


def _dataset_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="moofa build-dataset",
        description="Measure a balanced set of subnets of a trained supernet (BN recalibrated, top-1 on the "
        "validation split); under torchrun the processes split the plan.",
    )
    p.add_argument("supernet", help="trained supernet weights (supernet.npz + .json, as moofa train writes them)")
    p.add_argument("--out", required=True, help="the JSONL data set to write (run again to resume)")
    p.add_argument(
        "--config",
        help="training config whose data, batch_size, calib_batches and crop_scale to use (default: config.json "
        "beside the weights, else digits and the TrainConfig defaults)",
    )
    p.add_argument("--data", help="digits, synthetic or a folder with train/ and val/ (default: the config's)")
    p.add_argument("--n-per-bin", type=int, default=100, help="subnets per peak-memory bin (default: %(default)s)")
    p.add_argument("--bins", type=int, default=10, help="peak-memory bins (default: %(default)s)")
    p.add_argument("--low", help="lower edge of the bins: items or '300k' (default: the smallest peak)")
    p.add_argument("--high", help="upper edge of the bins (default: the largest peak)")
    p.add_argument("--seed", type=int, default=0, help="seed of the plan and the calibration batches (default: 0)")
    p.add_argument("--memory-model", default="full", help="peak-memory model of the bins (default: %(default)s)")
    p.add_argument("--device", help="cpu, cuda, ... (default: this process's GPU if any, else cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: one on rank 0)")
    return p


def dataset_main(argv: Sequence[str] | None = None) -> int:
    """``moofa build-dataset`` (see ``--help``); ``torchrun --nproc-per-node N -m moofa build-dataset ...``
    splits the plan over N processes (Gloo on CPU, NCCL on GPU for the barriers). Returns the
    exit status; a process of a torchrun job leaves through ``os._exit`` once its process group
    is destroyed (Gloo's threads can abort an ordinary interpreter teardown)."""
    args = _dataset_parser().parse_args(argv)
    from ._deps import missing_torch

    if missing_torch("build-dataset"):
        return 2
    import torch
    import torch.distributed as dist

    from .nn import Supernet
    from .pipeline import SubnetEvaluator
    from .train import load_config

    rank, world = _world(None, None)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = args.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if isinstance(args.threads, bool) or args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    torch.set_num_threads(args.threads)
    weights = Path(args.supernet)
    config = args.config
    if config is None and (weights.parent / "config.json").is_file():
        config = json.loads((weights.parent / "config.json").read_text())
    cfg = load_config(config if config is not None else {"phases": [{"name": "none", "epochs": 1, "lr": 0}]})
    data = args.data or cfg.data
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        supernet = Supernet.load(weights).to(device)
        evaluate = SubnetEvaluator.for_config(supernet, cfg, seed=args.seed, data=data)
        summary = build_dataset(
            supernet.space,
            evaluate,
            args.out,
            n_per_bin=args.n_per_bin,
            bins=args.bins,
            low=args.low,
            high=args.high,
            seed=args.seed,
            memory_model=args.memory_model,
            progress=not args.no_progress and rank == 0,
            rank=rank,
            world_size=world,
        )
        if rank == 0:
            print(json.dumps(summary))
        status = 0
    finally:
        if own_group:
            dist.destroy_process_group()
    if own_group:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status
