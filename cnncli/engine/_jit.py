"""Optional compiled kernels (numba): max-pool backward, and Winograd's transforms for float32 3x3 layers.

Max-pool backward must find each window's first maximum again (the classic cache is only
``(A_prev, hparameters)``, no argmax). In numpy that takes two float passes and two small-integer
passes per tap, over phase-plane copies, then a scatter: 1.2x-5x PyTorch's time, which scatters
from the indices its forward saved. A compiled loop reads each input pixel once (from cache for
the overlapping taps) and writes dA_prev once: about twice as fast from 8 channels up, slower
below 4 (its channel loop is too short to be vector code).

numba is not a dependency: ``pip install 'cnncli[fast]'`` adds it. Importing it and loading the
kernel costs 0.3-0.5 s and about 110 MiB once per process (its first compile, then cached on
disk, 1-2 s): more than one batch gains. So ``CNNCLI_JIT=auto`` (the default) rents before it
buys: a process takes the numpy path until its max-pool backward inputs add up to
:data:`AUTO_AFTER_ELEMENTS` (about as long as the one-time cost), then the kernel for inputs of
:data:`AUTO_MIN_CHANNELS` channels or more. A run is then never much slower than with the better
choice made in advance. ``on`` takes the kernel for every call it can (refused when it cannot be
loaded); ``off`` never does.

The Winograd transforms (:mod:`._winograd`: float32 3x3 convolutions at stride 1, forward and both
gradients in 0.5x-0.8x im2col's time) follow the same rule, counted in multiply-adds
(:data:`AUTO_AFTER_MACS`), for layers of :data:`AUTO_MIN_WINOGRAD_CHANNELS` channels or more.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from typing import Optional

import numpy as np

from ..errors import SettingError
from ..settings import word_setting

#: Elements of max-pool backward input a process takes on the numpy path before ``CNNCLI_JIT=auto``
#: loads the kernel: 2**28 take the numpy path 0.3-0.6 s, about what loading numba costs.
AUTO_AFTER_ELEMENTS = 2**28

#: Under ``auto``, inputs with fewer channels keep the numpy path, which is faster there (measured:
#: 1.4x-3.9x faster for 1-3 channels, about even at 4-6, the kernel 0.4x-0.75x the time from 8).
AUTO_MIN_CHANNELS = 8

#: Multiply-adds of float32 3x3 convolutions a process computes on the numpy path before
#: ``CNNCLI_JIT=auto`` loads the Winograd transforms: 2**35 take the numpy path 0.3-0.6 s, about
#: what loading numba costs.
AUTO_AFTER_MACS = 2**35

#: Under ``auto``, layers with fewer input or output channels keep the numpy path: the transforms'
#: channel loops are short and the 16 small products inefficient (measured: 5 -> 7 channels
#: 1.5x-2.5x slower, 16 -> 32 about even to 0.6x the time, 64 -> 64 0.6x-0.7x).
AUTO_MIN_WINOGRAD_CHANNELS = 16

#: Geometry numbers above this keep the numpy path (the kernel's index arithmetic is int64; the
#: numpy path takes Python ints of any size).
_MAX_INDEX = 2**40

_lock = threading.Lock()
_kernels: dict = {}  # dtype -> the kernel, ready (compiled or loaded) in this process
_failure: Optional[str] = None  # why the kernel cannot be had, once tried
_numpy_elements = 0  # max-pool backward input elements this process has taken on the numpy path
_numpy_macs = 0  # multiply-adds of convolutions the Winograd transforms could have taken, on the numpy path


def jit_mode() -> str:
    """``CNNCLI_JIT``'s value, lowercased: ``"auto"`` (unset), ``"on"`` or ``"off"``.

    Raises
    ------
    SettingError
        Any other value; the message names the valid ones.
    """
    return word_setting("CNNCLI_JIT", ("auto", "on", "off"), "auto")


def max_backward_kernel(A_prev: np.ndarray, dA: np.ndarray, numbers) -> Optional[object]:
    """The compiled max-pool backward for these arrays, or None for the numpy path.

    Call it as ``kernel(A, dA, out, kh, kw, sh, sw, dh, dw, top, left)`` on C-contiguous arrays.
    ``numbers`` are the geometry's integers (sizes, pads, strides); any above ``2**40`` keeps the
    numpy path, as do dtypes other than one float32 or float64 for both arrays. Under ``auto``, a
    call that takes the numpy path counts its input toward :data:`AUTO_AFTER_ELEMENTS`.

    Raises
    ------
    SettingError
        ``CNNCLI_JIT`` invalid, or ``on`` while the kernel cannot be had (numba not installed, not
        able to compile or load it, ``NUMBA_DISABLE_JIT`` set); the message says which.
    """
    global _numpy_elements
    mode = jit_mode()
    usable = (mode != "off" and A_prev.dtype in (np.float32, np.float64) and dA.dtype == A_prev.dtype
              and max(numbers) <= _MAX_INDEX and min(numbers) >= 0)
    if not usable:
        return None
    if mode == "auto":
        if A_prev.shape[3] < AUTO_MIN_CHANNELS:
            return None
        if A_prev.dtype not in _kernels:
            with _lock:
                _numpy_elements += A_prev.size
                if _numpy_elements <= AUTO_AFTER_ELEMENTS:
                    return None
    kernel = _build(A_prev.dtype)
    if kernel is None and mode == "on":
        raise SettingError(f"CNNCLI_JIT=on {_failure}")
    return kernel


def winograd_kernels(macs: int, channels_in: int, channels_out: int) -> Optional[tuple]:
    """The compiled Winograd transforms (``_jit_kernels.winograd``) for a float32 3x3 convolution the
    caller found they apply to, or None for the numpy path.

    ``macs`` is the layer's multiply-add count. Under ``auto``, layers of fewer than
    :data:`AUTO_MIN_WINOGRAD_CHANNELS` input or output channels keep the numpy path, and the others
    count toward :data:`AUTO_AFTER_MACS` until the process has taken that many on it.

    Raises
    ------
    SettingError
        As :func:`max_backward_kernel`.
    """
    global _numpy_macs
    mode = jit_mode()
    if mode == "off":
        return None
    key = ("winograd", np.dtype(np.float32))
    if mode == "auto":
        if min(channels_in, channels_out) < AUTO_MIN_WINOGRAD_CHANNELS:
            return None
        if key not in _kernels:
            with _lock:
                _numpy_macs += macs
                if _numpy_macs <= AUTO_AFTER_MACS:
                    return None
    kernels = _build(np.dtype(np.float32), "winograd")
    if kernels is None and mode == "on":
        raise SettingError(f"CNNCLI_JIT=on {_failure}")
    return kernels


def _build(dtype, name: str = "max_pool_backward"):
    """The kernel ``name`` of :mod:`._jit_kernels` for ``dtype``, ready (compiled, or loaded from
    numba's disk cache), or None."""
    global _failure
    key = dtype if name == "max_pool_backward" else (name, dtype)
    with _lock:
        if key in _kernels or _failure is not None:
            return _kernels.get(key)
        # NOTE: numba's debug switches print to stdout, which may be the .npy stream of -o -; its
        # warnings would reach the user's stderr.
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            try:
                import numba
            except ImportError as exc:
                missing = getattr(exc, "name", None) == "numba"  # not installed, or installed and broken
                _failure = "needs numba: pip install 'cnncli[fast]'" if missing else _reason("cannot import numba", exc)
                return None
            if numba.config.DISABLE_JIT:  # the kernel would be Python loops: hours on a data set
                _failure = "cannot compile: NUMBA_DISABLE_JIT is set"
                return None
            error = None
            # A cache numba cannot use (nowhere writable, a damaged index) fails the cached build;
            # compiling in memory still works (1-2 s).
            for cache in (True, False):
                try:
                    from . import _jit_kernels

                    kernel = getattr(_jit_kernels, name)(dtype, cache=cache)
                    _kernels[key] = kernel
                    return kernel
                except Exception as exc:  # numba's errors have no common base
                    error = exc
            _failure = _reason("cannot build the kernel", error)
            return None


def _reason(what: str, exc: BaseException) -> str:
    """``"<what>: <exception>"``, cut so that ``cnncli: error: CNNCLI_JIT=on <it>`` fits 80 columns."""
    room = 80 - len("cnncli: error: CNNCLI_JIT=on ") - len(what) - 2
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return f"{what}: {text if len(text) <= room else text[:room - 3] + '...'}"
