"""Independent checks for the plug-in tests: peak memory from the layer-by-layer oracle
(tests/oracle.py, no code shared with the C++ evaluator) and predicted top-1 from a float64
numpy forward of the predictor's weights on the published one-hot encoding."""

from __future__ import annotations

import numpy as np
import oracle
from search_helpers import mlp_forward, one_hot

import moofa


def _config(net, space) -> dict:
    sp = moofa.get_space(space)
    if isinstance(net, np.ndarray):
        net = moofa.decode(net.reshape(1, -1), sp)[0]
    return moofa.Subnet.from_dict(net, sp).validate(sp).to_dict()


def peak(net, space, memory_model: str = "full") -> int:
    """The oracle's peak (items) under "full" or "activations"."""
    c = _config(net, space)
    sp = moofa.get_space(space)
    return oracle.evaluate(sp, c["ks"], c["e"], c["d"], c["image_size"], activations_only=memory_model != "full")[
        "peak"
    ]


def top1(nets, space, predictor=None) -> np.ndarray:
    """float64 forward of a moofa predictor's MLP (+ linear skip) on the one-hot encoding."""
    pred = moofa.load_predictor(predictor or space)
    return mlp_forward(pred, one_hot([_config(n, space) for n in nets], space))
