"""moofa's PyTorch side (the ``moofa[torch]`` extra): the elastic supernet of any space,
subnet extraction, BN recalibration, export, and memory measured on real forward passes.

>>> import moofa.nn
>>> sup = moofa.nn.Supernet("moofa", n_classes=1000)
>>> sub = sup.extract(moofa.Subnet(ks=[7]*20, e=[4]*20, d=[4]*5, image_size=224))
>>> moofa.nn.profile_memory(sub, (1, 3, 224, 224)).peak
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError("moofa.nn needs PyTorch: pip install 'moofa[torch]'") from exc

from .calibrate import recalibrate_bn
from .elastic import ElasticMBConv, middle_width
from .export import export
from .layers import MBConv, SubnetModel
from .profile import MemoryProfile, profile_memory
from .supernet import WEIGHTS_FORMAT, Supernet, check_same_space

__all__ = [
    "WEIGHTS_FORMAT",
    "ElasticMBConv",
    "MBConv",
    "MemoryProfile",
    "Supernet",
    "SubnetModel",
    "check_same_space",
    "export",
    "middle_width",
    "profile_memory",
    "recalibrate_bn",
]
