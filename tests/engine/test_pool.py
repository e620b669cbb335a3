"""The fast pooling against the loop oracle; ties; padding and ceil-mode semantics."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnncli.engine import PoolParams, pool2d, pool2d_backward
from cnncli.engine.reference import pool_backward_loops, pool_forward_loops
from cnncli.errors import HyperparameterError

from .strategies import pool_configs


def _params(kw):
    params = PoolParams(**kw)
    return params


def _valid_max(a_shape, kw):
    """Max-pool params of a drawn config, the draw skipped when no window fits."""
    params = _params(dict(kw, mode="max"))
    try:
        params.geometry(a_shape[1:3])
    except HyperparameterError:
        assume(False)
    return params


def _check(a_shape, kw, A, dtype, workspace_bytes=None):
    params = _params(kw)
    try:
        params.geometry(a_shape[1:3])
    except HyperparameterError:
        assume(False)
    out = pool2d(A, params, workspace_bytes=workspace_bytes)
    ref = pool_forward_loops(A, params)
    assert out.dtype == dtype and out.shape == ref.shape
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    dA = np.random.default_rng(A.size).standard_normal(out.shape).astype(dtype)
    got = pool2d_backward(dA, A, params, workspace_bytes=workspace_bytes)
    want = pool_backward_loops(dA, A, params)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@given(pool_configs(), st.integers(0, 2**16), st.sampled_from([np.float64, np.float32]))
def test_pool_matches_loops(cfg, seed, dtype):
    a_shape, kw = cfg
    A = np.random.default_rng(seed).standard_normal(a_shape).astype(dtype)
    _check(a_shape, kw, A, dtype)


@given(pool_configs(large_pads=True), st.integers(0, 2**16))
def test_pool_matches_loops_with_large_pads(cfg, seed):
    """Pads beyond PyTorch's half-window limit, wherever every window still sees input."""
    a_shape, kw = cfg
    A = np.random.default_rng(seed).integers(-3, 4, a_shape).astype(np.float64)
    _check(a_shape, kw, A, np.float64)


@given(pool_configs(), st.integers(0, 2**16))
def test_max_pool_ties_first_max_row_major(cfg, seed):
    """Small integer values make ties common; the gradient goes to the first maximum only."""
    a_shape, kw = cfg
    kw = dict(kw, mode="max")
    A = np.random.default_rng(seed).integers(0, 3, a_shape).astype(np.float64)
    _check(a_shape, kw, A, np.float64)


@settings(max_examples=15)
@given(pool_configs(), st.integers(0, 2**16))
def test_pool_chunked_equals_unchunked(cfg, seed):
    a_shape, kw = cfg
    A = np.random.default_rng(seed).integers(0, 4, a_shape).astype(np.float64)
    _check(a_shape, kw, A, np.float64, workspace_bytes=1)


def test_all_equal_window_sends_gradient_once():
    A = np.zeros((1, 2, 2, 1))
    dA_prev = pool2d_backward(np.array([[[[5.0]]]]), A, PoolParams(f=2))
    np.testing.assert_array_equal(dA_prev[0, :, :, 0], [[5.0, 0.0], [0.0, 0.0]])


def test_max_pool_padding_never_wins():
    A = -np.ones((1, 2, 2, 1))
    out = pool2d(A, PoolParams(f=2, stride=1, pad=1))
    assert out.shape == (1, 3, 3, 1)
    assert np.all(out == -1.0)  # zero padding would give 0 at the borders


def test_average_count_include_pad():
    A = np.ones((1, 2, 2, 1))
    incl = pool2d(A, PoolParams(f=2, stride=1, pad=1, mode="average"))
    excl = pool2d(A, PoolParams(f=2, stride=1, pad=1, mode="average", count_include_pad=False))
    # Corner window covers 1 real pixel of 4 positions: 1/4 with padding counted, 1/1 without.
    assert incl[0, 0, 0, 0] == pytest.approx(0.25)
    assert incl[0, 1, 1, 0] == pytest.approx(1.0)
    assert np.allclose(excl, 1.0)


def test_ceil_mode_matches_pytorch_rule():
    # 5 wide, f=2, s=2: floor gives 2 windows, ceil gives 3 (last one overhangs by 1).
    A = np.arange(25.0).reshape(1, 5, 5, 1)
    out = pool2d(A, PoolParams(f=2, ceil_mode=True))
    assert out.shape == (1, 3, 3, 1)
    assert out[0, 2, 2, 0] == 24.0
    avg = pool2d(A, PoolParams(f=2, ceil_mode=True, mode="avg"))
    assert avg[0, 2, 2, 0] == 24.0  # the overhang is not counted in the divisor
    assert avg[0, 0, 2, 0] == pytest.approx((4 + 9) / 2)


