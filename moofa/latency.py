"""Measured latency tables: what a subnet costs in milliseconds on this host, per block.

>>> import moofa.latency
>>> table = moofa.latency.build_table("moofa", path="moofa-latency.json")   # minutes; resumable
>>> table.predict(nets)                          # ms per subnet: the sum of its looked-up parts
>>> moofa.search("600k", max_latency_ms=20, latency_table=table)

A subnet's latency on one thread is close to additive over its parts: the stem (first conv
and first block) and head (final expand, pooling, feature mix, classifier) at its input
resolution, plus one figure per active block. A block's shapes depend on its stage and on
whether it is the stage's first block (which changes the width and applies the stride), so
the table holds one measured figure per (stage, first or other block, resolution, kernel,
expand) and one stem and head figure per resolution. Each figure is the median of
``repeats`` timed runs (after ``warmup`` runs), batch 1: by default (``method="context"``,
PyTorch) each part is timed by hooks inside whole forward passes of extracted subnets, so that
it runs with the cache state a whole network leaves it; ``method="standalone"`` runs each
part as its own module on an input of its real shape (warm in cache: lower figures).

Runtimes: ``"torch"`` (PyTorch eager on the CPU, ``torch.set_num_threads(threads)``, one
thread by default: the figures are then those of a single core and do not depend on the
other load's thread scheduling as much), and ``"onnxruntime"`` (each part exported to ONNX and
run by an ONNX Runtime CPU session with ``threads`` intra-op threads, standalone only; needs
the ``onnxruntime`` and ``onnx`` packages). Building a table needs torch; loading one and
predicting with it needs only numpy.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._encoding import spec
from ._ext import core
from ._io import atomic_write_text
from ._progress import Progress
from .spaces import Space, get_space
from .subnet import encode

__all__ = [
    "CLOCKS",
    "FORMAT",
    "METHODS",
    "RUNTIMES",
    "LatencyTable",
    "build_table",
    "host_cpu",
    "load_table",
    "measure",
    "measure_subnets",
    "median_table",
    "part_input_shapes",
    "resolve_table",
]

FORMAT = "moofa-latency-v1"
RUNTIMES = ("torch", "onnxruntime")
# How a table's parts are timed (see build_table) and with which clock.
METHODS = ("context", "standalone")
CLOCKS = ("wall", "cpu")
# Block positions in a stage: the first block (stage stride, width change) and the others.
POSITIONS = ("first", "other")
# A resumed build saves its progress at most this often (seconds).
_SAVE_EVERY_S = 2.0


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LatencyTable:
    """Per-part latencies of a space in milliseconds, measured on one host and runtime.

    ``stem_ms[r]`` and ``head_ms[r]``: per resolution index of ``space.resolutions``
    (NaN where not measured); ``blocks_ms[stage, position, r, k, e]`` with position 0 the
    stage's first block and 1 its other blocks (NaN where the stage has a single block or
    the resolution was not measured). ``info``: runtime, versions, threads, host CPU,
    measurement settings.
    """

    space: Space
    stem_ms: np.ndarray
    head_ms: np.ndarray
    blocks_ms: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        sp = self.space
        n_res, n_k, n_e = len(sp.resolutions), len(sp.kernels), len(sp.expands)
        shapes = {
            "stem_ms": (n_res,),
            "head_ms": (n_res,),
            "blocks_ms": (sp.n_stages, len(POSITIONS), n_res, n_k, n_e),
        }
        for name, shape in shapes.items():
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"LatencyTable.{name} must have shape {shape} for space {sp.name!r}, got {a.shape}")
            if np.any(a[~np.isnan(a)] < 0) or np.any(np.isinf(a)):
                raise ValueError(f"LatencyTable.{name} must hold finite times >= 0 (NaN: not measured)")
            a = a.copy()
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    # -- what was measured
    @property
    def resolutions(self) -> tuple[int, ...]:
        """The resolutions whose stem, head and blocks were all measured: the ones it can predict."""
        return tuple(r for i, r in enumerate(self.space.resolutions) if self._covers(i))

    def _covers(self, r: int) -> bool:
        if math.isnan(self.stem_ms[r]) or math.isnan(self.head_ms[r]):
            return False
        for s, stage in enumerate(self.space.stages):
            for p in range(min(stage.max_depth, len(POSITIONS))):
                if np.isnan(self.blocks_ms[s, p, r]).any():
                    return False
        return True

    @property
    def complete(self) -> bool:
        return len(self.resolutions) == len(self.space.resolutions)

    # -- the additive model
    def base_ms(self) -> np.ndarray:
        """Stem + head per resolution index (+inf where the table does not cover it)."""
        out = self.stem_ms + self.head_ms
        for r in range(len(out)):
            if not self._covers(r):
                out[r] = np.inf
        return out

    def slot_ms(self) -> np.ndarray:
        """Per block slot: ``(n_slots, n_resolutions, n_kernels, n_expands)`` (0 where not covered)."""
        sp = self.space
        rows = []
        for s, stage in enumerate(sp.stages):
            for j in range(stage.max_depth):
                rows.append(self.blocks_ms[s, min(j, 1)])
        out = np.stack(rows)
        covered = np.array([self._covers(r) for r in range(len(sp.resolutions))])
        out[:, ~covered] = 0.0
        return np.nan_to_num(out, nan=0.0)

    @functools.cached_property
    def cost(self):
        """The C++ lookup table (``moofa._core.AdditiveCost``) the searches limit."""
        if not self.resolutions:
            raise ValueError("the latency table covers no resolution of its space: build it first")
        return core.AdditiveCost(spec(self.space), self.base_ms(), self.slot_ms())

    def predict(self, nets) -> np.ndarray:
        """Predicted latency in ms (float64 array): stem + head + the active blocks' figures.

        ``nets``: Subnets, OFA-style dicts, or rows from ``moofa.encode``.
        """
        rows = encode(nets, self.space)
        covered = set(self.resolutions)
        if len(rows):
            res = {self.space.resolutions[i] for i in np.unique(rows[:, 0]).tolist()}
            missing = sorted(res - covered)
            if missing:
                raise ValueError(
                    f"image_size {missing[0]} is not covered by this latency table; "
                    f"allowed image sizes: {sorted(covered)}"
                )
        return self.cost.costs(rows)

    def min_ms(self) -> float:
        """The smallest latency any subnet of the space reaches by this table."""
        return float(self.cost.min_cost()[0])

    # -- files
    def to_dict(self) -> dict:
        sp = self.space
        entries: dict[str, float] = {}
        for key, where in _entry_keys(sp, range(len(sp.resolutions))):
            v = float(self._lookup(where))
            if not math.isnan(v):
                entries[key] = v
        return {"format": FORMAT, **self.info, "space": sp.to_dict(), "complete": self.complete, "entries": entries}

    def _lookup(self, where: tuple) -> float:
        if where[0] == "stem":
            return self.stem_ms[where[1]]
        if where[0] == "head":
            return self.head_ms[where[1]]
        _, s, p, r, k, e = where
        return self.blocks_ms[s, p, r, k, e]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict, space: str | Space | None = None, where: str = "latency table") -> LatencyTable:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: format must be {FORMAT!r}, got {found!r}")
        try:
            file_space = Space.from_dict(d["space"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: 'space' is not a moofa space description: {exc}") from None
        if space is not None:
            _check_same_space(get_space(space), file_space, where)
            file_space = get_space(space)
        entries = d.get("entries")
        if not isinstance(entries, dict):
            raise ValueError(f"{where}: 'entries' must be an object of measured times (ms)")
        stem, head, blocks = _empty_arrays(file_space)
        known = dict(_entry_keys(file_space, range(len(file_space.resolutions))))
        for key, value in entries.items():
            if key not in known:
                raise ValueError(f"{where}: unknown entry {key!r} (not a part of space {file_space.name!r})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{where}: entry {key!r} must be a finite time >= 0 in ms, got {value!r}")
            _store(known[key], float(value), stem, head, blocks)
        info = {k: v for k, v in d.items() if k not in ("format", "space", "complete", "entries")}
        return cls(file_space, stem, head, blocks, info)


def median_table(tables: Sequence[LatencyTable]) -> LatencyTable:
    """Per part, the median of several tables of one space (NaN where none measured it):
    tables built in rounds that alternate with other measurements, so that load on the host
    that comes and goes meets both alike. ``info`` is the first table's, with ``rounds``."""
    tables = list(tables)
    if not tables or not all(isinstance(t, LatencyTable) for t in tables):
        raise TypeError("tables must be a non-empty sequence of moofa.latency.LatencyTable")
    for t in tables[1:]:
        _check_same_space(tables[0].space, t.space, "median_table: a table")
    stem, head, blocks = (
        _nanmedian(np.stack([getattr(t, n) for t in tables])) for n in ("stem_ms", "head_ms", "blocks_ms")
    )
    return LatencyTable(tables[0].space, stem, head, blocks, info={**tables[0].info, "rounds": len(tables)})


