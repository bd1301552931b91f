"""Readable output of searches: the result summary with per-layer memory bars, the
paper's Table 1 (best subnet per space and budget) and its Figs. 5 and 6.

Plots need matplotlib (``pip install 'moofa[plot]'``), imported only when plotting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ._io import atomic_write
from ._progress import Progress
from .memory import Profile
from .search import ParetoFront, SearchResult, search
from .spaces import get_space
from .units import format_items, parse_budget

__all__ = [
    "PAPER_TABLE1",
    "TABLE_BUDGETS",
    "TABLE_SPACES",
    "format_result",
    "format_table",
    "plot_memory",
    "plot_pareto",
    "table",
]

TABLE_SPACES = ("ofa", "compofa", "moofa")
TABLE_BUDGETS = ("325k", "350k", "400k", "450k", "500k", "600k", "700k", "800k")

# The paper's Table 1: measured ImageNet top-1 of the subnets its searches found, memory in
# items (the paper prints thousands), MFLOPs. Keyed by (budget in items, space).
PAPER_TABLE1 = {
    (325_000, "ofa"): dict(top1=70.81, peak=262_910, avg=119_680, std=51_520, mflops=146),
    (325_000, "compofa"): dict(top1=69.91, peak=262_910, avg=109_460, std=54_180, mflops=132),
    (325_000, "moofa"): dict(top1=72.13, peak=305_280, avg=214_920, std=84_300, mflops=422),
    (350_000, "ofa"): dict(top1=70.91, peak=328_700, avg=130_620, std=71_500, mflops=163),
    (350_000, "compofa"): dict(top1=70.26, peak=330_820, avg=115_790, std=65_770, mflops=134),
    (350_000, "moofa"): dict(top1=72.25, peak=313_340, avg=219_170, std=84_240, mflops=431),
    (400_000, "ofa"): dict(top1=70.98, peak=330_820, avg=130_620, std=72_070, mflops=163),
    (400_000, "compofa"): dict(top1=70.23, peak=329_280, avg=123_180, std=74_750, mflops=144),
    (400_000, "moofa"): dict(top1=73.34, peak=381_120, avg=258_740, std=93_040, mflops=554),
    (800_000, "ofa"): dict(top1=76.04, peak=740_420, avg=212_080, std=155_570, mflops=283),
    (800_000, "compofa"): dict(top1=74.78, peak=722_450, avg=200_110, std=136_770, mflops=306),
    (800_000, "moofa"): dict(top1=76.58, peak=686_980, avg=389_240, std=179_680, mflops=959),
}


# --- one result ---------------------------------------------------------------------------


def format_result(result: SearchResult, bars: bool = True, width: int = 40) -> str:
    """A readable summary of a search result, with the per-layer memory bars (Fig. 5)."""
    p = result.profile
    share = 100.0 * result.peak / result.budget
    limits = "".join(f", {k} {v:g}" for k, v in result.constraints.items() if k != "max_peak")
    lines = [
        f"space {result.space!r}, budget {result.budget:,} items ({format_items(result.budget)}; "
        f"{result.budget * 4 / 1e6:.2f} MB as float32), memory model {result.memory_model!r}{limits}",
        f"predicted top-1   {result.top1:.2f} %",
        f"peak memory       {result.peak:,} items ({share:.1f}% of the budget), at {p.peak_layer}",
        f"average memory    {result.avg:,.0f} +- {result.std:,.0f} items per layer",
        f"compute           {result.mflops:.1f} MFLOPs, {result.params:,} parameters",
        f"config            {json.dumps(result.config)}",
        f"search            {result.evaluations:,} predictor evaluations, {result.candidates:,} candidates "
        f"checked, {result.generations} generations in {result.seconds:.3f} s (seed {result.seed})",
    ]
    if bars:
        lines += ["", p.table(width=width)]
    return "\n".join(lines)


# --- the paper's Table 1 --------------------------------------------------------------------


class TableRows(list):
    """Rows of :func:`table`; ``interrupted`` is True when Ctrl-C ended the sweep early."""

    interrupted = False


def table(
    spaces: Sequence[str] = TABLE_SPACES,
    budgets: Sequence = TABLE_BUDGETS,
    predictors: Mapping | None = None,
    *,
    seed: int = 0,
    population: int = 100,
    generations: int = 500,
    progress: bool | None = None,
    **options,
) -> TableRows:
    """Best subnet per space and budget (the shape of the paper's Table 1), one search each.

    ``predictors`` maps a space name to its predictor (default: each space's shipped one).
    Each row: space, budget (items), top1, peak, avg, std, mflops, params, config,
    evaluations, seconds. Ctrl-C returns the rows finished so far.
    """
    spaces = [get_space(s).name for s in spaces]
    items = [parse_budget(b, options.get("bytes_per_item", 4)) for b in budgets]
    predictors = dict(predictors or {})
    unknown = sorted(set(predictors) - set(spaces))
    if unknown:
        raise ValueError(f"predictors given for spaces {unknown} that are not in spaces {spaces}")
    rows = TableRows()
    try:
        with Progress(len(spaces) * len(items), "moofa table", progress) as bar:
            for space in spaces:
                for budget in items:
                    r = search(
                        budget,
                        space,
                        predictors.get(space),
                        seed=seed,
                        population=population,
                        generations=generations,
                        **options,
                    )
                    rows.append(
                        {
                            "space": space,
                            "budget": budget,
                            "top1": r.top1,
                            "peak": r.peak,
                            "avg": r.avg,
                            "std": r.std,
                            "mflops": r.mflops,
                            "params": r.params,
                            "config": r.config,
                            "evaluations": r.evaluations,
                            "seconds": r.seconds,
                        }
                    )
                    bar.update(1, space=space, budget=format_items(budget))
    except KeyboardInterrupt:
        rows.interrupted = True
    return rows


def format_table(rows: Iterable[Mapping], paper: bool = True) -> str:
    """Rows of :func:`table` laid out as the paper's Table 1; with ``paper``, the paper's
    figures follow in parentheses where it has them (its top-1 is measured, ours predicted)."""
    rows = list(rows)
    spaces = list(dict.fromkeys(r["space"] for r in rows))
    budgets = sorted(dict.fromkeys(r["budget"] for r in rows))
    by_key = {(r["budget"], r["space"]): r for r in rows}
    metrics = [
        ("Top-1 [%]", lambda v: f"{v['top1']:.2f}"),
        ("Memory peak [k]", lambda v: f"{v['peak'] / 1e3:.2f}"),
        ("Avg. memory [k]", lambda v: f"{v['avg'] / 1e3:.2f} +- {v['std'] / 1e3:.2f}"),
        ("FLOPs [M]", lambda v: f"{v['mflops']:.0f}"),
    ]
    cells = [["Constraint", "Metric", *spaces]]
    for b in budgets:
        for i, (name, fmt) in enumerate(metrics):
            line = [f"Under {_budget_label(b)}" if i == 0 else "", name]
            for s in spaces:
                ours = by_key.get((b, s))
                text = fmt(ours) if ours is not None and ours.get("top1") is not None else "-"
                ref = PAPER_TABLE1.get((b, s)) if paper else None
                if ref is not None:
                    text += f" ({fmt(ref)})"
                line.append(text)
            cells.append(line)
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    out = ["  ".join(text.ljust(w) for text, w in zip(row, widths)).rstrip() for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    if paper:
        out.append("(in parentheses: the paper's Table 1; its top-1 is measured on ImageNet, moofa's is predicted)")
    return "\n".join(out)


def _budget_label(items: int) -> str:
    return f"{items // 1000}k" if items % 1000 == 0 else f"{items:,}"


# --- plots (Figs. 5 and 6) -------------------------------------------------------------------


def _save(fig, path) -> Path:
    """Write the figure next to its destination, then move it in place: a reader never sees
    half a file, and an interrupted run leaves the old one."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt))
    return path


def _figure(n_rows: int = 1, height: float = 3.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "moofa[plot]"', name="matplotlib") from None
    fig = Figure(figsize=(10, height * n_rows), constrained_layout=True)
    FigureCanvasAgg(fig)
    return fig


def plot_memory(results, path, labels: Sequence[str] | None = None) -> Path:
    """Memory per layer of one or more results (the paper's Fig. 5), saved to ``path``.

    ``results``: a SearchResult or Profile, or a list of them (one panel each); the
    budget of a SearchResult is drawn as a dashed line.
    """
    items = [results] if isinstance(results, (SearchResult, Profile)) else list(results)
    if not items:
        raise ValueError("plot_memory needs at least one SearchResult or Profile")
    fig = _figure(len(items))
    for i, item in enumerate(items):
        if not isinstance(item, (SearchResult, Profile)):
            raise TypeError(f"plot_memory takes SearchResult or Profile objects, got {type(item).__name__}")
        prof = item.profile if isinstance(item, SearchResult) else item
        ax = fig.add_subplot(len(items), 1, i + 1)
        top = max(prof.hist)
        colors = ["tab:red" if v == top else "tab:blue" for v in prof.hist]
        ax.bar(range(len(prof.hist)), [v / 1e3 for v in prof.hist], color=colors)
        if isinstance(item, SearchResult):
            ax.axhline(item.budget / 1e3, color="k", linestyle="--", linewidth=1, label="budget")
            ax.legend(loc="upper right")
        if labels:
            title = labels[i]
        elif isinstance(item, SearchResult):
            title = f"{item.space}, budget {format_items(item.budget)}, top-1 {item.top1:.2f}"
        else:
            title = prof.space
        ax.set_title(title)
        ax.set_ylabel("memory [k items]")
        ax.set_xlabel("layer (forward order)")
    return _save(fig, path)


def plot_pareto(data, path) -> Path:
    """Top-1 against the memory budget for each space (the paper's Fig. 6), saved to ``path``.

    ``data``: rows of :func:`table` (one line per space, top-1 vs. budget), or a mapping
    label -> ParetoFront (a step line per front, top-1 vs. peak), or a list of fronts.
    """
    fig = _figure(1, height=4.5)
    ax = fig.add_subplot(1, 1, 1)
    if isinstance(data, ParetoFront):
        data = {data.space: data}
    elif isinstance(data, (list, tuple)) and data and all(isinstance(d, ParetoFront) for d in data):
        data = {f"{d.space} ({d.method})": d for d in data}
    if isinstance(data, Mapping):
        for label, front in data.items():
            if not isinstance(front, ParetoFront):
                raise TypeError(f"plot_pareto: {label!r} must map to a ParetoFront, got {type(front).__name__}")
            ax.step(front.peak / 1e3, front.top1, where="post", marker="o", markersize=3, label=str(label))
        ax.set_xlabel("peak memory [k items]")
    else:
        rows = list(data)
        needed = {"space", "budget", "top1"}
        if not rows or not all(isinstance(r, Mapping) and needed <= set(r) for r in rows):
            raise TypeError(
                "plot_pareto takes table() rows, a ParetoFront, a list of fronts or a mapping label -> front"
            )
        for space in dict.fromkeys(r["space"] for r in rows):
            pts = sorted((r["budget"], r["top1"]) for r in rows if r["space"] == space and r["top1"] is not None)
            ax.plot([b / 1e3 for b, _ in pts], [t for _, t in pts], marker="o", label=space)
        ax.set_xlabel("memory budget [k items]")
    ax.set_ylabel("top-1 [%]")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)
