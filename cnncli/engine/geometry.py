"""Window arithmetic: output sizes, padding resolution and their validation.

Every output-size and padding formula of cnncli lives here, once. The engine,
the ``shape`` calculator and input validation all call these functions; the
design arithmetic built on them (receptive field, coverage, cost, solving for a
size) is :mod:`cnncli.shape.design`.

The output size of a window operation along one axis is::

    n_out = floor((n_in + pad_before + pad_after - dilation*(f-1) - 1) / stride) + 1

computed with integer floor division (``int()`` of a float rounds toward zero
and is wrong for the negative numerators that signal "no window fits").
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

from ..errors import HyperparameterError

Pair = Tuple[int, int]
Pads = Tuple[int, int, int, int]  # (top, bottom, left, right)
PadSpec = Union[int, str, Sequence[int]]


def as_int(value, name: str) -> int:
    """Return ``value`` as a Python int: an integer, or a float without a fraction.

    Raises
    ------
    HyperparameterError
        A bool, a float with a fraction, text (read it with :mod:`cnncli.io.text`) or anything else.
    """
    if isinstance(value, bool):
        raise HyperparameterError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    raise HyperparameterError(f"{name} must be an integer, got {value!r}")


def plain_scalar(value):
    """The Python value of a numpy scalar or 0-d array (as read from files); anything else unchanged.

    Parameters
    ----------
    value : object
        A numpy scalar or 0-d array is replaced by ``value.item()``; arrays of any other
        shape, numbers and text pass through as they are.

    Returns
    -------
    object

    Raises
    ------
    Nothing.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def as_flag(value, name: str) -> bool:
    """Read a yes/no hyperparameter: a bool or the integers 0/1 (numpy scalars included).

    Words such as "false" or "on" are text, read at the edge by
    :func:`cnncli.io.text.read_flag`; ``bool("false")`` is True, so text never goes
    through ``bool()``.

    Raises
    ------
    HyperparameterError
        Anything else, e.g. ``2`` or ``"maybe"``.

    Examples
    --------
    >>> as_flag(False, "ceil_mode"), as_flag(1, "ceil_mode")
    (False, True)
    """
    value = plain_scalar(value)
    if isinstance(value, (bool, numbers.Integral)) and int(value) in (0, 1):
        return bool(value)
    raise HyperparameterError(f"{name} must be true or false (1/0), got {value!r}")