def _nanmedian(stack: np.ndarray) -> np.ndarray:
    """``np.nanmedian`` over axis 0 without its warning for all-NaN cells (left NaN)."""
    out = np.full(stack.shape[1:], np.nan)
    some = ~np.isnan(stack).all(axis=0)
    out[some] = np.nanmedian(stack[:, some], axis=0)
    return out


def load_table(path: str | os.PathLike, space: str | Space | None = None) -> LatencyTable:
    """Read a table written by :func:`build_table` or :meth:`LatencyTable.save`; with
    ``space``, check that it was built for that space."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"latency table: {p} does not exist")
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"latency table: {p} is not JSON: {exc}") from None
    return LatencyTable.from_dict(d, space, where=f"latency table {p}")


def resolve_table(table, space: str | Space) -> LatencyTable:
    """A :class:`LatencyTable` from a table or a path, checked against ``space``."""
    sp = get_space(space)
    if isinstance(table, (str, os.PathLike)):
        return load_table(table, sp)
    if not isinstance(table, LatencyTable):
        raise TypeError(
            f"latency_table must be a moofa.latency.LatencyTable or a path to one, got {type(table).__name__}"
        )
    _check_same_space(sp, table.space, "latency_table")
    return table


def _check_same_space(expected: Space, found: Space, where: str) -> None:
    a, b = expected.to_dict(), found.to_dict()
    diff = [k for k in a if k not in ("name", "description") and a.get(k) != b.get(k)]
    if diff:
        raise ValueError(
            f"{where} was built for space {found.name!r}, which differs from space {expected.name!r} "
            f"in {diff[0]}: {b.get(diff[0])!r} vs {a.get(diff[0])!r}"
        )


def _empty_arrays(sp: Space) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_res = len(sp.resolutions)
    return (
        np.full(n_res, np.nan),
        np.full(n_res, np.nan),
        np.full((sp.n_stages, len(POSITIONS), n_res, len(sp.kernels), len(sp.expands)), np.nan),
    )


def _store(where: tuple, value: float, stem: np.ndarray, head: np.ndarray, blocks: np.ndarray) -> None:
    if where[0] == "stem":
        stem[where[1]] = value
    elif where[0] == "head":
        head[where[1]] = value
    else:
        _, s, p, r, k, e = where
        blocks[s, p, r, k, e] = value


def _num(v: float) -> str:
    return f"{v:g}"


def _entry_keys(sp: Space, res_indices: Iterable[int]) -> list[tuple[str, tuple]]:
    """Every part of the table as (JSON key, (kind, indices...)), in build order."""
    res_indices = list(res_indices)
    out: list[tuple[str, tuple]] = []
    for r in res_indices:
        size = sp.resolutions[r]
        out.append((f"stem/r{size}", ("stem", r)))
        out.append((f"head/r{size}", ("head", r)))
    for s, stage in enumerate(sp.stages):
        for p in range(min(stage.max_depth, len(POSITIONS))):
            for k, kernel in enumerate(sp.kernels):
                for e, expand in enumerate(sp.expands):
                    for r in res_indices:
                        size = sp.resolutions[r]
                        key = f"block/s{s}/{POSITIONS[p]}/r{size}/k{kernel}/e{_num(expand)}"
                        out.append((key, ("block", s, p, r, k, e)))
    return out


# --- shapes -------------------------------------------------------------------------------


def _out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def part_input_shapes(space: str | Space, image_size: int) -> dict[str, tuple[int, ...]]:
    """Batch-1 input shape of the stem, the head and every block position at ``image_size``:
    keys ``"stem"``, ``"head"``, ``"s{stage}/first"``, ``"s{stage}/other"``."""
    sp = get_space(space)
    size = _out(image_size, sp.first_conv_stride)  # the first block has stride 1
    shapes: dict[str, tuple[int, ...]] = {"stem": (1, sp.in_channels, image_size, image_size)}
    c = sp.first_block_width
    for s, stage in enumerate(sp.stages):
        shapes[f"s{s}/first"] = (1, c, size, size)
        size = _out(size, stage.stride)
        c = stage.width
        if stage.max_depth > 1:
            shapes[f"s{s}/other"] = (1, c, size, size)
    shapes["head"] = (1, c, size, size)
    return shapes


# --- measuring ------------------------------------------------------------------------------


def host_cpu() -> str:
    """The host's CPU model (from /proc/cpuinfo where there is one) and logical core count."""
    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_runtime(runtime) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnxruntime":
        import importlib.util

        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                f"runtime='onnxruntime' needs the {' and '.join(missing)} package: pip install {missing[0]}"
            )
    return runtime


