"""Fast 2-D max and average pooling, forward and backward, NHWC.

Both passes loop over the f_h*f_w kernel offsets only; each step is one
vectorized operation over a cache-sized chunk of the batch, the chunks shared
out over a few threads (numpy releases the GIL in ufunc loops). Taps that fall
in the padding or the ceil-mode overflow are clipped rather than read from a
padded copy. Max-pool backward finds each window's first maximum by
compare-and-select (running maximum, uint8 tap number; uint32 from 256 taps)
on the stride's phase planes, then adds the gradients into the winners' flat
indices with one ``np.add.at``.

Loop twins (the test oracle): :func:`cnncli.engine.reference.pool_forward_loops`
and :func:`cnncli.engine.reference.pool_backward_loops`.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from ..errors import ShapeError
from ._common import as_nhwc, clipped_taps, float32_if_all_float32, plan_chunks, run_parallel
from ._jit import max_backward_kernel
from .geometry import WindowGeometry, window_count_runs
from .layout import check_layout, nchw_to_nhwc, nhwc_to_nchw
from .params import PoolParams
from .shapes import check_layer_fits


def _divisor(geom: WindowGeometry, include_pad: bool, dtype) -> np.ndarray:
    """(1, n_H, n_W, 1) window sizes for average pooling."""
    ch, cw = (_counts(*runs, dtype) for runs in window_count_runs(geom, include_pad))
    return (ch[:, None] * cw[None, :])[None, :, :, None]


def _counts(head: list, k: int, n: int, tail: list, dtype) -> np.ndarray:
    """One axis' window counts from their runs (:func:`window_count_runs`): no list as long as the axis."""
    out = np.empty(len(head) + n + len(tail), dtype=dtype)
    out[:len(head)] = head
    out[len(head):len(head) + n] = k
    out[len(head) + n:] = tail
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
        Size of the per-chunk workspace. Default: a few MiB at most (cache-sized).

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
    layout = check_layout(layout)
    A_prev = np.asarray(A_prev)
    if layout == "nchw":
        A_prev = nchw_to_nhwc(A_prev)
    A_prev = as_nhwc(A_prev, "A_prev", float32_if_all_float32(A_prev))
    geom = params.geometry(A_prev.shape[1:3]).single_window_strides()
    m, C = A_prev.shape[0], A_prev.shape[3]
    check_layer_fits(geom, m, C, C, A_prev.itemsize, pool=True)
    A = np.empty((m,) + geom.out_hw + (C,), dtype=A_prev.dtype)
    is_max = params.mode == "max"
    divisor = None if is_max else _divisor(geom, params.count_include_pad, A_prev.dtype)
    n_H, n_W = geom.out_hw

    def chunk(e0, e1, r0, r1):
        out = A[e0:e1, r0:r1]
        out.fill(-np.inf if is_max else 0)  # NOTE: max pooling pads with -inf: padding never wins
        for _, _, ho, wo, rows, cs in clipped_taps(geom, r0, r1):
            o = out[:, ho, wo]
            if is_max:
                np.maximum(o, A_prev[e0:e1, rows, cs], out=o)
            else:
                o += A_prev[e0:e1, rows, cs]
        if not is_max:
            out /= divisor[:, r0:r1]

    run_parallel(chunk, plan_chunks(m, n_H, n_W * C * A.itemsize, workspace_bytes, target=2**20))
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
        Size of the per-chunk workspace. Default: a few MiB at most (cache-sized).

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
    layout = check_layout(layout)
    A_prev, dA = np.asarray(A_prev), np.asarray(dA)
    if layout == "nchw":
        A_prev = nchw_to_nhwc(A_prev)
        dA = nchw_to_nhwc(dA) if dA.ndim == 4 else dA
    dtype = float32_if_all_float32(A_prev, dA)
    A_prev = as_nhwc(A_prev, "A_prev", dtype)
    geom = params.geometry(A_prev.shape[1:3]).single_window_strides()
    m, C = A_prev.shape[0], A_prev.shape[3]
    expected = (m,) + geom.out_hw + (C,)
    if dA.shape != expected:
        raise ShapeError(f"dA must have the forward output's shape {expected}, got {dA.shape}")
    check_layer_fits(geom, m, C, C, dtype.itemsize, pool=True)
    dA = dA.astype(dtype, copy=False)
    is_max = params.mode == "max"
    if is_max:
        dA_prev = np.empty(A_prev.shape, dtype=dtype)
        _max_backward(dA, A_prev, geom, dA_prev, workspace_bytes)
    else:
        dA_prev = np.zeros(A_prev.shape, dtype=dtype)
        scaled = dA / _divisor(geom, params.count_include_pad, dtype)

        def chunk(e0, e1, r0, r1):
            # Disjoint examples per chunk, so threads never add into the same pixels.
            for _, _, ho, wo, rows, cs in clipped_taps(geom):
                dA_prev[e0:e1, rows, cs] += scaled[e0:e1, ho, wo]

        run_parallel(chunk, plan_chunks(m, 1, geom.out_hw[0] * geom.out_hw[1] * C * dtype.itemsize,
                                        workspace_bytes, target=2**20))
    return nhwc_to_nchw(dA_prev) if layout == "nchw" else dA_prev


