"""moofa: find the most accurate OFA-style subnet that fits a peak-memory budget.

>>> import moofa
>>> moofa.profile(moofa.Subnet(ks=[7]*20, e=[4]*20, d=[4]*5, image_size=224), space="moofa").peak
"""

from __future__ import annotations

from . import spaces
from ._ext import core as _ext_core
from .memory import MEMORY_MODELS, Profile, evaluator, layer_names, min_peak, peak_memory, profile, profiles
from .predictor import Predictor, load_predictor
from .search import ParetoFront, SearchResult, pareto, search
from .spaces import Space, Stage, design_widths, get_space, register
from .subnet import Subnet, column_names, decode, encode, random_subnets
from .units import format_items, parse_budget

__version__: str = _ext_core.__version__  # pyproject.toml's, compiled into the core

__all__ = [
    "MEMORY_MODELS",
    "ParetoFront",
    "Predictor",
    "Profile",
    "SearchResult",
    "Space",
    "Stage",
    "Subnet",
    "__version__",
    "column_names",
    "decode",
    "design_widths",
    "encode",
    "evaluator",
    "format_items",
    "get_space",
    "layer_names",
    "load_predictor",
    "min_peak",
    "pareto",
    "parse_budget",
    "peak_memory",
    "profile",
    "profiles",
    "random_subnets",
    "register",
    "search",
    "spaces",
]
