"""Patch unrolling ("im2col") and the chunked correlation product behind conv.py.

A correlation on one axis is described by a step and one source offset per tap:
output o reads source row ``o*step + offs[a]`` for tap a; rows outside the source
read as zeros. The forward pass uses ``offs[a] = a*dilation - pad_before``; each
stride phase of the input gradient is a correlation of dZ with a subset of taps.
A chunk's patches are one strided view of the rows it reads (framed in zeros
where the windows reach into the padding), copied in one call into a small reused
workspace (threads split the copies: numpy releases the GIL in them) and multiplied by the weights with one BLAS call
per chunk, written straight into the output. The adjoint of unrolling
(:func:`unroll_adjoint`, "col2im") adds patch gradients back onto the input grid.

Loop twin: :func:`cnncli.engine.reference.conv_forward_loops` (a correlation is
its inner sum) and :func:`~cnncli.engine.reference.conv_backward_loops`.
"""

from __future__ import annotations

import threading

import numpy as np

from ._blas import available, single_blas_thread
from ._common import merge_rows, plan_chunks, run_parallel, split, threads, valid_range

#: Chunks of patches smaller than this are unrolled (and added back) on one thread:
#: handing them to the pool costs more than it saves.
THREADED_MIN_BYTES = 2**18
#: Adds of fewer elements than this go tap by tap in the adjoint: building a strided run view costs more.
ROW_RUNS_MIN_ELEMENTS = 2**13
#: Workspace of the shifted dW product per chunk (padded input and dZ of its examples).
SHIFTED_CHUNK_BYTES = 4 * 2**20


def unroll_part(X, cols, base, e0, e1, r0, r1, step, offs_h, offs_w):
    """Fill ``cols[e - base[0], r - base[1]]`` for examples [e0, e1), output rows [r0, r1).

    cols: (ne, nr, n_W, groups, ka, kb, c_g) view; zero where a tap reads outside X.
    The rows and columns the chunk's windows read are taken from X itself when they
    lie inside it, else from a copy framed in zeros (:func:`_framed`); the patches are
    then one strided view of that source, copied in one call (numpy releases the GIL
    for it, so worker threads unroll in parallel). Offsets that are not evenly spaced
    (never made by conv.py) take one copy per tap.
    """
    sh, sw = step
    dst = cols[e0 - base[0]:e1 - base[0], r0 - base[1]:r1 - base[1]]
    ne, nr, n_W, groups, ka, kb, c_g = dst.shape
    y0, x0 = r0 * sh + min(offs_h), min(offs_w)
    ny, nx = (r1 - 1) * sh + max(offs_h) + 1 - y0, (n_W - 1) * sw + max(offs_w) + 1 - x0
    src = _framed(X, e0, e1, y0, ny, x0, nx)
    s_e, s_y, s_x, s_c = src.strides
    dh, dw = _spacing(offs_h), _spacing(offs_w)
    if dh is not None and dw is not None:
        view = np.lib.stride_tricks.as_strided(
            src[:, r0 * sh + offs_h[0] - y0:, offs_w[0] - x0:], shape=dst.shape,
            strides=(s_e, sh * s_y, sw * s_x, c_g * s_c, dh * s_y, dw * s_x, s_c), writeable=False)
        dst[...] = view
        return
    for a, oa in enumerate(offs_h):
        for b, ob in enumerate(offs_w):
            part = src[:, r0 * sh + oa - y0:, ob - x0:][:, :(nr - 1) * sh + 1:sh, :(n_W - 1) * sw + 1:sw]
            dst[:, :, :, :, a, b] = part.reshape(ne, nr, n_W, groups, c_g)


def _spacing(offs):
    """The common difference of evenly spaced offsets (0 for a single one), else None."""
    d = offs[1] - offs[0] if len(offs) > 1 else 0
    return d if d >= 0 and all(b - a == d for a, b in zip(offs, offs[1:])) else None


_frames = threading.local()


