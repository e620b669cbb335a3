"""Arrays as large as a data set, never held whole: read or drawn by example slices ``[lo:hi]``.

- :class:`Examples`: a batch read by slices as float64 (an HDF5 dataset, a ``Batches``);
- :class:`DrawnUpstream`: the seeded standard-normal upstream gradient, drawn by slices;
- :class:`DirectionChunks`: the fast check's random directions, by direction and slices.

Each gives, slice by slice, the very values of the whole array (see each class).
"""

from __future__ import annotations

import bisect
import collections
from typing import Optional

import numpy as np

from .directional import FAST_DIRECTIONS
from .sampling import example_rects

#: Normal draws skipped at a time when G is drawn again from an earlier point (bounded temporaries).
SKIP_DRAWS = 2**16
#: Values between the generator states kept while drawing (a rectangle drawn again skips fewer than this).
MARK_VALUES = 2**16
#: Generator states kept besides those marks: where the latest draws began and ended. A full check of an image
#: draws the rectangles around neighbouring elements one after another, each beginning a little after the one
#: before: from the nearest mark each skipped half of MARK_VALUES on average, 42% of the check's time.
RECENT_MARKS = 8
#: Values of the latest draw kept (one no longer is not): the next rectangle around neighbouring elements
#: shares most of its span, which is copied from it, only the rest drawn.
LAST_DRAW_VALUES = 2**18


def copy_generator(rng: np.random.Generator) -> np.random.Generator:
    """A generator that draws what ``rng`` would draw next, leaving ``rng`` where it is."""
    bits = type(rng.bit_generator)()
    bits.state = rng.bit_generator.state
    return np.random.Generator(bits)


class Examples:
    """A batch read by example slices as float64: ``shape``, ``size`` and ``[lo:hi]`` (any such source)."""

    def __init__(self, source):
        self.source, self.shape, self.ndim = source, tuple(source.shape), 4
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel) -> np.ndarray:
        if not isinstance(sel, slice):
            raise TypeError("a streamed batch is read by [lo:hi] slices only")
        return np.ascontiguousarray(self.source[sel], dtype=np.float64)

    def example(self, e: int) -> "ReadExample":
        """Example ``e`` as (1, n_H, n_W, n_C), read by the rectangles asked of it (see :class:`ReadExample`)."""
        return ReadExample(self, e)

    def rect(self, e: int, rows: tuple, cols: tuple) -> np.ndarray:
        """Rows ``rows[0]:rows[1]`` by columns ``cols[0]:cols[1]`` of example ``e``, (1, r, c, n_C) float64: read by
        that rectangle where the source reads one (a :class:`cnncli.passes.layer.Batches` of HDF5 or ``.npy``)."""
        if hasattr(self.source, "rows"):
            part = self.source.rows(e, rows[0], rows[1], cols)
        else:
            part = self.source[e:e + 1, rows[0]:rows[1], cols[0]:cols[1]]
        return np.ascontiguousarray(part, dtype=np.float64)


#: Values of one example read at a time by :meth:`ReadExample.blocks` (whole rows, or parts of one row).
BLOCK_VALUES = 2**20


