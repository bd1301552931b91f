"""Independent, deliberately plain re-implementation of the memory/FLOPs/params rules.

It walks the network layer by layer (no lookup tables, no shared code with moofa's
C++ evaluator) and serves as the oracle for random configs of user-defined spaces.
Only the space's *fields* (widths, strides, choice lists) are read from moofa.
"""

from __future__ import annotations

import math


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _out_size(f: int, stride: int) -> int:
    return (f - 1) // stride + 1


def evaluate(space, ks, e, d, image_size, *, activations_only=False):
    """Return dict(peak, hist, mflops, params, avg, std) for one config, computed layer by
    layer with Python ints (exact at any size); avg and std from exact integer moments."""
    w = 0 if activations_only else 1
    c_in = getattr(space, "in_channels", 3)
    hist: list[int] = []
    flops = 0
    params = 0

    # first conv
    f_in = image_size
    f = (image_size + 1) // 2 if space.first_conv_stride == 2 else _out_size(image_size, space.first_conv_stride)
    c0 = space.first_conv_width
    k0 = space.first_conv_kernel
    hist.append(c_in * f_in * f_in + c0 * f * f + w * c_in * c0 * k0 * k0)
    flops += f * f * c_in * c0 * k0 * k0
    params += c_in * c0 * k0 * k0 + 2 * c0
    cin = c0

    def block(cin, cout, k, ratio, stride, se, f):
        nonlocal flops, params
        if ratio == 1:
            mid = cin
        else:
            mid = make_divisible(round(cin * ratio), 8)
        fo = _out_size(f, stride)
        residual = stride == 1 and cin == cout
        layers = []
        if ratio != 1:
            layers.append(cin * f * f + mid * f * f + w * cin * mid)
            flops += f * f * cin * mid
            params += cin * mid + 2 * mid
        dw = mid * f * f + mid * fo * fo + w * mid * k * k
        if residual:
            dw += cin * f * f
        layers.append(dw)
        flops += fo * fo * mid * k * k
        params += mid * k * k + 2 * mid
        if se:
            se_mid = make_divisible(mid // 4, 8)
            flops += 2 * mid * se_mid
            params += 2 * mid * se_mid + mid + se_mid
        layers.append(mid * fo * fo + cout * fo * fo + w * mid * cout)
        flops += fo * fo * mid * cout
        params += mid * cout + 2 * cout
        return layers, fo

    layers, f = block(cin, space.first_block_width, 3, 1, 1, False, f)
    hist.extend(layers)
    cin = space.first_block_width

    slot = 0
    for stage_idx, stage in enumerate(space.stages):
        for j in range(stage.max_depth):
            if j < d[stage_idx]:
                stride = stage.stride if j == 0 else 1
                layers, f = block(cin, stage.width, ks[slot], e[slot], stride, stage.se, f)
                hist.extend(layers)
                cin = stage.width
            slot += 1

    fe = space.final_expand_width
    hist.append(cin * f * f + fe * f * f + w * cin * fe)
    flops += f * f * cin * fe
    params += cin * fe + 2 * fe
    fm = space.feature_mix_width
    if fm:
        flops += fe * fm
        params += fe * fm
        last = fm
    else:
        last = fe
    flops += last * space.n_classes
    params += last * space.n_classes + space.n_classes

    n, total = len(hist), sum(hist)
    mean = total / n  # correctly rounded
    # population variance = (n * sum(h^2) - sum(h)^2) / n^2, the numerator an exact int
    std = math.sqrt(n * sum(h * h for h in hist) - total * total) / n
    return {"peak": max(hist), "hist": hist, "mflops": flops / 1e6, "params": params, "avg": mean, "std": std}
