"""float32 3x3 convolutions at stride 1 by Winograd's F(2x2, 3x3), with the ``[fast]`` extra (numba).

A 3x3 correlation is GEMM-bound: im2col's product already runs at OpenBLAS's sgemm rate, which is
below the direct-convolution kernels PyTorch's float32 uses (oneDNN). Winograd's minimal filtering
computes each 2x2 block of outputs from the 4x4 input tile around it with 16 multiplications per
input and output channel pair instead of 36: the layer becomes 16 products of (tiles, C) by (C, K),
2.25x fewer multiply-adds, between an input transform (``V = B^T d B`` per tile) and an output
transform (``A^T m A``), both compiled (:mod:`._jit_kernels`: numpy would make ~60 passes per
chunk). The weights' transform ``U = G g G^T`` is computed in float64 and rounded once.

The transforms only add and subtract, with at most four terms, and G's entries are 0, 1 and 1/2,
so float32's error stays that of a direct sum (the tests compare with the float64 loop oracle as
tightly as they do the im2col path). Two things a direct sum does not do are excluded: turning an
infinity into NaN (``inf - inf`` inside a transform), and overflowing in an intermediate when the
result would not. A chunk whose input holds a NaN, an infinity or a value large enough for either
is computed by the im2col path instead; so are the weights' (all calls). Float64 keeps im2col:
it is already faster than PyTorch's, and its last bits stay those of the direct sums.
"""

from __future__ import annotations

import numpy as np

from ._common import plan_chunks
from ._unroll import correlate, run_shares, share_chunks

# G of F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

#: Largest float32 power of two below its maximum (2**128 overflows).
_TOP = 2.0**126


def applies(kernel, stride, dilation, groups: int, dtype) -> bool:
    """Whether a convolution is one the transforms compute: 3x3, stride 1, no dilation, one group, float32."""
    return (tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and np.dtype(dtype) == np.float32)