class ReadExample:
    """One example of :class:`Examples` as (1, n_H, n_W, n_C) float64, never read whole: ``x[:, rows, cols]``
    (also ``x[0, rows, cols]``, and a fourth index of channels) reads that rectangle from the file, ``x[0:1]`` or
    ``x[:]`` is the example itself, still unread; :meth:`flat`, :meth:`take` and :meth:`blocks` read spans, values
    and the whole example block by block. For one example too large to hold (the streamed check's tiles,
    as :class:`DrawnExample` gives its upstream gradient); :meth:`read` reads it whole where a caller must."""

    dtype = np.dtype(np.float64)

    def __init__(self, examples: Examples, e: int, channels: slice = slice(None)):
        self.examples, self.e, self.channels = examples, int(e), channels
        C = len(range(*channels.indices(examples.shape[3])))
        self.shape, self.ndim = (1,) + tuple(examples.shape[1:3]) + (C,), 4
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return 1

    @property
    def read_channels(self) -> int:
        """Channels a rectangle holds as read from the source: every channel of the example (a group's are taken
        from it after the read)."""
        return self.examples.shape[3]

    def read(self) -> np.ndarray:
        """The example whole, (1, n_H, n_W, n_C)."""
        x = self.examples[self.e:self.e + 1]
        return x if self.channels == slice(None) else np.ascontiguousarray(x[..., self.channels])

    def __getitem__(self, sel):
        if isinstance(sel, slice) and sel.indices(1)[:2] == (0, 1):
            return self
        if isinstance(sel, tuple) and len(sel) == 2 and sel[0] is Ellipsis and isinstance(sel[1], slice):
            # x[..., channels] of a group's channels: still unread (channels of channels: not needed)
            if self.channels != slice(None):
                raise TypeError("the channels of one streamed example are chosen once")
            return ReadExample(self.examples, self.e, sel[1])
        r0, r1, c0, c1 = rectangle(sel, self.shape, "one streamed example is read", channels=True)
        out = self._rect((r0, r1), (c0, c1))
        if len(sel) == 4:
            out = out[..., sel[3]]
        return out[0] if sel[0] == 0 and not isinstance(sel[0], slice) else out

    def _rect(self, rows: tuple, cols: tuple) -> np.ndarray:
        out = self.examples.rect(self.e, rows, cols)
        return out if self.channels == slice(None) else np.ascontiguousarray(out[..., self.channels])

    def flat(self, lo: int, hi: int) -> np.ndarray:
        """Its flat values ``[lo, hi)`` (C order), as a new 1-D array (:func:`flat_span` of its rectangles)."""
        return flat_span(self.shape, self._rect, lo, hi)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Its values at the flat indices ``idx``: each value's row part read (few values: a sample)."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty(idx.size)
        for q, k in enumerate(idx.tolist()):
            out[q] = self.flat(k, k + 1)[0]
        return out

    def blocks(self, values: int = 0):
        """``(lo, rows, cols, block)`` over the example in order: rectangles of whole rows, or of one row by
        columns where a row exceeds ``values`` (default ``BLOCK_VALUES``), each the flat span from ``lo``."""
        for lo, rows, cols in self.rects(values):
            yield lo, rows, cols, self[:, rows, cols]

    def rects(self, values: int = 0):
        """:meth:`blocks`' ``(lo, rows, cols)``, reading nothing."""
        _, H, W, C = self.shape
        return example_rects(H, W, C, values or BLOCK_VALUES)


def flat_span(shape, rect, lo: int, hi: int, dtype=np.float64):
    """The flat values ``[lo, hi)`` (C order) of one example of ``shape`` (1, H, W, C) given by its rectangles,
    as a new 1-D array: the rows the span covers, in at most three rectangles (a part of its first row, whole
    rows, a part of its last).

    Parameters
    ----------
    shape : tuple
        (1, H, W, C).
    rect : callable
        ``rect((r0, r1), (c0, c1))``: rows ``r0:r1`` by columns ``c0:c1``, shape (1, r1 - r0, c1 - c0, C); or a
        tuple of such arrays (several arrays of the example at once), each then given as its span.
    lo, hi : int
        The span, ``0 <= lo <= hi <= H * W * C``.
    dtype
        Of the empty span.

    Returns
    -------
    ndarray, shape (hi - lo,), or a tuple of them

    Raises
    ------
    Whatever ``rect`` raises.
    """
    _, H, W, C = shape
    row = W * C
    parts, at, several = [], lo, False

    def cut(got, a: int, b: int):
        nonlocal several
        several = isinstance(got, tuple)
        return tuple(g.reshape(-1)[a:b] for g in got) if several else (got.reshape(-1)[a:b],)

    while at < hi:
        i, j = divmod(at, row)
        if j == 0 and hi - at >= row:  # whole rows
            n = (hi - at) // row
            parts.append(cut(rect((i, i + n), (0, W)), 0, n * row))
            at += n * row
            continue
        end = min(hi, (i + 1) * row)  # a part of row i: the columns it touches, cut to the span
        c0, c1 = j // C, -(-(end - i * row) // C)
        parts.append(cut(rect((i, i + 1), (c0, c1)), j - c0 * C, end - i * row - c0 * C))
        at = end
    if not parts:
        return np.zeros(0, dtype=dtype)
    out = tuple(p[0] if len(parts) == 1 else np.concatenate(p) for p in zip(*parts))
    return out if several else out[0]


