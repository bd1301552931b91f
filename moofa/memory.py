"""Peak memory, per-layer profile, MFLOPs and parameters of subnets (C++ evaluator)."""

from __future__ import annotations

import functools
import math
import numbers
import operator
from dataclasses import dataclass, field

import numpy as np

from ._encoding import spec
from ._ext import core
from .spaces import Space, get_space
from .subnet import Subnet, _as_rows, _check_encoded, decode, encode
from .units import _check_bytes_per_item, format_items

__all__ = [
    "MEMORY_MODELS",
    "Profile",
    "evaluator",
    "layer_names",
    "min_peak",
    "peak_memory",
    "profile",
    "profiles",
]

# "full": inputs + outputs + weights of each conv layer (the paper's memory peak).
# "activations": inputs + outputs only, weights read from flash (MCUNet's convention).
# "tflm": TensorFlow Lite Micro's arena head, in bytes, of the int8 graph moofa.export.tflite
# writes (moofa.tflm); histogram, avg, std, MFLOPs and params as for "activations" (int8).
MEMORY_MODELS = ("full", "activations", "tflm")
_MODEL_ALIASES = {"full": "full", "paper": "full", "activations": "activations", "mcu": "activations", "tflm": "tflm"}
# Activations the int8 TFLite graph (and so the "tflm" model) supports.
_TFLM_ACTIVATIONS = ("relu", "relu6", "h_swish", "none")


def _model_name(memory_model: str) -> str:
    if not isinstance(memory_model, str) or memory_model not in _MODEL_ALIASES:
        raise ValueError(
            f"memory_model must be one of {list(_MODEL_ALIASES)} ('paper' = 'full', 'mcu' = 'activations'), "
            f"got {memory_model!r}"
        )
    return _MODEL_ALIASES[memory_model]


def _check_tflm(sp: Space) -> None:
    acts = {
        "first_conv_act": sp.first_conv_act,
        "first_block_act": sp.first_block_act,
        "head_act": sp.head_act,
        **{f"stages[{i}].act": s.act for i, s in enumerate(sp.stages)},
    }
    for where, act in acts.items():
        if act not in _TFLM_ACTIVATIONS:
            raise ValueError(
                f"memory_model='tflm': space {sp.name!r} has {where}={act!r}, which the int8 TFLite graph "
                f"does not support (allowed: {list(_TFLM_ACTIVATIONS)})"
            )


def _check_bytes_per_item_for(model: str, bytes_per_item) -> None:
    if model == "tflm" and bytes_per_item is not None and bytes_per_item != 1:
        raise ValueError(
            f"memory_model='tflm' counts bytes of the int8 graph: bytes_per_item must be 1 (or None), "
            f"got {bytes_per_item!r}"
        )


@functools.lru_cache(maxsize=64)
def _evaluator(space: Space, model: str):
    if model == "tflm":
        _check_tflm(space)
    return core.Evaluator(spec(space), model)


def evaluator(space: str | Space = "moofa", memory_model: str = "full"):
    """The (cached, thread-safe) C++ evaluator of a space and memory model."""
    return _evaluator(get_space(space), _model_name(memory_model))


def _scale(bytes_per_item):
    return 1 if bytes_per_item is None else _check_bytes_per_item(bytes_per_item)


# More threads than this gains nothing and only risks failing to start them.
MAX_THREADS = 1024


def _threads(threads) -> int:
    n = operator.index(threads) if isinstance(threads, numbers.Integral) and not isinstance(threads, bool) else -1
    if not 0 <= n <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in 0..{MAX_THREADS} (0: all cores), got {threads!r}")
    return n


def _rows(nets, sp: Space) -> np.ndarray:
    # Encoded arrays go to C++ as they are (uint8 C-contiguous: no copy), where each row
    # is checked as it is evaluated; anything else is encoded (and checked) here.
    if isinstance(nets, np.ndarray):
        return _as_rows(nets, sp)
    return encode(nets, sp)


@dataclass(frozen=True)
class Profile:
    """Memory and compute profile of one subnet.

    ``peak``, ``hist``, ``avg`` and ``std`` are in items (numbers held in RAM), or in
    bytes when ``bytes_per_item`` was given. ``hist`` lists each conv layer's
    input + output (+ weights, model "full") in forward order; ``layers`` names them.
    With model "tflm" everything is bytes of the int8 graph: ``peak`` is TFLM's arena head
    (:mod:`moofa.tflm`), ``hist``/``avg``/``std`` are those of "activations" (so ``peak`` may
    exceed every histogram entry).

    ``uniformity`` is ``avg / max(hist)``: the share of its largest layer's memory that the
    average layer uses, in (0, 1], 1 when every layer needs the same memory (see
    ``docs/uniformity.md``). It is a ratio of histogram figures, so it does not depend on
    ``bytes_per_item``; under "tflm" it is that of the histogram, not of the arena head.
    """

    peak: int
    hist: list
    avg: float
    std: float
    mflops: float
    params: int
    layers: list = field(default_factory=list)
    space: str = ""
    memory_model: str = "full"
    unit: str = "items"
    uniformity: float = math.nan

    @property
    def peak_layer(self) -> str:
        """The layer whose figure is the peak ("" under "tflm": its peak is a planned arena)."""
        if self.memory_model == "tflm" or not self.layers:
            return ""
        return self.layers[int(np.argmax(self.hist))]

    def to_dict(self) -> dict:
        return {
            "peak": self.peak,
            "hist": list(self.hist),
            "avg": self.avg,
            "std": self.std,
            "mflops": self.mflops,
            "params": self.params,
            "layers": list(self.layers),
            "space": self.space,
            "memory_model": self.memory_model,
            "unit": self.unit,
            "uniformity": self.uniformity,
        }

    def table(self, width: int = 40) -> str:
        """The per-layer memory as a text table with bars (the paper's Fig. 5)."""
        top = max(self.hist) if self.hist else 1
        name_w = max((len(n) for n in self.layers), default=5)
        lines = [f"{'layer':<{name_w}}  {self.unit:>10}  "]
        for name, v in zip(self.layers, self.hist):
            bar = "#" * max(1, round(width * v / top))
            mark = ("  <- largest layer" if self.memory_model == "tflm" else "  <- peak") if v == top else ""
            lines.append(f"{name:<{name_w}}  {v:>10,}  {bar}{mark}")
        lines.append("")
        what = "TFLite Micro arena head" if self.memory_model == "tflm" else "peak"
        lines.append(
            f"{what} {self.peak:,} {self.unit} ({format_items(self.peak)}), "
            f"avg {self.avg:,.0f} +- {self.std:,.0f}, uniformity {self.uniformity:.3f}, "
            f"{self.mflops:.2f} MFLOPs, {self.params:,} params"
        )
        return "\n".join(lines)


