"""A constrained-NAS benchmark: fixed problems with known optima, and a scorer for any optimiser.

>>> import moofa.bench
>>> probs = moofa.bench.problems()            # version moofa.bench.VERSION, fixed
>>> p = probs[0]; p.name, p.space, p.budget, p.memory_model, p.optimum, p.provenance
>>> s = moofa.bench.score(p, answers)         # answers: what your optimiser evaluated, in order
>>> s.regret, s.evaluations, s.curve

A problem is: maximise a shipped predictor's top-1 over a space, subject to peak memory
``<= budget`` under a memory model. Its ``optimum`` is certified (``certified=True``) or the
best known, with its ``provenance``. ``score`` checks every answer against the space and the
budget with the C++ evaluator, and reports ``regret = optimum - top-1 of the best feasible
answer`` (``inf`` when none is feasible), the evaluations used and the anytime regret curve.

The problem set is versioned: the definitions and optima of a version do not change (a
new predictor or problem makes a new version). ``problems.json`` beside this file holds them;
``python -m moofa.bench regenerate`` recomputes the optima.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..predictor import load_predictor
from ..spaces import get_space
from ..subnet import Subnet, _as_rows, encode
from ..units import format_items

__all__ = [
    "OPTIMISERS",
    "VERSION",
    "Problem",
    "Score",
    "format_table",
    "main",
    "problem",
    "problems",
    "run",
    "run_suite",
    "score",
]

VERSION = "1"
DATA = Path(__file__).with_name("problems.json")
# The optimisers `run` knows: moofa's search, pymoo's NSGA-II and GA and optuna's TPE through
# the plug-ins of moofa.integrations, and uniform random sampling as the floor.
OPTIMISERS = ("moofa", "pymoo-nsga2", "pymoo-ga", "optuna-tpe", "random")


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: the most accurate subnet of ``space`` (by the shipped
    predictor ``predictor``) whose peak under ``memory_model`` is at most ``budget``
    (items; bytes under ``"tflm"``)."""

    name: str
    space: str
    budget: int
    memory_model: str
    predictor: str
    optimum: float
    optimum_subnet: dict
    provenance: str
    certified: bool = False
    predictor_sha256: str = ""
    version: str = VERSION

    @property
    def unit(self) -> str:
        return "bytes" if self.memory_model == "tflm" else "items"

    @property
    def stale(self) -> bool:
        """True when the shipped predictor changed since the optimum was computed."""
        return bool(self.predictor_sha256) and self.predictor_sha256 != predictor_digest(self.predictor)

    def context(self):
        """The shared evaluation context (space, budget, predictor; C++ evaluation)."""
        return _context(self.space, self.budget, self.memory_model, self.predictor)

    def evaluate(self, nets) -> dict:
        """``top1``, ``peak`` and ``feasible`` arrays of subnets, dicts or encoded rows."""
        rows = _answer_rows(self, nets)
        ctx = self.context()
        vals = ctx.evaluate(rows, ("top1", "peak"))
        return {"top1": vals["top1"], "peak": vals["peak"], "feasible": vals["peak"] <= self.budget}

    def search_kwargs(self) -> dict:
        """Keyword arguments of ``moofa.search`` for this problem."""
        return {
            "budget": self.budget,
            "space": self.space,
            "predictor": self.predictor,
            "memory_model": self.memory_model,
        }

    def pymoo(self, objectives=("top1",), **kw):
        """This problem as a ``moofa.integrations.pymoo.MoofaProblem``."""
        from ..integrations.pymoo import MoofaProblem

        return MoofaProblem(
            self.space,
            self.budget,
            objectives,
            predictor=load_predictor(self.predictor),
            memory_model=self.memory_model,
            **kw,
        )

    def optuna_objective(self):
        """This problem as a ``moofa.integrations.optuna.Objective``."""
        from ..integrations.optuna import Objective

        return Objective(
            self.space, self.budget, predictor=load_predictor(self.predictor), memory_model=self.memory_model
        )

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=64)
def _context(space: str, budget: int, memory_model: str, predictor: str):
    from ..integrations._context import Context

    return Context(space, budget, predictor=load_predictor(predictor), memory_model=memory_model, threads=1)


