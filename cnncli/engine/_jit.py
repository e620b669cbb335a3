"""Optional compiled kernels (numba), for the one step numpy cannot do in one pass: max-pool backward.

Max-pool backward must find each window's first maximum again (the classic cache is only
``(A_prev, hparameters)``, no argmax). In numpy that takes two float passes and two small-integer
passes per tap, over phase-plane copies, then a scatter: about 2x PyTorch's time, which scatters
from the indices its forward saved. A compiled loop reads each input pixel once (from cache for
the overlapping taps) and writes dA_prev once.

numba is not a dependency: ``pip install 'cnncli[fast]'`` adds it. Importing it and loading the
compiled kernel costs about 0.3 s once per process (the first compile, cached on disk, about 1 s),
so it is used only for calls big enough to gain a millisecond or more each. ``CNNCLI_JIT`` chooses:
``auto`` (the default: when numba imports, for inputs of :data:`AUTO_MIN_ELEMENTS` or more),
``on`` (every max-pool backward; refused when numba does not import), ``off`` (never).
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Optional

import numpy as np

from ..errors import SettingError

#: Inputs smaller than this (elements of A_prev) keep the numpy path under ``CNNCLI_JIT=auto``: the
#: kernel's gain there (~1-2 ns per element) is below a millisecond a call.
AUTO_MIN_ELEMENTS = 2**20

#: Geometry numbers above this keep the numpy path (the kernel's index arithmetic is int64; the
#: numpy path takes Python ints of any size).
_MAX_INDEX = 2**40

_lock = threading.Lock()
_kernel = None  # the compiled dispatcher, once built
_failure: Optional[str] = None  # why numba could not be used, once tried


def jit_mode() -> str:
    """``CNNCLI_JIT``'s value, lowercased: ``"auto"`` (unset), ``"on"`` or ``"off"``.

    Raises
    ------
    SettingError
        Any other value; the message names the valid ones.
    """
    text = os.environ.get("CNNCLI_JIT")
    if text is None:
        return "auto"
    mode = text.strip().lower()
    if mode not in ("auto", "on", "off"):
        raise SettingError(f"CNNCLI_JIT must be auto, on or off, got {text!r}")
    return mode


def max_backward_kernel(A_prev: np.ndarray, dA: np.ndarray, numbers) -> Optional[object]:
    """The compiled max-pool backward for these arrays, or None for the numpy path.

    ``numbers`` are the geometry's integers (sizes, pads, strides); any above ``2**40`` keeps the
    numpy path, as do arrays that are not C-contiguous float32/float64 of one dtype.

    Raises
    ------
    SettingError
        ``CNNCLI_JIT`` invalid, or ``on`` while numba does not import (the message says why).
    """
    mode = jit_mode()
    if mode == "off":
        return None
    if mode == "auto" and A_prev.size < AUTO_MIN_ELEMENTS:
        return None
    usable = (A_prev.dtype in (np.float32, np.float64) and dA.dtype == A_prev.dtype
              and A_prev.flags.c_contiguous and dA.flags.c_contiguous
              and max(numbers) <= _MAX_INDEX and min(numbers) >= 0)
    if not usable:
        return None
    kernel = _build()
    if kernel is None and mode == "on":
        raise SettingError(f"CNNCLI_JIT=on needs numba (pip install 'cnncli[fast]'): {_failure}")
    return kernel


def _build():
    """Import numba and compile (or load from its disk cache) the kernel, once per process."""
    global _kernel, _failure
    with _lock:
        if _kernel is not None or _failure is not None:
            return _kernel
        try:
            # NOTE: numba warns (on stderr) when its cache directory is not writable, among others;
            # it then compiles in memory, which is what we want, without the warning.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import numba
                _kernel = _compile(numba)
        except Exception as exc:  # ImportError, or a numba that does not fit this numpy or CPU
            _failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return _kernel


def _compile(numba):
    """The kernel, compiled eagerly for float32 and float64 (before any thread calls it)."""
    sigs = [f"void({t}[:, :, :, ::1], {t}[:, :, :, ::1], {t}[:, :, :, ::1], "
            "int64, int64, int64, int64, int64, int64, int64, int64, int64, int64)"
            for t in ("float32", "float64")]

    @numba.njit(inline="always")
    def _first_tap(start, d):  # pragma: no cover
        # The first tap a with start + a*d >= 0.
        return 0 if start >= 0 else (-start + d - 1) // d

    @numba.njit(inline="always")
    def _end_tap(start, d, k, n):  # pragma: no cover
        # One past the last tap a < k with start + a*d < n.
        return 0 if start >= n else min(k, (n - 1 - start) // d + 1)

    # NOTE: nogil, so the engine's worker threads run their examples at once; cache, so later
    # processes load the machine code instead of compiling it again (~1 s).
    @numba.njit(sigs, nogil=True, cache=True, boundscheck=False)
    def max_pool_backward(A, dZ, out, kh, kw, sh, sw, dh, dw, top, left, e0, e1):  # pragma: no cover
        # (numba compiles this; coverage does not see it run. Its oracle tests run it.)
        H, W, C = A.shape[1], A.shape[2], A.shape[3]
        n_H, n_W = dZ.shape[1], dZ.shape[2]
        best = np.empty(C, A.dtype)
        arg = np.empty(C, np.int64)
        for n in range(e0, e1):
            out[n] = 0
            for oh in range(n_H):
                h0 = oh * sh - top
                for ow in range(n_W):
                    w0 = ow * sw - left
                    # A window no value beats (all -inf, or only padding) keeps tap (0, 0), as
                    # np.argmax says: its pixel when it is inside the input, else nothing (-1).
                    first = h0 * W + w0 if h0 >= 0 and w0 >= 0 else -1
                    for c in range(C):
                        best[c] = -np.inf
                        arg[c] = first
                    # Only the taps inside the input (a huge window over a small input has few).
                    for a in range(_first_tap(h0, dh), _end_tap(h0, dh, kh, H)):
                        h = h0 + a * dh
                        for b in range(_first_tap(w0, dw), _end_tap(w0, dw, kw, W)):
                            w = w0 + b * dw
                            k = h * W + w
                            for c in range(C):
                                v = A[n, h, w, c]
                                bc = best[c]
                                # Row-major taps, strictly greater takes over: the first maximum.
                                # The first NaN wins and keeps the window (as np.argmax).
                                if (v > bc) | ((v != v) & (bc == bc)):
                                    best[c] = v
                                    arg[c] = k
                    for c in range(C):
                        k = arg[c]
                        if k >= 0:
                            out[n, k // W, k % W, c] += dZ[n, oh, ow, c]

    return max_pool_backward
