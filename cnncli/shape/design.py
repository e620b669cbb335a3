"""Design arithmetic of ``cnncli shape``: receptive field, input coverage, cost, solving for a size.

Everything works along one axis, on Python ints, built on the output-size and
padding formulas of :mod:`cnncli.engine.geometry`.
"""

from __future__ import annotations

from typing import Tuple

from ..engine.geometry import Pair, axis_sees_input, effective_size, output_length


def receptive_field_step(rf: int, jump: int, start: float, f: int, stride: int, dilation: int,
                         pad_before: int) -> Tuple[int, int, float]:
    """Receptive field after one more window layer, along one axis.

    Parameters
    ----------
    rf, jump, start : int, int, float
        Before the layer: receptive-field size in input pixels, distance in input
        pixels between neighbouring features, and the input coordinate of the centre
        of the first feature's receptive field. The network input is ``(1, 1, 0.0)``.
    f, stride, dilation, pad_before : int
        The layer's window, step, dilation and leading padding.

    Returns
    -------
    (int, int, float)
        ``rf + (dilation*(f-1)) * jump``, ``jump * stride`` and
        ``start + (dilation*(f-1)/2 - pad_before) * jump``. The first feature's
        window reaches from ``start - (rf-1)/2`` to ``start + (rf-1)/2``; negative
        coordinates lie in the padding.

    Examples
    --------
    >>> receptive_field_step(1, 1, 0.0, 3, 2, 1, 1)
    (3, 2, 0.0)
    >>> receptive_field_step(3, 2, 0.0, 2, 2, 1, 0)
    (5, 4, 1.0)
    """
    reach = effective_size(f, dilation) - 1
    return rf + reach * jump, jump * stride, start + (reach / 2 - pad_before) * jump


def last_tap(f: int, stride: int, dilation: int, before: int, n_out: int) -> int:
    """Input index read by the last tap of the last window (negative: in the leading padding)."""
    return (n_out - 1) * stride - before + effective_size(f, dilation) - 1


def input_coverage(n_in: int, f: int, stride: int, dilation: int, before: int,
                   n_out: int) -> Tuple[int, int]:
    """Input rows (or columns) that no window tap reads, along one axis.

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
    read = bytearray(n_in)
    for k in range(f):
        first = k * dilation - before  # row that tap k of window 0 reads
        lo = first if first >= 0 else first + (-first + stride - 1) // stride * stride
        hi = min(first + (n_out - 1) * stride + 1, n_in)
        if lo < hi:
            read[lo:hi:stride] = b"\x01" * len(range(lo, hi, stride))
    end = read.rfind(b"\x01") + 1  # one past the last row read; 0 when none is
    return n_in - end, end - sum(read)


def cover_padding(n_in: int, f: int, stride: int, dilation: int, before: int, after: int,
                  ceil_mode: bool = False) -> int:
    """Smallest extra trailing (bottom/right) padding after which a window reads the last input row.

    Returns 0 when the last row is read already, and also when no amount of
    trailing padding would read it (a dilation and stride whose taps step over it).

    Examples
    --------
    >>> cover_padding(6, 3, 2, 1, 0, 0)     # 6 rows, 3x3 stride 2: pad 1 more at the bottom
    1
    >>> cover_padding(7, 3, 2, 1, 0, 0)
    0
    """
    def trailing(extra: int) -> int:
        n_out = output_length(n_in, f, stride, dilation, before, after + extra, ceil_mode)
        return input_coverage(n_in, f, stride, dilation, before, n_out)[0] if n_out > 0 else n_in

    if trailing(0) == 0:
        return 0
    # NOTE: only windows starting at or before the last row can read it, and the
    # last of those exists once extra >= effective size + stride; beyond, nothing changes.
    for extra in range(1, effective_size(f, dilation) + stride + 1):
        if trailing(extra) == 0:
            return extra
    return 0


def solve_pads(n_in: int, f: int, stride: int, dilation: int, n_target: int,
               ceil_mode: bool = False) -> list:
    """Every ``(before, after)`` padding that gives ``n_target`` outputs along one axis.

    Each side is kept below the dilated window (a larger pad would add windows
    that read nothing but padding), and every window must read real input.

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
    limit = effective_size(f, dilation)
    found = []
    for before in range(limit):
        for after in range(limit):
            n_out = output_length(n_in, f, stride, dilation, before, after, ceil_mode)
            if n_out == n_target and axis_sees_input(n_in, f, stride, dilation, before, n_out):
                found.append((before, after))
    return sorted(found, key=lambda p: (p[0] + p[1], abs(p[1] - p[0]), p[0] - p[1]))


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
