"""Exports of extracted subnets: int8 TensorFlow Lite for microcontrollers (:func:`tflite`),
and TorchScript / ``torch.export`` / ONNX (:func:`onnx`, the same as :func:`moofa.nn.export`).

``tflite(module, calibration)`` writes a fully int8 TFLite flatbuffer that TensorFlow Lite
Micro runs with its built-in kernels; no TensorFlow is needed. The graph, per layer of a
:class:`moofa.nn.SubnetModel`:

* convolution + BatchNorm -> one ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` (BN folded into the
  weights and an int32 bias), SAME padding, ReLU / ReLU6 fused, h-swish as ``HARD_SWISH``;
* squeeze-excite -> ``MEAN`` (keep dims) -> ``CONV_2D`` 1x1 + ReLU -> ``CONV_2D`` 1x1 whose
  output range is exactly [0, 1] (h-sigmoid ``relu6(z + 3) / 6`` folded into weights and bias,
  the clamp done by int8 saturation) -> ``MUL``;
* identity shortcut -> ``ADD``; global pooling -> ``MEAN``; feature mix -> ``CONV_2D`` 1x1;
  classifier -> ``FULLY_CONNECTED``.

A stride-2 layer whose SAME padding would start one pixel later than PyTorch's (even input
sizes) gets a kernel one larger with a zero last row and column, which reproduces PyTorch's
padding exactly without a ``PAD`` layer.

Quantization: weights symmetric int8 per output channel (fully connected: per tensor), biases
int32 at ``input_scale * weight_scale``, activations asymmetric int8 with the min/max of each
tensor over the ``calibration`` batch. The input is int8 NHWC ``(1, r, r, C)``: an image
normalised as for the PyTorch module, ``q = clip(round(x / scale) + zero_point, -128, 127)``
with the input tensor's ``scale``/``zero_point``; the output is int8
logits ``(1, n_classes)``, ``logits = scale * (q - zero_point)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._io import atomic_write

__all__ = ["onnx", "tflite", "tflite_from_checkpoint"]


def onnx(module, path: str | os.PathLike, input_shape=(1, 3, 224, 224)):
    """ONNX file of an extracted subnet: ``moofa.nn.export(..., format="onnx")`` (needs ``onnx``)."""
    from .nn.export import export

    return export(module, path, input_shape, format="onnx")


def _schema():
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    except ImportError:
        raise ImportError(
            "the TFLite export needs the TFLite schema bundled with tflite-micro: pip install 'moofa[mcu]'"
        ) from None
    return schema


# --- the graph ------------------------------------------------------------------------------


class _Tensor:
    def __init__(self, name: str, shape: tuple, value=None, const: np.ndarray | None = None):
        self.name = name
        self.shape = tuple(int(s) for s in shape)  # NHWC / TFLite layout
        self.value = value  # float activation (torch, NCHW) on the calibration batch
        self.const = const  # quantized constant data (int8 / int32)
        self.scale: list[float] = []
        self.zero_point: list[int] = []
        self.dim = 0
        self.fixed_range: tuple[float, float] | None = None


class _Graph:
    """Builds the op list while computing every activation in float on the calibration batch."""

    def __init__(self) -> None:
        self.tensors: list[_Tensor] = []
        self.ops: list[tuple[str, list[int], list[int], dict]] = []
        self.pending: list[tuple] = []  # constants quantized once the input scales are known

    def add(self, tensor: _Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def activation(self, name: str, value) -> int:
        n, c, h, w = value.shape if value.dim() == 4 else (value.shape[0], value.shape[1], 1, 1)
        shape = (1, h, w, c) if value.dim() == 4 else (1, c)
        return self.add(_Tensor(name, shape, value=value))

    # Convolution of x (NCHW float) with folded float weights; quantized later.
    def conv(self, x: int, weight, bias, stride: int, groups: int, act: str, name: str, out_range=None) -> int:
        import torch.nn.functional as F

        xv = self.tensors[x].value
        c_out, c_in_g, k, k2 = weight.shape
        if k != k2 or k % 2 == 0:
            raise ValueError(f"module.{name}: only square odd kernels are supported, got {k}x{k2}")
        c_in = xv.shape[1]
        depthwise = groups > 1
        if depthwise and not (groups == c_in == c_out and c_in_g == 1):
            raise ValueError(
                f"module.{name}: grouped convolutions other than depthwise are not supported (groups={groups})"
            )
        y = F.conv2d(xv, weight, bias, stride, k // 2, groups=groups)
        fused = {"none": 0, "relu": 1, "relu6": 3, "h_swish": 0}[act]
        if act == "relu":
            y = y.clamp_min(0)
        elif act == "relu6":
            y = y.clamp(0, 6)
        # TFLite's SAME padding puts floor(total / 2) in front; PyTorch puts k // 2. Where they
        # differ, a kernel one larger with zeros at the end pads like PyTorch.
        size = xv.shape[2]
        kernel = weight
        if _same_pad_before(size, k, stride) != k // 2:
            if _same_pad_before(size, k + 1, stride) != k // 2:  # pragma: no cover - not for odd k
                raise ValueError(
                    f"module.{name}: padding of a {k}x{k} stride-{stride} conv on {size}x{size} has no SAME form"
                )
            kernel = F.pad(weight, (0, 1, 0, 1))
        out = self.activation(name, y)
        if out_range is not None:
            self.tensors[out].fixed_range = out_range
        self.pending.append(("conv", x, out, kernel, bias, stride, depthwise, fused, name))
        if act == "h_swish":
            return self.unary("HARD_SWISH", out, y * (y + 3).clamp(0, 6) / 6, f"{name}/h_swish")
        return out

    def unary(self, op: str, x: int, value, name: str, options: dict | None = None, extra: list | None = None) -> int:
        out = self.activation(name, value)
        self.ops.append((op, [x, *(extra or [])], [out], options or {}))
        return out

    def mean(self, x: int, name: str) -> int:
        axes = self.add(_Tensor(f"{name}/axes", (2,), const=np.array([1, 2], dtype=np.int32)))
        value = self.tensors[x].value.mean((2, 3), keepdim=True)
        return self.unary("MEAN", x, value, name, {"keep_dims": True}, extra=[axes])

    def binary(self, op: str, a: int, b: int, value, name: str) -> int:
        out = self.activation(name, value)
        self.ops.append((op, [a, b], [out], {}))
        return out

    def fully_connected(self, x: int, weight, bias, name: str) -> int:
        xv = self.tensors[x].value.flatten(1)
        out = self.activation(name, xv @ weight.T + bias)
        self.pending.append(("fc", x, out, weight, bias, name))
        return out


def _same_pad_before(size: int, k: int, stride: int) -> int:
    out = -(-size // stride)
    return max((out - 1) * stride + k - size, 0) // 2


def _fold(block) -> tuple:
    """(weight, bias, stride, groups, act) of a ConvBNAct with its BatchNorm folded in."""
    import torch
    from torch import nn

    conv = block.conv
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if isinstance(block.bn, nn.BatchNorm2d):
        bn: Any = block.bn
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * scale.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    elif not isinstance(block.bn, nn.Identity):
        raise ValueError(f"normalisation {type(block.bn).__name__} is not supported")
    return w, b, conv.stride[0], conv.groups, _act_name(block.act)


def _act_name(module) -> str:
    from torch import nn

    for cls, name in ((nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.Hardswish, "h_swish"), (nn.Identity, "none")):
        if type(module) is cls:
            return name
    raise ValueError(f"activation {type(module).__name__} is not supported (relu, relu6, h_swish, none)")


def _build(module, calibration) -> tuple[_Graph, int]:
    import torch
    from torch import nn

    from .nn.layers import MBConv, SqueezeExcite

    g = _Graph()
    x = g.activation("input", calibration)

    def conv_block(x: int, block, name: str) -> int:
        try:
            w, b, stride, groups, act = _fold(block)
        except ValueError as exc:
            raise ValueError(f"module.{name}: {exc}") from None
        return g.conv(x, w, b, stride, groups, act, name)

    def mbconv(x: int, block, name: str) -> int:
        if not isinstance(block, MBConv):
            raise TypeError(f"module.{name}: expected an MBConv block, got {type(block).__name__}")
        y = x if isinstance(block.expand, nn.Identity) else conv_block(x, block.expand, f"{name}.expand")
        y = conv_block(y, block.depthwise, f"{name}.depthwise")
        if isinstance(block.se, SqueezeExcite):
            se: Any = block.se
            s = g.mean(y, f"{name}.se/mean")
            r = g.conv(
                s,
                se.reduce.weight.detach().double(),
                se.reduce.bias.detach().double(),
                1,
                1,
                "relu",
                f"{name}.se.reduce",
            )
            # h_sigmoid(z) = clamp((z + 3) / 6, 0, 1): folded into the weights, clamped by an
            # output range of exactly [0, 1].
            we = se.expand.weight.detach().double() / 6
            be = (se.expand.bias.detach().double() + 3) / 6
            gate = g.conv(r, we, be, 1, 1, "none", f"{name}.se.expand", out_range=(0.0, 1.0))
            g.tensors[gate].value = g.tensors[gate].value.clamp(0, 1)
            y = g.binary("MUL", y, gate, g.tensors[y].value * g.tensors[gate].value, f"{name}.se/mul")
        elif not isinstance(block.se, nn.Identity):
            raise ValueError(f"module.{name}.se: {type(block.se).__name__} is not supported")
        y = conv_block(y, block.project, f"{name}.project")
        if block.identity_shortcut:
            y = g.binary("ADD", y, x, g.tensors[y].value + g.tensors[x].value, f"{name}/add")
        return y

    x = conv_block(x, module.first_conv, "first_conv")
    x = mbconv(x, module.first_block, "first_block")
    for i, block in enumerate(module.blocks):
        x = mbconv(x, block, f"blocks.{i}")
    x = conv_block(x, module.final_expand, "final_expand")
    x = g.mean(x, "pool")
    if not isinstance(module.feature_mix, nn.Identity):
        x = conv_block(x, module.feature_mix, "feature_mix")
    linear = module.classifier.linear
    w = linear.weight.detach().double()
    b = linear.bias.detach().double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return g, g.fully_connected(x, w, b, "classifier")


def _activation_quant(t: _Tensor) -> None:
    if t.fixed_range is not None:
        lo, hi = t.fixed_range
    else:
        lo, hi = float(t.value.min()), float(t.value.max())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    t.scale = [scale]
    t.zero_point = [int(np.clip(round(-128 - lo / scale), -128, 127))]


def _weight_quant(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (``axis``) or per tensor (``None``)."""
    if axis is None:
        amax = np.array([np.abs(w).max()])
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        q = np.round(w / scale[0])
    else:
        amax = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.round(w / scale.reshape(shape))
    return np.clip(q, -127, 127).astype(np.int8), scale


