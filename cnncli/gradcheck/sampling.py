"""Stratified choice of the elements a ``sample`` check compares.

A uniform sample of a large input mostly lands in the interior and can miss
the places where hand-written layers go wrong: the border (padding), the last
rows/columns (stride), particular kernel offsets of W. So the elements are
split into strata and drawn round-robin from each, without replacement:

- ``A_prev`` (m, H, W, C): corners, edges (first/last row or column), interior;
  within each stratum examples and channels are drawn at random, so windows
  overlap wherever the stride is smaller than the window;
- ``W`` (f_h, f_w, c, n_C): one stratum per kernel offset (i, j);
- ``b``: one stratum (every element when ``n`` allows).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np


def _strata(shape, name: str) -> Iterator[np.ndarray]:
    """Boolean masks over ``shape`` that partition it, one at a time (A_prev's: :func:`_stratum_blocks`)."""
    if name == "W" and len(shape) == 4:
        for i in range(shape[0]):
            for j in range(shape[1]):
                s = np.zeros(shape, dtype=bool)
                s[i, j] = True
                yield s
        return
    yield np.ones(shape, dtype=bool)


def stratified_indices(shape, name: str, n: int, rng: np.random.Generator,
                       excluded: Optional[np.ndarray] = None) -> np.ndarray:
    """Flat indices of about ``n`` elements of a tensor of ``shape``, drawn round-robin from its strata.

    Parameters
    ----------
    shape : tuple of int
    name : str
        ``"A_prev"``, ``"W"`` or ``"b"``: chooses the strata.
    n : int
        How many elements; every eligible element when there are fewer.
    rng : numpy.random.Generator
    excluded : ndarray of bool, optional
        Elements never to draw (kinks).

    Returns
    -------
    ndarray of int64, sorted
    """
    if name == "A_prev" and len(shape) == 4:
        return stratified_blocks(shape, n, rng, lambda: _array_blocks(shape, excluded))
    pools = []
    for mask in _strata(shape, name):
        ok = mask if excluded is None else (mask & ~excluded)
        cand = _candidates(ok)
        del ok
        if cand.size:
            rng.shuffle(cand)
            pools.append(cand)
    take = _round_robin([p.size for p in pools], n)
    return np.sort(np.concatenate([pool[:k] for pool, k in zip(pools, take)])).astype(np.int64) if pools \
        else np.empty(0, dtype=np.int64)


#: A stratum of more candidates than this is drawn by ranks (``rng.choice``) instead of shuffled whole: its
#: candidates would be an array as large as it (one huge example's interior).
SHUFFLE_LIMIT = 2**22


def stratified_blocks(shape, n: int, rng: np.random.Generator, blocks) -> np.ndarray:
    """:func:`stratified_indices` of an ``A_prev`` of ``shape`` (m, H, W, C) given block by block: corners, edges
    and interior, drawn round-robin, with nothing of its size held.

    A stratum of at most ``SHUFFLE_LIMIT`` candidates is drawn as it always was (its candidates, in order,
    shuffled in place: the same draws); a larger one by ``rng.choice(count, k, replace=False)`` of its
    candidates' ranks, each rank then found in the block that holds it (a second pass).

    Parameters
    ----------
    shape : tuple of int
    n : int
    rng : numpy.random.Generator
    blocks : callable
        ``blocks()``: a new iterator of ``(lo, k, rows, cols, excluded)`` over the tensor in order, each the flat
        span from ``lo`` of ``k`` examples whole (rows and cols all) or of rows ``rows`` by columns ``cols`` of one
        example (k = 1), ``excluded`` its mask (k, r, c, C) of elements never to draw, or None.

    Returns
    -------
    ndarray of int64, sorted
    """
    size = int(np.prod(shape))
    kind = np.int32 if size <= np.iinfo(np.int32).max else np.int64  # half the memory; the same shuffle
    counts, cands = [0, 0, 0], [[], [], []]
    for lo, ok in _stratum_blocks(shape, blocks):
        for s in range(3):
            c = int(np.count_nonzero(ok[s]))
            counts[s] += c
            if c and counts[s] <= SHUFFLE_LIMIT:
                nz = np.flatnonzero(ok[s])
                nz += lo
                cands[s].append(nz.astype(kind))
            elif counts[s] > SHUFFLE_LIMIT:
                cands[s] = []  # drawn by ranks: not held
    live = [s for s in range(3) if counts[s]]
    take = dict(zip(live, _round_robin([counts[s] for s in live], n)))
    picked, ranks = [], {}
    for s in live:  # the generator's draws in the strata's order, as before
        if counts[s] <= SHUFFLE_LIMIT:
            cand = np.concatenate(cands[s])
            rng.shuffle(cand)
            picked.append(cand[:take[s]])
        else:
            ranks[s] = np.sort(rng.choice(counts[s], size=take[s], replace=False))
        cands[s] = None
    if ranks:
        seen = dict.fromkeys(ranks, 0)
        for lo, ok in _stratum_blocks(shape, blocks):
            for s, r in ranks.items():
                c = int(np.count_nonzero(ok[s]))
                a, b = np.searchsorted(r, [seen[s], seen[s] + c])
                if b > a:
                    picked.append(np.flatnonzero(ok[s])[r[a:b] - seen[s]] + lo)
                seen[s] += c
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.empty(0, dtype=np.int64)


def _stratum_blocks(shape, blocks):
    """Per block of :func:`stratified_blocks`: ``(lo, ok)``, ``ok`` its three strata's masks of the elements that
    may be drawn (corners, edges, interior), each of the block's shape (k, r, c, C)."""
    _, H, W, C = shape
    for lo, k, rows, cols, excluded in blocks():
        i, j = np.arange(*rows.indices(H)[:2]), np.arange(*cols.indices(W)[:2])  # no range of the whole axis
        er, ec = (i == 0) | (i == H - 1), (j == 0) | (j == W - 1)
        corner = er[:, None] & ec[None, :]
        planes = (corner, (er[:, None] | ec[None, :]) & ~corner, ~(er[:, None] | ec[None, :]))
        if excluded is None:
            yield lo, [np.broadcast_to(p[None, :, :, None], (k,) + p.shape + (C,)) for p in planes]
        else:
            yield lo, [p[None, :, :, None] & ~excluded for p in planes]


def _array_blocks(shape, excluded: Optional[np.ndarray]):
    """Blocks of about ``CANDIDATE_PIECE`` values of a tensor held in memory, for :func:`stratified_blocks`:
    whole examples, or rectangles of one (:func:`example_rects`) where an example is larger."""
    m, H, W, C = shape
    per = H * W * C
    if per <= CANDIDATE_PIECE:
        step = CANDIDATE_PIECE // max(1, per)
        for e in range(0, m, step):
            k = min(m, e + step) - e
            yield e * per, k, slice(0, H), slice(0, W), None if excluded is None else excluded[e:e + k]
        return
    for e in range(m):
        for lo, rows, cols in example_rects(H, W, C, CANDIDATE_PIECE):
            yield e * per + lo, 1, rows, cols, None if excluded is None else excluded[e:e + 1, rows, cols]


def example_rects(H: int, W: int, C: int, values: int):
    """``(lo, rows, cols)`` over one example (H, W, C) in order, each the flat span from ``lo`` of about
    ``values`` values (at least one column): whole rows, or parts of one row where a row holds more."""
    if W * C <= values:
        R = max(1, values // (W * C))
        for r in range(0, H, R):
            yield r * W * C, slice(r, min(H, r + R)), slice(0, W)
        return
    K = max(1, values // C)
    for r in range(H):
        for c in range(0, W, K):
            yield (r * W + c) * C, slice(r, r + 1), slice(c, min(W, c + K))


def _round_robin(sizes: list, n: int) -> list:
    """How many elements each stratum gives when they give one each in turn, in order, until ``n`` are drawn
    (all of each when they hold no more than ``n``): closed form, no loop over the elements.

    After ``r`` whole rounds every stratum has given ``min(size, r)``; ``r`` is the most rounds that give at most
    ``n``, and the strata still holding more give one more each, in order, until ``n``."""
    if sum(sizes) <= n:
        return list(sizes)
    lo, hi = 0, max(sizes)  # the most whole rounds: sum(min(s, r)) <= n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(s, mid) for s in sizes) <= n:
            lo = mid
        else:
            hi = mid - 1
    take = [min(s, lo) for s in sizes]
    left = n - sum(take)
    for k, s in enumerate(sizes):
        if left and s > lo:
            take[k] += 1
            left -= 1
    return take


#: Mask values turned into candidate indices at a time (see :func:`_candidates`; an in-memory A_prev's blocks).
CANDIDATE_PIECE = 2**18


def _candidates(ok: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(ok)``, as int32 where every index fits, built a piece of the mask at a time.

    NOTE: a shuffle's draws depend on the number of elements only, not on their type, so the permutation of
    the int32 candidates is that of the int64 ones, in half their memory (W's strata; A_prev's go by blocks)."""
    flat = ok.reshape(-1)
    if flat.size > np.iinfo(np.int32).max:
        return np.flatnonzero(flat)
    out, at = np.empty(int(np.count_nonzero(flat)), dtype=np.int32), 0
    for lo in range(0, flat.size, CANDIDATE_PIECE):  # into place: no list of pieces beside their concatenation
        nz = np.flatnonzero(flat[lo:lo + CANDIDATE_PIECE])
        out[at:at + nz.size] = nz
        out[at:at + nz.size] += lo
        at += nz.size
    return out
