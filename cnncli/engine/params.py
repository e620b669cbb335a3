"""Frozen hyperparameter records for conv and pool, validated on construction.

Every way in builds one of these: the engine's callers directly, and the classic
exercise's ``hparameters`` dicts (the API, case files, the gradient-check battery)
through :meth:`ConvParams.from_hparameters` / :meth:`PoolParams.from_hparameters`.
Values are numbers (and the words of SPEC: ``"same"``/``"valid"``, pooling modes);
text such as ``"3x2"`` is read first by :mod:`cnncli.io.text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from .geometry import (
    Pads,
    Pair,
    WindowGeometry,
    as_flag,
    as_pair,
    normalize_mode,
    normalize_pad,
    pool_geometry,
    window_geometry,
    as_int,
)
from ..errors import HyperparameterError, ShapeError


#: Keys of the exercise's ``hparameters`` dicts. ``layout`` is the arrays' layout, not a
#: hyperparameter: the dict may carry it and the caller reads it; the records ignore it.
CONV_KEYS = ("stride", "pad", "dilation", "groups", "layout")
#: What the classic API's conv functions take: a conv's window comes from W, but students pass one dict
#: to conv and pool, so its ``"f"`` is allowed when it is W's window (:func:`without_window`).
CONV_API_KEYS = CONV_KEYS + ("f",)
POOL_KEYS = ("f", "stride", "pad", "dilation", "ceil_mode", "count_include_pad", "layout")


def check_hparameters(hparameters, allowed: Sequence[str], what: str) -> dict:
    """A copy of ``hparameters`` after checking it is a dict whose keys are all in ``allowed``.

    Raises
    ------
    HyperparameterError
        Not a dict, or an unknown key (the message lists the valid ones).
    """
    if not isinstance(hparameters, dict):
        raise HyperparameterError(f"hparameters must be a dict, got {type(hparameters).__name__}")
    unknown = sorted(set(hparameters) - set(allowed))
    if unknown:
        raise HyperparameterError(
            f"unknown {what} hyperparameter(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(allowed)}"
        )
    return dict(hparameters)


def without_window(hparameters, kernel_hw) -> dict:
    """A conv ``hparameters`` dict without its ``"f"``, after checking that ``"f"`` is W's window.

    Parameters
    ----------
    hparameters : dict
        An exercise-style dict, its text values already read; other values pass unchanged.
    kernel_hw : (int, int) or None
        W's window ``(kH, kW)``; None when W has no window to compare with (not 4-D: its own
        error comes later).

    Returns
    -------
    dict
        A copy without ``"f"`` (``hparameters`` itself when it has none, or is not a dict).

    Raises
    ------
    HyperparameterError
        ``"f"`` is not a positive int or pair.
    ShapeError
        ``"f"`` differs from ``kernel_hw``; the message names both.

    Examples
    --------
    >>> without_window({"f": 3, "stride": 1}, (3, 3))
    {'stride': 1}
    """
    if not isinstance(hparameters, dict) or "f" not in hparameters:
        return hparameters
    hp = dict(hparameters)
    f = as_pair(hp.pop("f"), "f")
    if kernel_hw is not None and f != tuple(kernel_hw):
        given = f[0] if f[0] == f[1] else f  # as a student writes it: 2, or (3, 2)
        raise ShapeError(f"hparameters['f']={given!r} disagrees with W's {kernel_hw[0]}x{kernel_hw[1]} window")
    return hp


@dataclass(frozen=True)
class ConvParams:
    """Hyperparameters of a 2-D convolution (the kernel size comes from ``W``).

    Parameters
    ----------
    stride, dilation : int or (int, int)
        Step and dilation along (height, width), ``>= 1``.
    pad : int, (int, int), (top, bottom, left, right), "valid" or "same"
        Zero padding; ``"same"`` uses TensorFlow's split for any stride.
    groups : int
        Channel groups; ``groups == n_C_prev`` is a depthwise convolution.
    """

    stride: Pair = (1, 1)
    pad: Union[str, Pads] = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "stride", as_pair(self.stride, "stride"))
        object.__setattr__(self, "dilation", as_pair(self.dilation, "dilation"))
        object.__setattr__(self, "pad", normalize_pad(self.pad))
        groups = as_int(self.groups, "groups")
        if groups < 1:
            raise HyperparameterError(f"groups must be >= 1, got {groups}")
        object.__setattr__(self, "groups", groups)

    @classmethod
    def from_hparameters(cls, hparameters: dict) -> "ConvParams":
        """The record of an exercise-style dict, e.g. ``{"stride": 2, "pad": 1}``.

        Keys: :data:`CONV_KEYS`; missing ones take the defaults (stride 1, pad 0,
        dilation 1, groups 1); ``"layout"`` is allowed and ignored.

        Raises
        ------
        HyperparameterError
            Not a dict, an unknown key, or an invalid value.

        Examples
        --------
        >>> ConvParams.from_hparameters({"stride": 2, "pad": 1})
        ConvParams(stride=(2, 2), pad=(1, 1, 1, 1), dilation=(1, 1), groups=1)
        """
        hp = check_hparameters(hparameters, CONV_KEYS, "conv")
        return cls(stride=hp.get("stride", 1), pad=hp.get("pad", 0), dilation=hp.get("dilation", 1),
                   groups=hp.get("groups", 1))

    def geometry(self, in_hw, kernel_hw) -> WindowGeometry:
        """Resolve output size and pads for an input of ``in_hw`` and a kernel of ``kernel_hw``."""
        return window_geometry(in_hw, kernel_hw, self.stride, self.dilation, self.pad)


@dataclass(frozen=True)
class PoolParams:
    """Hyperparameters of 2-D pooling.

    Parameters
    ----------
    f : int or (int, int)
        Window size.
    stride : int or (int, int), optional
        Step; defaults to ``f``.
    pad : int, (int, int), (top, bottom, left, right), "valid" or "same"
        Padding: ``-inf`` for max pooling, zeros for average pooling.
    dilation : int or (int, int)
        Window dilation.
    mode : {"max", "average"}
        ``"avg"`` is accepted for ``"average"``.
    ceil_mode : bool
        Round the output size up, PyTorch's rule.
    count_include_pad : bool
        Average pooling divides by the window size including padded zeros
        (but never the ceil-mode overflow, as PyTorch); ``False`` divides by
        the number of real input pixels in the window.
    """

    f: Pair = (2, 2)
    stride: Optional[Pair] = None
    pad: Union[str, Pads] = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    mode: str = "max"
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self):
        f = as_pair(self.f, "f")
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "stride", f if self.stride is None else as_pair(self.stride, "stride"))
        object.__setattr__(self, "dilation", as_pair(self.dilation, "dilation"))
        object.__setattr__(self, "pad", normalize_pad(self.pad))
        object.__setattr__(self, "mode", normalize_mode(self.mode))
        object.__setattr__(self, "ceil_mode", as_flag(self.ceil_mode, "ceil_mode"))
        object.__setattr__(self, "count_include_pad", as_flag(self.count_include_pad, "count_include_pad"))

    @classmethod
    def from_hparameters(cls, hparameters: dict, mode: str = "max") -> "PoolParams":
        """The record of an exercise-style dict and ``mode``, e.g. ``{"f": 2, "stride": 2}``.

        Keys: :data:`POOL_KEYS`; ``"f"`` is required, the stride defaults to it, the
        others to pad 0, dilation 1, no ceil mode, ``count_include_pad``; ``"layout"``
        is allowed and ignored.

        Raises
        ------
        HyperparameterError
            Not a dict, an unknown key, no ``"f"``, or an invalid value.

        Examples
        --------
        >>> PoolParams.from_hparameters({"f": 3, "stride": 2}, mode="avg").mode
        'average'
        """
        hp = check_hparameters(hparameters, POOL_KEYS, "pool")
        if "f" not in hp:
            raise HyperparameterError("pool hparameters need 'f' (the window size), e.g. {'f': 2, 'stride': 2}")
        return cls(f=hp["f"], stride=hp.get("stride"), pad=hp.get("pad", 0), dilation=hp.get("dilation", 1),
                   mode=mode, ceil_mode=hp.get("ceil_mode", False),
                   count_include_pad=hp.get("count_include_pad", True))

    def geometry(self, in_hw) -> WindowGeometry:
        """Resolve output size and pads for an input of ``in_hw``."""
        return pool_geometry(in_hw, self.f, self.stride, self.dilation, self.pad, self.ceil_mode)
