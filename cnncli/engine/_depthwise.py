"""Depthwise convolution (one input channel per group): a multiply-accumulate per kernel tap.

A matrix product has nothing to gain here (one input channel per output), so
each tap is one vectorized multiply-add over a cache-sized chunk of the batch,
the chunks shared out over a few threads.

Loop twins: :func:`cnncli.engine.reference.conv_forward_loops` and
:func:`~cnncli.engine.reference.conv_backward_loops` with ``groups == n_C_prev``.
"""

from __future__ import annotations

import numpy as np

from ._common import clipped_taps, merge_rows, plan_chunks, run_parallel, split, threads


def _mac(dst, src, w, w_row, tmp, init: bool) -> None:
    """``dst = src * w`` (init) or ``dst += src * w``, w per channel (last axis).

    Broadcasting w over (e, h, w) gives numpy inner loops of one pixel's
    channels; merging (w, C) into one axis against ``w_row`` (w tiled along a
    row) makes them a whole row long (timings: benchmarks/README.md).
    """
    rs, rd = merge_rows(src), merge_rows(dst)
    if rs is not None and rd is not None:
        src, dst, tmp, w = rs, rd, merge_rows(tmp), w_row[:rs.shape[-1]]
    if init:
        np.multiply(src, w, out=dst)
    else:
        np.multiply(src, w, out=tmp)
        dst += tmp


def depthwise_forward(A, W, geom, Z, workspace_bytes) -> None:
    """Z = sum over taps of the shifted input times per-channel weights (no matrix product to gain)."""
    m, n_H, n_W, n_C = Z.shape
    C = A.shape[3]
    mult = n_C // C
    Wr = W.reshape(W.shape[0], W.shape[1], C, mult)
    rows_w = np.tile(Wr[..., 0], (1, 1, n_W))  # (f_h, f_w, n_W*C): each tap's weights along a row

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
                _mac(Zc[:, ho, wo], src, Wr[a, b, :, 0], rows_w[a, b], tmp[:, ho, wo], init=k == 0 and bool(full))
            else:
                t = tmp.reshape(Zc.shape[:3] + (C, mult))[:, ho, wo]
                np.multiply(src[..., None], Wr[a, b], out=t)
                Zc.reshape(Zc.shape[:3] + (C, mult))[:, ho, wo] += t

    run_parallel(chunk, plan_chunks(m, n_H, 2 * n_W * n_C * Z.itemsize, workspace_bytes, target=4 * 2**20))


def depthwise_backward(A, W, dZ, geom, dA, dW, workspace_bytes) -> None:
    """dA and dW of a depthwise convolution, one tap at a time; threads take disjoint examples."""
    m, n_H, n_W, n_C = dZ.shape
    C = A.shape[3]
    mult = n_C // C
    Wr = W.reshape(W.shape[0], W.shape[1], C, mult)
    rows_w = np.tile(Wr[..., 0], (1, 1, n_W))
    chunks = plan_chunks(m, n_H, 2 * n_W * n_C * dZ.itemsize, workspace_bytes, target=4 * 2**20)
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
                    _mac(dA[e0:e1, rows, cs], gv, Wr[a, b, :, 0], rows_w[a, b], tmp[:, rows, cs], init=False)
                continue
            g = g.reshape(g.shape[:3] + (C, mult))
            for a, b, ho, wo, rows, cs in clipped_taps(geom, r0, r1):
                src, gv = A[e0:e1, rows, cs], g[:, ho, wo]
                dWr[a, b] += np.einsum("ehwcq,ehwc->cq", gv, src)
                dA[e0:e1, rows, cs] += np.einsum("ehwcq,cq->ehwc", gv, Wr[a, b])

    run_parallel(work, list(zip(shares, partial)))
    for part in partial:
        dW += part
