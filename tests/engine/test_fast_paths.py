"""The engine's speed paths against the loop oracle, on layers big enough to take them.

The hypothesis tests draw tiny layers, which the engine serves with its
simplest path (fewest Python steps). These fixed, medium-sized layers cross the
thresholds of the others: patch copies split over threads, whole runs of taps
copied or added at once, dA_prev
phase by phase, row-block chunks under a small workspace, depthwise and pooling
chunks shared out over threads, and the fallback on non-finite input.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward
from cnncli.engine._unroll import unroll_adjoint_part, unroll_adjoint_planar, unroll_part
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops, pool_backward_loops, pool_forward_loops

TOL = {np.float64: 1e-10, np.float32: 2e-4}

CONV = {
    # name: (A_prev shape, W shape, params, workspace_bytes)
    "3x3-same": ((2, 22, 22, 8), (3, 3, 8, 8), dict(pad=1), None),
    "3x3-row-blocks": ((2, 22, 22, 8), (3, 3, 8, 8), dict(pad=(2, 0, 1, 1)), 20_000),
    "stem-7x7-stride2": ((2, 40, 38, 3), (7, 7, 3, 16), dict(stride=2, pad=3), None),
    # Outputs wider than the 7 taps x 3 channels: col2im from tap-major patch gradients (one chunk, row
    # blocks of one example, whole-example chunks that the worker threads take whole).
    "stem-7x7-wide": ((2, 30, 70, 3), (7, 7, 3, 16), dict(stride=2, pad=3), None),
    "stem-7x7-wide-row-blocks": ((2, 30, 70, 3), (7, 7, 3, 16), dict(stride=2, pad=(3, 2, 3, 1)), 40_000),
    "stem-7x7-wide-example-chunks": ((8, 14, 70, 3), (7, 7, 3, 16), dict(stride=2, pad=3), 7 * 35 * 147 * 8),
    "3x3-stride2": ((3, 30, 29, 8), (3, 3, 8, 8), dict(stride=2, pad=1), None),  # not tiny: phase by phase
    "grouped-dilated": ((2, 24, 24, 8), (3, 2, 4, 8), dict(groups=2, dilation=(2, 1), pad=(1, 2, 0, 1)), None),
    # Whole-example chunks, enough of them for the worker threads to take whole chunks each (one BLAS
    # thread): forward, dW and the col2im input gradient of a widening layer.
    "3x3-example-chunks": ((8, 12, 12, 8), (3, 3, 8, 32), dict(pad=1), 12 * 12 * 72 * 8),
    "3x3-widen2": ((2, 22, 22, 8), (3, 3, 8, 16), dict(pad=1), None),  # twice the channels: still transposed
    "pointwise": ((2, 20, 20, 16), (1, 1, 16, 32), dict(), None),
    "depthwise": ((2, 24, 24, 16), (3, 3, 1, 16), dict(groups=16, pad=1), 100_000),
    "depthwise-mult2-stride2": ((2, 24, 24, 8), (3, 3, 1, 16), dict(groups=8, pad="same", stride=2), 100_000),
}


def _close(got, want, dtype, name):
    assert got.dtype == dtype and got.shape == want.shape, name
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=name)


# float32 on a few representative paths keeps the suite fast.
RUNS = [(name, np.float64) for name in CONV] + [(name, np.float32) for name in ("3x3-same", "stem-7x7-stride2", "depthwise",
                                                                               "3x3-example-chunks", "stem-7x7-wide")]


@pytest.mark.parametrize("name, dtype", RUNS)
def test_conv_paths_match_loops(name, dtype):
    a_shape, w_shape, kw, workspace = CONV[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    A = rng.standard_normal(a_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    p = ConvParams(**kw)
    Z = conv2d(A, W, b, p, workspace_bytes=workspace)
    _close(Z, conv_forward_loops(A, W, b, p).astype(dtype), dtype, "Z")
    dZ = rng.standard_normal(Z.shape).astype(dtype)
    got = conv2d_backward(dZ, A, W, p, workspace_bytes=workspace)
    for label, g, w in zip(("dA_prev", "dW", "db"), got, conv_backward_loops(dZ, A, W, p)):
        _close(g, w.astype(dtype), dtype, label)


def test_conv_backward_non_finite_input_matches_loops():
    # inf and nan propagate exactly as in the loops: products of zero padding never meet them.
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2, 22, 22, 8))
    A[1, 21, 21, 3] = np.inf
    A[0, 0, 5, 0] = np.nan
    W = rng.standard_normal((3, 3, 8, 8))
    p = ConvParams(pad=(0, 0, 1, 0))
    dZ = rng.standard_normal((2, 20, 21, 8))
    for label, g, w in zip(("dA_prev", "dW", "db"), conv2d_backward(dZ, A, W, p), conv_backward_loops(dZ, A, W, p)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=label)
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=label)
        ok = np.isfinite(w)
        np.testing.assert_allclose(g[ok], w[ok], rtol=1e-10, atol=1e-10, err_msg=label)


def test_non_finite_in_a_later_chunk_leaves_no_half_written_dw():
    # The inf is only in the last chunk (one example per chunk): the chunks before it stay finite.
    rng = np.random.default_rng(4)
    A = rng.standard_normal((3, 22, 22, 8))
    A[2, 3, 4, 5] = np.inf
    W = rng.standard_normal((3, 3, 8, 8))
    p = ConvParams(pad=1)
    dZ = rng.standard_normal((3, 22, 22, 8))
    got = conv2d_backward(dZ, A, W, p, workspace_bytes=22 * 22 * 16 * 8 * 2)
    want = conv_backward_loops(dZ, A, W, p)
    ok = np.isfinite(want[1])
    np.testing.assert_array_equal(np.isfinite(got.dW), ok)
    np.testing.assert_allclose(got.dW[ok], want[1][ok], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name, expected", [
    ("3x3-same", (False, True)),               # stride 1, no widening: transposed dA_prev
    ("stem-7x7-stride2", (False, False)),     # 3 -> 16 channels widen: col2im
    ("3x3-widen2", (False, True)),             # 8 -> 16 at stride 1: the copies still cost less
    ("3x3-example-chunks", (False, False)),    # 8 -> 32: col2im
    ("3x3-stride2", (False, True)),
    ("grouped-dilated", (False, True)),
    ("depthwise", (True, False)),
    ("pointwise", (False, False)),  # and plan.pointwise: nothing unrolled for dW or dA_prev
])
def test_backward_strategy_is_what_the_fixed_layers_exercise(name, expected):
    from cnncli.engine.conv import backward_strategy

    a_shape, w_shape, kw, _ = CONV[name]
    geom = ConvParams(**kw).geometry(a_shape[1:3], w_shape[:2])
    plan = backward_strategy(geom, a_shape, w_shape, 8)
    assert (plan.depthwise, plan.transposed_input_grad) == expected
    assert plan.pointwise == (name == "pointwise")


@pytest.mark.parametrize("name, expected", [
    ("stem-7x7-stride2", False),   # 19 output columns: the NHWC adjoint's runs of 7 taps x 3 channels are longer
    ("stem-7x7-wide", True), ("stem-7x7-wide-row-blocks", True), ("stem-7x7-wide-example-chunks", True),
    ("3x3-example-chunks", False),  # runs of 3 taps x 8 channels against 12 columns
])
def test_col2im_goes_tap_major_where_its_runs_are_longer(name, expected):
    from cnncli.engine._unroll import tap_major_adjoint_pays

    a_shape, w_shape, kw, _ = CONV[name]
    geom = ConvParams(**kw).geometry(a_shape[1:3], w_shape[:2])
    offs_w = [b * geom.dilation[1] - geom.pads[2] for b in range(w_shape[1])]
    assert tap_major_adjoint_pays(1, w_shape[:2], w_shape[2], geom.out_hw[1], geom.stride, offs_w) == expected


def test_col2im_stays_nhwc_for_a_window_of_fewer_taps_than_stride_phases():
    # a 1x1 layer at stride 2: the phase planes would cover 4 pixels per tap value
    from cnncli.engine._unroll import tap_major_adjoint_pays

    assert not tap_major_adjoint_pays(1, (1, 1), 16, 28, (2, 2), [0])
    assert tap_major_adjoint_pays(1, (1, 1), 16, 28, (1, 1), [0])


@pytest.mark.parametrize("name, expected", [("stem-7x7-wide", True), ("stem-7x7-wide-row-blocks", True),
                                            ("stem-7x7-wide-example-chunks", True), ("stem-7x7-stride2", False)])
def test_conv2d_backward_takes_the_tap_major_col2im_where_it_pays(name, expected, monkeypatch):
    import cnncli.engine.conv as conv
    from cnncli.engine import _unroll

    calls = []
    for module in (conv, _unroll):
        real = getattr(module, "unroll_adjoint_planar")
        monkeypatch.setattr(module, "unroll_adjoint_planar",
                            lambda *a, real=real: (calls.append(1), real(*a))[1])
    a_shape, w_shape, kw, workspace = CONV[name]
    rng = np.random.default_rng(6)
    A, W = rng.standard_normal(a_shape), rng.standard_normal(w_shape)
    p = ConvParams(**kw)
    dZ = rng.standard_normal(conv2d(A, W, None, p).shape)
    got = conv2d_backward(dZ, A, W, p, workspace_bytes=workspace)
    assert bool(calls) == expected
    _close(got.dA_prev, conv_backward_loops(dZ, A, W, p)[0], np.float64, name)


def test_tiny_layers_take_the_fewest_steps():
    from cnncli.engine.conv import backward_strategy

    geom = ConvParams(pad=1).geometry((5, 5), (3, 3))
    plan = backward_strategy(geom, (2, 5, 5, 3), (3, 3, 3, 4), 8)
    assert not plan.transposed_input_grad


@pytest.mark.parametrize("kw", [
    dict(f=3, stride=2, pad=1, mode="max", ceil_mode=True),
    dict(f=(2, 3), stride=(1, 2), dilation=(2, 1), mode="max"),
    dict(f=3, stride=2, pad=1, mode="average", ceil_mode=True, count_include_pad=False),
])
def test_pool_paths_match_loops(kw):
    rng = np.random.default_rng(5)
    A = rng.integers(-3, 4, (3, 30, 29, 8)).astype(np.float64)  # many ties: first maximum wins
    p = PoolParams(**kw)
    for workspace in (None, 30_000):
        out = pool2d(A, p, workspace_bytes=workspace)
        _close(out, pool_forward_loops(A, p), np.float64, "A")
        dA = rng.standard_normal(out.shape)
        _close(pool2d_backward(dA, A, p, workspace_bytes=workspace), pool_backward_loops(dA, A, p),
               np.float64, "dA_prev")


def test_one_blas_thread_inside_and_the_count_restored_after():
    from cnncli.engine import _blas

    if not _blas.available():
        pytest.skip("numpy's BLAS is not an OpenBLAS whose thread count can be set")
    get, _ = _blas._find()
    before = get()
    with _blas.single_blas_thread() as ok:
        assert ok and get() == 1
        with _blas.single_blas_thread():
            assert get() == 1
        assert get() == 1  # the inner block does not restore early
    assert get() == before


def _unroll_loops(X, e0, e1, r0, r1, n_W, groups, step, offs_h, offs_w):
    """cols[e, r, x, g, a, b, c] = X[e0+e, (r0+r)*sh + offs_h[a], x*sw + offs_w[b], g*c_g + c], zero outside X."""
    m, H, W, C = X.shape
    c_g = C // groups
    cols = np.zeros((e1 - e0, r1 - r0, n_W, groups, len(offs_h), len(offs_w), c_g), dtype=X.dtype)
    for e in range(e1 - e0):
        for r in range(r1 - r0):
            for x in range(n_W):
                for a, oa in enumerate(offs_h):
                    for b, ob in enumerate(offs_w):
                        y, z = (r0 + r) * step[0] + oa, x * step[1] + ob
                        if 0 <= y < H and 0 <= z < W:
                            cols[e, r, x, :, a, b] = X[e0 + e, y, z].reshape(groups, c_g)
    return cols


@st.composite
def unroll_layouts(draw):
    """A chunk (examples [e0, e1), output rows [r0, r1)) of a correlation: steps, offsets, groups."""
    m, H, W = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    groups, c_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    step = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if draw(st.booleans()):  # evenly spaced, as conv.py makes them
        o_h, o_w = draw(st.integers(-4, 3)), draw(st.integers(-4, 3))
        dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        offs_h = [o_h + a * dh for a in range(draw(st.integers(1, 4)))]
        offs_w = [o_w + b * dw for b in range(draw(st.integers(1, 4)))]
    else:
        offsets = st.lists(st.integers(-4, 6), min_size=1, max_size=4)
        offs_h, offs_w = draw(offsets), draw(offsets)
    n_H, n_W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    e0 = draw(st.integers(0, m - 1))
    e1 = draw(st.integers(e0 + 1, m))
    r0 = draw(st.integers(0, n_H - 1))
    r1 = draw(st.integers(r0 + 1, n_H))
    return (m, H, W, groups, c_g), step, offs_h, offs_w, n_W, (e0, e1, r0, r1)


@settings(max_examples=60)
@given(unroll_layouts())
def test_unroll_part_matches_loops(layout):
    """Every window a chunk reads, framed in zeros or straight from X, evenly spaced taps or not."""
    (m, H, W, groups, c_g), step, offs_h, offs_w, n_W, (e0, e1, r0, r1) = layout
    X = np.random.default_rng(0).standard_normal((m, H, W, groups * c_g))
    cols = np.full((e1 - e0, r1 - r0, n_W, groups, len(offs_h), len(offs_w), c_g), np.nan)
    unroll_part(X, cols, (e0, r0), e0, e1, r0, r1, step, offs_h, offs_w)
    np.testing.assert_array_equal(cols, _unroll_loops(X, e0, e1, r0, r1, n_W, groups, step, offs_h, offs_w))


@settings(max_examples=60)
@given(unroll_layouts())
def test_unroll_adjoint_part_matches_loops(layout):
    """The scatter-add of patch gradients, element by element: overlapping windows add up, the padding drops."""
    (m, H, W, groups, c_g), step, offs_h, offs_w, n_W, (e0, e1, r0, r1) = layout
    rng = np.random.default_rng(1)
    cols = rng.standard_normal((e1 - e0, r1 - r0, n_W, groups, len(offs_h), len(offs_w), c_g))
    start = rng.standard_normal((m, H, W, groups * c_g))
    want = start.copy()
    for e, r, x, g, a, b, c in np.ndindex(*cols.shape):
        y, z = (r0 + r) * step[0] + offs_h[a], x * step[1] + offs_w[b]
        if 0 <= y < H and 0 <= z < W:
            want[e0 + e, y, z, g * c_g + c] += cols[e, r, x, g, a, b, c]
    got = start.copy()
    unroll_adjoint_part(got, cols, e0, e1, step, offs_h, offs_w, r0, r1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=60)
@given(unroll_layouts())
def test_unroll_adjoint_planar_matches_loops(layout):
    """The same scatter-add from tap-major patch gradients (ka, kb, C, examples, rows, columns), one group."""
    (m, H, W, groups, c_g), step, offs_h, offs_w, n_W, (e0, e1, r0, r1) = layout
    C = groups * c_g
    rng = np.random.default_rng(2)
    colsT = rng.standard_normal((len(offs_h), len(offs_w), C, e1 - e0, r1 - r0, n_W))
    start = rng.standard_normal((m, H, W, C))
    want = start.copy()
    for a, b, c, e, r, x in np.ndindex(*colsT.shape):
        y, z = (r0 + r) * step[0] + offs_h[a], x * step[1] + offs_w[b]
        if 0 <= y < H and 0 <= z < W:
            want[e0 + e, y, z, c] += colsT[a, b, c, e, r, x]
    got = start.copy()
    unroll_adjoint_planar(got, colsT, e0, e1, step, offs_h, offs_w, r0, r1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["3x3-same", "stem-7x7-stride2", "pointwise", "depthwise", "grouped-dilated"])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_backward_without_input_grad_gives_the_same_dw_and_db(name, layout):
    """input_grad=False returns no dA_prev and the very dW and db of the whole backward pass."""
    a_shape, w_shape, kw, workspace = CONV[name]
    rng = np.random.default_rng(5)
    A, W = rng.standard_normal(a_shape), rng.standard_normal(w_shape)
    p = ConvParams(**kw)
    dZ = rng.standard_normal(conv2d(A, W, None, p).shape)
    if layout == "nchw":
        A, W, dZ = A.transpose(0, 3, 1, 2), W.transpose(3, 2, 0, 1), dZ.transpose(0, 3, 1, 2)
    whole = conv2d_backward(dZ, A, W, p, layout=layout, workspace_bytes=workspace)
    part = conv2d_backward(dZ, A, W, p, layout=layout, workspace_bytes=workspace, input_grad=False)
    assert part.dA_prev is None
    np.testing.assert_array_equal(part.dW, whole.dW)
    np.testing.assert_array_equal(part.db, whole.db)
    want = conv_backward_loops(*(x.transpose(0, 2, 3, 1) if layout == "nchw" else x for x in (dZ, A)),
                               W.transpose(2, 3, 1, 0) if layout == "nchw" else W, p)
    dW = part.dW.transpose(2, 3, 1, 0) if layout == "nchw" else part.dW
    _close(dW, want[1], np.float64, "dW")


def test_worker_threads_keep_the_callers_floating_point_error_state():
    """A caller that silences overflow gets no warning from the engine's worker threads (numpy's state is
    per thread), and one that raises on it still gets the error."""
    import warnings

    A = np.full((8, 12, 12, 8), 1e200)
    W = np.full((3, 3, 8, 32), 1e200)
    p = ConvParams(pad=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", invalid="ignore"):
            Z = conv2d(A, W, None, p, workspace_bytes=12 * 12 * 72 * 8)  # one chunk per example
    assert np.isinf(Z).all()
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        conv2d(A, W, None, p, workspace_bytes=12 * 12 * 72 * 8)
