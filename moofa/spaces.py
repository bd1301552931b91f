"""Search spaces: the supernets moofa knows, and how users define their own.

A :class:`Space` is a plain description (widths, strides, choice lists). The C++
evaluator, the predictor encoding, the search and the PyTorch supernet are all
derived from it, so a user-defined space gets every feature for free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "Space",
    "Stage",
    "design_widths",
    "get_space",
    "make_divisible",
    "names",
    "register",
]

ACTIVATIONS = ("relu", "relu6", "h_swish", "h_sigmoid", "sigmoid", "swish", "none")


def make_divisible(v: float, divisor: int = 8) -> int:
    """OFA's channel rounding: nearest multiple of ``divisor`` (at least ``divisor``),
    bumped up one step when rounding lost more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def design_widths(
    start_width: int = 24,
    feature_size: float = 56,
    kernel: int = 7,
    expand: float = 4,
    n_widths: int = 6,
    divisor: int = 8,
) -> list[int]:
    """Channel widths from the paper's memory-balancing rule (Sec. 3.2, eqs. 4-9).

    Starting from a stage of ``start_width`` channels whose output feature map is
    ``feature_size`` pixels wide, each next width is chosen so that the dominant
    layer (depthwise or expansion, for the reference ``kernel`` and ``expand``)
    needs about the same memory as in the stage before. The defaults are the
    paper's reference configuration (k=7, e=4, resolution 224) and give
    ``[96, 288, 360, 384, 392, 392]``.
    """
    for name, value in (("start_width", start_width), ("kernel", kernel), ("n_widths", n_widths)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"design_widths: {name} must be a positive integer, got {value!r}")
    for name, number in (("feature_size", feature_size), ("expand", expand)):
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not 0 < number < math.inf:
            raise ValueError(f"design_widths: {name} must be a positive, finite number, got {number!r}")
    c = float(start_width)
    size = float(feature_size)
    k2 = float(kernel * kernel)
    e = float(expand)
    widths = []
    for _ in range(n_widths):
        i2 = size * size
        mem_dw = e * c * i2 + e * c * k2 + e * c * i2  # depthwise: in + weights + out
        mem_exp = c * i2 + e * c * c + e * c * i2  # expansion: in + weights + out
        b = i2 / 4 + e * i2 / 4
        if mem_dw > mem_exp:
            dw_to_dw = 2 * c * (i2 + k2) / (i2 / 2 + k2)
            dw_to_exp = (-b + math.sqrt(b * b + 4 * e * mem_dw)) / (2 * e)
            c = min(dw_to_dw, dw_to_exp)
        else:
            c = (-b + math.sqrt(b * b + 4 * e * mem_exp)) / (2 * e)
        size /= 2
        c = make_divisible(c, divisor)
        widths.append(int(c))
    return widths


def _check_act(where: str, act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"{where}: activation must be one of {list(ACTIVATIONS)}, got {act!r}")


def _pos_int(where: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Stage:
    """One elastic stage: up to ``max_depth`` MBConv blocks of output ``width``.

    The first block has the stage ``stride``; the others are stride 1 with an
    identity shortcut. ``se`` puts squeeze-excite in every block of the stage.
    ``max_depth`` (the stage's block slots) defaults to the largest of the space's
    ``depths``: a :class:`Space` fills it in (0 or None here means "not given").
    """

    width: int
    stride: int = 1
    act: str = "relu"
    se: bool = False
    max_depth: int = 0

    def __post_init__(self) -> None:
        _pos_int("Stage.width", self.width)
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            raise ValueError(f"Stage.stride must be 1 or 2, got {self.stride!r}")
        _check_act("Stage.act", self.act)
        if not isinstance(self.se, bool):
            raise TypeError(f"Stage.se must be a bool, got {type(self.se).__name__}")
        if self.max_depth is None:
            object.__setattr__(self, "max_depth", 0)
        elif self.max_depth != 0 or isinstance(self.max_depth, bool):
            _pos_int("Stage.max_depth", self.max_depth)

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "Stage") -> Stage:
        if not isinstance(d, Mapping):
            raise TypeError(f"{where} must be an object with keys {_STAGE_KEYS}, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_STAGE_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; allowed: {_STAGE_KEYS}")
        if "width" not in d:
            raise ValueError(f"{where}: missing key 'width' (allowed keys: {_STAGE_KEYS})")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None


