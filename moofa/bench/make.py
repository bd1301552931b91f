"""The problem definitions of the benchmark and the computation of their optima.

``python -m moofa.bench regenerate`` computes each problem's optimum: certified by
``moofa.optimum`` where it proves the optimum (ReLU MLP predictors, peak a max over
layers), else the best of several long ``moofa.search`` runs (and of the optimum
already on file), with that provenance written beside it. The file
is rewritten atomically after every problem, and a rerun skips problems already computed
with the same settings and predictor (resume).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import DATA, VERSION, predictor_digest

# Version 1: spaces x budgets x memory models x shipped predictors. Never edit a released
# version's entries: add a version.
DEFINITIONS: list[dict[str, Any]] = [
    {"name": "moofa-325k", "space": "moofa", "budget": 325_000, "memory_model": "full", "predictor": "moofa"},
    {"name": "moofa-400k", "space": "moofa", "budget": 400_000, "memory_model": "full", "predictor": "moofa"},
    {"name": "moofa-500k", "space": "moofa", "budget": 500_000, "memory_model": "full", "predictor": "moofa"},
    {"name": "ofa-325k", "space": "ofa", "budget": 325_000, "memory_model": "full", "predictor": "ofa"},
    {"name": "ofa-500k", "space": "ofa", "budget": 500_000, "memory_model": "full", "predictor": "ofa"},
    {"name": "compofa-325k", "space": "compofa", "budget": 325_000, "memory_model": "full", "predictor": "compofa"},
    {"name": "compofa-500k", "space": "compofa", "budget": 500_000, "memory_model": "full", "predictor": "compofa"},
    {
        "name": "moofa-mcu-200k",
        "space": "moofa",
        "budget": 200_000,
        "memory_model": "activations",
        "predictor": "moofa",
    },
    {
        "name": "moofa-e346-500k",
        "space": "moofa-e346",
        "budget": 500_000,
        "memory_model": "full",
        "predictor": "moofa-e346",
    },
    {
        "name": "moofa-e1-2-tflm-160KiB",
        "space": "moofa-e1-2",
        "budget": 163_840,
        "memory_model": "tflm",
        "predictor": "moofa-e1-2",
    },
]


def _write_atomic(path: Path, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Time the branch and bound may take per problem before the problem falls back to searches.
CERTIFY_SECONDS = 30.0


def _certified(d: dict):
    """(top1, subnet) proven by moofa.optimum, or None where it does not apply or finish."""
    from ..search import optimum

    try:
        r = optimum(
            d["budget"],
            space=d["space"],
            predictor=d["predictor"],
            memory_model=d["memory_model"],
            time_limit=CERTIFY_SECONDS,
        )
    except ValueError:  # a memory model or predictor the branch and bound does not cover
        return None
    # Unproven within the time limit: the searches below give the best known instead.
    return (float(r.top1), r.subnet) if r.proven_optimal else None


def _searched(d: dict, searches: int, population: int, generations: int):
    from ..search import search

    best = None
    scores = []
    for seed in range(searches):
        r = search(
            d["budget"],
            space=d["space"],
            predictor=d["predictor"],
            memory_model=d["memory_model"],
            seed=seed,
            population=population,
            generations=generations,
        )
        scores.append(r.top1)
        if best is None or r.top1 > best.top1:
            best = r
    assert best is not None
    agree = sum(abs(v - best.top1) <= 1e-4 for v in scores)
    return float(best.top1), best.subnet, agree


def regenerate(
    *, searches: int = 8, population: int = 400, generations: int = 1000, out=None, force: bool = False, log=print
) -> Path:
    from ..predictor import load_predictor
    from ..subnet import Subnet

    path = Path(out) if out else DATA
    old: dict[str, dict] = {}
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc.get("version") == VERSION:
            old = {p["name"]: p for p in doc.get("problems", [])}
    settings = {"searches": searches, "population": population, "generations": generations}
    done: list[dict] = []
    for d in DEFINITIONS:
        digest = predictor_digest(d["predictor"])
        prev: dict = old.get(d["name"]) or {}
        same_def = bool(prev) and all(prev.get(k) == v for k, v in d.items())
        if same_def and not force and prev.get("predictor_sha256") == digest:
            if prev.get("certified") or prev.get("generator") == settings:
                done.append(prev)
                log(f"{d['name']}: kept ({prev['provenance']})")
                continue
        cert = _certified(d)
        if cert is not None:
            top1, net = cert
            provenance, certified = "certified by moofa.optimum", True
            generator: dict = {"method": "moofa.optimum"}
        else:
            top1, net, agree = _searched(d, searches, population, generations)
            provenance = (
                f"best known: best of {searches} moofa.search runs (seeds 0-{searches - 1}), "
                f"population {population}, generations {generations}; {agree} of {searches} reached it"
            )
            certified = False
            generator = settings
            if same_def and prev.get("predictor_sha256") == digest and float(prev["optimum"]) > top1:
                top1, net = float(prev["optimum"]), Subnet.from_dict(prev["optimum_subnet"])
                provenance, generator = prev["provenance"], prev.get("generator", {})
        # The value on file is the predictor's score of the subnet on file.
        top1 = float(load_predictor(d["predictor"]).predict([net])[0])
        entry = {
            **d,
            "optimum": top1,
            "optimum_subnet": net.to_dict(),
            "provenance": provenance,
            "certified": certified,
            "predictor_sha256": digest,
            "generator": generator,
        }
        done.append(entry)
        rest = [old[x["name"]] for x in DEFINITIONS[len(done) :] if x["name"] in old]
        _write_atomic(path, {"format": "moofa-bench", "version": VERSION, "problems": done + rest})
        log(f"{d['name']}: {top1:.4f} ({provenance})")
    _write_atomic(path, {"format": "moofa-bench", "version": VERSION, "problems": done})
    return path
