"""The C++ description of a space and the layout of its compact encoding.

``core.SpaceSpec`` owns the encoding: its column offsets, the stage of every slot, the
row checks and the one-hot size. Python code reads the layout from here instead of
spelling column arithmetic by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._ext import core
from .spaces import Space


@functools.lru_cache(maxsize=64)
def spec(space: Space):
    """The C++ description of a space (cached)."""
    return core.SpaceSpec(
        stages=[
            core.StageSpec(
                width=s.width, stride=s.stride, se=s.se, max_depth=s.max_depth, hard_swish=s.act == "h_swish"
            )
            for s in space.stages
        ],
        kernels=list(space.kernels),
        expands=list(space.expands),
        depths=list(space.depths),
        resolutions=list(space.resolutions),
        in_channels=space.in_channels,
        first_conv_width=space.first_conv_width,
        first_conv_kernel=space.first_conv_kernel,
        first_conv_stride=space.first_conv_stride,
        first_block_width=space.first_block_width,
        final_expand_width=space.final_expand_width,
        feature_mix_width=space.feature_mix_width,
        n_classes=space.n_classes,
        expand_by_depth=[]
        if not space.expand_by_depth
        else [space.expands.index(space.expand_by_depth[d]) for d in space.depths],
        name=space.name,
        first_conv_hard_swish=space.first_conv_act == "h_swish",
        first_block_hard_swish=space.first_block_act == "h_swish",
        head_hard_swish=space.head_act == "h_swish",
    )


@dataclass(frozen=True)
class Columns:
    """Where each field lives in an encoded row (from ``core.SpaceSpec.column_offsets``)."""

    resolution: int
    depth: slice
    kernel: slice
    expand: slice
    n: int
    slot_stage: tuple[int, ...]

    @property
    def slot_depth_column(self) -> np.ndarray:
        """Column of the depth of every slot's stage."""
        return self.depth.start + np.asarray(self.slot_stage, dtype=np.intp)


@functools.lru_cache(maxsize=64)
def columns(space: Space) -> Columns:
    sp = spec(space)
    o = sp.column_offsets
    return Columns(
        resolution=o["resolution"],
        depth=slice(o["depth"], o["kernel"]),
        kernel=slice(o["kernel"], o["expand"]),
        expand=slice(o["expand"], o["end"]),
        n=o["end"],
        slot_stage=tuple(sp.slot_stage),
    )
