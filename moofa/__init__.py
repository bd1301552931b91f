"""moofa: find the most accurate OFA-style subnet that fits a peak-memory budget.

>>> import moofa
>>> moofa.profile(moofa.Subnet(ks=[7]*20, e=[4]*20, d=[4]*5, image_size=224), space="moofa").peak
"""

from __future__ import annotations

import importlib as _importlib
import importlib.util as _importlib_util

from . import dataset, design, memory, predictor, report, spaces, subnet, units
from ._ext import core as _ext_core
from .memory import MEMORY_MODELS, Profile, evaluator, layer_names, min_peak, peak_memory, profile, profiles
from .predictor import Predictor, load_predictor
from .search import ParetoFront, SearchResult, linear_scorer, optimum, pareto, search, sweep
from .spaces import Space, Stage, design_widths, get_space, register
from .specialise import SpecialiseResult, specialise
from .subnet import Subnet, column_names, decode, encode, random_subnets
from .units import format_items, parse_budget

__version__: str = _ext_core.__version__  # pyproject.toml's, compiled into the core

__all__ = [
    "MEMORY_MODELS",
    "ParetoFront",
    "Predictor",
    "Profile",
    "SearchResult",
    "SpecialiseResult",
    "Space",
    "Stage",
    "Subnet",
    "__version__",
    "column_names",
    "dataset",
    "decode",
    "design",
    "design_widths",
    "encode",
    "evaluator",
    "format_items",
    "get_space",
    "layer_names",
    "linear_scorer",
    "load_predictor",
    "memory",
    "min_peak",
    "optimum",
    "pareto",
    "predictor",
    "parse_budget",
    "peak_memory",
    "profile",
    "profiles",
    "random_subnets",
    "register",
    "report",
    "search",
    "spaces",
    "specialise",
    "subnet",
    "sweep",
    "units",
]


# ``moofa.search`` is the search function, which hides the module of the same name. The
# module's public names are attributes of the function too, so that ``moofa.search.sweep``
# and ``import moofa.search as s; s.ParetoFront`` work as the module's would.
def _expose_search_module() -> None:
    import sys

    module = sys.modules[f"{__name__}.search"]
    for name in module.__all__:
        if name != "search":
            setattr(search, name, getattr(module, name))


_expose_search_module()


# ``moofa.specialise`` is the function too; the module's names are its attributes, as for search.
def _expose_specialise_module() -> None:
    import sys

    module = sys.modules[f"{__name__}.specialise"]
    for name in module.__all__:
        if name != "specialise":
            setattr(specialise, name, getattr(module, name))


_expose_specialise_module()


_LAZY = {"deploy_check": "deploy", "DeployReport": "deploy"}


def __getattr__(name: str):
    """Submodules that need optional dependencies (``moofa.nn``, ``moofa.train``, ...)
    import on first use, so that ``import moofa`` needs numpy only."""
    if name in _LAZY:
        return getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
