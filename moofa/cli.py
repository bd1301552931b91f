"""The ``moofa`` command line."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from . import __version__
from .memory import MEMORY_MODELS, profile
from .spaces import Space, design_widths, get_space, names
from .subnet import Subnet


def _add_memory_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-model",
        default="full",
        choices=[*MEMORY_MODELS, "paper", "mcu"],
        help="full: in+out+weights per layer (paper); activations/mcu: weights in flash; "
        "tflm: TensorFlow Lite Micro's arena head of the int8 graph, bytes",
    )


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _num_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _load_space(arg: str) -> Space:
    """A registered space name, or a JSON file written by ``Space.to_dict()``."""
    if arg.endswith(".json") and Path(arg).is_file():
        return Space.from_dict(json.loads(Path(arg).read_text()))
    return get_space(arg)


def _largest(space: Space) -> Subnet:
    return Subnet(
        ks=[max(space.kernels)] * space.n_slots,
        e=[max(space.expands)] * space.n_slots,
        d=[max(space.depths)] * space.n_stages,
        image_size=max(space.resolutions),
    )


def _config_from_args(args, space: Space) -> Subnet:
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise ValueError(f"--config: {text!r} is neither a JSON object nor an existing file")
            text = path.read_text()
        data = json.loads(text)
        if isinstance(data, dict) and "config" in data and "ks" not in data:
            data = data["config"]  # a profile / search result record
        return Subnet.from_dict(data, space)
    if any(v is not None for v in (args.ks, args.e, args.d, args.image_size)):
        big = _largest(space)
        return Subnet(
            ks=args.ks or big.ks, e=args.e or big.e, d=args.d or big.d, image_size=args.image_size or big.image_size
        )
    return _largest(space)


def cmd_profile(args) -> int:
    space = _load_space(args.space)
    net = _config_from_args(args, space)
    p = profile(net, space, memory_model=args.memory_model, bytes_per_item=args.bytes_per_item)
    if args.json:
        print(json.dumps({"config": net.to_dict(), **p.to_dict()}, indent=2))
    else:
        print(f"space {space.name}, memory model {p.memory_model}: {net}")
        print(p.table())
    return 0


def cmd_design_widths(args) -> int:
    w = design_widths(
        start_width=args.start_width,
        feature_size=args.feature_size,
        kernel=args.kernel,
        expand=args.expand,
        n_widths=args.n,
    )
    print(json.dumps(w) if args.json else " ".join(map(str, w)))
    return 0


def cmd_export(args) -> int:
    from .export import tflite_from_checkpoint

    space = _load_space(args.space) if args.space else None
    config = None
    if args.config:  # a dict, read against the checkpoint's space (idle slots may be 0/null)
        text = args.config
        if not text.lstrip().startswith("{"):
            if not Path(text).is_file():
                raise ValueError(f"--config: {text!r} is neither a JSON object nor an existing file")
            text = Path(text).read_text()
        config = json.loads(text)
        if isinstance(config, dict) and "config" in config and "ks" not in config:
            config = config["config"]  # a profile / search result record
    data = tflite_from_checkpoint(
        args.checkpoint, config, data=args.data, path=args.out, space=space, calib_batches=args.calib_batches
    )
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


def cmd_ofa_import(args) -> int:
    from .nn import Supernet
    from .nn import export as export_module

    fmt = {".pt": "torchscript", ".pt2": "exported", ".onnx": "onnx"}.get(Path(args.export or "x.pt").suffix)
    if fmt is None:
        raise ValueError(f"--export: the file must end in .pt, .pt2 or .onnx, got {args.export!r}")
    sup = Supernet.from_ofa(args.checkpoint, space=_load_space(args.space) if args.space else None)
    net = _config_from_args(args, sup.space)
    weights = sup.save(Path(args.out) / "supernet")
    print(f"{args.checkpoint}: space {sup.space.name!r}, {sum(p.numel() for p in sup.parameters()):,} parameters")
    print(f"wrote {weights} and {weights.with_suffix('.json')}")
    if args.export:
        sub = sup.extract(net).eval()
        export_module(sub, args.export, (1, sup.space.in_channels, net.image_size, net.image_size), format=fmt)
        print(f"wrote {args.export} ({fmt}, subnet {json.dumps(net.to_dict())})")
    return 0


def cmd_deploy_check(args) -> int:
    from .deploy import deploy_check

    report = deploy_check(args.model, budget=args.budget)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 1 if report.fits is False else 0


def cmd_spaces(args) -> int:
    from .memory import min_peak

    if args.json:
        print(json.dumps({n: get_space(n).to_dict() for n in names()}, indent=2))
        return 0
    print(
        f"{'space':<12} {'widths':<26} {'kernels':<10} {'expands':<17} {'depths':<10} "
        f"{'classes':>7} {'min peak':>10} {'subnets':>9}"
    )
    for n in names():
        sp = get_space(n)
        ex = [int(e) if float(e).is_integer() else e for e in sp.expands]
        coupled = " (by d)" if sp.expand_by_depth else ""
        print(
            f"{n:<12} {str(sp.widths):<26} {str(list(sp.kernels)):<10} {str(ex) + coupled:<17} "
            f"{str(list(sp.depths)):<10} {sp.n_classes:>7} {min_peak(sp)[0]:>10,} {sp.size():>9.1e}"
        )
    return 0


def _search_options(args) -> dict:
    opts = {"memory_model": args.memory_model, "bytes_per_item": args.bytes_per_item, "threads": args.threads}
    if args.max_mflops is not None:
        opts["max_mflops"] = args.max_mflops
    if args.max_params is not None:
        opts["max_params"] = args.max_params
    if args.min_uniformity is not None:
        opts["min_uniformity"] = args.min_uniformity
    if args.max_latency_ms is not None or args.latency_table is not None:
        opts["max_latency_ms"], opts["latency_table"] = args.max_latency_ms, args.latency_table
    return opts


def cmd_latency_table(args) -> int:
    from .latency import build_table

    space = _load_space(args.space)
    table = build_table(
        space,
        args.runtime,
        path=args.out,
        resolutions=args.resolutions,
        method=args.method,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        clock=args.clock,
        progress=False if args.no_progress else None,
    )
    settings = table.info["settings"]
    print(
        f"{args.out}: latency table of space {space.name!r} at {list(table.resolutions)} px, "
        f"{table.info['runtime']} on {table.info['threads']} thread(s), {settings['method']}, "
        f"{settings['clock']} clock, median of {settings['repeats']}; smallest subnet {table.min_ms():.3f} ms"
    )
    return 0


# Capacity proxies for spaces without an accuracy predictor: what --objective maximises.
PROXY_OBJECTIVES = ("mflops", "params")


def _predictor(args, space: Space, proxies: bool = True):
    """The predictor a search scores with: --predictor, else the space's shipped one."""
    from .predictor import SHIPPED, load_predictor

    if args.predictor is not None:
        return load_predictor(args.predictor, space=space)
    shipped = SHIPPED.get(space.name)
    if shipped is not None and shipped in names() and get_space(shipped) == space:
        return load_predictor(space.name)
    hint = (
        f", or --objective {'|'.join(PROXY_OBJECTIVES)} to maximise a capacity proxy under the budget "
        "instead of predicted accuracy"
        if proxies
        else ""
    )
    raise ValueError(
        f"space {space.name!r} has no shipped predictor: give --predictor PATH (a moofa .json/.npz pair or a "
        f"published .pth.tar trained on this space){hint}"
    )


