"""Optional compiled kernels (numba), for the one step numpy cannot do in one pass: max-pool backward.

Max-pool backward must find each window's first maximum again (the classic cache is only
``(A_prev, hparameters)``, no argmax). In numpy that takes two float passes and two small-integer
passes per tap, over phase-plane copies, then a scatter: 1.2x-5x PyTorch's time, which scatters
from the indices its forward saved. A compiled loop reads each input pixel once (from cache for
the overlapping taps) and writes dA_prev once, about twice as fast.

numba is not a dependency: ``pip install 'cnncli[fast]'`` adds it. Importing it and loading the
kernel costs 0.3-0.5 s once per process (its first compile, then cached on disk, 1-2 s): more than
one batch gains. So ``CNNCLI_JIT=auto`` (the default) rents before it buys: the numpy path serves
until this process's max-pool backward inputs add up to :data:`AUTO_AFTER_ELEMENTS` (about as long
as the one-time cost), and the kernel from then on, so that a run is never much slower than with
the better choice made in advance. ``on`` uses it from the first call (refused when numba does not
import); ``off`` never does.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Optional

import numpy as np

from ..errors import SettingError

#: Elements of max-pool backward input a process takes on the numpy path before ``CNNCLI_JIT=auto``
#: loads the kernel: 2**28 take the numpy path 0.3-0.6 s, about what loading numba costs.
AUTO_AFTER_ELEMENTS = 2**28

#: Geometry numbers above this keep the numpy path (the kernel's index arithmetic is int64; the
#: numpy path takes Python ints of any size).
_MAX_INDEX = 2**40

_lock = threading.Lock()
_kernel = None  # numba's dispatcher, once imported
_ready: set = set()  # the dtypes it has compiled (or loaded from its disk cache) in this process
_failure: Optional[str] = None  # why numba could not be used, once tried
_numpy_elements = 0  # max-pool backward input elements this process has taken on the numpy path


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
    numpy path, as do arrays that are not C-contiguous float32/float64 of one dtype. Under
    ``auto``, a call that takes the numpy path counts its input toward :data:`AUTO_AFTER_ELEMENTS`.

    Raises
    ------
    SettingError
        ``CNNCLI_JIT`` invalid, or ``on`` while numba does not import (the message says why).
    """
    global _numpy_elements
    mode = jit_mode()
    usable = (mode != "off" and A_prev.dtype in (np.float32, np.float64) and dA.dtype == A_prev.dtype
              and A_prev.flags.c_contiguous and dA.flags.c_contiguous
              and max(numbers) <= _MAX_INDEX and min(numbers) >= 0)
    if not usable:
        return None
    if mode == "auto" and A_prev.dtype not in _ready:
        with _lock:
            _numpy_elements += A_prev.size
            if _numpy_elements <= AUTO_AFTER_ELEMENTS:
                return None
    kernel = _build(A_prev.dtype)
    if kernel is None and mode == "on":
        raise SettingError(f"CNNCLI_JIT=on needs numba (pip install 'cnncli[fast]'): {_failure}")
    return kernel


def _build(dtype):
    """numba's kernel with its code for ``dtype`` ready (compiled, or loaded from the disk cache), or None."""
    global _kernel, _failure
    with _lock:
        if _failure is not None or dtype in _ready:
            return _kernel
        try:
            # NOTE: numba warns (on stderr) when its cache directory is not writable, among others;
            # it then compiles in memory, which is what we want, without the warning.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from ._jit_kernels import max_pool_backward
                one = np.zeros((1, 1, 1, 1), dtype)
                # the first call compiles: here, once, not in several worker threads at once
                max_pool_backward(one, one, one.copy(), 1, 1, 1, 1, 1, 1, 0, 0, 0, 1)
                _kernel = max_pool_backward
                _ready.add(dtype)
        except Exception as exc:  # ImportError, or a numba that does not fit this numpy or CPU
            _failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return _kernel
