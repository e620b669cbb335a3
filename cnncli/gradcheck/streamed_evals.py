"""dA_prev's evaluations on a batch read in chunks (for :mod:`.streamed`).

Two ideas: the one pass over the batch (:func:`pass_over_batch`: per chunk, A_prev's
gradient where it is compared, its rounding floor and the directional sums, with dW, db
and their estimates accumulated), and elementwise central differences from the few
examples that hold chosen elements (:func:`elementwise`: the sample; :func:`localized`:
a failing directional check narrowed down), or from every chunk in turn (:func:`every_element`:
``--method full``). Nothing as large as the data set is held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .context import TensorCheck, Tracker
from .core import LOCALIZE_FULL_LIMIT, Coverage, merge
from .directional import FAST_DIRECTIONS, LOCALIZE_BLOCKS, block_verdict, localize
from .lazy import DrawnExample, Examples, ReadExample, flat_span, rectangle, span_rect
from .metrics import TOP_OFFENDERS, Comparison, gradient_metrics
from .results import GradientResult
from . import perturbed, tiled
from .perturbed import MACHINE_EPS, _contract, batch_chunks
from .pool_problem import PoolProblem


#: dA_prev's errors in its own shape and its height x width error map are kept up to this many values
#: (metrics.DENSE_ERRORS in memory): above, a data set's or one huge example's, each would be as large as it.
DENSE_VALUES = 2**22
#: Values of one example summed at a time where the example is too large for the workspace.
PIECE_VALUES = 2**20
#: Unread max-pool examples' excluded masks are kept, one bit per element, up to this many bytes in all (one
#: example of 4 GiB in float64): each example's windows are searched once, in its coverage pass, and every later
#: rectangle (the sample's blocks, the directions' tiles, the analytical sums' spans) reads its bits. Beyond it
#: each rectangle searches the windows around it again, as before: the same mask either way.
MASK_MEMO_BYTES = 64 * 2**20


def example_bytes(whole, A, G) -> int:
    """Bytes one example takes in an evaluation (a conv's: see ConvProblem._example_bytes).

    Parameters
    ----------
    whole : StreamedConv or None
        The conv's whole-batch view (None for a pool).
    A, G : Examples
        A_prev (m, n_H_prev, n_W_prev, n_C_prev) and the upstream gradient (m, n_H, n_W, n_C).

    Returns
    -------
    int

    Raises
    ------
    Nothing.
    """
    if whole is not None:
        return whole._example_bytes()
    return 8 * (2 * int(np.prod(A.shape[1:])) + 3 * int(np.prod(G.shape[1:])))


@dataclass(frozen=True)
class Batch:
    """A layer call on a batch read in chunks: what every evaluation over it needs.

    Attributes
    ----------
    make : callable
        ``make(A_chunk, G_chunk=None)``: the problem of a set of examples (no ``G_chunk``: without
        an upstream gradient, for what depends on the input only).
    A : Examples
        A_prev (m, n_H_prev, n_W_prev, n_C_prev).
    G : Examples or DrawnUpstream
        The upstream gradient (m, n_H, n_W, n_C): given, or drawn from the seed chunk by chunk.
    chunks : list of slice
        Over the examples, each small enough to evaluate at once (:func:`example_bytes`).
    whole : StreamedConv or None
        A conv's whole-batch view (None for a pool).
    tracker : Tracker
        Progress.
    """

    make: Callable
    A: Examples
    G: object
    chunks: list
    whole: Optional[object]
    tracker: Tracker
    memos: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def per_example(self) -> int:
        """Elements of one example of A_prev."""
        return int(np.prod(self.A.shape[1:]))

    def geometry(self):
        """The layer's geometry (pads and stride decide the pattern hints), from a one-example problem.

        Returns
        -------
        WindowGeometry

        Raises
        ------
        Nothing.
        """
        # NOTE: a stand-in of zero strides, not A[0:1]: that read one example, which may be as large as a chunk
        return self.make(np.broadcast_to(0.0, (1,) + tuple(self.A.shape[1:]))).geom

    def mask_memo(self, e: int, p, h: float) -> Optional["MaskMemo"]:
        """Example ``e``'s kept excluded mask at the step ``h`` (its problem ``p``), made empty on the first ask:
        for an unread example under max pooling, while the masks kept take at most ``MASK_MEMO_BYTES``.

        Returns
        -------
        MaskMemo or None
            None: not kept (no windows to search, or no room); each rectangle computes its own mask.

        Raises
        ------
        Nothing.
        """
        if not (isinstance(p, PoolProblem) and p.params.mode == "max"):  # a conv's or average's: a step test only
            return None
        key = (int(e), float(h))
        if key not in self.memos:
            shape = (1,) + tuple(self.A.shape[1:])
            if sum(m.bits.nbytes for m in self.memos.values()) + MaskMemo.bytes_for(shape) > MASK_MEMO_BYTES:
                return None
            self.memos[key] = MaskMemo(shape)
        return self.memos[key]


def stuck_mask(x: np.ndarray, h: float) -> np.ndarray:
    """Elements of ``x`` (any shape) that a step of ``h`` does not move in float64 (x + h == x or x - h == x)."""
    if x.size <= PIECE_VALUES or not x.flags.c_contiguous:
        return ((x + h) == x) | ((x - h) == x)
    # a piece at a time: no temporary of x's size (one example may be as large as a chunk)
    out, flat = np.empty(x.shape, dtype=bool), x.reshape(-1)
    into = out.reshape(-1)
    for lo in range(0, flat.size, PIECE_VALUES):
        v = flat[lo:lo + PIECE_VALUES]
        np.logical_or((v + h) == v, (v - h) == v, out=into[lo:lo + PIECE_VALUES])
    return out


def read(batch: "Batch", sl: slice):
    """The examples ``sl`` of A_prev: ``A[sl]``, or, for one example whose input exceeds ``tiled.HUGE_INPUT_BYTES``,
    that example unread (:class:`.lazy.ReadExample`): it goes by tiles in every evaluation, each reading its
    rectangle from the file (and its upstream gradient's, drawn from the seed or read from ``--grad``'s file).

    Parameters
    ----------
    batch : Batch
    sl : slice
        Examples of one chunk.

    Returns
    -------
    ndarray or ReadExample, shape (k, n_H_prev, n_W_prev, n_C_prev)

    Raises
    ------
    InputError
        The source cannot be read.
    """
    return batch.A.example(sl.start) if unread(batch, sl) else batch.A[sl]


def unread(batch: "Batch", sl: slice) -> bool:
    """Whether :func:`read` gives the examples ``sl`` unread (one huge example): decided from shapes alone,
    reading nothing."""
    return sl.stop - sl.start == 1 and tiled.ITEM * batch.per_example > tiled.HUGE_INPUT_BYTES


def chunk_of(batch: "Batch", sl: slice) -> tuple:
    """A_prev and G of the examples ``sl``, as the pass takes them: :func:`read`'s A_prev and :func:`upstream`'s G
    (one example's undrawn or unread where it goes by tiles, even where its A_prev is read: G may be far larger).

    Returns
    -------
    (ndarray or ReadExample, ndarray or DrawnExample or ReadExample)

    Raises
    ------
    InputError
        The source cannot be read.
    """
    x = read(batch, sl)
    return x, upstream(batch, sl, x)


def whole_of(x):
    """``x`` as an ndarray: a :class:`.lazy.ReadExample` read whole (where a path needs its values at once)."""
    return x.read() if isinstance(x, ReadExample) else x


class MaskMemo:
    """One example's excluded mask (1, H, W, C), one bit per element in C order (``np.packbits``): written once,
    in order, by contiguous flat spans (:meth:`put`: the coverage pass's blocks), then read by rectangles
    (:meth:`rect`) or spans (:meth:`flat`)."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape))
        self.bits = np.zeros(self.bytes_for(self.shape), dtype=np.uint8)
        self.filled = 0  # values written, from the first

    @staticmethod
    def bytes_for(shape) -> int:
        return -(-int(np.prod(shape)) // 8)

    @property
    def done(self) -> bool:
        """Every value written."""
        return self.filled == self.size

    def put(self, lo: int, mask: np.ndarray) -> None:
        """The mask's flat values from ``lo`` (the next unwritten one), any shape, in C order."""
        if lo != self.filled:
            raise ValueError(f"a mask memo is written in order: {self.filled} values written, asked to write at {lo}")
        flat = np.asarray(mask, dtype=bool).reshape(-1)
        n = flat.size
        a, off = divmod(lo, 8)
        if off:  # the first byte's earlier bits, kept (later ones are still zero: written in order)
            flat = np.concatenate([np.unpackbits(self.bits[a:a + 1])[:off].view(bool), flat])
        packed = np.packbits(flat)
        self.bits[a:a + packed.size] = packed
        self.filled = lo + n

    def flat(self, lo: int, hi: int) -> np.ndarray:
        """Its flat values ``[lo, hi)``, bool (hi - lo,)."""
        hi = max(lo, hi)
        a = lo // 8
        return np.unpackbits(self.bits[a:-(-hi // 8)])[lo - 8 * a:hi - 8 * a].view(bool)

    def rect(self, rows: tuple, cols: tuple) -> np.ndarray:
        """Rows ``rows[0]:rows[1]`` by columns ``cols[0]:cols[1]``, bool (1, r, c, C)."""
        _, H, W, C = self.shape
        (r0, r1), (c0, c1) = rows, cols
        r, c = max(0, r1 - r0), max(0, c1 - c0)
        if r == 0 or c == 0:
            return np.zeros((1, r, c, C), dtype=bool)
        return span_rect(self.flat((r0 * W + c0) * C, ((r1 - 1) * W + c1) * C), r, c, W, C)[None]


class ExcludedRect:
    """:func:`excluded_mask` of one unread example ``x`` (1, H, W, C) under the problem ``p`` (of ``x``): its
    elements unchanged by the step and, under max pooling, its kinks (:meth:`.PoolProblem.kinks_at`, from the
    windows around each rectangle), computed by the rectangles asked of it (``[:, rows, cols]``, :meth:`rect`) or
    spans of its flat values (:meth:`flat`); the same mask as the example's read whole. With a ``memo`` written
    whole (:func:`unread_coverage`'s) each rectangle's mask is read from it and the rectangle alone from ``x``."""

    def __init__(self, p, x: ReadExample, h: float, memo: Optional[MaskMemo] = None):
        self.p, self.x, self.h, self.shape, self.memo = p, x, h, x.shape, memo

    def __getitem__(self, sel) -> np.ndarray:
        r0, r1, c0, c1 = rectangle(sel, self.shape, "the excluded elements of one streamed example are computed")
        out = self.rect((r0, r1), (c0, c1))
        return out[0] if sel[0] == 0 and not isinstance(sel[0], slice) else out

    def rect(self, rows: tuple, cols: tuple) -> np.ndarray:
        """Rows ``rows[0]:rows[1]`` by columns ``cols[0]:cols[1]``, (1, r, c, C)."""
        return self.pair(rows, cols)[1]

    def pair(self, rows: tuple, cols: tuple):
        """That rectangle of ``x`` and its mask, from one read (:meth:`.PoolProblem.masks_at`, or the memo)."""
        if self.memo is not None and self.memo.done:
            return self.x[:, rows[0]:rows[1], cols[0]:cols[1]], self.memo.rect(rows, cols)
        v, masks = self.p.masks_at("A_prev", rows, cols, (2 * self.h,))
        stuck = stuck_mask(v, self.h)
        return v, (stuck if masks is None else (stuck | masks[0]))

    def flat(self, lo: int, hi: int) -> np.ndarray:
        return flat_span(self.shape, self.rect, lo, hi, dtype=bool)

    def flat_pair(self, lo: int, hi: int):
        """``x``'s flat values ``[lo, hi)`` and their mask, from one read of each rectangle."""
        return flat_span(self.shape, self.pair, lo, hi)


def unread_coverage(p, x: ReadExample, h: float, memo: Optional[MaskMemo] = None):
    """What cannot be checked in one unread example ``x`` (its problem ``p``), block by block: the counts the
    check takes of an example read whole (:func:`excluded_mask`, :meth:`.Coverage.of` with its kinks, exact ties
    and the elements some window reads), the same values.

    ``memo`` (unwritten; optional) is written with the excluded mask, block by block.

    Returns
    -------
    (int, int, Coverage)
        Elements unchanged by the step, elements excluded, and the coverage (to be counted only where some
        element is excluded, as for an example read whole).

    Raises
    ------
    InputError
        The source cannot be read.
    """
    n_stuck, n_excluded, cover = 0, 0, Coverage()
    for lo, rows, cols in x.rects():
        r, c = (rows.start, rows.stop), (cols.start, cols.stop)
        # the block and, under max pooling, its kinks at the step and its exact ties: one read, one window search
        v, masks = p.masks_at("A_prev", r, c, (2 * h, 0.0))
        kinks, ties = (None, None) if masks is None else masks
        stuck = stuck_mask(v, h)
        excluded = stuck if kinks is None else (stuck | kinks)
        n_stuck += int(np.count_nonzero(stuck))
        n_excluded += int(np.count_nonzero(excluded))
        cover = cover + Coverage.of(excluded, kinks, ties, p.reads_at("A_prev", r, c))
        if memo is not None and memo.filled == lo:
            memo.put(lo, excluded)
    return n_stuck, n_excluded, cover


def excluded_mask(p, x: np.ndarray, h: float) -> np.ndarray:
    """Elements of one chunk not checked: unchanged by the step, or kinks at it.

    Parameters
    ----------
    p : ConvProblem or PoolProblem
        The chunk's problem.
    x : ndarray, shape (k, n_H_prev, n_W_prev, n_C_prev)
        The chunk of A_prev.
    h : float
        The step.

    Returns
    -------
    ndarray of bool, shape of ``x``

    Raises
    ------
    Nothing.
    """
    kinks = p.kinks("A_prev", h)
    stuck = stuck_mask(x, h)
    return stuck if kinks is None else (stuck | kinks)


def checkable(batch: Batch, h: float) -> np.ndarray:
    """Flat indices of A_prev's elements that can be checked (not :func:`excluded_mask`), chunk by chunk.

    Parameters
    ----------
    batch : Batch
    h : float
        The step.

    Returns
    -------
    ndarray of int64

    Raises
    ------
    Nothing.
    """
    A, make, per = batch.A, batch.make, batch.per_example
    parts = []
    for sl in batch.chunks:
        if _by_chunk(batch, sl):
            parts.append(sl.start * per + np.flatnonzero(~excluded_mask(make(A[sl]), A[sl], h).reshape(-1)))
            continue
        # one example that goes by tiles: its mask a piece at a time (from the coverage pass's bits, or from the
        # windows around each piece where it is unread)
        x = read(batch, sl)
        p = make(x)
        unread_x = isinstance(x, ReadExample)
        mask = ExcludedRect(p, x, h, batch.mask_memo(sl.start, p, h)) if unread_x else excluded_mask(p, x, h)
        for lo in range(0, per, PIECE_VALUES):
            hi = min(per, lo + PIECE_VALUES)
            ex = mask.flat(lo, hi) if unread_x else mask.reshape(-1)[lo:hi]
            parts.append(sl.start * per + lo + np.flatnonzero(~ex))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def upstream(batch: Batch, sl: slice, x: np.ndarray):
    """The upstream gradient of the examples ``sl`` (``x``: their A_prev): ``G[sl]``, or, for one example
    too large for the workspace in several copies, that example undrawn (:class:`.lazy.DrawnExample`, G drawn
    from the seed) or unread (:class:`.lazy.ReadExample`, G given): every evaluation of it goes by tiles and
    draws or reads G tile by tile.

    Parameters
    ----------
    batch : Batch
    sl : slice
        Examples of one chunk.
    x : ndarray, shape (k, n_H_prev, n_W_prev, n_C_prev)
        Their A_prev.

    Returns
    -------
    ndarray, DrawnExample or ReadExample, shape (k, n_H, n_W, n_C)

    Raises
    ------
    Nothing.
    """
    G = batch.G
    # NOTE: by tiles in every evaluation (the engine's, the rounding estimates', the differences'): each reads
    # G by rectangles of whole rows or of one row, which the drawn example and the unread one give
    return G.example(sl.start) if _tiled_upstream(batch, sl, x) else G[sl]


def _tiled_upstream(batch: Batch, sl: slice, x) -> bool:
    """Whether :func:`upstream` gives the examples ``sl`` (``x``, or a stand-in of their shape) undrawn or unread:
    one example too large for the workspace in several copies. From shapes alone."""
    if sl.stop - sl.start != 1:
        return False
    p = batch.make(x)
    return bool(p.by_tiles() and p._local() and
                2 * FAST_DIRECTIONS * example_bytes(batch.whole, batch.A, batch.G) > perturbed.BATCH_BYTES)


def pass_over_batch(batch: Batch, h: float, D, idx, directed=None, top_out: float = 0.0, every: bool = False) -> dict:
    """The one pass over the batch: per chunk A_prev's gradient, rounding floor and directional sums.

    Keeps A_prev's gradient and floor at the flat indices ``idx`` only; the directions move
    only the examples ``directed`` (a mask over the batch; None: all); accumulates dW and
    db and the rounding estimates of W and b (for ``whole``, a conv) over the chunks, and the
    evaluations of W and b that ``whole`` foresaw (``top_out``: the largest output magnitude).

    Parameters
    ----------
    batch : Batch
    h : float
        The step.
    D : DirectionChunks or None
        The random directions (None: no directional check).
    idx : ndarray of int64
        Flat indices of A_prev where its gradient and floor are kept.
    directed : ndarray of bool, shape (m,), optional
    top_out : float
    every : bool
        A_prev's gradient and floor on every example, none of it kept (a full check's, compared after the pass
        by :func:`every_element`): their size and finiteness decide whether it is compared.

    Returns
    -------
    dict
        ``per_block``, ``a_blk``, ``l1_blk``, ``f_blk`` (P, m): per direction and example, the numerical
        and analytical directional sums, the analytical one's L1 size and its rounding floor;
        ``grad_at``, ``floor_at`` (len(idx),); ``finite`` (bool); ``grad_max``, the largest |dA_prev|
        of the examples it was computed for (a conv's: those ``idx`` or the directions read).

    Raises
    ------
    Nothing.
    """
    make, A, G, whole, tracker = batch.make, batch.A, batch.G, batch.whole, batch.tracker
    m, per = A.shape[0], batch.per_example
    P = FAST_DIRECTIONS if D is not None else 0
    out = {"per_block": np.zeros((P, m)), "a_blk": np.zeros((P, m)), "l1_blk": np.zeros((P, m)),
           "f_blk": np.zeros((P, m)), "grad_at": np.empty(len(idx)), "floor_at": np.zeros(len(idx)),
           "finite": True, "grad_max": 0.0}
    dW = db = per_w = per_b = None
    per_example = example_bytes(whole, A, G)
    # NOTE: progress counts evaluations of the size of an elementwise one (two forwards of one example);
    # an example of the pass weighs what it costs (a backward, its rounding estimates, the foreseen
    # evaluations), so that an estimate made in the pass, or just after it, is about the time left
    weight = whole.pass_weight() if whole is not None else 1
    tracker.plan(m * weight)
    ex_of = idx // per
    for sl in batch.chunks:
        x = read(batch, sl)
        here = (ex_of >= sl.start) & (ex_of < sl.stop)
        rows = np.ones(sl.stop - sl.start, dtype=bool) if directed is None or not P else directed[sl]
        needed = bool(every or here.any() or (P and rows.any()))  # A_prev's floor: only where it is compared
        keep = rows.copy() if P else np.full(sl.stop - sl.start, every)  # where dA_prev is read
        keep[np.unique(ex_of[here] - sl.start)] = True
        # NOTE: where dA_prev is not read everywhere in the chunk, G is drawn whole as before: a chunk of examples
        # of which some are neither sampled nor moved (G[keep] is copied), or one such huge example (its dW and
        # db go by tiles, but its max |G| is taken whole): a set of more huge examples than are sampled or moved
        g = upstream(batch, sl, x) if keep.all() else G[sl]
        tiles = isinstance(g, (DrawnExample, ReadExample))  # one huge example: G drawn or read by tiles
        if not tiles:
            x = whole_of(x)  # not by tiles (a chunk of examples neither sampled nor moved): read whole
        # NOTE: not the magnitudes of one huge example (each of its tiles computes its own): they are of its
        # outputs' size, 128 MB for a 1 x 4M x 4 signal under four filters
        mag = whole.bank.add(x, g, magnitudes=not tiles) \
            if whole is not None and whole.bank is not None else None
        p = make(x, g)
        if tiles:  # one huge example: its gradient and floor, too, tile by tile
            # the directions only where they move it (rows: a mask of its one example)
            moved = D if P and rows.all() else None
            gW, gb, w, b = _one_huge_example(p, make, x, g, mag, sl.start, h, moved, idx, here, out,
                                             batch.mask_memo(sl.start, p, h) if isinstance(x, ReadExample) else None)
            if whole is not None:
                dW, db = (gW, gb) if dW is None else (dW + gW, db + gb)
                per_w, per_b = (w, b) if per_w is None else (per_w + w, per_b + b)
            tracker.tick((sl.stop - sl.start) * weight)
            continue
        # a conv's dA_prev only where it is read: the sampled examples, those the directions move
        grads = p.analytical_at(keep) if whole is not None else p.analytical()
        dA = grads["A_prev"]
        floor = None
        if whole is not None:
            # per chunk: the same sums the in-memory check adds up chunk by chunk; A_prev's spread (a backward
            # pass of its own) only for the examples compared, each example's spread being its own
            if needed and mag is None and not p.by_tiles():
                mag = p._magnitude(bias=False)  # once for both estimates (by tiles, each tile's in each)
            _, w, b, _ = p.floor_chunk(slice(None), spread=False, mag=mag)
            if needed and keep.all():  # no copies of the chunk
                floor = p.floor_chunk(slice(None), mag=mag)[0]
            elif needed:
                floor = np.zeros(x.shape)
                # mag is None where the chunk goes by tiles (each tile computes its own) or the bank gave none
                kept = None if mag is None else mag[keep]
                floor[keep] = make(x[keep], g[keep]).floor_chunk(slice(None), mag=kept)[0]
            if floor is not None:
                floor *= MACHINE_EPS
                floor /= h
            dW = grads["W"] if dW is None else dW + grads["W"]
            db = grads["b"] if db is None else db + grads["b"]
            per_w = w if per_w is None else per_w + w
            per_b = b if per_b is None else per_b + b
        elif needed:
            floor = p.rounding_floor("A_prev", h)
        out["finite"] &= bool(grads.get("finite", True) and np.all(np.isfinite(dA)) and
                              (floor is None or np.all(np.isfinite(floor))))
        if dA.size:
            out["grad_max"] = max(out["grad_max"], float(np.max(np.abs(dA))))
        at = idx[here] - sl.start * per
        out["grad_at"][here] = dA.reshape(-1)[at]
        if floor is not None:
            out["floor_at"][here] = floor.reshape(-1)[at]
        if P and rows.any():
            _directional_sums(make, x, g, dA, floor, np.flatnonzero(rows), sl.start, D, h, out, per_example)
        tracker.tick((sl.stop - sl.start) * weight)
    if whole is not None:
        whole.set_pass({"W": dW, "b": db}, {"W": per_w, "b": per_b, "max": top_out})
    return out


def _one_huge_example(p, make, x: np.ndarray, g, mag, start: int, h: float, D, idx, here, out: dict,
                      memo: Optional[MaskMemo] = None):
    """:func:`pass_over_batch` on one example too large for the workspace whose upstream gradient ``g`` is drawn
    by tiles (:func:`upstream`): its gradient and rounding floor, too, are never whole.

    The gradient and floor come piece by piece (:func:`gradient_pieces`); of each final piece its values at
    ``idx``, its largest magnitude, whether it is finite and the directions' analytical sums (as
    :func:`_large_terms`, the same pieces) are taken, then it is dropped.
    The numerical directional differences are :meth:`ConvProblem._directed_difference`'s.

    Parameters
    ----------
    p : ConvProblem
        The example's problem (``x``, ``g``).
    make : callable
        As :class:`Batch`'s.
    x : ndarray, shape (1, n_H_prev, n_W_prev, n_C_prev)
    g : DrawnExample or ReadExample, shape (1, n_H, n_W, n_C)
    mag : ndarray or None
        Its ``conv(|x|, |W|)`` when the filter bank gave it.
    start : int
        The example's index in the batch.
    h : float
    D : DirectionChunks or None
        None: no directional check.
    idx, here : ndarray
        Flat indices of the batch where the gradient and floor are kept, and which of them are this example's.
    out : dict
        :func:`pass_over_batch`'s sums, updated.
    memo : MaskMemo, optional
        The example's excluded mask, kept by its coverage pass (:meth:`Batch.mask_memo`).

    Returns
    -------
    (dW, db, W's rounding terms, b's rounding terms)
        The example's parts, as ``pass_over_batch`` adds them up.

    Raises
    ------
    Nothing.
    """
    W = p.inputs.get("W")  # None: a pool
    per = x.size
    P = FAST_DIRECTIONS if D is not None else 0
    unread = isinstance(x, ReadExample)  # read by rectangles and spans: nothing of its size is held
    excluded = (ExcludedRect(make(x), x, h, memo) if unread else excluded_mask(make(x), x, h)) if P else None
    at = np.flatnonzero(here)
    kept = idx[here] - start * per  # where the gradient and floor are kept, in the example
    sums = np.zeros((3, P))  # per direction: the analytical sum, its L1 size, its floor
    flat_x = None if unread else x.reshape(-1)
    flat_ex = None if excluded is None else (excluded if unread else excluded.reshape(-1))
    conv = W is not None
    parts = [np.zeros(W.shape), np.zeros(W.shape[3]), np.zeros(p.n_C), np.zeros(p.n_C)] if conv else None
    for lo, hi, dA, floor in gradient_pieces(p, g, mag, h, parts):
        out["finite"] &= bool(np.all(np.isfinite(dA)) and (floor is None or np.all(np.isfinite(floor))))
        if dA.size:
            out["grad_max"] = max(out["grad_max"], float(np.max(np.abs(dA))))
        mine = (kept >= lo) & (kept < hi)
        out["grad_at"][at[mine]] = dA[kept[mine] - lo]
        if floor is not None:
            out["floor_at"][at[mine]] = floor[kept[mine] - lo]
        if P:  # the piece's values and excluded mask: one read of each rectangle where the example is unread
            values, ex = flat_ex.flat_pair(lo, hi) if unread else (flat_x[lo:hi], flat_ex[lo:hi])
        for q in range(P):  # as _large_terms on _drawn_pieces' piece [lo, hi)
            plus, minus = _drawn_piece(values, ex, D, q, start, lo, h)
            sums[:, q] += _piece_terms(plus, minus, dA, floor, h)
    for q in range(P):
        out["a_blk"][q, start], out["l1_blk"][q, start], out["f_blk"][q, start] = sums[:, q]
    if P:  # every direction on a tile before the next: the tile's input, G and excluded mask read once for all
        out["per_block"][:, start] = p._directed_difference(x, g, _rect_steps(D, start, excluded, h, P), P) / (2 * h)
    if not conv:
        return None, None, None, None
    # as analytical_at's and floor_chunk's, added up the same way
    dW, db = np.zeros(W.shape), np.zeros(W.shape[3])
    dW += parts[0]
    db += parts[1]
    return dW, db, parts[2], parts[3]


def gradient_pieces(p, g, mag, h: float, parts: Optional[list] = None):
    """One huge example's A_prev gradient and rounding floor, final piece by piece: ``(lo, hi, dA, floor)`` over
    its flat values in order (pieces of ``PIECE_VALUES``; floor None under max pooling), from the engine's backward
    and the rounding spread tile by tile (the same tiles, values and order as ``p.analytical_at`` and
    ``p.floor_chunk`` by tiles), each tile's parts added into a window of the example's flat values
    (:class:`_Rolling`): a piece no later tile reaches is final, given, then dropped.

    Parameters
    ----------
    p : ConvProblem or PoolProblem
        The example's problem (its input (1, n_H_prev, n_W_prev, n_C_prev) and ``g``).
    g : ndarray, DrawnExample or ReadExample, shape (1, n_H, n_W, n_C)
        Its upstream gradient, read tile by tile.
    mag : ndarray or None
        Its ``conv(|x|, |W|)`` when the filter bank gave it.
    h : float
    parts : list of 4 ndarrays, optional
        A conv's dW, db and W's and b's rounding terms, each tile's added in.

    Yields
    ------
    (int, int, ndarray (hi - lo,), ndarray (hi - lo,) or None)

    Raises
    ------
    InputError
        The source cannot be read.
    """
    x = p.inputs["A_prev"]
    scale = p.floor_scale()  # None: no floor (max pooling)
    rolling = _Rolling(x.shape, PIECE_VALUES)
    # the tiles both go by (those of tiled.each for one example, as in backward_tiles and floor_tiles)
    bounds = rolling.bounds(tiled.tiles(p.geom, p.params, *tiled.plan(p.geom, x.shape[3], 1, 0, tiled.ENGINE_BYTES)))
    evaluations = zip(p.backward_tiles(g), p.floor_tiles(slice(None), scale is not None, mag))

    def final(pieces):
        for lo, hi, dA, spread in pieces:
            floor = None if scale is None else spread
            for factor in scale or ():
                floor *= factor
            if floor is not None:
                floor /= h
            yield lo, hi, dA, floor

    for bound, ((t, dA_t, w_t, b_t), (_, part, fw, fb, _)) in zip(bounds, evaluations):
        if parts is not None:
            for total, add in zip(parts, (w_t, b_t, fw, fb)):
                total += add
        if dA_t is not None:
            rolling.add(0, t, dA_t)
            if part is not None:
                rolling.add(1, t, part)
        yield from final(rolling.ready(bound))
    yield from final(rolling.ready(None))


class _Rolling:
    """Two arrays of one example's flat values (its gradient, its rounding spread) summed tile by tile, held only
    in a window from the first piece not yet final to the farthest value a tile has reached.

    ``add`` adds a tile's rectangle (as ``dA[:, rows, cols] += part``: the same sums in the same order); ``ready``
    gives the pieces ``[lo, hi)`` of ``piece`` values (the last one shorter) that no later tile reaches, in order,
    and drops them. The tiles come in the order of :func:`.tiled.tiles`; a later one may start before an earlier
    one's end (windows overlap), so the pieces final after each tile are those before every later tile's start.
    """

    def __init__(self, shape, piece: int):
        _, self.H, self.W, self.C = shape
        self.n, self.piece = int(np.prod(shape)), piece
        self.base, self.bufs = 0, [np.zeros(0), np.zeros(0)]

    def bounds(self, tiles: list) -> list:
        """Per tile: the least first flat value of the tiles after it that reach the input (the example's
        size after the last): every value before it is final once the tile is added."""
        out, least = [], self.n
        for t in reversed(tiles):
            out.append(least)
            if t.real:
                least = min(least, (t.rb.in_lo * self.W + t.cb.in_lo) * self.C)
        return out[::-1]

    def add(self, which: int, tile, part: np.ndarray) -> None:
        rb, cb, W, C = tile.rb, tile.cb, self.W, self.C
        first, last = (rb.in_lo * W + cb.in_lo) * C, ((rb.in_hi - 1) * W + cb.in_hi) * C
        self._grow(last)
        buf = self.bufs[which]
        if cb.in_lo == 0 and cb.in_hi == W:  # whole rows: one contiguous span
            buf[first - self.base:last - self.base] += part.reshape(-1)
            return
        span = (cb.in_hi - cb.in_lo) * C
        for i in range(rb.in_lo, rb.in_hi):
            lo = (i * W + cb.in_lo) * C - self.base
            buf[lo:lo + span] += part[0, i - rb.in_lo].reshape(-1)

    def _grow(self, end: int) -> None:
        have = self.bufs[0].size
        if self.base + have >= end:
            return
        size = max(end - self.base, 2 * have)
        for k, buf in enumerate(self.bufs):
            grown = np.zeros(size)
            grown[:have] = buf
            self.bufs[k] = grown

    def ready(self, bound: Optional[int]):
        """The final pieces: those ending at or before ``bound`` (a flat index; None: the example's end)."""
        bound = self.n if bound is None else bound
        while self.base < self.n and (self.base + self.piece <= bound or bound >= self.n):
            lo, hi = self.base, min(self.n, self.base + self.piece)
            parts = []
            for k, buf in enumerate(self.bufs):
                got = np.zeros(hi - lo)
                have = min(buf.size, hi - lo)
                got[:have] = buf[:have]
                parts.append(got)
                self.bufs[k] = buf[hi - lo:]
            self.base = hi
            yield (lo, hi, *parts)


def _directional_sums(make, x, g, dA, floor, sub, start: int, D, h, out: dict, per_example: int) -> None:
    """The directional sums of the examples ``sub`` of a chunk (``x``, ``g``, ``dA``, ``floor``; the chunk
    starts at example ``start``) into ``out``: every direction's evaluations of a few examples in one call."""
    for part in batch_chunks(sub.size, 2 * FAST_DIRECTIONS * per_example):
        rows = sub[part]
        k = rows.size
        # one example: views, not copies (it may be as large as the chunk)
        pick = rows if k > 1 else slice(int(rows[0]), int(rows[0]) + 1)
        xs, gs = x[pick], g[pick]
        p = make(xs)
        excluded = excluded_mask(p, xs, h)
        at = start + rows
        if k == 1 and 2 * FAST_DIRECTIONS * per_example > perturbed.BATCH_BYTES:
            # one example too large for the workspace with all its copies: a direction at a time, with no copy of
            # the example: each tile's two sides made from its rectangle, the direction drawn there (see .tiled),
            # and the analytical sums a piece at a time, the direction drawn again
            e, fl = int(at[0]), None if floor is None else floor[pick]
            P = FAST_DIRECTIONS
            out["per_block"][:, at] = (p._directed_difference(xs, gs, _rect_steps(D, e, excluded, h, P), P)
                                       / (2 * h))[:, None]
            for q in range(P):
                _large_terms(_drawn_pieces(xs, D, q, e, excluded, h), dA[pick], fl, h, q, at, out)
            continue
        ds = [D.rows(q, at, excluded) for q in range(FAST_DIRECTIONS)]
        # NOTE: the perturbed copies as example_directional builds them, each example's difference its own
        Z = p._forward(np.concatenate([v for d in ds for v in (xs + h * d, xs - h * d)]))
        for q, d in enumerate(ds):
            out["per_block"][q, at] = _contract(Z[2 * q * k:(2 * q + 1) * k] - Z[(2 * q + 1) * k:(2 * q + 2) * k],
                                                gs) / (2 * h)
            _directional_terms(xs, d, dA[pick], None if floor is None else floor[pick], h, q, at, out)


def _directional_terms(xs, d, dA, floor, h: float, q: int, at, out: dict) -> None:
    """Direction ``q``'s analytical sums of the examples ``at`` (their ``xs``, ``dA``, ``floor``) into ``out``."""
    k = xs.shape[0]
    flat = (((xs + h * d) - (xs - h * d)) / (2 * h)).reshape(k, -1)
    t = flat * dA.reshape(k, -1)
    out["a_blk"][q, at] = t.sum(axis=1)
    out["l1_blk"][q, at] = np.abs(t).sum(axis=1)
    if floor is not None:
        out["f_blk"][q, at] = (np.abs(flat) * floor.reshape(k, -1)).sum(axis=1)


def _pieces(n: int):
    """Slices of ``PIECE_VALUES`` over ``n`` flat values."""
    return (slice(lo, min(n, lo + PIECE_VALUES)) for lo in range(0, n, PIECE_VALUES))


def _drawn_pieces(xs: np.ndarray, D, q: int, e: int, excluded: np.ndarray, h: float):
    """``(slice, plus, minus)`` by pieces of one example ``xs`` (1, ...) moved by ``h`` along direction ``q``,
    drawn piece by piece: the values of its perturbed copies (:meth:`DirectionChunks.rows`, scaled by ``h``)."""
    flat, ex = xs.reshape(-1), excluded.reshape(-1)
    for sl in _pieces(flat.size):
        yield (sl, *_drawn_piece(flat[sl], ex[sl], D, q, e, sl.start, h))


def _drawn_piece(values: np.ndarray, excluded: np.ndarray, D, q: int, e: int, lo: int, h: float):
    """The piece of example ``e``'s flat values from ``lo`` (``values``, ``excluded`` its mask) moved by ``h``
    times direction ``q`` (zero where excluded), plus and minus: the direction drawn there only."""
    hd = D.span(q, e, lo, lo + values.size)
    hd[excluded] = 0.0
    hd *= h
    return values + hd, values - hd


def _piece_terms(plus: np.ndarray, minus: np.ndarray, grad: np.ndarray, floor, h: float) -> np.ndarray:
    """One piece's analytical directional terms: (sum, L1 size, floor; 0 without a floor) of the direction
    ``(plus - minus) / 2h`` against the gradient ``grad`` and rounding ``floor`` of the same values."""
    flat = (plus - minus) / (2 * h)
    t = flat * grad
    return np.array([t.sum(), np.abs(t).sum(), 0.0 if floor is None else (np.abs(flat) * floor).sum()])


def _rect_steps(D, e: int, excluded, h: float, count: int):
    """``steps(rows, cols)`` for :meth:`ConvProblem._directed_difference`: ``h`` times each of directions
    ``0 .. count - 1`` of example ``e`` on that rectangle, in order (zero where ``excluded``, (1, H, W, C): an array
    or :class:`ExcludedRect`, asked once per rectangle for all of them), each drawn there only: each of its rows is
    a contiguous span of the direction, and whole rows are one."""
    _, H, W, C = excluded.shape

    def steps(rows: slice, cols: slice):
        (r0, r1, _), (c0, c1, _) = rows.indices(H), cols.indices(W)
        r1, c1 = max(r0, r1), max(c0, c1)
        mask = excluded[:, r0:r1, c0:c1]
        for q in range(count):
            if (c0 == 0 and c1 == W) or r1 - r0 <= 1:
                s = D.span(q, e, (r0 * W + c0) * C, ((r1 - 1) * W + c1) * C if r1 > r0 else r0 * W * C)
                s = s.reshape(1, r1 - r0, c1 - c0, C)
            else:
                s = np.empty((1, r1 - r0, c1 - c0, C))
                for i in range(r0, r1):
                    s[0, i - r0] = D.span(q, e, (i * W + c0) * C, (i * W + c1) * C).reshape(c1 - c0, C)
            s[mask] = 0.0
            s *= h
            yield s
    return steps


def _large_terms(pieces, dA, floor, h: float, q: int, at, out: dict) -> None:
    """:func:`_directional_terms` of one example too large for the workspace, from its perturbed copies given by
    ``pieces`` (``(slice, plus, minus)`` of its flat values): the same terms, a piece of the example at a time."""
    grad = dA.reshape(-1)
    fl = None if floor is None else floor.reshape(-1)
    terms = np.zeros(3)
    # NOTE: in pieces of the example, summed piece by piece: the same terms as _directional_terms', added in
    # another order (rounding only), with no temporary of the example's size
    for sl, plus, minus in pieces:
        terms += _piece_terms(plus, minus, grad[sl], None if fl is None else fl[sl], h)
    out["a_blk"][q, at], out["l1_blk"][q, at] = terms[0], terms[1]
    if fl is not None:
        out["f_blk"][q, at] = terms[2]


def _rows(src, examples) -> np.ndarray:
    """The examples ``examples`` (sorted, unique) of a streamed source, read in runs of consecutive ones."""
    parts, start = [], 0
    for i in range(1, len(examples) + 1):
        if i == len(examples) or examples[i] != examples[i - 1] + 1:
            parts.append(src[int(examples[start]):int(examples[i - 1]) + 1])
            start = i
    return parts[0] if len(parts) == 1 else np.concatenate(parts)  # one run: no copy of what was read


def elementwise(batch: Batch, h: float, idx, analytical, floor, n_excluded: int, tol: float, how: str):
    """Central differences of A_prev's elements ``idx`` (flat), from the examples that hold them.

    ``analytical`` and ``floor`` (per element of ``idx``) come from the pass over the batch;
    None computes them from those examples.

    Parameters
    ----------
    batch : Batch
    h : float
        The step.
    idx : ndarray of int64
        Flat indices into A_prev.
    analytical, floor : ndarray, shape (len(idx),), or None
    n_excluded : int
        Elements not checked (for the result).
    tol : float
    how : str
        The method named in the result ("full", "sample", "fast+sample", ...).

    Returns
    -------
    GradientResult

    Raises
    ------
    Nothing.
    """
    make, A, G, tracker = batch.make, batch.A, batch.G, batch.tracker
    per = batch.per_example
    tracker.plan(len(idx))
    numerical = np.empty(0)
    if len(idx):
        examples = np.unique(idx // per)
        first = slice(int(examples[0]), int(examples[0]) + 1)
        if analytical is not None and unread(batch, first):
            # huge examples, unread: one at a time, each element on the outputs it reaches (idx is sorted)
            numerical = np.concatenate([_unread_differences(batch, h, idx[idx // per == e] - e * per, int(e))
                                        for e in examples])
        elif analytical is None and not _by_chunk(batch, first):
            # huge examples (a failing check's localized elements): their gradient and floor piece by piece, by
            # the pass's tiles, and each element on the outputs it reaches; none read, drawn or computed whole
            parts = [_gradient_at(batch, h, idx[idx // per == e] - e * per, int(e)) +
                     (_unread_differences(batch, h, idx[idx // per == e] - e * per, int(e)),) for e in examples]
            analytical, floor, numerical = (np.concatenate([q[k] for q in parts]) for k in range(3))
            floor = None if np.isnan(floor).all() else floor
        else:
            x = _rows(A, examples)
            g = upstream(batch, first, x) if len(examples) == 1 and analytical is not None else _rows(G, examples)
            local = np.searchsorted(examples, idx // per) * per + idx % per
            analytical, numerical, floor = _compared(make(x, g), x, local, h, tracker, analytical, floor)
    elif analytical is None:
        analytical = np.empty(0)
    geom = batch.geometry()
    return gradient_metrics("dA_prev", A.shape, "mhwc", how, idx, analytical, numerical, n_excluded, tol, floor,
                            pads=geom.pads, stride=geom.stride,
                            dense_limit=DENSE_VALUES)


def _compared(p, x: np.ndarray, local: np.ndarray, h: float, tracker: Tracker, analytical=None, floor=None):
    """``(analytical, numerical, floor)`` of the elements ``local`` (flat indices into ``x``, the examples of the
    problem ``p``): their central differences, and, where ``analytical`` is None, their gradient and rounding
    floor from ``p``'s backward (else ``analytical`` and ``floor`` as given)."""
    if analytical is None:
        analytical, floor = _gradient_and_floor(p, local, h)
    xs = x.reshape(-1)[local]
    plus, minus = xs + h, xs - h
    return analytical, p.differences("A_prev", local, plus, minus, tracker.tick) / (plus - minus), floor


def _gradient_and_floor(p, local: np.ndarray, h: float):
    """``(gradient, floor or None)`` of A_prev's elements ``local`` (flat) from ``p``'s backward, held whole."""
    f = p.rounding_floor("A_prev", h)
    return p.analytical()["A_prev"].reshape(-1)[local], None if f is None else f.reshape(-1)[local]


def _by_chunk(batch: Batch, sl: slice) -> bool:
    """Whether :func:`every_element` takes the chunk ``sl`` whole: it is not one example whose input or upstream
    gradient goes by tiles (:func:`unread`, :func:`upstream`). From shapes alone: nothing read nor drawn."""
    stand_in = np.broadcast_to(0.0, (1,) + tuple(batch.A.shape[1:]))
    return sl.stop - sl.start != 1 or not (unread(batch, sl) or _tiled_upstream(batch, sl, stand_in))


def _pieces_of_one(batch: Batch, sl: slice, h: float):
    """The chunk ``sl``, one example whose input or upstream gradient goes by tiles, compared piece by piece:
    ``(idx, analytical, numerical, floor or None)`` of each piece's checkable elements (flat indices into the
    batch). Its gradient and floor come piece by piece (:func:`gradient_pieces`), each piece's excluded mask from
    the coverage pass's bits or from the windows around it, and its elements are evaluated on the outputs they
    reach, so that nothing of the example's size is held (its values, G, gradient, indices)."""
    x = read(batch, sl)
    g = upstream(batch, sl, x)
    p = batch.make(x, g)
    base = sl.start * batch.per_example
    if not p._local() or not p.by_tiles():
        # NOTE: every element evaluated on the whole example's copies, or its gradient not by tiles: read whole
        x = whole_of(x)
        p = batch.make(x, g)
        if not p.by_tiles():
            local = np.flatnonzero(~excluded_mask(p, x, h).reshape(-1))
            if local.size:
                yield (base + local, *_compared(p, x, local, h, batch.tracker))
            return
    unread_x = isinstance(x, ReadExample)
    excluded = ExcludedRect(p, x, h, batch.mask_memo(sl.start, p, h)) if unread_x else excluded_mask(p, x, h)
    flat_x = None if unread_x else x.reshape(-1)
    flat_ex = excluded if unread_x else excluded.reshape(-1)
    for lo, hi, dA, floor in gradient_pieces(p, g, None, h):
        values, ex = flat_ex.flat_pair(lo, hi) if unread_x else (flat_x[lo:hi], flat_ex[lo:hi])
        at = np.flatnonzero(~ex)
        if not at.size:
            continue
        plus, minus = values[at] + h, values[at] - h
        numerical = p.differences("A_prev", lo + at, plus, minus, batch.tracker.tick) / (plus - minus)
        yield base + lo + at, dA[at], numerical, None if floor is None else floor[at]


def _worst_of_one(batch: Batch, sl: slice, h: float, count: int, tol: float) -> np.ndarray:
    """The flat indices (into the batch, sorted) of the ``count`` elements of the chunk ``sl`` (one example that
    goes by tiles) that fail by the most, compared piece by piece (:func:`_pieces_of_one`): a failing check's
    localization of such an example, in bounded memory.

    NOTE: an element fails where its error exceeds its rounding floor and ``10 tol scale + 100 tol |n|``
    (:func:`.metrics.fails_at`), the scale the same for all; so the elements above their floor come first, by
    ``error - 100 tol |n|``, then the others (ties: the first index). If any element fails, the first ranked does.
    """
    best = np.zeros((0, 3))  # (above its floor, error - 100 tol |n|, index) of the best so far
    for idx, a, n, floor in _pieces_of_one(batch, sl, h):
        err = np.abs(a - n)
        err = np.where(np.isfinite(err), err, np.inf)
        above = err > (0.0 if floor is None else floor)
        # NOTE: float64 keys: an index is exact below 2^53 (a set of 64 PiB of float64)
        best = np.concatenate([best, np.stack([above, err - 100 * tol * np.abs(np.nan_to_num(n)), idx], axis=1)])
        best = best[np.lexsort((best[:, 2], -best[:, 1], -best[:, 0]))[:count]]
    return np.sort(best[:, 2].astype(np.int64))


def every_element(batch: Batch, h: float, n_excluded: int, tol: float) -> GradientResult:
    """:func:`elementwise` of every checkable element (``--method full``), chunk by chunk: each chunk's elements,
    gradient, rounding floor and central differences are compared (:class:`.metrics.Comparison`) and dropped
    before the next chunk is read, so that a full check of a data set holds no more than one chunk of it.

    Parameters
    ----------
    batch : Batch
        Chunks of examples, or of one huge example (compared piece by piece).
    h : float
        The step.
    n_excluded : int
        Elements not checked (their count: those :func:`excluded_mask` gives, chunk by chunk).
    tol : float

    Returns
    -------
    GradientResult
        Method ``"full"``.

    Raises
    ------
    InputError
        The source cannot be read.
    """
    make, A, G, tracker = batch.make, batch.A, batch.G, batch.tracker
    per = batch.per_example
    tracker.plan(int(np.prod(A.shape)) - n_excluded)
    compared = Comparison(A.shape, "mhwc", tol, dense_limit=DENSE_VALUES)
    for sl in batch.chunks:
        if not _by_chunk(batch, sl):
            for part in _pieces_of_one(batch, sl, h):
                compared.add(*part)
            continue
        x = A[sl]
        p = make(x, G[sl])
        local = np.flatnonzero(~excluded_mask(p, x, h).reshape(-1))
        if local.size:
            compared.add(sl.start * per + local, *_compared(p, x, local, h, tracker))
    geom = batch.geometry()
    return compared.result("dA_prev", "full", n_excluded, pads=geom.pads, stride=geom.stride)


def _gradient_at(batch: Batch, h: float, local: np.ndarray, e: int):
    """``(analytical, floor)`` of the elements ``local`` (flat, sorted) of one example ``e`` that goes by tiles:
    from its gradient and floor piece by piece (:func:`gradient_pieces`, the pass's tiles and values); floor NaN
    where there is none (max pooling)."""
    x = read(batch, slice(e, e + 1))
    g = upstream(batch, slice(e, e + 1), x)
    p = batch.make(x, g)
    if not p.by_tiles():  # NOTE: not by tiles (a tiled upstream only): the example's gradient whole, as elsewhere
        grad, floor = _gradient_and_floor(batch.make(whole_of(x), g), local, h)
        return grad, np.full(local.size, np.nan) if floor is None else floor
    grad, floor = np.empty(local.size), np.full(local.size, np.nan)
    for lo, hi, dA, fl in gradient_pieces(p, g, None, h):
        mine = (local >= lo) & (local < hi)
        grad[mine] = dA[local[mine] - lo]
        if fl is not None:
            floor[mine] = fl[local[mine] - lo]
    return grad, floor


def _unread_differences(batch: Batch, h: float, local: np.ndarray, e: int) -> np.ndarray:
    """:func:`elementwise`'s central differences of the elements ``local`` (flat, sorted) of one unread huge
    example ``e``: their values and the rectangles their windows read, each read from the file."""
    x = read(batch, slice(e, e + 1))
    g = upstream(batch, slice(e, e + 1), x)
    p = batch.make(x, g)
    if not p._local():  # NOTE: every element evaluated on the whole example's copies: it is read whole
        x = whole_of(x)
        p = batch.make(x, g)
    xs = x.take(local) if isinstance(x, ReadExample) else x.reshape(-1)[local]
    plus, minus = xs + h, xs - h
    return p.differences("A_prev", local, plus, minus, batch.tracker.tick) / (plus - minus)


def localized(batch: Batch, h: float, D, bad, sums: dict, context, n_excluded: int, tol: float, rng, notes: list):
    """A failing directional check localized elementwise: in full on a small A_prev, else by bisecting the
    examples that disagree (at most ``LOCALIZE_BLOCKS``), with the sample as context (as :mod:`.core`).

    Parameters
    ----------
    batch, h, D
        As :func:`pass_over_batch`.
    bad : list of (int, int)
        (direction, example) pairs that disagreed (example -1: none alone).
    sums : dict
        :func:`pass_over_batch`'s result.
    context : ndarray of int64
        Flat indices of the sample, checked along.
    n_excluded : int
    tol : float
    rng : numpy.random.Generator
    notes : list of str
        A note is added when no element disagrees.

    Returns
    -------
    GradientResult
        Failed, with the elements found.

    Raises
    ------
    Nothing.
    """
    make, A, G, tracker = batch.make, batch.A, batch.G, batch.tracker
    per = batch.per_example
    fast, _ = block_verdict(sums["per_block"], sums["a_blk"], sums["l1_blk"], sums["f_blk"], name="A_prev",
                            shape=A.shape, n_excluded=n_excluded, tol=tol)
    if A.size - n_excluded <= LOCALIZE_FULL_LIMIT:
        how = "fast+full"
        idx = checkable(batch, h)
    else:
        how = "fast+bisect"
        pairs = [(int(q), int(e)) for q, e in bad]
        if any(e < 0 for _, e in pairs):  # no single example disagrees: bisect those that disagree most
            q = pairs[0][0]
            worst = np.argsort(-np.abs(sums["a_blk"][q] - sums["per_block"][q]), kind="stable")[:LOCALIZE_BLOCKS]
            pairs = [(q, int(e)) for e in worst]
        examples = np.array(sorted({e for _, e in pairs})[:LOCALIZE_BLOCKS], dtype=np.int64)
        # NOTE: an example that goes by tiles is not bisected (its directions, gradient and copies whole): its
        # TOP_OFFENDERS largest errors, every element compared piece by piece (slow: one evaluation each)
        huge = [e for e in examples.tolist() if not _by_chunk(batch, slice(e, e + 1))]
        found = [_worst_of_one(batch, slice(e, e + 1), h, TOP_OFFENDERS, tol) for e in huge]
        examples = np.array([e for e in examples.tolist() if e not in set(huge)], dtype=np.int64)
        pairs = [(q, e) for q, e in pairs if e in set(examples.tolist())]
        if examples.size:
            x, g = _rows(A, examples), _rows(G, examples)
            p = make(x, g)
            grad = p.analytical()["A_prev"]
            floor = p.rounding_floor("A_prev", h)
            excluded = excluded_mask(p, x, h)
            Dx = np.stack([np.concatenate([D.chunk(q, int(e), int(e) + 1, excluded[i:i + 1])
                                           for i, e in enumerate(examples)]) for q in range(FAST_DIRECTIONS)])
            t = TensorCheck(p, "A_prev", x, grad, h, excluded, tol, rng, tracker, floor, notes)
            blocks = np.broadcast_to(np.arange(len(examples)).reshape(-1, 1, 1, 1), x.shape)
            bisected = localize(t, Dx, blocks, [(q, int(np.searchsorted(examples, e))) for q, e in pairs])
            found.append(examples[bisected // per] * per + bisected % per)
        idx = np.union1d(np.concatenate(found) if found else np.zeros(0, dtype=np.int64), context).astype(np.int64)
    r = elementwise(batch, h, idx, None, None, n_excluded, tol, how)
    if r.failing == 0:
        notes.append(f"{fast.name}: a directional check disagreed by {fast.max_abs_error:.2g} but no single "
                     f"element did{'' if how == 'fast+full' else ' (of those localized and sampled)'}: "
                     "rerun with --method full")
    return merge(fast, r, how, passed=False)