@lru_cache(maxsize=16)
def predictor_digest(name: str) -> str:
    """sha256 of a shipped predictor's files (json + npz)."""
    root = Path(__file__).resolve().parents[1] / "predictors"
    h = hashlib.sha256()
    for ext in (".json", ".npz"):
        h.update((root / f"{name}{ext}").read_bytes())
    return h.hexdigest()


def _read(path: Path = DATA) -> dict:
    doc = json.loads(path.read_text())
    if doc.get("format") != "moofa-bench":
        raise ValueError(f"{path} is not a moofa benchmark file (format {doc.get('format')!r})")
    return doc


def problems(version: str = VERSION) -> list[Problem]:
    """The benchmark problems of ``version`` (only the current one ships)."""
    if version != VERSION:
        raise ValueError(f"version must be {VERSION!r} (the problem set this moofa ships), got {version!r}")
    doc = _read()
    return [
        Problem(
            name=p["name"],
            space=p["space"],
            budget=int(p["budget"]),
            memory_model=p["memory_model"],
            predictor=p["predictor"],
            optimum=float(p["optimum"]),
            optimum_subnet=dict(p["optimum_subnet"]),
            provenance=p["provenance"],
            certified=bool(p.get("certified", False)),
            predictor_sha256=p.get("predictor_sha256", ""),
            version=doc["version"],
        )
        for p in doc["problems"]
    ]


def problem(name: str) -> Problem:
    """One problem by name."""
    found = {p.name: p for p in problems()}
    if name not in found:
        raise ValueError(f"problem must be one of {list(found)}, got {name!r}")
    return found[name]


_by_name = problem  # the functions below take a parameter named problem


# --- scoring ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Score:
    """An optimiser's result on a problem.

    ``regret``: optimum - predicted top-1 of the best feasible answer (inf if none is
    feasible; negative only if an answer beats a best-known optimum: ``beats_optimum``).
    ``evaluations``: what the optimiser used (given, else the number of answers).
    ``memory_checks``: configs checked against the budget without a prediction, where an
    optimiser reports them (``moofa.search``'s candidates), else None.
    ``curve[i]``: the regret after the first ``i + 1`` answers (inf before a feasible one).
    """

    problem: str
    regret: float
    best_top1: float
    best_subnet: Subnet | None
    best_peak: int | None
    evaluations: int
    answers: int
    infeasible: int
    curve: np.ndarray = field(repr=False)
    optimum: float = math.nan
    certified: bool = False
    memory_checks: int | None = None

    @property
    def feasible(self) -> bool:
        return self.best_subnet is not None

    @property
    def beats_optimum(self) -> bool:
        return self.regret < -1e-4

    def evaluations_to(self, regret: float) -> int | None:
        """Answers needed to reach ``regret`` or less (None if never)."""
        hit = np.flatnonzero(self.curve <= regret)
        return int(hit[0]) + 1 if hit.size else None

    def to_dict(self) -> dict:
        return {
            "problem": self.problem,
            "regret": self.regret,
            "best_top1": self.best_top1,
            "best_peak": self.best_peak,
            "best_subnet": None if self.best_subnet is None else self.best_subnet.to_dict(),
            "evaluations": self.evaluations,
            "answers": self.answers,
            "infeasible": self.infeasible,
            "optimum": self.optimum,
            "certified": self.certified,
            "memory_checks": self.memory_checks,
        }


