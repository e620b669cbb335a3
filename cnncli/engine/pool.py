"""Fast 2-D max and average pooling, forward and backward, NHWC.

Both passes loop over the f_h*f_w kernel offsets only; each step is one
vectorized operation over the whole chunk of the batch.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ShapeError
from ._common import as_nhwc, batch_chunks, compute_dtype, crop, padded, window_slices
from .geometry import WindowGeometry, window_counts
from .layout import check_layout, nchw_to_nhwc, nhwc_to_nchw
from .params import PoolParams


def _per_example(geom: WindowGeometry, C: int, itemsize: int) -> int:
    ph, pw = geom.padded_hw
    oh, ow = geom.overflow
    return itemsize * ((ph + oh) * (pw + ow) * C * 2 + geom.out_hw[0] * geom.out_hw[1] * C * 3)


def _divisor(geom: WindowGeometry, include_pad: bool, dtype) -> np.ndarray:
    """(1, n_H, n_W, 1) window sizes for average pooling."""
    ch, cw = window_counts(geom, include_pad)
    return (np.asarray(ch, dtype=dtype)[:, None] * np.asarray(cw, dtype=dtype)[None, :])[None, :, :, None]


def _max_forward(A_pad: np.ndarray, geom: WindowGeometry) -> np.ndarray:
    out = None
    for _, _, (rows, cs) in window_slices(geom):
        src = A_pad[:, rows, cs, :]
        if out is None:
            out = src.copy()
        else:
            np.maximum(out, src, out=out)
    return out


def pool2d(A_prev, params: Optional[PoolParams] = None, *, layout: str = "nhwc",
           workspace_bytes: Optional[int] = None) -> np.ndarray:
    """Pooling forward pass.

    Parameters
    ----------
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C)
        Input (``(m, C, H, W)`` with ``layout="nchw"``).
    params : PoolParams, optional
        Window, stride (default: the window), pad, dilation, mode, ceil_mode,
        count_include_pad. Default: 2x2 max pooling, stride 2.
    layout : {"nhwc", "nchw"}
        Layout of the input and of the returned output.
    workspace_bytes : int, optional
        Cap of the per-chunk workspace; default 256 MiB.

    Returns
    -------
    A : ndarray, shape (m, n_H, n_W, n_C)
        float32 for float32 input, else float64.

    Raises
    ------
    ShapeError
        ``A_prev`` not 4-D.
    HyperparameterError
        Invalid hyperparameters, no window fits, or a window lies entirely in padding.

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> pool2d(x, PoolParams(f=2))[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    params = params or PoolParams()
    check_layout(layout)
    A_prev = np.asarray(A_prev)
    if layout == "nchw":
        A_prev = nchw_to_nhwc(A_prev)
    A_prev = as_nhwc(A_prev, "A_prev", compute_dtype(A_prev))
    geom = params.geometry(A_prev.shape[1:3])
    m, C = A_prev.shape[0], A_prev.shape[3]
    A = np.empty((m,) + geom.out_hw + (C,), dtype=A_prev.dtype)
    is_max = params.mode == "max"
    divisor = None if is_max else _divisor(geom, params.count_include_pad, A_prev.dtype)
    for chunk in batch_chunks(m, _per_example(geom, C, A_prev.itemsize), workspace_bytes):
        # NOTE: max pooling pads with -inf so padding never wins a window.
        A_pad = padded(A_prev[chunk], geom, fill=-np.inf if is_max else 0.0)
        if is_max:
            A[chunk] = _max_forward(A_pad, geom)
        else:
            acc = A[chunk]
            acc.fill(0)
            for _, _, (rows, cs) in window_slices(geom):
                acc += A_pad[:, rows, cs, :]
            acc /= divisor
    return nhwc_to_nchw(A) if layout == "nchw" else A


def pool2d_backward(dA, A_prev, params: Optional[PoolParams] = None, *, layout: str = "nhwc",
                    workspace_bytes: Optional[int] = None) -> np.ndarray:
    """Pooling backward pass.

    Max pooling sends each window's gradient to one position: the first maximum
    in row-major order within the window (a valid subgradient, as PyTorch).
    Average pooling spreads it evenly over the positions its divisor counts.

    Parameters
    ----------
    dA : ndarray, shape (m, n_H, n_W, n_C)
        Gradient of the loss with respect to the pooling output.
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C)
        The forward input.
    params : PoolParams, optional
        The forward hyperparameters.
    layout : {"nhwc", "nchw"}
        Layout of the inputs and of the returned gradient.
    workspace_bytes : int, optional
        Cap of the per-chunk workspace; default 256 MiB.

    Returns
    -------
    dA_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C)

    Raises
    ------
    ShapeError
        ``dA`` not of the forward output's shape.
    HyperparameterError
        As :func:`pool2d`.
    """
    params = params or PoolParams()
    check_layout(layout)
    A_prev, dA = np.asarray(A_prev), np.asarray(dA)
    if layout == "nchw":
        A_prev = nchw_to_nhwc(A_prev)
        dA = nchw_to_nhwc(dA) if dA.ndim == 4 else dA
    dtype = compute_dtype(A_prev, dA)
    A_prev = as_nhwc(A_prev, "A_prev", dtype)
    geom = params.geometry(A_prev.shape[1:3])
    m, C = A_prev.shape[0], A_prev.shape[3]
    expected = (m,) + geom.out_hw + (C,)
    if dA.shape != expected:
        raise ShapeError(f"dA must have the forward output's shape {expected}, got {dA.shape}")
    dA = dA.astype(dtype, copy=False)
    dA_prev = np.empty(A_prev.shape, dtype=dtype)
    is_max = params.mode == "max"
    if not is_max:
        scaled = dA / _divisor(geom, params.count_include_pad, dtype)
    for chunk in batch_chunks(m, _per_example(geom, C, A_prev.itemsize), workspace_bytes):
        A_pad = padded(A_prev[chunk], geom, fill=-np.inf if is_max else 0.0)
        dA_pad = np.zeros(A_pad.shape, dtype=dtype)
        if is_max:
            out = _max_forward(A_pad, geom)
            g = dA[chunk]
            # NOTE: offsets run in row-major order; a position receives the gradient
            # only if no earlier offset of its window already held the maximum.
            open_ = np.ones(out.shape, dtype=bool)
            hit = np.empty(out.shape, dtype=bool)
            for _, _, (rows, cs) in window_slices(geom):
                np.equal(A_pad[:, rows, cs, :], out, out=hit)
                hit &= open_
                dA_pad[:, rows, cs, :] += np.where(hit, g, 0)
                open_ &= ~hit
        else:
            g = scaled[chunk]
            for _, _, (rows, cs) in window_slices(geom):
                dA_pad[:, rows, cs, :] += g
        dA_prev[chunk] = crop(dA_pad, geom)
    return nhwc_to_nchw(dA_prev) if layout == "nchw" else dA_prev
