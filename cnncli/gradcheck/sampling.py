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
    """Boolean masks over ``shape`` that partition it, one at a time (a huge example's are each its size)."""
    if name == "A_prev" and len(shape) == 4:
        H, W = shape[1], shape[2]
        rows = np.zeros(H, dtype=bool)
        rows[[0, H - 1]] = True
        cols = np.zeros(W, dtype=bool)
        cols[[0, W - 1]] = True
        corner = rows[:, None] & cols[None, :]
        yield np.broadcast_to(corner[None, :, :, None], shape)
        edge = (rows[:, None] | cols[None, :]) & ~corner
        yield np.broadcast_to(edge[None, :, :, None], shape)
        del edge, corner
        interior = ~(rows[:, None] | cols[None, :])
        yield np.broadcast_to(interior[None, :, :, None], shape)
        return
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
    pools = []
    for mask in _strata(shape, name):
        ok = mask if excluded is None else (mask & ~excluded)
        cand = _candidates(ok)
        del ok
        if cand.size:
            # NOTE: shuffled in place: rng.permutation copies and shuffles (the same draws, the same order),
            # and one huge example's stratum is about as large as it is
            rng.shuffle(cand)
            pools.append(cand)
    total = sum(p.size for p in pools)
    if total <= n:
        return np.sort(np.concatenate(pools)).astype(np.int64) if pools else np.empty(0, dtype=np.int64)
    # Round-robin: each stratum gives one element per round until n are drawn.
    take = [0] * len(pools)
    left = n
    while left:
        for s, pool in enumerate(pools):
            if left and take[s] < pool.size:
                take[s] += 1
                left -= 1
    return np.sort(np.concatenate([pool[:k] for pool, k in zip(pools, take)])).astype(np.int64)


#: Mask values turned into candidate indices at a time (see :func:`_candidates`).
CANDIDATE_PIECE = 2**20


def _candidates(ok: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(ok)``, as int32 where every index fits, built a piece of the mask at a time.

    NOTE: a shuffle's draws depend on the number of elements only, not on their type, so the permutation of
    the int32 candidates is that of the int64 ones, in half their memory: one huge example's stratum is about
    as large as it is (an example of 16M values held two such arrays, 256 MB)."""
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