def _framed(X, e0, e1, y0, ny, x0, nx):
    """``X[e0:e1, y0:y0+ny, x0:x0+nx]`` with rows and columns outside X read as zeros.

    A view of X when the box lies inside it; else a copy in a per-thread buffer that is
    reused from call to call (only the frame around the copied part is zeroed).
    """
    m, H, W, C = X.shape
    if y0 >= 0 and x0 >= 0 and y0 + ny <= H and x0 + nx <= W:
        return X[e0:e1, y0:y0 + ny, x0:x0 + nx]
    ne = e1 - e0
    size = ne * ny * nx * C
    buf = getattr(_frames, "buf", None)
    if buf is None or buf.dtype != X.dtype or buf.size < size:
        buf = _frames.buf = np.empty(max(size, 2 * (0 if buf is None else buf.size)), dtype=X.dtype)
    P = buf[:size].reshape(ne, ny, nx, C)
    ya, yb = min(max(0, -y0), ny), min(max(0, H - y0), ny)  # rows of P inside X: [ya, yb)
    xa, xb = min(max(0, -x0), nx), min(max(0, W - x0), nx)
    if ya >= yb or xa >= xb:
        P[...] = 0
        return P
    P[:, :ya] = 0
    P[:, yb:] = 0
    P[:, ya:yb, :xa] = 0
    P[:, ya:yb, xb:] = 0
    P[:, ya:yb, xa:xb] = X[e0:e1, y0 + ya:y0 + yb, x0 + xa:x0 + xb]
    return P


