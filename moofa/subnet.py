"""Subnet configurations (OFA-style dicts) and their compact batch encoding."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._encoding import columns, spec
from .spaces import Space, get_space

__all__ = ["Subnet", "column_names", "decode", "encode", "random_subnets"]


def _int_list(field: str, values) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"Subnet.{field} must be a list of integers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        # float() first: numpy integers lack __trunc__, and 3.0 is accepted as 3.
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not float(v).is_integer():
            raise TypeError(f"Subnet.{field}[{i}] must be an integer, got {v!r}")
        out.append(int(v) if isinstance(v, numbers.Integral) else int(float(v)))
    return tuple(out)


def _num_list(field: str, values) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"Subnet.{field} must be a list of numbers, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"Subnet.{field}[{i}] must be a finite number, got {v!r}")
        v = float(v)
        out.append(int(v) if v.is_integer() else v)
    return tuple(out)


class Subnet:
    """One subnet: kernel ``ks`` and expand ``e`` per block slot, depth ``d`` per stage,
    input ``image_size``. The keys are OFA's, so OFA/CompOFA/MOOFA config dicts load as they are.
    A Subnet is not tied to a space; ``validate(space)`` checks it against one."""

    __slots__ = ("ks", "e", "d", "image_size")
    ks: tuple[int, ...]
    e: tuple[float, ...]
    d: tuple[int, ...]
    image_size: int

    def __init__(self, ks: Sequence[int], e: Sequence[float], d: Sequence[int], image_size: int = 224):
        object.__setattr__(self, "ks", _int_list("ks", ks))
        object.__setattr__(self, "e", _num_list("e", e))
        object.__setattr__(self, "d", _int_list("d", d))
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, numbers.Real)
            or not math.isfinite(image_size)
            or int(image_size) != image_size
        ):
            raise TypeError(f"Subnet.image_size must be an integer, got {image_size!r}")
        object.__setattr__(self, "image_size", int(image_size))

    def __setattr__(self, name, value):
        raise AttributeError("Subnet is immutable; build a new one (e.g. Subnet.from_dict({...}))")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], space: str | Space | None = None) -> Subnet:
        """From an OFA-style dict: ``ks``, ``e``, ``d`` and ``image_size`` (or OFA's ``r``: [size]).

        Slots beyond a stage's depth may hold ``0`` or ``None`` (as published tools write
        them): they are filled with the space's canonical idle choice when ``space`` is
        given (smallest kernel; smallest expand, or the coupled one), else with the last
        active choice of their stage.
        """
        if isinstance(config, Subnet):
            return config
        if not isinstance(config, Mapping):
            raise TypeError(f"a subnet config must be a dict or moofa.Subnet, got {type(config).__name__}")
        missing = [k for k in ("ks", "e", "d") if k not in config]
        if missing:
            raise ValueError(f"subnet config is missing {missing}; expected keys 'ks', 'e', 'd', 'image_size'")
        if "image_size" in config:
            size = config["image_size"]
        elif "r" in config:
            r = config["r"]
            size = r[0] if isinstance(r, (list, tuple)) and len(r) == 1 else r
        else:
            raise ValueError("subnet config is missing 'image_size' (or OFA's 'r')")
        sp = None if space is None else get_space(space)
        ks, e = _fill_idle(config["ks"], config["e"], config["d"], sp)
        return cls(ks, e, config["d"], size)

    def coupled(self, space: str | Space) -> Subnet:
        """This subnet with ``e`` set from ``d`` by the space's coupling (CompOFA's
        ``expand_by_depth``), idle slots included; unchanged for uncoupled spaces.

        The repair for configs from tools that sample ``e`` independently of ``d``.
        """
        sp = get_space(space)
        if not sp.expand_by_depth:
            return self
        if len(self.d) != sp.n_stages:
            raise ValueError(f"Subnet.d must have {sp.n_stages} entries for space {sp.name!r}, got {len(self.d)}")
        e: list[float] = []
        for i, (stage, dd) in enumerate(zip(sp.stages, self.d)):
            if dd not in sp.expand_by_depth:
                raise ValueError(f"Subnet.d[{i}]={dd} is not allowed in space {sp.name!r}; allowed: {list(sp.depths)}")
            e += [sp.expand_by_depth[dd]] * stage.max_depth
        return Subnet(self.ks, _nice(e), self.d, self.image_size)

    def to_dict(self) -> dict:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "image_size": self.image_size}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Subnet:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"subnet JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def validate(self, space: str | Space = "moofa") -> Subnet:
        """Raise ValueError naming the field if this subnet is not in ``space``; return self."""
        sp = get_space(space)
        n_slots, n_stages = sp.n_slots, sp.n_stages
        for field, values, n in (("ks", self.ks, n_slots), ("e", self.e, n_slots), ("d", self.d, n_stages)):
            if len(values) != n:
                raise ValueError(f"Subnet.{field} must have {n} entries for space {sp.name!r}, got {len(values)}")
        if self.image_size not in sp.resolutions:
            raise ValueError(
                f"Subnet.image_size={self.image_size} is not allowed in space {sp.name!r}; "
                f"allowed: {list(sp.resolutions)}"
            )
        for i, k in enumerate(self.ks):
            if k not in sp.kernels:
                raise ValueError(f"Subnet.ks[{i}]={k} is not allowed in space {sp.name!r}; allowed: {list(sp.kernels)}")
        for i, e in enumerate(self.e):
            if float(e) not in sp.expands:
                raise ValueError(f"Subnet.e[{i}]={e} is not allowed in space {sp.name!r}; allowed: {_nice(sp.expands)}")
        for i, dd in enumerate(self.d):
            if dd not in sp.depths:
                raise ValueError(f"Subnet.d[{i}]={dd} is not allowed in space {sp.name!r}; allowed: {list(sp.depths)}")
        if sp.expand_by_depth:
            slot = 0
            for i, (stage, dd) in enumerate(zip(sp.stages, self.d)):
                want = sp.expand_by_depth[dd]
                for j in range(dd):
                    if float(self.e[slot + j]) != want:
                        raise ValueError(
                            f"Subnet.e[{slot + j}]={self.e[slot + j]}: space {sp.name!r} couples expand to depth "
                            f"({_coupling(sp)}), so stage {i} of depth {dd} needs e={_nice([want])[0]}; "
                            f"to repair a config whose e was drawn independently of d: Subnet.coupled({sp.name!r})"
                        )
                slot += stage.max_depth
        return self

    def __eq__(self, other) -> bool:
        if not isinstance(other, Subnet):
            return NotImplemented
        return (self.ks, tuple(map(float, self.e)), self.d, self.image_size) == (
            other.ks,
            tuple(map(float, other.e)),
            other.d,
            other.image_size,
        )

    def __hash__(self) -> int:
        return hash((self.ks, tuple(map(float, self.e)), self.d, self.image_size))

    def __repr__(self) -> str:
        return f"Subnet(ks={list(self.ks)}, e={list(self.e)}, d={list(self.d)}, image_size={self.image_size})"

    def __reduce__(self):
        return (Subnet, (self.ks, self.e, self.d, self.image_size))


def _idle(v) -> bool:
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool) and v == 0)


def _fill_idle(ks, e, d, sp: Space | None):
    """``ks`` and ``e`` with 0/None in slots beyond their stage's depth filled in (see from_dict)."""
    lists = [v for v in (ks, e) if isinstance(v, (list, tuple))]
    if len(lists) < 2 or not any(_idle(v) for values in lists for v in values):
        return ks, e
    depths = _int_list("d", d)
    if sp is not None and len(depths) == sp.n_stages:
        slots = [s.max_depth for s in sp.stages]
    elif depths and len(ks) == len(e) and len(ks) % len(depths) == 0:
        slots = [len(ks) // len(depths)] * len(depths)  # OFA's layout: the same slots per stage
    else:
        return ks, e  # no layout to read idle slots from: the constructor names the bad entry
    if sum(slots) != len(ks) or sum(slots) != len(e):
        return ks, e
    out = {"ks": list(ks), "e": list(e)}
    first = 0
    for n, dd in zip(slots, depths):
        for field, values in out.items():
            for j in range(first, first + n):
                if not _idle(values[j]) or j - first < dd:
                    continue  # an active 0/None: the constructor or validate() names it
                if sp is not None:
                    coupled = sp.expand_by_depth.get(dd) if sp.expand_by_depth else None
                    values[j] = sp.kernels[0] if field == "ks" else (coupled or sp.expands[0])
                elif dd >= 1:
                    values[j] = values[first + dd - 1]  # the stage's last active choice
        first += n
    return out["ks"], out["e"]


def _nice(values) -> list:
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def _coupling(sp: Space) -> str:
    return ", ".join(f"d={d} -> e={_nice([e])[0]}" for d, e in (sp.expand_by_depth or {}).items())


def column_names(space: str | Space = "moofa") -> list[str]:
    """The field each column of the encoding holds: image_size, d[i], ks[j], e[j]."""
    sp = get_space(space)
    return (
        ["image_size"]
        + [f"d[{i}]" for i in range(sp.n_stages)]
        + [f"ks[{j}]" for j in range(sp.n_slots)]
        + [f"e[{j}]" for j in range(sp.n_slots)]
    )


def _encode_one(net: Subnet, sp: Space, row: np.ndarray) -> None:
    cols = columns(sp)
    row[cols.resolution] = sp.resolutions.index(net.image_size)
    row[cols.depth] = [sp.depths.index(dd) for dd in net.d]
    row[cols.kernel] = [sp.kernels.index(k) for k in net.ks]
    row[cols.expand] = [sp.expands.index(float(e)) for e in net.e]


def encode(nets, space: str | Space = "moofa") -> np.ndarray:
    """Encode subnets as a ``uint8`` array of shape ``(n, space.n_columns)``.

    Columns hold choice *indices*: resolution, then depth per stage, kernel per slot,
    expand per slot (see :func:`column_names`). ``nets`` is a Subnet, a dict, a list of
    either, or an already encoded integer array (checked and returned as uint8).
    """
    sp = get_space(space)
    if isinstance(nets, np.ndarray):
        return _check_encoded(nets, sp)
    if isinstance(nets, (Subnet, Mapping)):
        nets = [nets]
    if isinstance(nets, (str, bytes)) or not isinstance(nets, Iterable):
        raise TypeError(f"nets must be a Subnet, a dict, a list of them or an encoded array, got {type(nets).__name__}")
    nets = list(nets)
    out = np.zeros((len(nets), sp.n_columns), dtype=np.uint8)
    for i, net in enumerate(nets):
        net = Subnet.from_dict(net, sp).validate(sp)
        _encode_one(net, sp, out[i])
    return out


def _as_rows(arr: np.ndarray, sp: Space) -> np.ndarray:
    """An integer array as uint8 rows of ``sp`` (no copy when it already is C-contiguous
    uint8). Shape and byte range only: the C++ entries check the indices themselves."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"an encoded config array must have an integer dtype, got {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != sp.n_columns:
        raise ValueError(
            f"an encoded config array for space {sp.name!r} must have shape (n, {sp.n_columns}), got {arr.shape}"
        )
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            bad = int(np.argmax((arr < 0).any(axis=1) | (arr > 255).any(axis=1)))
            col = int(np.argmax((arr[bad] < 0) | (arr[bad] > 255)))
            limit = spec(sp).column_limits[col]
            raise ValueError(
                f"encoded config row {bad}, column {col} ({column_names(sp)[col]}) holds index "
                f"{int(arr[bad, col])}; allowed indices 0..{limit - 1}"
            )
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def _check_encoded(arr: np.ndarray, sp: Space) -> np.ndarray:
    """:func:`_as_rows`, then every row checked (ValueError naming row, column and range)."""
    rows = _as_rows(arr, sp)
    spec(sp).check_rows(rows)
    return rows


def decode(rows, space: str | Space = "moofa") -> list[Subnet]:
    """Inverse of :func:`encode`."""
    sp = get_space(space)
    rows = _check_encoded(np.asarray(rows), sp)
    cols = columns(sp)
    res, dep, ker = sp.resolutions, sp.depths, sp.kernels
    exp = _nice(sp.expands)
    out = []
    for row in rows.tolist():
        out.append(
            Subnet(
                ks=[ker[i] for i in row[cols.kernel]],
                e=[exp[i] for i in row[cols.expand]],
                d=[dep[i] for i in row[cols.depth]],
                image_size=res[row[cols.resolution]],
            )
        )
    return out


# Rows generated per step: numpy draws int64 before the uint8 store, so chunks keep
# the temporaries small. The draws are sequential, so the stream does not depend on it.
_RANDOM_CHUNK = 1 << 16


def random_subnets(n: int, space: str | Space = "moofa", seed: int | None = None) -> np.ndarray:
    """``n`` uniformly random subnets of ``space``, already encoded (uint8 array)."""
    sp = get_space(space)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    cols = columns(sp)
    out = np.empty((n, cols.n), dtype=np.uint8)

    def fill(column, high: int, width: int | None) -> None:
        for b in range(0, n, _RANDOM_CHUNK):
            e = min(n, b + _RANDOM_CHUNK)
            out[b:e, column] = rng.integers(0, high, e - b if width is None else (e - b, width))

    fill(cols.resolution, len(sp.resolutions), None)
    fill(cols.depth, len(sp.depths), sp.n_stages)
    fill(cols.kernel, len(sp.kernels), sp.n_slots)
    if sp.expand_by_depth:
        coupled = np.array([sp.expands.index(sp.expand_by_depth[d]) for d in sp.depths], dtype=np.uint8)
        for b in range(0, n, _RANDOM_CHUNK):
            e = min(n, b + _RANDOM_CHUNK)
            out[b:e, cols.expand] = coupled[out[b:e, cols.slot_depth_column]]
    else:
        fill(cols.expand, len(sp.expands), sp.n_slots)
    return out
