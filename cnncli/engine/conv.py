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

Loop twins (the test oracle): :func:`cnncli.engine.reference.conv_forward_loops`
and :func:`cnncli.engine.reference.conv_backward_loops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ShapeError
from ._common import CHUNK_TARGET_BYTES, float32_if_all_float32, plan_chunks, threads
from ._depthwise import depthwise_backward, depthwise_forward
from ._jit import winograd_kernels
from ._unroll import (chunk_buffer, correlate, is_identity, run_shares, share_chunks, tap_major_adjoint_pays,
                      tap_major_scratch_per_row, unroll_adjoint, unroll_adjoint_part, unroll_adjoint_planar,
                      weight_grad)
from ._winograd import applies as winograd_applies
from ._winograd import correlate3x3, weight_grad3x3
from .geometry import WindowGeometry
from .layout import check_layout, conv_in, conv_out_grads, nchw_to_nhwc, nhwc_to_nchw
from .params import ConvParams
from .shapes import check_conv_shapes, check_layer_fits


@dataclass(frozen=True)
class ConvGrads:
    """Gradients of a convolution.

    Attributes
    ----------
    dA_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev), or None
        None when the backward pass was asked for ``dW`` and ``db`` only.
    dW : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
    db : ndarray, shape (n_C,)
    """

    dA_prev: Optional[np.ndarray]
    dW: np.ndarray
    db: np.ndarray

    def __iter__(self):
        return iter((self.dA_prev, self.dW, self.db))


def _check(A_prev, W, b, params: ConvParams):
    """Validate shapes; return arrays in the compute dtype, the geometry and the bias (n_C,)."""
    A_prev, W = np.asarray(A_prev), np.asarray(W)
    b = None if b is None else np.asarray(b)
    check_conv_shapes(A_prev.shape, W.shape, None if b is None else b.shape, params.groups)
    dtype = float32_if_all_float32(*[x for x in (A_prev, W, b) if x is not None])
    A_prev, W = A_prev.astype(dtype, copy=False), W.astype(dtype, copy=False)
    bias = None if b is None else b.reshape(W.shape[3]).astype(dtype, copy=False)
    geom = params.geometry(A_prev.shape[1:3], W.shape[:2]).single_window_strides()
    return A_prev, W, bias, geom


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
    layout = check_layout(layout)
    A_prev, W, b = conv_in(A_prev, W, b, layout)
    A_prev, W, b, geom = _check(A_prev, W, b, params)
    m, _, _, n_C_prev = A_prev.shape
    kh, kw, c_g, n_C = W.shape
    check_layer_fits(geom, m, n_C_prev, n_C, A_prev.itemsize)
    groups = n_C_prev // c_g
    oh, ow = geom.out_hw
    Z = np.empty((m, oh, ow, n_C), dtype=A_prev.dtype)
    if c_g == 1 and groups > 1:
        depthwise_forward(A_prev, W, geom, Z, workspace_bytes)
        if b is not None:
            Z += b
    elif (winograd := _winograd(geom, W.shape, groups, Z.dtype, Z.size * kh * kw * c_g)) is not None:
        t, _, l, _ = geom.pads
        correlate3x3(A_prev, W, Z, t, l, b, workspace_bytes, winograd)
    else:
        step, offs_h, offs_w = _forward_plan(geom)
        correlate(A_prev, _grouped_weights(W, groups), Z, step, offs_h, offs_w, workspace_bytes, b)
    return nhwc_to_nchw(Z) if layout == "nchw" else Z


def _winograd(geom: WindowGeometry, W_shape, groups: int, dtype, macs: int):
    """The compiled Winograd transforms when they compute this layer (``_winograd``), else None."""
    if not winograd_applies(W_shape[:2], geom.stride, geom.dilation, groups, dtype):
        return None
    return winograd_kernels(macs, W_shape[2], W_shape[3])


def conv2d_backward(
    dZ,
    A_prev,
    W,
    params: Optional[ConvParams] = None,
    *,
    layout: str = "nhwc",
    workspace_bytes: Optional[int] = None,
    input_grad: bool = True,
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
    input_grad : bool
        False skips ``dA_prev`` (returned as None): about half the work of a
        backward pass, for callers that need only ``dW`` and ``db`` (a depthwise
        layer computes both in one pass and drops it).

    Returns
    -------
    ConvGrads
        ``dA_prev`` shaped like ``A_prev`` (None without ``input_grad``), ``dW`` like
        ``W``, ``db`` (n_C,). Unpacks as ``dA_prev, dW, db = conv2d_backward(...)``.

    Raises
    ------
    ShapeError
        As :func:`conv2d`, or ``dZ`` not of the forward output's shape.
    HyperparameterError
        As :func:`conv2d`.
    """
    params = params or ConvParams()
    layout = check_layout(layout)
    A_prev, W, _ = conv_in(A_prev, W, None, layout)
    dZ = nchw_to_nhwc(np.asarray(dZ)) if layout == "nchw" and np.ndim(dZ) == 4 else np.asarray(dZ)
    A_prev, W, _, geom = _check(A_prev, W, None, params)
    m, H, Wd, n_C_prev = A_prev.shape
    kh, kw, c_g, n_C = W.shape
    groups = n_C_prev // c_g
    expected = (m,) + geom.out_hw + (n_C,)
    if dZ.shape != expected:
        raise ShapeError(f"dZ must have the forward output's shape {expected}, got {dZ.shape}")
    dtype = float32_if_all_float32(A_prev, W, dZ)
    A_prev, W, dZ = (x.astype(dtype, copy=False) for x in (A_prev, W, dZ))
    plan = backward_strategy(geom, A_prev.shape, W.shape, dtype.itemsize)
    db = dZ.sum(axis=(0, 1, 2))  # db = sum of dZ over examples and positions
    if plan.depthwise:
        dA_prev, dW = np.zeros(A_prev.shape, dtype=dtype), np.zeros(W.shape, dtype=dtype)
        depthwise_backward(A_prev, W, dZ, geom, dA_prev, dW, workspace_bytes)
        dA_prev = dA_prev if input_grad else None
    elif plan.pointwise:
        # The patches are A_prev itself: dW = A_prev^T . dZ and dA_prev = dZ . W^T, chunk by chunk on the
        # engine's threads (one product each on OpenBLAS's threads would leave its idle one spinning on a
        # core after them, while the engine's threads need both)
        dW = _weight_grad_unrolled(A_prev, dZ, W.shape, geom, 1, workspace_bytes)
        dA_prev = None
        if input_grad:
            dA_prev = np.empty(A_prev.shape, dtype=dtype)
            correlate(dZ, np.ascontiguousarray(W.reshape(n_C_prev, n_C).T)[None], dA_prev, (1, 1), [0], [0],
                      workspace_bytes)
    else:
        winograd = _winograd(geom, W.shape, groups, dtype, dZ.size * kh * kw * c_g * (2 if input_grad else 1))
        t, _, l, _ = geom.pads
        # dW = patches(A_prev)^T . dZ (by the transposed transforms where they apply)
        dW = None if winograd is None else weight_grad3x3(A_prev, dZ, t, l, workspace_bytes, winograd)
        if dW is None:
            dW = _weight_grad_unrolled(A_prev, dZ, W.shape, geom, groups, workspace_bytes)
        # dA_prev = col2im(dZ . W^T), or the same sum as one transposed correlation per stride phase
        if not input_grad:
            dA_prev = None
        elif winograd is not None:
            # the correlation of dZ with the flipped, transposed taps: dA_prev[y] = sum_a dZ[y + t - a] W[a]
            dA_prev = np.empty(A_prev.shape, dtype=dtype)
            correlate3x3(dZ, np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2)), dA_prev, 2 - t, 2 - l, None,
                         workspace_bytes, winograd)
        elif plan.transposed_input_grad:
            dA_prev = _input_grad_transposed(dZ, W, geom, groups, A_prev.shape, workspace_bytes)
        else:
            dA_prev = _input_grad_col2im(dZ, W, geom, groups, A_prev.shape, workspace_bytes)
    if layout == "nchw":
        return ConvGrads(*conv_out_grads(dA_prev, dW, db))
    return ConvGrads(dA_prev, dW, db)


#: Below this many bytes of unrolled patches a layer is "tiny" (gradient checks call such layers
#: thousands of times): it takes the strategies with the fewest steps, whatever their per-byte cost.
TINY_LAYER_BYTES = 2**18


@dataclass(frozen=True)
class BackwardStrategy:
    """How :func:`conv2d_backward` computes its gradients (all strategies are exact).

    Attributes
    ----------
    depthwise : bool
        One input channel per group: a multiply-accumulate per tap for dA_prev and dW.
    pointwise : bool
        A 1x1 window at stride 1, no padding, one group: the patches are the input, so
        dW and dA_prev are products of the input's and dZ's own chunks (no unrolling).
    transposed_input_grad : bool
        dA_prev as a transposed correlation, one stride phase at a time, instead of
        the product dZ . W^T followed by a scatter-add (col2im).
    """

    depthwise: bool
    transposed_input_grad: bool
    pointwise: bool = False


def backward_strategy(geom: WindowGeometry, A_shape, W_shape, itemsize: int) -> BackwardStrategy:
    """Pick the backward strategy of a convolution from its sizes.

    - depthwise when each group has one input channel (and there are several groups):
      nothing for a matrix product to gain;
    - pointwise for a 1x1 window at stride 1 without padding and one group: the
      patches are the input itself, nothing is unrolled;
    - the transposed dA_prev unless the layer is tiny or widens the channels per group
      more than twice at stride 1, or at all at a larger stride: it copies about
      n_C/n_C_prev times as much as col2im adds, and an add costs about twice a copy
      (timings in benchmarks/README.md).
    """
    m = A_shape[0]
    kh, kw, c_g, n_C = W_shape
    groups = A_shape[3] // c_g
    if c_g == 1 and groups > 1:
        return BackwardStrategy(True, False)
    patch_bytes = m * geom.out_hw[0] * geom.out_hw[1] * kh * kw * c_g * groups * itemsize
    tiny = patch_bytes < TINY_LAYER_BYTES
    step, offs_h, offs_w = _forward_plan(geom)
    if groups == 1 and is_identity(step, offs_h, offs_w) and geom.out_hw == geom.in_hw:
        return BackwardStrategy(False, False, pointwise=True)
    widening = 2 if geom.stride == (1, 1) else 1
    return BackwardStrategy(False, not tiny and n_C // groups <= c_g * widening)


def _weight_grad_unrolled(A_prev, dZ, W_shape, geom: WindowGeometry, groups: int, workspace_bytes) -> np.ndarray:
    """dW = patches(A_prev)^T . dZ with the patches unrolled chunk by chunk."""
    dW = np.zeros(W_shape, dtype=dZ.dtype)
    step, offs_h, offs_w = _forward_plan(geom)
    weight_grad(A_prev, dZ, dW.reshape(-1, groups, W_shape[3] // groups).transpose(1, 0, 2), step, offs_h, offs_w,
                workspace_bytes)
    return dW


def _input_grad_transposed(dZ, W, geom: WindowGeometry, groups: int, shape, workspace_bytes) -> np.ndarray:
    """dA_prev as a transposed convolution, one stride phase of dA_prev at a time.

    Each phase is a plain correlation of dZ with the taps that land on it: patch
    copies and one product, no scatter-add.
    """
    kh, kw, c_g, n_C = W.shape
    n_g = n_C // groups
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    t, _, l, _ = geom.pads
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
            correlate(dZ, Wt, out, (1, 1), offs_h, offs_w, workspace_bytes)
    return dA


def _input_grad_col2im(dZ, W, geom: WindowGeometry, groups: int, shape, workspace_bytes) -> np.ndarray:
    """dA_prev = col2im(dZ . W^T): per chunk, the patch gradients, then their scatter-add."""
    kh, kw, c_g, n_C = W.shape
    n_g = n_C // groups
    dA = np.zeros(shape, dtype=dZ.dtype)
    step, offs_h, offs_w = _forward_plan(geom)
    m, n_H, n_W, _ = dZ.shape
    K = kh * kw * c_g
    WgT = _grouped_weights(W, groups).transpose(0, 2, 1)  # (groups, n_g, K)
    tap_major = tap_major_adjoint_pays(groups, (kh, kw), c_g, n_W, step, offs_w)
    # a chunk's workspace per output row: its patch gradients, and the tap-major adjoint's planes
    row_bytes = n_W * groups * K * dZ.itemsize + (tap_major_scratch_per_row(n_W, c_g, step, offs_w, dZ.itemsize)
                                                  if tap_major else 0)
    per_example = n_H * row_bytes
    # Threads split the adjoint by examples only (row blocks overlap), so aim for several per chunk.
    chunks = plan_chunks(m, n_H, row_bytes, workspace_bytes,
                         target=max(CHUNK_TARGET_BYTES, min(threads() * per_example, 16 * 2**20)))
    # Whole-example chunks write disjoint rows of dA: worker threads may take whole chunks each.
    shares = share_chunks(chunks) if all(r1 - r0 == n_H for _, _, r0, r1 in chunks) else [chunks]
    Wk = np.ascontiguousarray(W.reshape(K, n_C)) if tap_major else None
    part = unroll_adjoint_planar if tap_major else unroll_adjoint_part

    def work(share):
        buf = chunk_buffer(share, n_W, groups * K, dZ.dtype)
        for e0, e1, r0, r1 in share:
            Mc = (e1 - e0) * (r1 - r0) * n_W
            dZc = dZ[e0:e1, r0:r1].reshape(Mc, groups, n_g)
            if tap_major:  # the patch gradients transposed, (K, Mc) = W . dZ^T
                dcols = buf[:K * Mc].reshape(K, Mc)
                np.matmul(Wk, dZc[:, 0].T, out=dcols)
                dcols = dcols.reshape(kh, kw, c_g, e1 - e0, r1 - r0, n_W)
            else:
                dcols = buf[:Mc * groups * K].reshape(e1 - e0, r1 - r0, n_W, groups, kh, kw, c_g)
                np.matmul(dZc.transpose(1, 0, 2), WgT, out=dcols.reshape(Mc, groups, K).transpose(1, 0, 2))
            if len(shares) > 1:
                part(dA, dcols, e0, e1, step, offs_h, offs_w, r0, r1)
            else:
                unroll_adjoint(dA, dcols, e0, e1, r0, r1, step, offs_h, offs_w, tap_major)

    run_shares(work, shares)
    return dA


def _phase_plans(k: int, s: int, d: int, pad_before: int):
    """Per stride phase p of the input gradient: (p, taps, offsets into dZ).

    Input row y = Y*s + p receives dZ row h from tap a when h*s + a*d - pad == y,
    i.e. h = Y + (p - a*d + pad) / s for the taps where that division is exact.
    """
    plans = []
    for p in range(s):
        # Last tap first: offsets then increase, evenly spaced, which lets the unroll be one strided copy.
        taps = [a for a in range(k - 1, -1, -1) if (p - a * d + pad_before) % s == 0]
        plans.append((p, taps, [(p - a * d + pad_before) // s for a in taps]))
    return plans
