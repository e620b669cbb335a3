"""numba kernels, imported only when numba is installed and a call is big enough (see ``_jit``).

Module-level functions, so that numba's disk cache finds them again in the next process (a
closure's cache key holds its cells, which differ from process to process: it compiled anew).
"""

import numba
import numpy as np

@numba.njit(inline="always", cache=True)
def _first_tap(start, d):  # pragma: no cover
    # The first tap a with start + a*d >= 0.
    return 0 if start >= 0 else (-start + d - 1) // d


@numba.njit(inline="always", cache=True)
def _end_tap(start, d, k, n):  # pragma: no cover
    # One past the last tap a < k with start + a*d < n.
    return 0 if start >= n else min(k, (n - 1 - start) // d + 1)


# NOTE: nogil, so the engine's worker threads run their examples at once; cache, so later
# processes load the machine code instead of compiling it again (~1 s). No signatures: each
# dtype is compiled or loaded on its first call (``_jit`` makes it, before the threads call),
# so a float32 run does not pay for loading the float64 code.
@numba.njit(nogil=True, cache=True, boundscheck=False)
def max_pool_backward(A, dZ, out, kh, kw, sh, sw, dh, dw, top, left, e0, e1):  # pragma: no cover
    """dA_prev of max pooling for examples [e0, e1) into ``out``: each window's gradient to its first
    maximum in row-major order (padding is -inf and never wins). Shapes as ``pool2d_backward``'s."""
    H, W, C = A.shape[1], A.shape[2], A.shape[3]
    n_H, n_W = dZ.shape[1], dZ.shape[2]
    pixels = out.reshape(out.shape[0], H * W, C)  # NOTE: a pixel number, not (k // W, k % W): two divisions
    # per element cost more than the search
    best = np.empty(C, A.dtype)
    arg = np.empty(C, np.int64)
    for n in range(e0, e1):
        out[n] = 0
        for oh in range(n_H):
            h0 = oh * sh - top
            a0, a1 = _first_tap(h0, dh), _end_tap(h0, dh, kh, H)  # only the taps inside the input
            for ow in range(n_W):
                w0 = ow * sw - left
                b0, b1 = _first_tap(w0, dw), _end_tap(w0, dw, kw, W)
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
                grad = dZ[n, oh, ow]
                for c in range(C):
                    k = arg[c]
                    if k >= 0:
                        pixels[n, k, c] += grad[c]
