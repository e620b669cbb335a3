"""Shared helpers of the fast engine: dtype policy, padding, window slices, batch chunks."""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np

from ..errors import ShapeError
from .geometry import WindowGeometry

#: Default cap of the per-chunk workspace (padded input and unrolled patches).
DEFAULT_WORKSPACE_BYTES = 256 * 2**20


def compute_dtype(*arrays) -> np.dtype:
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


def padded(A: np.ndarray, geom: WindowGeometry, fill: float = 0.0) -> np.ndarray:
    """Copy ``A`` (m, H, W, C) into a buffer with the resolved pads and ceil-mode overflow."""
    t, b, l, r = geom.pads
    oh, ow = geom.overflow
    if t == b == l == r == oh == ow == 0:
        return A
    m, H, W, C = A.shape
    out = np.empty((m, t + H + b + oh, l + W + r + ow, C), dtype=A.dtype)
    if fill == 0.0:
        out[:, :t] = 0
        out[:, t + H:] = 0
        out[:, t:t + H, :l] = 0
        out[:, t:t + H, l + W:] = 0
    else:
        out.fill(fill)
    out[:, t:t + H, l:l + W] = A
    return out


def crop(A_pad: np.ndarray, geom: WindowGeometry) -> np.ndarray:
    """Inverse of :func:`padded`: the interior (m, H, W, C) view."""
    t, _, l, _ = geom.pads
    H, W = geom.in_hw
    return A_pad[:, t:t + H, l:l + W]


def window_slices(geom: WindowGeometry) -> Iterator[Tuple[int, int, Tuple[slice, slice]]]:
    """Yield ``(i, j, (rows, cols))``: for kernel offset (i, j), the strided slices of the
    padded input that this offset reads for every output position, in row-major order."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = geom.kernel, geom.stride, geom.dilation, geom.out_hw
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            yield i, j, (rows, slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def batch_chunks(m: int, bytes_per_example: int, workspace_bytes) -> Iterator[slice]:
    """Split ``range(m)`` into slices whose workspace stays under ``workspace_bytes``."""
    cap = DEFAULT_WORKSPACE_BYTES if workspace_bytes is None else int(workspace_bytes)
    step = max(1, cap // max(1, bytes_per_example))
    for lo in range(0, m, step):
        yield slice(lo, min(m, lo + step))
