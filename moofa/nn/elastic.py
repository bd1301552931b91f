"""Elastic (weight-sharing) layers of the supernet, OFA-style.

* elastic kernel: a depthwise conv holds the largest kernel; a smaller kernel is the centre
  of the next larger one passed through a learned (k^2 x k^2) transformation matrix, step
  by step down the kernel list (identity at start, so the centre crop is the initial weight);
* elastic expand: the first ``mid`` channels of the middle layers are used, and
  :meth:`ElasticMBConv.sort_channels` reorders them by importance (L1 norm of the
  projection weights) so narrow subnets get the most important ones;
* elastic depth and resolution are handled by :class:`moofa.nn.Supernet`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spaces import make_divisible
from .layers import ConvBNAct, MBConv, SqueezeExcite, activation

__all__ = [
    "ElasticBatchNorm",
    "ElasticDepthwise",
    "ElasticMBConv",
    "ElasticPointwise",
    "ElasticSE",
    "middle_width",
    "se_width",
]


def middle_width(c_in: int, expand: float) -> int:
    """Expanded width of a block (the C++ evaluator's rule): ``c_in`` itself when e = 1."""
    if float(expand) == 1.0:
        return c_in
    return make_divisible(round(c_in * float(expand)), 8)


def se_width(mid: int) -> int:
    return make_divisible(mid // 4, 8)


def _present(t: torch.Tensor | None) -> torch.Tensor:
    """``t``, which the layer's construction guarantees (a bias built with ``bias=True``,
    BatchNorm statistics tracked): for type checkers, and a clear error otherwise."""
    if t is None:
        raise RuntimeError("an elastic layer lost a parameter or buffer it was built with")
    return t


def _batchnorm(m: nn.Module) -> nn.BatchNorm2d:
    """The BatchNorm of a layer built with one (``ConvBNAct(use_bn=True)``)."""
    if not isinstance(m, nn.BatchNorm2d):
        raise TypeError(f"expected a BatchNorm2d, got {type(m).__name__}")
    return m


def _assign(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    """Replace a parameter or buffer of ``module`` by a detached copy of ``value``."""
    value = _present(value).detach().clone()
    if name in module._parameters:
        old = module._parameters[name]
        module._parameters[name] = nn.Parameter(value, requires_grad=True if old is None else old.requires_grad)
    else:
        module._buffers[name] = value


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first ``x.shape[1]`` channels (statistics updated in place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            tracked = _present(self.num_batches_tracked)
            tracked.add_(1)
            factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or not self.track_running_stats
        # Slices of the contiguous buffers are views: batch_norm updates the prefix in place.
        return F.batch_norm(
            x,
            _present(self.running_mean)[:c] if self.track_running_stats else None,
            _present(self.running_var)[:c] if self.track_running_stats else None,
            _present(self.weight)[:c],
            _present(self.bias)[:c],
            use_batch_stats,
            factor,
            self.eps,
        )

    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        """Give ``bn`` (possibly built on the meta device) copies of the first channels."""
        c = bn.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            _assign(bn, name, getattr(self, name)[:c])
        _assign(bn, "num_batches_tracked", self.num_batches_tracked)
        bn.eps, bn.momentum = self.eps, self.momentum


class ElasticPointwise(nn.Module):
    """1x1 conv without bias whose input and output widths can shrink to a prefix."""

    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        return F.conv2d(x, self.weight[:c_out, : x.shape[1]])


class ElasticDepthwise(nn.Module):
    """Depthwise conv with elastic kernel (centre crop + learned transformation) and width."""

    def __init__(self, max_channels: int, kernels: tuple[int, ...], stride: int):
        super().__init__()
        self.kernels = tuple(sorted(kernels))
        self.max_kernel = self.kernels[-1]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        # One matrix per step down the kernel list, shared by all channels (OFA's mode 1).
        self.transforms = nn.ParameterDict(
            {
                f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                for big, small in zip(self.kernels[1:], self.kernels[:-1])
            }
        )

    def active_weight(self, kernel: int, channels: int) -> torch.Tensor:
        if kernel not in self.kernels:
            raise ValueError(f"kernel must be one of {list(self.kernels)}, got {kernel!r}")
        w = self.weight[:channels]
        for big, small in zip(reversed(self.kernels[1:]), reversed(self.kernels[:-1])):
            if big <= kernel:
                break
            lo = (big - small) // 2
            centre = w[:, :, lo : lo + small, lo : lo + small].reshape(channels, small * small)
            w = F.linear(centre, self.transforms[f"{big}to{small}"]).reshape(channels, 1, small, small)
        return w

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.active_weight(kernel, c), None, self.stride, kernel // 2, 1, c)


class ElasticSE(nn.Module):
    """Squeeze-excite whose widths follow the active middle width."""

    def __init__(self, max_channels: int):
        super().__init__()
        self.max_mid = se_width(max_channels)
        self.reduce = nn.Conv2d(max_channels, self.max_mid, 1, bias=True)
        self.expand = nn.Conv2d(self.max_mid, max_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        m = se_width(c)
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, self.reduce.weight[:m, :c], _present(self.reduce.bias)[:m]))
        y = F.hardsigmoid(F.conv2d(y, self.expand.weight[:c, :m], _present(self.expand.bias)[:c]))
        return x * y

    def copy_to(self, se: SqueezeExcite) -> None:
        c, m = se.reduce.in_channels, se.reduce.out_channels
        _assign(se.reduce, "weight", self.reduce.weight[:m, :c])
        _assign(se.reduce, "bias", _present(self.reduce.bias)[:m])
        _assign(se.expand, "weight", self.expand.weight[:c, :m])
        _assign(se.expand, "bias", _present(self.expand.bias)[:c])


class ElasticMBConv(nn.Module):
    """MBConv block with elastic kernel and expand ratio; fixed input/output widths and stride."""

    def __init__(self, c_in: int, c_out: int, kernels, expands, stride: int, act: str, se: bool):
        super().__init__()
        self.c_in, self.c_out, self.stride, self.act_name = c_in, c_out, stride, act
        self.kernels = tuple(sorted(kernels))
        self.expands = tuple(sorted(float(e) for e in expands))
        self.max_mid = max(middle_width(c_in, e) for e in self.expands)
        # No expansion layer at all when every choice is e = 1.
        self.has_expand = any(e != 1.0 for e in self.expands)
        if self.has_expand:
            self.expand_conv = ElasticPointwise(c_in, self.max_mid)
            self.expand_bn = ElasticBatchNorm(self.max_mid)
        self.depthwise = ElasticDepthwise(self.max_mid, self.kernels, stride)
        self.depthwise_bn = ElasticBatchNorm(self.max_mid)
        self.se = ElasticSE(self.max_mid) if se else None
        self.project_conv = ElasticPointwise(self.max_mid, c_out)
        self.project_bn = ElasticBatchNorm(c_out)
        self.act = activation(act)
        self.identity_shortcut = stride == 1 and c_in == c_out
        self.active_kernel = self.kernels[-1]
        self.active_expand = self.expands[-1]

    def set_active(self, kernel: int, expand: float) -> None:
        if kernel not in self.kernels:
            raise ValueError(f"kernel must be one of {list(self.kernels)}, got {kernel!r}")
        if float(expand) not in self.expands:
            raise ValueError(f"expand must be one of {list(self.expands)}, got {expand!r}")
        self.active_kernel, self.active_expand = int(kernel), float(expand)

    @property
    def active_mid(self) -> int:
        return middle_width(self.c_in, self.active_expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.active_mid
        y = x
        if self.active_expand != 1.0:
            y = self.act(self.expand_bn(self.expand_conv(y, mid)))
        y = self.act(self.depthwise_bn(self.depthwise(y, self.active_kernel)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y, self.c_out))
        return y + x if self.identity_shortcut else y

    @torch.no_grad()
    def extract(self) -> MBConv:
        """The active block as a plain :class:`MBConv` with copied weights."""
        mid, k = self.active_mid, self.active_kernel
        # Built on the meta device (no random init to pay for), then given copies of the active slices.
        meta = torch.device("meta")
        expand: nn.Module = nn.Identity()
        if self.active_expand != 1.0:
            expand_layer = ConvBNAct(self.c_in, mid, 1, act=self.act_name, device=meta)
            _assign(expand_layer.conv, "weight", self.expand_conv.weight[:mid, : self.c_in])
            self.expand_bn.copy_to(_batchnorm(expand_layer.bn))
            expand = expand_layer
        depthwise = ConvBNAct(mid, mid, k, self.stride, groups=mid, act=self.act_name, device=meta)
        _assign(depthwise.conv, "weight", self.depthwise.active_weight(k, mid))
        self.depthwise_bn.copy_to(_batchnorm(depthwise.bn))
        se: nn.Module = nn.Identity()
        if self.se is not None:
            se_layer = SqueezeExcite(mid, se_width(mid), device=meta)
            self.se.copy_to(se_layer)
            se = se_layer
        project = ConvBNAct(mid, self.c_out, 1, device=meta)
        _assign(project.conv, "weight", self.project_conv.weight[:, :mid])
        self.project_bn.copy_to(_batchnorm(project.bn))
        return MBConv(expand, depthwise, se, project, self.identity_shortcut)

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorder the middle channels by importance (OFA's ``re_organize_middle_weights``).

        ``expand_stage`` > 0 keeps the channel groups of the ``expand_stage`` narrower widths
        already trained in earlier phases in front: importance is ranked within each group.
        Only blocks with an expansion layer are sorted: at e = 1 the depthwise layer runs on
        the block input, whose channel order is fixed.
        """
        if not self.has_expand:
            return
        importance = self.project_conv.weight.abs().sum(dim=(0, 2, 3)).clone()
        if expand_stage > 0:
            widths = sorted({middle_width(self.c_in, e) for e in self.expands}, reverse=True)
            right, base = len(importance), -len(widths) * 1e5
            for left in widths[1 : expand_stage + 1]:
                importance[left:right] += base
                base += 1e5
                right = left
        order = torch.argsort(importance, descending=True, stable=True)
        self.expand_conv.weight.copy_(self.expand_conv.weight[order])
        for bn in (self.expand_bn, self.depthwise_bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                _present(t).copy_(_present(t)[order])
        self.depthwise.weight.copy_(self.depthwise.weight[order])
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        if self.se is not None:
            self.se.reduce.weight.copy_(self.se.reduce.weight[:, order])
            self.se.expand.weight.copy_(self.se.expand.weight[order])
            _present(self.se.expand.bias).copy_(_present(self.se.expand.bias)[order])
            se_importance = self.se.expand.weight.abs().sum(dim=(0, 2, 3))
            se_order = torch.argsort(se_importance, descending=True, stable=True)
            self.se.reduce.weight.copy_(self.se.reduce.weight[se_order])
            _present(self.se.reduce.bias).copy_(_present(self.se.reduce.bias)[se_order])
            self.se.expand.weight.copy_(self.se.expand.weight[:, se_order])
