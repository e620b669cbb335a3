"""The unrolled-patch workspace is bounded by chunking the batch (tracemalloc sees numpy's buffers).

The peaks are measured in a fresh process: in the test run's own, the engine's per-thread buffers
may already have grown in earlier tests (and then allocate nothing here) or grow here for a thread
that had none, depending on which thread took which chunk; the whole-batch check failed 2 runs in 8.
"""

import json
import os
import subprocess
import sys

import pytest

MB = 2**20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = """
import json, tracemalloc
import numpy as np
from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward

def peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

rng = np.random.default_rng(0)
A = rng.standard_normal((64, 16, 16, 8))  # 1 MiB
W = rng.standard_normal((3, 3, 8, 8))
dZ = np.ones((64, 16, 16, 8))
p, pp = ConvParams(pad=1), PoolParams(f=3, stride=1, pad=1)
print(json.dumps({
    "conv_small": peak(lambda: conv2d(A, W, None, p, workspace_bytes=256 * 1024)),
    "conv_whole": peak(lambda: conv2d(A, W, None, p, workspace_bytes=1 << 40)),
    "conv_backward": peak(lambda: conv2d_backward(dZ, A, W, p, workspace_bytes=256 * 1024)),
    "pool": peak(lambda: pool2d(A, pp, workspace_bytes=256 * 1024)),
    "pool_backward": peak(lambda: pool2d_backward(dZ, A, pp, workspace_bytes=256 * 1024)),
    "unrolled": A.size * 9 * 8,  # bytes of the whole batch's patches: 9 MiB
    "threads": __import__("cnncli.engine._common", fromlist=["threads"]).threads(),
}))
"""


@pytest.fixture(scope="module")
def peaks():
    res = subprocess.run([sys.executable, "-c", CHILD], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_conv_forward_workspace_is_bounded(peaks):
    # without a cap the batch is unrolled at once, in one chunk per worker thread: at least the part one thread
    # takes is held whole, whether or not the others' overlap it in time (under load they did not)...
    assert peaks["conv_whole"] >= peaks["unrolled"] / peaks["threads"]
    assert peaks["conv_small"] < 2.5 * MB  # ...with one, only the output (1 MiB) and a chunk's workspace


def test_conv_backward_workspace_is_bounded(peaks):
    assert peaks["conv_backward"] < 3.5 * MB  # dA_prev (1 MiB), dW, db and a chunk's workspace; unrolled: 9 MiB


def test_pool_workspace_is_bounded(peaks):
    assert peaks["pool"] < 2.5 * MB
    assert peaks["pool_backward"] < 3.5 * MB
