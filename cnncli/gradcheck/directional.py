"""The ``fast`` check: analytical vs numerical derivatives along random directions, and
localizing a disagreement to single elements by bisection.

Each direction costs two forward evaluations however large the tensor, so a
tensor of millions of elements is checked at the price of a few: a gradient
wrong anywhere disagrees along a random direction (with probability 1).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .context import TensorCheck
from .metrics import TOP_OFFENDERS, axes_of, element_fails, gradient_name, relative_error, relative_floor
from .perturbed import MACHINE_EPS
from .results import GradientResult

FAST_DIRECTIONS = 3
#: A failing fast check on a tensor larger than LOCALIZE_FULL_LIMIT bisects at most this many blocks.
LOCALIZE_BLOCKS = 8
#: Elements per slice of the directional check's analytical sums (bounded temporaries).
SLICE_VALUES = 2**20
#: Tensors with more values than this keep their random directions one at a time (see :func:`directions`).
LAZY_DIRECTIONS = 2**22


def directional(t: TensorCheck) -> Tuple[GradientResult, tuple]:
    """Compare ``<grad, d>`` with the central difference along random directions d.

    Directions are uniform in [-1, 1] (so ``max|d| <= 1``, which the kink
    threshold assumes) and zero on excluded elements. The rounding floor of a
    directional value is ``sum |d| * floor``.

    Besides the sums over the whole tensor, each *block* (an example of A_prev,
    an output channel of W or b; see the problems' ``block_ids``) is compared on
    its own, from the same evaluations: one wrong element among a million is
    lost in the whole sum's tolerance but not in its own example's. A block
    that disagrees (:func:`disagree`) fails the check.

    Returns
    -------
    result : GradientResult
    localize : (D, blocks, pairs)
        The directions, the block of each element, and the (direction, block)
        pairs to bisect when the check failed (block -1: the whole direction).
    """
    problem, name, x, grad, h = t.problem, t.name, t.x, t.grad, t.h
    t.tracker.plan(FAST_DIRECTIONS)
    D = directions(t.rng, x.shape, t.excluded)
    blocks = problem.block_ids(name)
    n_blocks = int(blocks.max()) + 1 if blocks.size else 0

    def evaluate(d):
        return problem.directional_blocks(name, d, h, t.tracker.tick)
    # a lazy D is evaluated one direction at a time: only one is drawn (as large as x) at a time
    parts = [evaluate(D)] if isinstance(D, np.ndarray) else [evaluate(D[p][None]) for p in range(FAST_DIRECTIONS)]
    per_block = np.concatenate(parts) / (2 * h)
    # NOTE: the analytical side uses the step actually taken, (x + hd) - (x - hd) as rounded (the
    # problems build their perturbed inputs with the same operations), as the elementwise check does:
    # a step near the data's ulp (--eps 1e-14 on 0..255) otherwise shows rounding as a gradient error.
    # one direction and one slice of elements at a time: the temporaries stay bounded whatever x's size
    a_blk, l1_blk, f_blk = (np.zeros((FAST_DIRECTIONS, n_blocks)) for _ in range(3))
    bid, g, xf = blocks.reshape(-1), grad.reshape(-1), x.reshape(-1)
    fl = None if t.floor is None else t.floor.reshape(-1)
    for p in range(FAST_DIRECTIONS):
        dp = D[p].reshape(-1)  # drawn once per direction
        for lo in range(0, x.size, SLICE_VALUES):
            sl = slice(lo, lo + SLICE_VALUES)
            flat = ((xf[sl] + h * dp[sl]) - (xf[sl] - h * dp[sl])) / (2 * h)
            terms = flat * g[sl]
            a_blk[p] += np.bincount(bid[sl], terms, n_blocks)
            l1_blk[p] += np.bincount(bid[sl], np.abs(terms), n_blocks)
            if fl is not None:
                f_blk[p] += np.bincount(bid[sl], np.abs(flat) * fl[sl], n_blocks)
    r, bad_blocks = block_verdict(per_block, a_blk, l1_blk, f_blk, name=name, shape=x.shape,
                                  n_excluded=t.n_excluded, tol=t.tol)
    return r, (D, blocks, bad_blocks)


def block_verdict(per_block, a_blk, l1_blk, f_blk, *, name: str, shape, n_excluded: int, tol: float):
    """The fast check's result from its per-(direction, block) sums, and the pairs to bisect when it failed.

    ``per_block`` holds the numerical directional derivatives, ``a_blk`` the
    analytical ones, ``l1_blk`` the sums of their terms' magnitudes and ``f_blk``
    their rounding floors, each (FAST_DIRECTIONS, blocks), of input ``name`` of ``shape``.
    """
    numerical = per_block.sum(axis=1)
    analytical = a_blk.sum(axis=1)
    dir_floor = f_blk.sum(axis=1)
    err = np.abs(analytical - numerical)
    rel = relative_error(analytical, numerical)
    rel_floor = relative_floor(dir_floor, analytical, numerical)
    failing = int(np.sum(element_fails(err, numerical, tol) & ~(err <= dir_floor)))
    bad_blocks = np.argwhere(disagree(a_blk, per_block, l1_blk, f_blk, tol))  # (direction, block) pairs
    threshold = max(tol, rel_floor)
    r = GradientResult(gradient_name(name), tuple(shape), axes_of(name, len(shape)), "fast",
                       rel, float(err.max()), 0, FAST_DIRECTIONS, n_excluded, 0,
                       bool(rel <= threshold and failing == 0 and len(bad_blocks) == 0),
                       rounding_floor=rel_floor, tolerance=threshold)
    if not len(bad_blocks):  # the whole sums disagree, no single block does: bisect the worst direction whole
        bad_blocks = np.array([[int(np.argmax(err)), -1]])
    return r, bad_blocks


def directions(rng, shape, excluded):
    """The ``FAST_DIRECTIONS`` random directions: uniform in [-1, 1], zero on ``excluded``.

    Small tensors get an array (FAST_DIRECTIONS,) + shape. A tensor of more than
    ``LAZY_DIRECTIONS`` values gets a :class:`LazyDirections` instead: the same
    values, drawn again from the generator's saved state when one is needed, so
    only one direction is in memory at a time (they are as large as the input).
    """
    n = int(np.prod(shape))
    advance = getattr(rng.bit_generator, "advance", None)  # not every bit generator can jump ahead
    if n <= LAZY_DIRECTIONS or advance is None:
        D = rng.uniform(-1.0, 1.0, size=(FAST_DIRECTIONS,) + tuple(shape))
        D[:, excluded] = 0.0
        return D
    lazy = LazyDirections(rng.bit_generator, shape, excluded)
    advance(FAST_DIRECTIONS * n)  # the generator moves on exactly as if all had been drawn (one draw per value)
    return lazy


class LazyDirections:
    """``D[p]`` of :func:`directions`, drawn on demand from a saved generator state."""

    def __init__(self, bit_generator, shape, excluded):
        self.kind, self.state = type(bit_generator), bit_generator.state
        self.shape, self.excluded = (FAST_DIRECTIONS,) + tuple(shape), excluded

    def __getitem__(self, p: int) -> np.ndarray:
        bits = self.kind()
        bits.state = self.state
        n = int(np.prod(self.shape[1:]))
        bits.advance(int(p) * n)
        d = np.random.Generator(bits).uniform(-1.0, 1.0, size=self.shape[1:])
        d[self.excluded] = 0.0
        return d


def disagree(a, n, l1, floor, tol) -> np.ndarray:
    """Where directional values ``a`` (analytical) and ``n`` (numerical) disagree beyond rounding.

    The allowance is the larger of: ``tol`` relative to the values, the numerical
    rounding ``floor``, and the float64 rounding of the contraction itself
    (``1000 * eps_machine`` times the sum of the terms' magnitudes ``l1``, so a
    sum cancelling to nearly 0 is not a disagreement).
    """
    err = np.abs(a - n)
    allow = np.maximum(np.maximum(tol * (np.abs(a) + np.abs(n)), floor), 1e3 * MACHINE_EPS * l1)
    return ~(err <= allow)


def localize(t: TensorCheck, D, blocks, pairs) -> np.ndarray:
    """Flat indices of failing elements found by bisecting the disagreeing (direction, block) pairs.

    At most ``LOCALIZE_BLOCKS`` blocks, ``TOP_OFFENDERS`` elements each: enough to
    show where the gradient is wrong at ``O(log N)`` evaluations per element.
    """
    found: list = []
    done = set()
    bid = blocks.reshape(-1)
    for p, blk in pairs:
        if blk in done or len(done) >= LOCALIZE_BLOCKS:
            continue
        done.add(blk)
        d = D[p].reshape(-1)
        support = np.flatnonzero((d != 0) & ((bid == blk) if blk >= 0 else True))
        found.extend(_bisect(t, d, support, TOP_OFFENDERS))
    return np.unique(np.asarray(found, dtype=np.int64))


def _bisect(t: TensorCheck, d, support, limit) -> list:
    """Flat indices of single elements whose directional check along ``d`` disagrees.

    ``support`` (flat indices, all in one block) is known to disagree. It is split
    in halves, both evaluated in one call (two directions, each nonzero only on
    its half: two forward evaluations of the block); halves that disagree are
    split again, down to single elements: about ``2 log2(len(support))``
    evaluations per failing element. Stops after ``limit`` elements.
    """
    x, h = t.x, t.h
    found: list = []
    stack = [np.asarray(support, dtype=np.int64)]
    fl = None if t.floor is None else t.floor.reshape(-1)
    g = t.grad.reshape(-1)
    while stack and len(found) < limit:
        s = stack.pop()
        if s.size == 1:
            found.append(int(s[0]))
            continue
        halves = (s[:s.size // 2], s[s.size // 2:])
        Dh = np.zeros((2, x.size))
        for k, half in enumerate(halves):
            Dh[k, half] = d[half]
        Dh = Dh.reshape((2,) + x.shape)
        t.tracker.plan(2)
        numerical = t.problem.directional(t.name, Dh, h, t.tracker.tick) / (2 * h)
        taken = (((x[None] + h * Dh) - (x[None] - h * Dh)) / (2 * h)).reshape(2, -1)
        for k, half in enumerate(halves):
            terms = taken[k, half] * g[half]
            f = 0.0 if fl is None else float(np.sum(np.abs(taken[k, half]) * fl[half]))
            if disagree(np.sum(terms), numerical[k], np.sum(np.abs(terms)), f, t.tol):
                stack.append(half)
    return found
