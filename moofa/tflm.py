"""TensorFlow Lite Micro's arena head for moofa's int8 graph of a subnet, without TFLM.

The graph is the one :func:`moofa.export.tflite` writes (see that module for its ops): this
module lists its activation tensors and the ops that write and read them, from the space and
the subnet alone (no torch, no weights), and replays TFLM's memory planning on them:

* every activation is one int8 buffer of ``prod(shape)`` bytes, rounded up to
  :data:`ALIGNMENT` (16) bytes; the graph input is alive from the start, the graph output to
  the end; every other tensor from the op that writes it to the last op that reads it
  (TFLM's allocation scopes: the graph start is 0, op ``i`` is ``i + 1``);
* kernels' scratch buffers live during their op: int8 ``MEAN`` asks for one int32 per output
  element;
* TFLM's greedy planner places the buffers (tensors in tensor order, then scratch buffers)
  largest first, equal sizes in the reverse of that order, each at the lowest offset where it
  fits between the already placed buffers whose lifetimes overlap its own; the head is the
  highest end offset.

:func:`head` gives the result in bytes; :func:`graph_of` and :func:`plan` expose the steps, and
:func:`graph_from_tflite` reads the same graph from any TFLite flatbuffer (needs the
``tflite-micro`` schema, ``moofa[mcu]``). ``tests/test_tflm.py`` checks the figures against
TFLM's own allocation byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spaces import Space, get_space, make_divisible
from .subnet import Subnet

__all__ = ["ALIGNMENT", "Buffer", "Graph", "Plan", "graph_from_tflite", "graph_of", "head", "plan"]

ALIGNMENT = 16  # TFLM's arena buffer alignment (MicroArenaBufferAlignment)
_FUSED = ("relu", "relu6", "none")  # activations a conv carries; h_swish is an op of its own


@dataclass(frozen=True)
class Op:
    """One operator: its name and the activation tensors it reads and writes (indices)."""

    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Buffer:
    """A buffer TFLM plans: ``size`` bytes (unaligned) alive from scope ``first`` to ``last``."""

    name: str
    size: int
    first: int
    last: int

    @property
    def aligned(self) -> int:
        return -(-self.size // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class Graph:
    """Activation tensors ``(name, shape)`` in tensor order, ops in execution order, the
    graph's input and output tensors, and scratch buffers ``(op index, bytes)``."""

    tensors: tuple[tuple[str, tuple[int, ...]], ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    scratch: tuple[tuple[int, int], ...]

    def buffers(self) -> list[Buffer]:
        """The buffers in the order TFLM adds them to its planner, with their lifetimes."""
        first = [-1] * len(self.tensors)
        last = [-1] * len(self.tensors)
        for t in (*self.inputs, *self.outputs):
            first[t] = last[t] = 0
        for i, op in enumerate(self.ops):
            scope = i + 1
            for t in op.outputs:
                first[t] = last[t] = scope
            for t in (*op.inputs, *op.outputs):
                last[t] = scope
        for t in self.outputs:
            last[t] = len(self.ops)
        out = []
        for j, (name, shape) in enumerate(self.tensors):
            size = 1
            for s in shape:
                size *= s
            if size and first[j] >= 0:
                out.append(Buffer(name, size, first[j], last[j]))
        for op_index, size in self.scratch:
            out.append(
                Buffer(f"scratch of op {op_index} ({self.ops[op_index].name})", size, op_index + 1, op_index + 1)
            )
        return out


@dataclass(frozen=True)
class Plan:
    """Offsets of the buffers (in their order) and the head: the highest end offset."""

    head: int
    offsets: tuple[int, ...]


def plan(buffers: list[Buffer]) -> Plan:
    """TFLM's greedy placement of ``buffers`` (in the order they were added to the planner)."""
    n = len(buffers)
    if n == 0:
        return Plan(0, ())
    sizes = [b.aligned for b in buffers]
    # Buffers enter the sort array back to front, then a stable sort by size, descending.
    order = sorted(reversed(range(n)), key=lambda i: -sizes[i])
    offsets = [0] * n
    placed: list[int] = [order[0]]  # by offset; equal offsets in placement order
    for i in order[1:]:
        b = buffers[i]
        candidate = 0
        for j in placed:
            o = buffers[j]
            if o.first > b.last or b.first > o.last:
                continue
            if offsets[j] - candidate >= sizes[i]:
                break
            candidate = max(candidate, offsets[j] + sizes[j])
        offsets[i] = candidate
        at = len(placed)
        for pos, j in enumerate(placed):
            if offsets[j] > candidate:
                at = pos
                break
        placed.insert(at, i)
    return Plan(max(offsets[i] + sizes[i] for i in range(n)), tuple(offsets))


# --- the graph of a subnet ----------------------------------------------------------------


def _out_size(size: int, stride: int) -> int:
    return -(-size // stride)


class _Builder:
    def __init__(self) -> None:
        self.tensors: list[tuple[str, tuple[int, ...]]] = []
        self.ops: list[Op] = []
        self.scratch: list[tuple[int, int]] = []

    def tensor(self, name: str, shape: tuple[int, ...]) -> int:
        self.tensors.append((name, shape))
        return len(self.tensors) - 1

    def op(self, name: str, inputs: tuple[int, ...], out_name: str, shape: tuple[int, ...]) -> int:
        out = self.tensor(out_name, shape)
        self.ops.append(Op(name, inputs, (out,)))
        return out

    def conv(self, x: int, c_out: int, stride: int, act: str, name: str, depthwise: bool = False) -> int:
        _, h, w, _ = self.tensors[x][1]
        shape = (1, _out_size(h, stride), _out_size(w, stride), c_out)
        y = self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", (x,), name, shape)
        if act == "h_swish":
            return self.op("HARD_SWISH", (y,), f"{name}/h_swish", shape)
        if act not in _FUSED:
            raise ValueError(f"{name}: activation {act!r} is not supported by the TFLite export")
        return y

    def mean(self, x: int, name: str) -> int:
        c = self.tensors[x][1][-1]
        y = self.op("MEAN", (x,), name, (1, 1, 1, c))
        self.scratch.append((len(self.ops) - 1, 4 * c))  # int8 MEAN: an int32 per output element
        return y

    def mbconv(self, x: int, c_out: int, mid: int | None, stride: int, act: str, se: bool, name: str) -> int:
        c_in = self.tensors[x][1][-1]
        y = x if mid is None else self.conv(x, mid, 1, act, f"{name}.expand")
        c_mid = self.tensors[y][1][-1]
        y = self.conv(y, c_mid, stride, act, f"{name}.depthwise", depthwise=True)
        if se:
            s = self.mean(y, f"{name}.se/mean")
            r = self.conv(s, make_divisible(c_mid // 4, 8), 1, "relu", f"{name}.se.reduce")
            gate = self.conv(r, c_mid, 1, "none", f"{name}.se.expand")
            y = self.op("MUL", (y, gate), f"{name}.se/mul", self.tensors[y][1])
        y = self.conv(y, c_out, 1, "none", f"{name}.project")
        if stride == 1 and c_in == c_out:
            y = self.op("ADD", (y, x), f"{name}/add", self.tensors[y][1])
        return y


def _subnet(net, sp: Space) -> Subnet:
    if isinstance(net, dict):
        net = Subnet.from_dict(net, sp)
    if not isinstance(net, Subnet):
        raise TypeError(f"net must be a moofa.Subnet or its dict (ks, e, d, image_size), got {type(net).__name__}")
    return net.validate(sp).coupled(sp)


def graph_of(net, space: str | Space = "moofa") -> Graph:
    """The activation graph that :func:`moofa.export.tflite` writes for subnet ``net`` (a
    :class:`moofa.Subnet` or its dict) of ``space``: tensors in the exporter's order."""
    sp = get_space(space)
    net = _subnet(net, sp)
    b = _Builder()
    r = net.image_size
    x = b.tensor("input", (1, r, r, sp.in_channels))
    x = b.conv(x, sp.first_conv_width, sp.first_conv_stride, sp.first_conv_act, "first_conv")
    x = b.mbconv(x, sp.first_block_width, None, 1, sp.first_block_act, False, "first_block")
    slot = i = 0
    for stage, depth in zip(sp.stages, net.d):
        for j in range(stage.max_depth):
            if j < depth:
                c_in = b.tensors[x][1][-1]
                e = float(net.e[slot])
                mid = None if e == 1.0 else make_divisible(round(c_in * e), 8)
                stride = stage.stride if j == 0 else 1
                x = b.mbconv(x, stage.width, mid, stride, stage.act, stage.se, f"blocks.{i}")
                i += 1
            slot += 1
    x = b.conv(x, sp.final_expand_width, 1, sp.head_act, "final_expand")
    x = b.mean(x, "pool")
    if sp.feature_mix_width:
        x = b.conv(x, sp.feature_mix_width, 1, sp.head_act, "feature_mix")
    x = b.op("FULLY_CONNECTED", (x,), "classifier", (1, sp.n_classes))
    return Graph(tuple(b.tensors), tuple(b.ops), (0,), (x,), tuple(b.scratch))


def head(net, space: str | Space = "moofa") -> int:
    """Bytes of TFLM's arena head (planned activations + scratch) for the int8 graph that
    :func:`moofa.export.tflite` writes of subnet ``net`` of ``space``."""
    return plan(graph_of(net, space).buffers()).head


def graph_from_tflite(model) -> Graph:
    """The activation graph of a TFLite flatbuffer (bytes or path): non-constant int8 tensors,
    ops in order, and the scratch buffers TFLM's kernels request for the ops moofa writes."""
    from .deploy import _load_bytes, _schema, read_model

    data = _load_bytes(model)
    info = read_model(data)
    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    sg = m.subgraphs[0]
    index: dict[int, int] = {}
    tensors: list[tuple[str, tuple[int, ...]]] = []
    for j, t in enumerate(info.tensors):
        if not t.const:
            index[j] = len(tensors)
            tensors.append((t.name, t.shape))
    ops: list[Op] = []
    scratch: list[tuple[int, int]] = []
    for name, op in zip(info.ops, sg.operators):
        ins = tuple(index[int(j)] for j in op.inputs if int(j) in index)
        outs = tuple(index[int(j)] for j in op.outputs if int(j) in index)
        ops.append(Op(name, ins, outs))
        if name == "MEAN":
            n = 1
            for s in tensors[outs[0]][1]:
                n *= s
            scratch.append((len(ops) - 1, 4 * n))
    return Graph(
        tuple(tensors),
        tuple(ops),
        tuple(index[int(j)] for j in sg.inputs),
        tuple(index[int(j)] for j in sg.outputs),
        tuple(scratch),
    )
