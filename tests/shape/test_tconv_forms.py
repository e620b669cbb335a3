"""Transposed-convolution arithmetic against independent derivations (small sizes, hypothesis)."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from cnncli.engine import geometry as geo
from cnncli.shape import design
from cnncli.shape.solve import MAX_SOLUTIONS, tconv_axis

small = st.integers(1, 6)


@given(st.integers(1, 20), small, small, small, st.integers(0, 8), st.integers(0, 8), st.integers(0, 5))
def test_tconv_size_inverts_the_conv_size(n, f, s, d, before, after, op):
    # A transposed convolution is the adjoint of the convolution with the same f, stride, dilation and
    # pads: that convolution takes the tconv's output size back to n (output_padding < stride picks
    # one of the stride's sizes that all map to n).
    assume(op < s)
    n_out = design.tconv_output_length(n, f, s, d, before, after, op)
    assume(n_out >= 1 and n_out + before + after >= geo.effective_size(f, d))
    assert geo.output_length(n_out, f, s, d, before, after) == n


@given(st.integers(1, 20), small, small, small)
def test_tconv_size_is_the_scatter_extent(n, f, s, d):
    # Scatter every input pixel's dilated window stride apart: the result spans the last tap + 1.
    extent = max(i * s + k * d for i in range(n) for k in range(f)) + 1
    assert design.tconv_output_length(n, f, s, d, 0, 0, 0) == extent


@given(st.integers(1, 12), small, small, small, st.integers(1, 80))
def test_tconv_axis_is_every_padding_and_output_padding_that_works(n, f, s, d, target):
    brute = [(p, op) for p in range(d * (f - 1) + 1) for op in range(max(s, d))
             if design.tconv_output_length(n, f, s, d, p, p, op) == target]
    assert tconv_axis(n, f, s, d, target) == brute[:MAX_SOLUTIONS + 1]