class DrawnUpstream:
    """``np.random.default_rng(seed).standard_normal(shape)``, drawn by example slices ``[lo:hi]``, or by
    rectangles of one example (:meth:`example`).

    The generator's state is kept at every ``MARK_VALUES``-th value and at every boundary drawn so far, so
    values drawn again start from the nearest earlier mark: the same values each time, equal to the whole
    draw's (numpy draws normals one after another: a draw of n values then k gives the draw of n + k).
    """

    def __init__(self, seed: Optional[int], shape):
        self.shape, self.ndim = tuple(int(s) for s in shape), 4
        self.size = int(np.prod(self.shape))
        self._per = int(np.prod(self.shape[1:]))
        bits = np.random.default_rng(seed).bit_generator
        self._kind, self._marks, self._at = type(bits), {0: bits.state}, [0]
        self._recent: collections.deque = collections.deque(maxlen=RECENT_MARKS)  # (position, state)
        self._last = (0, 0, np.zeros(0))  # the latest draw (lo, hi, values), if no longer than LAST_DRAW_VALUES

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel) -> np.ndarray:
        if not isinstance(sel, slice):
            raise TypeError("the upstream gradient is drawn by [lo:hi] slices only")
        lo, hi, _ = sel.indices(self.shape[0])
        hi = max(lo, hi)
        return self.values(lo * self._per, hi * self._per).reshape((hi - lo,) + self.shape[1:])

    def example(self, e: int) -> "DrawnExample":
        """Example ``e`` as (1, n_H, n_W, n_C), drawn by the rectangles asked of it (see :class:`DrawnExample`)."""
        return DrawnExample(self, e)

    def values(self, lo: int, hi: int) -> np.ndarray:
        """The flat values ``[lo, hi)`` of the whole draw (C order), as a new 1-D array."""
        last_lo, last_hi, last = self._last
        if last_lo <= lo < last_hi:  # begins within the latest draw: copied from it, the rest drawn on from its end
            out = np.empty(hi - lo)
            shared = min(hi, last_hi) - lo
            out[:shared] = last[lo - last_lo:lo - last_lo + shared]
            if hi > last_hi:
                out[shared:] = self._draw(last_hi, hi)
            self._keep(lo, hi, out)
            return out
        out = self._draw(lo, hi)
        self._keep(lo, hi, out)
        return out

    def _keep(self, lo: int, hi: int, out: np.ndarray) -> None:
        if hi - lo <= LAST_DRAW_VALUES:
            self._last = (lo, hi, out.copy())  # NOTE: a copy: the caller may write into what it was given

    def _draw(self, lo: int, hi: int) -> np.ndarray:
        """:meth:`values`, drawn from the latest kept state at or before ``lo``."""
        start = self._at[bisect.bisect_right(self._at, lo) - 1]
        state = self._marks[start]
        for at, recent in self._recent:  # a later start: where a recent draw began or ended, at or before lo
            if start < at <= lo:
                start, state = at, recent
        bits = self._kind()
        bits.state = state
        gen = np.random.Generator(bits)
        pos = start
        while pos < lo:  # skipped, by at most SKIP_DRAWS at a time, marking the way
            n = min(lo - pos, SKIP_DRAWS, MARK_VALUES - pos % MARK_VALUES)
            gen.standard_normal(n)
            pos += n
            self._mark(pos, bits)
        self._recent.append((lo, bits.state))
        out = np.empty(hi - lo)
        while pos < hi:
            n = min(hi - pos, MARK_VALUES - pos % MARK_VALUES)
            gen.standard_normal(out=out[pos - lo:pos - lo + n])
            pos += n
            self._mark(pos, bits)
        self._recent.append((hi, bits.state))
        return out

    def _mark(self, pos: int, bits) -> None:
        if pos not in self._marks and (pos % MARK_VALUES == 0 or pos % self._per == 0):
            self._marks[pos] = bits.state
            bisect.insort(self._at, pos)


class DrawnExample:
    """One example of a :class:`DrawnUpstream` as (1, n_H, n_W, n_C), never drawn whole: ``G[:, rows, cols]``
    (also ``G[0, rows, cols]``, without the first axis) draws the rectangle's span of values only, and
    ``G[0:1]`` or ``G[:]`` is the example itself, still undrawn. For the tiles of an example too large to hold
    several copies of (:mod:`.tiled`), whose rectangles are whole rows or parts of one row."""

    def __init__(self, drawn: DrawnUpstream, e: int):
        self.drawn, self.e = drawn, int(e)
        self.shape, self.ndim = (1,) + drawn.shape[1:], 4
        self.size = drawn._per

    def __len__(self) -> int:
        return 1

    def __getitem__(self, sel):
        if isinstance(sel, slice) and sel.indices(1)[:2] == (0, 1):
            return self
        r0, r1, c0, c1 = rectangle(sel, self.shape, "one example of the upstream gradient is drawn")
        _, H, W, C = self.shape
        shape = (r1 - r0, c1 - c0, C)
        if not (r1 > r0 and c1 > c0):
            out = np.zeros(shape)
        else:
            base = self.e * self.drawn._per
            # the span from the rectangle's first value to its last: one contiguous draw
            span = self.drawn.values(base + (r0 * W + c0) * C, base + ((r1 - 1) * W + c1) * C)
            out = span_rect(span, r1 - r0, c1 - c0, W, C)
        return out if sel[0] == 0 and not isinstance(sel[0], slice) else out[None]


