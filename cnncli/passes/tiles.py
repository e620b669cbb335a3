"""Passes over one example by tiles of output rows and columns, for output rows too wide for a chunk.

A block of :mod:`.rows` is at least one output row, and one row of a 1 x N x C signal (N in the
millions) is the whole example. The two axes of a window operation are independent, so output
rows ``[r0, r1)`` by columns ``[c0, c1)`` are the operation on the input rectangle their windows
read, with the padding those windows reach along each axis
(:func:`cnncli.engine.geometry.row_block` with ``axis=0`` and ``axis=1``): each tile is one engine
call on a rectangle of the input, and the example's memory is bounded by the tile's.

The backward pass goes by column stripes of the output, left to right, and by the blocks of rows of
:mod:`.rows` inside each stripe, top to bottom: a stripe's ``dA_prev`` rows that the next row block
also reaches are carried (restricted to the stripe's input columns), and its input columns that the
next stripe also reaches are carried as a strip of every input row, ``H x (span_w - stride_w) x C``
(one column strip, not a row), and added in the next stripe. The row blocks, and so the rows of the
final tiles, are the same in every stripe. ``dW`` and ``db`` are sums over the disjoint tiles. The
input columns and rows that no window reads (a stride past the kernel) get zeros, yielded a chunk at a
time rather than held with the stripe, as the census reads them for their NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Tuple

import numpy as np

from ..engine import conv2d, conv2d_backward, pool2d, pool2d_backward
from ..engine.geometry import RowBlock, row_block
from .rows import Seen, _add_rows, _input_rows, _release, _take, blocks, fitting


def block_cols(call, budget: int, *, backward: bool = False) -> int:
    """Output columns per tile of one output row so that the tile's input and output stay within ``budget`` bytes.

    Closed form: ``K`` output columns of one row read ``(K - 1) * stride_w + span_w`` input columns
    of at most ``span_h`` input rows.

    Parameters
    ----------
    call : LayerCall
        A resolved conv or pool call (its ``A_prev`` of shape (m, n_H_prev, n_W_prev, n_C_prev)).
    budget : int
        Bytes of one tile's input and output in the compute dtype.
    backward : bool
        Count the gradients too (the upstream gradient in, ``dA_prev`` out): twice the bytes.

    Returns
    -------
    int
        Between 1 (a column taller than the budget is still one tile) and the output's columns.
    """
    g = call.geometry
    _, H, _, C = call.A_prev.shape
    _, _, ow, n_C = call.out_shape
    in_col = min(g.effective_kernel[0], H) * C  # one output row's windows read at most span_h input rows
    return fitting(call.dtype.itemsize, budget, backward, g.effective_kernel[1], g.stride[1], in_col, n_C, ow)


def row_bytes(call, *, backward: bool = False) -> int:
    """Bytes of one output row and the input rows it reads (at most ``span_h``), in the compute dtype."""
    g = call.geometry
    _, H, W, C = call.A_prev.shape
    _, _, ow, n_C = call.out_shape
    return (min(g.effective_kernel[0], H) * W * C + ow * n_C) * (2 if backward else 1) * call.dtype.itemsize


def stand_in(blk: RowBlock) -> RowBlock:
    """A block whose windows read padding only, standing on one zero row (column): one pad fewer."""
    if blk.in_hi > blk.in_lo:
        return blk
    return dataclasses.replace(blk, top=blk.top - 1) if blk.top else dataclasses.replace(blk, bottom=blk.bottom - 1)


def reads_input(rb: RowBlock, cb: RowBlock) -> bool:
    """Whether a tile's windows read any input (a conv's may read padding only along an axis)."""
    return rb.in_hi > rb.in_lo and cb.in_hi > cb.in_lo


def _tile_input(call, example: int, rb: RowBlock, cb: RowBlock):
    """The tile's input rectangle and the blocks it stands for; where its windows lie in the padding only along
    an axis (a conv's, whose padding is zeros), zeros with one row (column) for that padding."""
    if reads_input(rb, cb):
        return _input_rows(call.A_prev, example, rb.in_lo, rb.in_hi, (cb.in_lo, cb.in_hi)), rb, cb
    C = call.A_prev.shape[3]
    shape = (1, max(rb.in_hi - rb.in_lo, 1), max(cb.in_hi - cb.in_lo, 1), C)
    return np.zeros(shape, dtype=call.dtype), stand_in(rb), stand_in(cb)


def tile_params(params, rb: RowBlock, cb: RowBlock):
    """The layer's hyperparameters ``params`` (ConvParams or PoolParams) for one tile: the pads its windows
    reach on each side."""
    return dataclasses.replace(params, pad=(rb.top, rb.bottom, cb.top, cb.bottom))


class _Census:
    """Tells ``seen`` every input element of an example once: the tiles' rectangles as they are read, and what
    no window reads (a stride past the kernel, the last rows and columns) read for it, in bounded pieces.

    Tiles come in bands along an ``outer`` axis (0: rows, the forward's order; 1: columns, the backward's),
    each band's tiles in order along the other axis; marks along both say what has been told."""

    def __init__(self, call, example: int, seen: Optional[Seen], outer: int, piece: Tuple[int, int]):
        self.call, self.example, self.seen, self.outer, self.piece = call, example, seen, outer, piece
        self.n = call.A_prev.shape[1:3]
        self.mark = 0  # along the outer axis: everything before it is told
        self.band = (0, 0)  # the band being told along the outer axis
        self.inner = 0  # along the inner axis, within the band

    def start(self, blk: RowBlock) -> None:
        """A band of tiles whose input spans ``blk`` along the outer axis."""
        self.band, self.inner = (self.mark, max(self.mark, blk.in_hi)), 0

    def tile(self, x: np.ndarray, rb: RowBlock, cb: RowBlock) -> None:
        """The tile read as ``x`` (input rows ``rb``, columns ``cb``; a stand-in when not :func:`reads_input`)."""
        inner_blk = cb if self.outer == 0 else rb
        span = (self.inner, max(self.inner, inner_blk.in_hi))
        self.inner = span[1]
        if self.seen is None:
            return
        (r0, r1), (c0, c1) = (self.band, span) if self.outer == 0 else (span, self.band)
        if not reads_input(rb, cb):
            self._read(r0, r1, c0, c1)
            return
        y0, y1 = max(r0, rb.in_lo), min(r1, rb.in_hi)
        x0, x1 = max(c0, cb.in_lo), min(c1, cb.in_hi)
        if y0 >= y1 or x0 >= x1:
            self._read(r0, r1, c0, c1)
            return
        self.seen(x[:, y0 - rb.in_lo:y1 - rb.in_lo, x0 - cb.in_lo:x1 - cb.in_lo])
        # NOTE: blocks' input ends only grow, so the region ends where x does: the rest of it lies above x's
        # rows and left of its columns (what no window reads, past the marks)
        self._read(r0, y0, c0, c1)
        self._read(y0, y1, c0, x0)

    def finish_band(self) -> None:
        """The band's input past its last tile along the inner axis; then the band is told."""
        n_inner = self.n[1 - self.outer]
        if self.outer == 0:
            self._read(*self.band, self.inner, n_inner)
        else:
            self._read(self.inner, n_inner, *self.band)
        self.mark = self.band[1]

    def finish(self) -> None:
        """The input past the last band along the outer axis."""
        H, W = self.n
        if self.outer == 0:
            self._read(self.mark, H, 0, W)
        else:
            self._read(0, H, self.mark, W)

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> None:
        """Read input rows ``[r0, r1)`` by columns ``[c0, c1)`` for ``seen``, at most ``piece`` at a time."""
        if self.seen is None or r0 >= r1 or c0 >= c1:
            return
        for y in range(r0, r1, self.piece[0]):
            for x in range(c0, c1, self.piece[1]):
                self.seen(_input_rows(self.call.A_prev, self.example, y, min(r1, y + self.piece[0]),
                                      (x, min(c1, x + self.piece[1]))))


def _piece(call, rows: int, cols: int, piece_bytes: Optional[int]) -> Tuple[int, int]:
    """Rows by columns the census reads at a time (and zeros of ``dA_prev`` no window reaches are yielded): the
    largest input rectangle a tile of ``rows`` by ``cols`` reads, wider within ``piece_bytes``."""
    geom, C = call.geometry, call.A_prev.shape[3]
    r, c = (max(1, (n - 1) * geom.stride[a] + geom.effective_kernel[a]) for a, n in enumerate((rows, cols)))
    return r, c if piece_bytes is None else max(c, piece_bytes // (r * C * call.dtype.itemsize))


def _zeros(y0: int, y1: int, x0: int, x1: int, piece: Tuple[int, int], C: int, dtype):
    """Rows ``[y0, y1)`` by columns ``[x0, x1)`` of ``dA_prev`` that no window reaches: zeros, a piece at a time."""
    for y in range(y0, y1, piece[0]):
        for x in range(x0, x1, piece[1]):
            yield y, x, np.zeros((1, min(y1, y + piece[0]) - y, min(x1, x + piece[1]) - x, C), dtype=dtype), None


def forward_tiles(call, example: int, rows: int, cols: int, seen: Optional[Seen] = None,
                  workspace_bytes: Optional[int] = None, piece_bytes: Optional[int] = None
                  ) -> Iterator[Tuple[int, int, np.ndarray]]:
    """The forward output of one example, ``rows`` output rows by ``cols`` output columns at a time.

    Parameters
    ----------
    call : LayerCall
        A resolved conv or pool call.
    example : int
        Which example of ``call.A_prev``.
    rows : int
        Output rows per tile (1 where one row exceeds the budget; a ceil-mode last row joins the one before it).
    cols : int
        Output columns per tile (:func:`block_cols`).
    seen : callable, optional
        Receives every input element of the example once, in pieces (each ``(1, k, w, n_C_prev)``).
    workspace_bytes : int, optional
        The engine's workspace per call.
    piece_bytes : int, optional
        Bytes the census may read at a time of what no window reads (default: a tile's input rectangle).

    Yields
    ------
    r0, c0 : int
        The tile's first output row and column.
    out : ndarray, shape (1, r1 - r0, c1 - c0, n_C)
        Its output, NHWC in the compute dtype.
    """
    geom = call.geometry
    census = _Census(call, example, seen, 0, _piece(call, rows, cols, piece_bytes))
    for r0, r1 in blocks(geom, rows):
        rb = row_block(geom, r0, r1)
        census.start(rb)
        for c0, c1 in blocks(geom, cols, axis=1):
            cb = row_block(geom, c0, c1, axis=1)
            x, rb_in, cb_in = _tile_input(call, example, rb, cb)
            census.tile(x, rb, cb)
            params = tile_params(call.params, rb_in, cb_in)
            if call.kind == "conv":
                out = conv2d(x, call.W, call.b, params, workspace_bytes=workspace_bytes)
            else:
                out = pool2d(x, params, workspace_bytes=workspace_bytes)
            yield r0, c0, out
        census.finish_band()
    census.finish()
    _release(call.A_prev)


def backward_tiles(call, example: int, rows: int, cols: int, seen: Optional[Seen] = None,
                   seen_grad: Optional[Seen] = None, workspace_bytes: Optional[int] = None,
                   piece_bytes: Optional[int] = None) -> Iterator[Tuple[int, int, np.ndarray, object]]:
    """The input gradient of one example, a final tile at a time, with each tile's dW and db.

    Parameters
    ----------
    call : LayerCall
        A resolved conv or pool call with its upstream gradient ``call.grad``.
    example, rows, cols, seen, workspace_bytes, piece_bytes
        As :func:`forward_tiles` (``piece_bytes`` bounds the tiles of zeros too).
    seen_grad : callable, optional
        Receives every element of the example's upstream gradient once.

    Yields
    ------
    y0, x0 : int
        The first input row and column of the tile of ``dA``.
    dA : ndarray, shape (1, k, w, n_C_prev)
        Rows ``y0:y0 + k`` by columns ``x0:x0 + w`` of the example's ``dA_prev``, final (``k`` or ``w`` may be 0
        where a tile makes nothing final); together they cover every input element once, the tiles of one
        stripe of columns top to bottom, the stripes left to right, with the same rows in every stripe. Rows and
        columns no window reaches are zeros, yielded in pieces of ``piece_bytes`` with ``grads`` None.
    grads : ConvGrads or None
        The tile's ``dW`` and ``db`` (conv; None for pool), to be summed over the tiles.
    """
    geom = call.geometry
    _, H, W, C = call.A_prev.shape
    n_rows, n_cols = geom.out_hw
    piece = _piece(call, rows, cols, piece_bytes)
    census = _Census(call, example, seen, 1, piece)
    strip = np.zeros((H, 0, C), dtype=call.dtype)  # dA of input columns [done_c, ...) the stripes so far reach
    done_c = 0  # input columns before this one are final and yielded
    for c0, c1 in blocks(geom, cols, axis=1):
        cb = row_block(geom, c0, c1, axis=1)
        nx = row_block(geom, c1, n_cols, axis=1).in_lo if c1 < n_cols else W  # the next stripe's first column
        width = max(cb.in_hi, done_c) - done_c  # the columns the stripe's windows read, from done_c (== cb.in_lo)
        keep = min(nx - done_c, width)  # of those, final here: the rest, [nx, ...), is the next strip
        shared = np.zeros((H, width - keep, C), dtype=call.dtype)  # and [done_c + width, nx) is read by no window
        census.start(cb)
        carry = np.zeros((1, 0, width, C), dtype=call.dtype)  # rows [done_r, ...) of the stripe, summed so far
        done_r = reach = 0  # reach: where the rows the windows so far read end (the same in every stripe)
        for r0, r1 in blocks(geom, rows):
            rb = row_block(geom, r0, r1)
            x, rb_in, cb_in = _tile_input(call, example, rb, cb)
            census.tile(x, rb, cb)
            g = _input_rows(call.grad, example, r0, r1, (c0, c1))
            if seen_grad is not None:
                seen_grad(g)
            params = tile_params(call.params, rb_in, cb_in)
            if call.kind == "conv":
                grads = conv2d_backward(g, x, call.W, params, workspace_bytes=workspace_bytes)
                dx = grads.dA_prev
            else:
                grads = None
                dx = pool2d_backward(g, x, params, workspace_bytes=workspace_bytes)
            if reads_input(rb, cb):  # a tile of padding-only windows adds nothing to dA_prev
                carry = _add_rows(carry, done_r, dx, rb.in_lo, cb.in_lo - done_c)
            if rb.in_hi > rb.in_lo:
                reach = rb.in_hi
            nxt = row_block(geom, r1, n_rows).in_lo if r1 < n_rows else H
            if nxt > done_r:
                upto = min(nxt, max(done_r, reach))
                final = _take(carry, done_r, upto, width, C, call.dtype)
                carry = carry[:, nxt - done_r:]
                final[0, :, :strip.shape[1]] += strip[done_r:upto]  # the previous stripe's share of these columns
                shared[done_r:upto] = final[0, :, keep:]
                yield done_r, done_c, final[:, :, :keep], grads
                # NOTE: in pieces: a stride of thousands of columns (rows) leaves as many between two stripes
                # (row blocks), zeros; the pieces of rows upto:nxt are the same in every stripe
                yield from _zeros(done_r, upto, done_c + keep, nx, (max(1, upto - done_r), piece[1]), C, call.dtype)
                yield from _zeros(upto, nxt, done_c, nx, piece, C, call.dtype)
                done_r = nxt
            elif grads is not None:
                yield done_r, done_c, np.zeros((1, 0, keep, C), dtype=call.dtype), grads
        census.finish_band()
        strip, done_c = shared, nx
    census.finish()
    _release(call.A_prev, call.grad)
