"""Load OFA's published MobileNetV3 supernets (``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2``).

OFA's checkpoints are ``torch.save({"state_dict": ...})`` files of its ``OFAMobileNetV3``
class. They hold the same tensors as a moofa :class:`~moofa.nn.Supernet` of the built-in
spaces ``ofa`` (width multiplier 1.0) and ``ofa-w1.2`` (1.2), under other names:

=====================================================  ==========================================
OFA                                                    moofa
=====================================================  ==========================================
``first_conv.{conv.weight,bn.*}``                      ``first_conv.{conv.weight,bn.*}``
``blocks.0.conv.depth_conv.{conv.weight,bn.*}``        ``first_block.depthwise.{conv.weight,bn.*}``
``blocks.0.conv.point_linear.{conv.weight,bn.*}``      ``first_block.project.{conv.weight,bn.*}``
``blocks.N.conv.inverted_bottleneck.conv.conv.weight`` ``blocks.N-1.expand_conv.weight``
``blocks.N.conv.inverted_bottleneck.bn.bn.*``          ``blocks.N-1.expand_bn.*``
``blocks.N.conv.depth_conv.conv.conv.weight``          ``blocks.N-1.depthwise.weight``
``blocks.N.conv.depth_conv.conv.7to5_matrix``          ``blocks.N-1.depthwise.transforms.7to5``
``blocks.N.conv.depth_conv.bn.bn.*``                   ``blocks.N-1.depthwise_bn.*``
``blocks.N.conv.depth_conv.se.fc.reduce.*``            ``blocks.N-1.se.reduce.*``
``blocks.N.conv.point_linear.conv.conv.weight``        ``blocks.N-1.project_conv.weight``
``blocks.N.conv.point_linear.bn.bn.*``                 ``blocks.N-1.project_bn.*``
``final_expand_layer.*``                               ``final_expand.*``
``feature_mix_layer.conv.weight``                      ``feature_mix.conv.weight``
``classifier.linear.{weight,bias}``                    ``classifier.linear.{weight,bias}``
=====================================================  ==========================================

Older OFA files name blocks ``blocks.N.mobile_inverted_conv.*``; the doubled names of OFA's
dynamic layers (``.bn.bn.``, ``.conv.conv.weight``, ``.linear.linear.``) and their single
forms are interchangeable. Unlike OFA's own loader, which keeps the model's current values
for tensors a file lacks, moofa refuses a file with missing, unexpected or misshapen tensors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..spaces import Space, get_space

__all__ = ["OFA_SPACES", "load_ofa_state_dict", "ofa_key", "ofa_to_moofa_state_dict"]

#: The built-in spaces an OFA MobileNetV3 checkpoint is tried against, in order.
OFA_SPACES = ("ofa", "ofa-w1.2")

# moofa key -> OFA key (the names OFA's OFAMobileNetV3 writes), by pattern.
_ELASTIC = [
    (r"expand_conv\.weight", "conv.inverted_bottleneck.conv.conv.weight"),
    (r"expand_bn\.(\w+)", r"conv.inverted_bottleneck.bn.bn.\1"),
    (r"depthwise\.weight", "conv.depth_conv.conv.conv.weight"),
    (r"depthwise\.transforms\.(\d+to\d+)", r"conv.depth_conv.conv.\1_matrix"),
    (r"depthwise_bn\.(\w+)", r"conv.depth_conv.bn.bn.\1"),
    (r"se\.(reduce|expand)\.(weight|bias)", r"conv.depth_conv.se.fc.\1.\2"),
    (r"project_conv\.weight", "conv.point_linear.conv.conv.weight"),
    (r"project_bn\.(\w+)", r"conv.point_linear.bn.bn.\1"),
]
_STATIC = [
    (r"first_conv\.(.+)", r"first_conv.\1"),
    (r"first_block\.depthwise\.(.+)", r"blocks.0.conv.depth_conv.\1"),
    (r"first_block\.project\.(.+)", r"blocks.0.conv.point_linear.\1"),
    (r"final_expand\.(.+)", r"final_expand_layer.\1"),
    (r"feature_mix\.(.+)", r"feature_mix_layer.\1"),
    (r"classifier\.linear\.(weight|bias)", r"classifier.linear.\1"),
]


def ofa_key(moofa_key: str) -> str:
    """The name OFA's ``OFAMobileNetV3`` gives the tensor moofa calls ``moofa_key``."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", moofa_key)
    if m:
        slot, rest = int(m.group(1)), m.group(2)
        for pattern, repl in _ELASTIC:
            if re.fullmatch(pattern, rest):
                return f"blocks.{slot + 1}." + re.sub(pattern, repl, rest)
    else:
        for pattern, repl in _STATIC:
            if re.fullmatch(pattern, moofa_key):
                return re.sub(pattern, repl, moofa_key)
    raise ValueError(f"moofa key {moofa_key!r} has no OFA counterpart")


