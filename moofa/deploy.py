"""Does a TFLite model fit the device? :func:`deploy_check` lets TensorFlow Lite Micro plan
its arena and reports what it needs.

TFLM puts everything it allocates at run time in one buffer, the tensor arena: the *head*
holds the activations (planned so that tensors not alive at the same time share memory) and
the kernels' scratch buffers, the *tail* holds persistent data (tensor structs, quantization
parameters, per-op data). The smallest arena that works is ``head + tail``. Weights stay in the
model (flash). Every allocation runs in a fresh Python process (``tflite-micro``'s C++ can
leave a process unusable after a failed allocation), so a damaged model cannot take the caller
down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .units import parse_budget

__all__ = ["Allocation", "DeployReport", "TensorInfo", "allocate", "deploy_check", "read_model"]

_IDENTIFIER = b"TFL3"
_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 10: "float64"}
_ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "int16": 2, "int8": 1, "float64": 8}
_FIRST_ARENA = 1 << 24  # 16 MiB, then larger until the model allocates
_MAX_ARENA = 1 << 30


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the model: activations have ``const=False``, weights/biases ``True``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    const: bool
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        n = _ITEMSIZE.get(self.dtype, 1)
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`read_model` finds in a TFLite flatbuffer (checked, not yet run)."""

    size: int  # bytes of the file (flash)
    ops: tuple[str, ...]  # in execution order
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    description: str = ""


@dataclass(frozen=True)
class Allocation:
    """One allocation attempt in TFLM: ``ok``, and the arena's head and tail when it worked."""

    ok: bool
    arena_size: int
    head: int = 0
    tail: int = 0
    message: str = ""


@dataclass(frozen=True)
class DeployReport:
    """TFLM's memory figures of a model, in bytes: ``arena = head + tail``, verified by
    allocating a fresh interpreter with exactly that arena (and running it once)."""

    head: int
    tail: int
    arena: int
    model_size: int
    budget: int | None
    ops: tuple[str, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def fits(self) -> bool | None:
        """``arena <= budget``; None without a budget."""
        return None if self.budget is None else self.arena <= self.budget

    def to_dict(self) -> dict:
        def tensor(t: TensorInfo) -> dict:
            return {
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "scale": list(t.scale),
                "zero_point": list(t.zero_point),
            }

        return {
            "head": self.head,
            "tail": self.tail,
            "arena": self.arena,
            "model_size": self.model_size,
            "budget": self.budget,
            "fits": self.fits,
            "op_counts": dict(self.op_counts),
            "inputs": [tensor(t) for t in self.inputs],
            "outputs": [tensor(t) for t in self.outputs],
            "n_tensors": len(self.tensors),
            "n_activations": sum(not t.const for t in self.tensors),
        }

    def summary(self) -> str:
        lines = []
        if self.budget is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"{verdict}: arena {self.arena:,} B vs budget {self.budget:,} B")
        lines += [
            f"arena {self.arena:,} B = head {self.head:,} B (activations + scratch)"
            f" + tail {self.tail:,} B (persistent)",
            f"model (flash) {self.model_size:,} B; {len(self.ops)} ops, {len(self.tensors)} tensors",
            "ops: " + ", ".join(f"{n} x{c}" for n, c in self.op_counts.items()),
        ]
        for kind, ts in (("input", self.inputs), ("output", self.outputs)):
            for t in ts:
                q = f", scale {t.scale[0]:.6g}, zero point {t.zero_point[0]}" if t.scale else ""
                lines.append(f"{kind} {t.name!r}: {t.dtype} {list(t.shape)}{q}")
        return "\n".join(lines)


def _schema():
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    except ImportError:
        raise ImportError("reading TFLite models needs tflite-micro: pip install 'moofa[mcu]'") from None
    return schema


def _load_bytes(model) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model: {str(path)!r} does not exist or is not a file")
        return path.read_bytes()
    raise TypeError(f"model must be the bytes of a .tflite file or its path, got {type(model).__name__}")