def correlate3x3(X, Wc, out, top: int, left: int, bias, workspace_bytes, kernels) -> None:
    """``out[n, y, x, k] = sum_{a, b, c} X[n, y + a - top, x + b - left, c] Wc[a, b, c, k] (+ bias[k])``.

    Parameters
    ----------
    X : ndarray, shape (m, H, W, C), float32
        Zero outside its bounds (``top`` and ``left`` may be negative: rows skipped).
    Wc : ndarray, shape (3, 3, C, K), float32
    out : ndarray, shape (m, n_H, n_W, K), float32, C-contiguous
        Written whole.
    bias : ndarray, shape (K,), or None
    workspace_bytes : int or None
        As the engine's: a chunk's transformed tiles stay under it.
    kernels : tuple
        The compiled transforms, from :func:`._jit.winograd_kernels`.
    """
    tiles_of, blocks_of = kernels[:2]
    m, n_H, n_W, K = out.shape
    C = X.shape[3]
    X = np.ascontiguousarray(X)
    bias32 = np.zeros(K, np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    offs = [a - top for a in range(3)], [b - left for b in range(3)]
    w_top = float(np.abs(Wc).max(initial=0.0))
    if not np.isfinite(w_top) or 2.25 * w_top >= _TOP:  # U would hold an infinity, or overflow
        correlate(X, Wc.reshape(1, 9 * C, K), out, (1, 1), *offs, workspace_bytes, bias)
        return
    U = np.einsum("ai,ijck,bj->abck", _G, Wc.astype(np.float64), _G).reshape(16, C, K).astype(np.float32)
    # |V| <= 4 max|X|, |U| <= 2.25 max|W|, each product's sum over C and the output transform's nine
    # terms: |anything| <= 81 C max|X| max|W|, kept under 2**126 (float32's maximum is near 2**128).
    bound = _TOP / (81.0 * C * max(w_top, 2.0**-126))
    n_ty, n_tx = -(-n_H // 2), -(-n_W // 2)
    chunks = plan_chunks(m, n_ty, n_tx * 16 * (C + K) * 4, workspace_bytes)
    shares = share_chunks(chunks)

    def work(share):
        most = max((e1 - e0) * (r1 - r0) for e0, e1, r0, r1 in share) * n_tx
        V_buf, M_buf = np.empty(16 * most * C, np.float32), np.empty(16 * most * K, np.float32)
        unsafe = []
        for e0, e1, r0, r1 in share:
            T = (e1 - e0) * (r1 - r0) * n_tx
            V, M = V_buf[:16 * T * C].reshape(16, T, C), M_buf[:16 * T * K].reshape(16, T, K)
            if not tiles_of(X, V, e0, e1, r0, r1, top, left, n_tx) <= bound:
                unsafe.append((e0, e1, r0, r1))
                continue
            np.matmul(V, U, out=M)
            blocks_of(M, out, bias32, e0, e1, r0, r1, n_tx)
        return unsafe

    for share in run_shares(work, shares):
        for e0, e1, r0, r1 in share:  # rare: NaN, infinities or huge values in these rows' input
            y0, y1 = 2 * r0, min(n_H, 2 * r1)
            correlate(X[e0:e1], Wc.reshape(1, 9 * C, K), out[e0:e1, y0:y1], (1, 1), [o + y0 for o in offs[0]],
                      offs[1], workspace_bytes, bias)


def weight_grad3x3(X, dZ, top: int, left: int, workspace_bytes, kernels):
    """dW of :func:`correlate3x3`'s convolution, ``sum_{n, y, x} X[n, y + a - top, x + b - left, c] dZ[n, y, x, k]``
    by the transposed transforms: ``dW = G^T (sum over tiles of V * Zt) G``, Zt each 2x2 block of dZ
    transformed (``A g A^T``).

    Parameters
    ----------
    X : ndarray, shape (m, H, W, C), float32
    dZ : ndarray, shape (m, n_H, n_W, K), float32
    kernels : tuple
        As :func:`correlate3x3`'s.

    Returns
    -------
    dW : ndarray, shape (3, 3, C, K), float32, or None
        None when X or dZ holds a NaN or an infinity, or values large enough for the sums to overflow
        where a direct sum would not: the caller then computes dW another way.
    """
    tiles_of, grads_of = kernels[0], kernels[2]
    m, n_H, n_W, K = dZ.shape
    C = X.shape[3]
    X, dZ = np.ascontiguousarray(X), np.ascontiguousarray(dZ)
    n_ty, n_tx = -(-n_H // 2), -(-n_W // 2)
    chunks = plan_chunks(m, n_ty, n_tx * 16 * (C + K) * 4, workspace_bytes)
    shares = share_chunks(chunks)

    def work(share):
        most = max((e1 - e0) * (r1 - r0) for e0, e1, r0, r1 in share) * n_tx
        V_buf, Z_buf = np.empty(16 * most * C, np.float32), np.empty(16 * most * K, np.float32)
        part, total = np.empty((16, C, K), np.float32), np.zeros((16, C, K), np.float32)
        x_top = g_top = 0.0
        for e0, e1, r0, r1 in share:
            T = (e1 - e0) * (r1 - r0) * n_tx
            V, Zt = V_buf[:16 * T * C].reshape(16, T, C), Z_buf[:16 * T * K].reshape(16, T, K)
            x_top = max(x_top, tiles_of(X, V, e0, e1, r0, r1, top, left, n_tx))
            g_top = max(g_top, grads_of(dZ, Zt, e0, e1, r0, r1, n_tx))
            if not x_top * g_top < _TOP:  # NaN or infinite: the sums would be too
                return None
            np.matmul(V.transpose(0, 2, 1), Zt, out=part)
            total += part
        return total, x_top, g_top

    results = run_shares(work, shares)
    if any(r is None for r in results):
        return None
    x_top, g_top = max(r[1] for r in results), max(r[2] for r in results)
    # |V| <= 4 max|X|, |Zt| <= 4 max|dZ|, summed over every tile, and G^T . G's nine terms of at most
    # a quarter each... kept under 2**126 with room: 16 * 9 per tile.
    if not x_top * g_top * 144.0 * m * n_ty * n_tx < _TOP:
        return None
    dU = sum(r[0].astype(np.float64) for r in results).reshape(4, 4, C, K)
    return np.einsum("ia,ijck,jb->abck", _G, dU, _G).astype(np.float32)