def _check_choice(name: str, value, allowed: tuple) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _clock(name: str) -> Callable[[], int]:
    return time.perf_counter_ns if name == "wall" else time.thread_time_ns


class _Timer:
    """Times the parts of subnets on one runtime (median ms of ``repeats`` runs after ``warmup``)."""

    def __init__(self, runtime: str, threads: int, warmup: int, repeats: int, seed: int, clock: str):
        import torch

        self.torch = torch
        self.runtime, self.threads, self.warmup, self.repeats = runtime, threads, warmup, repeats
        self.clock = _clock(clock)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, module, shape: tuple[int, ...]) -> float:
        """One module on its own, run again and again on a random input of ``shape``."""
        torch = self.torch
        module = module.eval()
        x = torch.randn(shape, generator=self.generator)
        if self.runtime == "torch":
            with torch.inference_mode():
                return _median_ms(lambda: module(x), self.warmup, self.repeats, self.clock)
        return self._onnxruntime(module, x)

    def _onnxruntime(self, module, x) -> float:
        import io
        import warnings

        import onnxruntime as ort

        torch = self.torch
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        return _median_ms(lambda: session.run(None, feed), self.warmup, self.repeats, self.clock)

    def in_context(self, model, image_size: int, in_channels: int) -> np.ndarray:
        """Every part of an extracted subnet timed inside whole forward passes (PyTorch):
        ``[stem, block 0, ..., block n-1, head]`` in ms, each from its start to the next
        part's start (so the parts add up to the forward pass)."""
        torch = self.torch
        model = model.eval()
        clock = self.clock
        marks: list[int] = []

        def mark(*_) -> None:
            marks.append(clock())

        handles = [model.first_conv.register_forward_pre_hook(mark)]
        handles += [block.register_forward_pre_hook(mark) for block in model.blocks]
        handles.append(model.final_expand.register_forward_pre_hook(mark))
        handles.append(model.classifier.register_forward_hook(mark))
        x = torch.randn((1, in_channels, image_size, image_size), generator=self.generator)
        runs = []
        try:
            with torch.inference_mode():
                for i in range(self.warmup + self.repeats):
                    marks.clear()
                    model(x)
                    if i >= self.warmup:
                        runs.append(np.diff(np.array(marks, dtype=np.int64)))
        finally:
            for h in handles:
                h.remove()
        return np.median(np.stack(runs), axis=0) / 1e6


