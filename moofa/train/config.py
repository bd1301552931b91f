"""Training configuration: the :class:`TrainConfig` and :class:`Phase` dataclasses and their
validation, driven by the dataclass fields (their types and ``metadata``), so a new field is
checked as soon as it is declared. Pure Python: no torch needed."""

# No ``from __future__ import annotations`` here: the validation reads the fields' types as
# objects, and Python 3.9 cannot evaluate ``int | None`` written as a string.

import copy
import dataclasses
import math
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["CONFIG_DIR", "Phase", "TrainConfig", "builtin_configs", "load_config"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# An elastic choice per phase: "max" (largest only), "all", or N (the N largest choices).
ChoiceSpec = Union[str, int]


def _min(n: float) -> dict:
    """Field metadata: the smallest value allowed."""
    return {"min": n}


@dataclass
class Phase:
    """One training phase. ``kernels``/``depths``/``expands``: "max" (largest choice only),
    "all", or an integer N (the N largest choices)."""

    name: str
    epochs: int = field(metadata=_min(1))
    lr: float = field(metadata=_min(0))
    warmup_epochs: int = 0
    subnets_per_step: int = field(default=1, metadata=_min(1))
    kernels: ChoiceSpec = field(default="max", metadata={"choices_of": "kernels"})
    depths: ChoiceSpec = field(default="max", metadata={"choices_of": "depths"})
    expands: ChoiceSpec = field(default="max", metadata={"choices_of": "expands"})


@dataclass
class TrainConfig:
    """Everything a run needs; defaults are the published OFA / MOOFA runs' (the paper's Table 2)."""

    space: Any = "moofa"  # a registered name, a [space] table (dict) or a moofa.Space
    data: str = field(default="digits", metadata={"allowed": "'digits', 'synthetic' or a folder path"})
    phases: list = field(default_factory=list)  # of Phase
    n_classes: Optional[int] = field(default=None, metadata=_min(1))  # default: the data set's
    batch_size: int = field(default=64, metadata=_min(1))
    val_batch_size: int = field(default=128, metadata=_min(1))
    workers: int = 0
    seed: int = 0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    dropout: float = 0.1
    kd_ratio: float = 1.0
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    crop_scale: tuple[float, float] = (0.08, 1.0)
    resolutions: Optional[list[int]] = field(default=None, metadata=_min(1))  # default: the space's
    amp: bool = True
    checkpoint_every: int = 0  # steps; 0: only at the end of every epoch
    log_every: int = field(default=50, metadata=_min(1))
    steps_per_epoch: Optional[int] = field(default=None, metadata=_min(1))  # cap on batches per epoch
    val_batches: Optional[int] = field(default=None, metadata=_min(1))  # cap on validation batches
    calib_batches: int = field(default=8, metadata=_min(1))  # batches recalibrating BN before validation
    val_every_epochs: int = 1  # validate every N epochs (0: only at each phase's end)
    # The accuracy predictor co-trained during progressive shrinking (moofa.train.cotrain):
    # every cotrain_every steps (0: off), cotrain_subnets of the subnets trained since are measured.
    cotrain_every: int = 0
    cotrain_subnets: int = field(default=1, metadata=_min(1))
    cotrain_bins: int = field(default=8, metadata=_min(1))  # peak-memory bins (choice and balance)
    cotrain_history: str = field(default="phase", metadata={"allowed": "'phase' or 'all'"})
    cotrain_predictor_epochs: int = field(default=200, metadata=_min(1))

    def space_obj(self):
        from ..spaces import get_space

        return get_space(self.space)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["space"] = self.space_obj().to_dict()
        d["crop_scale"] = list(self.crop_scale)
        return d


def builtin_configs() -> list[str]:
    """Names of the configs shipped in ``moofa/configs`` (pass them instead of a path)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _toml_load(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {path} is not valid TOML: {exc}") from None


# --- checking one value against its field ---------------------------------------------------


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_typed(where: str, name: str, value, tp, meta) -> Any:
    """``value`` checked against the type ``tp`` of field ``name`` (``meta``: its metadata)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union and type(None) in args:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_typed(where, name, value, inner, meta)
    lo = meta.get("min", 0)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{where}: {name} must be an integer >= {lo}, got {value!r}")
        return value
    if tp is float:
        if not _is_number(value) or not math.isfinite(value) or value < lo:
            raise ValueError(f"{where}: {name} must be a non-negative number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            allowed = meta.get("allowed", "a non-empty string")
            raise ValueError(f"{where}: {name} must be {allowed}, got {value!r}")
        return value
    if origin is tuple:  # a fixed number of numbers
        if not isinstance(value, (list, tuple)) or len(value) != len(args) or not all(map(_is_number, value)):
            raise ValueError(f"{where}: {name} must be {len(args)} numbers [min, max], got {value!r}")
        return tuple(float(v) for v in value)
    if origin is list and args == (int,):
        if not isinstance(value, list) or not value or not all(_is_int_at_least(v, lo) for v in value):
            raise ValueError(f"{where}: {name} must be a non-empty list of integers >= {lo}, got {value!r}")
        return list(value)
    raise TypeError(f"{where}: field {name} has a type ({tp}) the config checker does not know")


def _is_int_at_least(v, lo) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _choice_spec(where: str, value, n_choices: int):
    if value in ("max", "all"):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n_choices:
        raise ValueError(
            f"{where} must be 'max', 'all' or an integer 1..{n_choices} (how many of the largest "
            f"choices), got {value!r}"
        )
    return value


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _reject_unknown(where: str, raw: dict, cls) -> None:
    allowed = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}")


# --- whole configs ----------------------------------------------------------------------------


def _raw_from(source) -> tuple[dict, str]:
    """The config as a plain dict, and how to name it in errors."""
    if isinstance(source, TrainConfig):
        raw = {f.name: getattr(source, f.name) for f in dataclasses.fields(TrainConfig)}
        raw["phases"] = [dataclasses.asdict(p) if isinstance(p, Phase) else p for p in source.phases]
        return raw, "config"
    if isinstance(source, dict):
        return copy.deepcopy(source), "config"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file() and str(source) in builtin_configs():
            path = CONFIG_DIR / f"{source}.toml"
        if not path.is_file():
            raise ValueError(f"config {str(source)!r} is neither a file nor a built-in config {builtin_configs()}")
        return _toml_load(path), f"config {path}"
    raise TypeError(f"config must be a path, a built-in name, a dict or a TrainConfig, got {type(source).__name__}")


def _load_space(where: str, space):
    from ..spaces import Space, get_space

    try:
        if isinstance(space, dict):
            space = Space.from_dict(space)
        return get_space(space)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where}: space: {exc}") from None


