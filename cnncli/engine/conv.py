"""Fast 2-D convolution, forward and backward, NHWC, over BLAS.

Strategy: the input patches of a chunk of the batch are unrolled ("im2col": one
strided copy per kernel offset, split over a few threads since numpy releases
the GIL in copies) into a small reused workspace, and the convolution is one
matrix product per chunk, written straight into the output. Taps that fall in
the padding are clipped instead of copying a zero-padded input. The input
gradient is a transposed convolution computed one stride phase at a time (or,
for layers that widen the channels a lot, a product followed by a scatter-add).
A depthwise convolution (one input channel per group) has nothing for a matrix
product to gain, so it is a multiply-accumulate per kernel offset instead.
Chunks are sized to stay in cache and never exceed the workspace cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import ShapeError
from ._common import as_nhwc, clipped_taps, compute_dtype, plan_chunks, run_parallel, split, threads, valid_range
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


# --- patch unrolling -------------------------------------------------------
# A "window plan" describes a correlation on one axis: output o reads source rows
# o*step + offs[a] for each tap a (rows outside the source read as zeros). The
# forward pass uses offs[a] = a*dilation - pad_before; each stride phase of the
# input gradient is a correlation of dZ with a subset of taps (see _phase_plans).
# Clipping each tap's range replaces a zero-padded copy of the input.


def _unroll_part(X, cols, base, e0, e1, r0, r1, step, offs_h, offs_w):
    """Fill ``cols[e - base[0], r - base[1]]`` for examples [e0, e1), output rows [r0, r1).

    cols: (ne, nr, n_W, groups, ka, kb, c_g) view; zero where a tap reads outside X.
    """
    H, Wd = X.shape[1:3]
    groups, c_g = cols.shape[3], cols.shape[6]
    sh, sw = step
    n_W = cols.shape[2]
    dst = cols[e0 - base[0]:e1 - base[0], r0 - base[1]:r1 - base[1]]
    src_e = X[e0:e1]
    for a, oa in enumerate(offs_h):
        h_lo, h_hi, rows = valid_range(r0, r1, sh, oa, H)
        h_lo, h_hi = h_lo - r0, h_hi - r0
        dst[:, :h_lo, :, :, a] = 0
        dst[:, h_hi:, :, :, a] = 0
        if h_lo == h_hi:
            continue
        for b, ob in enumerate(offs_w):
            w_lo, w_hi, cs = valid_range(0, n_W, sw, ob, Wd)
            d = dst[:, h_lo:h_hi, :, :, a, b]
            d[:, :, :w_lo] = 0
            d[:, :, w_hi:] = 0
            if w_lo < w_hi:
                src = src_e[:, rows, cs]
                d[:, :, w_lo:w_hi] = src.reshape(src.shape[:3] + (groups, c_g))


def _unroll(X, cols, e0, e1, r0, r1, step, offs_h, offs_w) -> None:
    """Unroll the patches of a chunk into ``cols``, split over the worker threads."""
    base = (e0, r0)
    if cols.nbytes < 2**18:  # threads cost more than they save on small chunks
        pieces = [(e0, e1, r0, r1)]
    elif e1 - e0 >= threads():
        pieces = [(a, b, r0, r1) for a, b in split(e0, e1, threads())]
    else:
        per = max(1, threads() // (e1 - e0))
        pieces = [(e, e + 1, a, b) for e in range(e0, e1) for a, b in split(r0, r1, per)]
    run_parallel(lambda *p: _unroll_part(X, cols, base, *p, step, offs_h, offs_w), pieces)


def _fold_part(dX, cols, e0, e1, step, offs_h, offs_w, r0, r1):
    """Adjoint of :func:`_unroll_part`: ``dX[e0:e1]`` += the taps of ``cols`` (rows [r0, r1))."""
    H, Wd = dX.shape[1:3]
    groups, c_g = cols.shape[3], cols.shape[6]
    sh, sw = step
    n_W = cols.shape[2]
    for a, oa in enumerate(offs_h):
        h_lo, h_hi, rows = valid_range(r0, r1, sh, oa, H)
        if h_lo == h_hi:
            continue
        for b, ob in enumerate(offs_w):
            w_lo, w_hi, cs = valid_range(0, n_W, sw, ob, Wd)
            if w_lo < w_hi:
                d = dX[e0:e1, rows, cs]
                d += cols[:, h_lo - r0:h_hi - r0, w_lo:w_hi, :, a, b].reshape(d.shape)


def _fold(dX, cols, e0, e1, r0, r1, step, offs_h, offs_w) -> None:
    """Scatter-add a chunk's patch gradients into ``dX``; threads split examples (disjoint writes)."""
    if cols.nbytes < 2**18 or e1 - e0 < 2:
        _fold_part(dX, cols, e0, e1, step, offs_h, offs_w, r0, r1)
        return
    run_parallel(lambda a, b: _fold_part(dX, cols[a - e0:b - e0], a, b, step, offs_h, offs_w, r0, r1),
                 split(e0, e1, threads()))