def _canonical(key: str) -> str:
    """One name for OFA's spelling variants (what OFA's own loader treats as the same key)."""
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    key = key.replace(".bn.bn.", ".bn.").replace(".conv.conv.weight", ".conv.weight")
    return key.replace(".linear.linear.", ".linear.")


def load_ofa_state_dict(source: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """The state dict of an OFA checkpoint: a path (``torch.load`` with ``weights_only=True``),
    a ``{"state_dict": ...}`` dict or a state dict itself."""
    where = "OFA checkpoint"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = f"OFA checkpoint {path}"
        if not path.is_file():
            raise ValueError(f"{where} does not exist")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file, or one that needs unpickling beyond tensors
            raise ValueError(f"{where} is not a readable PyTorch checkpoint of tensors: {exc}") from None
    if not isinstance(source, Mapping):
        raise TypeError(
            f"{where} must hold a dict (a state dict or {{'state_dict': ...}}), got {type(source).__name__}"
        )
    state = source.get("state_dict", source)
    if not isinstance(state, Mapping):
        raise TypeError(f"{where}: 'state_dict' must be a dict of tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"{where}: the state dict must map names to tensors; not a tensor: {bad[:3]}")
    return dict(state)


def ofa_to_moofa_state_dict(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str = "OFA checkpoint"
) -> dict[str, torch.Tensor]:
    """``state`` (OFA names, any spelling variant) renamed to the keys of ``own`` (a moofa
    supernet's state dict). ValueError naming every missing, unexpected or misshapen tensor
    (OFA's names); a missing ``num_batches_tracked`` counter reads as 0, as in torch."""
    expected = {_canonical(ofa_key(k)): k for k in own}
    found: dict[str, str] = {}
    for k in state:
        c = _canonical(k)
        if c in found:
            raise ValueError(f"{source}: {found[c]!r} and {k!r} name the same tensor")
        found[c] = k
    missing = [c for c in expected if c not in found]
    counters = [c for c in missing if c.endswith(".num_batches_tracked")]
    missing = [ofa_key(expected[c]) for c in missing if c not in counters]
    unexpected = [found[c] for c in found if c not in expected]
    shapes = [
        f"{found[c]}: expected {tuple(own[m].shape)}, got {tuple(state[found[c]].shape)}"
        for c, m in expected.items()
        if c in found and tuple(state[found[c]].shape) != tuple(own[m].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors {_some(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({_some(shapes)})")
    if problems:
        raise ValueError(f"{source} does not fit: " + "; ".join(problems))
    out = {m: state[found[c]] for c, m in expected.items() if c in found}
    for c in counters:
        out[expected[c]] = torch.zeros_like(own[expected[c]])
    return out


def _some(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{', ...' if len(items) > n else ''}]"


def from_ofa(cls, source, space: str | Space | None = None, dropout: float = 0.1):
    """A :class:`~moofa.nn.Supernet` with the weights of an OFA MobileNetV3 checkpoint (see
    :meth:`moofa.nn.Supernet.from_ofa`)."""
    where = f"OFA checkpoint {source}" if isinstance(source, (str, os.PathLike)) else "OFA checkpoint"
    state = load_ofa_state_dict(source)
    classifier = next((state[k] for k in state if _canonical(k) == "classifier.linear.weight"), None)
    n_classes = int(classifier.shape[0]) if classifier is not None and classifier.dim() == 2 else None
    candidates = [get_space(space)] if space is not None else [get_space(n) for n in OFA_SPACES]
    errors = []
    for sp in candidates:
        net = cls(sp, n_classes=n_classes, dropout=dropout)
        try:
            mapped = ofa_to_moofa_state_dict(state, net.state_dict(), f"{where} as space {sp.name!r}")
        except ValueError as exc:
            errors.append(str(exc))
            continue
        net.load_state_dict(mapped)
        return net
    if len(errors) == 1:
        raise ValueError(errors[0])
    # None fits: report the space whose first layer has the file's width (else the first tried).
    first = next((state[k] for k in state if _canonical(k) == "first_conv.conv.weight"), None)
    width = int(first.shape[0]) if first is not None and first.dim() == 4 else None
    pick = next((i for i, sp in enumerate(candidates) if sp.first_conv_width == width), 0)
    names = [sp.name for sp in candidates]
    raise ValueError(f"{where} fits none of the OFA spaces {names} (give space=...); {errors[pick]}")