def _proxy_scorer(space: Space, objective: str):
    """Scores encoded rows by MFLOPs or parameter count (higher is better)."""
    from .memory import evaluator

    ev = evaluator(space)

    def score(rows):
        return ev.profiles(rows, 0, False)[objective].astype("float64")

    return score


def cmd_search(args) -> int:
    from .report import format_result, plot_memory
    from .search import optimum, search

    _require_matplotlib(args)
    space = _load_space(args.space)
    proxy = args.objective in PROXY_OBJECTIVES
    if proxy and args.predictor is not None:
        raise ValueError(
            f"--objective {args.objective} and --predictor exclude each other (a proxy needs no predictor)"
        )
    predictor = _proxy_scorer(space, args.objective) if proxy else _predictor(args, space)
    if args.time_limit is not None and not args.exact:
        raise ValueError("--time-limit applies to --exact only")
    opts = _search_options(args)
    for name in ("islands", "survivors", "dive_nodes"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.transfer is not None:
        opts["transfer"] = args.transfer
    run = functools.partial(optimum, time_limit=args.time_limit) if args.exact else search
    r = run(
        args.budget,
        space,
        predictor,
        seed=args.seed,
        population=args.population,
        generations=args.generations,
        **opts,
    )
    if args.plot:
        plot_memory(r, args.plot)
    if args.json:
        doc = r.to_dict()
        if proxy:
            doc["top1"] = None
            doc["objective"] = {"name": args.objective, "score": r.top1, "proxy": True}
        print(json.dumps(doc, indent=2))
    else:
        print(
            format_result(
                r,
                bars=args.layers,
                predictor=None if proxy else predictor,
                objective=args.objective,
            )
        )
        if not args.layers:
            print("(memory per layer: --layers; full result: --json)")
        if args.plot:
            print(f"\nmemory plot written to {args.plot}")
    return 0


def cmd_table(args) -> int:
    from .report import TABLE_BUDGETS, TABLE_SPACES, format_table, plot_pareto, table

    _require_matplotlib(args)
    spaces = args.spaces.split(",") if args.spaces else list(TABLE_SPACES)
    budgets = args.budgets.split(",") if args.budgets else list(TABLE_BUDGETS)
    rows = table(
        spaces,
        budgets,
        seed=args.seed,
        population=args.population,
        generations=args.generations,
        progress=None if not args.no_progress else False,
    )
    if args.plot and rows:
        plot_pareto(rows, args.plot)
    if args.json:
        print(json.dumps(list(rows), indent=2))
    else:
        print(format_table(rows, paper=not args.no_paper))
        if args.plot:
            print(f"\ntop-1 vs budget plot written to {args.plot}")
    if rows.interrupted:
        print("moofa table: interrupted; the rows above are the budgets finished", file=sys.stderr)
        return 130
    return 0


def _describe(predictor) -> str:
    from .report import describe_predictor

    return "predicted by " + describe_predictor(predictor)


def cmd_pareto(args) -> int:
    from .report import plot_pareto
    from .search import pareto

    _require_matplotlib(args)
    space = _load_space(args.space)
    objectives = ("top1", "peak", "mflops") if args.mflops else ("top1", "peak")
    predictor = _predictor(args, space, proxies=False)
    front = pareto(
        space,
        predictor,
        budgets=args.budgets.split(",") if args.budgets else None,
        max_peak=args.max_peak,
        objectives=objectives,
        seed=args.seed,
        generations=args.generations,
        progress=None if not args.no_progress else False,
        **_search_options(args),
    )
    if args.plot:
        plot_pareto({space.name: front}, args.plot)
    if args.json:
        print(json.dumps(front.to_dicts(), indent=2))
    else:
        kind = (
            "three-objective front: top-1 up, peak memory down, MFLOPs down"
            if args.mflops
            else "two-objective front: top-1 up, peak memory down"
        )
        print(f"space {space.name!r}, {kind}; top-1 {_describe(predictor)}")
        print(f"{'peak':>10}  {'top1':>7}  {'MFLOPs':>8}  config")
        for point in front.to_dicts():
            print(
                f"{point['peak']:>10,}  {point['top1']:>7.2f}  {point['mflops']:>8.1f}  {json.dumps(point['config'])}"
            )
        print(
            f"{len(front)} non-dominated subnets on the {'three' if args.mflops else 'two'}-objective front "
            f"({front.method}, {front.evaluations:,} evaluations, "
            f"{front.seconds:.2f} s)"
        )
    return 130 if front.interrupted else 0


def cmd_specialise(args) -> int:
    from .specialise import read_budgets, specialise

    space = _load_space(args.space)
    predictor = _predictor(args, space, proxies=False)
    try:
        budgets = read_budgets(args.budgets)
    except OSError as exc:
        raise ValueError(f"--budgets: cannot read {args.budgets!r} ({exc.strerror or exc})") from None
    r = specialise(budgets, space, predictor, seed=args.seed, **_search_options(args))
    if args.out:
        if args.out.lower().endswith(".json"):
            r.to_json(args.out)
        else:
            r.to_csv(args.out)
        n_ok = int(r.feasible.sum())
        print(
            f"space {space.name!r}: {len(r):,} budgets, {n_ok:,} feasible, from a front of {len(r.front)} subnets "
            f"({r.seconds:.2f} s); top-1 {_describe(predictor)}; table written to {args.out}"
        )
    else:
        sys.stdout.write(r.to_json() if args.json else r.to_csv())
    return 0


# Subcommands whose parser lives in their (torch-only) module: the arguments are handed over as they are.
_DELEGATED = {
    "train": ("train", "train_main", "train a supernet with progressive shrinking (moofa[train])"),
    "pipeline": (
        "pipeline",
        "pipeline_main",
        "end to end on CPU: train, balanced accuracy set, predictor, search, check (moofa[train])",
    ),
    "train-predictor": ("predictor_train", "main", "train accuracy predictors from JSONL data (moofa[torch])"),
    "bench": ("bench", "main", "constrained-NAS benchmark: problems with known optima, optimisers' regret"),
    "build-dataset": (
        "dataset",
        "dataset_main",
        "balanced accuracy data set of a trained supernet, on one process or under torchrun (moofa[train])",
    ),
}


# Optional dependencies: import name -> (what to call it, the extra that installs it).
_OPTIONAL = {
    "torch": ("PyTorch", "train"),
    "torchvision": ("torchvision", "train"),
    "tqdm": ("tqdm", "train"),
    "PIL": ("Pillow", "train"),
    "sklearn": ("scikit-learn", "train"),
    "tomli": ("tomli", "train"),
    "matplotlib": ("matplotlib", "plot"),
    "onnx": ("onnx", "onnx"),
    "tflite_micro": ("tflite-micro", "mcu"),
    "flatbuffers": ("flatbuffers", "mcu"),
    "pymoo": ("pymoo", "integrations"),
    "optuna": ("optuna", "integrations"),
}
# The extra that a command needs as a whole (train-predictor only needs torch).
_COMMAND_EXTRA = {"train-predictor": "torch"}
_COMMAND_EXTRA["ofa-import"] = "torch"


def _missing_dependency(command: str, exc: ImportError) -> str | None:
    """A one-line message when ``exc`` is an optional dependency that is not installed."""
    # Modules that re-raise with their own text keep the original error as the context.
    seen: BaseException | None = exc
    name = ""
    while seen is not None and name not in _OPTIONAL:
        name = (getattr(seen, "name", None) or "").split(".")[0]
        seen = seen.__cause__ or seen.__context__
    if name not in _OPTIONAL:
        return None
    what, extra = _OPTIONAL[name]
    if extra == "train":
        extra = _COMMAND_EXTRA.get(command, extra)
    return f'moofa {command} needs {what}: pip install "moofa[{extra}]"'


def _run_delegated(name: str, argv: list[str]) -> int:
    import importlib

    module, function, _ = _DELEGATED[name]
    entry = getattr(importlib.import_module(f"moofa.{module}"), function)
    try:
        return entry(argv)
    except (ValueError, TypeError) as exc:
        print(f"moofa {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moofa {name}: interrupted", file=sys.stderr)
        return 130


def _require_matplotlib(args) -> None:
    """Fail before a long search, not after it, when ``--plot`` cannot draw."""
    if getattr(args, "plot", None):
        import matplotlib  # noqa: F401  (ImportError -> the one-line message in main)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default that is a value (not the None / False of an unset option)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "%(default)" in text or unset or not action.option_strings:
            return text
        return super()._get_help_string(action)


def _add_problem_args(p) -> None:
    """The space, predictor, memory model and constraints every search command takes."""
    p.add_argument("--space", default="moofa", help=f"space name ({', '.join(names())}) or a space JSON file")
    p.add_argument(
        "--predictor",
        metavar="NAME_OR_PATH",
        help="accuracy predictor: a shipped name, a moofa .json/.npz pair or a published .pth.tar "
        "(unset: the space's shipped one)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _add_memory_model(p)
    p.add_argument(
        "--bytes-per-item",
        type=float,
        default=None,
        help="to read byte budgets like 1.3MB (default: 4, float32; 1 with --memory-model tflm)",
    )
    p.add_argument("--max-mflops", type=float, help="also require MFLOPs <= this")
    p.add_argument("--max-params", type=int, help="also require parameters <= this")
    p.add_argument("--min-uniformity", type=float, help="also require uniformity (avg / max layer memory) >= this")
    p.add_argument("--max-latency-ms", type=float, help="also require latency <= this, by --latency-table")
    p.add_argument("--latency-table", metavar="FILE.json", help="a table from moofa latency-table")
    p.add_argument("--threads", type=int, default=0, help="0: automatic")


def _add_search_args(p) -> None:
    _add_problem_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw a figure (needs matplotlib: moofa[plot])")


def build_parser() -> argparse.ArgumentParser:
    from .report import TABLE_BUDGETS, TABLE_SPACES

    parser = argparse.ArgumentParser(
        prog="moofa",
        description="Find the most accurate OFA-style subnet that fits a peak-memory budget.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"moofa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter, **kw)

    p = command("search", "the most accurate subnet whose peak memory fits a budget")
    p.add_argument("--budget", default="325k", help="items (325000, 325k) or bytes (1.3MB, 320KiB)")
    p.add_argument("--population", type=int, default=100, help="subnets per generation")
    p.add_argument("--generations", type=int, default=500, help="evolution steps")
    p.add_argument(
        "--objective",
        default="top1",
        choices=["top1", *PROXY_OBJECTIVES],
        help="top1: predicted accuracy; mflops/params: the most compute or parameters under the budget, "
        "a capacity proxy for spaces without a predictor",
    )
    p.add_argument("--layers", action="store_true", help="also print the memory of every layer")
    p.add_argument("--no-bars", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument(
        "--exact",
        action="store_true",
        help="prove the best subnet by branch and bound (moofa.optimum; linear or MLP predictors, "
        "memory models full/activations)",
    )
    p.add_argument("--time-limit", type=float, help="seconds for --exact (unset: until proven)")
    p.add_argument(
        "--islands", type=int, help="independent evolutions sharing the generations (unset: 12 for deep MLPs, else 1)"
    )
    p.add_argument(
        "--transfer",
        action=argparse.BooleanOptionalAction,
        help="also find the best subnet without the peak limit and walk the Pareto front down to the budget "
        "(unset: wherever the dive runs)",
    )
    p.add_argument(
        "--survivors",
        type=int,
        help="islands that go on after an early race (unset: 2 from four islands, else all)",
    )
    p.add_argument(
        "--dive-nodes",
        type=int,
        help="branch-and-bound nodes after the evolution (unset: 1 per 16 evaluations for deep MLPs, else 0)",
    )
    _add_search_args(p)
    p.set_defaults(func=cmd_search)

    p = command("table", "the paper's Table 1 with the shipped predictors (ofa, compofa, moofa)")
    p.add_argument("--spaces", default=",".join(TABLE_SPACES), help="comma-separated spaces")
    p.add_argument("--budgets", default=",".join(TABLE_BUDGETS), help="comma-separated budgets")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--population", type=int, default=100, help="subnets per generation")
    p.add_argument("--generations", type=int, default=500, help="evolution steps per search")
    p.add_argument("--no-paper", action="store_true", help="leave out the paper's figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.add_argument("--plot", metavar="FILE.png", help="top-1 vs budget per space (the paper's Fig. 6)")
    p.set_defaults(func=cmd_table)

    p = command("pareto", "accuracy vs peak memory front (NSGA-II, or a budget sweep)")
    p.add_argument("--budgets", help="comma-separated budgets: one search each (unset: one NSGA-II search)")
    p.add_argument("--max-peak", help="NSGA-II: only subnets up to this peak")
    p.add_argument("--mflops", action="store_true", help="MFLOPs as a third objective")
    p.add_argument("--generations", type=int, help="unset: 200 for NSGA-II, 500 per budget of a sweep")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_search_args(p)
    p.set_defaults(func=cmd_pareto)

    p = command("specialise", "the best subnet for each of many budgets (one front, then a lookup per budget)")
    p.add_argument(
        "--budgets",
        required=True,
        metavar="FILE.csv",
        help="budgets: a CSV file with a 'budget' column, or one budget per line (325000, 325k, 256KiB)",
    )
    p.add_argument("--out", metavar="FILE.csv|FILE.json", help="write the table here (unset: CSV on stdout)")
    _add_problem_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of CSV (without --out)")
    p.set_defaults(func=cmd_specialise)

    for name, (_, _, text) in _DELEGATED.items():
        sub.add_parser(name, help=f"{text}; see moofa {name} --help", add_help=False)

    p = command("profile", "memory per layer, peak, avg +- std, MFLOPs and params of one subnet")
    p.add_argument("--space", default="moofa", help=f"space name ({', '.join(names())}) or a space JSON file")
    p.add_argument(
        "--config",
        help="subnet as a JSON object, or a JSON file (keys ks, e, d, image_size; idle slots may be 0/null)",
    )
    p.add_argument("--ks", type=_int_list, help="kernel per block slot, e.g. 3,5,7,... (unset: the largest)")
    p.add_argument("--e", type=_num_list, help="expand ratio per block slot (unset: the largest)")
    p.add_argument("--d", type=_int_list, help="depth per stage (unset: the largest)")
    p.add_argument("--image-size", type=int, help="input resolution (unset: the largest)")
    _add_memory_model(p)
    p.add_argument(
        "--bytes-per-item", type=float, default=None, help="report bytes instead of items (4: float32, 1: int8)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_profile)

    p = command("design-widths", "channel widths from the paper's memory-balancing rule")
    p.add_argument("--start-width", type=int, default=24, help="width of the first stage")
    p.add_argument("--feature-size", type=float, default=56, help="its output feature map size")
    p.add_argument("--kernel", type=int, default=7, help="reference kernel size")
    p.add_argument("--expand", type=float, default=4, help="reference expand ratio")
    p.add_argument("-n", type=int, default=6, help="number of widths")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_design_widths)

    p = command("export", "int8 TFLite model of a subnet of a trained supernet (moofa[train,mcu])")
    p.add_argument("--format", default="tflite", choices=["tflite"], help="file format")
    p.add_argument("--checkpoint", required=True, help="trained supernet weights (supernet.npz + .json)")
    p.add_argument("--space", help="check that the weights are for this space (name or space JSON file)")
    p.add_argument("--config", help="subnet as a JSON object or file (unset: the largest)")
    p.add_argument("--data", default="digits", help="calibration images: digits, or a folder with train/<class>/*")
    p.add_argument("--calib-batches", type=int, default=4, help="batches of 64 for BN and int8 calibration")
    p.add_argument("--out", required=True, help="output .tflite file")
    p.set_defaults(func=cmd_export)

    p = command("ofa-import", "convert an OFA MobileNetV3 supernet checkpoint to moofa's format (moofa[torch])")
    p.add_argument("checkpoint", help="OFA's ofa_mbv3_d234_e346_k357_w1.0 or _w1.2 file (.pth.tar)")
    p.add_argument("--out", required=True, help="folder for supernet.npz + supernet.json")
    p.add_argument("--space", help="the moofa space to map to (unset: ofa for w1.0, ofa-w1.2 for w1.2)")
    p.add_argument("--export", metavar="FILE", help="also write a subnet: .pt (TorchScript), .pt2, .onnx")
    p.add_argument("--config", help="that subnet as a JSON object or file (unset: the largest)")
    p.add_argument("--ks", type=_int_list, help="or: kernel per block slot, e.g. 3,5,7,... (unset: the largest)")
    p.add_argument("--e", type=_num_list, help="expand ratio per block slot (unset: the largest)")
    p.add_argument("--d", type=_int_list, help="depth per stage (unset: the largest)")
    p.add_argument("--image-size", type=int, help="input resolution (unset: the largest)")
    p.set_defaults(func=cmd_ofa_import)

    p = command("deploy-check", "TFLite Micro arena of a .tflite model; exit 1 if over --budget (moofa[mcu])")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--budget", help="bytes: 262144, 256KiB, 300kB")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_deploy_check)

    p = command("latency-table", "measure the latency of every part of a space on this host (needs torch)")
    p.add_argument("--space", default="moofa", help=f"space name ({', '.join(names())}) or a space JSON file")
    p.add_argument("--out", required=True, help="the table's JSON file (resumed when it exists)")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime"], help="what runs the parts")
    p.add_argument("--resolutions", type=_int_list, help="comma-separated image sizes (unset: all of the space)")
    p.add_argument(
        "--method", choices=["context", "standalone"], help="unset: context (torch), standalone (onnxruntime)"
    )
    p.add_argument("--threads", type=int, default=1, help="threads of the runtime")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    p.add_argument("--repeats", type=int, default=10, help="timed runs (the median is kept)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"], help="cpu: the thread's CPU time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_latency_table)

    p = command("spaces", "list the known search spaces")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_spaces)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in _DELEGATED else None
    try:
        if command is not None:
            code = _run_delegated(command, argv[1:])
        else:
            code = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except ImportError as exc:
        message = _missing_dependency(command or _command_of(argv), exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (moofa search | head -1): stop quietly, and point stdout at
        # devnull so that Python's final flush does not complain again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            pass
        return 1


def _command_of(argv: list[str]) -> str:
    return next((a for a in argv if not a.startswith("-")), "")


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"moofa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moofa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