def _is_identity(step, offs_h, offs_w) -> bool:
    """A 1x1 window at stride 1 without padding: the patches are the input itself."""
    return tuple(step) == (1, 1) and list(offs_h) == [0] and list(offs_w) == [0]


def _chunk_buffer(chunks, n_W, per_row, dtype):
    rows = max((e1 - e0) * (r1 - r0) for e0, e1, r0, r1 in chunks)
    return np.empty(rows * n_W * per_row, dtype=dtype)


def _correlate(X, Wg, out, step, offs_h, offs_w, workspace_bytes, bias=None) -> None:
    """``out[e, r, w, (g, n)] = sum_{a, b, c} X[e, r*sh + offs_h[a], w*sw + offs_w[b], (g, c)] Wg[g, (a, b, c), n]``.

    X: (m, H, W, groups*c_g); Wg: (groups, ka*kb*c_g, n_g); out: (m, n_H, n_W, groups*n_g), any strides.
    """
    m, n_H, n_W, n_out = out.shape
    groups, K, n_g = Wg.shape
    c_g = X.shape[3] // groups
    ka, kb = len(offs_h), len(offs_w)
    direct = out.flags.c_contiguous
    identity = groups == 1 and _is_identity(step, offs_h, offs_w) and X.shape[1:3] == (n_H, n_W)
    per_row = n_W * groups * K * X.itemsize * (0 if identity else 1) + (0 if direct else n_W * n_out * X.itemsize)
    chunks = plan_chunks(m, n_H, max(per_row, n_W * n_out * X.itemsize), workspace_bytes)
    buf = None if identity else _chunk_buffer(chunks, n_W, groups * K, X.dtype)
    tmp = None if direct else _chunk_buffer(chunks, n_W, n_out, X.dtype)
    for e0, e1, r0, r1 in chunks:
        Mc = (e1 - e0) * (r1 - r0) * n_W
        if identity:
            cols = X[e0:e1, r0:r1].reshape(Mc, 1, K)
        else:
            cols = buf[:Mc * groups * K].reshape(e1 - e0, r1 - r0, n_W, groups, ka, kb, c_g)
            _unroll(X, cols, e0, e1, r0, r1, step, offs_h, offs_w)
            cols = cols.reshape(Mc, groups, K)
        res = out[e0:e1, r0:r1].reshape(Mc, n_out) if direct else tmp[:Mc * n_out].reshape(Mc, n_out)
        if groups == 1:
            np.matmul(cols[:, 0], Wg[0], out=res)
        else:
            np.matmul(cols.transpose(1, 0, 2), Wg, out=res.reshape(Mc, groups, n_g).transpose(1, 0, 2))
        if bias is not None:
            res += bias
        if not direct:
            out[e0:e1, r0:r1] = res.reshape(e1 - e0, r1 - r0, n_W, n_out)


