"""Loop versions of the shape arithmetic: the test oracles of the closed forms.

These are cnncli 0.1's implementations, row by row and candidate by candidate;
exact but slow (they allocate one byte per input row and try every padding). The
closed forms in :mod:`cnncli.shape.design` and :mod:`cnncli.engine.geometry`
must agree with them on every small case hypothesis draws.
"""

from __future__ import annotations

from cnncli.engine.geometry import effective_size, output_length


def axis_sees_input(n_in, f, stride, dilation, before, n_out):
    """Every window reads a real row: try every window's every tap."""
    for p in range(n_out):
        start = p * stride - before
        if not any(0 <= t < n_in for t in range(start, start + dilation * (f - 1) + 1, dilation)):
            return False
    return True


def input_coverage(n_in, f, stride, dilation, before, n_out):
    """(trailing, skipped) by marking every row some tap reads."""
    read = bytearray(n_in)
    for p in range(n_out):
        for k in range(f):
            row = p * stride + k * dilation - before
            if 0 <= row < n_in:
                read[row] = 1
    end = read.rfind(b"\x01") + 1
    return n_in - end, end - sum(read)


def cover_padding(n_in, f, stride, dilation, before, after, ceil_mode=False):
    """Try every extra padding up to a window and a stride."""
    def trailing(extra):
        n_out = output_length(n_in, f, stride, dilation, before, after + extra, ceil_mode)
        return input_coverage(n_in, f, stride, dilation, before, n_out)[0] if n_out > 0 else n_in

    if trailing(0) == 0:
        return 0
    for extra in range(1, effective_size(f, dilation) + stride + 1):
        if trailing(extra) == 0:
            return extra
    return 0


def solve_pads(n_in, f, stride, dilation, n_target, ceil_mode=False):
    """Every pair of pads below the dilated window, sorted."""
    limit = effective_size(f, dilation)
    found = []
    for before in range(limit):
        for after in range(limit):
            n_out = output_length(n_in, f, stride, dilation, before, after, ceil_mode)
            if n_out == n_target and axis_sees_input(n_in, f, stride, dilation, before, n_out):
                found.append((before, after))
    return sorted(found, key=lambda p: (p[0] + p[1], abs(p[1] - p[0]), p[0] - p[1]))


def window_counts_axis(n, k, s, d, o, before, after, include_pad):
    """Taps of each window inside the (padded) input, counted one by one."""
    lo, hi = (-before, n + after) if include_pad else (0, n)
    return [sum(1 for t in range(p * s - before, p * s - before + d * (k - 1) + 1, d) if lo <= t < hi)
            for p in range(o)]
