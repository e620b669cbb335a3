"""Passes over one example by blocks of its rows, for examples too large for a batch chunk.

A chunk of the batch is at least one example; an example whose input and output exceed
the chunk's bytes (a 50000x50000 image, a huge pad) would be held whole, in and out. Its
output rows are computed instead a block at a time: output rows ``[r0, r1)`` of a window
operation are the operation on the input rows their windows read, with the padding those
windows reach (:func:`cnncli.engine.geometry.row_block`), so each block is one engine call
on a slice of the input, and the example's memory is bounded by the block's. A block is at
least one output row; where one row is wider than the chunk, its columns are split too
(:mod:`.tiles`).

The backward pass takes disjoint blocks of output rows too: their windows overlap on the
input rows between them, so each block's ``dA_prev`` rows that the next block also reaches
are carried and added to, and the rows no later block reaches are final and written (those no
window reads, zeros, a chunk at a time, as the census reads them).
``dW`` and ``db`` are sums over output positions: the disjoint blocks add up to them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from ..engine import conv2d, conv2d_backward, pool2d, pool2d_backward
from ..engine.geometry import RowBlock, row_block
from .layer import Batches

#: Called with each piece of an example's input rows as it is first read (NaN/inf census).
Seen = Callable[[np.ndarray], None]


def block_rows(call, budget: int, *, backward: bool = False) -> int:
    """Output rows per block so that one block's input and output (and gradients) stay within ``budget`` bytes.

    Closed form: a block of ``R`` output rows reads ``(R - 1) * stride + span`` input rows.

    Parameters
    ----------
    call : LayerCall
        A resolved conv or pool call (its ``A_prev`` of shape (m, n_H_prev, n_W_prev, n_C_prev)).
    budget : int
        Bytes of one block's input and output rows in the compute dtype.
    backward : bool
        Count the gradients too (the upstream gradient in, ``dA_prev`` out): twice the bytes.

    Returns
    -------
    int
        Between 1 (a row wider than the budget is still one block) and the output's rows.
    """
    g = call.geometry
    _, _, W, C = call.A_prev.shape
    _, oh, ow, n_C = call.out_shape
    return fitting(call.dtype.itemsize, budget, backward, g.effective_kernel[0], g.stride[0], W * C, ow * n_C, oh)


def fitting(itemsize: int, budget: int, backward: bool, span: int, stride: int, in_unit: int, out_unit: int,
            n: int) -> int:
    """How many of ``n`` output units (rows, columns) fit ``budget`` bytes, at least 1: ``k`` of them read
    ``(k - 1) * stride + span`` input units of ``in_unit`` values and write ``k`` of ``out_unit``, each value
    ``itemsize`` bytes (closed form)."""
    elements = budget // (itemsize * (2 if backward else 1))  # backward: the gradients too
    k = 1 + (elements - span * in_unit - out_unit) // (stride * in_unit + out_unit)
    return int(min(max(k, 1), n))


def _input_rows(A, example: int, lo: int, hi: int, cols: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Rows ``lo:hi`` (and columns ``cols``) of one example of ``A`` (an ndarray or a :class:`~cnncli.passes.layer.Batches`)."""
    if isinstance(A, Batches):
        return A.rows(example, lo, hi, cols)
    return np.asarray(A[example:example + 1, lo:hi, slice(*cols) if cols is not None else slice(None)])


def _release(*arrays) -> None:
    """Let go of an example a :class:`~cnncli.passes.layer.Batches` held whole (an ``.npz`` member's)."""
    for A in arrays:
        if isinstance(A, Batches):
            A.release()


def _block_params(call, blk: RowBlock):
    """The layer's hyperparameters for one block: its pads above and below, the width's as they were."""
    _, _, left, right = call.geometry.pads
    return dataclasses.replace(call.params, pad=(blk.top, blk.bottom, left, right))


def _block_input(call, example: int, blk: RowBlock) -> Tuple[np.ndarray, RowBlock]:
    """The block's input rows; where its windows lie in the padding only (a conv's), one zero row for them.

    A conv's padding is zeros, so a zero row read as input is the padding it stands for."""
    if blk.in_hi > blk.in_lo:
        return _input_rows(call.A_prev, example, blk.in_lo, blk.in_hi), blk
    _, _, W, C = call.A_prev.shape
    zero = np.zeros((1, 1, W, C), dtype=call.dtype)
    if blk.top:
        return zero, dataclasses.replace(blk, top=blk.top - 1)
    return zero, dataclasses.replace(blk, bottom=blk.bottom - 1)