def _forward_plan(geom: WindowGeometry):
    """(step, offs_h, offs_w) of the forward correlation: tap a reads row o*stride + a*dilation - pad."""
    (kh, kw), (dh, dw) = geom.kernel, geom.dilation
    t, _, l, _ = geom.pads
    return geom.stride, [a * dh - t for a in range(kh)], [b * dw - l for b in range(kw)]


def _grouped_weights(W: np.ndarray, groups: int) -> np.ndarray:
    """(f_h, f_w, c_g, n_C) -> (groups, f_h*f_w*c_g, n_C/groups), matching the patch order (a, b, c)."""
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
        Size of the per-chunk workspace (unrolled patches). Default: a few MiB,
        chosen so a chunk stays in cache (never more than 256 MiB).

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
    if c_g == 1 and groups > 1:
        _depthwise_forward(A_prev, W, geom, Z, workspace_bytes)
        if b is not None:
            Z += b
    else:
        step, offs_h, offs_w = _forward_plan(geom)
        _correlate(A_prev, _grouped_weights(W, groups), Z, step, offs_h, offs_w, workspace_bytes, b)
    return nhwc_to_nchw(Z) if layout == "nchw" else Z


def _rows(x: np.ndarray):
    """``x`` with its last two axes merged into one (a view), or None when strides forbid it."""
    if x.strides[-2] != x.shape[-1] * x.strides[-1]:
        return None
    return x.reshape(x.shape[:-2] + (-1,))


def _mac(dst, src, w, tmp, init: bool) -> None:
    """``dst = src * w`` (init) or ``dst += src * w``, w per channel (last axis).

    Broadcasting w over (e, h, w) gives numpy inner loops of one pixel's
    channels; merging (w, C) into one axis against w tiled along the row makes
    them a whole row long, several times faster.
    """
    rs, rd = _rows(src), _rows(dst)
    if rs is not None and rd is not None:
        src, dst, tmp, w = rs, rd, _rows(tmp), np.tile(w, src.shape[2])
    if init:
        np.multiply(src, w, out=dst)
    else:
        np.multiply(src, w, out=tmp)
        dst += tmp


def _depthwise_forward(A, W, geom, Z, workspace_bytes) -> None:
    """Z = sum over taps of the shifted input times per-channel weights (no matrix product to gain)."""
    m, n_H, n_W, n_C = Z.shape
    C = A.shape[3]
    mult = n_C // C
    Wr = W.reshape(W.shape[0], W.shape[1], C, mult)

    def chunk(e0, e1, r0, r1):
        Zc = Z[e0:e1, r0:r1]
        tmp = np.empty(Zc.shape, dtype=Z.dtype)
        taps = list(clipped_taps(geom, r0, r1))
        # A tap that covers every output initialises Z (saves a fill and an add).
        full = [k for k, tap in enumerate(taps) if tap[2] == slice(0, r1 - r0) and tap[3] == slice(0, n_W)]
        if mult == 1 and full:
            taps.insert(0, taps.pop(full[0]))
        else:
            Zc.fill(0)
        for k, (a, b, ho, wo, rows, cs) in enumerate(taps):
            src = A[e0:e1, rows, cs]
            if mult == 1:
                _mac(Zc[:, ho, wo], src, Wr[a, b, :, 0], tmp[:, ho, wo], init=k == 0 and bool(full))
            else:
                t = tmp.reshape(Zc.shape[:3] + (C, mult))[:, ho, wo]
                np.multiply(src[..., None], Wr[a, b], out=t)
                Zc.reshape(Zc.shape[:3] + (C, mult))[:, ho, wo] += t

    run_parallel(chunk, plan_chunks(m, n_H, 2 * n_W * n_C * Z.itemsize, workspace_bytes, target=2**20))


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
        Size of the per-chunk workspace (unrolled patches). Default: a few MiB,
        chosen so a chunk stays in cache (never more than 256 MiB).

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
    dW = np.zeros(W.shape, dtype=dtype)
    db = dZ.sum(axis=(0, 1, 2))
    if c_g == 1 and groups > 1:
        dA_prev = np.zeros(A_prev.shape, dtype=dtype)
        _depthwise_backward(A_prev, W, dZ, geom, dA_prev, dW, workspace_bytes)
    else:
        n_g = n_C // groups
        step, offs_h, offs_w = _forward_plan(geom)
        _weight_grad(A_prev, dZ, dW.reshape(-1, groups, n_g).transpose(1, 0, 2), step, offs_h, offs_w,
                     workspace_bytes)
        dA_prev = _input_grad(dZ, W, geom, groups, A_prev.shape, workspace_bytes)
    if layout == "nchw":
        return ConvGrads(*conv_out_grads(dA_prev, dW, db))
    return ConvGrads(dA_prev, dW, db)