def as_pair(value, name: str, minimum: int = 1) -> Pair:
    """Normalize an int or an ``(h, w)`` pair and check both are ``>= minimum``.

    Parameters
    ----------
    value : int or sequence of 2 ints
        ``3``, ``(3, 2)`` or a 1-d array of two integers (text such as ``"3x2"`` is read by
        :func:`cnncli.io.text.read_pair`).
    name : str
        Used in the error message (``"stride"``, ``"f"``, ...).
    minimum : int
        Smallest allowed value.

    Returns
    -------
    (int, int)

    Raises
    ------
    HyperparameterError
        Not one or two integers, or a value below ``minimum``.

    Examples
    --------
    >>> as_pair(3, "f")
    (3, 3)
    >>> as_pair((2, 1), "stride")
    (2, 1)
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif hasattr(value, "shape") and getattr(value, "ndim", 0) == 1:  # numpy 1-d array
        items = list(value.tolist())
    else:
        items = [value]
    if len(items) == 1:
        items = items * 2
    # NOTE: a nested value (an HDF5 attribute [[3]] reads as ((3,),)) is named whole: its inner (3,) alone,
    # "must be an integer, got (3,)", read as if (3,) were what was written
    if len(items) != 2 or any(isinstance(v, (list, tuple)) or getattr(v, "ndim", 0) for v in items):
        raise HyperparameterError(f"{name} must be an int or a pair (h, w), got {value!r}")
    pair = tuple(as_int(v, name) for v in items)
    for v in pair:
        if v < minimum:
            raise HyperparameterError(f"{name} must be >= {minimum}, got {v}")
    return pair  # type: ignore[return-value]


#: The pad words of SPEC: "valid" is no padding; "same" is resolved against the input size.
PAD_WORDS = ("valid", "same")


def normalize_pad(pad: PadSpec) -> Union[str, Pads]:
    """Normalize a pad spec to ``"same"`` or a 4-tuple ``(top, bottom, left, right)``.

    Accepts an int, a pair ``(pad_h, pad_w)``, a 4-tuple, and the words ``"valid"``
    and ``"same"`` (any case). Text with numbers (``"1,2"``) is read by
    :func:`cnncli.io.text.read_pad`.

    Raises
    ------
    HyperparameterError
        Negative values, a wrong count, or an unknown word.
    """
    if isinstance(pad, str):
        word = pad.strip().lower()
        if word not in PAD_WORDS:
            raise HyperparameterError(
                f"pad must be an int, a pair (pad_h, pad_w), (top, bottom, left, right), 'valid' or 'same', "
                f"got {pad!r}"
            )
        return (0, 0, 0, 0) if word == "valid" else "same"
    if isinstance(pad, (list, tuple)):
        values = [as_int(p, "pad") for p in pad]
    elif hasattr(pad, "shape") and getattr(pad, "ndim", 0) <= 1:  # numpy scalar or 1-d array
        values = [as_int(p, "pad") for p in ([pad.item()] if pad.ndim == 0 else pad.tolist())]
    else:
        values = [as_int(pad, "pad")]
    for v in values:
        if v < 0:
            raise HyperparameterError(f"pad must be >= 0, got {v}")
    if len(values) == 1:
        return (values[0],) * 4
    if len(values) == 2:
        return (values[0], values[0], values[1], values[1])
    if len(values) == 4:
        return tuple(values)  # type: ignore[return-value]
    raise HyperparameterError(
        f"pad must have 1, 2 or 4 values (p, 'h,w' or 'top,bottom,left,right'), got {pad!r}"
    )


def effective_size(f: int, dilation: int) -> int:
    """Extent of a dilated window: ``dilation*(f-1) + 1``."""
    return dilation * (f - 1) + 1


def same_pads(n_in: int, f: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TensorFlow's ``"same"`` padding along one axis, for any stride.

    ``n_out = ceil(n_in / stride)``; the total padding is
    ``max((n_out-1)*stride + dilation*(f-1) + 1 - n_in, 0)``, split with
    ``before = total // 2`` and the extra pixel after (bottom/right).

    Examples
    --------
    >>> same_pads(5, 3, 2)
    (1, 1)
    >>> same_pads(6, 3, 2)   # NOTE: odd total -> the extra pixel goes after
    (0, 1)
    """
    n_out = -(-n_in // stride)
    total = max((n_out - 1) * stride + effective_size(f, dilation) - n_in, 0)
    return total // 2, total - total // 2


def output_length(
    n_in: int, f: int, stride: int, dilation: int, before: int, after: int, ceil_mode: bool = False
) -> int:
    """Number of windows along one axis; ``<= 0`` means no window fits.

    With ``ceil_mode`` (pooling), PyTorch's rule: round up, then drop a last
    window that would start in the right/bottom padding.
    """
    span = n_in + before + after - effective_size(f, dilation)
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    n_out = -(-span // stride) + 1
    # NOTE: PyTorch drops a window whose start lies at or past the end of the
    # input plus the leading padding, i.e. entirely in the trailing padding.
    if (n_out - 1) * stride >= n_in + before:
        n_out -= 1
    return n_out


@dataclass(frozen=True)
class WindowGeometry:
    """Resolved geometry of a 2-D window operation (conv or pool).

    Attributes
    ----------
    in_hw : (int, int)
        Input height and width.
    kernel, stride, dilation : (int, int)
        Window size, step and dilation along (height, width).
    pads : (int, int, int, int)
        Resolved padding (top, bottom, left, right).
    out_hw : (int, int)
        Output height and width, both ``>= 1``.
    ceil_mode : bool
        Whether the output size was rounded up (pooling only).
    """

    in_hw: Pair
    kernel: Pair
    stride: Pair
    dilation: Pair
    pads: Pads
    out_hw: Pair
    ceil_mode: bool = False

    @property
    def effective_kernel(self) -> Pair:
        """Extent of the dilated window along (height, width)."""
        return (
            effective_size(self.kernel[0], self.dilation[0]),
            effective_size(self.kernel[1], self.dilation[1]),
        )

    @property
    def padded_hw(self) -> Pair:
        """Height and width of the input with the resolved padding."""
        t, b, l, r = self.pads
        return self.in_hw[0] + t + b, self.in_hw[1] + l + r

    @property
    def extent_hw(self) -> Pair:
        """Padded extent the windows actually reach, ceil-mode overflow included."""
        return tuple(  # type: ignore[return-value]
            (o - 1) * s + k for o, s, k in zip(self.out_hw, self.stride, self.effective_kernel)
        )

    def single_window_strides(self) -> "WindowGeometry":
        """The same geometry with stride 1 along an axis that has one output (and nothing else changed).

        A stride never moves the only window of an axis, so its value is irrelevant there; but a huge
        one (2**60, say) times an element's byte stride overflows the C integers of numpy's strided
        views. Every derived size is unchanged: each uses ``(out - 1) * stride``, which is 0.
        """
        stride = tuple(1 if o == 1 else s for o, s in zip(self.out_hw, self.stride))
        return self if stride == self.stride else dataclasses.replace(self, stride=stride)

    @property
    def overflow(self) -> Pair:
        """Rows/columns past the trailing padding that ceil-mode windows reach."""
        return tuple(  # type: ignore[return-value]
            max(e - p, 0) for e, p in zip(self.extent_hw, self.padded_hw)
        )



def window_geometry(
    in_hw,
    kernel,
    stride=1,
    dilation=1,
    pad: PadSpec = 0,
    ceil_mode: bool = False,
) -> WindowGeometry:
    """Resolve padding and output size of a 2-D window operation, validating everything.

    Parameters
    ----------
    in_hw : int or (int, int)
        Input height and width.
    kernel, stride, dilation : int or (int, int)
        Window size, step and dilation; all ``>= 1``.
    pad : int, (int, int), (int, int, int, int), "valid" or "same"
        See :func:`normalize_pad`.
    ceil_mode : bool
        Round the output size up (pooling), PyTorch's rule.

    Returns
    -------
    WindowGeometry

    Raises
    ------
    HyperparameterError
        Non-positive sizes, negative pad, or a window that does not fit, e.g.
        ``no 5x5 window fits a 4x4 input padded by 0``.

    Examples
    --------
    >>> g = window_geometry((5, 7), 3, stride=2, pad=1)
    >>> g.out_hw, g.pads
    ((3, 4), (1, 1, 1, 1))
    """
    in_hw = as_pair(in_hw, "input size")
    kernel = as_pair(kernel, "f")
    stride = as_pair(stride, "stride")
    dilation = as_pair(dilation, "dilation")
    spec = normalize_pad(pad)
    if spec == "same":
        (t, b), (l, r) = (
            same_pads(in_hw[0], kernel[0], stride[0], dilation[0]),
            same_pads(in_hw[1], kernel[1], stride[1], dilation[1]),
        )
        pads: Pads = (t, b, l, r)
    else:
        pads = spec  # type: ignore[assignment]
    out_h = output_length(in_hw[0], kernel[0], stride[0], dilation[0], pads[0], pads[1], ceil_mode)
    out_w = output_length(in_hw[1], kernel[1], stride[1], dilation[1], pads[2], pads[3], ceil_mode)
    if out_h < 1 or out_w < 1:
        eff = (effective_size(kernel[0], dilation[0]), effective_size(kernel[1], dilation[1]))
        dil = "" if dilation == (1, 1) else f" (dilated to {eff[0]}x{eff[1]})"
        k, e, n = f"{kernel[0]}x{kernel[1]}", f"{eff[0]}x{eff[1]}", f"{in_hw[0]}x{in_hw[1]}"
        p = format_pads(pads, "list")
        # NOTE: no window fits exactly where the (dilated) window is larger than the padded input on an axis
        raise HyperparameterError.worded(f"no {k} window{dil} fits a {n} input padded by {p}",
                                         f"no {k} window{dil} fits {n} padded by {p}",
                                         f"{'dilated ' if dil else ''}window {e} > input {n} + pad {p}")
    return WindowGeometry(in_hw, kernel, stride, dilation, pads, (out_h, out_w), bool(ceil_mode))


_PAD_SIDES = ("top", "bottom", "left", "right")


def format_pads(pads: Pads, style: str = "sentence") -> str:
    """The one spelling of resolved pads: ``p`` when all four sides agree, else by ``style``.

    ``"sentence"`` (error messages): ``(top=0, bottom=1, left=0, right=1)``;
    ``"keys"`` (tables): ``top=0,bottom=1,left=0,right=1``;
    ``"list"`` (what ``--pad`` and layer specs accept): ``0,1,0,1``.

    Examples
    --------
    >>> format_pads((1, 1, 1, 1)), format_pads((0, 1, 0, 1), "list")
    ('1', '0,1,0,1')
    """
    if len(set(pads)) == 1:
        return str(pads[0])
    if style == "list":
        return ",".join(map(str, pads))
    named = [f"{side}={v}" for side, v in zip(_PAD_SIDES, pads)]
    return ",".join(named) if style == "keys" else "(" + ", ".join(named) + ")"


def window_sees_input(geom: WindowGeometry) -> bool:
    """Whether every window of ``geom`` covers at least one real (unpadded) input pixel."""
    return all(
        axis_sees_input(geom.in_hw[a], geom.kernel[a], geom.stride[a], geom.dilation[a], geom.pads[2 * a],
                        geom.out_hw[a])
        for a in (0, 1)
    )


def pool_geometry(in_hw, f, stride=None, dilation=1, pad: PadSpec = 0, ceil_mode: bool = False) -> WindowGeometry:
    """:func:`window_geometry` for pooling: stride defaults to ``f``; every window must see input.

    Raises
    ------
    HyperparameterError
        As :func:`window_geometry`, and when padding is so large that a window lies
        entirely in it (its max would be ``-inf``, its average over no input undefined).
    """
    geom = window_geometry(in_hw, f, f if stride is None else stride, dilation, pad, ceil_mode)
    if not window_sees_input(geom):
        pad, window = format_pads(geom.pads, "list"), f"{geom.effective_kernel[0]}x{geom.effective_kernel[1]}"
        raise HyperparameterError.worded(f"pad {pad} leaves a {window} pooling window only padding: use less",
                                         f"pad {pad} leaves a {window} window only padding",
                                         f"pad {pad} leaves a {window} window no input")
    return geom


def check_groups(n_C_prev: int, n_C: int, groups: int) -> int:
    """Validate ``groups`` against input and output channels; return it as int.

    Raises
    ------
    HyperparameterError
        ``groups < 1`` or a channel count it does not divide.
    """
    groups = as_int(groups, "groups")
    if groups < 1:
        raise HyperparameterError(f"groups must be >= 1, got {groups}")
    if n_C_prev % groups:
        raise HyperparameterError.worded(f"groups={groups} must divide the input channels n_C_prev={n_C_prev}",
                                         f"groups={groups} must divide the {n_C_prev} input channels",
                                         f"groups={groups} must divide C_in={n_C_prev}")
    if n_C % groups:
        raise HyperparameterError.worded(f"groups={groups} must divide the output channels n_C={n_C}",
                                         f"groups={groups} must divide the {n_C} output channels",
                                         f"groups={groups} must divide C_out={n_C}")
    return groups


POOL_MODES = {"max": "max", "average": "average", "avg": "average", "mean": "average"}


def normalize_mode(mode: str) -> str:
    """``"max"`` or ``"average"`` (``"avg"`` accepted)."""
    key = str(mode).strip().lower()
    if key not in POOL_MODES:
        raise HyperparameterError.worded(f"mode must be 'max' or 'average' (or 'avg'), got {mode!r}",
                                         f"mode must be max or average, got {mode!r}",
                                         f"mode {mode!r}: give max or average")
    return POOL_MODES[key]


def window_counts(geom: WindowGeometry, include_pad: bool):
    """Per-axis number of window taps that average pooling divides by.

    Returns
    -------
    counts_h : list of int, length n_H
    counts_w : list of int, length n_W
        Taps that land in the padded input (``include_pad``) or in the real
        input only. NOTE: ceil-mode overflow past the trailing padding never
        counts, as in PyTorch; the divisor of window (h, w) is
        ``counts_h[h] * counts_w[w]``.
    """
    return tuple(head + [k] * n + tail for head, k, n, tail in window_count_runs(geom, include_pad))


def window_count_runs(geom: WindowGeometry, include_pad: bool):
    """:func:`window_counts` per axis as ``(head, k, n, tail)``: the counts of the windows before the first whole
    one, ``n`` whole windows of ``k`` taps, the counts of those after (a 1 x 16M signal's 8M windows as a few
    numbers, not a list of 8M).

    Returns
    -------
    ((list of int, int, int, list of int), (list of int, int, int, list of int))
        Along the height, then the width.
    """
    result = []
    for axis, before, after in ((0, geom.pads[0], geom.pads[1]), (1, geom.pads[2], geom.pads[3])):
        n, k, s, d, o = geom.in_hw[axis], geom.kernel[axis], geom.stride[axis], geom.dilation[axis], geom.out_hw[axis]
        lo, hi = (-before, n + after) if include_pad else (0, n)
        # NOTE: every window between the first and the last that lie wholly in [lo, hi) has all k taps (closed
        # form); only those before and after it are counted one by one: at most about span / stride on each
        # side (a window wholly in the padding is refused), however many windows the row has
        first = max(0, -(-(lo + before) // s))  # the first p with p * s - before >= lo
        end = min(o, (hi - (k - 1) * d - 1 + before) // s + 1)  # past the last p whose last tap is < hi
        first, end = (first, end) if first < end else (o, o)
        result.append(([taps_within(p * s - before, k, d, lo, hi) for p in range(first)], k, end - first,
                       [taps_within(p * s - before, k, d, lo, hi) for p in range(end, o)]))
    return result[0], result[1]


def taps_within(start: int, f: int, dilation: int, lo: int, hi: int) -> int:
    """How many taps ``start + k*dilation`` (``0 <= k < f``) lie in ``[lo, hi)``; closed form."""
    first = max(0, -((start - lo) // dilation))  # smallest k with start + k*dilation >= lo
    last = min(f - 1, (hi - 1 - start) // dilation)  # largest k with start + k*dilation < hi
    return max(0, last - first + 1)


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*i + b) / m) for i in range(n))`` for ``n >= 0``, ``m >= 1``, any ints, in O(log m) steps.

    >>> floor_sum(5, 3, 2, -4) == sum((2 * i - 4) // 3 for i in range(5))
    True
    """
    total = 0
    qa, a = divmod(a, m)  # NOTE: Python's divmod floors, so a and b become 0 <= . < m
    qb, b = divmod(b, m)
    total += qa * (n * (n - 1) // 2) + qb * n
    while True:  # the Euclid-like reduction of the lattice-point count under a line
        if a >= m:
            total += (n * (n - 1) // 2) * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = divmod(y_max, m)
        m, a = a, m


def axis_sees_input(n_in: int, f: int, stride: int, dilation: int, before: int, n_out: int) -> bool:
    """Whether every window along one axis reads at least one real input row.

    Closed form for any sizes (no loop over windows).

    NOTE: checking only the first and last windows is not enough: with a dilation
    larger than the input, a middle window can straddle the input with its taps
    all in the padding (1 row, f=2, dilation 2, pad 2: the window at -1 reads rows -1 and 1).

    >>> axis_sees_input(1, 2, 1, 2, 2, 3)
    False
    """
    if n_out < 1:
        return True
    if -before + dilation * (f - 1) < 0 or (n_out - 1) * stride - before > n_in - 1:
        return False  # the first window ends before the input, or the last starts after it
    if dilation <= n_in:
        return True  # taps closer than the input is long cannot all step over it
    # NOTE: a window starting in the leading padding (p*stride < before) reads one input row at most:
    # its first tap at or after row 0, (p*stride - before) mod dilation, which must be < n_in.
    # [y mod d < n] = floor(y/d) - floor((y-n)/d) for n <= d, so a floor sum counts those windows.
    leading = min(n_out, -(-before // stride))
    seeing = floor_sum(leading, dilation, stride, -before) - floor_sum(leading, dilation, stride, -before - n_in)
    return seeing == leading


@dataclass(frozen=True)
class RowBlock:
    """Output rows (or columns) ``[out_lo, out_hi)`` of a window operation, as an operation of their own.

    The same windows read input rows ``[in_lo, in_hi)`` with ``top`` rows of padding above and
    ``bottom`` below (the original padding those windows reach; ceil-mode overflow past it is
    left out, as in the whole operation). ``in_lo == in_hi`` when every window of the block lies
    in the padding (a conv's rows of pure bias). Along the width (``axis=1`` of :func:`row_block`)
    the same fields are input columns, ``top`` the left padding and ``bottom`` the right.
    """

    out_lo: int
    out_hi: int
    in_lo: int
    in_hi: int
    top: int
    bottom: int


def outputs_reading(geom: WindowGeometry, i: int, axis: int = 0) -> Tuple[int, int]:
    """The output rows ``[lo, hi)`` (columns, ``axis=1``) whose windows span input row ``i`` (closed form).

    Window ``r`` spans input rows ``r * stride - pad_top`` to ``r * stride - pad_top + span - 1``; with a
    dilation it may step over ``i`` (then its output does not change with row ``i``, and is still in the
    range). ``lo >= hi`` where no window reaches ``i``.

    >>> g = window_geometry((10, 4), 3, stride=2, pad=1)
    >>> outputs_reading(g, 0), outputs_reading(g, 3), outputs_reading(g, 9)
    ((0, 1), (1, 3), (4, 5))
    """
    return _reading(geom, int(i), axis, max, min)


def outputs_reading_all(geom: WindowGeometry, i, axis: int = 0):
    """:func:`outputs_reading` of every input row in the int64 array ``i``: two arrays ``(lo, hi)`` of its shape
    (the same closed form, elementwise).

    >>> import numpy as np
    >>> g = window_geometry((10, 4), 3, stride=2, pad=1)
    >>> [a.tolist() for a in outputs_reading_all(g, np.array([0, 3, 9]))]
    [[0, 1, 4], [1, 3, 5]]
    """
    import numpy as np  # NOTE: here, not at the top: the shape calculator imports this module and never needs it

    return _reading(geom, np.asarray(i, dtype=np.int64), axis, np.maximum, np.minimum)


def _reading(geom: WindowGeometry, i, axis: int, most, least):
    """The one formula of :func:`outputs_reading` (``i`` an int, ``most``/``least`` max and min) and of
    :func:`outputs_reading_all` (an array, numpy's elementwise maximum and minimum)."""
    s, t, span = geom.stride[axis], geom.pads[2 * axis], geom.effective_kernel[axis]
    return most(0, -((span - 1 - i - t) // s)), least(geom.out_hw[axis], (i + t) // s + 1)  # lo: ceil((i+t-span+1)/s)


def outputs_within(geom: WindowGeometry, span: int, axis: int = 0) -> int:
    """The most consecutive output rows (columns, ``axis=1``) whose windows together span at most ``span``
    rows of the padded input: ``k`` windows span ``(k - 1) * stride + effective kernel`` (closed form); 0 where
    not even one window fits.

    >>> g = window_geometry((1, 4_000_000), (1, 10), stride=(1, 1000))
    >>> outputs_within(g, 262_144, axis=1), outputs_within(g, 9, axis=1)
    (263, 0)
    """
    reach = geom.effective_kernel[axis]
    return 0 if span < reach else (span - reach) // geom.stride[axis] + 1


def rows_read(geom: WindowGeometry, lo: int, hi: int, axis: int = 0):
    """Which input rows ``[lo, hi)`` (columns, ``axis=1``) some window tap lands on: a bool array of ``hi - lo``.

    Tap ``q`` of window ``r`` reads row ``r * stride - pad_top + q * dilation``; row ``i`` is read when, for some
    tap, ``i + pad_top - q * dilation`` is a multiple of the stride giving a window in ``[0, n_out)`` (closed form
    per tap: no loop over windows). Rows between a dilated window's taps, or past the last window, are not read.

    >>> g = window_geometry((7, 7), 2, stride=3)
    >>> rows_read(g, 0, 7).tolist()
    [True, True, False, True, True, False, False]
    """
    import numpy as np  # NOTE: here, not at the top: the shape calculator imports this module and never needs it

    s, t, o = geom.stride[axis], geom.pads[2 * axis], geom.out_hw[axis]
    k, d = geom.kernel[axis], geom.dilation[axis]
    at = np.arange(lo, hi, dtype=np.int64) + t
    out = np.zeros(at.size, dtype=bool)
    for q in range(k):
        p = at - q * d
        out |= (p >= 0) & (p % s == 0) & (p // s < o)
    return out


def row_block(geom: WindowGeometry, out_lo: int, out_hi: int, axis: int = 0) -> RowBlock:
    """The input rows and pads that output rows ``[out_lo, out_hi)`` of ``geom`` read (closed form).

    With the block's pads, the stride, dilation, kernel and ceil mode of ``geom``, the input rows
    ``[in_lo, in_hi)`` give exactly ``out_hi - out_lo`` rows of output, each the window of the
    whole operation: the same real rows, the same padding, so average pooling divides by the
    same counts. NOTE: a ceil-mode overflow is under one stride, so the block's ceil rounding
    adds back exactly its last window; but a block of that last window alone reaches less than
    one window of padded input and cannot stand as an operation: it is refused (give the block
    the row before it too). ``axis=1`` does the same for output columns (input columns, left and
    right pads): the axes are independent, so a tile of rows by columns is both blocks at once.

    Raises
    ------
    ValueError
        Rows (columns) outside the output, or the ceil-mode last one alone where it overflows.

    >>> g = window_geometry((10, 4), 3, stride=2, pad=1)
    >>> row_block(g, 0, 2)
    RowBlock(out_lo=0, out_hi=2, in_lo=0, in_hi=4, top=1, bottom=0)
    >>> row_block(g, 3, 5)
    RowBlock(out_lo=3, out_hi=5, in_lo=5, in_hi=10, top=0, bottom=0)
    >>> row_block(g, 1, 2, axis=1)
    RowBlock(out_lo=1, out_hi=2, in_lo=1, in_hi=4, top=0, bottom=0)
    """
    what = ("row", "rows") if axis == 0 else ("column", "columns")
    if not 0 <= out_lo < out_hi <= geom.out_hw[axis]:
        raise ValueError(f"{what[1]} [{out_lo}, {out_hi}) are not within the {geom.out_hw[axis]} output {what[1]}")
    in_lo, in_hi, top, bottom, overflow = _block(geom, out_lo, out_hi, axis, max, min)
    if overflow:
        raise ValueError(f"output {what[0]} {out_lo} overflows the padding (ceil mode): it needs the {what[0]} before it")
    return RowBlock(out_lo, out_hi, in_lo, in_hi, top, bottom)


def row_blocks(geom: WindowGeometry, out_lo, out_hi, axis: int = 0) -> RowBlock:
    """:func:`row_block` of many blocks at once: ``out_lo`` and ``out_hi`` int64 arrays of one shape (each block
    within the output), the RowBlock's fields arrays of that shape. A ceil-mode last row that cannot stand alone
    (where :func:`row_block` refuses it) gets the row before it, as a caller of :func:`row_block` gives it.

    >>> import numpy as np
    >>> g = window_geometry((10, 4), 3, stride=2, pad=1)
    >>> b = row_blocks(g, np.array([0, 3]), np.array([2, 5]))
    >>> b.in_lo.tolist(), b.in_hi.tolist(), b.top.tolist()
    ([0, 5], [4, 10], [1, 0])
    """
    import numpy as np  # NOTE: here, not at the top: the shape calculator imports this module and never needs it

    out_lo, out_hi = np.asarray(out_lo, dtype=np.int64), np.asarray(out_hi, dtype=np.int64)
    overflow = _block(geom, out_lo, out_hi, axis, np.maximum, np.minimum)[4]
    if overflow.any():
        out_lo = np.where(overflow, out_lo - 1, out_lo)
    return RowBlock(out_lo, out_hi, *_block(geom, out_lo, out_hi, axis, np.maximum, np.minimum)[:4])


def _block(geom: WindowGeometry, out_lo, out_hi, axis: int, most, least):
    """The one formula of :func:`row_block` (ints; ``most``/``least`` max and min) and of :func:`row_blocks`
    (arrays; numpy's maximum and minimum): ``(in_lo, in_hi, top, bottom, overflow)``, overflow where a ceil-mode
    last row alone reaches past the padding."""
    n, s = geom.in_hw[axis], geom.stride[axis]
    t, b = geom.pads[2 * axis], geom.pads[2 * axis + 1]
    lo = out_lo * s - t  # the block's first window row, in input coordinates (negative: padding)
    hi = (out_hi - 1) * s - t + geom.effective_kernel[axis]  # one past its last
    in_lo, in_hi = least(most(lo, 0), n), least(most(hi, 0), n)
    top = most(0, least(hi, 0) - lo)
    bottom = most(0, least(hi, n + b) - most(lo, n))
    return in_lo, in_hi, top, bottom, (out_hi - out_lo == 1) & (hi > n + b)
