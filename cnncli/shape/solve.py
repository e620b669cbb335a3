"""Solving ``cnncli shape --target``: which stride and padding give a wanted output size.

The per-axis search lives in :func:`cnncli.shape.design.iter_pads`; this
module pairs the axes, ranks the answers and, when there is none, finds the
nearest sizes the layer does reach. Every search visits only strides and pad
totals that can give the target, so any size is answered without a loop over
sizes; listings are capped at :data:`MAX_SOLUTIONS` rows (the result says so).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..engine import geometry as geo
from . import design
from ..engine.geometry import Pads, Pair
from ..errors import HyperparameterError
from ..io.text import read_pair
from .limits import check_digits, number_text
from .stack import Dims, LayerSpec

#: Rows a --target listing shows at most; more are counted as "more not shown".
MAX_SOLUTIONS = 100
#: Strides the stride search tries at most past the first that can reach the target.
MAX_STRIDES = 500


@dataclass(frozen=True)
class Solution:
    """A stride and padding that give the target size; ``unread`` counts the input rows and cols it leaves unread."""

    stride: Pair
    pads: Pads
    output: Pair
    unread: Pair
    output_padding: Optional[Pair] = None  # tconv only


@dataclass(frozen=True)
class TargetResult:
    """Answers to "which stride and pad turn this input into that size?" for one layer.

    ``complete`` is False when more solutions exist than are listed (or the search
    stopped at its budget); ``nearest`` lists, when there is no solution, the
    closest output sizes the same layer does reach (each verified by the solver).
    """

    input: Dims
    target: Pair
    spec: LayerSpec
    stride_fixed: bool
    solutions: List[Solution]
    complete: bool = True
    nearest: Tuple[Pair, ...] = ()

    def to_dict(self) -> dict:
        """``{"input", "target", "kind", "f", "dilation", "stride_fixed", "solutions"}``: the ``--target`` document.

        A partial listing adds ``"complete": false``; no solution adds ``"nearest"``.
        """
        doc = {
            "input": self.input.as_list(), "target": list(self.target), "kind": self.spec.kind,
            "f": list(self.spec.f), "dilation": list(self.spec.dilation), "stride_fixed": self.stride_fixed,
            "solutions": [_solution_dict(s) for s in self.solutions],
        }
        if not self.complete:
            doc["complete"] = False
        if not self.solutions:
            doc["nearest"] = [list(size) for size in self.nearest]
        return doc


def _solution_dict(s: Solution) -> dict:
    d = {"stride": list(s.stride), "pads": list(s.pads), "output": list(s.output)}
    if s.output_padding is not None:  # tconv: what PyTorch's ConvTranspose2d takes, and no windows to leave unread
        d["output_padding"] = list(s.output_padding)
    else:
        d["unread"] = list(s.unread)
    return d


def _solution(spec: LayerSpec, dims: Dims, stride: Pair, h: Tuple[int, int], w: Tuple[int, int]) -> Solution:
    pads = (h[0], h[1], w[0], w[1])
    out, unread = [], []
    for a, (n, (before, _)) in enumerate(zip((dims.h, dims.w), (h, w))):
        n_out = geo.output_length(n, spec.f[a], stride[a], spec.dilation[a], pads[2 * a], pads[2 * a + 1],
                                  spec.ceil_mode)
        out.append(n_out)
        unread.append(sum(design.input_coverage(n, spec.f[a], stride[a], spec.dilation[a], before, n_out)))
    return Solution(stride, pads, (out[0], out[1]), (unread[0], unread[1]))


def _key(s: Solution):
    return sum(s.pads), abs(s.pads[1] - s.pads[0]) + abs(s.pads[3] - s.pads[2]), s.stride


def _stride_range(spec: LayerSpec, n: int, a: int, t: int, largest: int) -> Tuple[int, int]:
    """Strides along axis ``a`` whose pad totals can give ``t`` outputs: from ``iter_pads``' bounds."""
    eff = geo.effective_size(spec.f[a], spec.dilation[a])
    lo, hi = max(1, -(-(n - eff + 1) // t)), largest  # t*s - 1 + eff - n >= 0: the largest total reaches t
    c = t - (2 if spec.ceil_mode else 1)
    if c > 0:  # (t-c)*s + eff - n <= 2*(eff-1): the smallest total does not overshoot t
        hi = min(hi, (eff + n - 2) // c)
    return lo, hi


def _lowest_rank(spec: LayerSpec, n: int, a: int, t: int, s: int) -> tuple:
    """A lower bound of the rank (total pad, asymmetry, stride) on axis ``a`` of every stride ``s`` or larger."""
    c = t - (2 if spec.ceil_mode else 1)
    # The smallest total grows with the stride when c >= 0 (else it shrinks: no bound but 0).
    least = max(0, c * s + geo.effective_size(spec.f[a], spec.dilation[a]) - n) if c >= 0 else 0
    return least, least % 2, s  # an odd total cannot be split evenly


def _axis_rank(entry: tuple) -> tuple:
    s, (before, after) = entry
    return before + after, abs(after - before), s


def _axis_strides(spec: LayerSpec, dims: Dims, target: Pair, a: int,
                  budget: design.Budget) -> Tuple[List[tuple], List[tuple], bool]:
    """Along axis ``a``, each stride's smallest padding and its smallest symmetric one, as ``(stride, pads)``.

    At most MAX_SOLUTIONS + 1 of each, the best first; False when strides were left unvisited.
    """
    n, t = (dims.h, dims.w)[a], target[a]
    largest = max(geo.effective_size(spec.f[k], spec.dilation[k]) for k in (0, 1))
    lo, hi = _stride_range(spec, n, a, t, largest)
    keep = MAX_SOLUTIONS + 1
    firsts: List[tuple] = []
    symmetric: List[tuple] = []
    axis = lambda s, **kw: design.iter_pads(n, spec.f[a], s, spec.dilation[a], t, spec.ceil_mode,  # noqa: E731
                                            budget=budget, **kw)
    for s in range(lo, hi + 1):
        if len(firsts) >= 2 * keep or len(symmetric) >= 2 * keep:
            firsts, symmetric = sorted(firsts, key=_axis_rank)[:keep], sorted(symmetric, key=_axis_rank)[:keep]
            # Later strides need at least this much padding: once both lists' last entries rank before
            # anything they could give, the lists are final (there may be more after them).
            bound = _lowest_rank(spec, n, a, t, s)
            if all(len(x) == keep and _axis_rank(x[-1]) < bound for x in (firsts, symmetric) if x):
                return firsts, symmetric, False
        if s - lo >= MAX_STRIDES or budget.exhausted:
            return sorted(firsts, key=_axis_rank)[:keep], sorted(symmetric, key=_axis_rank)[:keep], False
        first = next(axis(s), None)
        if first is None:
            continue
        firsts.append((s, first))
        sym = next(axis(s, symmetric=True), None)
        if sym is not None:
            symmetric.append((s, sym))
    return sorted(firsts, key=_axis_rank)[:keep], sorted(symmetric, key=_axis_rank)[:keep], True


def _candidates(spec: LayerSpec, dims: Dims, target: Pair, stride_fixed: bool,
                budget: design.Budget) -> Tuple[List[tuple], bool]:
    """The listing as (stride, h pads, w pads), at most MAX_SOLUTIONS in order, and whether it is complete."""
    axis = lambda s, a, **kw: design.iter_pads((dims.h, dims.w)[a], spec.f[a], s[a], spec.dilation[a],  # noqa: E731
                                               target[a], spec.ceil_mode, budget=budget, **kw)
    same_axes = dims.h == dims.w and target[0] == target[1] and spec.f[0] == spec.f[1] \
        and spec.dilation[0] == spec.dilation[1]
    found: List[tuple] = []  # (stride, h pads, w pads), ranked before any Solution is built
    rank = lambda c: _key(Solution(c[0], c[1] + c[2], (0, 0), (0, 0)))  # noqa: E731
    complete = True
    if stride_fixed:
        s = spec.stride
        if same_axes and s[0] == s[1]:
            found = [(s, p, p) for p in itertools.islice(axis(s, 0), MAX_SOLUTIONS + 1)]
        else:
            hs, ws = (list(itertools.islice(axis(s, a), MAX_SOLUTIONS + 1)) for a in (0, 1))
            found = [(s, h, w) for h in hs for w in ws]
    else:
        # NOTE: the axes are independent (a stride and padding per axis): each axis lists its strides'
        # smallest paddings, and the pairs are their combinations. A pair among the best MAX_SOLUTIONS
        # has each half among its axis's best MAX_SOLUTIONS + 1 (a better half makes a better pair).
        # Each axis gets the whole budget (a dilation far larger than the input rejects most candidates
        # of both); a square problem is searched once.
        budgets = (design.Budget(budget.left), design.Budget(budget.left))
        fh, sh, done_h = _axis_strides(spec, dims, target, 0, budgets[0])
        fw, sw, done_w = (fh, sh, done_h) if same_axes else _axis_strides(spec, dims, target, 1, budgets[1])
        budget.exhausted = budget.exhausted or any(b.exhausted for b in budgets)
        complete = done_h and done_w
        # PyTorch's Conv2d pads symmetrically: the smallest symmetric pads are offered too.
        pairs = {((h[0], w[0]), h[1], w[1]) for h in fh for w in fw}
        pairs |= {((h[0], w[0]), h[1], w[1]) for h in sh for w in sw}
        found = list(pairs)
    found.sort(key=rank)
    complete = complete and len(found) <= MAX_SOLUTIONS and not budget.exhausted
    return found[:MAX_SOLUTIONS], complete


def _ends(spec: LayerSpec, n: int, a: int, stride: int) -> Tuple[int, int]:
    """Smallest and largest output size along axis ``a`` for ``stride``, over pads below the window."""
    # NOTE: stride s gives floor((n + T - eff)/s) + 1 outputs for totals 0 <= T <= 2*(eff-1), every
    # size between the ends (ceil mode: up to one more); the ends fall as the stride grows.
    eff = geo.effective_size(spec.f[a], spec.dilation[a])
    return max(1, (n - eff) // stride + 1), (n + eff - 2) // stride + 1 + (1 if spec.ceil_mode else 0)


def _last_stride(ok, lo: int, hi: int) -> Optional[int]:
    """Largest ``s`` in ``[lo, hi]`` with ``ok(s)`` for a predicate true on a prefix, or None."""
    if lo > hi or not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _reachable_near(spec: LayerSpec, dims: Dims, target: Pair, stride_fixed: bool) -> Tuple[Pair, ...]:
    """The output sizes closest to ``target`` that the solver confirms (a few, nearest first)."""
    sizes = (dims.h, dims.w)
    largest = max(geo.effective_size(spec.f[a], spec.dilation[a]) for a in (0, 1))
    options = []
    for a, n in enumerate(sizes):  # the axes are independent: each its strides and the sizes they reach
        t = target[a]
        if stride_fixed:
            strides = {spec.stride[a]}
        else:
            # Sizes above t: the largest stride whose range still reaches above t has the lowest start;
            # below t: the smallest stride whose range starts below t has the highest end.
            above = _last_stride(lambda s: _ends(spec, n, a, s)[1] > t, 1, largest)
            below = _last_stride(lambda s: _ends(spec, n, a, s)[0] >= t, 1, largest)
            strides = {s for s in (above, 1 if below is None else below + 1) if s is not None and s <= largest}
        reach = set()
        for s in strides:
            low, high = _ends(spec, n, a, s)
            reach |= {min(max(v, low), high) for v in (t - 1, t, t + 1)}
        options.append(reach)
    candidates = {(h, w) for h in options[0] for w in options[1] if (h, w) != tuple(target)}
    ranked = sorted(candidates, key=lambda p: (abs(p[0] - target[0]) + abs(p[1] - target[1]), p))
    confirmed = []
    for size in ranked[:6]:  # a few tries, each a small search: the nearest sizes are a hint
        if len(confirmed) < 2 and _candidates(spec, dims, size, stride_fixed, design.Budget(500))[0]:
            confirmed.append(size)
    return tuple(confirmed)


def solve_target(spec: LayerSpec, dims: Dims, target, stride_fixed: bool) -> TargetResult:
    """Strides and pads that make ``spec``'s window turn ``dims`` into ``target`` (``H`` or ``HxW``).

    With ``stride_fixed``, every padding for ``spec.stride`` (symmetric and
    asymmetric, each side below the dilated window); otherwise, for each stride
    from 1 to the dilated window, its smallest padding (and its smallest
    symmetric one). Smallest total padding first; at most :data:`MAX_SOLUTIONS`
    rows. With no solution, ``nearest`` holds the closest sizes that have one.

    Raises
    ------
    HyperparameterError
        A target that is not one or two positive integers.
    """
    target = number_text(target, "--target", HyperparameterError)
    check_digits(target, "--target", HyperparameterError)
    target = read_pair(target, "--target")
    if spec.kind == "tconv":
        return _solve_tconv(spec, dims, target, stride_fixed)
    listing, complete = _candidates(spec, dims, target, stride_fixed, design.Budget())
    found = [_solution(spec, dims, *c) for c in listing]
    nearest = () if found else _reachable_near(spec, dims, target, stride_fixed)
    return TargetResult(dims, target, spec, stride_fixed, found, complete, nearest)


def tconv_axis(n_in: int, f: int, stride: int, dilation: int, n_target: int) -> List[Tuple[int, int]]:
    """``(padding, output_padding)`` pairs that make a ConvTranspose2d axis give ``n_target``, smallest first.

    PyTorch pads both sides alike (``padding`` crops ``p`` from each end); ``p`` runs
    from 0 to ``dilation*(f-1)`` (beyond, the equivalent convolution over the
    stride-dilated input would need negative padding) and ``output_padding`` below
    ``max(stride, dilation)``, as PyTorch requires. At most ``MAX_SOLUTIONS + 1``.

    >>> tconv_axis(4, 4, 2, 1, 8)     # (4-1)*2 - 2p + 3 + op + 1 = 8: p=1, op=0
    [(1, 0)]
    """
    reach = dilation * (f - 1)
    # (n-1)*s - 2p + reach + op + 1 = n_target  <=>  op = n_target - 1 - reach - (n-1)*s + 2p
    base = n_target - 1 - reach - (n_in - 1) * stride
    limit = max(stride, dilation)
    found = []
    p = max(0, -(-(-base) // 2))  # the smallest p with op = base + 2p >= 0
    while p <= reach and base + 2 * p < limit and len(found) <= MAX_SOLUTIONS:
        found.append((p, base + 2 * p))
        p += 1
    return found


def _tconv_strides(spec: LayerSpec, n: int, a: int, t: int) -> Tuple[List[tuple], bool]:
    """Along axis ``a``, each stride's smallest ``(padding, output_padding)`` giving ``t``, as ``(stride, pair)``.

    At most MAX_SOLUTIONS + 1, the best first; False when strides were left unvisited.
    """
    d, f = spec.dilation[a], spec.f[a]
    reach = d * (f - 1)
    # (n-1)*s grows with s: only strides with (n-1)*s within reach of the target can give it.
    hi = -(-(t + reach) // (n - 1)) if n > 1 else MAX_STRIDES
    lo = max(1, (t - d * f - 1) // (n + 1))
    # NOTE: with k(s) = (n-1)*s + d*(f-1) + 1 - t = 2p - op, the strides whose k <= 0 need no padding,
    # and the less output padding the larger they are; above them the padding grows with s. The best
    # entries therefore lie around the largest stride with k <= 0: the search starts MAX_SOLUTIONS + 1
    # strides below it (closed form, whatever the target's size). With n = 1 every stride gives the
    # same size: the smallest strides come first.
    start = max(lo, (t - reach - 1) // (n - 1) - MAX_SOLUTIONS - 1) if n > 1 else lo
    complete = start == lo and n > 1
    found = []
    for s in range(start, hi + 1):
        if s - start >= MAX_STRIDES:
            complete = False
            break
        pairs = tconv_axis(n, f, s, d, t)
        if pairs:
            found.append((s, pairs[0]))
    found.sort(key=lambda e: (2 * e[1][0], e[1][1], e[0]))
    return found[:MAX_SOLUTIONS + 1], complete and len(found) <= MAX_SOLUTIONS + 1


def _solve_tconv(spec: LayerSpec, dims: Dims, target: Pair, stride_fixed: bool,
                 nearest: bool = True) -> TargetResult:
    """Strides, paddings and output paddings of a ConvTranspose2d that give ``target`` (and, if none, the nearest)."""
    sizes = (dims.h, dims.w)
    axis = lambda s, a: tconv_axis(sizes[a], spec.f[a], s, spec.dilation[a], target[a])  # noqa: E731
    rank = lambda c: (2 * (c[1][0] + c[2][0]), c[1][1] + c[2][1], c[0])  # noqa: E731  pad, then op, then stride
    found, complete = [], True
    if stride_fixed:
        hs, ws = axis(spec.stride[0], 0), axis(spec.stride[1], 1)
        found = [(spec.stride, h, w) for h in hs for w in ws]
    else:
        # The axes are independent (each its own stride): each lists its best strides, the pairs combine them;
        # a pair among the best MAX_SOLUTIONS has each half among its axis's best MAX_SOLUTIONS + 1.
        (hs, done_h), (ws, done_w) = (_tconv_strides(spec, sizes[a], a, target[a]) for a in (0, 1))
        found = [((h[0], w[0]), h[1], w[1]) for h in hs for w in ws]
        complete = done_h and done_w
    found.sort(key=rank)
    complete = complete and len(found) <= MAX_SOLUTIONS
    solutions = [Solution(c[0], (c[1][0], c[1][0], c[2][0], c[2][0]), target, (0, 0), (c[1][1], c[2][1]))
                 for c in found[:MAX_SOLUTIONS]]
    return TargetResult(dims, target, spec, stride_fixed, solutions, complete, _tconv_nearest(spec, dims, target,
                                                                                            stride_fixed)
                        if not solutions and nearest else ())


def _tconv_nearest(spec: LayerSpec, dims: Dims, target: Pair, stride_fixed: bool) -> Tuple[Pair, ...]:
    """The closest sizes a tconv with this f (and stride) reaches, each confirmed by the solver."""
    options = []
    for a, n in enumerate((dims.h, dims.w)):  # the axes are independent: each its strides and sizes
        if stride_fixed:
            strides = {spec.stride[a]}
        else:  # the strides whose output ranges lie around the target: (n-1)*s close to it
            strides = {max(1, target[a] // max(n - 1, 1) + k) for k in (-1, 0, 1, 2)}
        d, f = spec.dilation[a], spec.f[a]
        reach = d * (f - 1)
        near = set()
        for s in strides:
            low = (n - 1) * s - reach + 1  # p = reach, op = 0
            high = (n - 1) * s + reach + max(s, d)  # p = 0, op at its largest
            near.add(min(max(target[a], max(low, 1)), high))
        options.append(near)
    candidates = {(h, w) for h in options[0] for w in options[1]} - {tuple(target)}
    ranked = sorted(candidates, key=lambda p: (abs(p[0] - target[0]) + abs(p[1] - target[1]), p))
    confirmed = [size for size in ranked if _solve_tconv(spec, dims, size, stride_fixed, nearest=False).solutions]
    return tuple(confirmed[:2])
