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
from .spaces import Space, get_space
from .subnet import Subnet
from .units import format_items, parse_budget

__all__ = [
    "PAPER_TABLE1",
    "TABLE_BUDGETS",
    "TABLE_SPACES",
    "compact_config",
    "describe_predictor",
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


def _islands_and_dive(result) -> str:
    text = f" x {result.islands} islands" if result.islands > 1 else ""
    if result.survivors < result.islands:
        text += f" ({result.survivors} after the race)"
    if result.dive_nodes:
        text += f", a dive of {result.dive_nodes:,} branch-and-bound nodes"
    if result.climb_evaluations:
        text += f", a climb of {result.climb_evaluations:,} evaluations"
    if result.transfer_evaluations:
        text += f", a transfer of {result.transfer_evaluations:,}"
    if result.proven_optimal:
        text += " (proven optimal)"
    return text


def format_result(
    result: SearchResult,
    bars: bool = True,
    width: int = 40,
    *,
    predictor: object = None,
    objective: str = "top1",
) -> str:
    """A readable summary of a search result, answer first: does it fit, its predicted top-1
    (and by which predictor, when ``predictor`` is given), peak vs budget, compute and the
    config; then, with ``bars``, the per-layer memory bars (the paper's Fig. 5).

    ``objective``: ``"top1"`` (a predictor's score) or a capacity proxy the search maximised
    instead (``"mflops"``, ``"params"``), which the summary then names as such.
    """
    p = result.profile
    share = 100.0 * result.peak / result.budget
    fits = "yes" if result.peak <= result.budget else "NO"
    limits = "".join(f", {k} {v:g}" for k, v in result.constraints.items() if k != "max_peak")
    if objective == "top1":
        score = f"predicted top-1   {result.top1:.2f} %"
        if not 0.0 <= result.top1 <= 100.0:
            score += " (outside [0, 100]: the predictor is extrapolating)"
        if predictor is not None:
            score += f"  by {describe_predictor(predictor)}"
    else:
        what = {"mflops": "MFLOPs", "params": "parameters"}.get(objective, objective)
        score = f"objective         the most {what} under the budget: a capacity proxy, not predicted accuracy"
    if result.memory_model == "tflm":  # bytes of the int8 graph, a planned arena rather than one layer
        budget = f"{result.budget:,} bytes ({result.budget / 1024:.1f} KiB) of TensorFlow Lite Micro arena head"
        peak = f"arena head {result.peak:,} bytes = {share:.1f}% of the budget"
        unit = "bytes"
    else:
        budget = f"{result.budget:,} items ({format_items(result.budget)}; {result.budget * 4 / 1e6:.2f} MB as float32)"
        peak = f"peak {result.peak:,} items = {share:.1f}% of the budget, at {p.peak_layer}"
        unit = "items"
    lines = [
        f"best subnet of space {result.space!r} under {budget}, memory model {result.memory_model!r}{limits}",
        f"fits              {fits}: {peak}",
        score,
        f"compute           {result.mflops:.1f} MFLOPs, {result.params:,} parameters",
        f"config            {compact_config(result.subnet, result.space)}",
        f"average memory    {result.avg:,.0f} +- {result.std:,.0f} {unit} per layer",
        f"search            {result.evaluations:,} evaluations, {result.candidates:,} candidates "
        f"checked, {result.generations} generations{_islands_and_dive(result)} in {result.seconds:.3f} s "
        f"(seed {result.seed})",
        f"config as JSON    {json.dumps(result.config)}",
    ]
    if bars:
        lines += ["", p.table(width=width)]
    return "\n".join(lines)


def compact_config(net: Subnet, space: str | Space | None = None) -> str:
    """``r=224 d=4,3,... ks=7,5,5,5|7,3,7|... e=4,4,4,3|...``: active slots only, one group per stage."""
    n_stages = len(net.d)
    slots: list[int] | None = None
    try:
        sp = get_space(space) if space is not None else None
    except (TypeError, ValueError):  # an unregistered user space: assume OFA's equal stages
        sp = None
    if sp is not None and sp.n_stages == n_stages and sp.n_slots == len(net.ks):
        slots = [s.max_depth for s in sp.stages]
    elif n_stages and len(net.ks) % n_stages == 0:
        slots = [len(net.ks) // n_stages] * n_stages

    def fmt(values) -> str:
        return ",".join(f"{v:g}" for v in values)

    def groups(values) -> str:
        if slots is None or len(values) != sum(slots):
            return fmt(values)
        out, first = [], 0
        for n, depth in zip(slots, net.d):
            out.append(fmt(values[first : first + min(depth, n)]))
            first += n
        return "|".join(out)

    return f"r={net.image_size} d={fmt(net.d)} ks={groups(net.ks)} e={groups(net.e)}"


def describe_predictor(predictor: object) -> str:
    """Where a top-1 comes from, e.g. "the shipped 'moofa' predictor (ImageNet, 5-fold CV RMSE 0.33)"."""
    from .predictor import _SHIPPED_DIR, Predictor

    if not isinstance(predictor, Predictor):
        return f"a user scorer ({type(predictor).__name__})"
    meta = predictor.metadata
    name = str(meta.get("name") or predictor.space.name)
    source = str(meta.get("source", ""))
    facts = []
    data = meta.get("dataset")
    data_names = data if isinstance(data, list) else [data] if data else []
    sets = sorted({_data_set_name(str(d)) for d in data_names} - {""})
    if sets:
        facts.append(", ".join(sets))
    cv = predictor.metrics.get("cross_validation", {})
    if isinstance(cv, Mapping) and isinstance(cv.get("rmse_mean"), (int, float)):
        facts.append(f"{cv.get('folds', '?')}-fold CV RMSE {cv['rmse_mean']:.2f}")
    detail = f" ({', '.join(facts)})" if facts else ""
    if source and Path(source).resolve().parent == _SHIPPED_DIR:
        return f"the shipped {name!r} predictor{detail}"
    if source.endswith((".pth.tar", ".pth", ".pt", ".tar")):
        return f"the checkpoint {source}{detail}"
    return f"predictor {name!r}{f' from {source}' if source else ''}{detail}"


def _data_set_name(filename: str) -> str:
    low = filename.lower()
    for key, label in (("imagenette", "Imagenette"), ("imagenet", "ImageNet"), ("digits", "digits")):
        if key in low:
            return label
    return Path(filename).stem


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
