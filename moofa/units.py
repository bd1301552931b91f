"""Budgets and units: items (numbers stored) vs bytes, and strings like "325k" or "1.3MB"."""

from __future__ import annotations

import math
import numbers
import re

__all__ = ["format_items", "parse_budget"]

_ITEM_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_BYTE_SCALE = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
# Budgets are int64 in the C++ core.
MAX_BUDGET = 2**63 - 1
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z][A-Za-z ]*)?\s*$")


def _check_bytes_per_item(bytes_per_item) -> float:
    if (
        isinstance(bytes_per_item, bool)
        or not isinstance(bytes_per_item, numbers.Real)
        or not math.isfinite(bytes_per_item)
        or bytes_per_item <= 0
    ):
        raise ValueError(f"bytes_per_item must be a positive number (4 for fp32, 1 for int8), got {bytes_per_item!r}")
    return float(bytes_per_item)


def parse_budget(budget, bytes_per_item: float = 4) -> int:
    """A memory budget in items (numbers held in RAM at once).

    Accepts a number of items (``325000``), an item count with a suffix
    (``"325k"``, ``"1.2M"``), or a byte size (``"1.3MB"``, ``"320KiB"``, ``"512kB"``),
    which is divided by ``bytes_per_item`` (4 for float32, 1 for int8).
    """
    bpi = _check_bytes_per_item(bytes_per_item)
    if isinstance(budget, bool):
        raise TypeError("budget must be a number of items or a string like '325k' or '1.3MB', got a bool")
    if isinstance(budget, numbers.Integral):
        return _check_range(int(budget), budget)
    if isinstance(budget, numbers.Real):
        value = float(budget)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"budget must be a positive, finite number of items, got {budget!r}")
        return _check_range(math.floor(value), budget)
    if not isinstance(budget, str):
        raise TypeError(
            f"budget must be a number of items or a string like '325k' or '1.3MB', got {type(budget).__name__}"
        )
    m = _PATTERN.match(budget)
    if not m:
        raise ValueError(
            f"budget {budget!r} is not understood: use items ('325000', '325k', '1.2M') "
            "or bytes ('1.3MB', '320KiB', '512kB')"
        )
    value, unit = float(m.group(1)), (m.group(2) or "").replace(" ", "").lower()
    if unit in ("items", "item"):
        unit = ""
    elif unit.endswith("items") or unit.endswith("item"):
        unit = unit[: -5 if unit.endswith("items") else -4]
    if unit in _ITEM_SCALE:
        items = value * _ITEM_SCALE[unit]
    elif unit in _BYTE_SCALE:
        items = value * _BYTE_SCALE[unit] / bpi
    else:
        raise ValueError(
            f"budget {budget!r}: unknown unit {m.group(2)!r}; allowed: k, M, G (items) "
            "or B, kB, MB, GB, KiB, MiB, GiB (bytes)"
        )
    if not math.isfinite(items):
        raise ValueError(f"budget must be a finite number of items, got {budget!r}")
    if items < 1:
        raise ValueError(f"budget must be at least one item, got {budget!r}")
    return _check_range(math.floor(items + 1e-9), budget)


def _check_range(items: int, budget) -> int:
    if items < 1:
        raise ValueError(f"budget must be a positive number of items, got {budget!r}")
    if items > MAX_BUDGET:
        raise ValueError(f"budget must be below 2**63 items (9.2e18), got {budget!r}")
    return int(items)


def format_items(items: float) -> str:
    """Short human form: 305280 -> '305.28k'."""
    if items >= 1e6:
        return f"{items / 1e6:.2f}M"
    if items >= 1e3:
        return f"{items / 1e3:.2f}k"
    return f"{items:g}"