def layer_names(net: Subnet, space: str | Space = "moofa") -> list[str]:
    """Names of the layers of ``net``'s histogram, in forward order."""
    sp = get_space(space)
    names = ["first_conv", "first_block.depthwise", "first_block.project"]
    slot = 0
    for i, (stage, dd) in enumerate(zip(sp.stages, net.d)):
        for j in range(dd):
            prefix = f"stage{i + 1}.block{j}"
            if float(net.e[slot + j]) != 1.0:
                names.append(prefix + ".expand")
            names += [prefix + f".depthwise{net.ks[slot + j]}x{net.ks[slot + j]}", prefix + ".project"]
        slot += stage.max_depth
    names.append("final_expand")
    return names


def profile(
    net, space: str | Space = "moofa", *, memory_model: str = "full", bytes_per_item: float | None = None
) -> Profile:
    """Full profile of one subnet: peak, per-layer histogram, avg +- std, MFLOPs, params."""
    sp = get_space(space)
    model = _model_name(memory_model)
    _check_bytes_per_item_for(model, bytes_per_item)
    if isinstance(net, np.ndarray):
        rows = _check_encoded(net, sp)
        if rows.shape[0] != 1:
            raise ValueError(f"profile takes one subnet; got {rows.shape[0]} encoded rows (use moofa.profiles)")
        net = decode(rows, sp)[0]
    else:
        net = Subnet.from_dict(net).validate(sp)
        rows = encode([net], sp)
    out = _evaluator(sp, model).profiles(rows, threads=1, with_hist=True)
    n = int(out["n_layers"][0])
    hist = out["hist"][0, :n].tolist()
    scale = _scale(bytes_per_item)
    unit = "items" if bytes_per_item is None and model != "tflm" else "bytes"

    def conv(v):
        v = v * scale
        return int(v) if float(v).is_integer() else float(v)

    return Profile(
        peak=conv(int(out["peak"][0])),
        hist=[conv(h) for h in hist],
        avg=float(out["avg"][0]) * scale,
        std=float(out["std"][0]) * scale,
        mflops=float(out["mflops"][0]),
        params=int(out["params"][0]),
        layers=layer_names(net, sp),
        space=sp.name,
        memory_model=model,
        unit=unit,
        uniformity=float(out["uniformity"][0]),
    )


def peak_memory(
    nets,
    space: str | Space = "moofa",
    *,
    memory_model: str = "full",
    bytes_per_item: float | None = None,
    threads: int = 0,
) -> np.ndarray:
    """Peak memory of many subnets: int64 array in items (or bytes with ``bytes_per_item``;
    always bytes with ``memory_model="tflm"``, TFLM's arena head of the int8 graph).

    ``nets``: a list of Subnet/dicts, or an array from :func:`moofa.encode`
    (the fast path: tens of millions of configs per second).
    """
    sp = get_space(space)
    model, n_threads = _model_name(memory_model), _threads(threads)
    _check_bytes_per_item_for(model, bytes_per_item)
    peaks = _evaluator(sp, model).peaks(_rows(nets, sp), threads=n_threads)
    if bytes_per_item is not None:
        scaled = peaks * _scale(bytes_per_item)
        return scaled.astype(np.int64) if np.all(scaled == np.floor(scaled)) else scaled
    return peaks


def profiles(
    nets, space: str | Space = "moofa", *, memory_model: str = "full", with_hist: bool = False, threads: int = 0
) -> dict:
    """Batched profiles (items): dict of arrays ``peak``, ``avg``, ``std``, ``uniformity``
    (``avg / max`` of each histogram, see :class:`Profile`), ``mflops``, ``params``,
    ``n_layers`` and, with ``with_hist``, ``hist`` of shape (n, max_layers), zero padded."""
    sp = get_space(space)
    model, n_threads = _model_name(memory_model), _threads(threads)
    return _evaluator(sp, model).profiles(_rows(nets, sp), threads=n_threads, with_hist=bool(with_hist))


def min_peak(space: str | Space = "moofa", *, memory_model: str = "full") -> tuple[int, Subnet]:
    """The smallest peak any subnet of ``space`` can reach, and a subnet that reaches it."""
    sp = get_space(space)
    peak, row = _evaluator(sp, _model_name(memory_model)).min_peak()
    return int(peak), decode(row[None, :], sp)[0]
