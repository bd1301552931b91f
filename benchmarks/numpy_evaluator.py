"""A vectorised numpy evaluator of the same memory rules: the benchmarks' baseline.

Written independently of the C++ core (no tables: it recomputes every layer's
input/output/weight counts from the decoded choice values, over the whole batch).
"""

from __future__ import annotations

import numpy as np

from moofa.spaces import Space


def _make_divisible(v: np.ndarray, divisor: int = 8) -> np.ndarray:
    new_v = np.maximum(divisor, ((v + divisor / 2) // divisor * divisor).astype(np.int64))
    return np.where(new_v < 0.9 * v, new_v + divisor, new_v)


def numpy_peaks(rows: np.ndarray, space: Space, with_stats: bool = False):
    """Peak memory (items) of encoded rows; with_stats also returns avg and std of the histogram."""
    s, n_slots = space.n_stages, space.n_slots
    res = np.asarray(space.resolutions, dtype=np.int64)[rows[:, 0]]
    depth = np.asarray(space.depths, dtype=np.int64)[rows[:, 1 : 1 + s]]
    ks = np.asarray(space.kernels, dtype=np.int64)[rows[:, 1 + s : 1 + s + n_slots]]
    ex = np.asarray(space.expands, dtype=np.float64)[rows[:, 1 + s + n_slots :]]
    if space.expand_by_depth:
        coupled = np.array([space.expand_by_depth[d] for d in space.depths])
        ex = coupled[rows[:, 1 : 1 + s]][:, space.slot_stage()]

    layers = []  # (values, active mask) per potential layer
    f = (res + 1) // 2
    c0 = space.first_conv_width
    layers.append((3 * res * res + c0 * f * f + 3 * c0 * 9, None))
    cb = space.first_block_width
    layers.append((2 * c0 * f * f + c0 * 9 + (c0 * f * f if c0 == cb else 0), None))
    layers.append((c0 * f * f + cb * f * f + c0 * cb, None))
    c_in = cb
    slot = 0
    for i, st in enumerate(space.stages):
        for j in range(st.max_depth):
            active = j < depth[:, i]
            stride = st.stride if j == 0 else 1
            cin = c_in if j == 0 else st.width
            e = ex[:, slot]
            mid = np.where(e == 1, cin, _make_divisible(np.rint(cin * e)))
            fo = (f - 1) // stride + 1
            has_expand = e != 1
            layers.append((cin * f * f + mid * f * f + cin * mid, active & has_expand))
            dw = mid * f * f + mid * fo * fo + mid * ks[:, slot] ** 2
            if stride == 1 and cin == st.width:
                dw = dw + cin * f * f
            layers.append((dw, active))
            layers.append((mid * fo * fo + st.width * fo * fo + mid * st.width, active))
            f = np.where(active, fo, f)
            slot += 1
        c_in = st.width
    fe = space.final_expand_width
    layers.append((c_in * f * f + fe * f * f + c_in * fe, None))

    n = rows.shape[0]
    values = np.zeros((len(layers), n), dtype=np.int64)
    mask = np.ones((len(layers), n), dtype=bool)
    for i, (v, m) in enumerate(layers):
        values[i] = v
        if m is not None:
            mask[i] = m
    peaks = np.where(mask, values, 0).max(axis=0)
    if not with_stats:
        return peaks
    count = mask.sum(axis=0)
    mean = np.where(mask, values, 0).sum(axis=0) / count
    var = (np.where(mask, (values - mean) ** 2, 0)).sum(axis=0) / count
    return peaks, mean, np.sqrt(var)