def _median_ms(run: Callable[[], Any], warmup: int, repeats: int, clock: Callable[[], int]) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t0 = clock()
        run()
        times.append(clock() - t0)
    return float(np.median(times)) / 1e6


class _Threads:
    """``torch.set_num_threads(n)`` for the duration of a block (restored afterwards)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_num_threads(self.previous)


def _check_settings(runtime, threads, warmup, repeats, clock) -> tuple[str, int, int, int, str]:
    return (
        _check_runtime(runtime),
        _check_int("threads", threads, 1),
        _check_int("warmup", warmup, 0),
        _check_int("repeats", repeats, 1),
        _check_choice("clock", clock, CLOCKS),
    )


def measure(
    module,
    input_shape: Sequence[int],
    runtime: str = "torch",
    *,
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    clock: str = "wall",
    seed: int = 0,
) -> float:
    """Median latency in ms of ``module`` (a torch ``nn.Module``, run in eval mode) on a
    random input of ``input_shape``."""
    runtime, threads, warmup, repeats, clock = _check_settings(runtime, threads, warmup, repeats, clock)
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a sequence of positive integers, got {type(input_shape).__name__}")
    shape = tuple(_check_int("input_shape[i]", v, 1) for v in input_shape)
    with _Threads(threads):
        return _Timer(runtime, threads, warmup, repeats, seed, clock)(module, shape)


def measure_subnets(
    nets,
    space: str | Space = "moofa",
    runtime: str = "torch",
    *,
    supernet=None,
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    clock: str = "wall",
    seed: int = 0,
    progress: bool | None = None,
) -> np.ndarray:
    """End-to-end latency in ms of every subnet (each extracted from ``supernet``, a new
    randomly initialised ``moofa.nn.Supernet(space)`` by default, and run whole on a batch-1
    input): the ground truth a table's :meth:`~LatencyTable.predict` approximates."""
    from .nn import Supernet
    from .subnet import decode

    sp = get_space(space)
    runtime, threads, warmup, repeats, clock = _check_settings(runtime, threads, warmup, repeats, clock)
    subnets = decode(encode(nets, sp), sp)
    if supernet is not None:
        _check_same_space(sp, supernet.space, "supernet")
    sup = Supernet(sp) if supernet is None else supernet
    out = np.empty(len(subnets))
    with _Threads(threads), Progress(len(subnets), f"latency {sp.name}", progress) as bar:
        timer = _Timer(runtime, threads, warmup, repeats, seed, clock)
        for i, net in enumerate(subnets):
            model = sup.extract(net).eval()
            out[i] = timer(model, (1, sp.in_channels, net.image_size, net.image_size))
            bar.update(1)
    return out


