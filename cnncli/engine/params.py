"""Frozen hyperparameter records for conv and pool, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

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
    _as_int,
)
from ..errors import HyperparameterError


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
        groups = _as_int(self.groups, "groups")
        if groups < 1:
            raise HyperparameterError(f"groups must be >= 1, got {groups}")
        object.__setattr__(self, "groups", groups)

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

    def geometry(self, in_hw) -> WindowGeometry:
        """Resolve output size and pads for an input of ``in_hw``."""
        return pool_geometry(in_hw, self.f, self.stride, self.dilation, self.pad, self.ceil_mode)
