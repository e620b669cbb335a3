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
