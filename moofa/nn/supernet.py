"""The elastic supernet of any :class:`moofa.Space`, its subnets, and its own weight format."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import torch
from torch import nn

from .._io import atomic_write, atomic_write_text
from ..spaces import Space, get_space
from ..subnet import Subnet, decode, random_subnets
from .elastic import ElasticMBConv
from .layers import Classifier, ConvBNAct, FeatureMix, MBConv, SubnetModel

__all__ = ["WEIGHTS_FORMAT", "Supernet", "build_static_stem", "check_same_space"]

WEIGHTS_FORMAT = "moofa-supernet-v1"


def build_static_stem(space: Space) -> tuple[ConvBNAct, MBConv]:
    """First conv and first block (e = 1, k = 3, stride 1): fixed in every subnet."""
    c0, c1 = space.first_conv_width, space.first_block_width
    first_conv = ConvBNAct(
        space.in_channels, c0, space.first_conv_kernel, space.first_conv_stride, act=space.first_conv_act
    )
    depthwise = ConvBNAct(c0, c0, 3, 1, groups=c0, act=space.first_block_act)
    block = MBConv(nn.Identity(), depthwise, nn.Identity(), ConvBNAct(c0, c1, 1), identity_shortcut=c0 == c1)
    return first_conv, block


class Supernet(nn.Module):
    """Weight-sharing supernet of ``space`` (a name or a :class:`moofa.Space`).

    Elastic kernel, expand, depth and resolution; ``set_active_subnet(net)`` picks the
    subnet that ``forward`` runs (the input's size is the resolution), ``extract(net)``
    returns it as a plain :class:`~moofa.nn.layers.SubnetModel` with copied weights.
    ``n_classes`` defaults to the space's; ``dropout`` is applied before the classifier.
    """

    def __init__(
        self,
        space: str | Space = "moofa",
        n_classes: int | None = None,
        dropout: float = 0.1,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        sp = get_space(space)
        if n_classes is not None:
            if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
                raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
            sp = sp.with_classes(n_classes)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.space = sp
        self.first_conv, self.first_block = build_static_stem(sp)
        blocks: list[ElasticMBConv] = []
        c_in = sp.first_block_width
        self.stage_slots: list[list[int]] = []
        for stage in sp.stages:
            slots = []
            for j in range(stage.max_depth):
                slots.append(len(blocks))
                blocks.append(
                    ElasticMBConv(
                        c_in,
                        stage.width,
                        sp.kernels,
                        sp.expands,
                        stage.stride if j == 0 else 1,
                        stage.act,
                        stage.se,
                    )
                )
                c_in = stage.width
            self.stage_slots.append(slots)
        self.blocks = nn.ModuleList(blocks)
        self.final_expand = ConvBNAct(c_in, sp.final_expand_width, 1, act=sp.head_act)
        last = sp.final_expand_width
        if sp.feature_mix_width:
            self.feature_mix: nn.Module = FeatureMix(last, sp.feature_mix_width, sp.head_act)
            last = sp.feature_mix_width
        else:
            self.feature_mix = nn.Identity()
        self.classifier = Classifier(last, sp.n_classes, dropout)
        self._init_weights(bn_momentum, bn_eps)
        self.active = self.largest_subnet()
        self.set_active_subnet(self.active)

    # --- construction -------------------------------------------------------------------
    def _init_weights(self, bn_momentum: float, bn_eps: float) -> None:
        # He (fan-out) init as in OFA; the elastic layers initialise their own weights.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.momentum, m.eps = bn_momentum, bn_eps
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.size(1))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    # --- subnets --------------------------------------------------------------------------
    def largest_subnet(self, image_size: int | None = None) -> Subnet:
        sp = self.space
        d = [max(sp.depths)] * sp.n_stages
        e = [max(sp.expands)] * sp.n_slots
        if sp.expand_by_depth:
            e = [sp.expand_by_depth[max(sp.depths)]] * sp.n_slots
        return Subnet(ks=[max(sp.kernels)] * sp.n_slots, e=e, d=d, image_size=image_size or max(sp.resolutions))

    def smallest_subnet(self) -> Subnet:
        sp = self.space
        e = [min(sp.expands)] * sp.n_slots
        if sp.expand_by_depth:
            e = [sp.expand_by_depth[min(sp.depths)]] * sp.n_slots
        return Subnet(
            ks=[min(sp.kernels)] * sp.n_slots,
            e=e,
            d=[min(sp.depths)] * sp.n_stages,
            image_size=min(sp.resolutions),
        )

    def _check(self, net) -> Subnet:
        if isinstance(net, np.ndarray):
            nets = decode(net, self.space)
            if len(nets) != 1:
                raise ValueError(f"expected one encoded subnet, got {len(nets)} rows")
            return nets[0]
        return Subnet.from_dict(net).validate(self.space)

    def set_active_subnet(self, net) -> Subnet:
        """Make ``net`` (a Subnet, an OFA-style dict or one encoded row) the subnet ``forward`` runs."""
        net = self._check(net)
        for slot, block in enumerate(self.elastic_blocks):
            block.set_active(net.ks[slot], net.e[slot])
        self.active = net
        return net

    def sample_active_subnet(self, rng=None, *, kernels=None, expands=None, depths=None, resolutions=None) -> Subnet:
        """Sample a subnet uniformly (optionally restricted to some choices) and activate it.

        ``rng``: a ``numpy.random.Generator``, a seed, or None. Restrictions are lists of
        allowed values (a subset of the space's); a space that couples expand to depth
        (CompOFA) keeps the coupling.
        """
        sp = self.space
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        ks = _subset("kernels", kernels, sp.kernels)
        es = _subset("expands", expands, sp.expands)
        ds = _subset("depths", depths, sp.depths)
        rs = _subset("resolutions", resolutions, sp.resolutions)
        d = [int(ds[i]) for i in rng.integers(0, len(ds), sp.n_stages)]
        k = [int(ks[i]) for i in rng.integers(0, len(ks), sp.n_slots)]
        if sp.expand_by_depth:
            stage_of = sp.slot_stage()
            e = [sp.expand_by_depth[d[stage_of[j]]] for j in range(sp.n_slots)]
        else:
            e = [float(es[i]) for i in rng.integers(0, len(es), sp.n_slots)]
        size = int(rs[int(rng.integers(0, len(rs)))])
        return self.set_active_subnet(Subnet(ks=k, e=e, d=d, image_size=size))

    def random_subnets(self, n: int, seed: int | None = None) -> list[Subnet]:
        return decode(random_subnets(n, self.space, seed), self.space)

    # --- forward ----------------------------------------------------------------------------
    @property
    def elastic_blocks(self) -> list[ElasticMBConv]:
        """Every block slot, in order (``self.blocks`` typed for what it holds)."""
        return cast("list[ElasticMBConv]", list(self.blocks))

    def active_blocks(self) -> list[ElasticMBConv]:
        blocks = self.elastic_blocks
        return [blocks[slot] for slots, d in zip(self.stage_slots, self.active.d) for slot in slots[:d]]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.first_conv(x))
        for block in self.active_blocks():
            x = block(x)
        x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True))
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.space.in_channels:
            raise ValueError(
                f"input must have shape (batch, {self.space.in_channels}, height, width), got {tuple(x.shape)}"
            )
        return self.classifier(self.features(x))

    # --- extraction -------------------------------------------------------------------------
    def extract(self, net=None) -> SubnetModel:
        """A standalone :class:`SubnetModel` of ``net`` (default: the active subnet) with copied
        weights and BN statistics; its eval-mode output equals this supernet's active forward."""
        if net is not None:
            previous = self.active
            self.set_active_subnet(net)
        try:
            blocks = [b.extract() for b in self.active_blocks()]
            model = SubnetModel(
                _clone(self.first_conv),
                _clone(self.first_block),
                blocks,
                _clone(self.final_expand),
                _clone(self.feature_mix),
                _clone(self.classifier),
                config=self.active.to_dict(),
                space_name=self.space.name,
            )
        finally:
            if net is not None:
                self.set_active_subnet(previous)
        return model.train(self.training)

    def recalibrated(self, net, batches: Iterable, max_batches: int | None = None) -> SubnetModel:
        """Extract ``net`` and recompute its BatchNorm statistics on ``batches`` (images or
        (images, labels)); the supernet itself is untouched. Returns the subnet in eval mode."""
        from .calibrate import recalibrate_bn

        model = self.extract(net)
        recalibrate_bn(model, batches, max_batches=max_batches)
        return model

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorder every block's middle channels by importance (before the elastic-expand phases)."""
        for block in self.elastic_blocks:
            block.sort_channels(expand_stage)

    # --- moofa's own weight format: .npz (arrays) + .json (space and metadata) ---------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.npz`` and ``<path>.json`` atomically; returns the .npz path."""
        base = _strip_suffix(Path(path))
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        meta = {
            "format": WEIGHTS_FORMAT,
            "space": self.space.to_dict(),
            "dropout": float(self.classifier.dropout.p),
            "tensors": sorted(arrays),
        }
        npz = base.with_suffix(".npz")
        atomic_write(npz, lambda f: np.savez(f, **arrays))
        atomic_write_text(base.with_suffix(".json"), json.dumps(meta, indent=1))
        return npz

    @classmethod
    def load(cls, path: str | os.PathLike, space: str | Space | None = None) -> Supernet:
        """Load weights written by :meth:`save`. If ``space`` is given it must match the file's."""
        base = _strip_suffix(Path(path))
        meta_path, npz_path = base.with_suffix(".json"), base.with_suffix(".npz")
        for p in (meta_path, npz_path):
            if not p.is_file():
                raise ValueError(f"supernet weights: {p} does not exist (expected {base}.npz and {base}.json)")
        try:
            meta = json.loads(meta_path.read_text())
            file_space = Space.from_dict(meta["space"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"supernet weights: {meta_path} is not a moofa supernet description: {exc}") from None
        if meta.get("format") != WEIGHTS_FORMAT:
            raise ValueError(
                f"supernet weights: {meta_path} has format {meta.get('format')!r}, expected {WEIGHTS_FORMAT!r}"
            )
        if space is not None:
            check_same_space(get_space(space), file_space, f"supernet weights {npz_path}")
        net = cls(file_space, dropout=meta.get("dropout", 0.1))
        try:
            with open(npz_path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
                state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
        except Exception as exc:  # zip or npy errors of a damaged file
            raise ValueError(f"supernet weights: {npz_path} is corrupt or unreadable: {exc}") from None
        net.load_state_dict_checked(state, source=str(npz_path))
        return net

    @classmethod
    def from_ofa(
        cls, checkpoint: str | os.PathLike | dict, space: str | Space | None = None, dropout: float = 0.1
    ) -> Supernet:
        """A supernet with the weights of one of OFA's published MobileNetV3 supernets.

        ``checkpoint``: a path to an ``ofa_mbv3_d234_e346_k357_w1.0`` or ``..._w1.2`` file
        (read with ``torch.load(weights_only=True)``), its ``{"state_dict": ...}`` dict or the
        state dict itself. w1.0 maps to space ``ofa``, w1.2 to ``ofa-w1.2`` (``.space`` says
        which); ``space`` picks one explicitly. The class count follows the classifier in the
        file. ValueError naming every missing, unexpected or misshapen tensor (OFA's own loader
        would silently keep initial values for missing ones). See :mod:`moofa.nn.ofa`.
        """
        from .ofa import from_ofa

        return from_ofa(cls, checkpoint, space=space, dropout=dropout)

    def load_state_dict_checked(self, state: dict, source: str = "state dict") -> None:
        """``load_state_dict`` with an error naming what does not fit (another space, usually)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
        if missing or unexpected or shapes:
            detail = "; ".join(
                part
                for part in (
                    f"missing {missing[:3]}" if missing else "",
                    f"unexpected {unexpected[:3]}" if unexpected else "",
                    f"shape of {shapes[0]} is {tuple(state[shapes[0]].shape)}, expected {tuple(own[shapes[0]].shape)}"
                    if shapes
                    else "",
                )
                if part
            )
            raise ValueError(
                f"{source} does not fit a supernet of space {self.space.name!r} "
                f"(was it saved for another space?): {detail}"
            )
        self.load_state_dict(state)


def check_same_space(expected: Space, found: Space, where: str) -> None:
    """ValueError naming the first field in which two spaces differ."""
    a, b = expected.to_dict(), found.to_dict()
    diff = [k for k in a if k != "name" and a.get(k) != b.get(k)]
    if diff:
        raise ValueError(
            f"{where} is for space {found.name!r}, which differs from space {expected.name!r} "
            f"in {diff[0]}: {b.get(diff[0])!r} vs {a.get(diff[0])!r}"
        )


def _subset(field: str, values, allowed: tuple) -> tuple:
    if values is None:
        return allowed
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise ValueError(f"{field} must be a non-empty subset of {list(allowed)}, got {list(values)}")
    return values


_M = TypeVar("_M", bound=nn.Module)


def _clone(module: _M) -> _M:
    import copy

    return copy.deepcopy(module)


def _strip_suffix(path: Path) -> Path:
    return path.with_suffix("") if path.suffix in (".npz", ".json") else path
