"""Hypothesis strategies for conv and pool configurations that fit (a window always fits)."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from cnncli.engine.geometry import output_length, normalize_pad, same_pads

pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731

pad_spec = st.one_of(
    st.integers(0, 2),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.tuples(*[st.integers(0, 2)] * 4),
    st.sampled_from(["valid", "same"]),
)


def fits(in_hw, kernel, stride, dilation, pad, ceil_mode=False) -> bool:
    """Independent check that at least one window fits on each axis (for assume())."""
    spec = normalize_pad(pad)
    for axis in (0, 1):
        if spec == "same":
            before, after = same_pads(in_hw[axis], kernel[axis], stride[axis], dilation[axis])
        else:
            before, after = spec[2 * axis], spec[2 * axis + 1]
        if in_hw[axis] + before + after < dilation[axis] * (kernel[axis] - 1) + 1:
            return False
    return True


@st.composite
def conv_configs(draw, max_hw=9):
    """(A_prev shape, W shape, params kwargs) for a random convolution that fits."""
    m = draw(st.integers(1, 3))
    H, Wd = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c_g = draw(st.integers(1, 3))
    n_g = draw(st.integers(1, 3))
    kernel = draw(pair(1, 4))
    stride = draw(pair(1, 3))
    dilation = draw(pair(1, 2))
    pad = draw(pad_spec)
    assume(fits((H, Wd), kernel, stride, dilation, pad))
    return (m, H, Wd, c_g * groups), (kernel[0], kernel[1], c_g, n_g * groups), dict(
        stride=stride, pad=pad, dilation=dilation, groups=groups)


@st.composite
def depthwise_configs(draw):
    """A depthwise convolution (one input channel per group), with channel multiplier."""
    m = draw(st.integers(1, 3))
    H, Wd = draw(st.integers(2, 8)), draw(st.integers(2, 8))
    C = draw(st.integers(2, 4))
    mult = draw(st.integers(1, 2))
    kernel = draw(pair(1, 3))
    stride, dilation, pad = draw(pair(1, 2)), draw(pair(1, 2)), draw(pad_spec)
    assume(fits((H, Wd), kernel, stride, dilation, pad))
    return (m, H, Wd, C), (kernel[0], kernel[1], 1, C * mult), dict(stride=stride, pad=pad, dilation=dilation, groups=C)


@st.composite
def pool_configs(draw, max_hw=9):
    """(A_prev shape, params kwargs) for a random pooling whose windows all see input."""
    m = draw(st.integers(1, 3))
    H, Wd = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    C = draw(st.integers(1, 3))
    f = draw(pair(1, 4))
    stride = draw(st.one_of(st.none(), pair(1, 3)))
    dilation = draw(pair(1, 2))
    pad = draw(pad_spec)
    # Padding of at most half the window keeps every window on real input (PyTorch's own limit).
    spec = normalize_pad(pad)
    if spec != "same":
        eff = (dilation[0] * (f[0] - 1) + 1, dilation[1] * (f[1] - 1) + 1)
        assume(max(spec[:2]) <= eff[0] // 2 and max(spec[2:]) <= eff[1] // 2)
    ceil_mode = draw(st.booleans())
    s = f if stride is None else stride
    assume(fits((H, Wd), f, s, dilation, pad, ceil_mode))
    return (m, H, Wd, C), dict(f=f, stride=stride, pad=pad, dilation=dilation,
                               mode=draw(st.sampled_from(["max", "average", "avg"])),
                               ceil_mode=ceil_mode, count_include_pad=draw(st.booleans()))
