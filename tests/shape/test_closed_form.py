"""Closed-form shape arithmetic against its loop twins (tests/shape/loops.py) on small sizes."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from cnncli.engine import geometry as geo
from cnncli.shape import design

from . import loops

small = st.integers(1, 9)


@st.composite
def axes(draw, ceil=False):
    """One axis of a window op: n_in, f, stride, dilation, before, after (all small), ceil mode."""
    n_in, f, s, d = draw(st.integers(1, 30)), draw(small), draw(small), draw(st.integers(1, 12))
    eff = geo.effective_size(f, d)
    before, after = draw(st.integers(0, eff + 2)), draw(st.integers(0, eff + 2))
    return n_in, f, s, d, before, after, draw(st.booleans()) if ceil else False


@given(axes(ceil=True))
def test_axis_sees_input_matches_the_loop(axis):
    n_in, f, s, d, before, after, ceil = axis
    n_out = geo.output_length(n_in, f, s, d, before, after, ceil)
    assume(n_out >= 1)
    assert geo.axis_sees_input(n_in, f, s, d, before, n_out) == loops.axis_sees_input(n_in, f, s, d, before, n_out)


@given(axes(ceil=True))
def test_input_coverage_matches_the_loop(axis):
    n_in, f, s, d, before, after, ceil = axis
    n_out = geo.output_length(n_in, f, s, d, before, after, ceil)
    assume(n_out >= 1)
    assert design.input_coverage(n_in, f, s, d, before, n_out) == loops.input_coverage(n_in, f, s, d, before, n_out)


@given(axes(ceil=True), st.integers(0, 35))
def test_rows_read_below_matches_the_loop(axis, x):
    n_in, f, s, d, before, after, ceil = axis
    n_out = geo.output_length(n_in, f, s, d, before, after, ceil)
    rows = {p * s + k * d - before for p in range(max(n_out, 0)) for k in range(f)}
    assert design.rows_read_below(x, n_in, f, s, d, before, n_out) == len({r for r in rows if 0 <= r < min(x, n_in)})


@given(axes(ceil=True))
def test_cover_padding_matches_the_loop(axis):
    n_in, f, s, d, before, after, ceil = axis
    assume(geo.output_length(n_in, f, s, d, before, after, ceil) >= 1)
    assert design.cover_padding(n_in, f, s, d, before, after, ceil) == \
        loops.cover_padding(n_in, f, s, d, before, after, ceil)


@given(axes(ceil=True), st.integers(1, 40))
def test_solve_pads_matches_the_loop(axis, target):
    n_in, f, s, d, _, _, ceil = axis
    assert design.solve_pads(n_in, f, s, d, target, ceil) == loops.solve_pads(n_in, f, s, d, target, ceil)
    symmetric = [p for p in loops.solve_pads(n_in, f, s, d, target, ceil) if p[0] == p[1]]
    assert list(design.iter_pads(n_in, f, s, d, target, ceil, symmetric=True)) == symmetric


@given(axes(ceil=True), st.booleans())
def test_window_counts_match_the_loop(axis, include_pad):
    n_in, f, s, d, before, after, ceil = axis
    try:
        g = geo.window_geometry((n_in, 3), (f, 1), (s, 1), (d, 1), (before, after, 0, 0), ceil)
    except geo.HyperparameterError:
        assume(False)
    counts, _ = geo.window_counts(g, include_pad)
    assert counts == loops.window_counts_axis(n_in, f, s, d, g.out_hw[0], before, after, include_pad)


@given(st.integers(0, 40), st.integers(1, 50), st.integers(-100, 100), st.integers(-100, 100))
def test_floor_sum_matches_the_sum(n, m, a, b):
    assert geo.floor_sum(n, m, a, b) == sum((a * i + b) // m for i in range(n))


@given(axes(ceil=True), axes(ceil=True), st.booleans())
def test_the_average_pool_divisor_from_the_count_runs_is_the_loop_s(rows, cols, include_pad):
    # the engine's divisor is built from runs of whole windows (a long row's counts are not a list of its length)
    import numpy as np

    from cnncli.engine.pool import _divisor
    (n_h, f_h, s_h, d_h, t, b, ceil), (n_w, f_w, s_w, d_w, left, right, _) = rows, cols
    try:
        g = geo.window_geometry((n_h, n_w), (f_h, f_w), (s_h, s_w), (d_h, d_w), (t, b, left, right), ceil)
    except geo.HyperparameterError:
        assume(False)
    ch = loops.window_counts_axis(n_h, f_h, s_h, d_h, g.out_hw[0], t, b, include_pad)
    cw = loops.window_counts_axis(n_w, f_w, s_w, d_w, g.out_hw[1], left, right, include_pad)
    want = np.array(ch, dtype=float)[:, None] * np.array(cw, dtype=float)[None, :]
    np.testing.assert_array_equal(_divisor(g, include_pad, np.float64)[0, :, :, 0], want)