def span_rect(span: np.ndarray, r: int, c: int, W: int, C: int) -> np.ndarray:
    """The rectangle (r, c, C), r, c >= 1, of an example of W columns and C channels, from ``span``, its flat
    values from the rectangle's first to its last: each of the span's rows of ``W * C`` values begins with one of
    the rectangle's rows (the last ends with it). One row, or whole rows, are the span itself; else a copy."""
    if r == 1 or c == W:
        return span.reshape(r, c, C)
    band = np.lib.stride_tricks.as_strided(span, (r, c * C), (W * C * span.itemsize, span.itemsize), writeable=False)
    return np.ascontiguousarray(band).reshape(r, c, C)


def rectangle(sel, shape, what: str, channels: bool = False) -> tuple:
    """``(r0, r1, c0, c1)`` of a one-example index ``[:, rows, cols]`` or ``[0, rows, cols]`` (and, with
    ``channels``, a fourth index of channels) over ``shape`` (1, H, W, C); a TypeError naming ``what`` else."""
    if not (isinstance(sel, tuple) and len(sel) in ((3, 4) if channels else (3,))
            and all(isinstance(s, slice) for s in sel[1:])
            and (sel[0] == 0 or (isinstance(sel[0], slice) and sel[0].indices(1)[:2] == (0, 1)))):
        raise TypeError(f"{what} by [:, rows, cols] rectangles only")
    (r0, r1, rs), (c0, c1, cs) = sel[1].indices(shape[1]), sel[2].indices(shape[2])
    if rs != 1 or cs != 1:
        raise TypeError(f"{what} by rectangles of unit steps only")
    return r0, max(r0, r1), c0, max(c0, c1)


class DirectionChunks:
    """The fast check's directions of a streamed input, by (direction, examples): the values of
    :func:`.directional.directions` (uniform draws are one generator step each, so any slice is reached
    by jumping ahead), zero where excluded."""

    def __init__(self, rng: np.random.Generator, shape):
        self.kind, self.state = type(rng.bit_generator), rng.bit_generator.state
        self.n, self.per = int(np.prod(shape)), int(np.prod(shape[1:]))
        self.shape = tuple(shape)
        rng.bit_generator.advance(FAST_DIRECTIONS * self.n)  # as if all were drawn

    def chunk(self, p: int, lo: int, hi: int, excluded: np.ndarray) -> np.ndarray:
        bits = self.kind()
        bits.state = self.state
        bits.advance(p * self.n + lo * self.per)
        d = np.random.Generator(bits).uniform(-1.0, 1.0, size=(hi - lo,) + self.shape[1:])
        d[excluded] = 0.0
        return d

    def span(self, p: int, e: int, lo: int, hi: int) -> np.ndarray:
        """Direction ``p``'s values ``[lo, hi)`` of example ``e`` (flat, C order; none excluded), as a new 1-D array."""
        bits = self.kind()
        bits.state = self.state
        bits.advance(p * self.n + e * self.per + lo)
        return np.random.Generator(bits).uniform(-1.0, 1.0, size=hi - lo)

    def rows(self, p: int, examples: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        """Direction ``p`` at the ``examples`` (sorted, unique; ``excluded``: theirs), drawn by runs of consecutive ones."""
        parts, start = [], 0
        for i in range(1, len(examples) + 1):
            if i == len(examples) or examples[i] != examples[i - 1] + 1:
                lo, hi = int(examples[start]), int(examples[i - 1]) + 1
                parts.append(self.chunk(p, lo, hi, excluded[start:i]))
                start = i
        if len(parts) == 1:  # one run (one example may be as large as a chunk): no copy
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros((0,) + self.shape[1:])