def _answer_rows(p: Problem, answers) -> np.ndarray:
    sp = get_space(p.space)
    if isinstance(answers, np.ndarray):
        rows = _as_rows(answers, sp)
        from .._encoding import spec

        spec(sp).check_rows(rows)
        return rows
    if isinstance(answers, (Subnet, Mapping)):
        answers = [answers]
    answers = list(answers)
    if not answers:
        return np.zeros((0, sp.n_columns), dtype=np.uint8)
    if all(isinstance(a, np.ndarray) for a in answers):
        return _answer_rows(p, np.stack([np.asarray(a).reshape(-1) for a in answers]))
    return encode(answers, sp)  # validates: a config outside the space is a ValueError


def score(problem: Problem | str, answers, *, evaluations: int | None = None) -> Score:
    """Score an optimiser's answers on ``problem``.

    ``answers``: its final answer, or every config it evaluated in order (for the anytime
    ``curve``): Subnets, OFA-style dicts, encoded rows (``moofa.encode`` layout), or a
    ``moofa.SearchResult`` (its subnet; its evaluations unless given). Configs that are
    not in the space raise ValueError; configs over the budget count as infeasible.
    ``evaluations``: the evaluations the optimiser used (default: the number of answers).
    """
    p = problem if isinstance(problem, Problem) else _by_name(problem)
    if hasattr(answers, "subnet") and hasattr(answers, "evaluations"):
        evaluations = int(answers.evaluations) if evaluations is None else evaluations
        answers = [answers.subnet]
    rows = _answer_rows(p, answers)
    n = len(rows)
    if evaluations is None:
        evaluations = n
    if isinstance(evaluations, bool) or not isinstance(evaluations, numbers.Integral) or evaluations < 0:
        raise ValueError(f"evaluations must be a non-negative integer, got {evaluations!r}")
    vals = (
        p.evaluate(rows) if n else {"top1": np.zeros(0), "peak": np.zeros(0, np.int64), "feasible": np.zeros(0, bool)}
    )
    top1 = np.where(vals["feasible"], np.asarray(vals["top1"], dtype=np.float64), -np.inf)
    best_so_far = np.maximum.accumulate(top1) if n else np.zeros(0)
    curve = np.where(np.isfinite(best_so_far), p.optimum - best_so_far, np.inf)
    if n and np.isfinite(best_so_far[-1]):
        i = int(np.argmax(top1))
        best_subnet: Subnet | None = p.context().subnets(rows[i : i + 1])[0]
        best_top1, best_peak = float(top1[i]), int(vals["peak"][i])
    else:
        best_subnet, best_top1, best_peak = None, -math.inf, None
    return Score(
        problem=p.name,
        regret=float(curve[-1]) if n else math.inf,
        best_top1=best_top1,
        best_subnet=best_subnet,
        best_peak=best_peak,
        evaluations=int(evaluations),
        answers=n,
        infeasible=int(n - int(np.count_nonzero(vals["feasible"]))),
        curve=curve,
        optimum=p.optimum,
        certified=p.certified,
    )


# --- running optimisers -----------------------------------------------------------------