# --- building ---------------------------------------------------------------------------------


def _settings(runtime: str, method: str, threads: int, warmup: int, repeats: int, clock: str) -> dict:
    import torch

    info: dict[str, Any] = {
        "runtime": runtime,
        "torch_version": torch.__version__,
        "threads": threads,
        "cpu": host_cpu(),
        "platform": platform.platform(),
        "settings": {
            "method": method,
            "batch": 1,
            "warmup": warmup,
            "repeats": repeats,
            "statistic": "median",
            "clock": clock,
            "unit": "ms",
        },
    }
    if runtime == "onnxruntime":
        import onnxruntime

        info["onnxruntime_version"] = onnxruntime.__version__
    return info


def _head_module(model):
    """Final expand -> pooling -> feature mix -> classifier of an extracted subnet, as one module."""
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.final_expand = model.final_expand
            self.feature_mix = model.feature_mix
            self.classifier = model.classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True))
            return self.classifier(torch.flatten(x, 1))

    return Head()


def _context_subnet(sp: Space, k: int, e: int, r: int):
    """The subnet whose every block has kernel index k and expand index e, as deep as the
    space allows with that expand (None when no depth of a coupled space has it)."""
    from .subnet import Subnet

    depths = list(sp.depths)
    if sp.expand_by_depth:
        depths = [d for d, ratio in sp.expand_by_depth.items() if ratio == sp.expands[e]]
        if not depths:
            return None
    d = max(depths)
    return Subnet(
        ks=[sp.kernels[k]] * sp.n_slots,
        e=[sp.expands[e]] * sp.n_slots,
        d=[min(d, stage.max_depth) for stage in sp.stages],
        image_size=sp.resolutions[r],
    )


