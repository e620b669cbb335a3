"""The loop oracle's gradients against central differences computed here, independently."""

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import (
    conv_backward_loops,
    conv_forward_loops,
    pool_backward_loops,
    pool_forward_loops,
)


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        hi = f()
        x[idx] = old - eps
        lo = f()
        x[idx] = old
        g[idx] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("kw, w_shape", [
    (dict(stride=1, pad=0), (3, 3, 2, 3)),
    (dict(stride=2, pad=1), (3, 2, 2, 3)),
    (dict(stride=(2, 1), pad="same", dilation=(1, 2)), (2, 2, 2, 2)),
    (dict(stride=1, pad=(0, 1, 2, 0), groups=2), (2, 2, 1, 4)),
])
def test_conv_loops_gradients(kw, w_shape):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 5, 4, 2))
    W = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[3])
    p = ConvParams(**kw)
    G = rng.standard_normal(conv_forward_loops(A, W, b, p).shape)
    loss = lambda: np.sum(G * conv_forward_loops(A, W, b, p))  # noqa: E731
    dA, dW, db = conv_backward_loops(G, A, W, p)
    np.testing.assert_allclose(dA, numeric_grad(loss, A), atol=1e-6)
    np.testing.assert_allclose(dW, numeric_grad(loss, W), atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(loss, b), atol=1e-6)


@pytest.mark.parametrize("kw", [
    dict(f=2, mode="max"),
    dict(f=3, stride=2, pad=1, mode="max", ceil_mode=True),
    dict(f=2, stride=1, mode="average"),
    dict(f=3, stride=2, pad=1, mode="average", ceil_mode=True, count_include_pad=False),
    dict(f=(2, 3), stride=(1, 2), dilation=(2, 1), mode="average"),
])
def test_pool_loops_gradients(kw):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((2, 5, 6, 2))  # continuous values: no ties, max is differentiable
    p = PoolParams(**kw)
    G = rng.standard_normal(pool_forward_loops(A, p).shape)
    loss = lambda: np.sum(G * pool_forward_loops(A, p))  # noqa: E731
    np.testing.assert_allclose(pool_backward_loops(G, A, p), numeric_grad(loss, A), atol=1e-6)
