"""Plug-ins that put moofa inside other optimisers and NAS tools.

- ``moofa.integrations.pymoo``: ``MoofaProblem``, a vectorised pymoo problem (NSGA-II,
  NSGA-III, MOEA/D, GA, ... run on it unchanged).
- ``moofa.integrations.optuna``: ``suggest_subnet`` (only active slots, coupling
  respected), ``Objective`` and ``constraints`` for optuna studies.
- ``moofa.integrations.ofa``: ``EfficiencyPredictor`` and ``AccuracyPredictor`` with the
  interface OFA's ``EvolutionFinder`` calls.

pymoo and optuna are imported only when a plug-in that needs them is used
(``pip install 'moofa[integrations]'``).
"""

from __future__ import annotations

import importlib as _importlib

__all__ = ["ofa", "optuna", "pymoo"]


def __getattr__(name: str):
    if name in __all__:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
