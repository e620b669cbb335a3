"""Plain loop implementations of every op: the test oracle of the fast engine.

These follow the classic "convolution step by step" exercise line for line,
extended to dilation, groups, asymmetric padding and ceil mode. They are slow by
design and never used outside tests and benchmarks. From the geometry module
come the resolved pads, the output size and (ceil mode) the rows and columns the
last windows reach past the padding; every window position, tap, divisor and
maximum is found here by direct indexing of a padded copy.
"""

from __future__ import annotations

import numpy as np

from .geometry import WindowGeometry
from .params import ConvParams, PoolParams


def _pad(X, top, bottom, left, right, value=0.0):
    """Pad the height and width of every example of X (m, H, W, C) by a constant."""
    return np.pad(X, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="constant", constant_values=value)


def _window(geom: WindowGeometry, h: int, w: int):
    """Start row and column, in padded coordinates, of the window of output (h, w)."""
    return h * geom.stride[0], w * geom.stride[1]


def conv_forward_loops(A_prev, W, b, params: ConvParams):
    """Loop convolution. A_prev (m, H, W, C), W (f, f, C/g, n_C), b (n_C,) -> Z (m, n_H, n_W, n_C)."""
    A_prev = np.asarray(A_prev, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.zeros(W.shape[3]) if b is None else np.asarray(b, dtype=np.float64).reshape(-1)
    m, _, _, n_C_prev = A_prev.shape
    kh, kw, c_g, n_C = W.shape
    n_g = n_C // (n_C_prev // c_g)
    geom = params.geometry(A_prev.shape[1:3], (kh, kw))
    dh, dw = geom.dilation
    A_pad = _pad(A_prev, *geom.pads)
    n_H, n_W = geom.out_hw
    Z = np.zeros((m, n_H, n_W, n_C))
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = _window(geom, h, w)
                for c in range(n_C):
                    g = c // n_g
                    a_slice = A_pad[i, vs:vs + dh * (kh - 1) + 1:dh, hs:hs + dw * (kw - 1) + 1:dw,
                                    g * c_g:(g + 1) * c_g]
                    Z[i, h, w, c] = np.sum(a_slice * W[:, :, :, c]) + b[c]
    return Z


def conv_backward_loops(dZ, A_prev, W, params: ConvParams):
    """Loop convolution gradients -> (dA_prev, dW, db (n_C,))."""
    A_prev = np.asarray(A_prev, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    dZ = np.asarray(dZ, dtype=np.float64)
    m, H, Wd, n_C_prev = A_prev.shape
    kh, kw, c_g, n_C = W.shape
    n_g = n_C // (n_C_prev // c_g)
    geom = params.geometry((H, Wd), (kh, kw))
    dh, dw = geom.dilation
    t, _, l, _ = geom.pads
    A_pad = _pad(A_prev, *geom.pads)
    dA_pad = np.zeros_like(A_pad)
    dW = np.zeros_like(W)
    db = np.zeros(n_C)
    n_H, n_W = geom.out_hw
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = _window(geom, h, w)
                rows = slice(vs, vs + dh * (kh - 1) + 1, dh)
                cols = slice(hs, hs + dw * (kw - 1) + 1, dw)
                for c in range(n_C):
                    g = c // n_g
                    chans = slice(g * c_g, (g + 1) * c_g)
                    dA_pad[i, rows, cols, chans] += W[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += A_pad[i, rows, cols, chans] * dZ[i, h, w, c]
                    db[c] += dZ[i, h, w, c]
    return dA_pad[:, t:t + H, l:l + Wd, :], dW, db


def _pool_setup(A_prev, params: PoolParams):
    A_prev = np.asarray(A_prev, dtype=np.float64)
    geom = params.geometry(A_prev.shape[1:3])
    t, b, l, r = geom.pads
    extra_h, extra_w = geom.overflow  # room for ceil-mode windows that run past the trailing padding
    fill = -np.inf if params.mode == "max" else 0.0
    A_pad = _pad(A_prev, t, b + extra_h, l, r + extra_w, fill)
    return A_prev, geom, A_pad


def _divisor(geom: WindowGeometry, params: PoolParams, vs: int, hs: int) -> int:
    """How many taps of the window at padded (vs, hs) an average divides by."""
    H, W = geom.in_hw
    t, b, l, r = geom.pads
    count = 0
    for p in range(geom.kernel[0]):
        for q in range(geom.kernel[1]):
            y = vs + p * geom.dilation[0] - t  # input coordinates
            x = hs + q * geom.dilation[1] - l
            if params.count_include_pad:
                inside = -t <= y < H + b and -l <= x < W + r
            else:
                inside = 0 <= y < H and 0 <= x < W
            count += inside
    return count


def pool_forward_loops(A_prev, params: PoolParams):
    """Loop pooling. A_prev (m, H, W, C) -> A (m, n_H, n_W, C)."""
    A_prev, geom, A_pad = _pool_setup(A_prev, params)
    (kh, kw), (dh, dw), (n_H, n_W) = geom.kernel, geom.dilation, geom.out_hw
    m, C = A_prev.shape[0], A_prev.shape[3]
    A = np.zeros((m, n_H, n_W, C))
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = _window(geom, h, w)
                for c in range(C):
                    a_slice = A_pad[i, vs:vs + dh * (kh - 1) + 1:dh, hs:hs + dw * (kw - 1) + 1:dw, c]
                    if params.mode == "max":
                        A[i, h, w, c] = np.max(a_slice)
                    else:
                        A[i, h, w, c] = np.sum(a_slice) / _divisor(geom, params, vs, hs)
    return A


def pool_backward_loops(dA, A_prev, params: PoolParams):
    """Loop pooling gradient -> dA_prev (m, H, W, C); max goes to the first maximum, row-major."""
    A_prev, geom, A_pad = _pool_setup(A_prev, params)
    dA = np.asarray(dA, dtype=np.float64)
    (kh, kw), (dh, dw), (n_H, n_W) = geom.kernel, geom.dilation, geom.out_hw
    t, _, l, _ = geom.pads
    m, H, Wd, C = A_prev.shape
    dA_pad = np.zeros_like(A_pad)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = _window(geom, h, w)
                for c in range(C):
                    rows = slice(vs, vs + dh * (kh - 1) + 1, dh)
                    cols = slice(hs, hs + dw * (kw - 1) + 1, dw)
                    if params.mode == "max":
                        a_slice = A_pad[i, rows, cols, c]
                        p, q = np.unravel_index(np.argmax(a_slice), a_slice.shape)  # first max, row-major
                        dA_pad[i, vs + p * dh, hs + q * dw, c] += dA[i, h, w, c]
                    else:
                        dA_pad[i, rows, cols, c] += dA[i, h, w, c] / _divisor(geom, params, vs, hs)
    return dA_pad[:, t:t + H, l:l + Wd, :]
