"""Accuracy predictors: an MLP over the one-hot subnet encoding, run by the C++ core.

The encoding is the published one (OFA, CompOFA, MOOFA predictors), generalised to
any space: resolution one-hot, then a kernel one-hot per block slot, then an expand
one-hot per slot; slots beyond their stage's depth are all zero. For the 5x4-slot
spaces with 4 resolutions, 3 kernels and 3 expands that is 4 + 60 + 60 = 124 dims.

moofa's own format is torch-free: ``<name>.npz`` (float32 weights, ``x @ W + b``
convention) beside ``<name>.json`` (space, encoding, layer shapes, output scale,
training metadata, validation metrics, the weights' SHA-256). The published
``.pth.tar`` checkpoints load too, through torch with ``weights_only=True``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import numbers
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._encoding import columns, spec
from ._ext import core
from ._io import atomic_write, atomic_write_text
from .spaces import Space, get_space
from .spaces import names as space_names
from .subnet import encode

__all__ = [
    "ENCODING",
    "PRECISIONS",
    "PredictionRangeWarning",
    "Predictor",
    "load_predictor",
    "one_hot",
    "one_hot_size",
    "shipped_names",
]

ENCODING = "one-hot-v1"
# First-layer number formats: "int16" halves the gather's memory traffic; it moves
# predictions by under 0.001 points on the shipped predictors (docs/predictor.md).
PRECISIONS = ("fp32", "int16")
FORMAT = "moofa-predictor"
FORMAT_VERSION = 1
_SHIPPED_DIR = Path(__file__).resolve().parent / "predictors"
# Shipped predictor -> the space its configs come from (several data sets share a space).
SHIPPED = {
    "ofa": "ofa",
    "compofa": "compofa",
    "moofa": "moofa",
    "moofa-imagenette": "moofa",
    "moofa-e346": "moofa-e346",
    "moofa-e1-2": "moofa-e1-2",
}


# Bounds on what a predictor file may declare, checked before anything is allocated.
_MAX_WIDTH = 1 << 20  # units per layer
_MAX_WEIGHTS = 1 << 28  # numbers in all layers (1 GiB as float32)


class PredictionRangeWarning(UserWarning):
    """A predicted top-1 outside [0, 100] %: the predictor is extrapolating."""


def warn_outside_percent(top1, name: str, stacklevel: int = 2) -> None:
    """Warn (:class:`PredictionRangeWarning`) when predicted top-1 values leave [0, 100] %."""
    top1 = np.atleast_1d(np.asarray(top1, dtype=np.float64))
    outside = (top1 < 0) | (top1 > 100)
    if outside.any():
        first = float(top1[np.argmax(outside)])
        warnings.warn(
            f"predictor {name!r}: predicted top-1 outside [0, 100] % for {int(outside.sum())} of "
            f"{len(top1)} subnets (first: {first:.2f}); it is extrapolating beyond its training data",
            PredictionRangeWarning,
            stacklevel=stacklevel + 1,
        )


def shipped_names() -> list[str]:
    """Names of the predictors that ship inside the package (``load_predictor(name)``)."""
    return [n for n in SHIPPED if (_SHIPPED_DIR / f"{n}.json").is_file()]


def one_hot_size(space: str | Space = "moofa") -> int:
    return int(spec(get_space(space)).one_hot_size)


def one_hot(nets, space: str | Space = "moofa") -> np.ndarray:
    """The predictors' input: float32 array ``(n, one_hot_size(space))``.

    ``nets``: Subnet(s), dict(s) or an array from :func:`moofa.encode`.
    """
    sp = get_space(space)
    rows = encode(nets, sp)
    col = columns(sp)
    n, n_slots = rows.shape[0], sp.n_slots
    n_res, n_k, n_e = len(sp.resolutions), len(sp.kernels), len(sp.expands)
    out = np.zeros((n, one_hot_size(sp)), dtype=np.float32)
    idx = np.arange(n)
    out[idx, rows[:, col.resolution]] = 1.0
    position = np.array([p for s in sp.stages for p in range(s.max_depth)])
    depth = np.asarray(sp.depths)[rows[:, col.slot_depth_column]]
    active = position[None, :] < depth
    kernels, expands = rows[:, col.kernel], rows[:, col.expand]
    for j in range(n_slots):
        on = idx[active[:, j]]
        out[on, n_res + j * n_k + kernels[on, j]] = 1.0
        out[on, n_res + n_slots * n_k + j * n_e + expands[on, j]] = 1.0
    return out


def _as_float32(name: str, value, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or inf values; weights must be finite")
    return np.ascontiguousarray(arr)


class Predictor:
    """An MLP accuracy predictor: top-1 (percent) of subnets of ``space``.

    ``weights[i]`` has shape ``(in, out)`` (``x @ W + b``), ReLU between layers, the
    first ``in`` is ``one_hot_size(space)`` and the last ``out`` is 1. ``skip`` is an
    optional linear term over the one-hot input. Output: ``offset + scale * y``.
    """

    def __init__(
        self,
        space: str | Space,
        weights: Sequence,
        biases: Sequence,
        *,
        skip=None,
        scale: float = 1.0,
        offset: float = 0.0,
        metadata: Mapping[str, Any] | None = None,
        isa: str = "auto",
        precision: str = "fp32",
    ):
        self.space = get_space(space)
        if isinstance(weights, np.ndarray) or isinstance(biases, np.ndarray):
            raise TypeError("weights and biases must be lists of arrays, one per layer")
        weights, biases = list(weights), list(biases)
        if not weights or len(weights) != len(biases):
            raise ValueError(
                "weights and biases must be non-empty lists of the same length (one per layer), "
                f"got {len(weights)} and {len(biases)}"
            )
        self.weights = [_as_float32(f"weights[{i}]", w, 2) for i, w in enumerate(weights)]
        self.biases = [_as_float32(f"biases[{i}]", b, 1) for i, b in enumerate(biases)]
        self.skip = None if skip is None else _as_float32("skip", skip, 1)
        for name, v in (("scale", scale), ("offset", offset)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        self.scale, self.offset = float(scale), float(offset)
        self.metadata = dict(metadata or {})
        if not isinstance(isa, str) or isa not in ("auto", "generic", "avx2", "avx512"):
            raise ValueError(f"isa must be one of 'auto', 'generic', 'avx2', 'avx512', got {isa!r}")
        if not core.isa_supported(isa):
            raise ValueError(f"isa {isa!r} is not supported by this CPU (best: {core.best_isa()!r})")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self._check_shapes()
        # Built now so that a bad predictor fails at construction, not in the search.
        self._scorer = core.MlpPredictor(
            spec(self.space), [*self.weights], [*self.biases], self.skip, self.scale, self.offset, isa, precision
        )

    def _check_shapes(self) -> None:
        n_in = one_hot_size(self.space)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.shape[0] != n_in:
                what = (
                    f"the one-hot encoding of space {self.space.name!r} ({ENCODING}) has {n_in} features"
                    if i == 0
                    else f"layer {i - 1} has {n_in} outputs"
                )
                raise ValueError(f"weights[{i}] has shape {w.shape}: {what}, so it must be ({n_in}, out)")
            if b.shape != (w.shape[1],):
                raise ValueError(f"biases[{i}] must have shape ({w.shape[1]},), got {b.shape}")
            n_in = w.shape[1]
        if n_in != 1:
            raise ValueError(f"the last layer must have 1 output, got weights[-1] of shape {self.weights[-1].shape}")
        if self.skip is not None and self.skip.shape != (one_hot_size(self.space),):
            raise ValueError(f"skip must have shape ({one_hot_size(self.space)},), got {self.skip.shape}")

    # --- inference --------------------------------------------------------------------
    @property
    def scorer(self):
        """The C++ scorer (a ``moofa._core.Scorer``) the search runs on encoded rows."""
        return self._scorer

    @property
    def layer_sizes(self) -> list[int]:
        return [self.weights[0].shape[0]] + [w.shape[1] for w in self.weights]

    @property
    def isa(self) -> str:
        return self._scorer.isa

    @property
    def precision(self) -> str:
        return self._scorer.precision

    def with_options(self, *, isa: str | None = None, precision: str | None = None) -> Predictor:
        """The same weights on another kernel set or first-layer precision."""
        return Predictor(
            self.space,
            self.weights,
            self.biases,
            skip=self.skip,
            scale=self.scale,
            offset=self.offset,
            metadata=self.metadata,
            isa=isa or self.isa,
            precision=precision or self.precision,
        )

    @property
    def metrics(self) -> dict:
        """Validation metrics recorded at training time (empty for published checkpoints)."""
        return dict(self.metadata.get("validation", {}))

    def predict(self, nets, *, threads: int = 0) -> np.ndarray:
        """Predicted top-1 (percent) as a float32 array, one per subnet.

        ``nets``: Subnet(s), dict(s) or an array from :func:`moofa.encode` (fastest).
        """
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise ValueError(f"threads must be a non-negative integer (0: all cores), got {threads!r}")
        rows = encode(nets, self.space)
        out = self._scorer.score(rows, int(threads))
        bad = ~np.isfinite(out)
        if bad.any():
            raise ValueError(
                f"predictor {self.name!r}: non-finite prediction for {int(bad.sum())} of {len(out)} subnets "
                f"(first: row {int(np.argmax(bad))}); its weights overflow float32"
            )
        warn_outside_percent(out, self.name, stacklevel=3)
        return out

    @property
    def name(self) -> str:
        """The predictor's name (its file stem for files), or the space's name."""
        return str(self.metadata.get("name") or self.metadata.get("source") or self.space.name)

    def __call__(self, nets, **kw) -> np.ndarray:
        return self.predict(nets, **kw)

    def __repr__(self) -> str:
        source = self.metadata.get("name") or self.metadata.get("source", "")
        return (
            f"Predictor({source!r}, space={self.space.name!r}, layers={self.layer_sizes}, "
            f"skip={self.skip is not None}, isa={self.isa!r}, precision={self.precision!r})"
        )

    # --- persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (weights) and ``<path>.json`` (metadata); returns both paths.

        Each file is written to a temporary name and renamed, so a crash never leaves
        a half-written predictor behind.
        """
        npz_path, json_path = _pair(path)
        arrays: dict[str, Any] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        if self.skip is not None:
            arrays["skip"] = self.skip
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(npz_path, lambda f: np.savez_compressed(f, **arrays))
        digest = hashlib.sha256(npz_path.read_bytes()).hexdigest()
        meta = {k: v for k, v in self.metadata.items() if k not in ("source",)}
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": meta.pop("name", npz_path.stem),
            "space": {"name": self.space.name, "definition": self.space.to_dict()},
            "encoding": {
                "name": ENCODING,
                "size": one_hot_size(self.space),
                "order": "resolution, kernel per slot, expand per slot; inactive slots zero",
            },
            "layers": [list(w.shape) for w in self.weights],
            "skip": self.skip is not None,
            "activation": "relu",
            "output": {"scale": self.scale, "offset": self.offset, "unit": "top1 percent"},
            "weights_file": npz_path.name,
            "weights_sha256": digest,
            **meta,
        }
        atomic_write_text(json_path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
        return npz_path, json_path


def _pair(path: str | os.PathLike) -> tuple[Path, Path]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".npz", ".json") else p
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


