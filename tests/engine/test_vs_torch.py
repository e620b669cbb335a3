"""Optional: the engine against PyTorch CPU on random configurations.

Skipped where torch is not installed (it is never a dependency of cnncli or its
tests); developers with torch get a second, independent oracle. PyTorch pads
symmetrically only, so explicit asymmetric pads are applied with F.pad first.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward
from cnncli.errors import HyperparameterError

from .strategies import conv_configs, pool_configs

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(x):
    return torch.tensor(np.ascontiguousarray(x), dtype=torch.float64, requires_grad=True)


@settings(max_examples=60)
@given(conv_configs(), st.integers(0, 2**16))
def test_conv_vs_torch(cfg, seed):
    a_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    A, W, b = rng.standard_normal(a_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[3])
    p = ConvParams(**kw)
    geom = p.geometry(a_shape[1:3], w_shape[:2])
    Z = conv2d(A, W, b, p)
    At, Wt, bt = _t(A.transpose(0, 3, 1, 2)), _t(W.transpose(3, 2, 0, 1)), _t(b)
    t, bo, l, r = geom.pads
    Zt = F.conv2d(F.pad(At, (l, r, t, bo)), Wt, bt, stride=p.stride, dilation=p.dilation, groups=p.groups)
    np.testing.assert_allclose(Z, Zt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-10)
    G = rng.standard_normal(Z.shape)
    (Zt * _t(G.transpose(0, 3, 1, 2)).detach()).sum().backward()
    dA, dW, db = conv2d_backward(G, A, W, p)
    np.testing.assert_allclose(dA, At.grad.numpy().transpose(0, 2, 3, 1), atol=1e-10)
    np.testing.assert_allclose(dW, Wt.grad.numpy().transpose(2, 3, 1, 0), atol=1e-10)
    np.testing.assert_allclose(db, bt.grad.numpy(), atol=1e-10)


@settings(max_examples=80)
@given(pool_configs(symmetric=True), st.integers(0, 2**16))
def test_pool_vs_torch(cfg, seed):
    a_shape, kw = cfg
    p = PoolParams(**kw)
    try:
        geom = p.geometry(a_shape[1:3])
    except HyperparameterError:
        assume(False)
    t, bo, l, r = geom.pads
    # torch takes one symmetric pad per axis, at most half the window, and no dilation for avg.
    assume(t == bo and l == r and t <= p.f[0] // 2 and l <= p.f[1] // 2)
    assume(p.mode == "max" or p.dilation == (1, 1))
    A = np.random.default_rng(seed).integers(-3, 4, a_shape).astype(np.float64)  # ties included
    At = _t(A.transpose(0, 3, 1, 2))
    if p.mode == "max":
        out_t = F.max_pool2d(At, p.f, p.stride, (t, l), p.dilation, ceil_mode=p.ceil_mode)
    else:
        out_t = F.avg_pool2d(At, p.f, p.stride, (t, l), ceil_mode=p.ceil_mode, count_include_pad=p.count_include_pad)
    out = pool2d(A, p)
    np.testing.assert_allclose(out, out_t.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
    G = np.random.default_rng(seed + 1).standard_normal(out.shape)
    (out_t * _t(G.transpose(0, 3, 1, 2)).detach()).sum().backward()
    np.testing.assert_allclose(pool2d_backward(G, A, p), At.grad.numpy().transpose(0, 2, 3, 1), atol=1e-12)