def _weight_grad(X, dZ, dWg, step, offs_h, offs_w, workspace_bytes) -> None:
    """dWg (groups, K, n_g) += patches(X)^T @ dZ, chunk by chunk."""
    m, n_H, n_W, _ = dZ.shape
    groups, K, n_g = dWg.shape
    ka, kb, c_g = len(offs_h), len(offs_w), X.shape[3] // groups
    identity = groups == 1 and _is_identity(step, offs_h, offs_w) and X.shape[1:3] == (n_H, n_W)
    chunks = plan_chunks(m, n_H, n_W * max(groups * K * (not identity), 1) * X.itemsize, workspace_bytes)
    buf = None if identity else _chunk_buffer(chunks, n_W, groups * K, X.dtype)
    part = np.empty((groups, K, n_g), dtype=X.dtype)
    for e0, e1, r0, r1 in chunks:
        Mc = (e1 - e0) * (r1 - r0) * n_W
        if identity:
            cols = X[e0:e1, r0:r1].reshape(Mc, 1, K)
        else:
            cols = buf[:Mc * groups * K].reshape(e1 - e0, r1 - r0, n_W, groups, ka, kb, c_g)
            _unroll(X, cols, e0, e1, r0, r1, step, offs_h, offs_w)
            cols = cols.reshape(Mc, groups, K)
        dZc = dZ[e0:e1, r0:r1].reshape(Mc, groups, n_g)
        np.matmul(cols.transpose(1, 2, 0), dZc.transpose(1, 0, 2), out=part)
        dWg += part


def _input_grad(dZ, W, geom: WindowGeometry, groups: int, shape, workspace_bytes) -> np.ndarray:
    """dA_prev of a grouped convolution.

    Two exact ways, chosen by cost: (1) a transposed convolution, one stride
    phase of dA_prev at a time (each phase is a plain correlation of dZ with the
    taps that land on it: patch copies + one product, no scatter-add); (2) the
    product dZ @ W^T followed by a scatter-add of the patch gradients ("col2im").
    (1) copies about n_C/n_C_prev times as much as (2) adds, so it wins unless
    the layer widens the channels a lot (e.g. a 3-channel stem).
    """
    m, H, Wd, C = shape
    kh, kw, c_g, n_C = W.shape
    n_g = n_C // groups
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    t, _, l, _ = geom.pads
    if n_g <= 2 * c_g:
        dA = np.empty(shape, dtype=dZ.dtype)
        for p, taps_h, offs_h in _phase_plans(kh, sh, dh, t):
            for q, taps_w, offs_w in _phase_plans(kw, sw, dw, l):
                out = dA[:, p::sh, q::sw]
                if out.size == 0:
                    continue
                if not taps_h or not taps_w:  # no tap lands on this phase (stride and dilation share a factor)
                    out[...] = 0
                    continue
                Wsub = W[np.ix_(taps_h, taps_w)].reshape(len(taps_h), len(taps_w), c_g, groups, n_g)
                Wt = Wsub.transpose(3, 0, 1, 4, 2).reshape(groups, -1, c_g)
                _correlate(dZ, Wt, out, (1, 1), offs_h, offs_w, workspace_bytes)
        return dA
    dA = np.zeros(shape, dtype=dZ.dtype)
    step, offs_h, offs_w = _forward_plan(geom)
    m, n_H, n_W, _ = dZ.shape
    K = kh * kw * c_g
    WgT = _grouped_weights(W, groups).transpose(0, 2, 1)  # (groups, n_g, K)
    chunks = plan_chunks(m, n_H, n_W * groups * K * dZ.itemsize, workspace_bytes)
    buf = _chunk_buffer(chunks, n_W, groups * K, dZ.dtype)
    for e0, e1, r0, r1 in chunks:
        Mc = (e1 - e0) * (r1 - r0) * n_W
        dcols = buf[:Mc * groups * K].reshape(e1 - e0, r1 - r0, n_W, groups, kh, kw, c_g)
        dZc = dZ[e0:e1, r0:r1].reshape(Mc, groups, n_g)
        np.matmul(dZc.transpose(1, 0, 2), WgT, out=dcols.reshape(Mc, groups, K).transpose(1, 0, 2))
        _fold(dA, dcols, e0, e1, r0, r1, step, offs_h, offs_w)
    return dA


