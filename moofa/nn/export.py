"""Export of an extracted subnet to TorchScript, or to ONNX when ``onnx`` is installed."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .profile import _check_shape

__all__ = ["export"]

FORMATS = ("torchscript", "exported", "onnx")


def export(
    module: nn.Module, path: str | os.PathLike, input_shape=(1, 3, 224, 224), format: str = "torchscript"
) -> Path:
    """Write ``module`` (eval mode) to ``path`` as TorchScript (``.pt``, loads with
    ``torch.jit.load``), a ``torch.export`` program (``"exported"``, ``.pt2``, loads with
    ``torch.export.load``) or ONNX (``.onnx``, needs the ``onnx`` package).

    TorchScript is scripted, so any input size runs; the other two are traced at
    ``input_shape`` (ONNX with a dynamic batch dimension). Written to a temporary name, then renamed.
    """
    from .supernet import Supernet

    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, Supernet):
        module = module.extract()
    shape = _check_shape(input_shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    was_training = module.training
    module.eval()
    try:
        if format == "torchscript":
            # TorchScript is deprecated upstream in favour of torch.export, but it is still what
            # most C++/mobile runtimes load; the warning is about the API, not this file.
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=r".*torch\.jit\.\w+` is deprecated", category=DeprecationWarning
                )
                torch.jit.save(torch.jit.script(module), str(tmp))
        elif format == "exported":
            x = torch.zeros(shape, dtype=next(module.parameters()).dtype)
            torch.export.save(torch.export.export(module, (x,)), str(tmp))
        else:
            if importlib.util.find_spec("onnx") is None:
                raise ValueError("format='onnx' needs the onnx package: pip install onnx")
            _export_onnx(module, shape, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        module.train(was_training)
    return path


def _export_onnx(module: nn.Module, shape: tuple, path: Path) -> None:
    # The TorchScript-based exporter: deprecated upstream, but complete for these plain conv
    # nets and, unlike the torch.export-based one, it needs no onnxscript.
    x = torch.zeros(shape, dtype=next(module.parameters()).dtype)
    with warnings.catch_warnings():
        # Its own notices about being deprecated: about torch's API, not about this model.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