def _quantize(g: _Graph) -> None:
    for t in g.tensors:
        if t.value is not None:
            _activation_quant(t)
    for item in g.pending:
        kind, x, out = item[0], item[1], item[2]
        s_in = g.tensors[x].scale[0]
        if kind == "conv":
            _, _, _, kernel, bias, stride, depthwise, fused, name = item
            w = kernel.numpy().transpose(1, 2, 3, 0) if depthwise else kernel.numpy().transpose(0, 2, 3, 1)
            axis = 3 if depthwise else 0  # (1, kh, kw, C) / (C_out, kh, kw, C_in)
            qw, sw = _weight_quant(w, axis)
            wt = _Tensor(f"{name}/weights", qw.shape, const=qw)
            wt.scale, wt.zero_point, wt.dim = [float(s) for s in sw], [0] * len(sw), axis
            qb = np.round(bias.numpy() / (s_in * sw)).astype(np.int64)
            bt = _Tensor(f"{name}/bias", qb.shape, const=np.clip(qb, -(2**31), 2**31 - 1).astype(np.int32))
            bt.scale, bt.zero_point = [float(s_in * s) for s in sw], [0] * len(sw)
            wi, bi = g.add(wt), g.add(bt)
            op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
            options = {"stride": stride, "fused": fused, "depthwise": depthwise}
            g.ops.append((op, [x, wi, bi], [out], options))
        else:
            _, _, _, weight, bias, name = item
            qw, sw = _weight_quant(weight.numpy(), None)
            wt = _Tensor(f"{name}/weights", qw.shape, const=qw)
            wt.scale, wt.zero_point = [float(sw[0])], [0]
            qb = np.round(bias.numpy() / (s_in * sw[0])).astype(np.int64)
            bt = _Tensor(f"{name}/bias", qb.shape, const=np.clip(qb, -(2**31), 2**31 - 1).astype(np.int32))
            bt.scale, bt.zero_point = [float(s_in * sw[0])], [0]
            wi, bi = g.add(wt), g.add(bt)
            g.ops.append(("FULLY_CONNECTED", [x, wi, bi], [out], {}))