_STAGE_KEYS = ["width", "stride", "act", "se", "max_depth"]


@dataclass(frozen=True)
class Space:
    """A weight-sharing supernet of elastic MBConv stages (OFA MobileNetV3 family).

    Layout: first conv (``first_conv_kernel``, stride ``first_conv_stride``) ->
    a fixed first block (e=1, k=3, stride 1) -> ``stages`` -> final expand (1x1) ->
    global pooling -> feature mix (1x1, no BN; 0 to omit) -> classifier.

    ``expand_by_depth`` couples a stage's expand ratio to its depth (CompOFA):
    ``{2: 3, 3: 4, 4: 6}`` means a stage of depth 2 uses e=3 in all its blocks.
    """

    name: str
    stages: tuple[Stage, ...]
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[float, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = (128, 160, 192, 224)
    first_conv_width: int = 16
    first_conv_act: str = "h_swish"
    first_conv_kernel: int = 3
    first_conv_stride: int = 2
    first_block_width: int = 16
    first_block_act: str = "relu"
    final_expand_width: int = 960
    feature_mix_width: int = 1280
    n_classes: int = 1000
    expand_by_depth: Mapping[int, float] | None = None
    head_act: str = "h_swish"
    in_channels: int = 3
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Space.name must be a non-empty string, got {self.name!r}")
        stages = tuple(self.stages)
        if not stages:
            raise ValueError("Space.stages must hold at least one Stage")
        for i, s in enumerate(stages):
            if not isinstance(s, Stage):
                raise TypeError(f"Space.stages[{i}] must be a moofa.Stage, got {type(s).__name__}")
        object.__setattr__(self, "kernels", _choices("kernels", self.kernels, int))
        object.__setattr__(self, "expands", _choices("expands", self.expands, float))
        object.__setattr__(self, "depths", _choices("depths", self.depths, int))
        object.__setattr__(self, "resolutions", _choices("resolutions", self.resolutions, int))
        # A stage without its own max_depth has as many slots as the deepest choice needs.
        stages = tuple(s if s.max_depth else replace(s, max_depth=max(self.depths)) for s in stages)
        object.__setattr__(self, "stages", stages)
        for k in self.kernels:
            if k % 2 == 0:
                raise ValueError(f"Space.kernels must be odd (same padding), got {k}")
        for e in self.expands:
            if e < 1:
                raise ValueError(f"Space.expands must be >= 1, got {e}")
        for i, s in enumerate(stages):
            if max(self.depths) > s.max_depth:
                raise ValueError(
                    f"Space.depths allows depth {max(self.depths)} but stages[{i}].max_depth is {s.max_depth}"
                )
        for name in (
            "first_conv_width",
            "first_conv_kernel",
            "first_conv_stride",
            "first_block_width",
            "final_expand_width",
            "n_classes",
            "in_channels",
        ):
            _pos_int(f"Space.{name}", getattr(self, name))
        if (
            isinstance(self.feature_mix_width, bool)
            or not isinstance(self.feature_mix_width, int)
            or self.feature_mix_width < 0
        ):
            raise ValueError(
                f"Space.feature_mix_width must be an integer >= 0 (0: none), got {self.feature_mix_width!r}"
            )
        for name in ("first_conv_act", "first_block_act", "head_act"):
            _check_act(f"Space.{name}", getattr(self, name))
        if self.expand_by_depth is not None:
            if not isinstance(self.expand_by_depth, Mapping):
                raise TypeError(
                    "Space.expand_by_depth must map each depth to its expand ratio (e.g. {2: 3, 3: 4, 4: 6}) "
                    f"or be None, got {type(self.expand_by_depth).__name__}"
                )
            coupling: dict[int, float] = {}
            for dep, ratio in self.expand_by_depth.items():
                if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
                    raise ValueError(
                        f"Space.expand_by_depth: ratio for depth {dep!r} must be one of expands "
                        f"{list(self.expands)}, got {ratio!r}"
                    )
                if dep not in self.depths:
                    raise ValueError(f"Space.expand_by_depth: depth {dep!r} is not one of depths {list(self.depths)}")
                if float(ratio) not in self.expands:
                    raise ValueError(
                        f"Space.expand_by_depth: ratio {ratio!r} is not one of expands {list(self.expands)}"
                    )
                coupling[int(dep)] = float(ratio)
            missing = [dd for dd in self.depths if dd not in coupling]
            if missing:
                raise ValueError(f"Space.expand_by_depth must give a ratio for every depth; missing {missing}")
            object.__setattr__(self, "expand_by_depth", dict(sorted(coupling.items())))

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.stages,
                self.kernels,
                self.expands,
                self.depths,
                self.resolutions,
                self.first_conv_width,
                self.first_block_width,
                self.final_expand_width,
                self.feature_mix_width,
                self.n_classes,
            )
        )

    # --- derived sizes -----------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def n_slots(self) -> int:
        """Number of block slots (sum of the stages' ``max_depth``): the length of ``ks``/``e``."""
        return sum(s.max_depth for s in self.stages)

    @property
    def widths(self) -> list[int]:
        return [s.width for s in self.stages]

    @property
    def n_columns(self) -> int:
        """Columns of the compact encoding: resolution, depths, kernels, expands."""
        return 1 + self.n_stages + 2 * self.n_slots

    def slot_stage(self) -> list[int]:
        """Stage index of every block slot."""
        return [i for i, s in enumerate(self.stages) for _ in range(s.max_depth)]

    def with_classes(self, n_classes: int) -> Space:
        """The same space with another classifier size (changes MFLOPs and params only)."""
        return replace(self, n_classes=n_classes)

    def replace(self, **changes) -> Space:
        return replace(self, **changes)

    def size(self) -> int:
        """Number of distinct subnets (resolutions x per-stage depth/kernel/expand choices)."""
        nk, ne = len(self.kernels), len(self.expands)
        per_stage = sum((nk**dep) * (1 if self.expand_by_depth else ne**dep) for dep in self.depths)
        return per_stage**self.n_stages * len(self.resolutions)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "name": self.name,
            "stages": [vars(s).copy() for s in self.stages],
            "kernels": list(self.kernels),
            "expands": list(self.expands),
            "depths": list(self.depths),
            "resolutions": list(self.resolutions),
        }
        for key in (
            "first_conv_width",
            "first_conv_act",
            "first_conv_kernel",
            "first_conv_stride",
            "first_block_width",
            "first_block_act",
            "final_expand_width",
            "feature_mix_width",
            "n_classes",
            "head_act",
            "in_channels",
        ):
            d[key] = getattr(self, key)
        d["expand_by_depth"] = (
            None if self.expand_by_depth is None else {str(k): v for k, v in self.expand_by_depth.items()}
        )
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Space:
        """The inverse of :meth:`to_dict` (also what ``moofa search --space mine.json`` reads)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"Space.from_dict expects a dict, got {type(d).__name__}")
        d = dict(d)
        d.pop("description", None)
        allowed = [f.name for f in fields(cls) if f.name != "description"]
        unknown = sorted(set(d) - set(allowed), key=str)
        if unknown:
            raise ValueError(f"Space.from_dict: unknown keys {unknown}; allowed: {allowed}")
        missing = [k for k in ("name", "stages") if k not in d]
        if missing:
            raise ValueError(f"Space.from_dict: missing required keys {missing} (a space needs 'name' and 'stages')")
        raw = d.pop("stages")
        if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
            raise TypeError(f"Space.stages must be a list of stage objects, got {type(raw).__name__}")
        stages = tuple(Stage.from_dict(s, f"Space.stages[{i}]") for i, s in enumerate(raw))
        ebd = d.pop("expand_by_depth", None)
        if ebd is not None:
            if not isinstance(ebd, Mapping):
                raise TypeError(
                    "Space.expand_by_depth must be an object mapping depth to expand ratio "
                    f'(e.g. {{"2": 3, "3": 4, "4": 6}}) or null, got {type(ebd).__name__}'
                )
            try:
                ebd = {int(k): v for k, v in ebd.items()}
            except ValueError:
                raise ValueError(f"Space.expand_by_depth keys must be depths (integers), got {list(ebd)}") from None
        return cls(stages=stages, expand_by_depth=ebd, **d)


def _choices(name: str, values: Iterable, kind: type) -> tuple:
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"Space.{name} must be a sequence of numbers, got {values!r}") from None
    if not values:
        raise ValueError(f"Space.{name} must not be empty")
    if len(values) > 250:
        raise ValueError(f"Space.{name} allows at most 250 choices, got {len(values)}")
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"Space.{name} must hold numbers, got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"Space.{name} must hold finite numbers, got {v!r}")
        if kind is int:
            if int(v) != v or v < 1:
                raise ValueError(f"Space.{name} must hold positive integers, got {v!r}")
            out.append(int(v))
        else:
            if not v > 0:
                raise ValueError(f"Space.{name} must hold positive numbers, got {v!r}")
            out.append(float(v))
    if len(set(out)) != len(out):
        raise ValueError(f"Space.{name} has repeated values: {list(values)}")
    return tuple(sorted(out))


# --- built-in spaces ------------------------------------------------------------------


def _ofa_stages() -> tuple[Stage, ...]:
    widths = (24, 40, 80, 112, 160)
    strides = (2, 2, 2, 1, 2)
    acts = ("relu", "relu", "h_swish", "h_swish", "h_swish")
    ses = (False, True, False, True, True)
    return tuple(Stage(w, s, a, se) for w, s, a, se in zip(widths, strides, acts, ses))


def _ofa_wide_space(name: str, width_mult: float, description: str) -> Space:
    # OFA's wider MobileNetV3 supernets scale every width by ``width_mult`` with
    # ``make_divisible(w * width_mult, 8)`` (w1.2: 24, 24, 32, 48, 96, 136, 192, 1152, 1536).
    def wide(w: int) -> int:
        return make_divisible(w * width_mult, 8)

    base = Space(name="ofa", stages=_ofa_stages())
    return Space(
        name=name,
        stages=tuple(replace(s, width=wide(s.width)) for s in base.stages),
        first_conv_width=wide(base.first_conv_width),
        first_block_width=wide(base.first_block_width),
        final_expand_width=wide(base.final_expand_width),
        feature_mix_width=wide(base.feature_mix_width),
        description=description,
    )


def _moofa_space(name: str, expands: Sequence[float], n_classes: int, description: str) -> Space:
    # Widths after the 24-wide stage come from the paper's memory-balancing rule:
    # five stage widths, then the final-expand and feature-mix widths.
    w = design_widths()
    widths = (24, *w[:4])
    acts = ("h_swish", "h_swish", "h_swish", "relu", "h_swish")
    ses = (False, True, True, False, True)
    stages = tuple(Stage(wd, 2, a, se) for wd, a, se in zip(widths, acts, ses))
    return Space(
        name=name,
        stages=stages,
        expands=tuple(expands),
        first_conv_width=3,
        first_block_width=8,
        final_expand_width=w[4],
        feature_mix_width=w[5],
        n_classes=n_classes,
        description=description,
    )


_REGISTRY: dict[str, Space] = {}


def register(space: Space, *, overwrite: bool = False) -> Space:
    """Make a user-defined space available by name (``moofa.get_space(name)``)."""
    if not isinstance(space, Space):
        raise TypeError(f"register expects a moofa.Space, got {type(space).__name__}")
    if space.name in _REGISTRY and not overwrite:
        raise ValueError(f"a space named {space.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[space.name] = space
    return space


register(Space(name="ofa", stages=_ofa_stages(), description="OFA MobileNetV3 w1.0, e in {3,4,6}"))
register(
    Space(
        name="compofa",
        stages=_ofa_stages(),
        expand_by_depth={2: 3, 3: 4, 4: 6},
        description="CompOFA: OFA MobileNetV3 with expand ratio coupled to stage depth",
    )
)
register(_moofa_space("moofa", (2, 3, 4), 1000, "MOOFA (memory-balanced widths), e in {2,3,4}"))
register(_moofa_space("moofa-e346", (3, 4, 6), 10, "MOOFA ablation config 1, e in {3,4,6}, Imagenette"))
register(_moofa_space("moofa-e1-2", (1, 1.5, 2), 10, "MOOFA ablation config 2, e in {1,1.5,2}, Imagenette"))
register(_ofa_wide_space("ofa-w1.2", 1.2, "OFA MobileNetV3 w1.2 (OFA's wider published supernet), e in {3,4,6}"))


def names() -> list[str]:
    """Names of the registered spaces (built-in first)."""
    return list(_REGISTRY)


def get_space(space: str | Space) -> Space:
    """A :class:`Space` by name, or the given ``Space`` itself."""
    if isinstance(space, Space):
        return space
    if not isinstance(space, str):
        raise TypeError(f"space must be a name (str) or a moofa.Space, got {type(space).__name__}")
    try:
        return _REGISTRY[space]
    except KeyError:
        raise ValueError(f"unknown space {space!r}; known spaces: {names()}") from None
