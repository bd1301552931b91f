"""BatchNorm recalibration: a subnet's statistics recomputed on a few batches.

Subnets of a weight-sharing supernet see other activation statistics than the ones the
shared BN buffers accumulated during training, so they are re-estimated before evaluation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, max_batches: int | None = None) -> nn.Module:
    """Reset every BatchNorm of ``model`` and set its statistics to the exact average over
    ``batches`` (tensors of images, or tuples whose first item is the images).

    The model is left in eval mode. Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        warnings.warn("recalibrate_bn: the model has no BatchNorm layer; nothing to do", stacklevel=2)
        return model.eval()
    momenta = [bn.momentum for bn in bns]
    param = next(model.parameters())
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: the exact mean over the batches seen
        bn.train()
    seen = 0
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(images, torch.Tensor):
                raise TypeError(f"batches must yield image tensors or (images, labels), got {type(images).__name__}")
            model(images.to(param.device, param.dtype))
            seen += 1
            if max_batches is not None and seen >= max_batches:
                break
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError("recalibrate_bn: batches yielded no batch")
    return model
