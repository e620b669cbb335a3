"""A stride far beyond the input (2**40 .. 2**64) leaves one window on its axis: the fast paths give what
the loops give, with no C-integer overflow in numpy's strided views."""

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops, pool_backward_loops, pool_forward_loops

HUGE = [2**40, 2**60, 2**63, 2**64 + 1, 10**30]


@pytest.mark.parametrize("huge", HUGE)
@pytest.mark.parametrize("other", [1, 2])  # the width's stride: several windows there
@pytest.mark.parametrize("groups", [1, 4])  # 4: depthwise
def test_conv_with_a_huge_stride_matches_the_loops(huge, other, groups):
    rng = np.random.default_rng(huge % 97 + other)
    A = rng.standard_normal((2, 5, 7, 4))
    W = rng.standard_normal((3, 3, 4 // groups, 8))
    b = rng.standard_normal(8)
    p = ConvParams(stride=(huge, other), pad=1, groups=groups)
    Z = conv2d(A, W, b, p)
    loops_params = ConvParams(stride=(huge, other), pad=1)
    if groups == 1:
        np.testing.assert_allclose(Z, conv_forward_loops(A, W, b, loops_params), rtol=1e-12, atol=1e-12)
    assert Z.shape == (2, 1, 4 if other == 2 else 7, 8)
    dZ = rng.standard_normal(Z.shape)
    dA, dW, db = conv2d_backward(dZ, A, W, p)
    if groups == 1:
        for got, want in zip((dA, dW, db), conv_backward_loops(dZ, A, W, loops_params)):
            np.testing.assert_allclose(got, np.reshape(want, got.shape), rtol=1e-12, atol=1e-12)
    # the same as stride 1 on that axis, restricted to its one output row
    same = conv2d(A, W, b, ConvParams(stride=(1, other), pad=1, groups=groups))[:, :1]
    np.testing.assert_allclose(Z, same, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("huge", HUGE)
@pytest.mark.parametrize("mode", ["max", "average"])
def test_pool_with_a_huge_stride_matches_the_loops(huge, mode):
    rng = np.random.default_rng(huge % 89)
    A = rng.standard_normal((2, 5, 7, 3))
    p = PoolParams(f=2, stride=(2, huge), mode=mode)
    P = pool2d(A, p)
    np.testing.assert_allclose(P, pool_forward_loops(A, p), rtol=1e-12, atol=1e-12)
    assert P.shape == (2, 2, 1, 3)
    dP = rng.standard_normal(P.shape)
    np.testing.assert_allclose(pool2d_backward(dP, A, p), pool_backward_loops(dP, A, p), rtol=1e-12, atol=1e-12)
