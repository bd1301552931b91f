"""moofa as a pymoo problem: any pymoo algorithm (NSGA-II, NSGA-III, MOEA/D, GA, ...)
searches a moofa space under a memory budget, evaluated in C++ one population at a time.

>>> from pymoo.algorithms.soo.nonconvex.ga import GA
>>> from pymoo.optimize import minimize
>>> from moofa.integrations.pymoo import MoofaProblem
>>> prob = MoofaProblem("moofa", budget="325k", objectives=("top1",))
>>> res = minimize(prob, GA(pop_size=100, **prob.operators()), ("n_evals", 5000), seed=0)
>>> prob.subnets(res.X)[0]

Variables are the columns of the compact encoding (``moofa.encode``) that a subnet sets
freely: resolution, depth per stage, kernel and expand per block slot (a space that couples
expand to depth, CompOFA, leaves its expand columns out: they follow from depth). Each
variable is a choice index in ``0 .. xu``; floats are rounded, so pymoo's real-valued
operators work too, though the integer ones of :meth:`MoofaProblem.operators` search better.
Slots beyond a stage's depth are ignored by the evaluation. Objectives are minimised
(``top1`` as ``-top1``); constraints ``peak - budget <= 0`` (and MFLOPs / params limits).
Needs the ``moofa[integrations]`` extra (pymoo).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spaces import Space
from ..subnet import Subnet, column_names
from ._context import OBJECTIVES, Context, missing

__all__ = ["OBJECTIVES", "MoofaProblem"]

try:
    from pymoo.core.problem import Problem as _Problem
except ImportError:  # pragma: no cover - exercised only without the extra
    _Problem = None

_Base: Any = _Problem if _Problem is not None else object


class MoofaProblem(_Base):
    """A vectorised pymoo ``Problem`` over a moofa space.

    ``space``: a name or ``moofa.Space``. ``budget``: peak-memory limit (items, ``"325k"``,
    or bytes such as ``"1.3MB"`` read with ``bytes_per_item``), a constraint; None for none.
    ``objectives``: names from ``OBJECTIVES`` (``"top1"``, ``"peak"``, ``"mflops"``,
    ``"params"``) or ``(name, function)`` pairs whose function maps encoded rows (uint8,
    ``(n, n_columns)``) to values to minimise (a latency table's lookup, say).
    ``predictor``: as for ``moofa.search`` (None: the space's shipped one).
    ``max_mflops`` / ``max_params``: further constraints. ``record=True`` keeps every
    evaluated row in ``history`` (a list of arrays, one per call), for anytime scoring.
    ``evaluations`` counts the configs evaluated.
    """

    def __init__(
        self,
        space: str | Space = "moofa",
        budget=None,
        objectives=("top1",),
        *,
        predictor=None,
        memory_model: str = "full",
        bytes_per_item: float | None = None,
        max_mflops: float | None = None,
        max_params: int | None = None,
        threads: int = 0,
        record: bool = False,
    ):
        if _Problem is None:
            raise missing("pymoo")
        self.context = ctx = Context(
            space,
            budget,
            predictor=predictor,
            memory_model=memory_model,
            bytes_per_item=bytes_per_item,
            max_mflops=max_mflops,
            max_params=max_params,
            threads=threads,
            objectives=objectives,
        )
        self.objectives = ctx.objectives
        self.constraints = tuple(ctx.constraint_names())
        self.record = bool(record)
        self.history: list[np.ndarray] = []
        self.evaluations = 0
        xu = ctx.limits[ctx.free] - 1
        super().__init__(
            n_var=len(ctx.free), n_obj=len(self.objectives), n_ieq_constr=len(self.constraints), xl=0, xu=xu, vtype=int
        )

    @property
    def space(self) -> Space:
        return self.context.space

    @property
    def budget(self) -> int | None:
        """The peak budget in items (bytes under ``memory_model="tflm"``), or None."""
        return self.context.budget

    @property
    def variable_names(self) -> list[str]:
        """The encoding column each variable sets (``image_size``, ``d[i]``, ``ks[j]``, ``e[j]``)."""
        names = column_names(self.space)
        return [names[i] for i in self.context.free]

    def operators(self) -> dict:
        """Integer sampling, crossover and mutation (pymoo's, with rounding) as keyword
        arguments for an algorithm: ``NSGA2(pop_size=100, **prob.operators())``."""
        from pymoo.core.repair import Repair
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.sampling.rnd import IntegerRandomSampling

        ctx = self.context

        class Canonical(Repair):
            """Rounds, clips and resets idle slots, so that duplicates are found as such."""

            def _do(self, problem, X, **kwargs):
                return ctx.canonical(ctx.rows_from_x(X))[:, ctx.free].astype(X.dtype)

        return {
            "sampling": IntegerRandomSampling(),
            "crossover": SBX(prob=0.9, eta=3.0, vtype=float, repair=Canonical()),
            "mutation": PM(prob=1.0, eta=3.0, vtype=float, repair=Canonical()),
            "repair": Canonical(),
            "eliminate_duplicates": True,
        }

    def rows(self, X) -> np.ndarray:
        """Encoded rows (``moofa.encode`` layout, uint8) of variables ``X``."""
        return self.context.rows_from_x(X)

    def subnets(self, X) -> list[Subnet]:
        """The subnets of variables ``X`` (one per row; a 1-D ``X`` is one subnet)."""
        return self.context.subnets(self.rows(X))

    def variables(self, nets) -> np.ndarray:
        """The variables of subnets, dicts or encoded rows (to seed a population)."""
        return self.context.x_from_rows(self.context.encode(nets))

    def evaluate_rows(self, rows) -> dict[str, np.ndarray]:
        """Objective and constraint values of encoded rows, by name (top1 in percent)."""
        rows = self.context.encode(rows) if not isinstance(rows, np.ndarray) else rows
        return self.context.evaluate_objectives(rows)

    def _evaluate(self, X, out, *args, **kwargs):
        rows = self.context.rows_from_x(X)
        self.evaluations += len(rows)
        if self.record:
            self.history.append(rows)
        vals = self.evaluate_rows(rows)
        F = np.empty((len(rows), len(self.objectives)))
        for i, name in enumerate(self.objectives):
            F[:, i] = -vals[name] if name == "top1" else vals[name]
        out["F"] = F
        if self.constraints:
            out["G"] = self.context.constraint_values(vals)

    def __repr__(self) -> str:
        return (
            f"MoofaProblem(space={self.space.name!r}, budget={self.budget}, objectives={self.objectives}, "
            f"constraints={self.constraints}, n_var={self.context.free.size})"
        )