# --- loading --------------------------------------------------------------------------


def load_predictor(
    name_or_path: str | os.PathLike = "moofa",
    *,
    space: str | Space | None = None,
    isa: str = "auto",
    precision: str = "fp32",
) -> Predictor:
    """A shipped predictor by name, or one from a file.

    - a shipped name: ``"ofa"``, ``"compofa"``, ``"moofa"`` (ImageNet) or
      ``"moofa-imagenette"``, ``"moofa-e346"``, ``"moofa-e1-2"`` (Imagenette);
    - a moofa predictor: ``path.npz`` or ``path.json`` (the pair beside each other);
    - a published OFA/CompOFA/MOOFA checkpoint ``*.pth.tar`` / ``*.pth`` / ``*.pt``
      (needs torch; read with ``weights_only=True``). Give ``space`` unless the file
      is named after it (``ofa.pth.tar``).

    ``space``, when given, must match the predictor's own space. ``isa`` forces a
    kernel set (``"generic"``, ``"avx2"``, ``"avx512"``); ``"auto"`` takes the one the
    environment variable ``MOOFA_ISA`` names, else the widest the CPU runs; ``precision="int16"``
    stores the first layer as int16 (faster, predictions move by < 0.001 points).
    """
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        if space is not None and get_space(space) != get_space(SHIPPED[name_or_path]):
            raise ValueError(
                f"predictor {name_or_path!r} is for space {SHIPPED[name_or_path]!r}, not {get_space(space).name!r}"
            )
        return _load_shipped(name_or_path, isa, precision)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load_predictor takes a name or a path, got {type(name_or_path).__name__}")
    path = Path(name_or_path)
    name = path.name
    if name.endswith((".pth.tar", ".pth", ".pt", ".tar")):
        return _load_torch_checkpoint(path, space, isa, precision)
    if path.suffix in (".npz", ".json") or _pair(path)[1].is_file():
        return _load_moofa(path, space, isa, precision)
    raise ValueError(
        f"unknown predictor {str(name_or_path)!r}: expected one of the shipped names "
        f"{list(SHIPPED)}, a moofa .npz/.json pair, or a published .pth.tar checkpoint"
    )