def read_model(model) -> ModelInfo:
    """Parse and check a TFLite model (bytes or path) without running it: the ``TFL3``
    identifier, a readable flatbuffer, one subgraph, constant data that matches the declared
    shapes, and integer tensors only (a float32 output of a final ``DEQUANTIZE`` is allowed).
    Raises ValueError naming what is wrong."""
    data = _load_bytes(model)
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise ValueError("model: not a TFLite flatbuffer (no 'TFL3' file identifier at bytes 4-8)")
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    try:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
        subgraphs = m.subgraphs or []
        buffers = m.buffers or []
        if len(subgraphs) != 1:
            raise ValueError(f"model: expected one subgraph, found {len(subgraphs)}")
        sg = subgraphs[0]
        sg_tensors = sg.tensors or []
        codes = []
        for oc in m.operatorCodes or []:
            code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
            codes.append(names.get(code, f"CUSTOM:{oc.customCode!r}" if oc.customCode else f"builtin {code}"))
        tensors = []
        for i, t in enumerate(sg_tensors):
            dtype = _DTYPES.get(t.type, f"type {t.type}")
            shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
            if not 0 <= t.buffer < len(buffers):
                raise ValueError(f"model: tensor {i} refers to buffer {t.buffer}, the model has {len(buffers)}")
            raw = buffers[t.buffer].data
            const = raw is not None and len(raw) > 0
            q = t.quantization
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or f"tensor {i}")
            info = TensorInfo(
                name=name,
                shape=shape,
                dtype=dtype,
                const=const,
                scale=tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ())),
                zero_point=tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ())),
            )
            if const and len(raw) != info.nbytes:
                raise ValueError(
                    f"model: constant tensor {name!r} {list(shape)} {dtype} needs {info.nbytes} bytes, "
                    f"its buffer holds {len(raw)} (truncated or corrupt file)"
                )
            tensors.append(info)
        ops, produced_by = [], {}
        for op in sg.operators or []:
            if not 0 <= op.opcodeIndex < len(codes):
                raise ValueError(f"model: an operator refers to operator code {op.opcodeIndex} of {len(codes)}")
            for j in [*(op.inputs if op.inputs is not None else []), *(op.outputs if op.outputs is not None else [])]:
                if not -1 <= j < len(tensors):
                    raise ValueError(f"model: operator {codes[op.opcodeIndex]} refers to tensor {j} of {len(tensors)}")
            ops.append(codes[op.opcodeIndex])
            for j in op.outputs if op.outputs is not None else []:
                produced_by[int(j)] = codes[op.opcodeIndex]
        inputs = [int(i) for i in (sg.inputs if sg.inputs is not None else [])]
        outputs = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
        for j in inputs + outputs:
            if not 0 <= j < len(tensors):
                raise ValueError(f"model: graph input/output refers to tensor {j} of {len(tensors)}")
        description = m.description.decode() if isinstance(m.description, bytes) else str(m.description or "")
    except ValueError as exc:
        if str(exc).startswith("model:"):
            raise
        raise ValueError(f"model: truncated or corrupt TFLite flatbuffer ({exc})") from None
    except Exception as exc:  # out-of-range reads of a damaged flatbuffer
        raise ValueError(f"model: truncated or corrupt TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    if not ops:
        raise ValueError("model: the graph has no operators")
    for j, t in enumerate(tensors):
        if t.dtype in ("float32", "float16", "float64"):
            if not (j in outputs and produced_by.get(j) == "DEQUANTIZE"):
                where = (
                    f"produced by {produced_by[j]}" if j in produced_by else ("a constant" if t.const else "an input")
                )
                raise ValueError(
                    f"model: tensor {t.name!r} is {t.dtype} ({where}); only integer (int8) models are supported "
                    "(float is allowed only as the output of a final DEQUANTIZE)"
                )
    return ModelInfo(
        size=len(data),
        ops=tuple(ops),
        tensors=tuple(tensors),
        inputs=tuple(tensors[j] for j in inputs),
        outputs=tuple(tensors[j] for j in outputs),
        description=description,
    )


def allocations_text(interp) -> str:
    """What a TFLM interpreter's ``print_allocations()`` prints. It writes from C, so file
    descriptors 1 and 2 point at a temporary file while it runs."""
    import ctypes

    sys.stdout.flush()
    sys.stderr.flush()
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            libc.fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


# The child process: reads the model from stdin, allocates it with the arena size of argv[1],
# optionally invokes it once on zeros, prints one JSON line.
_CHILD = r"""
import json, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
from moofa.deploy import allocations_text
model = sys.stdin.buffer.read()
arena, run = int(sys.argv[1]), sys.argv[2] == "1"
try:
    interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
except Exception as exc:
    print(json.dumps({"ok": False, "message": str(exc)}))
    sys.exit(0)
text = allocations_text(interp)
if run:
    d = interp.get_input_details(0)
    interp.set_input(np.zeros(d["shape"], dtype=d["dtype"]), 0)
    interp.invoke()
print(json.dumps({"ok": True, "text": text}))
"""


def _parse_allocations(text: str) -> tuple[int, int]:
    import re

    head = re.search(r"Arena allocation head (\d+) bytes", text)
    tail = re.search(r"Arena allocation tail (\d+) bytes", text)
    if not head or not tail:
        raise RuntimeError(f"TFLM printed no arena figures: {text[:300]!r}")
    return int(head.group(1)), int(tail.group(1))


def allocate(model, arena_size: int, invoke: bool = False, timeout: float = 300) -> Allocation:
    """Allocate ``model`` (bytes or path) in TFLM with an arena of ``arena_size`` bytes, in a
    fresh Python process; ``invoke=True`` also runs it once on a zero input."""
    if isinstance(arena_size, bool) or not isinstance(arena_size, int) or arena_size < 1:
        raise ValueError(f"arena_size must be a positive integer (bytes), got {arena_size!r}")
    data = _load_bytes(model)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(arena_size), "1" if invoke else "0"],
        input=data,
        capture_output=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),  # python -c puts its folder first on sys.path: not a source tree
    )
    stderr = proc.stderr.decode(errors="replace").strip()
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        return Allocation(False, arena_size, message=f"TFLM process exited with {proc.returncode}: {stderr[-500:]}")
    result = json.loads(lines[-1])
    if not result["ok"]:
        return Allocation(False, arena_size, message=f"{result['message']}: {stderr[-500:]}".strip(": "))
    head, tail = _parse_allocations(result["text"])
    return Allocation(True, arena_size, head, tail)