def _order_ops(g: _Graph) -> list:
    """Ops in execution order: the output tensor ids grow with execution, so sort by them."""
    return sorted(g.ops, key=lambda op: op[2][0])


def _serialize(g: _Graph, description: str) -> bytes:
    import flatbuffers

    schema = _schema()
    ops = _order_ops(g)
    codes: list[str] = []
    for op in ops:
        if op[0] not in codes:
            codes.append(op[0])

    buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty one, by convention
    aligned: dict[int, bytes] = {}
    tensors = []
    for t in g.tensors:
        tt = schema.TensorT()
        tt.shape = list(t.shape)
        tt.name = t.name
        if t.const is not None:
            tt.type = schema.TensorType.INT32 if t.const.dtype == np.int32 else schema.TensorType.INT8
            aligned[len(buffers)] = np.ascontiguousarray(t.const).tobytes()
            tt.buffer = len(buffers)
            buffers.append(schema.BufferT())
        else:
            tt.type = schema.TensorType.INT8
            tt.buffer = 0
        if t.scale:
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = list(t.scale), list(t.zero_point), t.dim
            tt.quantization = q
        tensors.append(tt)

    operators = []
    for name, inputs, outputs, opts in ops:
        o = schema.OperatorT()
        o.opcodeIndex = codes.index(name)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            c = schema.DepthwiseConv2DOptionsT() if opts["depthwise"] else schema.Conv2DOptionsT()
            c.padding = schema.Padding.SAME
            c.strideW = c.strideH = opts["stride"]
            c.fusedActivationFunction = opts["fused"]
            if opts["depthwise"]:
                c.depthMultiplier = 1
                o.builtinOptionsType = schema.BuiltinOptions.DepthwiseConv2DOptions
            else:
                o.builtinOptionsType = schema.BuiltinOptions.Conv2DOptions
            o.builtinOptions = c
        elif name == "MEAN":
            r = schema.ReducerOptionsT()
            r.keepDims = True
            o.builtinOptionsType, o.builtinOptions = schema.BuiltinOptions.ReducerOptions, r
        elif name == "ADD":
            o.builtinOptionsType, o.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
        elif name == "MUL":
            o.builtinOptionsType, o.builtinOptions = schema.BuiltinOptions.MulOptions, schema.MulOptionsT()
        elif name == "FULLY_CONNECTED":
            f = schema.FullyConnectedOptionsT()
            o.builtinOptionsType, o.builtinOptions = schema.BuiltinOptions.FullyConnectedOptions, f
        operators.append(o)

    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.name = tensors, operators, "main"
    sub.inputs, sub.outputs = [0], [ops[-1][2][0]]
    model = schema.ModelT()
    model.version = 3
    model.description = description
    model.subgraphs = [sub]
    model.operatorCodes = []
    for name in codes:
        oc = schema.OperatorCodeT()
        code = getattr(schema.BuiltinOperator, name)
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)

    builder = flatbuffers.Builder(1024)
    # Constant data first, 16-byte aligned (kernels read int32 biases in place).
    data_offsets = {}
    for index, raw in aligned.items():
        builder.StartVector(1, len(raw), 16)
        builder.head = builder.head - len(raw)
        builder.Bytes[builder.head : builder.head + len(raw)] = raw
        data_offsets[index] = builder.EndVector()
    model.buffers = [_PackedBuffer(schema, data_offsets.get(i)) for i in range(len(buffers))]
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class _PackedBuffer:
    """A Buffer table whose data vector is already in the builder."""

    def __init__(self, schema, data_offset):
        self.schema, self.data_offset = schema, data_offset

    def Pack(self, builder):
        s = self.schema
        s.BufferStart(builder)
        if self.data_offset is not None:
            s.BufferAddData(builder, self.data_offset)
        return s.BufferEnd(builder)