@functools.lru_cache(maxsize=16)
def _load_shipped(name: str, isa: str, precision: str) -> Predictor:
    path = _SHIPPED_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"shipped predictor {name!r} is missing from the installation ({path})")
    return _load_moofa(path, None, isa, precision)


def _resolve_space(doc_space: Any, want: str | Space | None, where: str) -> Space:
    if not isinstance(doc_space, Mapping) or "name" not in doc_space:
        raise ValueError(f"{where}: 'space' must be an object with 'name' and 'definition'")
    name = doc_space["name"]
    definition = doc_space.get("definition")
    try:
        own = Space.from_dict(definition) if definition is not None else get_space(name)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where}: invalid space definition: {exc}") from None
    if name in space_names() and get_space(name) == own:
        own = get_space(name)  # the registered object (keeps its description)
    if want is not None and get_space(want) != own:
        raise ValueError(
            f"{where}: this predictor is for space {name!r}, not {get_space(want).name!r} "
            "(a predictor only scores configs of the space it was trained on)"
        )
    return own


def _load_moofa(path: Path, space, isa: str, precision: str = "fp32") -> Predictor:
    npz_path, json_path = _pair(path)
    for p in (json_path, npz_path):
        if not p.is_file():
            raise ValueError(f"predictor file {p} not found (a moofa predictor is a .npz + .json pair)")
    try:
        doc = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{json_path}: not valid JSON (truncated or corrupt?): {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f'{json_path}: not a moofa predictor (expected "format": "{FORMAT}")')
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{json_path}: format version {doc.get('version')!r} is not supported "
            f"(this moofa reads version {FORMAT_VERSION})"
        )
    encoding = doc.get("encoding", {})
    if not isinstance(encoding, dict) or encoding.get("name") != ENCODING:
        raise ValueError(f"{json_path}: encoding {encoding!r} is not supported (expected {ENCODING!r})")
    sp = _resolve_space(doc.get("space"), space, str(json_path))
    if encoding.get("size") != one_hot_size(sp):
        raise ValueError(
            f"{json_path}: encoding size {encoding.get('size')!r} does not match space "
            f"{sp.name!r} ({one_hot_size(sp)} features)"
        )
    shapes = _layer_shapes(doc, sp, json_path)
    expected: dict[str, tuple[int, ...]] = {}
    for i, (n_in, n_out) in enumerate(shapes):
        expected[f"w{i}"], expected[f"b{i}"] = (n_in, n_out), (n_out,)
    skip_flag = doc.get("skip", False)
    if not isinstance(skip_flag, bool):
        raise ValueError(f"{json_path}: 'skip' must be true or false, got {skip_flag!r}")
    if skip_flag:
        expected["skip"] = (one_hot_size(sp),)
    scale, offset = _output(doc, json_path)
    raw = npz_path.read_bytes()
    want = doc.get("weights_sha256")
    if want is not None and hashlib.sha256(raw).hexdigest() != want:
        raise ValueError(
            f"{npz_path}: weights do not match {json_path.name} (SHA-256 differs: "
            "truncated, corrupt, or from another predictor)"
        )
    arrays = _read_weights(npz_path, raw, expected, json_path.name)
    weights = [arrays[f"w{i}"] for i in range(len(shapes))]
    biases = [arrays[f"b{i}"] for i in range(len(shapes))]
    meta = {k: v for k, v in doc.items() if k in ("name", "training", "validation", "dataset", "notes")}
    meta["source"] = str(json_path)
    try:
        return Predictor(
            sp,
            weights,
            biases,
            skip=arrays.get("skip"),
            scale=scale,
            offset=offset,
            metadata=meta,
            isa=isa,
            precision=precision,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{npz_path}: {exc}") from None


def _layer_shapes(doc: Mapping, sp: Space, json_path: Path) -> list[tuple[int, int]]:
    """The JSON's ``layers``: a chain of [in, out] pairs from the encoding to one output."""
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{json_path}: 'layers' must list the layer shapes as [in, out] pairs, got {layers!r}")
    shapes = []
    n_in, total = one_hot_size(sp), 0
    for i, shape in enumerate(layers):
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= _MAX_WIDTH for v in shape)
        ):
            raise ValueError(
                f"{json_path}: 'layers'[{i}] must be an [in, out] pair of integers in 1..{_MAX_WIDTH}, got {shape!r}"
            )
        if shape[0] != n_in:
            raise ValueError(
                f"{json_path}: 'layers'[{i}] is {shape}, but its input must be {n_in} "
                + ("(the encoding size)" if i == 0 else f"(the output of layer {i - 1})")
            )
        total += shape[0] * shape[1] + shape[1]
        if total > _MAX_WEIGHTS:
            raise ValueError(f"{json_path}: 'layers' declares over {_MAX_WEIGHTS:,} weights; not a moofa predictor")
        shapes.append((shape[0], shape[1]))
        n_in = shape[1]
    if n_in != 1:
        raise ValueError(f"{json_path}: 'layers' must end in one output (top-1), the last layer is {layers[-1]}")
    return shapes


