"""Examples too large for the checker's workspace: a convolution's evaluated by tiles of their output, a
sampled element of them (a convolution's or a pool's) on the outputs its windows reach.

The checker's evaluations run on chunks of examples (:func:`.perturbed.batch_chunks`), at least one
example each; the engine bounds its own workspace by blocks of output rows, at least one row. So an
example whose outputs, or one of whose output rows' patches, exceed the workspace (a 1 x N x C signal
with N in the millions; a wide image under a bank of hundreds of stacked filters) would be held at
once, in copies. Such examples are evaluated by tiles: output rows ``[r0, r1)`` by columns ``[c0, c1)``
are the layer on the input rectangle their windows read, with the pads they reach on each side
(:func:`cnncli.engine.geometry.row_block`, as the CLI's passes do in :mod:`cnncli.passes.tiles`), so a
tile's outputs are the example's own and every sum over outputs (a loss difference, ``dW``, ``db``) is
the sum over the tiles; ``dA_prev`` is the tiles' input gradients added at their places. Only the
arrays the caller holds anyway (an example's input, upstream gradient and gradient) are whole; what
each call allocates beyond them is bounded by the workspace. Results equal the untiled ones up to the
rounding of another summation order.

A sampled element of such an example, under a convolution or a pool, is evaluated on the outputs its
windows reach only (:func:`local_differences`): the others are the same on both sides of a central
difference.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ..engine import conv2d, conv2d_backward
from ..engine.geometry import RowBlock, WindowGeometry, outputs_reading_all, outputs_within, row_block, row_blocks
from ..passes.rows import blocks
from ..passes.tiles import reads_input, stand_in, tile_params
from .perturbed import _contract

#: Bytes of one value: the checker computes in float64.
ITEM = 8
#: Bytes of the outputs and patches of one call whose outputs are dropped once used (a loss difference's).
WORKSPACE_BYTES = 64 * 2**20
#: Bytes of one output row's patches above which an engine call whose outputs are kept (a forward, a backward)
#: goes by tiles: the engine itself bounds its workspace by blocks of rows of a few MiB, at least one row,
#: and besides the patches a backward allocates about as much again (measured: about 2.2x a tile's patches).
ENGINE_BYTES = 8 * 2**20
#: Bytes of one example's input (float64) above which it is evaluated by tiles of its output rows in every call,
#: even where one output row fits the budget: a 1 x 4000 x 4000 x 1 image, whose rows fit, held its upstream
#: gradient, gradient and rounding floor whole (0.5 GB each under four output channels). Below it an example is
#: tiled only where it must be, and results keep their summation order (a 224 x 224 x 64 example: 25 MB).
HUGE_INPUT_BYTES = 32 * 2**20
#: Elements evaluated in one call by :func:`local_differences` (their rectangles stacked; LOCAL_BYTES bounds them).
#: A call's fixed cost (the engine's checks and plans, a thread hand-off) was most of a small rectangle's: --method
#: full on a 1 x 1 x 1M x 4 signal under a 1x5 conv 14.2 s at 256, 9.0 s at 4096 (7.7 s at 16384, 18 MB more), a
#: 2100 x 2100 image under a 3x3 conv 21.8 -> 13.5 s; the same results to the bit (each rectangle is an example
#: of the call, computed alone).
LOCAL_BATCH = 4096
#: Output values of one example from which a convolution's or a pool's sampled A_prev elements are evaluated
#: locally (:func:`local_differences`) however the example fits the workspace: two evaluations of a 224 x 224 x 64
#: example's 3.2M outputs per element cut auto's sample to 20 elements, and took longer than 256 locally.
LOCAL_OUTPUTS = 2**16


@dataclass(frozen=True)
class Tile:
    """One tile of output rows ``rows`` by columns ``cols``: the input rectangle it reads and its hyperparameters.

    Attributes
    ----------
    rows, cols : slice
        Its output rows and columns.
    rb, cb : RowBlock
        The input rows and columns its windows read, with their pads (where they read padding only along an
        axis, a stand-in of one zero row or column with one pad fewer: see :func:`cnncli.passes.tiles.stand_in`).
    params : ConvParams
        The layer's hyperparameters for the tile (its pads).
    real : bool
        Whether its windows read any input (else the rectangle is the stand-in zeros).
    """

    rows: slice
    cols: slice
    rb: RowBlock
    cb: RowBlock
    params: object
    real: bool

    @property
    def rect(self) -> tuple:
        """The index of its input rectangle in an array of examples (k, H, W, C): ``X[tile.rect]``."""
        return slice(None), slice(self.rb.in_lo, self.rb.in_hi), slice(self.cb.in_lo, self.cb.in_hi)

    def input(self, X: np.ndarray) -> np.ndarray:
        """The tile's input rectangle of ``X`` (k, H, W, C): a view, or zeros where it reads padding only."""
        if self.real:
            return X[self.rect]
        return np.zeros((X.shape[0], max(1, self.rb.in_hi - self.rb.in_lo), max(1, self.cb.in_hi - self.cb.in_lo),
                         X.shape[3]), dtype=X.dtype)


