"""Conversions between PyTorch's NCHW layout and the engine's NHWC layout.

The engine computes in NHWC (the classic exercise's layout); ``layout="nchw"``
converts inputs on the way in and results on the way out, nothing more.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import HyperparameterError, ShapeError

LAYOUTS = ("nhwc", "nchw")

# Axis permutations NCHW -> NHWC and back, for activations (m, C, H, W) and for
# weights (PyTorch's (C_out, C_in/groups, kH, kW) against (kH, kW, C_in/groups, C_out)).
_TO_NHWC = {False: (0, 2, 3, 1), True: (2, 3, 1, 0)}
_TO_NCHW = {False: (0, 3, 1, 2), True: (3, 2, 0, 1)}


def check_layout(layout: str) -> str:
    """``layout`` as ``"nhwc"`` or ``"nchw"`` (given in any case, as every word of cnncli), else raise."""
    word = layout.strip().lower() if isinstance(layout, str) else layout
    if word not in LAYOUTS:
        raise HyperparameterError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    return word


def window_of(W, layout: str) -> Optional[Tuple[int, int]]:
    """The window ``(kH, kW)`` of filters ``W`` given in ``layout``, or None when W is not a 4-D array."""
    try:
        shape = np.shape(W)
    except ValueError:  # a ragged nested list: the engine says so
        return None
    if len(shape) != 4:
        return None
    return tuple(shape[2:4]) if check_layout(layout) == "nchw" else tuple(shape[:2])


def _need_4d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ShapeError(f"{name} must be 4-D, got shape {x.shape}")
    return x


def nchw_to_nhwc(A) -> np.ndarray:
    """(m, C, H, W) -> (m, H, W, C), a view."""
    return _need_4d(A, "A_prev").transpose(_TO_NHWC[False])


def nhwc_to_nchw(A) -> np.ndarray:
    """(m, H, W, C) -> (m, C, H, W), a view."""
    return _need_4d(A, "array").transpose(_TO_NCHW[False])


def weights_nchw_to_nhwc(W) -> np.ndarray:
    """PyTorch (C_out, C_in/groups, kH, kW) -> (kH, kW, C_in/groups, C_out), a view."""
    return _need_4d(W, "W").transpose(_TO_NHWC[True])


def weights_nhwc_to_nchw(W) -> np.ndarray:
    """(kH, kW, C_in/groups, C_out) -> PyTorch (C_out, C_in/groups, kH, kW), a view."""
    return _need_4d(W, "W").transpose(_TO_NCHW[True])


def conv_in(A_prev, W, b, layout: str):
    """Inputs of a convolution in ``layout`` -> NHWC views (b unchanged: (n_C,) either way)."""
    if check_layout(layout) == "nchw":
        return nchw_to_nhwc(A_prev), weights_nchw_to_nhwc(W), b
    return A_prev, W, b


def conv_out_grads(dA_prev, dW, db):
    """NHWC gradients -> NCHW (dA_prev as (m, C, H, W), dW as PyTorch's, db unchanged; a None dA_prev stays None)."""
    return None if dA_prev is None else nhwc_to_nchw(dA_prev), weights_nhwc_to_nchw(dW), db


def to_nhwc(x, layout: str, *, weights: bool = False) -> np.ndarray:
    """A 4-D array in ``layout`` (activations, or conv weights when ``weights``) -> NHWC, a view."""
    x = _need_4d(x, "W" if weights else "array")
    return x.transpose(_TO_NHWC[weights]) if check_layout(layout) == "nchw" else x


def from_nhwc(x, layout: str, *, weights: bool = False) -> np.ndarray:
    """A 4-D NHWC array (activations, or conv weights when ``weights``) -> ``layout``, a view."""
    x = _need_4d(x, "W" if weights else "array")
    return x.transpose(_TO_NCHW[weights]) if check_layout(layout) == "nchw" else x


def shape_to_nhwc(shape, layout: str, *, weights: bool = False) -> tuple:
    """A 4-D shape written in ``layout`` -> the same shape in NHWC order (for shape checks before loading).

    Examples
    --------
    >>> shape_to_nhwc((8, 3, 32, 30), "nchw"), shape_to_nhwc((16, 3, 5, 4), "nchw", weights=True)
    ((8, 32, 30, 3), (5, 4, 3, 16))
    """
    perm = _TO_NHWC[weights] if check_layout(layout) == "nchw" else range(4)
    return tuple(shape[i] for i in perm)


def shape_from_nhwc(shape, layout: str, *, weights: bool = False) -> tuple:
    """A 4-D NHWC shape -> the same shape in ``layout`` order (for messages in the user's terms).

    Examples
    --------
    >>> shape_from_nhwc((8, 32, 30, 3), "nchw"), shape_from_nhwc((5, 4, 3, 16), "nchw", weights=True)
    ((8, 3, 32, 30), (16, 3, 5, 4))
    """
    perm = _TO_NCHW[weights] if check_layout(layout) == "nchw" else range(4)
    return tuple(shape[i] for i in perm)