def build_table(
    space: str | Space = "moofa",
    runtime: str = "torch",
    *,
    path: str | os.PathLike | None = None,
    resolutions: Sequence[int] | None = None,
    method: str | None = None,
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    clock: str = "wall",
    seed: int = 0,
    supernet=None,
    progress: bool | None = None,
) -> LatencyTable:
    """Measure every part of ``space`` on this host: stem and head per resolution, and each
    block position (per stage: first block, other blocks) x kernel x expand x resolution.

    ``method``: ``"context"`` (PyTorch only, its default) times every part inside whole
    forward passes of extracted subnets, one subnet per (kernel, expand, resolution) with
    every block set to it, so each part runs with the cache state a whole network leaves;
    ``"standalone"`` (the only one for ONNX Runtime) runs each part as its own module
    again and again, warm in cache, which underestimates a whole network's latency.
    ``clock``: ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (the calling thread's CPU
    time, ``time.thread_time``: with one thread, robust to other load on the host).
    ``resolutions``: a subset of the space's (default: all); the table predicts only those.
    ``path``: the JSON file to write, atomically, every few seconds and at the end; a build
    that finds its file (same space, runtime, threads and settings) resumes from it.
    ``supernet``: a ``moofa.nn.Supernet`` of the space to take the modules from (default: a
    new one; latency does not depend on the weights' values). Needs torch.
    """
    sp = get_space(space)
    runtime, threads, warmup, repeats, clock = _check_settings(runtime, threads, warmup, repeats, clock)
    if method is None:
        method = "context" if runtime == "torch" else "standalone"
    _check_choice("method", method, METHODS)
    if method == "context" and runtime != "torch":
        raise ValueError(f"method='context' times parts with PyTorch hooks: use runtime='torch', got {runtime!r}")
    if resolutions is None:
        res_idx = list(range(len(sp.resolutions)))
    else:
        sizes = [resolutions] if isinstance(resolutions, numbers.Integral) else list(resolutions)
        bad = [r for r in sizes if r not in sp.resolutions]
        if not sizes or bad:
            raise ValueError(
                f"resolutions must be a non-empty subset of {list(sp.resolutions)} (space {sp.name!r}), got {sizes!r}"
            )
        res_idx = sorted({sp.resolutions.index(int(r)) for r in sizes})
    if supernet is not None:
        _check_same_space(sp, supernet.space, "supernet")
    info = _settings(runtime, method, threads, warmup, repeats, clock)
    stem, head, blocks = _empty_arrays(sp)
    done: set[str] = set()
    if path is not None and Path(path).exists():
        old = load_table(path, sp)
        for name in ("runtime", "threads", "settings"):
            if old.info.get(name) != info[name]:
                raise ValueError(
                    f"latency table {path} was measured with {name}={old.info.get(name)!r}, not {info[name]!r}: "
                    "pass the same settings to resume it, or another path"
                )
        done = set(old.to_dict()["entries"])
        stem, head, blocks = (np.array(a) for a in (old.stem_ms, old.head_ms, old.blocks_ms))
    todo = [(key, where) for key, where in _entry_keys(sp, res_idx) if key not in done]

    def table() -> LatencyTable:
        return LatencyTable(sp, stem, head, blocks, info)

    if not todo:
        return table()

    from .nn import Supernet

    sup = Supernet(sp) if supernet is None else supernet
    groups = _context_groups(sp, todo) if method == "context" else []
    in_groups = {key for _, _, keys in groups for key, _ in keys}
    alone = [(key, where) for key, where in todo if key not in in_groups]
    state = {"saved": time.perf_counter()}

    def measured(where: tuple, value: float, bar: Progress) -> None:
        _store(where, value, stem, head, blocks)
        bar.update(1)
        if path is not None and time.perf_counter() - state["saved"] >= _SAVE_EVERY_S:
            table().save(path)
            state["saved"] = time.perf_counter()

    with _Threads(threads), Progress(len(todo), f"latency table {sp.name}", progress) as bar:
        timer = _Timer(runtime, threads, warmup, repeats, seed, clock)
        try:
            for net, block_pos, keys in groups:
                parts = timer.in_context(sup.extract(net), net.image_size, sp.in_channels)
                for _, where in keys:
                    if where[0] == "stem":
                        value = parts[0]
                    elif where[0] == "head":
                        value = parts[-1]
                    else:
                        value = float(np.mean([parts[1 + i] for i, sp_ in enumerate(block_pos) if sp_ == where[1:3]]))
                    measured(where, float(value), bar)
            _measure_alone(sp, sup, timer, alone, lambda where, v: measured(where, v, bar))
        finally:
            # Whatever was measured (also on Ctrl-C or an error) is kept for a resume.
            if path is not None:
                table().save(path)
    return table()