def deploy_check(model, budget=None) -> DeployReport:
    """Allocate ``model`` (the bytes of a ``.tflite`` file or its path) in TensorFlow Lite
    Micro and report its arena: ``head`` (activations + scratch), ``tail`` (persistent data),
    ``arena = head + tail`` (confirmed by allocating and running a fresh interpreter with exactly
    that arena), and, with a ``budget`` (bytes: ``262144``, ``"256KiB"``, ``"300kB"``), whether
    it fits. Bad files raise ValueError before TFLM sees them."""
    data = _load_bytes(model)
    info = read_model(data)
    budget_bytes = None if budget is None else parse_budget(budget, bytes_per_item=1)
    size = max(_FIRST_ARENA, 4 * len(data))
    while True:
        first = allocate(data, size)
        if first.ok or size >= _MAX_ARENA:
            break
        size *= 4
    if not first.ok:
        raise ValueError(f"model: TFLM cannot allocate it even with a {size:,}-byte arena: {first.message}")
    arena = first.head + first.tail
    check = allocate(data, arena, invoke=True)
    if not check.ok:
        raise RuntimeError(f"TFLM reported head + tail = {arena:,} bytes but fails with that arena: {check.message}")
    counts: dict[str, int] = {}
    for op in info.ops:
        counts[op] = counts.get(op, 0) + 1
    return DeployReport(
        head=first.head,
        tail=first.tail,
        arena=arena,
        model_size=info.size,
        budget=budget_bytes,
        ops=info.ops,
        tensors=info.tensors,
        inputs=info.inputs,
        outputs=info.outputs,
        op_counts=counts,
    )