def _check_module(module):
    try:
        from torch import nn

        from .nn.layers import SubnetModel
    except ImportError:
        raise ImportError("the TFLite export needs PyTorch: pip install 'moofa[torch]'") from None
    if not isinstance(module, nn.Module) or not isinstance(module, SubnetModel):
        raise TypeError(
            f"module must be an extracted subnet (moofa.nn.SubnetModel, from Supernet.extract), "
            f"got {type(module).__name__}"
        )


def _check_calibration(module, calibration):
    import torch

    if isinstance(calibration, np.ndarray):
        calibration = torch.from_numpy(calibration)
    if not isinstance(calibration, torch.Tensor):
        raise TypeError(f"calibration must be a float tensor (N, C, r, r), got {type(calibration).__name__}")
    if not calibration.is_floating_point():
        raise TypeError(f"calibration must be a float tensor (normalised images), got dtype {calibration.dtype}")
    c_in = module.first_conv.conv.in_channels
    size = module.config.get("image_size")
    shape = tuple(calibration.shape)
    if (
        calibration.dim() != 4
        or shape[0] < 1
        or shape[1] != c_in
        or shape[2] != shape[3]
        or (size is not None and shape[2] != size)
    ):
        want = f"(N, {c_in}, {size}, {size})" if size is not None else f"(N, {c_in}, r, r)"
        raise ValueError(f"calibration must have shape {want}, got {shape}")
    if not bool(torch.isfinite(calibration).all()):
        raise ValueError("calibration holds NaN or infinite values")
    return calibration.detach().to("cpu", torch.float64)


