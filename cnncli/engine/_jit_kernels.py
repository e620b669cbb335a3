"""numba kernels, imported only when numba is installed and a call is worth it (see ``_jit``)."""

import numba
import numpy as np
from numba import types


@numba.njit(inline="always")
def _first_max(pixels, ks, arg):  # pragma: no cover
    """``arg[c]``: the first (in ``ks``'s order) of the pixels ``ks`` holding the maximum of channel c;
    whether any of them is NaN (then the caller searches again: NaN's rule). ``pixels`` is one
    example as (H*W, C); ``ks`` a tuple, so that its length is fixed when this is compiled: the tap
    loop unrolls and the channel loop becomes vector code with the running maximum in registers
    (measured: 3x3 windows 0.75x-0.8x the time of the general loop, which keeps it in memory)."""
    nan = False
    for c in range(pixels.shape[1]):
        b = pixels[ks[0], c]
        k = ks[0]
        seen = False  # a NaN first is kept (nothing is greater than it) and is the first NaN: right
        for j in range(1, len(ks)):
            v = pixels[ks[j], c]
            take = v > b
            k = ks[j] if take else k
            b = v if take else b
            seen |= v != v
        arg[c] = k
        nan |= seen
    return nan


def _max_pool_backward(A, dZ, out, kh, kw, sh, sw, dh, dw, top, left):  # pragma: no cover
    """dA_prev of max pooling into ``out``: each window's gradient to its first maximum in row-major
    order (padding is -inf and never wins). Shapes as ``pool2d_backward``'s, C-contiguous.
    (Compiled by numba; coverage does not see it run. Its oracle tests run it.)"""
    m, H, W, C = A.shape
    n_H, n_W = dZ.shape[1], dZ.shape[2]
    # NOTE: a pixel number into a (m, H*W, C) view: (k // W, k % W) cost two divisions per element,
    # more than the search.
    pixels = out.reshape(m, H * W, C)
    inputs = A.reshape(m, H * W, C)
    best = np.empty(C, A.dtype)
    arg = np.empty(C, np.int64)
    three = kh == 3 and kw == 3
    for n in range(m):
        # Rows of out[n] are zeroed just before the first window that reaches them: still in cache when
        # the window adds into them (float64 at 64 channels: 0.85x the time of zeroing it whole first).
        zeroed = 0
        for oh in range(n_H):
            h0 = oh * sh - top
            # only the taps inside the input (a huge window over a small input has few)
            a0 = 0 if h0 >= 0 else (-h0 + dh - 1) // dh
            a1 = 0 if h0 >= H else min(kh, (H - 1 - h0) // dh + 1)
            reach = min(H, h0 + (kh - 1) * dh + 1)
            while zeroed < reach:
                out[n, zeroed] = 0
                zeroed += 1
            for ow in range(n_W):
                w0 = ow * sw - left
                b0 = 0 if w0 >= 0 else (-w0 + dw - 1) // dw
                b1 = 0 if w0 >= W else min(kw, (W - 1 - w0) // dw + 1)
                grad = dZ[n, oh, ow]
                if three and a0 == 0 and b0 == 0 and a1 == 3 and b1 == 3:
                    # A 3x3 window wholly inside the input, the common case: unrolled (_first_max).
                    k, r = h0 * W + w0, dh * W
                    ks = (k, k + dw, k + 2 * dw, k + r, k + r + dw, k + r + 2 * dw,
                          k + 2 * r, k + 2 * r + dw, k + 2 * r + 2 * dw)
                    if not _first_max(inputs[n], ks, arg):
                        for c in range(C):
                            pixels[n, arg[c], c] += grad[c]
                        continue
                # A window no value beats (all -inf) keeps tap (0, 0), as np.argmax says: its pixel
                # when it is inside the input, else nothing (-1: the gradient goes to the padding).
                first = h0 * W + w0 if h0 >= 0 and w0 >= 0 else -1
                for c in range(C):
                    best[c] = -np.inf
                    arg[c] = first
                # Row-major taps, strictly greater takes over: the first maximum. Selects, not
                # branches, so that the channel loop is vector code.
                nan = False
                for a in range(a0, a1):
                    h = h0 + a * dh
                    for b in range(b0, b1):
                        w = w0 + b * dw
                        k = h * W + w
                        row = A[n, h, w]
                        for c in range(C):
                            v = row[c]
                            bc = best[c]
                            take = v > bc
                            best[c] = v if take else bc
                            arg[c] = k if take else arg[c]
                            nan |= v != v
                if nan:
                    # Rare: a NaN is the window's maximum and the first NaN wins (as np.argmax), a rule
                    # that would slow every window; the window is searched again with it.
                    for c in range(C):
                        best[c] = -np.inf
                        arg[c] = first
                    for a in range(a0, a1):
                        h = h0 + a * dh
                        for b in range(b0, b1):
                            w = w0 + b * dw
                            k = h * W + w
                            for c in range(C):
                                v = A[n, h, w, c]
                                bc = best[c]
                                if (v > bc) | ((v != v) & (bc == bc)):
                                    best[c] = v
                                    arg[c] = k
                for c in range(C):
                    k = arg[c]
                    if k >= 0:
                        pixels[n, k, c] += grad[c]
        while zeroed < H:  # rows no window reaches
            out[n, zeroed] = 0
            zeroed += 1


def max_pool_backward(dtype, cache: bool = True):
    """The kernel for ``dtype`` (float32 or float64), compiled or loaded from numba's disk cache.

    One signature, C-contiguous arrays, the inputs read-only (writable ones match it too): with it
    given, numba never compiles again at a call, in the engine's worker threads. nogil, so those
    threads run their chunks at once.
    """
    t = numba.from_dtype(np.dtype(dtype))
    read = types.Array(t, 4, "C", readonly=True)
    signature = types.void(read, read, types.Array(t, 4, "C"), *([types.int64] * 8))
    return numba.njit(signature, nogil=True, cache=cache, boundscheck=False)(_max_pool_backward)


def _winograd_input(X, V, e0, e1, r0, r1, top, left, ntx):  # pragma: no cover
    """Winograd F(2x2, 3x3)'s input transform of tile rows ``r0:r1`` of examples ``e0:e1`` into V.

    Tile (n, ty, tx) is the 4x4 block of X at rows ``2*ty - top``, columns ``2*tx - left`` (zero
    outside X); it goes to ``V[:, T, :]`` (tiles in row-major order) as ``B^T d B`` flattened
    row-major, ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]``. Returns the
    largest magnitude read, infinite when a value is NaN: with it the caller tells whether the
    transform's sums could overflow, or turn an infinity into NaN, where a direct sum does not.
    (Compiled by numba; its oracle tests run it.)
    """
    m, H, W, C = X.shape
    P = np.empty((4, 4, C), X.dtype)
    t = np.empty((4, 4, C), X.dtype)
    worst = 0.0
    nan = False
    T = 0
    for n in range(e0, e1):
        for ty in range(r0, r1):
            y0 = 2 * ty - top
            for tx in range(ntx):
                x0 = 2 * tx - left
                for i in range(4):
                    y = y0 + i
                    for j in range(4):
                        x = x0 + j
                        if 0 <= y < H and 0 <= x < W:
                            for c in range(C):
                                v = X[n, y, x, c]
                                P[i, j, c] = v
                                a = abs(v)
                                worst = a if a > worst else worst
                                nan |= v != v
                        else:
                            for c in range(C):
                                P[i, j, c] = 0
                for j in range(4):
                    for c in range(C):
                        p0, p1, p2, p3 = P[0, j, c], P[1, j, c], P[2, j, c], P[3, j, c]
                        t[0, j, c] = p0 - p2
                        t[1, j, c] = p1 + p2
                        t[2, j, c] = p2 - p1
                        t[3, j, c] = p1 - p3
                for i in range(4):
                    for c in range(C):
                        q0, q1, q2, q3 = t[i, 0, c], t[i, 1, c], t[i, 2, c], t[i, 3, c]
                        V[4 * i, T, c] = q0 - q2
                        V[4 * i + 1, T, c] = q1 + q2
                        V[4 * i + 2, T, c] = q2 - q1
                        V[4 * i + 3, T, c] = q1 - q3
                T += 1
    return np.inf if nan else worst


def _winograd_gradient(dZ, Zt, e0, e1, r0, r1, ntx):  # pragma: no cover
    """The weight gradient's transform of dZ's 2x2 blocks (tile rows ``r0:r1`` of examples ``e0:e1``,
    zero beyond dZ) into Zt, as V in :func:`_winograd_input`: ``A g A^T`` with A of
    :func:`_winograd_output`, so that ``dU = sum over tiles of V * Zt`` is the gradient of the
    transformed weights. Returns the largest magnitude read, infinite for NaN. (Compiled by numba.)"""
    m, nH, nW, K = dZ.shape
    g = np.zeros((2, 2, K), dZ.dtype)
    z = np.empty((4, 2, K), dZ.dtype)
    worst = 0.0
    nan = False
    T = 0
    for n in range(e0, e1):
        for ty in range(r0, r1):
            for tx in range(ntx):
                for a in range(2):
                    y = 2 * ty + a
                    for b in range(2):
                        x = 2 * tx + b
                        if y < nH and x < nW:
                            for k in range(K):
                                v = dZ[n, y, x, k]
                                g[a, b, k] = v
                                av = abs(v)
                                worst = av if av > worst else worst
                                nan |= v != v
                        else:
                            for k in range(K):
                                g[a, b, k] = 0
                for b in range(2):
                    for k in range(K):
                        g0, g1 = g[0, b, k], g[1, b, k]
                        z[0, b, k] = g0
                        z[1, b, k] = g0 + g1
                        z[2, b, k] = g0 - g1
                        z[3, b, k] = -g1
                for i in range(4):
                    for k in range(K):
                        h0, h1 = z[i, 0, k], z[i, 1, k]
                        Zt[4 * i, T, k] = h0
                        Zt[4 * i + 1, T, k] = h0 + h1
                        Zt[4 * i + 2, T, k] = h0 - h1
                        Zt[4 * i + 3, T, k] = -h1
                T += 1
    return np.inf if nan else worst


def _winograd_output(M, out, bias, e0, e1, r0, r1, ntx):  # pragma: no cover
    """Winograd F(2x2, 3x3)'s output transform: each tile's ``A^T m A + bias`` into its 2x2 block of
    ``out`` (the block's rows and columns beyond ``out`` dropped), ``A^T = [[1, 1, 1, 0], [0, 1, -1,
    -1]]``; M as V in :func:`_winograd_input`, with K channels. (Compiled by numba.)"""
    m, nH, nW, K = out.shape
    r = np.empty((2, 4, K), M.dtype)
    T = 0
    for n in range(e0, e1):
        for ty in range(r0, r1):
            for tx in range(ntx):
                for j in range(4):
                    for k in range(K):
                        a0, a1, a2, a3 = M[j, T, k], M[4 + j, T, k], M[8 + j, T, k], M[12 + j, T, k]
                        r[0, j, k] = a0 + a1 + a2
                        r[1, j, k] = a1 - a2 - a3
                x = 2 * tx
                for a in range(2):
                    y = 2 * ty + a
                    if y >= nH:
                        continue
                    for k in range(K):
                        out[n, y, x, k] = r[a, 0, k] + r[a, 1, k] + r[a, 2, k] + bias[k]
                    if x + 1 < nW:
                        for k in range(K):
                            out[n, y, x + 1, k] = r[a, 1, k] - r[a, 2, k] - r[a, 3, k] + bias[k]
                T += 1


def winograd(dtype, cache: bool = True):
    """(input transform, output transform, gradient transform) of Winograd F(2x2, 3x3) for ``dtype``
    (float32), compiled or loaded from numba's disk cache; one signature each, nogil (as
    :func:`max_pool_backward`)."""
    t = numba.from_dtype(np.dtype(dtype))
    i64 = types.int64
    read4, read3, read1 = (types.Array(t, n, "C", readonly=True) for n in (4, 3, 1))
    options = dict(nogil=True, cache=cache, boundscheck=False)
    tiles = numba.njit(types.float64(read4, types.Array(t, 3, "C"), *([i64] * 7)), **options)(_winograd_input)
    blocks = numba.njit(types.void(read3, types.Array(t, 4, "C"), read1, *([i64] * 5)), **options)(_winograd_output)
    grads = numba.njit(types.float64(read4, types.Array(t, 3, "C"), *([i64] * 5)), **options)(_winograd_gradient)
    return tiles, blocks, grads