def _piece_rows(call, rows: int, piece_bytes: Optional[int]) -> int:
    """Rows the census reads at a time (and zeros of ``dA_prev`` no window reaches are written): those a block of
    ``rows`` output rows reads, or more within ``piece_bytes``."""
    _, _, W, C = call.A_prev.shape
    least = max(1, (rows - 1) * call.geometry.stride[0] + call.geometry.effective_kernel[0])
    return least if piece_bytes is None else max(least, piece_bytes // (W * C * call.dtype.itemsize))


def _census_rows(call, example: int, counted: int, upto: int, seen: Optional[Seen], piece: int) -> int:
    """Report the example's input rows ``[counted, upto)`` to ``seen`` (read for it, ``piece`` rows at a time);
    returns the new mark."""
    # NOTE: in pieces: a stride of thousands of rows (or the rows under a single output row) leaves thousands
    # unread between two blocks, which read whole would be most of the example the blocks keep out of memory
    if seen is not None:
        for lo in range(counted, upto, piece):
            seen(_input_rows(call.A_prev, example, lo, min(upto, lo + piece)))
    return max(counted, upto)


def _read(call, example: int, blk: RowBlock, counted: int, seen: Optional[Seen],
          piece: int) -> Tuple[np.ndarray, RowBlock, int]:
    """The block's input (:func:`_block_input`), its rows from ``counted`` on, and any skipped before them (read
    ``piece`` rows at a time), told to ``seen``; returns the input, the block it stands for and the new mark."""
    counted = _census_rows(call, example, counted, blk.in_lo, seen, piece)  # rows no window reads, too
    x, blk = _block_input(call, example, blk)
    if seen is not None and blk.in_hi > counted:
        seen(x[:, counted - blk.in_lo:])
    return x, blk, max(counted, blk.in_hi)


def blocks(geom, rows: int, axis: int = 0) -> Iterator[Tuple[int, int]]:
    """Consecutive blocks of ``rows`` output rows (columns, ``axis=1``); a ceil-mode last one that overflows joins
    the block before it (alone it reads less than a window: :func:`~cnncli.engine.geometry.row_block`)."""
    n_out = geom.out_hw[axis]
    last = n_out - 1 if geom.overflow[axis] and n_out > 1 and (n_out - 1) % rows == 0 else n_out
    for lo in range(0, last, rows):
        yield lo, n_out if lo + rows >= last else lo + rows


def forward_blocks(call, example: int, rows: int, seen: Optional[Seen] = None, workspace_bytes: Optional[int] = None,
                   piece_bytes: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
    """The forward output of one example, ``rows`` output rows at a time.

    Parameters
    ----------
    call : LayerCall
        A resolved conv or pool call.
    example : int
        Which example of ``call.A_prev``.
    rows : int
        Output rows per block (:func:`block_rows`).
    seen : callable, optional
        Receives every input row of the example once, in pieces (each ``(1, k, n_W_prev, n_C_prev)``).
    workspace_bytes : int, optional
        The engine's workspace per call.
    piece_bytes : int, optional
        Bytes the census may read at a time of the rows no window reads (default: a block's input rows).

    Yields
    ------
    r0 : int
        The block's first output row.
    out : ndarray, shape (1, r1 - r0, n_W, n_C)
        Its output rows, NHWC in the compute dtype.
    """
    geom, counted = call.geometry, 0
    H, piece = call.A_prev.shape[1], _piece_rows(call, rows, piece_bytes)
    for r0, r1 in blocks(geom, rows):
        x, blk, counted = _read(call, example, row_block(geom, r0, r1), counted, seen, piece)
        if call.kind == "conv":
            out = conv2d(x, call.W, call.b, _block_params(call, blk), workspace_bytes=workspace_bytes)
        else:
            out = pool2d(x, _block_params(call, blk), workspace_bytes=workspace_bytes)
        yield r0, out
    _census_rows(call, example, counted, H, seen, piece)
    _release(call.A_prev)


def backward_blocks(call, example: int, rows: int, seen: Optional[Seen] = None, seen_grad: Optional[Seen] = None,
                    workspace_bytes: Optional[int] = None, piece_bytes: Optional[int] = None
                    ) -> Iterator[Tuple[int, np.ndarray, object]]:
    """The input gradient of one example, a block of final rows at a time, with each block's dW and db.

    Parameters
    ----------
    call : LayerCall
        A resolved conv or pool call with its upstream gradient ``call.grad``.
    example, rows, seen, workspace_bytes, piece_bytes
        As :func:`forward_blocks` (``rows`` output rows per block; ``piece_bytes`` bounds the blocks of zeros too).
    seen_grad : callable, optional
        Receives every row of the example's upstream gradient once.

    Yields
    ------
    y0 : int
        The first input row of ``dA``.
    dA : ndarray, shape (1, k, n_W_prev, n_C_prev)
        Rows ``y0:y0 + k`` of the example's ``dA_prev``, final; together they cover every input row once (rows no
        window reaches are zeros, yielded in pieces of ``piece_bytes`` with ``grads`` None).
    grads : ConvGrads or None
        The block's ``dW`` and ``db`` (conv; None for pool), to be summed over the blocks.
    """
    geom, counted = call.geometry, 0
    _, H, W, C = call.A_prev.shape
    piece = _piece_rows(call, rows, piece_bytes)
    reach = 0  # rows the windows so far read end here: from it to the next block's first row, no window reads
    carry = np.zeros((1, 0, W, C), dtype=call.dtype)  # rows [done, done + len) summed so far
    done = 0  # input rows before this one are final and yielded
    for r0, r1 in blocks(geom, rows):
        blk = row_block(geom, r0, r1)
        x, blk_in, counted = _read(call, example, blk, counted, seen, piece)
        g = _input_rows(call.grad, example, r0, r1)
        if seen_grad is not None:
            seen_grad(g)
        params = _block_params(call, blk_in)
        if call.kind == "conv":
            grads = conv2d_backward(g, x, call.W, params, workspace_bytes=workspace_bytes)
            dx = grads.dA_prev
        else:
            grads = None
            dx = pool2d_backward(g, x, params, workspace_bytes=workspace_bytes)
        if blk.in_hi > blk.in_lo:  # a block of padding-only windows adds nothing to dA_prev
            carry = _add_rows(carry, done, dx, blk.in_lo)
            reach = blk.in_hi
        # rows before the next block's first input row get nothing more: final
        nxt = row_block(geom, r1, geom.out_hw[0]).in_lo if r1 < geom.out_hw[0] else H
        if nxt > done:
            upto = min(nxt, max(done, reach))
            final = _take(carry, done, upto, W, C, call.dtype)
            carry = carry[:, nxt - done:]
            yield done, final, grads
            # NOTE: in pieces: a stride of thousands of rows leaves as many between two blocks, zeros
            for lo in range(upto, nxt, piece):
                yield lo, np.zeros((1, min(nxt, lo + piece) - lo, W, C), dtype=call.dtype), None
            done = nxt
        elif grads is not None:
            yield done, np.zeros((1, 0, W, C), dtype=call.dtype), grads
    _census_rows(call, example, counted, H, seen, piece)
    _release(call.A_prev, call.grad)


def _add_rows(carry: np.ndarray, done: int, dx: np.ndarray, lo: int, col: int = 0) -> np.ndarray:
    """``carry`` (rows from ``done``) with ``dx`` (rows from ``lo >= done``, columns from ``col``) added, grown where
    ``dx`` reaches past it."""
    end = lo + dx.shape[1]
    if end > done + carry.shape[1]:
        grown = np.zeros((1, end - done) + carry.shape[2:], dtype=carry.dtype)
        grown[:, :carry.shape[1]] = carry
        carry = grown
    carry[:, lo - done:end - done, col:col + dx.shape[2]] += dx
    return carry


def _take(carry: np.ndarray, done: int, upto: int, W: int, C: int, dtype) -> np.ndarray:
    """Rows ``[done, upto)`` of the carry; rows it never reached (read by no window) are zeros."""
    if carry.shape[1] >= upto - done:
        return carry[:, :upto - done].copy()
    out = np.zeros((1, upto - done, W, C), dtype=dtype)
    out[:, :carry.shape[1]] = carry
    return out