def _output(doc: Mapping, json_path: Path) -> tuple[float, float]:
    output = doc.get("output", {})
    if not isinstance(output, Mapping):
        raise ValueError(f'{json_path}: \'output\' must be an object like {{"scale": 1, "offset": 0}}, got {output!r}')
    values = []
    for key, default in (("scale", 1.0), ("offset", 0.0)):
        v = output.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f"{json_path}: 'output'.{key} must be a finite number, got {v!r}")
        values.append(float(v))
    return values[0], values[1]


def _read_weights(npz_path: Path, raw: bytes, expected: Mapping[str, tuple], json_name: str) -> dict[str, np.ndarray]:
    """The arrays ``expected`` (name -> shape) from an ``.npz``, each .npy header checked
    against the JSON before its data is read (a corrupt header cannot allocate terabytes)."""
    fmt = np.lib.format
    out = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            members = {n[: -len(".npy")]: n for n in zf.namelist() if n.endswith(".npy")}
            for key, shape in expected.items():
                if key not in members:
                    raise ValueError(f"{npz_path}: array {key} is missing ({json_name} declares it)")
                info = zf.getinfo(members[key])
                with zf.open(info) as f:
                    version = fmt.read_magic(f)
                    if version == (1, 0):
                        got, fortran, dtype = fmt.read_array_header_1_0(f)
                    elif version == (2, 0):
                        got, fortran, dtype = fmt.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"{npz_path}: array {key} has .npy version {version}; expected 1.0 or 2.0")
                    if dtype.kind != "f" or dtype.itemsize > 8 or dtype.hasobject:
                        raise ValueError(f"{npz_path}: array {key} has dtype {dtype}; expected float32")
                    if tuple(got) != tuple(shape):
                        raise ValueError(
                            f"{npz_path}: array {key} has shape {list(got)}, but {json_name} says {list(shape)}"
                        )
                    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    data = f.read(nbytes)
                if len(data) != nbytes:
                    raise ValueError(f"{npz_path}: array {key} is truncated ({len(data)} of {nbytes} bytes)")
                arr = np.frombuffer(data, dtype=dtype)
                arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
                out[key] = arr.astype(np.float32)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, ValueError) as exc:
        text = str(exc)
        if text.startswith(str(npz_path)):
            raise ValueError(text) from None
        raise ValueError(f"{npz_path}: cannot read the weights (truncated or corrupt?): {exc}") from None
    return out


