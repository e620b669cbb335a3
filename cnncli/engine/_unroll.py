"""Patch unrolling ("im2col") and the chunked correlation product behind conv.py.

A correlation on one axis is described by a step and one source offset per tap:
output o reads source row ``o*step + offs[a]`` for tap a; rows outside the source
read as zeros. The forward pass uses ``offs[a] = a*dilation - pad_before``; each
stride phase of the input gradient is a correlation of dZ with a subset of taps.
A chunk's patches are one strided view of the rows it reads (framed in zeros
where the windows reach into the padding), copied in one call into a small
reused workspace (threads split the copies: numpy releases the GIL in them) and
multiplied by the weights with one BLAS call per chunk, written straight into
the output. The adjoint of unrolling
(:func:`unroll_adjoint`, "col2im") adds patch gradients back onto the input grid.

Loop twin: :func:`cnncli.engine.reference.conv_forward_loops` (a correlation is
its inner sum) and :func:`~cnncli.engine.reference.conv_backward_loops`.
"""

from __future__ import annotations

import threading

import numpy as np

from ._blas import available, single_blas_thread
from ._common import plan_chunks, run_parallel, split, threads

#: Chunks of patches smaller than this are unrolled (and added back) on one thread:
#: handing them to the pool costs more than it saves.
THREADED_MIN_BYTES = 2**18


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
    y0, ny, x0, nx = _box(r0, r1, n_W, step, offs_h, offs_w)
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


_scratch_space = threading.local()


def _scratch(key: str, size: int, dtype) -> np.ndarray:
    """A per-thread buffer of at least ``size`` elements of ``dtype``, reused from call to call (grown by
    doubling). One per key and dtype: replacing a buffer of the other dtype by twice its size made every
    float32 <-> float64 switch double it (a MemoryError after some dozens of alternating calls)."""
    slot = f"{key}_{np.dtype(dtype).str}"
    buf = getattr(_scratch_space, slot, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 2 * (0 if buf is None else buf.size)), dtype=dtype)
        setattr(_scratch_space, slot, buf)
    return buf[:size]


def _box(r0, r1, n_W, step, offs_h, offs_w):
    """``(y0, ny, x0, nx)``: the source rows and columns that output rows [r0, r1) (all n_W columns) read."""
    y0, x0 = r0 * step[0] + min(offs_h), min(offs_w)
    return y0, (r1 - 1) * step[0] + max(offs_h) + 1 - y0, x0, (n_W - 1) * step[1] + max(offs_w) + 1 - x0


def _inside(y0, ny, x0, nx, H, W):
    """``(ya, yb, xa, xb)``: rows [ya, yb) and columns [xa, xb) of a box at (y0, x0) that lie in an H x W grid."""
    ya, yb = min(max(0, -y0), ny), min(max(0, H - y0), ny)
    xa, xb = min(max(0, -x0), nx), min(max(0, W - x0), nx)
    return ya, yb, xa, xb