def _load_phase(where: str, i: int, p, space) -> Phase:
    if isinstance(p, Phase):
        p = dataclasses.asdict(p)
    if not isinstance(p, dict):
        raise ValueError(f"{where}: phases[{i}] must be a table, got {type(p).__name__}")
    _reject_unknown(f"{where}: phases[{i}]", p, Phase)
    kwargs: dict[str, Any] = {}
    for name, (tp, f) in _field_types(Phase).items():
        if name not in p:
            if f.default is dataclasses.MISSING:
                raise ValueError(f"{where}: phases[{i}] needs '{name}'")
            continue
        pw = f"{where}: phases[{i}] ({p.get('name')!r})"
        if "choices_of" in f.metadata:
            n_choices = len(getattr(space, f.metadata["choices_of"]))
            kwargs[name] = _choice_spec(f"{pw}: {name}", p[name], n_choices)
        else:
            kwargs[name] = _check_typed(pw, name, p[name], tp, f.metadata)
    ph = Phase(**kwargs)
    if ph.warmup_epochs > ph.epochs:
        raise ValueError(f"{where}: phases[{i}] ({ph.name!r}): warmup_epochs ({ph.warmup_epochs}) exceeds epochs")
    return ph


def load_config(source, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML path, a built-in config name (see
    :func:`builtin_configs`), a dict or a TrainConfig; ``overrides`` replace top-level keys
    (``None`` leaves a key as it is). Unknown keys and values of the wrong kind raise
    ``ValueError`` naming them and what is allowed."""
    raw, where = _raw_from(source)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    _reject_unknown(where, raw, TrainConfig)
    space = _load_space(where, raw.get("space", "moofa"))

    kwargs: dict[str, Any] = {}
    for name, (tp, f) in _field_types(TrainConfig).items():
        if name in ("space", "phases") or name not in raw:
            continue
        kwargs[name] = _check_typed(where, name, raw[name], tp, f.metadata)
    cfg = TrainConfig(space=space, phases=[], **kwargs)
    if cfg.resolutions is not None:
        bad = [r for r in cfg.resolutions if r not in space.resolutions]
        if bad:
            raise ValueError(
                f"{where}: resolutions {bad} are not in space {space.name!r} (allowed: {list(space.resolutions)})"
            )
    if cfg.cotrain_history not in ("phase", "all"):
        raise ValueError(
            f"{where}: cotrain_history must be 'phase' (each phase's records) or 'all' (every phase's), "
            f"got {cfg.cotrain_history!r}"
        )
    if not 0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1:
        raise ValueError(f"{where}: crop_scale must be [min, max] with 0 < min <= max <= 1, got {cfg.crop_scale}")

    phases = raw.get("phases")
    if not isinstance(phases, list) or not phases:
        raise ValueError(f"{where}: phases must be a non-empty list of [[phases]] tables")
    cfg.phases = [_load_phase(where, i, p, space) for i, p in enumerate(phases)]
    return cfg


def allowed_choices(spec, choices: Sequence) -> list:
    """The choices a phase's spec ("max", "all" or N) allows, smallest first."""
    ordered = sorted(choices)
    if spec == "max":
        return ordered[-1:]
    if spec == "all":
        return ordered
    return ordered[-int(spec) :]
