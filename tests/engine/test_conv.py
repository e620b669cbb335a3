"""The fast convolution against the loop oracle, over random shapes and hyperparameters."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncli.engine import ConvParams, conv2d, conv2d_backward
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops

from .strategies import conv_configs, depthwise_configs

TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-4)}


def _arrays(a_shape, w_shape, seed, dtype):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal(a_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    return A, W, b


def _check(a_shape, w_shape, kw, seed, dtype, workspace_bytes=None):
    A, W, b = _arrays(a_shape, w_shape, seed, dtype)
    params = ConvParams(**kw)
    Z = conv2d(A, W, b, params, workspace_bytes=workspace_bytes)
    Z_ref = conv_forward_loops(A, W, b, params)
    assert Z.dtype == dtype and Z.shape == Z_ref.shape
    scale = max(1.0, np.abs(Z_ref).max())
    np.testing.assert_allclose(Z, Z_ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)
    dZ = np.random.default_rng(seed + 1).standard_normal(Z.shape).astype(dtype)
    got = conv2d_backward(dZ, A, W, params, workspace_bytes=workspace_bytes)
    want = conv_backward_loops(dZ, A, W, params)
    for name, g, w in zip(("dA_prev", "dW", "db"), got, want):
        assert g.dtype == dtype and g.shape == w.shape, name
        scale = max(1.0, np.abs(w).max())
        np.testing.assert_allclose(g, w, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale, err_msg=name)


@given(conv_configs(), st.integers(0, 2**16), st.sampled_from([np.float64, np.float32]))
def test_conv_matches_loops(cfg, seed, dtype):
    _check(*cfg, seed, dtype)


@given(depthwise_configs(), st.integers(0, 2**16), st.sampled_from([np.float64, np.float32]))
def test_depthwise_matches_loops(cfg, seed, dtype):
    _check(*cfg, seed, dtype)


@settings(max_examples=15)
@given(conv_configs(), st.integers(0, 2**16))
def test_chunked_equals_unchunked(cfg, seed):
    """A tiny workspace forces one example per chunk; results must not change."""
    a_shape, w_shape, kw = cfg
    A, W, b = _arrays(a_shape, w_shape, seed, np.float64)
    p = ConvParams(**kw)
    # BLAS may sum in another order for another matrix size: equal up to rounding.
    np.testing.assert_allclose(conv2d(A, W, b, p, workspace_bytes=1), conv2d(A, W, b, p), rtol=1e-12, atol=1e-12)
    dZ = np.ones(conv2d(A, W, b, p).shape)
    for g1, g2 in zip(conv2d_backward(dZ, A, W, p, workspace_bytes=1), conv2d_backward(dZ, A, W, p)):
        np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-12)


def test_exercise_conv_forward_published_values():
    """The classic exercise's own test call and the values its notebook prints."""
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = conv2d(A_prev, W, b, ConvParams(stride=2, pad=1))
    assert Z.shape == (2, 3, 4, 8)
    assert Z.mean() == pytest.approx(0.5511276474566768, rel=1e-12)
    np.testing.assert_allclose(Z[0, 2, 1], [-2.17796037, 8.07171329, -0.5772704, 3.36286738,
                                            4.48113645, -2.89198428, 10.99288867, 3.03171932], atol=1e-8)


def test_same_padding_stride2_keeps_ceil_size():
    A = np.random.default_rng(0).standard_normal((1, 7, 6, 2))
    W = np.random.default_rng(1).standard_normal((3, 3, 2, 4))
    Z = conv2d(A, W, None, ConvParams(stride=2, pad="same"))
    assert Z.shape == (1, 4, 3, 4)  # ceil(7/2), ceil(6/2)
    np.testing.assert_allclose(Z, conv_forward_loops(A, W, None, ConvParams(stride=2, pad="same")), atol=1e-12)


def test_nchw_layout_matches_transposed_nhwc():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2, 6, 5, 4))
    W = rng.standard_normal((3, 2, 2, 6))  # groups=2: W has 2 input channels per group
    b = rng.standard_normal(6)
    p = ConvParams(stride=(2, 1), pad=(1, 0), groups=2)
    Z = conv2d(A, W, b, p)
    Z_nchw = conv2d(A.transpose(0, 3, 1, 2), W.transpose(3, 2, 0, 1), b, p, layout="nchw")
    np.testing.assert_allclose(Z_nchw, Z.transpose(0, 3, 1, 2), atol=1e-12)
    dZ = rng.standard_normal(Z.shape)
    g = conv2d_backward(dZ, A, W, p)
    gn = conv2d_backward(dZ.transpose(0, 3, 1, 2), A.transpose(0, 3, 1, 2), W.transpose(3, 2, 0, 1), p, layout="nchw")
    np.testing.assert_allclose(gn.dA_prev, g.dA_prev.transpose(0, 3, 1, 2), atol=1e-12)
    np.testing.assert_allclose(gn.dW, g.dW.transpose(3, 2, 0, 1), atol=1e-12)
    np.testing.assert_allclose(gn.db, g.db, atol=1e-12)


def test_integer_inputs_computed_in_float64():
    A = np.arange(32, dtype=np.int32).reshape(1, 4, 4, 2)
    W = np.ones((2, 2, 2, 1), dtype=np.int64)
    Z = conv2d(A, W)
    assert Z.dtype == np.float64
    # Top-left window: pixels (0,0),(0,1),(1,0),(1,1), both channels of arange.
    assert Z[0, 0, 0, 0] == sum([0, 1, 2, 3, 8, 9, 10, 11])


def test_inputs_not_mutated():
    rng = np.random.default_rng(5)
    A, W, b = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 3, 2)), rng.standard_normal(2)
    copies = [x.copy() for x in (A, W, b)]
    Z = conv2d(A, W, b, ConvParams(pad=1))
    dZ = np.ones_like(Z)
    dZ_copy = dZ.copy()
    conv2d_backward(dZ, A, W, ConvParams(pad=1))
    for x, c in zip((A, W, b, dZ), copies + [dZ_copy]):
        np.testing.assert_array_equal(x, c)
