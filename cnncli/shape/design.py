"""Design arithmetic of ``cnncli shape``: receptive field, input coverage, cost, solving for a size.

Everything works along one axis, on Python ints, built on the output-size and
padding formulas of :mod:`cnncli.engine.geometry`.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Iterator, Optional, Tuple

from ..engine.geometry import Pair, axis_sees_input, effective_size, floor_sum, output_length


def receptive_field_step(rf: int, jump: int, start: Fraction, f: int, stride: int, dilation: int,
                         pad_before: int) -> Tuple[int, int, Fraction]:
    """Receptive field after one more window layer, along one axis.

    Parameters
    ----------
    rf, jump, start : int, int, Fraction
        Before the layer: receptive-field size in input pixels, distance in input
        pixels between neighbouring features, and the input coordinate of the centre
        of the first feature's receptive field. The network input is ``(1, 1, 0)``.
    f, stride, dilation, pad_before : int
        The layer's window, step, dilation and leading padding.

    Returns
    -------
    (int, int, Fraction)
        ``rf + (dilation*(f-1)) * jump``, ``jump * stride`` and
        ``start + (dilation*(f-1)/2 - pad_before) * jump``. The first feature's
        window reaches from ``start - (rf-1)/2`` to ``start + (rf-1)/2``; negative
        coordinates lie in the padding.

    Examples
    --------
    >>> receptive_field_step(1, 1, 0, 3, 2, 1, 1)
    (3, 2, Fraction(0, 1))
    >>> receptive_field_step(3, 2, 0, 2, 2, 1, 0)
    (5, 4, Fraction(1, 1))
    """
    reach = effective_size(f, dilation) - 1
    # NOTE: exact (a Fraction, a multiple of 1/2): a float would lose digits past 2**53, and overflow past 1e308
    return rf + reach * jump, jump * stride, Fraction(start) + (Fraction(reach, 2) - pad_before) * jump


def last_tap(f: int, stride: int, dilation: int, before: int, n_out: int) -> int:
    """Input index read by the last tap of the last window (negative: in the leading padding)."""
    return (n_out - 1) * stride - before + effective_size(f, dilation) - 1


def input_coverage(n_in: int, f: int, stride: int, dilation: int, before: int,
                   n_out: int) -> Tuple[int, int]:
    """Input rows (or columns) that no window tap reads, along one axis.

    Closed form for any sizes: rows read are counted with floor sums, never marked
    one by one (see :func:`rows_read_below`).

    Parameters
    ----------
    n_in, f, stride, dilation, before, n_out : int
        Input size, window, step, dilation, leading padding and the number of
        windows (from :func:`output_length`).

    Returns
    -------
    trailing : int
        Rows after the last row any tap reads: typically the stride "drops" them,
        and more trailing padding reads them (:func:`cover_padding`).
    skipped : int
        Unread rows before that, between windows (a stride larger than the window)
        or between the taps of a dilated window; padding cannot fix these.

    Examples
    --------
    >>> input_coverage(6, 3, 2, 1, 0, 2)    # windows read rows 0..4: row 5 is dropped
    (1, 0)
    >>> input_coverage(6, 1, 2, 1, 0, 3)    # 1-wide windows every 2 rows skip 1, 3, 5
    (1, 2)
    """
    if dilation == 1 and stride <= f:  # contiguous windows that overlap or touch: one run of rows
        return n_in - min(max(last_tap(f, stride, 1, before, n_out) + 1, 0), n_in), 0
    if n_out <= 0:
        return n_in, 0
    g = math.gcd(stride, dilation)
    s1, d1 = stride // g, dilation // g
    u_first, u_end = -(-before // g), -(-(before + n_in) // g)  # rows 0..n_in-1 as u (see rows_read_below)
    below_end = _distinct_below(u_end, n_out, f, s1, d1)
    total = below_end - _distinct_below(u_first, n_out, f, s1, d1)
    if total == 0:
        return n_in, 0
    # The last row read is g*(u-1) - before for the smallest u below which every read u lies.
    lo, hi = u_first + 1, u_end
    while lo < hi:
        mid = (lo + hi) // 2
        if _distinct_below(mid, n_out, f, s1, d1) == below_end:
            hi = mid
        else:
            lo = mid + 1
    end = g * (lo - 1) - before + 1
    return n_in - end, end - total


def rows_read_below(x: int, n_in: int, f: int, stride: int, dilation: int, before: int, n_out: int) -> int:
    """How many distinct input rows ``0 <= r < min(x, n_in)`` some tap reads, in O(log) steps.

    Window ``p``'s tap ``k`` reads row ``p*stride + k*dilation - before``.

    >>> rows_read_below(6, 6, 1, 2, 1, 0, 3)   # rows 0, 2, 4
    3
    """
    x = min(x, n_in)
    if x <= 0 or n_out <= 0:
        return 0
    g = math.gcd(stride, dilation)
    # NOTE: rows are g*u - before for the distinct u = p*s1 + k*d1 (s1, d1 coprime); row r < x <=> u < ceil((before+x)/g).
    s1, d1 = stride // g, dilation // g
    return (_distinct_below(-(-(before + x) // g), n_out, f, s1, d1)
            - _distinct_below(-(-before // g), n_out, f, s1, d1))


def _distinct_below(u_max: int, n_p: int, n_k: int, s1: int, d1: int) -> int:
    """Distinct ``p*s1 + k*d1 < u_max`` over ``0 <= p < n_p``, ``0 <= k < n_k`` (``gcd(s1, d1) == 1``)."""
    # NOTE: (p, k) and (p + d1, k - s1) give the same value; counting each value once at its
    # smallest k keeps (p, k) when k < s1 or p >= n_p - d1. For each k the p's form a range.
    total = 0
    for k_lo, k_hi, p_lo in ((0, min(n_k, s1), 0), (s1, n_k, max(0, n_p - d1))):
        if k_lo >= k_hi or p_lo >= n_p:
            continue
        # p < (u_max - k*d1)/s1, i.e. p <= q(k) = floor((u_max - 1 - k*d1) / s1), non-increasing in k.
        k_full = min(k_hi, max(k_lo, (u_max - 1 - (n_p - 1) * s1) // d1 + 1))  # q(k) >= n_p - 1 below this
        k_some = min(k_hi, max(k_full, (u_max - 1 - p_lo * s1) // d1 + 1))  # q(k) >= p_lo below this
        total += (k_full - k_lo) * (n_p - p_lo)
        n = k_some - k_full
        total += floor_sum(n, s1, -d1, u_max - 1 - k_full * d1) + n * (1 - p_lo)
    return total


def cover_padding(n_in: int, f: int, stride: int, dilation: int, before: int, after: int,
                  ceil_mode: bool = False) -> int:
    """Smallest extra trailing (bottom/right) padding after which a window reads the last input row.

    Returns 0 when the last row is read already, and also when no amount of
    trailing padding would read it (a dilation and stride whose taps step over it).
    Closed form: the first window that can read the row is solved for, then the
    padding that brings it in.

    Examples
    --------
    >>> cover_padding(6, 3, 2, 1, 0, 0)     # 6 rows, 3x3 stride 2: pad 1 more at the bottom
    1
    >>> cover_padding(7, 3, 2, 1, 0, 0)
    0
    """
    window = first_window_reading(n_in - 1, f, stride, dilation, before)
    if window is None:
        return 0

    def reads(extra: int) -> bool:
        return output_length(n_in, f, stride, dilation, before, after + extra, ceil_mode) > window

    # NOTE: the window count grows with the padding (also in ceil mode), and that window
    # starts at or before the last row, so an effective window's worth of padding reaches it.
    lo, hi = 0, effective_size(f, dilation) + stride
    if reads(lo) or not reads(hi):
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reads(mid):
            hi = mid
        else:
            lo = mid
    return hi


def first_window_reading(row: int, f: int, stride: int, dilation: int, before: int) -> Optional[int]:
    """Index of the first window with a tap on input ``row`` (windows unbounded), or None if none can.

    Solves ``p*stride + k*dilation = row + before`` for the largest tap ``k < f``.

    >>> first_window_reading(5, 3, 2, 1, 0)   # window p reads rows 2p..2p+2: window 2 reads row 5
    2
    """
    target = row + before
    if target < 0:
        return None
    g = math.gcd(stride, dilation)
    if target % g:
        return None
    m = stride // g
    k0 = (target // g) * pow(dilation // g, -1, m) % m if m > 1 else 0  # k*dilation = target (mod stride)
    k_max = min(f - 1, target // dilation)
    k = k_max - (k_max - k0) % m
    return None if k < 0 else (target - k * dilation) // stride


#: Candidate paddings one ``--target`` search may check before it stops and says the listing is partial.
SEARCH_BUDGET = 5_000


class Budget:
    """How many more candidates a search may check; ``exhausted`` once it ran out."""

    def __init__(self, left: int = SEARCH_BUDGET):
        self.left, self.exhausted = left, False

    def take(self) -> bool:
        """Spend one check; False (and ``exhausted``) when none is left."""
        if self.left <= 0:
            self.exhausted = True
            return False
        self.left -= 1
        return True


def iter_pads(n_in: int, f: int, stride: int, dilation: int, n_target: int, ceil_mode: bool = False,
              symmetric: bool = False, budget: Optional[Budget] = None) -> Iterator[Tuple[int, int]]:
    """The ``(before, after)`` paddings that give ``n_target`` outputs along one axis, in order, lazily.

    Each side is kept below the dilated window (a larger pad would add windows
    that read nothing but padding), and every window must read real input. Order:
    smallest total first; for equal totals the symmetric pair, then the one with
    the extra pixel after (TensorFlow's ``same`` split), then before.
    ``symmetric`` yields only ``before == after``. Only totals that can give
    ``n_target`` are visited, so any size is answered without a loop over sizes;
    ``budget`` bounds the candidates checked.

    >>> list(iter_pads(28, 3, 2, 1, 14))
    [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0)]
    """
    eff = effective_size(f, dilation)
    # NOTE: with each side below the window, floor mode gives floor((n_in + T - eff)/stride) + 1 for
    # total T; ceil mode one more or that (a last window starting in the padding needs after >= eff).
    low = (n_target - (2 if ceil_mode else 1)) * stride + eff - n_in
    high = n_target * stride - 1 + eff - n_in
    for total in range(max(low, 0), min(high, 2 * (eff - 1)) + 1):
        smallest = max(0, total - eff + 1)  # the other side stays below the window
        for diff in range(total % 2, total - 2 * smallest + 1, 2):
            if symmetric and diff:
                break
            before = (total - diff) // 2
            for pair in ((before, total - before),) if not diff else ((before, total - before), (total - before, before)):
                if budget is not None and not budget.take():
                    return
                if dilation > n_in and -pair[0] % dilation >= n_in:
                    continue  # the first window's taps step over the input: a cheap test before the full one
                n_out = output_length(n_in, f, stride, dilation, pair[0], pair[1], ceil_mode)
                if n_out == n_target and axis_sees_input(n_in, f, stride, dilation, pair[0], n_out):
                    yield pair


def solve_pads(n_in: int, f: int, stride: int, dilation: int, n_target: int,
               ceil_mode: bool = False, limit: Optional[int] = None, budget: Optional[Budget] = None) -> list:
    """Every ``(before, after)`` padding that gives ``n_target`` outputs along one axis (the first ``limit``).

    See :func:`iter_pads` for the rules and the order.

    Returns
    -------
    list of (int, int)
        Smallest total first; for equal totals the symmetric pair, then the one with
        the extra pixel after (TensorFlow's ``same`` split), then before.

    Examples
    --------
    >>> solve_pads(28, 3, 2, 1, 14)
    [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0)]
    >>> solve_pads(28, 3, 1, 1, 28)
    [(1, 1), (0, 2), (2, 0)]
    """
    return list(itertools.islice(iter_pads(n_in, f, stride, dilation, n_target, ceil_mode, budget=budget), limit))


def conv_param_count(kernel: Pair, c_in: int, c_out: int, groups: int = 1, bias: bool = True) -> int:
    """Weights ``kh*kw*(c_in/groups)*c_out`` plus ``c_out`` biases.

    >>> conv_param_count((3, 3), 3, 8)
    224
    """
    return kernel[0] * kernel[1] * (c_in // groups) * c_out + (c_out if bias else 0)


def conv_macs(out_hw: Pair, kernel: Pair, c_in: int, c_out: int, groups: int = 1, m: int = 1) -> int:
    """Multiply-accumulates of a convolution forward pass: one per weight per output pixel.

    Every output value is a dot product of ``kh*kw*(c_in/groups)`` pairs; taps that
    land in the padding are counted too (as frameworks and torchinfo do).

    >>> conv_macs((2, 2), (3, 3), 3, 8)
    864
    """
    return m * out_hw[0] * out_hw[1] * c_out * kernel[0] * kernel[1] * (c_in // groups)


def tconv_output_length(n_in: int, f: int, stride: int, dilation: int, before: int, after: int,
                        output_padding: int = 0) -> int:
    """Output size of a transposed convolution along one axis, as PyTorch's ConvTranspose2d computes it.

    ``n_out = (n_in - 1)*stride - before - after + dilation*(f-1) + output_padding + 1``:
    every input pixel scatters a dilated window ``stride`` apart, the padding crops
    the result and the output padding adds rows at the end (``<= 0``: nothing is left).

    >>> tconv_output_length(4, 4, 2, 1, 1, 1)   # DCGAN's 4x4, stride 2, pad 1: doubles
    8
    """
    return (n_in - 1) * stride - before - after + effective_size(f, dilation) + output_padding


def tconv_macs(in_hw: Pair, kernel: Pair, c_in: int, c_out: int, groups: int = 1, m: int = 1) -> int:
    """Multiply-accumulates of a transposed convolution: every input pixel times every weight.

    That is how fvcore counts them (and the work a scatter implementation does,
    outputs later cropped by the padding included).

    >>> tconv_macs((4, 4), (4, 4), 100, 64)
    1638400
    """
    return m * in_hw[0] * in_hw[1] * kernel[0] * kernel[1] * (c_in // groups) * c_out
