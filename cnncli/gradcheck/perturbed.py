"""Loss differences from forward evaluations of perturbed copies, evaluated chunk by chunk.

The loss is ``L = sum(G * layer(inputs))`` for a fixed upstream gradient ``G``.
A perturbation of ``A_prev`` changes only its own example, so perturbed copies of
that one example are stacked along the batch axis and evaluated in one forward
call (per memory-bounded chunk, ``CHUNK_BYTES``); the other examples' terms of the
loss are the same on both sides and cancel exactly.

Every evaluation over the batch (the analytical pass, rounding estimates, directions)
is chunked the same way (``BATCH_BYTES``, :func:`batch_chunks`): the checker's working
memory does not grow with the batch. The layer problems (:mod:`.problems`,
:mod:`.pool_problem`) build on these.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .protocol import Tick

#: Memory for the stacked copies and their outputs per forward call.
CHUNK_BYTES = 24 * 2**20
#: Workspace of one evaluation over a chunk of the batch (the inputs, outputs and their products of
#: one chunk of examples): every evaluation whose cost grows with the batch runs chunk by chunk, so
#: the checker's transient memory stays bounded whatever the batch (sums over examples accumulate).
BATCH_BYTES = 64 * 2**20
MACHINE_EPS = float(np.finfo(np.float64).eps)


def _tick(tick: Tick, n: int) -> None:
    if tick is not None:
        tick(n)


def _contract(d: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Per leading index k: sum(d[k] * G[k]) for d, G of shape (K, ...)."""
    K = d.shape[0]
    return np.einsum("ij,ij->i", d.reshape(K, -1), G.reshape(K, -1))


def batch_chunks(m: int, bytes_per_example: int, budget: Optional[int] = None):
    """Slices over ``m`` examples, each holding at most ``budget`` bytes (at least one example)."""
    step = max(1, int((BATCH_BYTES if budget is None else budget) // max(1, bytes_per_example)))
    return [slice(lo, min(m, lo + step)) for lo in range(0, m, step)]


def differences_by(forward):
    """The ``differ`` of :func:`example_differences` from a ``forward`` (X -> outputs): per pair k of ``X`` (2K
    copies, plus then minus), ``sum(G[k] * (forward(X)[k] - forward(X)[K + k]))``."""
    def differ(X: np.ndarray, G: np.ndarray) -> np.ndarray:
        Z = forward(X)
        k = X.shape[0] // 2
        # NOTE: subtract before contracting: outside the perturbed receptive field
        # the two copies agree exactly, so no large equal terms cancel in the sum.
        return _contract(Z[:k] - Z[k:], G)
    return differ


def _pick(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` (examples); a view where ``rows`` is one run of consecutive examples, as one example is."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (rows.size == 1 or bool(np.all(np.diff(rows) == 1))):
        return x[int(rows[0]):int(rows[-1]) + 1]
    return x[rows]


def example_differences(differ, A: np.ndarray, G: np.ndarray, idx, plus, minus,
                        out_bytes_per_example: int, tick: Tick = None) -> np.ndarray:
    """``L(A with A.flat[idx[k]] = plus[k]) - L(... = minus[k])`` for each k.

    Each perturbation is a copy of its own example only; the copies are stacked
    along the batch axis and evaluated in chunks by ``differ(X, G)``: per pair k of
    ``X`` (plus copies, then minus), the loss difference under ``G`` (see
    :func:`differences_by`). The other examples' terms of the loss are the same on
    both sides and cancel exactly.
    """
    m = A.shape[0]
    per_example = A[0].size
    ex, local = np.divmod(np.asarray(idx, dtype=np.int64), per_example)
    flat = A.reshape(m, per_example)
    K = len(ex)
    out = np.empty(K)
    copy_bytes = 8 * per_example + out_bytes_per_example
    step = max(1, CHUNK_BYTES // (2 * copy_bytes))
    for lo in range(0, K, step):
        sl = slice(lo, min(K, lo + step))
        k = sl.stop - sl.start
        X = np.empty((2 * k, per_example), dtype=A.dtype)
        np.take(flat, ex[sl], axis=0, out=X[:k])
        X[k:] = X[:k]
        rows = np.arange(k)
        X[rows, local[sl]] = plus[sl]
        X[rows + k, local[sl]] = minus[sl]
        out[sl] = differ(X.reshape((2 * k,) + A.shape[1:]), _pick(G, ex[sl]))
        _tick(tick, k)
    return out


def example_directional(differ, A: np.ndarray, G: np.ndarray, D: np.ndarray, h: float,
                        tick: Tick = None, bytes_per_example: Optional[int] = None) -> np.ndarray:
    """``L_e(A + h D[p]) - L_e(A - h D[p])`` per direction p and example e (D: (P,) + A.shape; out (P, m)).

    ``L_e`` is example e's part of the loss: the examples are independent, so one
    forward call of the perturbed batch gives every example's own directional
    difference. Examples where ``D[p]`` is zero are not evaluated (their part is 0):
    a direction restricted to a few elements (bisection) costs only their examples.
    ``differ`` is as :func:`example_differences`'.
    The perturbed examples are evaluated in chunks of about ``BATCH_BYTES``
    (``bytes_per_example``: an example's copies, outputs and workspace).
    """
    P, m = D.shape[0], A.shape[0]
    out = np.zeros((P, m))
    per = bytes_per_example if bytes_per_example is not None else 2 * 8 * A[0].size + 8 * G[0].size * 3
    for p in range(P):
        rows_all = np.flatnonzero(D[p].reshape(m, -1).any(axis=1))
        for sl in batch_chunks(rows_all.size, per):
            rows = rows_all[sl]
            k = rows.size
            a = _pick(A, rows)
            X = np.empty((2 * k,) + A.shape[1:])
            # NOTE: the values of A[rows] + h * D[p][rows] and A[rows] - h * D[p][rows], built in place: an example
            # may be as large as the workspace, and its copies should not be more than these two
            np.multiply(_pick(D[p], rows), h, out=X[k:])
            np.add(a, X[k:], out=X[:k])
            np.subtract(a, X[k:], out=X[k:])
            out[p, rows] = differ(X, _pick(G, rows))
            del X  # before the next copies are allocated: else one wide example is held in four
        _tick(tick, 1)
    return out
