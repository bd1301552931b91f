"""How often the default search finds the best score known, per (space, budget, predictor).

For every built-in space at 325k, 400k and 800k items ("full" model) and every predictor
(the shipped one; the published ``*.pth.tar`` where given, which needs torch), ten seeds
of ``moofa.search`` with its defaults and ten with ``transfer=True``, then the best score
known for the cell: the largest of those twenty, of two long searches (population 200 x
2000 generations, with restarts), of ``moofa.specialise`` at that budget and of
``moofa.optimum`` (with a time limit; a finished branch and bound proves the optimum). Writes a JSON file cell by cell
(atomically; a rerun skips the cells already there) and prints the markdown table of
docs/search.md.

    python benchmarks/optimality_sweep.py --out optimality.json [--published DIR] [--time-limit 60]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import moofa

SPACES = ("ofa", "compofa", "moofa", "moofa-e346", "moofa-e1-2")
BUDGETS = (325_000, 400_000, 800_000)
SEEDS = range(10)
TOL = 1e-4  # a seed hits when its score is within this of the best known (float32 scores)


def cell(space: str, budget: int, kind: str, predictor, time_limit: float, seeds=SEEDS) -> dict:
    runs, transfer = [], []
    for seed in seeds:
        r = moofa.search(budget, space=space, predictor=predictor, seed=seed)
        runs.append({"seed": seed, "top1": r.top1, "seconds": r.seconds, "proven": r.proven_optimal})
        # Where the dive runs the default already transfers: transfer=True is the same search.
        if not r.dive_nodes:
            r = moofa.search(budget, space=space, predictor=predictor, seed=seed, transfer=True)
        transfer.append(r.top1)
    long = [
        moofa.search(
            budget,
            space=space,
            predictor=predictor,
            seed=100 + i,
            population=200,
            generations=2000,
            restart_patience=100,
        ).top1
        for i in range(2)
    ]
    fleet = float(moofa.specialise([budget], space, predictor).top1[0])
    out = {"space": space, "budget": budget, "predictor": kind, "seeds": runs, "transfer": transfer, "long": long}
    out["specialise"] = fleet
    best = max([x["top1"] for x in runs] + transfer + long + [fleet])
    opt = moofa.optimum(budget, space=space, predictor=predictor, time_limit=time_limit)
    out["optimum"] = {"top1": opt.top1, "proven": opt.proven_optimal, "seconds": opt.seconds}
    best = max(best, opt.top1)
    out["best"] = best
    out["hits"] = sum(x["top1"] >= best - TOL for x in runs)
    out["transfer_hits"] = sum(t >= best - TOL for t in transfer)
    out["gap"] = best - min(x["top1"] for x in runs)
    out["search_seconds"] = sum(x["seconds"] for x in runs) / len(runs)
    return out


def table(cells: list[dict]) -> str:
    lines = [
        "| space | budget | predictor | best known | proven | hits / 10 | largest gap | transfer hits | B&B s "
        "| search s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        opt = c.get("optimum")
        proven = "-" if opt is None else ("yes" if opt["proven"] else "no")
        bb = "-" if opt is None else f"{opt['seconds']:.1f}"
        lines.append(
            f"| {c['space']} | {c['budget'] // 1000}k | {c['predictor']} | {c['best']:.3f} | {proven} | "
            f"{c['hits']} | {c['gap']:.3f} | {c.get('transfer_hits', '-')} | {bb} | {c['search_seconds']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("optimality.json"))
    ap.add_argument("--published", type=Path, default=None, help="folder with ofa/compofa/moofa .pth.tar")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per branch and bound")
    ap.add_argument("--spaces", nargs="*", default=list(SPACES))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", moofa.predictor.PredictionRangeWarning)
    done = json.loads(args.out.read_text()) if args.out.exists() else []
    key = {(c["space"], c["budget"], c["predictor"]) for c in done}
    todo = []
    for space in args.spaces:
        todo.append((space, "shipped", None))
        path = None if args.published is None else args.published / f"{space}.pth.tar"
        if path is not None and path.exists():
            todo.append((space, "published", path))
    for space, kind, path in todo:
        predictor = moofa.load_predictor(space) if path is None else moofa.load_predictor(str(path))
        smallest = moofa.min_peak(space)[0]
        for budget in BUDGETS:
            if budget < smallest or (space, budget, kind) in key:
                continue
            t = time.perf_counter()
            done.append(cell(space, budget, kind, predictor, args.time_limit))
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(done, indent=1))
            os.replace(tmp, args.out)
            c = done[-1]
            print(
                f"{space} {budget} {kind}: hits {c['hits']}/10 best {c['best']:.3f} ({time.perf_counter() - t:.0f} s)"
            )
    print(table(done))


if __name__ == "__main__":
    main()