def plan(geom: WindowGeometry, n_C_prev: int, k: int, channels: int, budget: int,
         least: int = 1, unread: bool = False, read_channels: Optional[int] = None) -> Optional[Tuple[int, int]]:
    """Output rows and columns per tile for ``k`` examples, or None when they are evaluated whole.

    Whole when ``least`` of them (the fewest the caller evaluates together) take at most ``budget`` bytes
    with their ``channels`` outputs (0: outputs the caller keeps anyway) and the patches of one output row
    (the engine's least block), and their input is at most ``HUGE_INPUT_BYTES`` each; else tiles of ``R``
    whole output rows whose outputs and patches, for all ``k``, fit, or, where one row does not, of one row by
    ``K`` columns (closed form; at least one output each). A huge example's tile also reads at most ``budget``
    of its input, or is one output (under ceil mode a last output joins the tile before it, which may then read
    up to one stride more).

    NOTE: only an example too large alone is tiled (one of its output rows too wide, or its input above
    ``HUGE_INPUT_BYTES``; a chunk of several such examples is tiled for all of them). A chunk of several smaller
    examples is the caller's, bounded by its own budget, and the engine cuts it by examples; tiles would only
    add its sums in another order (a data set of small one-row examples would no longer be checked bit for bit
    as before the tiles).

    Parameters
    ----------
    geom : WindowGeometry
        The layer's geometry (its kernel and output).
    n_C_prev : int
        Input channels (a patch holds ``kh * kw * n_C_prev`` values per output).
    k : int
        Examples evaluated at once.
    channels : int
        Output values per output position the call allocates and drops (0: none beyond the result).
    budget : int
        Bytes.
    least : int
        Examples the caller cannot evaluate apart (2: the plus and minus copies of one example).
    unread : bool
        The input is one example unread (:class:`.lazy.ReadExample`): tiled as a huge one, whatever its size (a
        group's channels of a huge example may be below ``HUGE_INPUT_BYTES``, but are read by rectangles too).
    read_channels : int, optional
        Channels a rectangle of the input holds when read (an unread group's: every channel of the example, the
        group's taken after the read); default ``n_C_prev``. The input a tile reads is bounded with them.

    Returns
    -------
    (int, int) or None

    Raises
    ------
    Nothing (closed form).
    """
    oh, ow = geom.out_hw
    kh, kw = geom.kernel
    patch = kh * kw * n_C_prev
    # NOTE: an example of a huge input whose output rows fit is tiled by rows too: whole, each evaluation's
    # arrays of its size (its upstream gradient, gradient, floor) would be held at once (see HUGE_INPUT_BYTES)
    huge = unread or ITEM * geom.in_hw[0] * geom.in_hw[1] * n_C_prev > HUGE_INPUT_BYTES
    if not huge and ITEM * min(k, least) * (oh * ow * channels + ow * patch) <= budget:
        return None
    per_output = ITEM * k * (channels + patch)
    rows = budget // (per_output * ow)
    if huge:  # NOTE: and the input a tile reads within the budget: under a stride past the kernel, few outputs
        # (whose patches fit) read a huge input (one output row of a 1 x 1 x 4M x 4 signal, stride 1000, read it all)
        read = read_channels or n_C_prev
        rows = min(rows, outputs_within(geom, budget // (ITEM * k * geom.in_hw[1] * read), 0))
    if rows >= 1:
        return int(min(rows, oh)), int(ow)
    cols = budget // per_output
    if huge:  # one output row's windows: effective_kernel rows at most
        cols = min(cols, outputs_within(geom, budget // (ITEM * k * geom.effective_kernel[0] * read), 1))
    return 1, int(min(ow, max(1, cols)))


def tiles(geom: WindowGeometry, params, rows: int, cols: int) -> List[Tile]:
    """The tiles of ``rows`` output rows by ``cols`` columns covering the output, row band by row band.

    Parameters
    ----------
    geom : WindowGeometry
    params : ConvParams
        The hyperparameters whose pads each tile replaces by its own.
    rows, cols : int
        From :func:`plan`.

    Returns
    -------
    list of Tile

    Raises
    ------
    Nothing for :func:`plan`'s ``rows`` and ``cols`` (at least 1 each; 0 raises ValueError).
    """
    out = []
    for r0, r1 in blocks(geom, rows):
        rb = row_block(geom, r0, r1)
        for c0, c1 in blocks(geom, cols, axis=1):
            cb = row_block(geom, c0, c1, axis=1)
            real = reads_input(rb, cb)
            rb_in, cb_in = (rb, cb) if real else (stand_in(rb), stand_in(cb))
            out.append(Tile(slice(r0, r1), slice(c0, c1), rb_in, cb_in, tile_params(params, rb_in, cb_in), real))
    return out


def each(geom: WindowGeometry, params, X: np.ndarray, channels: int, budget: int,
         least: int = 1) -> Iterator[Tuple[Tile, np.ndarray]]:
    """``(tile, its input rectangle)`` over ``X`` (k, H, W, C) by :func:`plan`; one whole tile when it fits."""
    # NOTE: an unread example (a group's channels of a huge one) is never a whole tile: it is read by rectangles
    unread = not isinstance(X, np.ndarray)
    for tile in each_tile(geom, params, X.shape, channels, budget, least, unread=unread,
                          read_channels=X.read_channels if unread else None):
        yield tile, (X if tile.rb is None else tile.input(X))


def each_tile(geom: WindowGeometry, params, shape, channels: int, budget: int, least: int = 1,
              unread: bool = False, read_channels: Optional[int] = None) -> Iterator[Tile]:
    """:func:`each`'s tiles for an input of ``shape`` (k, H, W, C), reading nothing (the whole tile, with no
    blocks, when it fits; never for an ``unread`` input: see :func:`plan`)."""
    t = plan(geom, shape[3], shape[0], channels, budget, least, unread, read_channels)
    oh, ow = geom.out_hw
    if t is None:
        yield Tile(slice(0, oh), slice(0, ow), None, None, params, True)
        return
    yield from tiles(geom, params, *t)


def forward(X: np.ndarray, W: np.ndarray, b, params, geom: WindowGeometry, budget: int, conv=conv2d) -> np.ndarray:
    """``conv2d(X, W, b, params)`` (k, n_H, n_W, n_C), by tiles where :func:`plan` asks (one output row's patches
    exceed ``budget``, or the input is huge).

    Parameters
    ----------
    X : ndarray, shape (k, n_H_prev, n_W_prev, n_C_prev)
    W : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
    b : ndarray, shape (n_C,), or None
    params : ConvParams
    geom : WindowGeometry
        ``params``' geometry for ``X`` and ``W``.
    budget : int
    conv : callable
        The engine's forward (:func:`cnncli.engine.conv2d`; the caller's name for it).

    Returns
    -------
    ndarray, shape (k, n_H, n_W, n_C)

    Raises
    ------
    ShapeError, HyperparameterError
        As ``conv``, for inputs it refuses (the checker has checked them before).
    """
    if plan(geom, X.shape[3], X.shape[0], 0, budget) is None:
        return conv(X, W, b, params)
    Z = np.empty((X.shape[0],) + tuple(geom.out_hw) + (W.shape[3],))
    for tile, x in each(geom, params, X, 0, budget):
        Z[:, tile.rows, tile.cols] = conv(x, W, b, tile.params)
    return Z


def backward(dZ: np.ndarray, X: np.ndarray, W: np.ndarray, params, geom: WindowGeometry, budget: int,
             input_grad: bool = True, engine=conv2d_backward):
    """``conv2d_backward(dZ, X, W, params)``, by tiles where :func:`plan` asks (one output row's patches exceed
    ``budget``, or the input is huge).

    Parameters
    ----------
    dZ : ndarray, shape (k, n_H, n_W, n_C)
    X : ndarray, shape (k, n_H_prev, n_W_prev, n_C_prev)
    W : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
    params : ConvParams
    geom : WindowGeometry
    budget : int
    input_grad : bool
        As :func:`cnncli.engine.conv2d_backward`.
    engine : callable
        The engine's backward (:func:`cnncli.engine.conv2d_backward`; the caller's name for it).

    Returns
    -------
    (dA_prev or None, dW, db)
        Shaped like ``X``, ``W`` and (n_C,).

    Raises
    ------
    ShapeError, HyperparameterError
        As ``engine``, for inputs it refuses (the checker has checked them before).
    """
    if plan(geom, X.shape[3], X.shape[0], 0, budget) is None:
        g = engine(dZ, X, W, params, input_grad=input_grad)
        return g.dA_prev, g.dW, g.db
    dA = np.zeros(X.shape) if input_grad else None
    dW, db = np.zeros(W.shape), np.zeros(W.shape[3])
    for tile, dA_t, dW_t, db_t in backward_tiles(dZ, X, W, params, geom, budget, input_grad, engine):
        if dA_t is not None:
            dA[tile.rect] += dA_t
        dW += dW_t
        db += db_t
    return dA, dW, db


def pool_backward(dZ: np.ndarray, X: np.ndarray, params, geom: WindowGeometry, budget: int, engine) -> np.ndarray:
    """``engine(dZ, X, params)`` (a pool's backward, shaped like ``X``), by tiles where :func:`plan` asks (one
    output row's windows exceed ``budget``, or the input is huge): each tile's input gradient added at its
    rectangle (windows are independent: the same values, overlapping windows' parts added in another order).

    Parameters
    ----------
    dZ : ndarray, shape (k, n_H, n_W, n_C)
    X : ndarray, shape (k, n_H_prev, n_W_prev, n_C)
    params : PoolParams
    geom : WindowGeometry
    budget : int
    engine : callable
        The engine's pool backward (:func:`cnncli.engine.pool2d_backward`; the caller's name for it).

    Returns
    -------
    ndarray, shape of ``X``

    Raises
    ------
    As ``engine``, for inputs it refuses (the checker has checked them before).
    """
    if plan(geom, X.shape[3], X.shape[0], 0, budget) is None:
        return engine(dZ, X, params)
    dA = np.zeros(X.shape)
    for tile, part in pool_backward_tiles(dZ, X, params, geom, budget, engine):
        if part is not None:
            dA[tile.rect] += part
    return dA


def pool_backward_tiles(dZ, X: np.ndarray, params, geom: WindowGeometry, budget: int, engine):
    """:func:`pool_backward`'s tiles one by one: ``(tile, its input rectangle's gradient)``, None for a tile of
    padding-only windows (it reaches no input element); ``dZ`` read by tiles ``dZ[:, rows, cols]``."""
    for tile, x in each(geom, params, X, 0, budget):
        yield tile, (engine(np.ascontiguousarray(dZ[:, tile.rows, tile.cols]), x, tile.params) if tile.real
                     else None)


def backward_tiles(dZ, X: np.ndarray, W: np.ndarray, params, geom: WindowGeometry, budget: int,
                   input_grad: bool = True, engine=conv2d_backward):
    """:func:`backward`'s tiles one by one: ``(tile, its input rectangle's gradient or None, dW, db)`` of each.

    Parameters
    ----------
    dZ : ndarray or lazy.DrawnExample, shape (k, n_H, n_W, n_C)
        Read by tiles ``dZ[:, rows, cols]``.
    X, W, params, geom, budget, input_grad, engine
        As :func:`backward`.

    Yields
    ------
    (Tile, ndarray or None, ndarray, ndarray)
        The input gradient (k, r, c, n_C_prev) of the tile's rectangle, None for a tile of padding-only
        windows (it reaches no input element) or without ``input_grad``; its parts of dW and db.

    Raises
    ------
    As :func:`backward`.
    """
    for tile, x in each(geom, params, X, 0, budget):
        g = engine(np.ascontiguousarray(dZ[:, tile.rows, tile.cols]), x, W, tile.params,
                   input_grad=input_grad and tile.real)
        yield tile, (g.dA_prev if input_grad and tile.real else None), g.dW, g.db


def directed_difference(evaluate, x: np.ndarray, G, geom: WindowGeometry, params, channels: int, steps,
                        count: int) -> np.ndarray:
    """``sum(G * (f(x + s) - f(x - s)))`` of one example ``x`` for each of ``count`` steps ``s`` given by rectangles
    of it, tile by tile: each tile's two sides made from its input rectangle only, no copy of the example; every
    step's on a tile before the next tile, so that the tile's input and ``G`` are read once for all of them.

    The tiles are those an evaluation of the example's plus and minus copies takes within ``WORKSPACE_BYTES``
    (:func:`each` of the two copies), so each step's sum is that of that evaluation (a convolution's
    ``_differences_of``), the same values: its tiles' parts added in the same order. A tile whose windows read
    padding only adds nothing (its two sides are the same zeros: their difference is exactly 0).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(X, params)``: the layer's outputs (without a conv's bias: it cancels) of ``X`` under ``params``.
    x : ndarray, shape (1, n_H_prev, n_W_prev, n_C_prev)
    G : ndarray or lazy.DrawnExample, shape (1, n_H, n_W, n_C)
        Read by tiles ``G[:, rows, cols]``.
    geom : WindowGeometry
    params : ConvParams or PoolParams
        The layer's (each tile gets its own pads).
    channels : int
        Output channels.
    steps : callable
        ``steps(rows, cols)``: an iterable of the ``count`` steps on the input rectangle ``x[:, rows, cols]``, each of
        its shape, in order.
    count : int

    Returns
    -------
    ndarray, shape (count,)

    Raises
    ------
    Whatever ``evaluate`` raises.
    """
    _, H, Wd, C = x.shape
    out = np.zeros(count)
    t = plan(geom, C, 2, channels, WORKSPACE_BYTES, least=2)
    oh, ow = geom.out_hw
    whole = Tile(slice(0, oh), slice(0, ow), None, None, params, True)
    for tile in [whole] if t is None else tiles(geom, params, *t):
        if not tile.real:  # padding-only windows: the same stand-in zeros on both sides, no difference
            continue
        rows, cols = (slice(0, H), slice(0, Wd)) if t is None else (
            slice(tile.rb.in_lo, tile.rb.in_hi), slice(tile.cb.in_lo, tile.cb.in_hi))
        xr, g = x[:, rows, cols], G[:, tile.rows, tile.cols]
        for q, s in enumerate(steps(rows, cols)):
            # NOTE: each side in a call of its own, subtracted before the contraction (see local_differences)
            d = evaluate(xr + s, tile.params) - evaluate(xr - s, tile.params)
            out[q] += _contract(d, g)[0]
    return out


def local_differences(evaluate, A: np.ndarray, G: np.ndarray, geom: WindowGeometry, params, idx, plus,
                      minus) -> np.ndarray:
    """``L(x+) - L(x-)`` for A's elements ``idx`` (flat) set to ``plus``/``minus``, each on the input rectangle that
    the outputs it reaches read, those outputs only.

    NOTE: the other outputs are the same on both sides and their differences exactly zero (as the stacked copies
    of a whole example leave them); here they are not computed, so an element costs its windows' outputs, not its
    example's. Elements whose rectangles have the same shape and pads share a call.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(X, params)``: the layer's outputs (k, r, c, n_C) of inputs ``X`` (k, ...) under ``params``
        (without a conv's bias: it cancels).
    A : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
    G : ndarray, shape (m, n_H, n_W, n_C)
        The upstream gradient.
    geom : WindowGeometry
        The layer's geometry for A.
    params : ConvParams or PoolParams
        The layer's hyperparameters (each rectangle gets its own pads).
    idx : ndarray of int64
    plus, minus : ndarray, shape (len(idx),)

    Returns
    -------
    ndarray, shape (len(idx),)

    Raises
    ------
    Whatever ``evaluate`` raises.
    """
    idx = np.asarray(idx, dtype=np.int64)
    out = np.zeros(len(idx))
    # NOTE: the elements go by pieces, each piece's rectangles in closed form, as arrays (a Python tuple and two
    # RowBlocks per element held 670 MB for a full check of 1M elements); a group's last batch short of
    # LOCAL_BATCH waits for the next piece's members. So every call sees the rectangles it saw when the elements
    # were grouped all at once: each kind of rectangle's members in order, LOCAL_BATCH at a time
    waiting: dict = {}  # per kind of rectangle: its members not yet evaluated (rows of _kinds' fields)
    for lo in range(0, len(idx), LOCAL_PIECE):
        for kind, members in _kinds(geom, A.shape, idx[lo:lo + LOCAL_PIECE], lo):
            held = waiting.get(kind)
            members = members if held is None else np.concatenate([held, members])
            batch = _batch(kind, A.shape[3], G.shape[3])
            full = len(members) - len(members) % batch
            for b in range(0, full, batch):
                _evaluate(evaluate, A, G, params, kind, members[b:b + batch], plus, minus, out)
            waiting[kind] = members[full:]
    for kind, members in waiting.items():
        if len(members):
            _evaluate(evaluate, A, G, params, kind, members, plus, minus, out)
    return out


#: Elements whose rectangles :func:`local_differences` works out at a time (a few tens of MB of int64 fields).
LOCAL_PIECE = 2**16
#: Kinds of rectangles coded in one int64 below this many codes (else their rows of fields are sorted).
KEY_CODES = 2**62
#: Bytes of one call's stacked rectangles (both sides), outputs and G at most: fewer than LOCAL_BATCH elements of a
#: kind whose rectangles are large (a window wide against its stride reaches much of its example).
LOCAL_BYTES = 24 * 2**20


def _batch(kind: tuple, C: int, n_C: int) -> int:
    """Elements of ``kind`` (see :func:`_kinds`) evaluated in one call: ``LOCAL_BATCH``, fewer where their two
    input rectangles, two outputs and G would exceed ``LOCAL_BYTES``; at least one."""
    h_in, _, _, n_r, w_in, _, _, n_c = kind
    per = 8 * (2 * h_in * w_in * C + 3 * n_r * n_c * n_C)
    return max(1, min(LOCAL_BATCH, LOCAL_BYTES // per))


def _kinds(geom: WindowGeometry, shape, idx: np.ndarray, first: int):
    """The elements ``idx`` (flat, into ``shape``; ``first``: the position of ``idx[0]`` among all) that some
    window reads, by kind of rectangle: ``(kind, members)``, kind the rectangles' shape and pads (input rows,
    top, bottom, output rows, then the same of columns), members an int64 array (n, 9) in order of ``idx``:
    position, example, row, column, channel, first input row and column, first output row and column."""
    e, i, j, c = np.unravel_index(idx, shape)
    (r0, r1), (c0, c1) = outputs_reading_all(geom, i), outputs_reading_all(geom, j, axis=1)
    live = np.flatnonzero((r0 < r1) & (c0 < c1))  # the others: no window reads them, the loss does not change
    if not live.size:
        return
    rb, cb = row_blocks(geom, r0[live], r1[live]), row_blocks(geom, c0[live], c1[live], axis=1)
    keys = np.stack([rb.in_hi - rb.in_lo, rb.top, rb.bottom, rb.out_hi - rb.out_lo,
                     cb.in_hi - cb.in_lo, cb.top, cb.bottom, cb.out_hi - cb.out_lo], axis=1)
    fields = np.stack([live + first, e[live], i[live], j[live], c[live], rb.in_lo, cb.in_lo, rb.out_lo, cb.out_lo],
                      axis=1)
    # one int64 per key (its fields are a few rows and pads each): a sort of rows of 8 fields was a third of a full
    # check's time; where the fields' ranges do not fit one int64 (windows hundreds wide, dilated), those rows
    dims = tuple(int(v) + 1 for v in keys.max(axis=0))
    if math.prod(dims) < KEY_CODES:
        codes = np.ravel_multi_index(tuple(keys.T), dims)
    else:
        codes = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    order = np.argsort(codes, kind="stable")  # by kind, each in element order
    starts = np.flatnonzero(np.diff(codes[order], prepend=-1))
    for a, b in zip(starts.tolist(), starts[1:].tolist() + [len(order)]):
        members = order[a:b]
        yield tuple(int(v) for v in keys[members[0]]), fields[members]


def _evaluate(evaluate, A, G, params, kind: tuple, members: np.ndarray, plus, minus, out: np.ndarray) -> None:
    """One call of :func:`local_differences`: its ``members`` (of one ``kind``, from :func:`_kinds`) stacked,
    each set to plus, then to minus, their differences contracted with G into ``out``."""
    h_in, top, bottom, n_r, w_in, left, right, n_c = kind
    tile = dataclasses.replace(params, pad=(top, bottom, left, right))
    q, e, i, j, c, r_in, c_in, r_out, c_out = members.T
    k = len(q)
    R = _rectangles(A, e, r_in, c_in, h_in, w_in)
    X = np.concatenate([R, R])
    at = (i - r_in, j - c_in, c)
    X[(np.arange(k),) + at] = plus[q]
    X[(np.arange(k, 2 * k),) + at] = minus[q]
    Gs = _rectangles(G, e, r_out, c_out, n_r, n_c)
    # NOTE: each side in a call of its own, of the same shape: an output is then rounded alike on both
    # sides wherever the element does not enter it. Stacked in one call, the plus and minus rows sat at
    # other places of its matrix product, rounded apart: an element between a dilated window's taps
    # (its derivative exactly 0) got a difference of a few ulps, which alone in a small sample
    # failed a correct engine. The two sides subtracted before the contraction, as everywhere.
    d = evaluate(X[:k], tile) - evaluate(X[k:], tile)
    out[q] = np.einsum("ij,ij->i", d.reshape(k, -1), Gs.reshape(k, -1))


#: The rectangle around several elements' rectangles is read at once from an example not held (:func:`_rectangles`)
#: where it spans no more than their separate reads would, and at most this fraction of the example (and
#: ``LOCAL_BYTES``): elements next to each other (a full check's) share most of their rectangles, so one read is
#: less; a sample spread over the example is read rectangle by rectangle, never the example whole.
AROUND_PART = 16


def _rectangles(A, e, r_lo, c_lo, h: int, w: int) -> np.ndarray:
    """The rectangles ``A[e[n], r_lo[n]:r_lo[n] + h, c_lo[n]:c_lo[n] + w]`` stacked, (k, h, w, C).

    An array is indexed at once; an example not held (:class:`.lazy.ReadExample`, :class:`.lazy.DrawnExample`:
    one example, by rectangles) is read in the rectangle around them where that is small (elements next to each
    other), else rectangle by rectangle (a sample spread over it)."""
    rows = r_lo[:, None] + np.arange(h)
    cols = c_lo[:, None] + np.arange(w)
    if isinstance(A, np.ndarray):
        return A[e[:, None, None], rows[:, :, None], cols[:, None, :]]
    k, width, C = len(e), A.shape[2], A.shape[3]
    R0, R1, C0, C1 = int(r_lo.min()), int(r_lo.max()) + h, int(c_lo.min()), int(c_lo.max()) + w
    # what reading a rectangle costs: its flat span (a drawn G draws every value from its first to its last; a
    # tall narrow rectangle, such as the left edge's elements, spans nearly the example); an image's rows of
    # elements share rows of rectangles, each spanning whole rows of the image
    span, one = ((R1 - R0 - 1) * width + C1 - C0) * C, ((h - 1) * width + w) * C
    if span <= min(k * one, A.size // AROUND_PART, LOCAL_BYTES // 8):
        around = A[0, R0:R1, C0:C1]
        return around[rows[:, :, None] - R0, cols[:, None, :] - C0]
    if k > 1 and span <= k * one:  # NOTE: neighbours, but too many for one read: each half around its own
        # (a batch of 4096 elements spanned more than a sixteenth of a small unread example, and each rectangle was
        # read, and G's drawn, on its own: a test's full check 3.9 -> 10.8 s)
        half = k // 2
        return np.concatenate([_rectangles(A, e[:half], r_lo[:half], c_lo[:half], h, w),
                               _rectangles(A, e[half:], r_lo[half:], c_lo[half:], h, w)])
    return np.stack([A[0, a:a + h, b:b + w] for a, b in zip(r_lo.tolist(), c_lo.tolist())])


def _block(geom: WindowGeometry, lo: int, hi: int, axis: int) -> RowBlock:
    """:func:`row_block` of outputs ``[lo, hi)``, with the one before where a ceil-mode last one cannot stand alone."""
    try:
        return row_block(geom, lo, hi, axis)
    except ValueError:
        return row_block(geom, lo - 1, hi, axis)
