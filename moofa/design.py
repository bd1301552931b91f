"""Width design for uniform memory use (the paper's first line of future work).

:func:`moofa.design_widths` sizes the stages for one reference subnet (k=7, e=4, 224 px).
:func:`search_widths` instead searches the stage widths and the final-expand width of a
base space so that the subnets a range of peak budgets admits use their memory as
uniformly as possible, on average over all of them:

* under a budget ``b``, the *admitted* subnets are the distinct subnets whose peak is at
  most ``b``. The peak is separable (the largest of a fixed part and one figure per active
  block slot), so :func:`admitted` counts them exactly and :func:`sample_admitted` draws
  them as :func:`moofa.random_subnets` would, conditioned on the budget, without
  rejection, from the C++ evaluator's peak tables;
* a design's score is the mean over the budgets of the expected
  :attr:`moofa.Profile.uniformity` (``objective="uniformity"``) or of the expected
  ``avg / b``, the share of the budget the average layer uses (``objective="budget_use"``),
  over the admitted subnets;
* a design must admit at least ``keep_admitted`` times as many subnets as the base space
  under every budget (a design could otherwise buy uniformity by pricing subnets out of
  the budget);
* the search is a deterministic pattern search over widths that stay multiples of 8
  (steps of 64, 32, 16, 8 channels), scoring every candidate on the same random draws.

:func:`compare` and :func:`format_comparison` put spaces side by side on these figures.
See ``docs/uniformity.md``.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ._encoding import columns, spec
from ._ext import core
from .spaces import Space, get_space
from .subnet import random_subnets
from .units import parse_budget

__all__ = [
    "DESIGN_MODELS",
    "OBJECTIVES",
    "WidthDesign",
    "admitted",
    "compare",
    "format_comparison",
    "sample_admitted",
    "search_widths",
]

# Memory models whose peak is separable exactly (under "tflm" the tables are lower bounds).
DESIGN_MODELS = ("full", "activations")
OBJECTIVES = ("uniformity", "budget_use")
_STEPS = (64, 32, 16, 8)
_DIVISOR = 8


# --- exact counting and sampling of the subnets under a budget --------------------------


class _Admitted:
    """The subnets of one space whose peak fits one budget: their exact number, the
    probability that a random_subnets draw is one of them, and draws among them."""

    def __init__(self, sp: Space, ev, budget: int):
        self.space, self.ev, self.budget = sp, ev, budget
        fixed, slots = ev.peak_tables()
        n_s, n_r, n_k, n_e = slots.shape
        self.n_k, self.n_e = n_k, n_e
        depths = list(sp.depths)
        n_d = len(depths)
        coupled = sp.expand_by_depth
        # Expand index each depth forces (coupled spaces), else -1.
        self.forced = [sp.expands.index(coupled[d]) if coupled else -1 for d in depths]
        fit = slots <= budget  # (slot, r, k, e)
        # fitmask[slot, r, di, pair]: the (kernel, expand) pairs allowed at that depth that fit.
        mask = np.repeat(fit.reshape(n_s, n_r, 1, n_k, n_e), n_d, axis=2)
        for di, e in enumerate(self.forced):
            if e >= 0:
                keep = np.zeros(n_e, dtype=bool)
                keep[e] = True
                mask[:, :, di] &= keep
        self.mask = mask.reshape(n_s, n_r, n_d, n_k * n_e)
        self.nfit = self.mask.sum(axis=3)  # (slot, r, di)
        # pair_of[slot, r, di, m]: the m-th fitting pair (the first nfit entries).
        self.pair_of = np.argsort(~self.mask, axis=3, kind="stable")
        allowed = [n_k if e >= 0 else n_k * n_e for e in self.forced]  # pairs a random draw picks from
        first = _first_slots(sp)
        # Exact counts (Python ints): ways[s][r][di] = product of nfit over the stage's active slots.
        self.ways = [
            [
                [math.prod(int(self.nfit[first[s] + j, r, di]) for j in range(depths[di])) for di in range(n_d)]
                for r in range(n_r)
            ]
            for s in range(sp.n_stages)
        ]
        per_res = [
            math.prod(sum(self.ways[s][r]) for s in range(sp.n_stages)) if fixed[r] <= budget else 0 for r in range(n_r)
        ]
        self.count = sum(per_res)
        # The same under moofa.random_subnets' law (resolution, depths, genes uniform): the
        # probability that all of a stage's active slots fit, per depth.
        self.fit_prob = np.array(
            [
                [
                    [
                        math.prod(float(self.nfit[first[s] + j, r, di]) / allowed[di] for j in range(depths[di]))
                        for di in range(n_d)
                    ]
                    for r in range(n_r)
                ]
                for s in range(sp.n_stages)
            ]
        )  # (stage, r, di)
        self.res_prob = np.array(
            [np.prod(self.fit_prob[:, r, :].mean(axis=1)) if fixed[r] <= budget else 0.0 for r in range(n_r)]
        )
        # P(peak <= budget) for a subnet drawn by moofa.random_subnets.
        self.share = float(self.res_prob.mean())
        self.first = first
        self.depths = depths

    def draw(self, uniforms: np.ndarray) -> np.ndarray:
        """Encoded subnets distributed as moofa.random_subnets' draws conditioned on the budget,
        one per row of ``uniforms`` (n, 1 + n_stages + n_slots) in [0, 1): inverse-CDF draws, so
        that the same uniforms give comparable subnets in every space."""
        sp = self.space
        n = uniforms.shape[0]
        if self.count == 0:
            raise ValueError(f"no subnet of space {sp.name!r} has a peak within {self.budget:,} items")
        cols = columns(sp)
        rows = np.zeros((n, cols.n), dtype=np.uint8)
        r = _pick(self.res_prob, uniforms[:, 0])
        rows[:, cols.resolution] = r
        for s in range(sp.n_stages):
            di = _pick_rows(self.fit_prob[s][r], uniforms[:, 1 + s])
            rows[:, cols.depth.start + s] = di
            depth = np.asarray(self.depths)[di]
            forced = np.asarray(self.forced)[di]
            for j in range(sp.stages[s].max_depth):
                slot = self.first[s] + j
                active = j < depth
                nfit = self.nfit[slot, r, di]
                m = np.minimum((uniforms[:, 1 + sp.n_stages + slot] * nfit).astype(np.intp), np.maximum(nfit - 1, 0))
                pair = self.pair_of[slot, r, di, m]
                kernel = np.where(active, pair // self.n_e, 0)
                expand = np.where(active, pair % self.n_e, np.maximum(forced, 0))
                rows[:, cols.kernel.start + slot] = kernel
                rows[:, cols.expand.start + slot] = expand
        return rows


def _first_slots(sp: Space) -> list[int]:
    out, slot = [], 0
    for st in sp.stages:
        out.append(slot)
        slot += st.max_depth
    return out


def _pick(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn with probability proportional to weights, by inverse CDF of u."""
    cum = np.cumsum(weights)
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, u, side="right"), int(np.flatnonzero(weights)[-1]))