def run(problem: Problem | str, optimiser: str, evaluations: int = 1000, seed: int = 0) -> Score:
    """Run one of ``OPTIMISERS`` on ``problem`` with ``evaluations`` accuracy evaluations,
    through moofa's public API and plug-ins, and score it.

    ``moofa``: ``moofa.search`` with ``max_evaluations`` (its memory checks of candidates
    are not counted: they run before the predictor and are 5-10x cheaper than a prediction);
    ``pymoo-nsga2`` / ``pymoo-ga``: ``MoofaProblem`` with the integer operators of
    ``MoofaProblem.operators``, NSGA-II on (top1, peak), GA on top1, population 100 (or
    ``evaluations / 10`` when smaller); ``optuna-tpe``: ``Objective`` with ``TPESampler``;
    ``random``: uniform random configs. Every evaluated config counts.
    """
    p = problem if isinstance(problem, Problem) else _by_name(problem)
    if optimiser not in OPTIMISERS:
        raise ValueError(f"optimiser must be one of {list(OPTIMISERS)}, got {optimiser!r}")
    if isinstance(evaluations, bool) or not isinstance(evaluations, numbers.Integral) or evaluations < 10:
        raise ValueError(f"evaluations must be an integer >= 10, got {evaluations!r}")
    n = int(evaluations)
    pop = min(100, max(10, n // 10))
    if optimiser == "moofa":
        from ..search import search

        r = search(**p.search_kwargs(), seed=seed, population=pop, generations=100_000, max_evaluations=n)
        return dataclasses.replace(score(p, r), memory_checks=int(r.candidates))
    if optimiser.startswith("pymoo"):
        from pymoo.optimize import minimize

        if optimiser == "pymoo-nsga2":
            from pymoo.algorithms.moo.nsga2 import NSGA2 as algo

            prob = p.pymoo(("top1", "peak"), record=True)
        else:
            from pymoo.algorithms.soo.nonconvex.ga import GA as algo

            prob = p.pymoo(("top1",), record=True)
        minimize(prob, algo(pop_size=pop, **prob.operators()), ("n_evals", n), seed=seed)
        rows = np.concatenate(prob.history)[:n]
        return score(p, rows)
    if optimiser == "optuna-tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        objective = p.optuna_objective()
        study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=n)
        return score(p, np.stack(objective.rows))
    from ..subnet import random_subnets

    return score(p, random_subnets(n, p.space, seed=seed))


def run_suite(
    optimisers: Iterable[str] = OPTIMISERS,
    evaluations: int = 1000,
    seeds: Sequence[int] = (0,),
    names: Sequence[str] | None = None,
    progress=None,
) -> list[dict]:
    """Every optimiser on every problem (or those of ``names``) for each seed: one record each."""
    records = []
    for p in problems():
        if names is not None and p.name not in names:
            continue
        for opt in optimisers:
            for seed in seeds:
                t0 = time.perf_counter()
                s = run(p, opt, evaluations, seed)
                rec = {"optimiser": opt, "seed": seed, "seconds": time.perf_counter() - t0, **s.to_dict()}
                records.append(rec)
                if progress is not None:
                    progress(rec)
    return records


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: one row per problem, the mean regret of each optimiser."""
    opts = list(dict.fromkeys(r["optimiser"] for r in records))
    probs = list(dict.fromkeys(r["problem"] for r in records))
    by: dict[tuple, list] = {}
    for r in records:
        by.setdefault((r["problem"], r["optimiser"]), []).append(r)
    evals = sorted({r["evaluations"] for r in records})
    known = {p.name: p for p in problems()}
    lines = [
        "| problem | optimum | " + " | ".join(opts) + " |",
        "|---|---|" + "---|" * len(opts),
    ]
    for name in probs:
        p = known.get(name)
        opt_txt = "?" if p is None else f"{p.optimum:.2f}" + ("" if p.certified else "*")
        cells = []
        for o in opts:
            rs = by.get((name, o), [])
            regrets = [r["regret"] for r in rs]
            if not regrets:
                cells.append("")
            else:
                finite = [v for v in regrets if math.isfinite(v)]
                text = f"{np.mean(finite):.2f}" if finite else "none feasible"
                if finite and len(finite) < len(regrets):
                    text += f" ({len(regrets) - len(finite)}/{len(regrets)} runs: none feasible)"
                cells.append(text)
        lines.append(f"| {name} | {opt_txt} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"regret = optimum - predicted top-1 of the best feasible answer (percentage points; mean over runs "
        f"that found one), evaluations per run: {', '.join(map(str, evals))}; * best known, not certified"
    )
    return "\n".join(lines)


def describe(p: Problem) -> str:
    return (
        f"{p.name:<24} space={p.space:<11} budget={format_items(p.budget)} {p.unit:<5} "
        f"memory_model={p.memory_model:<11} predictor={p.predictor:<11} optimum={p.optimum:.4f}"
        f"{' (certified)' if p.certified else ''}  [{p.provenance}]"
    )


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)