def _framed(X, e0, e1, y0, ny, x0, nx):
    """``X[e0:e1, y0:y0+ny, x0:x0+nx]`` with rows and columns outside X read as zeros.

    A view of X when the box lies inside it; else a copy in a per-thread buffer
    (only the frame around the copied part is zeroed).
    """
    m, H, W, C = X.shape
    ya, yb, xa, xb = _inside(y0, ny, x0, nx, H, W)
    if (ya, yb, xa, xb) == (0, ny, 0, nx):
        return X[e0:e1, y0:y0 + ny, x0:x0 + nx]
    ne = e1 - e0
    P = _scratch("framed", ne * ny * nx * C, X.dtype).reshape(ne, ny, nx, C)
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
    """Adjoint of :func:`unroll_part`: ``dX[e0:e1]`` += the taps of ``cols`` (rows [r0, r1)).

    The taps add into the rows and columns the chunk's windows read: dX itself when they
    lie inside it, else a buffer framed in zeros whose inside is added to dX at the end.
    Each add is one strided view over the whole chunk: per tap (a, b), whose outputs land
    on distinct elements, or, where the column taps are consecutive, per tap row and
    residue j of the output column modulo q = ceil(kb/stride): the kb taps of columns q
    apart cover disjoint runs of kb*C values.
    """
    sh, sw = step
    ne, nr, n_W, groups, ka, kb, c_g = cols.shape
    H, Wd, C = dX.shape[1:]
    y0, ny, x0, nx = _box(r0, r1, n_W, step, offs_h, offs_w)
    ya, yb, xa, xb = _inside(y0, ny, x0, nx, H, Wd)
    inside = (ya, yb, xa, xb) == (0, ny, 0, nx)
    if inside:
        P = dX[e0:e1, y0:y0 + ny, x0:x0 + nx]
    else:
        P = _scratch("adjoint", ne * ny * nx * C, dX.dtype).reshape(ne, ny, nx, C)
        P[...] = 0
    s_e, s_y, s_x, s_c = P.strides
    as_strided = np.lib.stride_tricks.as_strided
    runs = groups == 1 and kb > 1 and _spacing(offs_w) == 1
    q = -(-kb // sw)
    for a, oa in enumerate(offs_h):
        Pa = P[:, r0 * sh + oa - y0:]
        if runs:
            for j in range(min(q, n_W)):
                n = len(range(j, n_W, q))
                view = as_strided(Pa[:, :, j * sw + offs_w[0] - x0:], shape=(ne, nr, n, kb * C),
                                  strides=(s_e, sh * s_y, q * sw * s_x, s_c))
                view += cols[:, :, j::q, 0, a].reshape(ne, nr, n, kb * C)
            continue
        for b, ob in enumerate(offs_w):
            view = as_strided(Pa[:, :, ob - x0:], shape=(ne, nr, n_W, C), strides=(s_e, sh * s_y, sw * s_x, s_c))
            view += cols[:, :, :, :, a, b].reshape(ne, nr, n_W, C)
    if not inside:
        if ya < yb and xa < xb:
            dX[e0:e1, y0 + ya:y0 + yb, x0 + xa:x0 + xb] += P[:, ya:yb, xa:xb]


def unroll_adjoint_planar(dX, colsT, e0, e1, step, offs_h, offs_w, r0, r1):
    """:func:`unroll_adjoint_part` for one group, from tap-major patch gradients.

    colsT: (ka, kb, C, ne, nr, n_W), i.e. ``(W . dZ^T)`` reshaped. Each tap's
    (C, ne, nr, n_W) block is summed, per column tap, into row phase planes exactly
    n_W wide (one run of nr*n_W values per channel and example); each column tap's
    sum is then added into per-thread stride phase planes of the chunk's box, laid
    out channels first, in runs of n_W values (in NHWC they would be runs of C, or
    kb*C, values: 3 or 21 for an RGB stem). The planes are interleaved back into
    the box, channels last, in one copy and added into dX once.
    """
    sh, sw = step
    ka, kb, C, ne, nr, n_W = colsT.shape
    H, Wd = dX.shape[1:3]
    y0, ny, x0, nx = _box(r0, r1, n_W, step, offs_h, offs_w)
    hy, hx = -(-ny // sh), -(-nx // sw)
    D = _scratch("planar", sh * sw * C * ne * hy * hx, dX.dtype).reshape(sh, sw, C, ne, hy, hx)
    # the box row and column of each tap's first output row and column (the box starts at the first tap's)
    ias, ibs = [oa - y0 + r0 * sh for oa in offs_h], [ob - x0 for ob in offs_w]
    reached = {(ia % sh, ib % sw) for ia in ias for ib in ibs}
    for p, q in reached:  # a phase no tap reaches (stride and dilation sharing a factor) stays out
        D[p, q] = 0
    # Per column tap first, whole rows of n_W values: a tap's block is then one run of nr*n_W values
    # per channel and example; each column tap's sum is added into D once, n_W columns to the right.
    E = _scratch("planar_taps", sh * C * ne * hy * n_W, dX.dtype).reshape(sh, C, ne, hy, n_W)
    rows = sorted({ia % sh for ia in ias})
    for b, ib in enumerate(ibs):
        E[rows] = 0
        for a, ia in enumerate(ias):
            view = E[ia % sh, :, :, ia // sh:ia // sh + nr]
            view += colsT[a, b]
        for p in rows:
            view = D[p, ib % sw, :, :, :, ib // sw:ib // sw + n_W]
            view += E[p]
    ya, yb, xa, xb = _inside(y0, ny, x0, nx, H, Wd)
    if ya >= yb or xa >= xb:
        return
    for p, q in np.ndindex(sh, sw):  # the box copy below reads every phase: one no tap reaches adds zeros
        if (p, q) not in reached:
            D[p, q] = 0
    # The phases interleaved back into the chunk's box, channels last, in one copy; then one add into dX
    # (four strided adds of C-value runs, one per phase, took 3.5x as long for an RGB stem)
    B = _scratch("planar_box", ne * hy * sh * hx * sw * C, dX.dtype).reshape(ne, hy, sh, hx, sw, C)
    B[...] = D.transpose(3, 4, 0, 5, 1, 2)
    dX[e0:e1, y0 + ya:y0 + yb, x0 + xa:x0 + xb] += B.reshape(ne, hy * sh, hx * sw, C)[:, ya:yb, xa:xb]


def unroll_adjoint(dX, cols, e0, e1, r0, r1, step, offs_h, offs_w, tap_major: bool = False) -> None:
    """Adjoint of :func:`unroll` ("col2im"): scatter-add a chunk's patch gradients into ``dX``.

    ``cols`` as :func:`unroll_adjoint_part` takes it, or with ``tap_major`` as
    :func:`unroll_adjoint_planar` does. Threads split examples (disjoint writes).
    """
    part, axis = (unroll_adjoint_planar, 3) if tap_major else (unroll_adjoint_part, 0)
    if cols.nbytes < THREADED_MIN_BYTES or e1 - e0 < 2:
        part(dX, cols, e0, e1, step, offs_h, offs_w, r0, r1)
        return
    index = (slice(None),) * axis
    run_parallel(lambda a, b: part(dX, cols[index + (slice(a - e0, b - e0),)], a, b, step, offs_h, offs_w, r0, r1),
                 split(e0, e1, threads()))


def tap_major_adjoint_pays(groups: int, kernel, c_g: int, n_W: int, step, offs_w) -> bool:
    """Whether :func:`unroll_adjoint_planar` adds longer runs than :func:`unroll_adjoint_part` (one group only).

    The NHWC adjoint adds runs of kb*c_g values for consecutive column taps, else of
    c_g; the tap-major one runs of n_W. Only for windows of at least as many taps as
    stride phases: its phase planes cover the chunk's whole box, which a 1x1 layer at
    stride 2 would zero and add four times over for one tap. RGB stem 8x112x112x3,
    7x7/2 -> 64: the backward in 0.87x-0.90x the CPU time on one thread, 0.67x the
    time on two (benchmarks/README.md, fourth session).
    """
    kh, kw = kernel
    run = kw * c_g if kw > 1 and _spacing(offs_w) == 1 else c_g
    return groups == 1 and n_W > run and kh * kw >= step[0] * step[1]


def tap_major_scratch_per_row(n_W: int, C: int, step, offs_w, itemsize: int) -> int:
    """Bytes of :func:`unroll_adjoint_planar`'s per-thread planes per output row of a chunk (about)."""
    sh, sw = step
    nx = (n_W - 1) * sw + max(offs_w) - min(offs_w) + 1
    return sh * C * (2 * (nx + sw) + n_W) * itemsize  # the phase planes, the box they make, the column sums


def is_identity(step, offs_h, offs_w) -> bool:
    """A 1x1 window at stride 1 without padding: the patches are the input itself."""
    return tuple(step) == (1, 1) and list(offs_h) == [0] and list(offs_w) == [0]


def chunk_buffer(chunks, n_W, per_row, dtype):
    rows = max((e1 - e0) * (r1 - r0) for e0, e1, r0, r1 in chunks)
    return np.empty(rows * n_W * per_row, dtype=dtype)


def share_chunks(chunks) -> list:
    """Chunks cut into one contiguous share per worker thread when there is one chunk per thread or more
    (:func:`._common.plan_chunks` makes them equal, as many as a multiple of the threads), each thread
    with BLAS on one thread (see :mod:`._blas`); else one share. A call of 2 or 3 chunks left to a
    2-thread BLAS hands every product to BLAS's second thread: 16 s instead of 2.2 s for the streamed
    gradient check's small convolutions in one loaded run."""
    if threads() > 1 and len(chunks) >= threads() and available():
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
    # a chunk's workspace: its unrolled patches, or for a 1x1 layer (patches = X) the rows it reads
    chunks = plan_chunks(m, n_H, n_W * (K + n_g) * groups * X.itemsize, workspace_bytes)
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
