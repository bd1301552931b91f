"""moofa inside optuna: sample subnets trial by trial, score them in C++, constrain memory.

>>> import optuna
>>> from moofa.integrations.optuna import Objective, constraints, suggest_subnet
>>> objective = Objective("moofa", budget="325k")          # predicted top-1, peak <= budget
>>> sampler = optuna.samplers.TPESampler(seed=0)           # optuna < 5: constraints_func=constraints
>>> study = optuna.create_study(directions=objective.directions, sampler=sampler)
>>> study.optimize(objective, n_trials=1000)
>>> objective.best(study)                                  # the best feasible Subnet

``suggest_subnet(trial, space)`` asks the trial only for what a subnet sets: the input size,
the depth of each stage, and a kernel and expand for each *active* block slot (parameters
``image_size``, ``d[i]``, ``ks[j]``, ``e[j]``, named as ``moofa.column_names``); slots beyond a
stage's depth get the space's canonical idle choice, and a space that couples expand to depth
(CompOFA) has no ``e[j]`` parameters. Needs the ``moofa[integrations]`` extra (optuna).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._encoding import columns
from ..spaces import Space, get_space
from ..subnet import Subnet, _nice, decode
from ._context import Context

__all__ = ["CONSTRAINT_ATTR", "Objective", "constraints", "suggest_subnet", "subnet_of"]

# The trial user attribute holding the constraint values (<= 0: satisfied), optuna's convention.
CONSTRAINT_ATTR = "constraint"


def _row_by_suggest(suggest, sp: Space) -> np.ndarray:
    """An encoded row whose choices come from ``suggest(name, choices) -> index``."""
    cols = columns(sp)
    row = np.zeros(cols.n, dtype=np.uint8)
    row[cols.resolution] = suggest("image_size", sp.resolutions)
    o_d, o_k, o_e = cols.depth.start, cols.kernel.start, cols.expand.start
    expands = _nice(sp.expands)
    slot = 0
    for s, stage in enumerate(sp.stages):
        di = suggest(f"d[{s}]", sp.depths)
        row[o_d + s] = di
        depth = sp.depths[di]
        coupled = sp.expands.index(sp.expand_by_depth[depth]) if sp.expand_by_depth else None
        for j in range(stage.max_depth):
            if j < depth:
                row[o_k + slot] = suggest(f"ks[{slot}]", sp.kernels)
                row[o_e + slot] = coupled if coupled is not None else suggest(f"e[{slot}]", expands)
            elif coupled is not None:
                row[o_e + slot] = coupled
            slot += 1
    return row


def _trial_suggest(trial):
    def suggest(name: str, choices: Sequence) -> int:
        choices = list(choices)
        return choices.index(trial.suggest_categorical(name, choices))

    return suggest


def suggest_subnet(trial, space: str | Space = "moofa") -> Subnet:
    """A subnet of ``space`` drawn through ``trial.suggest_categorical`` (active slots only)."""
    sp = get_space(space)
    return decode(_row_by_suggest(_trial_suggest(trial), sp)[None, :], sp)[0]


def subnet_of(trial, space: str | Space = "moofa") -> Subnet:
    """The subnet a finished trial (``FrozenTrial``) sampled with :func:`suggest_subnet`."""
    sp = get_space(space)
    params = trial.params

    def lookup(name: str, choices: Sequence) -> int:
        if name not in params:
            raise ValueError(f"trial {trial.number} has no parameter {name!r}: was it sampled by suggest_subnet?")
        return list(choices).index(params[name])

    return decode(_row_by_suggest(lookup, sp)[None, :], sp)[0]


def constraints(trial) -> Sequence[float]:
    """``constraints_func`` for the samplers of optuna 3 and 4: the values :class:`Objective`
    stored (<= 0 when met). optuna 5 reads them from ``trial.set_constraint``, which
    :class:`Objective` calls too."""
    return trial.user_attrs.get(CONSTRAINT_ATTR, ())


class Objective:
    """An optuna objective: samples a subnet with :func:`suggest_subnet`, evaluates it in C++
    and stores its constraint values (``peak - budget`` and the MFLOPs / params limits) in
    the trial's ``"constraint"`` user attribute for :func:`constraints`.

    ``objectives``: ``"top1"`` (maximised), ``"peak"``, ``"mflops"``, ``"params"``
    (minimised), or ``(name, function of encoded rows)`` pairs (minimised); one objective
    returns a float, several a tuple (a multi-objective study: ``directions=obj.directions``).
    ``rows`` keeps every evaluated row, in order; ``evaluations`` counts them.
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
    ):
        self.context = Context(
            space,
            budget,
            predictor=predictor,
            memory_model=memory_model,
            bytes_per_item=bytes_per_item,
            max_mflops=max_mflops,
            max_params=max_params,
            threads=1,
            objectives=objectives,
        )
        self.objectives = self.context.objectives
        self.rows: list[np.ndarray] = []

    @property
    def space(self) -> Space:
        return self.context.space

    @property
    def directions(self) -> list[str]:
        """optuna study directions, one per objective."""
        return ["maximize" if name == "top1" else "minimize" for name in self.objectives]

    @property
    def evaluations(self) -> int:
        return len(self.rows)

    def __call__(self, trial) -> Any:
        row = _row_by_suggest(_trial_suggest(trial), self.space)[None, :]
        self.rows.append(row[0])
        vals = self.context.evaluate_objectives(row)
        g = self.context.constraint_values(vals)[0]
        values = [float(v) for v in g]
        trial.set_user_attr(CONSTRAINT_ATTR, values)
        set_constraint = getattr(trial, "set_constraint", None)  # optuna >= 5: samplers read these
        if set_constraint is not None:
            for name, v in zip(self.context.constraint_names(), values):
                set_constraint(name, v)
        if "peak" in vals:
            trial.set_user_attr("peak", int(vals["peak"][0]))
        out = tuple(float(vals[name][0]) for name in self.objectives)
        return out[0] if len(out) == 1 else out

    def feasible_trials(self, study) -> list:
        """Completed trials whose constraints hold."""
        return [
            t
            for t in study.get_trials(deepcopy=False)
            if t.values is not None and all(v <= 0 for v in t.user_attrs.get(CONSTRAINT_ATTR, ()))
        ]

    def best(self, study) -> Subnet | None:
        """The subnet of the best feasible trial (first objective), or None if none is feasible."""
        trials = self.feasible_trials(study)
        if not trials:
            return None
        sign = 1.0 if self.directions[0] == "maximize" else -1.0
        best = max(trials, key=lambda t: sign * t.values[0])
        return subnet_of(best, self.space)
