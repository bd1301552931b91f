"""``moofa bench`` (also ``python -m moofa.bench``): list the problems, run optimisers on
them and print the regret table, or recompute the optima."""

from __future__ import annotations

import argparse
import json
import sys

from . import OPTIMISERS, VERSION, describe, format_table, problems, run_suite


def _names(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    known = [p.name for p in problems()]
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"--problems: unknown {bad}; known: {known}")
    return names


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moofa bench",
        description=f"constrained-NAS benchmark, problem set version {VERSION}: problems with known optima, "
        "optimisers scored by regret at equal evaluation counts",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="the problems, their optima and where the optima come from")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("run", help="run optimisers on the problems and print the regret table")
    p.add_argument(
        "--optimiser",
        default="moofa",
        help=f"comma-separated, from {', '.join(OPTIMISERS)}, or 'all'",
    )
    p.add_argument("--evaluations", type=int, default=1000, help="accuracy evaluations per run")
    p.add_argument("--seeds", type=_ints, default=[0], help="comma-separated seeds (the table shows the mean)")
    p.add_argument("--problems", help="comma-separated problem names (unset: all)")
    p.add_argument("--json", action="store_true", help="print one JSON record per run instead of the table")
    p = sub.add_parser("regenerate", help="recompute the optima into problems.json (long; resumes)")
    p.add_argument("--searches", type=int, default=8, help="moofa.search runs (seeds) per problem")
    p.add_argument("--population", type=int, default=400, help="population of each search")
    p.add_argument("--generations", type=int, default=1000, help="generations of each search")
    p.add_argument("--out", help="file to write (default: the shipped problems.json)")
    p.add_argument("--force", action="store_true", help="recompute problems already done with these settings")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "list":
            ps = problems()
            if args.json:
                print(json.dumps([p.__dict__ for p in ps], indent=1))
            else:
                print(f"moofa.bench version {VERSION}: {len(ps)} problems")
                for p in ps:
                    print(describe(p))
            return 0
        if args.command == "run":
            opts = list(OPTIMISERS) if args.optimiser == "all" else [o.strip() for o in args.optimiser.split(",")]
            bad = [o for o in opts if o not in OPTIMISERS]
            if bad:
                raise ValueError(f"--optimiser: unknown {bad}; allowed: {list(OPTIMISERS)} or 'all'")

            def show(rec):
                if args.json:
                    print(json.dumps(rec), flush=True)
                else:
                    print(
                        f"{rec['problem']:<24} {rec['optimiser']:<12} seed {rec['seed']}: regret {rec['regret']:.3f} "
                        f"({rec['evaluations']} evaluations, {rec['seconds']:.2f} s)",
                        file=sys.stderr,
                        flush=True,
                    )

            records = run_suite(opts, args.evaluations, args.seeds, _names(args.problems), progress=show)
            if not args.json:
                print(format_table(records))
            return 0
        if args.command == "regenerate":
            from .make import regenerate

            regenerate(
                searches=args.searches,
                population=args.population,
                generations=args.generations,
                out=args.out,
                force=args.force,
            )
            return 0
    except (ValueError, TypeError) as exc:
        print(f"moofa bench: error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2