def unroll(X, cols, e0, e1, r0, r1, step, offs_h, offs_w) -> None:
    """Unroll the patches of a chunk into ``cols``, split over the worker threads."""
    base = (e0, r0)
    if cols.nbytes < THREADED_MIN_BYTES:
        pieces = [(e0, e1, r0, r1)]
    elif e1 - e0 >= threads():
        pieces = [(a, b, r0, r1) for a, b in split(e0, e1, threads())]
    else:
        per = max(1, threads() // (e1 - e0))
        pieces = [(e, e + 1, a, b) for e in range(e0, e1) for a, b in split(r0, r1, per)]
    run_parallel(lambda *p: unroll_part(X, cols, base, *p, step, offs_h, offs_w), pieces)


def unroll_adjoint_part(dX, cols, e0, e1, step, offs_h, offs_w, r0, r1):
    """Adjoint of :func:`unroll_part`: ``dX[e0:e1]`` += the taps of ``cols`` (rows [r0, r1))."""
    H, Wd = dX.shape[1:3]
    sh, sw = step
    n_W = cols.shape[2]
    for a, oa in enumerate(offs_h):
        h_lo, h_hi, rows = valid_range(r0, r1, sh, oa, H)
        if h_lo == h_hi:
            continue
        ca = cols[:, h_lo - r0:h_hi - r0, :, :, a]
        x_lo, x_hi = row_runs_adjoint(dX[e0:e1, rows], ca, sw, offs_w) if cols.shape[3] == 1 else (0, 0)
        for b, ob in enumerate(offs_w):
            w_lo, w_hi, cs = valid_range(0, n_W, sw, ob, Wd)
            for lo, hi in ((w_lo, min(w_hi, x_lo)), (max(w_lo, x_hi), w_hi)) if x_lo < x_hi else ((w_lo, w_hi),):
                if lo < hi:
                    d = dX[e0:e1, rows, cs][:, :, lo - w_lo:hi - w_lo]
                    d += ca[:, :, lo:hi, :, b].reshape(d.shape)


def row_runs_adjoint(dst_rows, ca, sw, offs_w):
    """Adjoint of :func:`row_runs`: add whole runs of taps where column offsets are consecutive.

    The kb taps of output column x add into the contiguous run
    dX[x*sw + o : x*sw + o + kb, :]; runs of columns q = ceil(kb/sw) apart never
    overlap, so q vectorized adds of long runs replace kb adds of C values.
    Returns the column range done, ``(0, 0)`` when the layout does not allow it.
    dst_rows: (ne, nh, W, C) rows of dX; ca: (ne, nh, n_W, 1, kb, C) patch gradients of one tap row.
    """
    kb, C = len(offs_w), dst_rows.shape[3]
    W = dst_rows.shape[2]
    if (kb < 2 or ca.size < ROW_RUNS_MIN_ELEMENTS or list(offs_w) != list(range(offs_w[0], offs_w[0] + kb))
            or dst_rows.strides[2] != C * dst_rows.strides[3]):
        return 0, 0
    x_lo = max(0, -(offs_w[0] // sw))
    x_hi = min(ca.shape[2], (W - kb - offs_w[0]) // sw + 1)
    if x_lo >= x_hi:
        return 0, 0
    q = -(-kb // sw)
    item = dst_rows.strides[3]
    for j in range(min(q, x_hi - x_lo)):
        x0 = x_lo + j
        n = len(range(x0, x_hi, q))
        base = dst_rows[:, :, x0 * sw + offs_w[0]:]
        runs = np.lib.stride_tricks.as_strided(
            base, shape=base.shape[:2] + (n, kb * C), strides=base.strides[:2] + (q * sw * C * item, item))
        runs += merge_rows(ca[:, :, x0:x_hi:q, 0])
    return x_lo, x_hi


def unroll_adjoint(dX, cols, e0, e1, r0, r1, step, offs_h, offs_w) -> None:
    """Adjoint of :func:`unroll` ("col2im"): scatter-add a chunk's patch gradients into ``dX``.

    Threads split examples (disjoint writes).
    """
    if cols.nbytes < THREADED_MIN_BYTES or e1 - e0 < 2:
        unroll_adjoint_part(dX, cols, e0, e1, step, offs_h, offs_w, r0, r1)
        return
    run_parallel(lambda a, b: unroll_adjoint_part(dX, cols[a - e0:b - e0], a, b, step, offs_h, offs_w, r0, r1),
                 split(e0, e1, threads()))


def is_identity(step, offs_h, offs_w) -> bool:
    """A 1x1 window at stride 1 without padding: the patches are the input itself."""
    return tuple(step) == (1, 1) and list(offs_h) == [0] and list(offs_w) == [0]


def chunk_buffer(chunks, n_W, per_row, dtype):
    rows = max((e1 - e0) * (r1 - r0) for e0, e1, r0, r1 in chunks)
    return np.empty(rows * n_W * per_row, dtype=dtype)


def share_chunks(chunks) -> list:
    """Chunks cut into one contiguous share per worker thread when there are enough to run whole
    chunks in parallel, each thread with BLAS on one thread (see :mod:`._blas`); else one share."""
    if threads() > 1 and len(chunks) >= 2 * threads() and available():
        return [chunks[a:b] for a, b in split(0, len(chunks), threads())]
    return [chunks]


def run_shares(work, shares) -> list:
    """``[work(share) for share in shares]``, the shares in parallel (BLAS on one thread) when several."""
    if len(shares) == 1:
        return [work(shares[0])]
    results = [None] * len(shares)

    def run(i):
        results[i] = work(shares[i])

    with single_blas_thread():
        run_parallel(run, [(i,) for i in range(len(shares))])
    return results


def correlate(X, Wg, out, step, offs_h, offs_w, workspace_bytes, bias=None) -> None:
    """``out[e, r, w, (g, n)] = sum_{a, b, c} X[e, r*sh + offs_h[a], w*sw + offs_w[b], (g, c)] Wg[g, (a, b, c), n]``.

    X: (m, H, W, groups*c_g); Wg: (groups, ka*kb*c_g, n_g); out: (m, n_H, n_W, groups*n_g), any strides.
    """
    m, n_H, n_W, n_out = out.shape
    groups, K, n_g = Wg.shape
    c_g = X.shape[3] // groups
    ka, kb = len(offs_h), len(offs_w)
    direct = out.flags.c_contiguous
    identity = groups == 1 and is_identity(step, offs_h, offs_w) and X.shape[1:3] == (n_H, n_W)
    per_row = n_W * groups * K * X.itemsize * (0 if identity else 1) + (0 if direct else n_W * n_out * X.itemsize)
    chunks = plan_chunks(m, n_H, max(per_row, n_W * n_out * X.itemsize), workspace_bytes)
    shares = share_chunks(chunks)
    serial = len(shares) > 1  # each worker thread unrolls its own chunks

    def work(share):
        buf = None if identity else chunk_buffer(share, n_W, groups * K, X.dtype)
        tmp = None if direct else chunk_buffer(share, n_W, n_out, X.dtype)
        for e0, e1, r0, r1 in share:
            Mc = (e1 - e0) * (r1 - r0) * n_W
            cols = _chunk_patches(X, buf, identity, (e0, e1, r0, r1), n_W, groups, (ka, kb, c_g), step, offs_h,
                                  offs_w, serial)
            res = out[e0:e1, r0:r1].reshape(Mc, n_out) if direct else tmp[:Mc * n_out].reshape(Mc, n_out)
            if groups == 1:
                np.matmul(cols[:, 0], Wg[0], out=res)
            else:
                np.matmul(cols.transpose(1, 0, 2), Wg, out=res.reshape(Mc, groups, n_g).transpose(1, 0, 2))
            if bias is not None:
                res += bias
            if not direct:
                out[e0:e1, r0:r1] = res.reshape(e1 - e0, r1 - r0, n_W, n_out)

    run_shares(work, shares)


def _chunk_patches(X, buf, identity, bounds, n_W, groups, kernel, step, offs_h, offs_w, serial=False):
    """The patches of one chunk as (Mc, groups, K): a view of X for a 1x1 identity layer,
    else unrolled into ``buf`` (on this thread only when ``serial``)."""
    e0, e1, r0, r1 = bounds
    ka, kb, c_g = kernel
    Mc, K = (e1 - e0) * (r1 - r0) * n_W, ka * kb * c_g
    if identity:
        return X[e0:e1, r0:r1].reshape(Mc, 1, K)
    cols = buf[:Mc * groups * K].reshape(e1 - e0, r1 - r0, n_W, groups, ka, kb, c_g)
    if serial:
        unroll_part(X, cols, (e0, r0), e0, e1, r0, r1, step, offs_h, offs_w)
    else:
        unroll(X, cols, e0, e1, r0, r1, step, offs_h, offs_w)
    return cols.reshape(Mc, groups, K)


def weight_grad(X, dZ, dWg, step, offs_h, offs_w, workspace_bytes) -> None:
    """dWg (groups, K, n_g) += patches(X)^T @ dZ, chunk by chunk."""
    m, n_H, n_W, _ = dZ.shape
    groups, K, n_g = dWg.shape
    ka, kb, c_g = len(offs_h), len(offs_w), X.shape[3] // groups
    identity = groups == 1 and is_identity(step, offs_h, offs_w) and X.shape[1:3] == (n_H, n_W)
    chunks = plan_chunks(m, n_H, n_W * max(groups * K * (not identity), 1) * X.itemsize, workspace_bytes)
    shares = share_chunks(chunks)
    serial = len(shares) > 1

    def work(share):
        buf = None if identity else chunk_buffer(share, n_W, groups * K, X.dtype)
        part = np.empty((groups, K, n_g), dtype=X.dtype)
        total = np.zeros((groups, K, n_g), dtype=X.dtype)
        for e0, e1, r0, r1 in share:
            Mc = (e1 - e0) * (r1 - r0) * n_W
            cols = _chunk_patches(X, buf, identity, (e0, e1, r0, r1), n_W, groups, (ka, kb, c_g), step, offs_h,
                                  offs_w, serial)
            dZc = dZ[e0:e1, r0:r1].reshape(Mc, groups, n_g)
            np.matmul(cols.transpose(1, 2, 0), dZc.transpose(1, 0, 2), out=part)
            total += part
        return total

    for total in run_shares(work, shares):
        dWg += total


def weight_grad_shifted(X, dZ, geom, workspace_bytes):
    """dW (f_h, f_w, C, n_C) of a stride-1, single-group convolution without unrolling patches.

    Lay each example out zero-padded, P (Hp, Wp, C), and dZ on the same grid,
    D (Hp, Wp, n_C), zero outside its (n_H, n_W) corner. For tap (a, b) the
    patch rows are then P flattened and shifted by ``a*dh*Wp + b*dw`` pixels: a
    plain contiguous slice, so ``dW[a, b] = P_shift^T @ D`` is one BLAS call with
    no copy. Grid positions outside the output wrap onto other pixels but meet
    zeros in D. That is exact only for finite inputs (0 * inf is nan): a chunk
    holding a non-finite value makes it return None, and the caller unrolls.
    """
    m, H, Wd, C = X.shape
    _, n_H, n_W, n_C = dZ.shape
    (kh, kw), (dh, dw) = geom.kernel, geom.dilation
    t, _, l, _ = geom.pads
    Hp, Wp = n_H + dh * (kh - 1), n_W + dw * (kw - 1)
    R, tail = Hp * Wp, (kh - 1) * dh * Wp + (kw - 1) * dw
    chunks = plan_chunks(m, 1, R * (C + n_C) * X.itemsize, workspace_bytes, target=SHIFTED_CHUNK_BYTES)

    def work(share):
        ne = max(e1 - e0 for e0, e1, _, _ in share)
        P = np.zeros(ne * R * C + tail * C, dtype=X.dtype)
        D = np.zeros((ne, Hp, Wp, n_C), dtype=X.dtype)
        dW = np.zeros((kh, kw, C, n_C), dtype=X.dtype)
        part = np.empty((C, n_C), dtype=X.dtype)
        for e0, e1, _, _ in share:
            k = e1 - e0
            Pv = P[:k * R * C].reshape(k, Hp, Wp, C)
            Pv[:, t:t + H, l:l + Wd] = X[e0:e1]
            if not np.isfinite(Pv[:, t:t + H, l:l + Wd].sum()):
                return None
            P[k * R * C:(k * R + tail) * C] = 0  # beyond the chunk: zeros, never stale values
            D[:k, :n_H, :n_W] = dZ[e0:e1]
            Dk = D[:k].reshape(k * R, n_C)
            for a in range(kh):
                for b in range(kw):
                    s = (a * dh * Wp + b * dw) * C
                    np.matmul(P[s:s + k * R * C].reshape(k * R, C).T, Dk, out=part)
                    dW[a, b] += part
        return dW

    parts = run_shares(work, share_chunks(chunks))
    if any(p is None for p in parts):
        return None
    return sum(parts[1:], parts[0])