def test_exercise_pool_published_values():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A = pool2d(A_prev, PoolParams(f=3, stride=1))
    np.testing.assert_allclose(A[1, 1], [[1.96710175, 0.84616065, 1.27375593],
                                         [1.96710175, 0.84616065, 1.23616403],
                                         [1.62765075, 1.12141771, 1.2245077]], atol=1e-8)
    avg = pool2d(A_prev, PoolParams(f=3, stride=1, mode="average"))
    assert avg[1, 1, 0, 0] == pytest.approx(A_prev[1, 1:4, 0:3, 0].mean())
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    dA = np.random.randn(5, 4, 2, 2)
    dA_prev = pool2d_backward(dA, A_prev, PoolParams(f=2, stride=1))
    np.testing.assert_allclose(dA_prev[1, 1], [[0, 0], [5.05844394, -1.68282702], [0, 0]], atol=1e-8)
    dA_prev = pool2d_backward(dA, A_prev, PoolParams(f=2, stride=1, mode="average"))
    np.testing.assert_allclose(dA_prev[1, 1], [[0.08485462, 0.2787552], [1.26461098, -0.25749373],
                                               [1.17975636, -0.53624893]], atol=1e-8)


def test_nchw_layout():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 5, 6, 3))
    p = PoolParams(f=3, stride=2, pad=1)
    out = pool2d(A, p)
    np.testing.assert_allclose(pool2d(A.transpose(0, 3, 1, 2), p, layout="nchw"), out.transpose(0, 3, 1, 2))
    dA = rng.standard_normal(out.shape)
    np.testing.assert_allclose(pool2d_backward(dA.transpose(0, 3, 1, 2), A.transpose(0, 3, 1, 2), p, layout="nchw"),
                               pool2d_backward(dA, A, p).transpose(0, 3, 1, 2))


@given(pool_configs(), st.integers(0, 2**16))
def test_max_pool_nan_wins_its_window(cfg, seed):
    """A NaN is its window's maximum: forward gives NaN and the gradient goes to the first NaN
    (np.argmax's rule, the loop oracle's), never to a finite element."""
    a_shape, kw = cfg
    kw = dict(kw, mode="max")
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 3, a_shape).astype(np.float64)
    A[rng.random(a_shape) < 0.2] = np.nan
    _check(a_shape, kw, A, np.float64)


@given(pool_configs(), st.integers(0, 2**16), st.sampled_from([np.float64, np.float32]))
def test_max_pool_backward_ties_nans_infs_and_non_finite_gradients(cfg, seed, dtype):
    """The compare-and-select path (phase planes when strided, the winners' gradients by np.add.at)
    against the loops: ties, NaN and +-inf in the input (an all -inf window sends its gradient
    to tap (0, 0), as np.argmax), and inf/NaN in dA, which reach only the windows' winners."""
    a_shape, kw = cfg
    params = _valid_max(a_shape, kw)
    rng = np.random.default_rng(seed)
    A = rng.choice(np.array([0.0, 1.0, 2.0, np.nan, np.inf, -np.inf]), size=a_shape,
                   p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]).astype(dtype)
    out_shape = pool_forward_loops(A, params).shape
    dA = rng.integers(-3, 4, out_shape).astype(dtype)
    if rng.random() < 0.5:
        dA[rng.random(out_shape) < 0.15] = rng.choice([np.inf, -np.inf, np.nan])
    got = pool2d_backward(dA, A, params)
    want = pool_backward_loops(dA, A, params)
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=0)  # small integers: every sum is exact


@given(pool_configs(), st.integers(0, 2**16), st.sampled_from([np.float64, np.float32]))
def test_max_pool_backward_all_minus_inf_windows(cfg, seed, dtype):
    """Mostly -inf input, so that many windows hold nothing above -inf: such a window's gradient
    goes to its tap (0, 0), which drops it where that tap lies in the padding (the loops' argmax
    over the padded window)."""
    a_shape, kw = cfg
    params = _valid_max(a_shape, kw)
    rng = np.random.default_rng(seed)
    A = np.where(rng.random(a_shape) < 0.85, -np.inf, rng.integers(-2, 3, a_shape)).astype(dtype)
    dA = rng.integers(1, 5, pool_forward_loops(A, params).shape).astype(dtype)
    want = pool_backward_loops(dA, A, params)
    np.testing.assert_array_equal(pool2d_backward(dA, A, params), want)
    # one example per chunk: the flat indices are the chunk's, the chunks shared out over the threads
    np.testing.assert_array_equal(pool2d_backward(dA, A, params, workspace_bytes=1), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_backward_of_a_window_of_more_than_255_taps(dtype):
    # 17x17 = 289 taps: their numbers need more than uint8; ties (small integers) make the order matter
    rng = np.random.default_rng(7)
    A = rng.integers(0, 4, (3, 20, 20, 2)).astype(dtype)
    params = PoolParams(f=17, stride=2, pad=8, mode="max")
    dA = rng.integers(1, 5, pool_forward_loops(A, params).shape).astype(dtype)
    np.testing.assert_array_equal(pool2d_backward(dA, A, params), pool_backward_loops(dA, A, params))


def test_max_pool_backward_drops_the_padding_corner_of_an_all_minus_inf_input():
    # 3x3 windows at stride 2 with pad 1 over 5x5: the windows of the first row or column have their
    # tap (0, 0) in the padding and send their gradient nowhere; window (1, 1) sends it to pixel (1, 1).
    A = np.full((1, 5, 5, 1), -np.inf)
    dA = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    got = pool2d_backward(dA, A, PoolParams(f=3, stride=2, pad=1, mode="max"))[0, :, :, 0]
    want = np.zeros((5, 5))
    want[1, 1], want[1, 3], want[3, 1], want[3, 3] = 5.0, 6.0, 8.0, 9.0
    np.testing.assert_array_equal(got, want)
