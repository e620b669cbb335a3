"""Shape checks made before computing: a convolution's arrays agree, a layer call fits in memory.

:func:`check_conv_shapes` is the one validator of (A_prev, W, b, groups): the engine
calls it before computing; layer-call resolution (:mod:`cnncli.passes.call`) calls it
as soon as the arrays are loaded, before any batch is streamed, and words the
failures in the user's terms (file names, layout) from :class:`ConvShapeError`'s
fields rather than checking again. :func:`check_layer_fits` refuses, in closed form
and before anything is allocated, a call whose output or workspace could never fit.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Optional, Sequence

import numpy as np

from ..errors import ShapeError, first_fitting, fits
from ..units import power_of_ten, two_sizes
from .geometry import WindowGeometry, check_groups
from .layout import shape_to_nhwc


class ConvShapeError(ShapeError):
    """A mismatch between W and A_prev or b.

    Attributes
    ----------
    problem : {"empty W", "channels", "bias"}
        What is wrong: W has an empty axis; W's input channels per group times the
        groups differ from A_prev's channels; b is neither (n_C,) nor (1, 1, 1, n_C).
    groups : int
        The validated groups (0 when the problem is "empty W").
    """

    def __init__(self, message: str, problem: str = "", groups: int = 0):
        super().__init__(message)
        self.problem, self.groups = problem, groups


def check_conv_shapes(A_shape: Sequence[int], W_shape: Sequence[int], b_shape: Optional[Sequence[int]],
                      groups) -> int:
    """Check the NHWC shapes of a convolution's arrays; return ``groups`` as an int.

    Parameters
    ----------
    A_shape : (m, n_H_prev, n_W_prev, n_C_prev)
    W_shape : (f_h, f_w, n_C_prev // groups, n_C)
    b_shape : (n_C,) or (1, 1, 1, n_C), or None (no bias)
    groups : int

    Returns
    -------
    int
        ``groups``.

    Raises
    ------
    ShapeError
        A_prev or W not 4-D, A_prev without an example or a channel.
    ConvShapeError
        W with an empty axis, channels that do not match, a bias of the wrong shape.
    HyperparameterError
        ``groups < 1`` or a channel count it does not divide.

    Examples
    --------
    >>> check_conv_shapes((2, 5, 5, 4), (3, 3, 2, 6), (6,), 2)
    2
    """
    A_shape, W_shape = tuple(A_shape), tuple(W_shape)
    if len(A_shape) != 4:
        raise ShapeError(f"A_prev must be 4-D (m, n_H, n_W, n_C), got shape {A_shape}")
    if A_shape[0] < 1 or A_shape[3] < 1:
        raise ShapeError(f"A_prev must have at least one example and one channel, got shape {A_shape}")
    if len(W_shape) != 4:
        raise ShapeError(f"W must be 4-D (f, f, n_C_prev/groups, n_C), got shape {W_shape}")
    if min(W_shape) < 1:
        raise ConvShapeError(f"W must have no empty axis, got shape {W_shape}", "empty W")
    c_g, n_C, n_C_prev = W_shape[2], W_shape[3], A_shape[3]
    groups = check_groups(n_C_prev, n_C, groups)
    if c_g * groups != n_C_prev:
        raise ConvShapeError(
            f"W has {c_g} input channel(s) per group but A_prev has n_C_prev={n_C_prev} "
            f"with groups={groups} (expected W.shape[2] == {n_C_prev // groups})", "channels", groups)
    if b_shape is not None and tuple(b_shape) not in ((n_C,), (1, 1, 1, n_C)):
        raise ConvShapeError(f"b must have shape ({n_C},) or (1, 1, 1, {n_C}) to match W, got {tuple(b_shape)}",
                             "bias", groups)
    return groups


def raise_w_shape_error(A_prev, W, b, groups, layout: str = "nhwc") -> None:
    """Raise W's own shape error (its channels, an empty axis) if it has one, else return.

    Called where a conv dict's ``"f"`` disagrees with W's window: a W in PyTorch's layout read as NHWC
    fails both, and its channels say more than its "window" (which is then ``C_out x C_in``).

    Parameters
    ----------
    A_prev : array_like, shape (m, n_H_prev, n_W_prev, n_C_prev) or (m, C, H, W) in ``layout``
    W : array_like, shape (f, f, n_C_prev // groups, n_C) or (C_out, C_in/groups, kH, kW) in ``layout``
    b : array_like or None
    groups : int
    layout : {"nhwc", "nchw"}

    Returns
    -------
    None
        No error of W's own (or one of another array, or a bad ``groups``: their own errors come later).

    Raises
    ------
    ConvShapeError
        W's channels disagree with A_prev's, or W has an empty axis.
    """
    try:
        if np.ndim(A_prev) != 4 or np.ndim(W) != 4:
            return
        check_conv_shapes(shape_to_nhwc(np.shape(A_prev), layout), shape_to_nhwc(np.shape(W), layout, weights=True),
                          None if b is None else np.shape(b), groups)
    except ConvShapeError as exc:
        if exc.problem in ("channels", "empty W"):
            raise
    except (ValueError, TypeError):  # ragged lists, a bad groups or layout: not W's shape
        pass


@functools.cache  # NOTE: sysconf is a system call (~0.8 us); a full gradcheck asks it per engine call
def physical_memory() -> Optional[int]:
    """This machine's physical memory in bytes, or None when the system does not say (asked once)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _sizes(need: int, limit: int, setting: Optional[str] = None, tens: bool = False) -> str:
    """``"<need>; memory is <limit>"``, in exact bytes when the rounded sizes would read the same; with a
    ``setting``, ``"<need>, over <setting>"``: the user knows the value set, and 80 columns hold no more.
    ``tens``: the need as a power of ten of bytes (``2.6e52 bytes``), for sizes past any binary unit."""
    a, b = two_sizes(need, limit)
    a = f"{power_of_ten(need)} bytes" if tens else a
    return f"{a}, over {setting}" if setting else f"{a}; memory is {b}"


def _padded_too_big(dims: str, need: int, limit: int, setting: Optional[str]) -> ShapeError:
    """The refusal of a pool's padded example of ``dims``, in the first wording that fits 80 columns."""
    a, b = two_sizes(need, limit)
    if setting:
        return ShapeError(first_fitting(f"padded example {dims} needs {a}, over {setting}",
                                        f"padded example needs {a}, over {setting}",
                                        f"padded example needs {power_of_ten(need)} bytes, over {setting}"))
    # NOTE: where the dims are long (a pad of 10**5 or more), the size and the limit are what must be said
    return ShapeError(first_fitting(f"padded input {dims} needs {a} per example; memory is {b}",
                                    f"padded example {dims} needs {a}; memory is {b}",
                                    f"padded input needs {a} per example; memory is {b}",
                                    f"padded input needs {power_of_ten(need)} bytes per example; memory is {b}"))


def check_layer_fits(geom: WindowGeometry, m: int, n_C_prev: int, n_C: int, itemsize: int, *,
                     pool: bool = False, limit: Optional[int] = None, setting: Optional[str] = None) -> None:
    """Refuse a layer call whose arrays could not be allocated, before allocating any.

    Checks, with Python integers (any size), the padded input of one example for
    pooling (its window taps are looped over, each over the chunk's outputs) and the
    output of the ``m`` examples, against ``limit`` bytes.

    Parameters
    ----------
    geom : WindowGeometry
    m, n_C_prev, n_C : int
        Examples, input and output channels.
    itemsize : int
        Bytes per element of the compute dtype.
    pool : bool
        A pooling layer (its padded input is checked too).
    limit : int, optional
        Default: the machine's physical memory (:func:`physical_memory`).
    setting : str, optional
        Where ``limit`` comes from, when a user's setting gives it (``"CNNCLI_MEMORY_BYTES"``): the
        message names it ("output 1x300x300x4 needs 2.7 MiB, over CNNCLI_MEMORY_BYTES") instead of
        "memory is".

    Raises
    ------
    ShapeError
        One line naming the array, its size and the limit, e.g. "padded input 2006x2006x2 needs
        61.4 MiB per example; memory is 16.0 MiB"; its dims give way where the line would pass
        80 columns ("padded input needs 55.5 EiB per example; memory is 23.5 GiB").
    """
    limit = (physical_memory() or 2**63) if limit is None else limit
    if pool:
        hp, wp = (p + o for p, o in zip(geom.padded_hw, geom.overflow))
        need = hp * wp * n_C_prev * max(itemsize, 8)  # at most an 8-byte value per padded pixel
        if need > limit:
            raise _padded_too_big(f"{hp}x{wp}x{n_C_prev}", need, limit, setting)
    dims = (m,) + tuple(geom.out_hw) + (n_C,)
    need = math.prod(dims) * itemsize
    if need > limit:
        text, sizes = "x".join(map(str, dims)), _sizes(need, limit, setting)
        # NOTE: long dims (a layer of 2e9 rows) give way to the size and the limit, what must be said; unlike
        # first_fitting's whole words for a long path of the user's, nothing here is the user's to recognise,
        # so where no wording fits (a 34-digit size) the shortest line is said
        # a size of 34 digits of EiB (a pad of 10**16) is written as a power of ten: 2.6e52 bytes
        wordings = (f"output {text} needs {sizes}", f"output {text}: {sizes}", f"output needs {sizes}",
                    f"output needs {_sizes(need, limit, setting, tens=True)}")
        raise ShapeError(next((w for w in wordings if fits(w)), wordings[-1]))
