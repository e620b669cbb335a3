"""What a refusal of a layer call's arrays can suggest: PyTorch's filters read in the classic layout.

A W saved from PyTorch is ``(C_out, C_in/groups, kH, kW)``; read as the classic
``(f, f, n_C_prev/groups, n_C)`` its channels, groups or window disagree with A_prev.
When PyTorch's reading makes every array agree, the refusal says so and what to give.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..engine.params import ConvParams
from ..errors import HyperparameterError


def pytorch_filters_hint(A_shape: Sequence[int], W_shape: Sequence[int], ref: str,
                         params: ConvParams) -> Optional[str]:
    """The message for filters in PyTorch's layout read as NHWC, when PyTorch's reading agrees, else None.

    Parameters
    ----------
    A_shape : (int, int, int, int)
        A_prev as stored: (m, H, W, C) or PyTorch's (m, C, H, W).
    W_shape : (C_out, C_in/groups, kH, kW)
        W as stored, read as PyTorch's.
    ref : str
        Where W came from, for the message.
    params : ConvParams
        Stride, pad, dilation and groups of the call.

    Returns
    -------
    str or None
        ``"W 'w.npy' is (8, 4, 3, 3) as in PyTorch: give --layout nchw"`` when A_prev reads as NCHW
        too, ``"...; NHWC wants (3, 3, 4, 8)"`` when it reads as NHWC; None when PyTorch's reading
        does not agree either.

    Raises
    ------
    Nothing.

    Examples
    --------
    >>> pytorch_filters_hint((2, 4, 6, 6), (8, 4, 3, 3), "w.npy", ConvParams())
    "W 'w.npy' is (8, 4, 3, 3) as in PyTorch: give --layout nchw"
    """
    A, W, groups = tuple(A_shape), tuple(W_shape), params.groups
    # PyTorch's reading must fit: C_in/groups matches A_prev's channels, the groups divide C_out, the window
    # fits the input, and its kernel kH x kW is square (as nearly every kernel is), which NHWC filters
    # (f, f, C_in, C_out) read that way seldom are.
    if len(A) != 4 or len(W) != 4 or W[2] != W[3] or W[0] % groups:
        return None
    head = f"W {ref!r} is {W} as in PyTorch"  # (C_out, C_in/groups, kH, kW), not (f, f, C_in/groups, C_out)
    # A_prev read as (m, C, H, W) too, or as NHWC data
    for channels, hw, hint in ((A[1], A[2:4], f"{head}: give --layout nchw"),
                               (A[3], A[1:3], f"{head}; NHWC wants {(W[2], W[3], W[1], W[0])}")):
        if W[1] * groups == channels and _window_fits(params, hw, W[2:4]):
            return hint
    return None


def _window_fits(params: ConvParams, in_hw, kernel_hw) -> bool:
    """Whether a ``kernel_hw`` window of ``params`` fits an ``in_hw`` input."""
    try:
        params.geometry(tuple(in_hw), tuple(kernel_hw))
    except HyperparameterError:
        return False
    return True
