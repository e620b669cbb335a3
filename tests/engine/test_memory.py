"""The unrolled-patch workspace is bounded by chunking the batch (tracemalloc sees numpy's buffers)."""

import tracemalloc

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward

MB = 2**20


def _peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, 16, 16, 8))  # 1 MiB
    W = rng.standard_normal((3, 3, 8, 8))
    return A, W


def test_conv_forward_workspace_is_bounded(arrays):
    A, W = arrays
    p = ConvParams(pad=1)
    unrolled = A.size * 9 * 8  # bytes of the whole batch's patches: 9 MiB
    small = _peak(lambda: conv2d(A, W, None, p, workspace_bytes=256 * 1024))
    whole = _peak(lambda: conv2d(A, W, None, p, workspace_bytes=1 << 40))
    assert whole > unrolled  # without a cap the whole batch is unrolled at once...
    assert small < 2.5 * MB  # ...with one, only the output (1 MiB) and a chunk's workspace


def test_conv_backward_workspace_is_bounded(arrays):
    A, W = arrays
    p = ConvParams(pad=1)
    dZ = np.ones((64, 16, 16, 8))
    peak = _peak(lambda: conv2d_backward(dZ, A, W, p, workspace_bytes=256 * 1024))
    assert peak < 3.5 * MB  # dA_prev (1 MiB), dW, db and a chunk's workspace; unrolled would be 9 MiB


def test_pool_workspace_is_bounded(arrays):
    A, _ = arrays
    p = PoolParams(f=3, stride=1, pad=1)
    assert _peak(lambda: pool2d(A, p, workspace_bytes=256 * 1024)) < 2.5 * MB
    dA = np.ones((64, 16, 16, 8))
    assert _peak(lambda: pool2d_backward(dA, A, p, workspace_bytes=256 * 1024)) < 3.5 * MB
