"""Shared helpers of the fast engine: dtype policy, clipped kernel taps, chunk planning, threads."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

from ..errors import ShapeError
from .geometry import WindowGeometry

#: Ceiling of the default per-chunk workspace (the default itself is CHUNK_TARGET_BYTES or less);
#: an explicit ``workspace_bytes`` sets the chunk size.
DEFAULT_WORKSPACE_BYTES = 256 * 2**20


def float32_if_all_float32(*arrays) -> np.dtype:
    """float32 when every array is float32, else float64 (ints, bools, float16 included)."""
    if arrays and all(a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_nhwc(A, name: str, dtype) -> np.ndarray:
    """Check ``A`` is 4-D and return it in ``dtype`` (no copy when it already is)."""
    A = np.asarray(A)
    if A.ndim != 4:
        raise ShapeError(f"{name} must be 4-D (m, n_H, n_W, n_C), got shape {A.shape}")
    if A.shape[0] < 1 or A.shape[3] < 1:
        raise ShapeError(f"{name} must have at least one example and one channel, got shape {A.shape}")
    return A.astype(dtype, copy=False)


# ---------------------------------------------------------------------------
# Speed helpers: clipped window ranges (no padded copies) and a small thread pool.

#: Bytes of unrolled patches per chunk when the cap allows: small enough that a
#: chunk's patches are still in cache when the matrix product reads them.
CHUNK_TARGET_BYTES = 4 * 2**20

_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: Optional[ThreadPoolExecutor] = None
_pool_pid = -1


def valid_range(lo: int, hi: int, step: int, offset: int, n_in: int):
    """Outputs ``o`` in ``[lo, hi)`` whose source index ``o*step + offset`` lies in ``[0, n_in)``.

    Returns ``(o_lo, o_hi, src_slice)``; ``o_lo == o_hi`` when there is none.
    """
    o_lo = max(lo, -(offset // step))  # ceil(-offset / step)
    o_hi = min(hi, (n_in - 1 - offset) // step + 1)
    if o_lo >= o_hi:
        return lo, lo, slice(0, 0)
    return o_lo, o_hi, slice(o_lo * step + offset, (o_hi - 1) * step + offset + 1, step)


def split(lo: int, hi: int, parts: int):
    """Split ``range(lo, hi)`` into at most ``parts`` contiguous, nearly equal ``(a, b)`` pieces."""
    n = hi - lo
    parts = max(1, min(parts, n))
    bounds = [lo + (n * k) // parts for k in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if a < b]


def run_parallel(fn, pieces) -> None:
    """Call ``fn(*piece)`` for every piece, the pieces shared out over the worker threads.

    numpy releases the GIL in copies, ufunc loops and BLAS, so such steps run on
    several cores. The calling thread takes the first share; the call returns when
    every piece is done. Not for calls from inside ``fn`` (the pool is small).

    Parameters
    ----------
    fn : callable
        Called once per piece, with the piece's items as arguments.
    pieces : iterable of tuples
        The argument tuples; cut into contiguous shares, one per thread.

    Raises
    ------
    Exception
        What a share raised (the calling thread's own first); every share has finished by then.
    """
    global _pool, _pool_pid
    pieces = list(pieces)
    if len(pieces) <= 1 or _THREADS == 1:
        for piece in pieces:
            fn(*piece)
        return
    # NOTE: a forked child inherits the pool object but not its threads; make a new one there.
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=_THREADS - 1, thread_name_prefix="cnncli")
        _pool_pid = os.getpid()
    shares = [pieces[a:b] for a, b in split(0, len(pieces), _THREADS)]
    # numpy's floating-point error state is per thread: the workers take the caller's (a caller
    # that silences overflow, as the gradient checks do, must not get warnings from a worker)
    errors = np.geterr()

    def work(share):
        with np.errstate(**errors):
            for piece in share:
                fn(*piece)

    futures = [_pool.submit(work, share) for share in shares[1:]]
    try:
        work(shares[0])
    finally:
        for future in futures:
            future.result()


def threads() -> int:
    """Worker threads used for memory-bound steps."""
    return _THREADS


def plan_chunks(m: int, n_rows: int, row_bytes: int, workspace_bytes, target: Optional[int] = None):
    """Cut a batch of ``m`` examples of ``n_rows`` output rows into ``(e0, e1, r0, r1)`` chunks.

    A chunk's workspace (``row_bytes`` per output row) stays under
    ``workspace_bytes`` when given; by default under ``target`` (default
    :data:`CHUNK_TARGET_BYTES`, well below :data:`DEFAULT_WORKSPACE_BYTES`), which
    keeps a chunk in cache between its patch copies and its matrix product.
    Chunks are whole examples when one fits, else blocks of rows of one example,
    so even a single huge image stays bounded.
    """
    budget = int(workspace_bytes) if workspace_bytes is not None else (target or CHUNK_TARGET_BYTES)
    budget = min(budget, DEFAULT_WORKSPACE_BYTES) if workspace_bytes is None else budget
    rows = max(1, budget // max(1, row_bytes))
    # A batch that fits one chunk but is not small is still cut in one chunk per worker thread: the
    # threads then take a chunk each on a one-thread BLAS. Left whole, its product would run on
    # OpenBLAS's threads, whose idle one then spins on a core for up to ~0.1 s after it, while the
    # engine's own threads need both cores (a strided backward's later phases ran at half speed).
    split_one = _THREADS > 1 and m * n_rows * row_bytes >= SPLIT_MIN_BYTES
    if rows >= n_rows:
        # Equal chunks, as many as a multiple of the worker threads when there are several: threads that
        # take whole chunks each then finish together (64 examples in steps of 7 left one thread a chunk of 1).
        n = -(-m // (rows // n_rows))
        if n == 1 and split_one and m == 1 and n_rows > 1:
            return [(0, 1, r0, r1) for r0, r1 in split(0, n_rows, _THREADS)]
        if n == 1 and split_one:
            n = _THREADS
        return [(a, b, 0, n_rows) for a, b in split(0, m, _balanced(n, m))]
    blocks = split(0, n_rows, -(-n_rows // rows))
    return [(e, e + 1, r0, r1) for e in range(m) for r0, r1 in blocks]


#: A batch of at least this many workspace bytes is cut into one chunk per worker thread or more.
SPLIT_MIN_BYTES = 2**18


def _balanced(n: int, most: int) -> int:
    """``n`` chunks rounded up to a multiple of the worker threads (at most ``most``) when more than one."""
    if n <= 1 or _THREADS == 1:
        return n
    return min(most, -(-n // _THREADS) * _THREADS)


def clipped_taps(geom: WindowGeometry, r0: int = 0, r1: Optional[int] = None):
    """Yield ``(a, b, out_rows, out_cols, src_rows, src_cols)`` for every kernel tap (a, b).

    For output rows ``[r0, r1)`` (``out_rows`` relative to ``r0``), the slices of
    outputs whose tap reads a real input pixel and the matching input slices.
    Taps in the padding or the ceil-mode overflow are clipped away, which
    replaces a padded copy of the input. Taps that read nothing are skipped.
    """
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel, geom.stride, geom.dilation
    t, _, l, _ = geom.pads
    (H, W), (n_H, n_W) = geom.in_hw, geom.out_hw
    r1 = n_H if r1 is None else r1
    # Only taps that some output can reach the input with (a huge window over a small input has few).
    for a in range(*tap_span(kh, dh, sh, t, r0, r1, H)):
        h_lo, h_hi, rows = valid_range(r0, r1, sh, a * dh - t, H)
        if h_lo == h_hi:
            continue
        for b in range(*tap_span(kw, dw, sw, l, 0, n_W, W)):
            w_lo, w_hi, cs = valid_range(0, n_W, sw, b * dw - l, W)
            if w_lo < w_hi:
                yield a, b, slice(h_lo - r0, h_hi - r0), slice(w_lo, w_hi), rows, cs


def tap_span(k: int, d: int, s: int, before: int, o_lo: int, o_hi: int, n_in: int):
    """``(a_lo, a_hi)``: taps outside ``range(a_lo, a_hi)`` read no input row for any output in [o_lo, o_hi).

    Tap a of output o reads row ``o*s + a*d - before``; it can be in ``[0, n_in)`` only when
    ``before - (o_hi-1)*s <= a*d <= n_in - 1 + before - o_lo*s``.
    """
    a_lo = max(0, -(((o_hi - 1) * s - before) // d))  # ceil
    a_hi = min(k, (n_in - 1 + before - o_lo * s) // d + 1)
    return a_lo, max(a_lo, a_hi)


def merge_rows(x: np.ndarray):
    """``x`` with its last two axes merged into one (a view), or None when strides forbid it."""
    if x.strides[-2] != x.shape[-1] * x.strides[-1]:
        return None
    return x.reshape(x.shape[:-2] + (-1,))
