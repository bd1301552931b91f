"""Peak memory, MFLOPs and parameters measured on a real forward pass (forward hooks).

Same convention as the C++ evaluator (``moofa.profile``): every convolution contributes
``input numel + output numel + weights`` (weights left out with ``memory_model="activations"``);
a block with an identity shortcut adds its input to its depthwise layer (the residual is held
while that layer runs); convolutions inside modules whose class sets ``memory_counted = False``
(squeeze-excite, the feature mix) and linear layers are not in the histogram. MFLOPs count
every convolution and linear layer (multiply-accumulates / 1e6, per image).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["MemoryProfile", "profile_memory"]


@dataclass(frozen=True)
class MemoryProfile:
    """What a hooked forward pass measured. Memory figures are in items for the given batch
    (batch 1 is the paper's convention); ``mflops`` is per image."""

    peak: int
    hist: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    params: int = 0
    mflops: float = 0.0
    memory_model: str = "full"

    @property
    def avg(self) -> float:
        return sum(self.hist) / len(self.hist) if self.hist else 0.0

    @property
    def std(self) -> float:
        if not self.hist:
            return 0.0
        mean = self.avg
        return math.sqrt(sum((h - mean) ** 2 for h in self.hist) / len(self.hist))


def _check_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple like (1, 3, 224, 224), got {input_shape!r}") from None
    if len(shape) != 4 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) > 0 for s in shape
    ):
        raise ValueError(
            f"input_shape must be 4 positive integers (batch, channels, height, width), got {input_shape!r}"
        )
    return tuple(int(s) for s in shape)


def profile_memory(module: nn.Module, input_shape=(1, 3, 224, 224), *, memory_model: str = "full") -> MemoryProfile:
    """Run ``module`` once (eval mode, no grad) on a random input of ``input_shape`` and measure.

    ``module``: any ``nn.Module`` (a :class:`moofa.nn.Supernet` is profiled through its
    active subnet). Returns a :class:`MemoryProfile` (``.peak``, ``.hist``, ``.params``, ``.mflops``).
    """
    from .supernet import Supernet

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if memory_model not in ("full", "activations"):
        raise ValueError(f"memory_model must be 'full' or 'activations', got {memory_model!r}")
    shape = _check_shape(input_shape)
    if isinstance(module, Supernet):
        module = module.extract()
    with_weights = memory_model == "full"

    excluded: set[nn.Module] = set()
    residual_of: dict[nn.Module, nn.Module] = {}  # depthwise conv -> its identity-shortcut block
    names: dict[nn.Module, str] = {}
    for name, m in module.named_modules():
        names[m] = name
        if getattr(type(m), "memory_counted", True) is False:
            excluded.update(c for c in m.modules() if isinstance(c, nn.Conv2d))
        if getattr(m, "identity_shortcut", False) and isinstance(getattr(m, "depthwise", None), nn.Module):
            conv = next((c for c in m.depthwise.modules() if isinstance(c, nn.Conv2d)), None)
            if conv is not None:
                residual_of[conv] = m

    hist: list[int] = []
    layers: list[str] = []
    macs = [0]
    block_input: dict[nn.Module, int] = {}
    batch = shape[0]

    def block_pre_hook(m, args):
        block_input[m] = args[0].numel()

    def conv_hook(m, args, out):
        macs[0] += out.numel() // batch * m.weight[0].numel()
        if m in excluded:
            return
        figure = args[0].numel() + out.numel()
        if with_weights:
            figure += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        if m in residual_of:
            figure += block_input[residual_of[m]]
        hist.append(int(figure))
        layers.append(names.get(m, type(m).__name__))

    def linear_hook(m, args, out):
        macs[0] += out.numel() // batch * m.in_features

    handles = [b.register_forward_pre_hook(block_pre_hook) for b in set(residual_of.values())]
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        generator = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(shape, device=device, dtype=dtype, generator=generator)
        module.eval()
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    if not hist:
        raise ValueError("profile_memory: the module ran no counted convolution (is it a conv net?)")
    return MemoryProfile(
        peak=max(hist),
        hist=hist,
        layers=layers,
        params=sum(p.numel() for p in module.parameters()),
        mflops=macs[0] / 1e6,
        memory_model=memory_model,
    )
