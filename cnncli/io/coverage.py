"""What a streamed result has been written with: whole examples, blocks of an example's rows, and tiles.

:mod:`cnncli.io.writers` streams a result by batch slices, by blocks of one example's rows (an example
larger than a chunk, :mod:`cnncli.passes.rows`) or by tiles of rows by columns (an output row larger
than a chunk, :mod:`cnncli.passes.tiles`); this bookkeeping refuses what would be written twice or
where it does not fit, and tells whether everything was written, so a result cut short is never
committed.
"""

from __future__ import annotations

import bisect
from typing import Dict, List, Optional, Tuple


def block_selection(shape, example: int, axis: int, start: int, block, col: Optional[int] = None) -> tuple:
    """Where ``block`` goes in an array of ``shape``: one example's rows ``start:`` along ``axis``, and columns
    ``col:`` along ``axis + 1`` when given (a tile), every other axis whole.

    Parameters
    ----------
    shape : tuple of int
        The whole array's, e.g. (m, n_H, n_W, n_C) (``axis`` 1) or (m, n_C, n_H, n_W) (``axis`` 2).
    example, axis, start : int
        The example, the axis of its rows, the block's first row.
    block : ndarray, shape (1, ..., k, ...) or (1, ..., k, w, ...)
        ``shape`` with one example, ``k`` rows (and ``w`` columns, with ``col``).
    col : int, optional
        The tile's first column.

    Returns
    -------
    tuple
        The index of the block in the whole array (without its leading axis of 1).

    Raises
    ------
    ValueError
        The block's shape or place does not fit ``shape``.
    """
    tiled = col is not None
    want = (1,) + tuple(shape[1:axis]) + (None,) * (1 + tiled) + tuple(shape[axis + 1 + tiled:])
    fits = len(block.shape) == len(shape) and all(w is None or w == g for w, g in zip(want, block.shape))
    if not fits or not 0 <= example < shape[0] or not 0 <= start <= start + block.shape[axis] <= shape[axis] \
            or tiled and not 0 <= col <= col + block.shape[axis + 1] <= shape[axis + 1]:
        raise ValueError(f"block {block.shape} does not fit {tuple(shape)} at example {example}, row {start}"
                         + (f", column {col}" if tiled else ""))
    sel = (example,) + (slice(None),) * (axis - 1) + (slice(start, start + block.shape[axis]),)
    return sel + ((slice(col, col + block.shape[axis + 1]),) if tiled else ())


def _overlaps(spans: List[Tuple[int, int]], start: int, stop: int) -> Optional[Tuple[int, int]]:
    """The span of sorted, disjoint ``spans`` that ``[start, stop)`` overlaps, if any."""
    at = bisect.bisect_left(spans, (start, stop))
    for near in spans[max(at - 1, 0):at + 1]:
        if near[0] < stop and start < near[1]:
            return near
    return None


class Coverage:
    """What a stream has written: whole examples in order (``done``), then the blocks of rows of the next one.

    Each row of an example written by blocks is written once, in any order; the example counts as written
    when its blocks cover it, and nothing else is taken until then. A block may also be a tile, rows by
    columns: the tiles of a row span share its rows exactly (other rows across it are refused), each column
    once, and the rows count as written when their tiles cover every column. A close before everything is
    written is refused, so a result cut short is never committed."""

    def __init__(self, shape):
        self.shape, self.done = tuple(shape), 0
        self._spans: List[Tuple[int, int]] = []  # sorted, disjoint row spans of example ``done``, written
        self._tiled: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}  # row spans being tiled: column spans
        self._keys: List[Tuple[int, int]] = []  # those row spans, sorted (disjoint)
        self._rows = 0  # rows in ``_spans``

    def whole(self, n: int) -> int:
        """Take ``n`` whole examples; returns the first one's index."""
        part = self._spans or self._tiled
        if part or self.done + n > (self.shape[0] if self.shape else 0):
            raise ValueError(f"{n} examples do not fit {self.shape} after {self.done} examples"
                             + (" and a part" if part else ""))
        self.done += n
        return self.done - n

    def block(self, example: int, start: int, stop: int, n: int) -> None:
        """Take rows ``start:stop`` of ``example`` (whose rows are ``n``); ValueError where written or being tiled."""
        self._free(example, start, stop, None)
        self._written(start, stop, n)

    def tile(self, example: int, start: int, stop: int, c0: int, c1: int, n: int, n_cols: int) -> None:
        """Take rows ``start:stop`` by columns ``c0:c1`` of ``example`` (whose rows are ``n``, columns ``n_cols``);
        ValueError where written, or across another row span being tiled."""
        key = (start, stop)
        self._free(example, start, stop, key)
        if c0 == c1 or start == stop:
            return
        if key not in self._tiled:
            self._tiled[key] = []
            bisect.insort(self._keys, key)
        cols = self._tiled[key]
        if _overlaps(cols, c0, c1):
            raise ValueError(f"rows {start}:{stop}, columns {c0}:{c1} of example {example} are written twice")
        bisect.insort(cols, (c0, c1))
        merged = [cols[0]]  # adjacent spans merged: tiles written left to right keep one span
        for a, b in cols[1:]:
            merged[-1:] = [(merged[-1][0], b)] if merged[-1][1] == a else [merged[-1], (a, b)]
        if merged == [(0, n_cols)]:
            del self._tiled[key]
            self._keys.remove(key)
            self._written(start, stop, n)
        else:
            self._tiled[key] = merged

    def _free(self, example: int, start: int, stop: int, key) -> None:
        """Refuse rows ``start:stop`` of ``example`` where written, or across row spans being tiled (but ``key``)."""
        if example != self.done:
            raise ValueError(f"block of example {example} while example {self.done} is being written")
        if _overlaps(self._spans, start, stop):
            raise ValueError(f"rows {start}:{stop} of example {example} are written twice")
        tiled = _overlaps(self._keys, start, stop)
        if tiled is not None and tiled != key:
            raise ValueError(f"rows {start}:{stop} of example {example} cross the tiles of rows {tiled[0]}:{tiled[1]}")

    def _written(self, start: int, stop: int, n: int) -> None:
        """Rows ``start:stop`` are written; the example is when all its ``n`` rows are."""
        bisect.insort(self._spans, (start, stop))
        self._rows += stop - start
        if self._rows == n and not self._tiled:
            self.done, self._spans, self._rows = self.done + 1, [], 0

    def check_complete(self, what: str) -> None:
        """Raise ValueError unless every example is written whole."""
        part = self._spans or self._tiled
        if self.done != (self.shape[0] if self.shape else 0) or part:
            raise ValueError(f"{what}: wrote {self.done} of {self.shape[0]} rows" + (" and a part" if part else ""))


def record_block(written: Coverage, shape, example: int, axis: int, start: int, block, col: Optional[int]) -> None:
    """Record in ``written`` a block of rows of an array of ``shape`` (a tile, with ``col``), as
    :func:`block_selection` takes it.

    Raises
    ------
    ValueError
        Rows or a tile written already, another example's, or rows across a row span being tiled.
    """
    stop = start + block.shape[axis]
    if col is None:
        written.block(example, start, stop, shape[axis])
    else:
        written.tile(example, start, stop, col, col + block.shape[axis + 1], shape[axis], shape[axis + 1])