_LAYER_KEY = re.compile(r"^layers\.(\d+)(?:\.0)?\.(weight|bias)$")


def _load_torch_checkpoint(path: Path, space, isa: str, precision: str = "fp32") -> Predictor:
    try:
        import torch
    except ImportError:
        raise ImportError("reading a published .pth.tar checkpoint needs torch: pip install 'moofa[torch]'") from None
    if not path.is_file():
        raise ValueError(f"checkpoint {path} not found")
    if space is None:
        stem = path.name.split(".")[0]
        if stem not in space_names():
            raise ValueError(
                f"{path}: cannot tell the space from the file name; pass space= "
                f"(one of {space_names()} or a moofa.Space)"
            )
        space = stem
    sp = get_space(space)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / truncated / unsafe files
        raise ValueError(
            f"{path}: cannot read the checkpoint (truncated, corrupt or not a state dict): {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    layers: dict[int, dict[str, np.ndarray]] = {}
    base_acc = 0.0
    for key, value in state.items():
        if key == "base_acc":
            base_acc = float(torch.as_tensor(value).reshape(-1)[0])
            continue
        m = _LAYER_KEY.match(key)
        if m is None:
            raise ValueError(
                f"{path}: unexpected entry {key!r}; expected layers.<i>.0.weight/bias and "
                "base_acc "
                "(the published OFA accuracy predictor)"
            )
        layers.setdefault(int(m.group(1)), {})[m.group(2)] = torch.as_tensor(value).detach().float().numpy()
    if not layers or sorted(layers) != list(range(len(layers))):
        raise ValueError(f"{path}: layer indices {sorted(layers)} are not 0..n-1")
    weights, biases = [], []
    for i in range(len(layers)):
        if "weight" not in layers[i]:
            raise ValueError(f"{path}: layer {i} has no weight")
        w = layers[i]["weight"]
        if w.ndim != 2:
            raise ValueError(f"{path}: layers.{i} weight must be 2-D (out, in), got shape {list(w.shape)}")
        weights.append(w.T)  # torch Linear is (out, in); moofa keeps x @ W
        biases.append(layers[i].get("bias", np.zeros(w.shape[0], np.float32)))
    n_in = one_hot_size(sp)
    if weights[0].shape[0] != n_in:
        raise ValueError(
            f"{path}: the checkpoint takes {weights[0].shape[0]} inputs but space {sp.name!r} "
            f"encodes {n_in} ({ENCODING}): it is for another space or encoding"
        )
    if not np.isfinite(base_acc):
        raise ValueError(f"{path}: base_acc is not finite")
    # The published predictors output top-1 as a fraction plus base_acc; moofa speaks percent.
    return Predictor(
        sp,
        weights,
        biases,
        scale=100.0,
        offset=100.0 * base_acc,
        metadata={"name": path.name, "source": str(path)},
        isa=isa,
        precision=precision,
    )
