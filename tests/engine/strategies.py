"""Hypothesis strategies for conv and pool configurations that fit.

Sizes are drawn after the window and the padding, from the range where a
window fits, so almost no example is thrown away.
"""

from __future__ import annotations

from hypothesis import strategies as st

pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731


@st.composite
def pads_within(draw, limit_h: int, limit_w: int, symmetric: bool = False):
    """A pad spec in any accepted form whose sides stay within (limit_h, limit_w)."""
    forms = ["int", "pair", "valid", "same"] + ([] if symmetric else ["four"])
    form = draw(st.sampled_from(forms))
    if form == "int":
        return draw(st.integers(0, min(limit_h, limit_w)))
    if form == "pair":
        return (draw(st.integers(0, limit_h)), draw(st.integers(0, limit_w)))
    if form == "four":
        return tuple(draw(st.integers(0, lim)) for lim in (limit_h, limit_h, limit_w, limit_w))
    return form


def _sides(pad):
    """(top+bottom, left+right) of an explicit pad; 'same' and 'valid' need none to fit."""
    if pad in ("same", "valid"):
        return 0, 0
    if isinstance(pad, int):
        return 2 * pad, 2 * pad
    if len(pad) == 2:
        return 2 * pad[0], 2 * pad[1]
    return pad[0] + pad[1], pad[2] + pad[3]


def _size(draw, eff: int, padding: int, max_hw: int) -> int:
    lo = max(1, eff - padding)
    return draw(st.integers(lo, max(lo, max_hw)))


@st.composite
def conv_configs(draw, max_hw=9):
    """(A_prev shape, W shape, params kwargs) for a random convolution that fits."""
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c_g, n_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel, stride, dilation = draw(pair(1, 4)), draw(pair(1, 3)), draw(pair(1, 2))
    pad = draw(pads_within(2, 2))
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    ph, pw = _sides(pad)
    shape = (draw(st.integers(1, 3)), _size(draw, eff[0], ph, max_hw), _size(draw, eff[1], pw, max_hw), c_g * groups)
    return shape, (kernel[0], kernel[1], c_g, n_g * groups), dict(stride=stride, pad=pad, dilation=dilation,
                                                                  groups=groups)


@st.composite
def depthwise_configs(draw):
    """A depthwise convolution (one input channel per group), with channel multiplier."""
    C, mult = draw(st.integers(2, 4)), draw(st.integers(1, 2))
    kernel, stride, dilation = draw(pair(1, 3)), draw(pair(1, 2)), draw(pair(1, 2))
    pad = draw(pads_within(2, 2))
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    ph, pw = _sides(pad)
    shape = (draw(st.integers(1, 3)), _size(draw, eff[0], ph, 8), _size(draw, eff[1], pw, 8), C)
    return shape, (kernel[0], kernel[1], 1, C * mult), dict(stride=stride, pad=pad, dilation=dilation, groups=C)


@st.composite
def pool_configs(draw, max_hw=9, large_pads=False, symmetric=False):
    """(A_prev shape, params kwargs) for a random pooling.

    Pads stay within half the dilated window (PyTorch's own limit, so every window
    sees input); ``large_pads`` lets them reach one less than the window, where
    the engine may refuse a window lying entirely in padding (callers catch that).
    """
    f, dilation = draw(pair(1, 4)), draw(pair(1, 2))
    eff = [d * (k - 1) + 1 for k, d in zip(f, dilation)]
    limits = [e - 1 if large_pads else e // 2 for e in eff]
    pad = draw(pads_within(*limits, symmetric=symmetric))
    ph, pw = _sides(pad)
    shape = (draw(st.integers(1, 3)), _size(draw, eff[0], ph, max_hw), _size(draw, eff[1], pw, max_hw),
             draw(st.integers(1, 3)))
    return shape, dict(f=f, stride=draw(st.one_of(st.none(), pair(1, 3))), pad=pad, dilation=dilation,
                       mode=draw(st.sampled_from(["max", "average", "avg"])), ceil_mode=draw(st.booleans()),
                       count_include_pad=draw(st.booleans()))