def _pick_rows(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise _pick: weights (n, m), u (n,)."""
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    return np.minimum((u[:, None] >= cum).sum(axis=1), weights.shape[1] - 1)


def _model(memory_model) -> str:
    if memory_model not in DESIGN_MODELS:
        raise ValueError(f"memory_model must be one of {list(DESIGN_MODELS)}, got {memory_model!r}")
    return memory_model


def _evaluator(sp: Space, model: str):
    return core.Evaluator(spec(sp), model)


def _items(budget, bytes_per_item) -> int:
    return parse_budget(budget, bytes_per_item)


def admitted(space: str | Space, budget, *, memory_model: str = "full", bytes_per_item: float = 4) -> int:
    """Exact number of distinct subnets of ``space`` whose peak fits ``budget``
    (``"325k"``, items, or bytes such as ``"1.3MB"`` read with ``bytes_per_item``)."""
    sp = get_space(space)
    return _Admitted(sp, _evaluator(sp, _model(memory_model)), _items(budget, bytes_per_item)).count


def sample_admitted(
    n: int,
    space: str | Space,
    budget,
    *,
    seed: int | None = None,
    memory_model: str = "full",
    bytes_per_item: float = 4,
) -> np.ndarray:
    """``n`` encoded subnets of ``space`` whose peak fits ``budget``, distributed as
    :func:`moofa.random_subnets`' draws (resolution, depths, kernels and expands uniform)
    conditioned on fitting: drawn directly, no rejection. ValueError when none fits."""
    _count("n", n, 0)
    sp = get_space(space)
    a = _Admitted(sp, _evaluator(sp, _model(memory_model)), _items(budget, bytes_per_item))
    return a.draw(np.random.default_rng(seed).random((int(n), 1 + sp.n_stages + sp.n_slots)))


def _count(name: str, value, low: int, high: int | None = None) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


# --- the width search ---------------------------------------------------------------------


@dataclass(frozen=True)
class WidthDesign:
    """The outcome of :func:`search_widths`.

    ``space`` is the base space with the designed ``widths`` (one per stage) and
    ``final_expand_width`` (register it with :func:`moofa.register` to search it by name).
    ``score`` and ``base_score`` are the objective of the design and of the base space on
    the same random draws; ``share`` / ``base_share`` the probability that a subnet drawn
    by :func:`moofa.random_subnets` fits each of ``budgets`` (items), and ``admitted`` /
    ``base_admitted`` the exact number of distinct subnets under each.
    """

    space: Space
    base: str
    widths: tuple[int, ...]
    final_expand_width: int
    budgets: tuple[int, ...]
    objective: str
    score: float
    base_score: float
    share: tuple[float, ...]
    base_share: tuple[float, ...]
    admitted: tuple[int, ...]
    base_admitted: tuple[int, ...]
    evaluations: int
    seconds: float = field(default=0.0, compare=False)

    def table(
        self,
        others: Sequence[str | Space] = ("moofa", "ofa"),
        budgets: Sequence = ("325k", "400k", "800k"),
        *,
        n: int = 20000,
        seed: int = 0,
        memory_model: str = "full",
    ) -> str:
        """The design next to ``others`` (see :func:`compare`), as a Markdown table."""
        spaces = [self.space, *[get_space(o) for o in others if get_space(o) != self.space]]
        return format_comparison(compare(spaces, budgets, n=n, seed=seed, memory_model=memory_model))


def _score_of(
    sp: Space, model: str, budgets: tuple[int, ...], uniforms: list[np.ndarray], objective: str
) -> tuple[float, tuple[float, ...], tuple[int, ...]]:
    """(objective, share of random subnets under each budget, exact counts under each)."""
    ev = _evaluator(sp, model)
    total, shares, counts = 0.0, [], []
    for b, u in zip(budgets, uniforms):
        a = _Admitted(sp, ev, b)
        shares.append(a.share)
        counts.append(a.count)
        if a.count == 0:
            continue  # contributes 0
        out = ev.profiles(a.draw(u), threads=1, with_hist=False)
        values = out["uniformity"] if objective == "uniformity" else out["avg"] / b
        total += float(np.mean(values))
    return total / len(budgets), tuple(shares), tuple(counts)


def _with_widths(base: Space, x: tuple[int, ...], name: str) -> Space:
    stages = tuple(replace(s, width=w) for s, w in zip(base.stages, x[:-1]))
    return replace(
        base, name=name, stages=stages, final_expand_width=x[-1], description=f"widths designed from {base.name}"
    )


def search_widths(
    budgets: Sequence = ("325k", "800k"),
    base: str | Space = "moofa",
    *,
    objective: str = "uniformity",
    n_samples: int = 2000,
    seed: int = 0,
    min_width: int = 8,
    max_width: int = 1024,
    keep_admitted: float = 1.0,
    memory_model: str = "full",
    bytes_per_item: float = 4,
    max_evaluations: int = 2000,
    name: str | None = None,
) -> WidthDesign:
    """Stage widths and final-expand width of ``base`` that maximise the expected memory
    uniformity (or budget use) of the subnets ``budgets`` admit; see the module docstring.

    ``n_samples`` subnets are drawn per budget (the same uniforms for every candidate,
    so the search is deterministic for a ``seed``). Widths move in multiples of 8 within
    ``[min_width, max_width]``; a candidate must admit at least ``keep_admitted`` times as
    many subnets as ``base`` under every budget.
    """
    start = time.perf_counter()
    sp = get_space(base)
    model = _model(memory_model)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence) or not budgets:
        raise ValueError(f"budgets must be a non-empty list of budgets (e.g. ('325k', '800k')), got {budgets!r}")
    items = tuple(sorted({_items(b, bytes_per_item) for b in budgets}))
    _count("n_samples", n_samples, 1, 10**6)
    _count("seed", seed, 0)
    lo = _count("min_width", min_width, _DIVISOR, 1 << 16)
    hi = _count("max_width", max_width, lo, 1 << 16)
    _count("max_evaluations", max_evaluations, 1)
    if isinstance(keep_admitted, bool) or not isinstance(keep_admitted, numbers.Real) or not 0 <= keep_admitted < 1e6:
        raise ValueError(f"keep_admitted must be a number in [0, 1e6), got {keep_admitted!r}")
    if name is None:
        name = f"{sp.name}-uniform"
    rng = np.random.default_rng(seed)
    uniforms = [rng.random((n_samples, 1 + sp.n_stages + sp.n_slots)) for _ in items]

    x0 = (*sp.widths, sp.final_expand_width)
    base_score, base_shares, base_counts = _score_of(sp, model, items, uniforms, objective)
    need = [keep_admitted * c for c in base_shares]
    cache: dict[tuple[int, ...], float | None] = {}

    def score(x: tuple[int, ...]) -> float | None:
        if x not in cache:
            s, shares, _ = _score_of(_with_widths(sp, x, name), model, items, uniforms, objective)
            cache[x] = s if all(c >= k for c, k in zip(shares, need)) else None
        return cache[x]

    x, best = x0, base_score
    cache[x0] = base_score
    for step in _STEPS:
        while len(cache) < max_evaluations:
            moves = []
            for i in range(len(x)):
                for sign in (1, -1):
                    w = x[i] + sign * step
                    if lo <= w <= hi:
                        moves.append((*x[:i], w, *x[i + 1 :]))
            found = None
            for cand in moves:
                if len(cache) >= max_evaluations and cand not in cache:
                    break
                s = score(cand)
                if s is not None and s > best + 1e-12:
                    found, best = cand, s
            if found is None:
                break
            x = found
    design = _with_widths(sp, x, name)
    _, shares, counts = _score_of(design, model, items, uniforms, objective)
    return WidthDesign(
        space=design,
        base=sp.name,
        widths=tuple(x[:-1]),
        final_expand_width=x[-1],
        budgets=items,
        objective=objective,
        score=best,
        base_score=base_score,
        share=shares,
        base_share=base_shares,
        admitted=counts,
        base_admitted=base_counts,
        evaluations=len(cache),
        seconds=time.perf_counter() - start,
    )


# --- comparison ---------------------------------------------------------------------------


def compare(
    spaces: Sequence[str | Space],
    budgets: Sequence = ("325k", "400k", "800k"),
    *,
    n: int = 20000,
    seed: int = 0,
    memory_model: str = "full",
    bytes_per_item: float = 4,
) -> list[dict]:
    """One row per space and budget (a first row per space, ``budget`` None, covers all its
    subnets):

    * ``share``: the exact probability that a subnet drawn by :func:`moofa.random_subnets`
      fits the budget, and ``random_under``: how many of ``n`` such draws (``seed``) do;
    * ``distinct``: the exact number of distinct subnets under the budget and
      ``distinct_share`` its share of the space's :meth:`moofa.Space.size`;
    * over ``n`` random subnets conditioned on the budget (:func:`sample_admitted`'s law):
      the mean ``uniformity``, ``avg`` (items), ``budget_use`` (avg / budget) and ``mflops``.
    """
    model = _model(memory_model)
    _count("n", n, 1, 10**7)
    items = [_items(b, bytes_per_item) for b in budgets]
    out = []
    for space in spaces:
        sp = get_space(space)
        ev = _evaluator(sp, model)
        rows = random_subnets(n, sp, seed=seed)
        every = ev.profiles(rows, threads=0, with_hist=False)
        size = sp.size()
        base = {"space": sp.name, "widths": list(sp.widths), "final_expand_width": sp.final_expand_width}
        out.append(
            {
                **base,
                "budget": None,
                "share": 1.0,
                "random_under": n,
                "distinct": size,
                "distinct_share": 1.0,
                "uniformity": float(every["uniformity"].mean()),
                "avg": float(every["avg"].mean()),
                "budget_use": math.nan,
                "mflops": float(every["mflops"].mean()),
            }
        )
        for b in items:
            a = _Admitted(sp, ev, b)
            row = {**base, "budget": b, "share": a.share, "random_under": int((every["peak"] <= b).sum())}
            row.update(distinct=a.count, distinct_share=a.count / size)
            if a.count:
                u = np.random.default_rng(seed).random((n, 1 + sp.n_stages + sp.n_slots))
                p = ev.profiles(a.draw(u), threads=0, with_hist=False)
                row.update(
                    uniformity=float(p["uniformity"].mean()),
                    avg=float(p["avg"].mean()),
                    budget_use=float((p["avg"] / b).mean()),
                    mflops=float(p["mflops"].mean()),
                )
            else:
                row.update(uniformity=math.nan, avg=math.nan, budget_use=math.nan, mflops=math.nan)
            out.append(row)
    return out


def format_comparison(rows: Sequence[dict]) -> str:
    """:func:`compare`'s rows as a Markdown table."""
    lines = [
        "| space | stage widths / final | budget | P(random subnet fits) | of N random | distinct subnets (share) | "
        "uniformity | avg memory [k] | avg / budget | MFLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        budget = "any" if r["budget"] is None else f"{r['budget'] / 1e3:g}k"
        widths = "-".join(str(w) for w in r["widths"]) + f" / {r['final_expand_width']}"

        def num(v, fmt):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

        lines.append(
            f"| {r['space']} | {widths} | {budget} | {r['share']:.3%} | {r['random_under']} | "
            f"{r['distinct']:.3g} ({r['distinct_share']:.3%}) | "
            f"{num(r['uniformity'], '.3f')} | {num(r['avg'] / 1e3 if r['avg'] == r['avg'] else math.nan, '.1f')} | "
            f"{num(r['budget_use'], '.3f')} | {num(r['mflops'], '.0f')} |"
        )
    return "\n".join(lines)
