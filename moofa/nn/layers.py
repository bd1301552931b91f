"""Plain (static) layers of an extracted subnet: ordinary torch modules, scriptable and exportable.

The supernet's elastic layers (``moofa.nn.elastic``) copy their active slices into these.
Two class attributes steer :func:`moofa.nn.profile_memory`, which follows the same convention
as the C++ evaluator: ``memory_counted = False`` keeps a module's convolutions out of the
memory histogram (squeeze-excite, feature mix), and a block with ``identity_shortcut`` adds
its input to its depthwise layer's figure (the residual is kept alive there).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Classifier", "ConvBNAct", "FeatureMix", "MBConv", "SqueezeExcite", "SubnetModel", "activation"]


def activation(name: str) -> nn.Module:
    """The module of a moofa activation name (see ``moofa.spaces.ACTIVATIONS``)."""
    table = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "h_swish": nn.Hardswish,
        "h_sigmoid": nn.Hardsigmoid,
        "sigmoid": nn.Sigmoid,
        "swish": nn.SiLU,
        "none": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"activation must be one of {sorted(table)}, got {name!r}")
    return table[name]()


class ConvBNAct(nn.Module):
    """Conv (same padding, no bias) -> BatchNorm -> activation; BN can be left out."""

    memory_counted = True

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = "none",
        use_bn: bool = True,
        bias: bool = False,
        device=None,
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias, device=device)
        self.bn = nn.BatchNorm2d(c_out, device=device) if use_bn else nn.Identity()
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class FeatureMix(ConvBNAct):
    """1x1 conv after global pooling (no BN, no bias); not part of the memory peak (paper Sec. 4.4)."""

    memory_counted = False

    def __init__(self, c_in: int, c_out: int, act: str):
        super().__init__(c_in, c_out, 1, act=act, use_bn=False)


class SqueezeExcite(nn.Module):
    """OFA's SE: global mean -> 1x1 (bias) -> ReLU -> 1x1 (bias) -> h_sigmoid -> scale."""

    memory_counted = False

    def __init__(self, channels: int, mid: int, device=None):
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True, device=device)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True, device=device)
        self.relu = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(y))))


class MBConv(nn.Module):
    """Inverted bottleneck: [expand 1x1] -> depthwise kxk (stride) -> [SE] -> project 1x1 (+ identity)."""

    def __init__(
        self,
        expand: nn.Module,
        depthwise: ConvBNAct,
        se: nn.Module,
        project: ConvBNAct,
        identity_shortcut: bool,
    ):
        super().__init__()
        self.expand = expand  # nn.Identity when the block has no expansion layer (e = 1)
        self.depthwise = depthwise
        self.se = se  # nn.Identity without squeeze-excite
        self.project = project
        self.identity_shortcut = bool(identity_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        if self.identity_shortcut:
            y = y + x
        return y


class Classifier(nn.Module):
    """Dropout -> Linear (with bias)."""

    def __init__(self, c_in: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x))


class SubnetModel(nn.Module):
    """A standalone subnet: first conv -> first block -> blocks -> final expand -> pool
    -> [feature mix] -> classifier. Built by :meth:`moofa.nn.Supernet.extract`.

    ``config`` (a dict: ks, e, d, image_size) and ``space_name`` record where it came from.
    """

    def __init__(
        self,
        first_conv: ConvBNAct,
        first_block: MBConv,
        blocks: list[MBConv],
        final_expand: ConvBNAct,
        feature_mix: nn.Module,
        classifier: Classifier,
        config: dict | None = None,
        space_name: str = "",
    ):
        super().__init__()
        self.first_conv = first_conv
        self.first_block = first_block
        self.blocks = nn.Sequential(*blocks)
        self.final_expand = final_expand
        self.feature_mix = feature_mix  # nn.Identity when the space has none
        self.classifier = classifier
        self.config = dict(config or {})
        self.space_name = space_name

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled feature vector fed to the classifier."""
        x = self.final_expand(self.blocks(self.first_block(self.first_conv(x))))
        x = self.feature_mix(x.mean((2, 3), keepdim=True))
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