def _context_groups(sp: Space, todo: list) -> list[tuple[Any, list, list]]:
    """The context subnets that measure the entries of ``todo``: (subnet, (stage, position) of
    each of its blocks, the entries it measures). Stem and head go with the first (k, e)."""
    by_group: dict[tuple[int, int, int], list] = {}
    for key, where in todo:
        if where[0] == "block":
            _, _, _, r, k, e = where
        else:
            r, k, e = where[1], 0, 0
        by_group.setdefault((r, k, e), []).append((key, where))
    groups = []
    for (r, k, e), keys in by_group.items():
        net = _context_subnet(sp, k, e, r)
        if net is None:
            continue
        block_pos = [(s, min(j, 1)) for s, d in enumerate(net.d) for j in range(d)]
        reached = set(block_pos)
        keys = [(key, w) for key, w in keys if w[0] != "block" or tuple(w[1:3]) in reached]
        groups.append((net, block_pos, keys))
    return groups


def _measure_alone(sp: Space, sup, timer: _Timer, todo: list, store: Callable[[tuple, float], None]) -> None:
    """Each entry's part as its own module (``method="standalone"``, and under the context
    method the rare parts no context subnet reaches: a coupled space whose expand comes only
    with depth 1 has no "other" block at that expand)."""
    shapes = {r: part_input_shapes(sp, size) for r, size in enumerate(sp.resolutions)}
    module_key = None
    module: Any = None
    for _, where in todo:
        want = ("fixed",) if where[0] in ("stem", "head") else where[1:3] + where[4:6]
        if want != module_key:
            module, module_key = _part_module(sup, sp, where), want
        if where[0] == "block":
            shape = shapes[where[3]][f"s{where[1]}/{POSITIONS[where[2]]}"]
            store(where, timer(module, shape))
        else:
            store(where, timer(module[where[0]], shapes[where[1]][where[0]]))


def _part_module(sup, sp: Space, where: tuple):
    """The module(s) measured for a table entry: {'stem', 'head'} or one block."""
    from torch import nn

    if where[0] in ("stem", "head"):
        model = sup.extract(sup.smallest_subnet())
        return {"stem": nn.Sequential(model.first_conv, model.first_block), "head": _head_module(model)}
    _, s, p, _, k, e = where
    block = sup.elastic_blocks[sup.stage_slots[s][p]]
    block.set_active(sp.kernels[k], sp.expands[e])
    try:
        return block.extract()
    finally:
        block.set_active(*_active_of(sup, sup.stage_slots[s][p]))


def _active_of(sup, slot: int) -> tuple:
    return sup.active.ks[slot], sup.active.e[slot]