def _phase_plans(k: int, s: int, d: int, pad_before: int):
    """Per stride phase p of the input gradient: (p, taps, offsets into dZ).

    Input row y = Y*s + p receives dZ row h from tap a when h*s + a*d - pad == y,
    i.e. h = Y + (p - a*d + pad) / s for the taps where that division is exact.
    """
    plans = []
    for p in range(s):
        taps = [a for a in range(k) if (p - a * d + pad_before) % s == 0]
        plans.append((p, taps, [(p - a * d + pad_before) // s for a in taps]))
    return plans


def _depthwise_backward(A, W, dZ, geom, dA, dW, workspace_bytes) -> None:
    """dA and dW of a depthwise convolution, one tap at a time; threads take disjoint examples."""
    m, n_H, n_W, n_C = dZ.shape
    C = A.shape[3]
    mult = n_C // C
    Wr = W.reshape(W.shape[0], W.shape[1], C, mult)
    chunks = plan_chunks(m, n_H, 2 * n_W * n_C * dZ.itemsize, workspace_bytes, target=2**20)
    # Row blocks of one example write overlapping rows of dA: keep such chunks on one thread.
    whole = chunks[0][3] - chunks[0][2] == n_H
    shares = [chunks[a:b] for a, b in split(0, len(chunks), threads() if whole else 1)]
    partial = [np.zeros(dW.shape, dtype=dW.dtype) for _ in shares]

    def work(share, dW_part):
        dWr = dW_part.reshape(Wr.shape)
        for e0, e1, r0, r1 in share:
            g = dZ[e0:e1, r0:r1]
            if mult == 1:
                tmp = np.empty(A[e0:e1].shape, dtype=dZ.dtype)
                for a, b, ho, wo, rows, cs in clipped_taps(geom, r0, r1):
                    src, gv = A[e0:e1, rows, cs], g[:, ho, wo]
                    dWr[a, b, :, 0] += np.einsum("ehwc,ehwc->c", gv, src)
                    _mac(dA[e0:e1, rows, cs], gv, Wr[a, b, :, 0], tmp[:, rows, cs], init=False)
                continue
            g = g.reshape(g.shape[:3] + (C, mult))
            for a, b, ho, wo, rows, cs in clipped_taps(geom, r0, r1):
                src, gv = A[e0:e1, rows, cs], g[:, ho, wo]
                dWr[a, b] += np.einsum("ehwcq,ehwc->cq", gv, src)
                dA[e0:e1, rows, cs] += np.einsum("ehwcq,cq->ehwc", gv, Wr[a, b])

    run_parallel(work, list(zip(shares, partial)))
    for part in partial:
        dW += part
