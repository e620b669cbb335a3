"""Conversions between PyTorch's NCHW layout and the engine's NHWC layout.

The engine computes in NHWC (the classic exercise's layout); ``layout="nchw"``
converts inputs on the way in and results on the way out, nothing more.
"""

from __future__ import annotations

import numpy as np

from ..errors import HyperparameterError, ShapeError

LAYOUTS = ("nhwc", "nchw")


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is ``"nhwc"`` or ``"nchw"``, else raise."""
    if layout not in LAYOUTS:
        raise HyperparameterError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    return layout


def _need_4d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ShapeError(f"{name} must be 4-D, got shape {x.shape}")
    return x


def nchw_to_nhwc(A) -> np.ndarray:
    """(m, C, H, W) -> (m, H, W, C), a view."""
    return _need_4d(A, "A_prev").transpose(0, 2, 3, 1)


def nhwc_to_nchw(A) -> np.ndarray:
    """(m, H, W, C) -> (m, C, H, W), a view."""
    return _need_4d(A, "array").transpose(0, 3, 1, 2)


def weights_nchw_to_nhwc(W) -> np.ndarray:
    """PyTorch (C_out, C_in/groups, kH, kW) -> (kH, kW, C_in/groups, C_out), a view."""
    return _need_4d(W, "W").transpose(2, 3, 1, 0)


def weights_nhwc_to_nchw(W) -> np.ndarray:
    """(kH, kW, C_in/groups, C_out) -> PyTorch (C_out, C_in/groups, kH, kW), a view."""
    return _need_4d(W, "W").transpose(3, 2, 0, 1)


def conv_in(A_prev, W, b, layout: str):
    """Inputs of a convolution in ``layout`` -> NHWC views (b unchanged: (n_C,) either way)."""
    if layout == "nchw":
        return nchw_to_nhwc(A_prev), weights_nchw_to_nhwc(W), b
    return A_prev, W, b


def conv_out_grads(dA_prev, dW, db):
    """NHWC gradients -> NCHW (dA_prev as (m, C, H, W), dW as PyTorch's, db unchanged)."""
    return nhwc_to_nchw(dA_prev), weights_nhwc_to_nchw(dW), db
