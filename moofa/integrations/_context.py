"""What every plug-in shares: a space, its constraints and batched C++ evaluation of rows.

``Context`` turns optimiser variables (the free columns of the compact encoding) into
encoded rows, fills the columns a coupled space derives (CompOFA's expand from depth),
and scores rows with the predictor's C++ scorer and the C++ memory evaluator, one call
each per batch. It also encodes OFA-style config dicts one at a time without the general
(validating, allocating) path, for tools that ask about one subnet per call.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._encoding import Columns, columns, spec
from .._ext import core
from ..memory import _model_name, evaluator
from ..search import _budget_items, _limit, _resolve_predictor
from ..spaces import Space, get_space
from ..subnet import Subnet, _as_rows, decode, encode

__all__ = ["OBJECTIVES", "Context", "check_objectives", "missing"]

# Built-in objectives: name -> (what it is, sense). top1 is maximised, the others minimised.
OBJECTIVES = {
    "top1": "predicted top-1 (%), maximised",
    "peak": "peak memory under the memory model, minimised",
    "mflops": "MFLOPs (multiply-accumulates / 1e6), minimised",
    "params": "parameters, minimised",
}


def missing(package: str) -> ImportError:
    return ImportError(f"this moofa plug-in needs {package}: pip install 'moofa[integrations]'", name=package)


class Context:
    """A space, an optional peak budget and other limits, a predictor, batched evaluation."""

    space: Space
    memory_model: str
    budget: int | None
    max_mflops: float | None
    max_params: int | None
    threads: int
    evaluator: Any
    spec: Any
    cols: Columns
    limits: np.ndarray
    coupled: bool
    free: np.ndarray
    slot_depth_col: np.ndarray
    slot_pos: np.ndarray
    depth_values: np.ndarray
    coupled_e: np.ndarray
    _res: dict
    _dep: dict
    _ker: dict
    _exp: dict
    objectives: tuple[str, ...]
    _custom: dict[str, Callable]
    _need: tuple[str, ...]

    def __init__(
        self,
        space: str | Space = "moofa",
        budget=None,
        *,
        predictor=None,
        memory_model: str = "full",
        bytes_per_item: float | None = None,
        max_mflops: float | None = None,
        max_params: int | None = None,
        threads: int = 0,
        need_predictor: bool = True,
        objectives=None,
    ):
        # The plug-ins' objectives (see check_objectives): the predictor is then needed
        # only for "top1".
        objs = [] if objectives is None else check_objectives(objectives)
        builtin = [name for name, fn in objs if fn is None]
        if objectives is not None:
            need_predictor = "top1" in builtin
        self.objectives = tuple(name for name, _ in objs)
        self._custom = {name: fn for name, fn in objs if fn is not None}
        self.space = sp = get_space(space)
        self.memory_model = model = _model_name(memory_model)
        self.budget = None if budget is None else _budget_items(budget, sp, model, bytes_per_item)
        self.max_mflops = _limit("max_mflops", max_mflops, float)
        self.max_params = _limit("max_params", max_params, int)
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise ValueError(f"threads must be a non-negative integer (0: automatic), got {threads!r}")
        self.threads = int(threads)
        self.evaluator = evaluator(sp, model)
        self._predictor_arg = predictor
        self._scorer: Any = _resolve_predictor(predictor, sp, "rows") if need_predictor else None
        self.spec = spec(sp)
        cols = self.cols = columns(sp)
        n = cols.n
        self.limits = np.asarray(self.spec.column_limits, dtype=np.int64)
        coupled = bool(sp.expand_by_depth)
        self.coupled = coupled
        expand_cols = np.arange(cols.expand.start, cols.expand.stop)
        self.free = np.setdiff1d(np.arange(n), expand_cols) if coupled else np.arange(n)
        self.slot_depth_col = cols.slot_depth_column
        # Position of every slot inside its stage, and the depth value of each depth index.
        first = self.spec.stage_first_slot
        self.slot_pos = np.array([j - first[s] for j, s in enumerate(cols.slot_stage)], dtype=np.int64)
        self.depth_values = np.asarray(sp.depths, dtype=np.int64)
        if coupled:
            assert sp.expand_by_depth is not None
            self.coupled_e = np.array([sp.expands.index(sp.expand_by_depth[d]) for d in sp.depths], dtype=np.uint8)
        else:
            self.coupled_e = np.zeros(len(sp.depths), dtype=np.uint8)
        # One-config encoding maps (value -> index); ints and floats hash alike (4 == 4.0).
        self._res = {r: i for i, r in enumerate(sp.resolutions)}
        self._dep = {d: i for i, d in enumerate(sp.depths)}
        self._ker = {k: i for i, k in enumerate(sp.kernels)}
        self._exp = {e: i for i, e in enumerate(sp.expands)}
        self._need = self.needs(builtin)

    # --- rows -----------------------------------------------------------------------------

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = _resolve_predictor(self._predictor_arg, self.space, "rows")
        return self._scorer

    def rows_from_x(self, X) -> np.ndarray:
        """uint8 rows from optimiser variables (one per free column; floats are rounded and
        everything is clipped to the column's range); a coupled space's expand is set from depth."""
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != len(self.free):
            raise ValueError(f"X must have shape (n, {len(self.free)}) for space {self.space.name!r}, got {X.shape}")
        if not np.issubdtype(X.dtype, np.integer):
            if not np.issubdtype(X.dtype, np.number):
                raise TypeError(f"X must be numeric, got dtype {X.dtype}")
            X = np.rint(X)
        hi = self.limits[self.free] - 1
        if X.size and (X.min() < 0 or (X > hi).any()):
            X = np.clip(X, 0, hi)
        if not self.coupled:
            return np.ascontiguousarray(X, dtype=np.uint8)
        rows = np.empty((X.shape[0], self.cols.n), dtype=np.uint8)
        rows[:, self.free] = X
        rows[:, self.cols.expand] = self.coupled_e[rows[:, self.slot_depth_col]]
        return rows

    def x_from_rows(self, rows) -> np.ndarray:
        """Optimiser variables (int64) of encoded rows."""
        return _as_rows(np.asarray(rows), self.space)[:, self.free].astype(np.int64)

    def canonical(self, rows) -> np.ndarray:
        """Rows with the slots beyond each stage's depth reset (smallest kernel; smallest or
        coupled expand): one row per distinct subnet."""
        rows = np.array(_as_rows(np.asarray(rows), self.space), dtype=np.uint8, copy=True)
        depth_idx = rows[:, self.slot_depth_col]
        idle = self.slot_pos[None, :] >= self.depth_values[depth_idx]
        kernel = rows[:, self.cols.kernel]  # views: assignments write into rows
        kernel[idle] = 0
        expand = rows[:, self.cols.expand]
        expand[idle] = self.coupled_e[depth_idx][idle]
        return rows

    def subnets(self, rows) -> list[Subnet]:
        return decode(self.canonical(rows), self.space)

    def encode(self, nets) -> np.ndarray:
        """Rows of Subnets, OFA-style dicts (idle 0/None filled, coupled e set from d) or
        an encoded array."""
        if isinstance(nets, np.ndarray):
            rows = _as_rows(nets, self.space)
            self.spec.check_rows(rows)
            return rows
        if isinstance(nets, (Subnet, Mapping)):
            nets = [nets]
        if not len(nets):
            return np.zeros((0, self.cols.n), dtype=np.uint8)
        return np.stack([self.config_row(n) for n in nets])

    def config_row(self, cfg) -> np.ndarray:
        """One encoded row of an OFA-style dict or Subnet (a fast path for one config)."""
        try:
            return self._fast_row(cfg)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError):
            pass
        # The general path names what is wrong.
        net = Subnet.from_dict(cfg, self.space) if not isinstance(cfg, Subnet) else cfg
        return encode(net.coupled(self.space), self.space)[0]

    def _fast_row(self, cfg) -> np.ndarray:
        if isinstance(cfg, Subnet):
            ks, e, d, size = cfg.ks, cfg.e, cfg.d, cfg.image_size
        else:
            ks, e, d = cfg["ks"], cfg["e"], cfg["d"]
            size = cfg["image_size"] if "image_size" in cfg else cfg["r"]
            if isinstance(size, (list, tuple)):
                (size,) = size
        sp, cols = self.space, self.cols
        if len(ks) != sp.n_slots or len(e) != sp.n_slots or len(d) != sp.n_stages:
            raise ValueError("lengths")
        if isinstance(size, bool):
            raise TypeError("image_size")
        row = bytearray(cols.n)
        row[cols.resolution] = self._res[size]
        dep, ker, exp = self._dep, self._ker, self._exp
        o_d, o_k, o_e = cols.depth.start, cols.kernel.start, cols.expand.start
        slot = 0
        for s, stage in enumerate(sp.stages):
            dd = d[s]
            if isinstance(dd, bool):
                raise TypeError("d")
            di = dep[dd]
            row[o_d + s] = di
            ce = int(self.coupled_e[di])
            for j in range(stage.max_depth):
                k, x = ks[slot], e[slot]
                if j < dd:
                    if isinstance(k, bool) or isinstance(x, bool):
                        raise TypeError("bool")
                    row[o_k + slot] = ker[k]
                    row[o_e + slot] = ce if self.coupled else exp[x]
                else:
                    if not (k is None or k == 0 or k in ker) or not (x is None or x == 0 or x in exp):
                        raise ValueError("idle")
                    row[o_e + slot] = ce
                slot += 1
        return np.frombuffer(bytes(row), dtype=np.uint8)

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(self, rows: np.ndarray, need: Sequence[str]) -> dict[str, np.ndarray]:
        """The arrays of ``need`` ("top1", "peak", "mflops", "params") for encoded rows: one
        C++ call per array (one for mflops and params together)."""
        out: dict[str, np.ndarray] = {}
        if "top1" in need:
            sc = self.scorer
            fn: Any = getattr(sc, "score", None) if isinstance(sc, core.Scorer) else None
            if fn is not None:  # a C++ scorer
                out["top1"] = fn(rows, self.threads)
            else:  # a callable on encoded rows
                out["top1"] = np.asarray(sc(rows), dtype=np.float64).reshape(len(rows))
        if "mflops" in need or "params" in need:
            prof = self.evaluator.profiles(rows, threads=self.threads, with_hist=False)
            out.update(peak=prof["peak"], mflops=prof["mflops"], params=prof["params"])
        elif "peak" in need:
            out["peak"] = self.evaluator.peaks(rows, threads=self.threads)
        return out

    def evaluate_objectives(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every objective's and constraint's values of encoded rows, by name (the built-in
        ones as :meth:`evaluate`, the others by their functions)."""
        vals = self.evaluate(rows, self._need)
        for name, fn in self._custom.items():
            vals[name] = np.asarray(fn(rows), dtype=np.float64).reshape(len(rows))
        return vals

    def constraint_names(self) -> list[str]:
        names = []
        if self.budget is not None:
            names.append("peak")
        if self.max_mflops is not None:
            names.append("mflops")
        if self.max_params is not None:
            names.append("params")
        return names

    def constraint_values(self, vals: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, n_constraints) values, <= 0 where satisfied (pymoo's and optuna's convention)."""
        limits = {"peak": self.budget, "mflops": self.max_mflops, "params": self.max_params}
        cols = [np.asarray(vals[k], dtype=np.float64) - float(limits[k] or 0) for k in self.constraint_names()]
        n = len(next(iter(vals.values()))) if vals else 0
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    def needs(self, objectives: Sequence[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*objectives, *self.constraint_names()]))

    def feasible(self, rows: np.ndarray) -> np.ndarray:
        vals = self.evaluate(rows, self.constraint_names())
        g = self.constraint_values(vals)
        return np.all(g <= 0, axis=1) if g.shape[1] else np.ones(len(rows), dtype=bool)


def check_objectives(objectives) -> list[tuple[str, Callable | None]]:
    """Objectives as (name, None) for the built-in ones and (name, function of encoded rows)
    for the others, in order; ValueError for anything else."""
    if isinstance(objectives, str) or (
        isinstance(objectives, tuple) and len(objectives) == 2 and callable(objectives[1])
    ):
        objectives = (objectives,)
    out: list[tuple[str, Callable | None]] = []
    for o in objectives:
        if isinstance(o, str) and o in OBJECTIVES:
            out.append((o, None))
        elif isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) and callable(o[1]):
            out.append((o[0], o[1]))
        else:
            raise ValueError(
                f"objectives: {o!r} is not one of {list(OBJECTIVES)} or a (name, function of encoded rows) pair "
                "(e.g. a latency table's lookup), minimised"
            )
    if not out:
        raise ValueError(f"objectives must name at least one of {list(OBJECTIVES)}")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"objectives must be distinct, got {names}")
    return out
