"""One BLAS thread while the engine's own threads each run whole chunks (no hand-offs between pools).

A convolution makes one matrix product per cache-sized chunk: about a hundred per
layer. With a multi-threaded BLAS every product hands its work to BLAS's threads
and waits for them; on a busy machine one of them is often off the CPU, and the
layer waits a scheduler tick per product (benchmarks/README.md has the figures).
Instead, while :func:`single_blas_thread` is active, BLAS runs on the calling
thread and the engine's worker threads each unroll and multiply chunks of their
own. numpy's bundled OpenBLAS is found in the process's loaded libraries; without
it (another BLAS, another system) nothing changes and the engine still computes
the same values.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from typing import Optional, Tuple

_NAMES = [(f"{p}openblas_get_num_threads{s}", f"{p}openblas_set_num_threads{s}")
          for p in ("scipy_", "") for s in ("64_", "")]
_lock = threading.Lock()
_depth = 0
_saved = 0
_funcs: Optional[Tuple] = None
_searched = False


def _find():
    """(get, set) of the OpenBLAS that numpy loaded, or None."""
    global _funcs, _searched
    if _searched:
        return _funcs
    _searched = True
    try:
        import numpy  # noqa: F401  (loads its BLAS)

        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
        for path in paths:
            lib = ctypes.CDLL(path)
            for get_name, set_name in _NAMES:
                if hasattr(lib, get_name) and hasattr(lib, set_name):
                    get, put = getattr(lib, get_name), getattr(lib, set_name)
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    _funcs = (get, put)
                    return _funcs
    except (OSError, ValueError):
        pass
    return None


def available() -> bool:
    """Whether the BLAS thread count can be set (numpy's OpenBLAS was found)."""
    return _find() is not None


@contextmanager
def single_blas_thread():
    """BLAS on one thread inside the block, its previous thread count restored after (nests, thread-safe).

    Yields whether the count could be set.
    """
    global _depth, _saved
    funcs = _find()
    if funcs is None:
        yield False
        return
    get, put = funcs
    with _lock:
        if _depth == 0:
            _saved = get()
            put(1)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                put(_saved)