def _max_backward(dA, A_prev, geom: WindowGeometry, dA_prev, workspace_bytes) -> None:
    """dA_prev of max pooling: each window's gradient to its first maximum in row-major order.

    Compare-and-select over the taps keeps each window's running maximum and the
    number of its tap (uint8, uint32 from 256 taps). With a stride it works on the
    stride's phase planes (``A[:, p::s_h, q::s_w]``, contiguous copies), where a
    tap's pixels are one contiguous block per row instead of a run of n_C. The winners' flat indices in
    dA_prev then take their gradients with one ``np.add.at``. Chunks are whole
    examples, so each chunk writes only its own examples of dA_prev.
    """
    m, H, W, C = A_prev.shape
    n_H, n_W = geom.out_hw
    sh, sw = geom.stride
    dtype = A_prev.dtype
    (dh, dw), (t, _, l, _) = geom.dilation, geom.pads
    (kh, kw) = geom.kernel
    kernel = max_backward_kernel(A_prev, dA, (H * W * C, n_H * n_W * C, kh * dh, kw * dw, sh * n_H, sw * n_W, t, l))
    if kernel is not None:
        def compiled(e0, e1, _r0, _r1):
            # C-contiguous chunks: views of NHWC arrays, a chunk-sized copy of a transposed (NCHW) one
            kernel(np.ascontiguousarray(A_prev[e0:e1]), np.ascontiguousarray(dA[e0:e1]), dA_prev[e0:e1],
                   kh, kw, sh, sw, dh, dw, t, l)
        run_parallel(compiled, plan_chunks(m, 1, H * W * C * dtype.itemsize, workspace_bytes, target=4 * 2**20))
        return
    # Tap numbers in visiting order (row-major), only for the taps that read the input (a huge window
    # over a small input has few); a window that no value beats (all -inf) keeps number 0, which
    # belongs to tap (0, 0) as np.argmax says (dropped when that tap is in the padding).
    taps = [(k, a, b, ho, wo, rows, cs) for k, (a, b, ho, wo, rows, cs) in enumerate(clipped_taps(geom), start=1)]
    tap_dtype = np.uint8 if len(taps) < 256 else np.uint32
    # per example: the phase planes and the part of dA_prev written (an input's size each) and, per
    # output, the running maximum, the winner and scratch tap numbers, the bool wins, the int64 flat
    # index and its base
    per_output = dtype.itemsize + 2 * np.dtype(tap_dtype).itemsize + 1 + 8 + 8
    per_example = 2 * H * W * C * dtype.itemsize + n_H * n_W * C * per_output
    chunks = plan_chunks(m, 1, per_example, workspace_bytes, target=4 * 2**20)
    phased = (sh, sw) != (1, 1)
    ne = max(e1 - e0 for e0, e1, _, _ in chunks)
    # The flat index in a chunk of dA_prev of each window's tap (0, 0), and each tap's offset from it.
    # Where tap (0, 0) lies in the padding (the first `top` rows and `left` columns of windows) the index
    # is not its pixel's: it is used only when no value beat -inf in the window, and then dropped.
    i64 = np.int64  # not the platform's int: numpy 1.x on Windows makes int32, too small for a chunk's index
    base = (np.arange(ne, dtype=i64)[:, None, None, None] * (H * W * C)
            + (np.arange(n_H, dtype=i64) * sh - t)[None, :, None, None] * (W * C)
            + (np.arange(n_W, dtype=i64) * sw - l)[None, None, :, None] * C
            + np.arange(C, dtype=i64)[None, None, None, :])
    tap_offsets = np.array([0] + [(a * dh * W + b * dw) * C for _, a, b, *_ in taps], dtype=np.int64)
    top, left = -(-t // sh), -(-l // sw)
    corner = np.zeros((1, n_H, n_W, 1), dtype=bool)
    corner[:, :top] = corner[:, :, :left] = True

    def plane_view(planes, rows, cs):
        """The tap's input pixels as a block of its phase plane."""
        return planes[rows.start % sh][cs.start % sw][
            :, rows.start // sh:(rows.stop - 1) // sh + 1, cs.start // sw:(cs.stop - 1) // sw + 1]

    local = threading.local()  # per-thread work arrays, reused by the thread's chunks (a fresh
    # array of megabytes costs its page faults, about as much as the work on it)

    def buffers(k):
        """This thread's work arrays for a chunk of ``k`` examples."""
        if getattr(local, "k", 0) < k:
            local.k = k
            local.planes = [[np.empty((k,) + A_prev[0, p::sh, q::sw].shape, dtype) for q in range(sw)]
                            for p in range(sh)] if phased else None
            local.work = [np.empty((k, n_H, n_W, C), dtype=t) for t in (dtype, tap_dtype, bool, tap_dtype, np.int64)]
        return local.planes, [a[:k] for a in local.work]

    def chunk(e0, e1, _r0, _r1):
        k = e1 - e0
        x = A_prev[e0:e1]
        planes, (best, winner, wins, scratch, flat) = buffers(k)
        if phased:
            planes = [[a[:k] for a in row] for row in planes]
            for p in range(sh):
                for q in range(sw):
                    np.copyto(planes[p][q], x[:, p::sh, q::sw])
        else:
            planes = [[x]]
        # NOTE: taps run in row-major order and only a strictly greater value takes
        # over, so the winner is the LAST tap that took over: the first maximum.
        # Masked writes (copyto where=) are slow; multiply + maximum on uint8 are not.
        # A NaN is the window's maximum (the forward pass propagates it): the first
        # NaN wins, as np.argmax says. np.maximum carries a NaN into the window's
        # running maximum, so a NaN that some window reads shows there: only then is
        # the search made again with the extra test (cheaper than looking for NaN in
        # the input, 4x the outputs' size, every time).
        for nan_aware in (False, True):
            best.fill(-np.inf)
            winner.fill(0)
            for number, _a, _b, ho, wo, rows, cs in taps:
                src, bv, wv = plane_view(planes, rows, cs), best[:, ho, wo], wins[:, ho, wo]
                np.greater(src, bv, out=wv)
                if nan_aware:
                    wv |= np.isnan(src) & ~np.isnan(bv)
                np.maximum(bv, src, out=bv)
                sv, nv = scratch[:, ho, wo], winner[:, ho, wo]
                # NOTE: the bool's uint8 view, not the bool: no cast per element (into uint32 a widening)
                np.multiply(wv.view(np.uint8), tap_dtype(number), out=sv)
                np.maximum(nv, sv, out=nv)
            if nan_aware or not np.isnan(best).any():
                break
        np.take(tap_offsets, winner, out=flat, mode="clip")  # NOTE: "raise" checks via a buffered copy
        flat += base[:k]
        g = dA[e0:e1]
        if (best[:, :top] == -np.inf).any() or (best[:, :, :left] == -np.inf).any():
            lost = corner & (best == -np.inf)  # the gradient of these windows goes to the padding
            flat[lost] = 0
            g = np.where(lost, 0, g)
        out = dA_prev[e0:e1].reshape(-1)
        out.fill(0)
        # NOTE: np.add.at, not np.bincount (which holds the GIL, so the threads' scatters ran one at a time,
        # returns float64 and a new array to copy) nor a masked add per tap (1.1x-1.4x the time in float32).
        np.add.at(out, flat.reshape(-1), g.reshape(-1))

    run_parallel(chunk, chunks)