def tflite(module, calibration, path: str | os.PathLike | None = None) -> bytes:
    """The int8 TFLite flatbuffer of an extracted subnet ``module`` (see the module docstring
    for the graph, layout and quantization), calibrated on ``calibration``: float images
    ``(N, C, r, r)`` normalised as for training, ``r`` the subnet's ``image_size``. Written
    atomically to ``path`` when given. Needs torch and ``tflite-micro`` (``moofa[mcu]``).
    """
    import torch

    _check_module(module)
    x = _check_calibration(module, calibration)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            g, out = _build(module, x)
            reference = _float_forward(module, x)
    finally:
        module.train(was_training)
    got = g.tensors[out].value
    tol = 1e-4 * max(1.0, float(reference.abs().max()))
    if not torch.allclose(got.float(), reference.float(), atol=tol, rtol=1e-3):
        raise ValueError("module: its forward pass differs from the exported graph (modified layers?)")
    _quantize(g)
    config = module.config
    description = f"moofa subnet of space {module.space_name!r}: {config}"
    data = _serialize(g, description)
    if path is not None:

        def write(f) -> None:
            f.write(data)

        atomic_write(path, write)
    return data


def _float_forward(module, x):
    """The module's own forward in float64 on a copy (the original keeps its dtype)."""
    import copy

    return copy.deepcopy(module).double()(x)


def tflite_from_checkpoint(
    checkpoint: str | os.PathLike,
    config=None,
    data: str | os.PathLike = "digits",
    path: str | os.PathLike | None = None,
    space=None,
    calib_batches: int = 4,
    batch_size: int = 64,
) -> bytes:
    """:func:`tflite` of subnet ``config`` (a :class:`moofa.Subnet` or its dict; default: the
    largest) of a trained supernet (``supernet.npz`` + ``.json``, as written by
    :mod:`moofa.train`), with BatchNorm recalibrated and activations calibrated on the first
    ``calib_batches`` batches of the training split of ``data`` (``"digits"`` or an image
    folder with ``train/<class>/*``) at the subnet's resolution, as for validation."""
    import torch

    from .data import load_dataset, make_loader
    from .nn import Supernet
    from .subnet import Subnet

    if isinstance(calib_batches, bool) or not isinstance(calib_batches, int) or calib_batches < 1:
        raise ValueError(f"calib_batches must be a positive integer, got {calib_batches!r}")
    sup = Supernet.load(checkpoint, space=space)
    if config is None:
        net = sup.largest_subnet()
    elif isinstance(config, Subnet):
        net = config
    elif isinstance(config, dict):
        net = Subnet.from_dict(config, sup.space)
    else:
        raise TypeError(f"config must be a moofa.Subnet or a dict (ks, e, d, image_size), got {type(config).__name__}")
    loader = make_loader(load_dataset(data, "train"), batch_size, [net.image_size], train=False)
    batches = [x for _, (x, _) in zip(range(calib_batches), loader)]
    module = sup.recalibrated(net, batches)
    return tflite(module, torch.cat(batches), path=path)
