"""Fast 2-D convolution, forward and backward, NHWC, over BLAS.

Strategy: for ``groups == 1`` and general groups the input patches are unrolled
("im2col": one strided copy per kernel offset) into a workspace and the
convolution is one matrix product per chunk of the batch. A depthwise
convolution (one input channel per group) has nothing for a matrix product to
gain, so it is a multiply-accumulate per kernel offset instead. The workspace is
bounded by processing the batch in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import ShapeError
from ._common import as_nhwc, batch_chunks, compute_dtype, crop, padded, window_slices
from .geometry import WindowGeometry, check_groups
from .layout import check_layout, conv_in, conv_out_grads, nchw_to_nhwc, nhwc_to_nchw
from .params import ConvParams


@dataclass(frozen=True)
class ConvGrads:
    """Gradients of a convolution.

    Attributes
    ----------
    dA_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
    dW : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
    db : ndarray, shape (n_C,)
    """

    dA_prev: np.ndarray
    dW: np.ndarray
    db: np.ndarray

    def __iter__(self):
        return iter((self.dA_prev, self.dW, self.db))


def _check(A_prev, W, b, params: ConvParams):
    """Validate shapes; return arrays in the compute dtype, the geometry and the bias (n_C,)."""
    A_prev, W = np.asarray(A_prev), np.asarray(W)
    arrays = [A_prev, W] + ([np.asarray(b)] if b is not None else [])
    dtype = compute_dtype(*arrays)
    A_prev = as_nhwc(A_prev, "A_prev", dtype)
    if W.ndim != 4:
        raise ShapeError(f"W must be 4-D (f, f, n_C_prev/groups, n_C), got shape {W.shape}")
    W = W.astype(dtype, copy=False)
    kh, kw, c_g, n_C = W.shape
    if min(W.shape) < 1:
        raise ShapeError(f"W must have no empty axis, got shape {W.shape}")
    n_C_prev = A_prev.shape[3]
    groups = check_groups(n_C_prev, n_C, params.groups)
    if c_g * groups != n_C_prev:
        raise ShapeError(
            f"W has {c_g} input channel(s) per group but A_prev has n_C_prev={n_C_prev} "
            f"with groups={groups} (expected W.shape[2] == {n_C_prev // groups})"
        )
    if b is None:
        bias = None
    else:
        b = np.asarray(b)
        if b.shape not in ((n_C,), (1, 1, 1, n_C)):
            raise ShapeError(f"b must have shape ({n_C},) or (1, 1, 1, {n_C}) to match W, got {b.shape}")
        bias = b.reshape(n_C).astype(dtype, copy=False)
    geom = params.geometry(A_prev.shape[1:3], (kh, kw))
    return A_prev, W, bias, geom


def _workspace_per_example(geom: WindowGeometry, n_C_prev: int, n_C: int, itemsize: int) -> int:
    ph, pw = geom.padded_hw
    oh, ow = geom.out_hw
    kh, kw = geom.kernel
    return itemsize * (ph * pw * n_C_prev + oh * ow * (kh * kw * n_C_prev + 2 * n_C))


def _im2col(A_pad: np.ndarray, geom: WindowGeometry, groups: int) -> np.ndarray:
    """Unroll patches to (groups, M, f_h*f_w*c_g), M = m*n_H*n_W, row order (i, j, c)."""
    m, C = A_pad.shape[0], A_pad.shape[3]
    (kh, kw), (oh, ow) = geom.kernel, geom.out_hw
    c_g = C // groups
    cols = np.empty((groups, m, oh, ow, kh, kw, c_g), dtype=A_pad.dtype)
    for i, j, (rows, cs) in window_slices(geom):
        src = A_pad[:, rows, cs, :]
        if groups == 1:
            cols[0, :, :, :, i, j, :] = src
        else:
            cols[:, :, :, :, i, j, :] = np.moveaxis(src.reshape(m, oh, ow, groups, c_g), 3, 0)
    return cols.reshape(groups, m * oh * ow, kh * kw * c_g)


def _grouped_weights(W: np.ndarray, groups: int) -> np.ndarray:
    """(f_h, f_w, c_g, n_C) -> (groups, f_h*f_w*c_g, n_C/groups), matching :func:`_im2col`."""
    kh, kw, c_g, n_C = W.shape
    n_g = n_C // groups
    return W.reshape(kh * kw * c_g, groups, n_g).transpose(1, 0, 2)


def conv2d(
    A_prev,
    W,
    b=None,
    params: Optional[ConvParams] = None,
    *,
    layout: str = "nhwc",
    workspace_bytes: Optional[int] = None,
) -> np.ndarray:
    """Convolution forward pass.

    Parameters
    ----------
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
        Input (``(m, C, H, W)`` with ``layout="nchw"``).
    W : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
        Filters (``(C_out, C_in/groups, kH, kW)`` with ``layout="nchw"``).
    b : ndarray, shape (n_C,) or (1, 1, 1, n_C), optional
        Bias; zeros when omitted.
    params : ConvParams, optional
        Stride, pad, dilation, groups; defaults to stride 1, no padding.
    layout : {"nhwc", "nchw"}
        Layout of the inputs and of the returned output.
    workspace_bytes : int, optional
        Cap of the per-chunk workspace; default 256 MiB.

    Returns
    -------
    Z : ndarray, shape (m, n_H, n_W, n_C)
        float32 when every input is float32, else float64.

    Raises
    ------
    ShapeError
        Wrong ndim, channel, groups or bias mismatch.
    HyperparameterError
        Invalid stride/pad/dilation/groups, or no window fits.

    Examples
    --------
    >>> Z = conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), params=ConvParams(pad=1))
    >>> Z[0, :, :, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    params = params or ConvParams()
    check_layout(layout)
    A_prev, W, b = conv_in(A_prev, W, b, layout)
    A_prev, W, b, geom = _check(A_prev, W, b, params)
    m, _, _, n_C_prev = A_prev.shape
    kh, kw, c_g, n_C = W.shape
    groups = n_C_prev // c_g
    oh, ow = geom.out_hw
    Z = np.empty((m, oh, ow, n_C), dtype=A_prev.dtype)
    per_example = _workspace_per_example(geom, n_C_prev, n_C, A_prev.itemsize)
    for chunk in batch_chunks(m, per_example, workspace_bytes):
        A_pad = padded(A_prev[chunk], geom)
        Zc = Z[chunk]
        if c_g == 1 and groups > 1:
            _depthwise_forward(A_pad, W, geom, Zc)
        else:
            cols = _im2col(A_pad, geom, groups)
            if groups == 1:
                np.matmul(cols[0], W.reshape(-1, n_C), out=Zc.reshape(-1, n_C))
            else:
                out = np.matmul(cols, _grouped_weights(W, groups))  # (g, M, n_g)
                Zc.reshape(-1, groups, n_C // groups)[...] = out.transpose(1, 0, 2)
    if b is not None:
        Z += b
    return nhwc_to_nchw(Z) if layout == "nchw" else Z


def _depthwise_forward(A_pad, W, geom, Zc) -> None:
    """Z (chunk) = sum over kernel offsets of shifted input times per-channel weights."""
    m, oh, ow, n_C = Zc.shape
    C = A_pad.shape[3]
    mult = n_C // C
    Zc.fill(0)
    Zv = Zc.reshape(m, oh, ow, C, mult)
    for i, j, (rows, cs) in window_slices(geom):
        src = A_pad[:, rows, cs, :]
        if mult == 1:
            Zc += src * W[i, j, 0]
        else:
            Zv += src[..., None] * W[i, j, 0].reshape(C, mult)


def conv2d_backward(
    dZ,
    A_prev,
    W,
    params: Optional[ConvParams] = None,
    *,
    layout: str = "nhwc",
    workspace_bytes: Optional[int] = None,
) -> ConvGrads:
    """Convolution backward pass.

    Parameters
    ----------
    dZ : ndarray, shape (m, n_H, n_W, n_C)
        Gradient of the loss with respect to the output.
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
        The forward input.
    W : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
        The forward filters.
    params : ConvParams, optional
        The forward hyperparameters.
    layout : {"nhwc", "nchw"}
        Layout of the inputs and of the returned gradients.
    workspace_bytes : int, optional
        Cap of the per-chunk workspace; default 256 MiB.

    Returns
    -------
    ConvGrads
        ``dA_prev`` shaped like ``A_prev``, ``dW`` like ``W``, ``db`` (n_C,).
        Unpacks as ``dA_prev, dW, db = conv2d_backward(...)``.

    Raises
    ------
    ShapeError
        As :func:`conv2d`, or ``dZ`` not of the forward output's shape.
    HyperparameterError
        As :func:`conv2d`.
    """
    params = params or ConvParams()
    check_layout(layout)
    A_prev, W, _ = conv_in(A_prev, W, None, layout)
    dZ = nchw_to_nhwc(np.asarray(dZ)) if layout == "nchw" and np.ndim(dZ) == 4 else np.asarray(dZ)
    A_prev, W, _, geom = _check(A_prev, W, None, params)
    m, H, Wd, n_C_prev = A_prev.shape
    kh, kw, c_g, n_C = W.shape
    groups = n_C_prev // c_g
    expected = (m,) + geom.out_hw + (n_C,)
    if dZ.shape != expected:
        raise ShapeError(f"dZ must have the forward output's shape {expected}, got {dZ.shape}")
    dtype = compute_dtype(A_prev, W, dZ)
    A_prev, W, dZ = (x.astype(dtype, copy=False) for x in (A_prev, W, dZ))
    dA_prev = np.empty(A_prev.shape, dtype=dtype)
    dW = np.zeros(W.shape, dtype=dtype)
    db = dZ.sum(axis=(0, 1, 2))
    per_example = 2 * _workspace_per_example(geom, n_C_prev, n_C, A_prev.itemsize)
    for chunk in batch_chunks(m, per_example, workspace_bytes):
        A_pad = padded(A_prev[chunk], geom)
        dZc = dZ[chunk]
        mc = dZc.shape[0]
        dA_pad = np.zeros((mc,) + A_pad.shape[1:], dtype=dtype)
        if c_g == 1 and groups > 1:
            _depthwise_backward(A_pad, W, dZc, geom, dA_pad, dW)
        else:
            cols = _im2col(A_pad, geom, groups)  # (g, M, K)
            Wg = _grouped_weights(W, groups)  # (g, K, n_g)
            dZg = dZc.reshape(-1, groups, n_C // groups).transpose(1, 0, 2)  # (g, M, n_g)
            dWg = np.matmul(cols.transpose(0, 2, 1), dZg)  # (g, K, n_g)
            dW += dWg.transpose(1, 0, 2).reshape(W.shape)
            del cols
            dcols = np.matmul(dZg, Wg.transpose(0, 2, 1))  # (g, M, K)
            dcols = dcols.reshape(groups, mc, *geom.out_hw, kh, kw, c_g)
            for i, j, (rows, cs) in window_slices(geom):
                if groups == 1:
                    dA_pad[:, rows, cs, :] += dcols[0, :, :, :, i, j, :]
                else:
                    dA_pad[:, rows, cs, :] += np.moveaxis(dcols[:, :, :, :, i, j, :], 0, 3).reshape(
                        mc, *geom.out_hw, n_C_prev
                    )
        dA_prev[chunk] = crop(dA_pad, geom)
    if layout == "nchw":
        return ConvGrads(*conv_out_grads(dA_prev, dW, db))
    return ConvGrads(dA_prev, dW, db)


def _depthwise_backward(A_pad, W, dZc, geom, dA_pad, dW) -> None:
    """Accumulate dA_pad and dW for a depthwise chunk, one kernel offset at a time."""
    m, oh, ow, n_C = dZc.shape
    C = A_pad.shape[3]
    mult = n_C // C
    dZv = dZc.reshape(m, oh, ow, C, mult)
    for i, j, (rows, cs) in window_slices(geom):
        src = A_pad[:, rows, cs, :]
        if mult == 1:
            dW[i, j, 0] += np.einsum("mhwc,mhwc->c", src, dZc)
            dA_pad[:, rows, cs, :] += dZc * W[i, j, 0]
        else:
            dW[i, j, 0] += np.einsum("mhwc,mhwck->ck", src, dZv).reshape(n_C)
            dA_pad[:, rows, cs, :] += np.einsum("mhwck,ck->mhwc", dZv, W[i, j, 0].reshape(C, mult))
