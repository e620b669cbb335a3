"""The classic "convolution step by step" functions, backed by the fast engine.

Same names, signatures, argument names and cache conventions as the exercise,
so a notebook can ``from cnncli import *`` and run unchanged::

    Z, cache = conv_forward(A_prev, W, b, {"stride": 2, "pad": 1})
    dA_prev, dW, db = conv_backward(dZ, cache)

``hparameters`` may also carry ``"dilation"``, ``"groups"`` (conv) and
``"pad"``, ``"dilation"``, ``"ceil_mode"``, ``"count_include_pad"`` (pool), and
``"layout"`` (``"nhwc"`` or ``"nchw"``); a conv's may carry ``"f"`` when it is W's
window (students pass one dict to conv and pool). The caller's dict is never modified.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward
from .engine.layout import window_of
from .engine.params import CONV_API_KEYS, POOL_KEYS, check_hparameters, without_window
from .engine.shapes import raise_w_shape_error
from . import __all__ as _PACKAGE_NAMES
from .errors import HyperparameterError, ShapeError
from .io.text import read_hyperparameters, read_pad


def _conv_params(hp: dict, A_prev, W, b) -> ConvParams:
    """The record of a checked ``hparameters`` copy, its ``"f"`` checked against W; text values read first."""
    layout, read = hp.get("layout", "nhwc"), read_hyperparameters(hp)
    try:
        return ConvParams.from_hparameters(without_window(read, window_of(W, layout)))
    except ShapeError:  # "f" disagrees with W's window: W's own shape may be why (PyTorch's layout)
        raise_w_shape_error(A_prev, W, b, read.get("groups", 1), layout)
        raise


def _pool_params(hp: dict, mode) -> PoolParams:
    """The record of a checked ``hparameters`` copy and ``mode``; text values are read first."""
    return PoolParams.from_hparameters(read_hyperparameters(hp), mode)


def zero_pad(X, pad):
    """Pad the height and width of every image of a batch with zeros.

    Parameters
    ----------
    X : ndarray, shape (m, n_H, n_W, n_C)
    pad : int, (pad_h, pad_w), (top, bottom, left, right) or "valid"
        ``"same"`` needs a kernel size and is refused here.

    Returns
    -------
    X_pad : ndarray, shape (m, n_H + top + bottom, n_W + left + right, n_C)

    Raises
    ------
    HyperparameterError
        Negative or malformed ``pad``.
    ShapeError
        ``X`` not 4-D.

    Examples
    --------
    >>> zero_pad(np.ones((1, 2, 2, 1)), 1)[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 1., 0.],
           [0., 1., 1., 0.],
           [0., 0., 0., 0.]])
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ShapeError(f"X must be 4-D (m, n_H, n_W, n_C), got shape {X.shape}")
    pads = read_pad(pad)
    if pads == "same":
        raise HyperparameterError("zero_pad needs explicit pads; 'same' depends on the kernel size")
    t, b, l, r = pads
    return np.pad(X, ((0, 0), (t, b), (l, r), (0, 0)), mode="constant", constant_values=0)


def conv_single_step(a_slice_prev, W, b):
    """One filter on one window: ``sum(a_slice_prev * W) + b``.

    Parameters
    ----------
    a_slice_prev : ndarray, shape (f, f, n_C_prev)
    W : ndarray, shape (f, f, n_C_prev)
    b : ndarray, shape (1, 1, 1) or scalar

    Returns
    -------
    Z : numpy floating scalar
        Of the inputs' floating dtype (``np.float64`` for float64 inputs, as the
        exercise's tests require; ``np.float64`` for integer inputs), not a Python float.

    Raises
    ------
    ShapeError
        The window and the filter differ in shape, or ``b`` is not one value.

    Examples
    --------
    >>> type(conv_single_step(np.ones((2, 2, 1)), np.ones((2, 2, 1)), np.ones((1, 1, 1))))
    <class 'numpy.float64'>
    """
    a_slice_prev, W, b = np.asarray(a_slice_prev), np.asarray(W), np.asarray(b)
    if a_slice_prev.shape != W.shape:
        raise ShapeError(f"a_slice_prev {a_slice_prev.shape} and W {W.shape} must have the same shape")
    if b.size != 1:
        raise ShapeError(f"b must hold one value (shape (1, 1, 1) or a scalar), got shape {b.shape}")
    dtype = np.result_type(a_slice_prev, W, b)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    return dtype.type(np.sum(a_slice_prev * W, dtype=dtype) + b.reshape(()).astype(dtype))


def conv_forward(A_prev, W, b, hparameters, *, layout: Optional[str] = None):
    """Convolution forward pass, as the exercise's ``conv_forward``.

    Parameters
    ----------
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
    W : ndarray, shape (f, f, n_C_prev // groups, n_C)
    b : ndarray, shape (1, 1, 1, n_C) or (n_C,)
    hparameters : dict
        ``"stride"`` and ``"pad"``; optionally ``"dilation"``, ``"groups"``, ``"layout"``, and
        ``"f"`` when it is W's window (one dict for conv and pool).
    layout : {"nhwc", "nchw"}, optional
        Overrides ``hparameters["layout"]``; NCHW takes PyTorch's layouts.

    Returns
    -------
    Z : ndarray, shape (m, n_H, n_W, n_C)
    cache : tuple
        ``(A_prev, W, b, hparameters)`` for :func:`conv_backward`.

    Raises
    ------
    ShapeError, HyperparameterError
        Mismatched shapes or invalid hyperparameters; the message names the values.
    """
    hp = check_hparameters(hparameters, CONV_API_KEYS, "conv")
    if layout is not None:
        hp["layout"] = layout
    Z = conv2d(A_prev, W, b, _conv_params(hp, A_prev, W, b), layout=hp.get("layout", "nhwc"))
    return Z, (A_prev, W, b, hp)


def conv_backward(dZ, cache):
    """Convolution backward pass, as the exercise's ``conv_backward``.

    Parameters
    ----------
    dZ : ndarray, shape (m, n_H, n_W, n_C)
    cache : tuple
        ``(A_prev, W, b, hparameters)`` from :func:`conv_forward`.

    Returns
    -------
    dA_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
    dW : ndarray, shape (f, f, n_C_prev // groups, n_C)
    db : ndarray, shaped like ``b`` (``(1, 1, 1, n_C)`` in the exercise)

    Raises
    ------
    ShapeError
        ``dZ`` is not of the forward output's shape.
    """
    A_prev, W, b, hp = cache
    grads = conv2d_backward(dZ, A_prev, W, _conv_params(hp, A_prev, W, b), layout=hp.get("layout", "nhwc"))
    db = grads.db
    if b is not None and np.ndim(b) == 4:
        db = db.reshape(1, 1, 1, -1)
    return grads.dA_prev, grads.dW, db


def pool_forward(A_prev, hparameters, mode="max", *, layout: Optional[str] = None):
    """Pooling forward pass, as the exercise's ``pool_forward``.

    Parameters
    ----------
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
    hparameters : dict
        ``"f"`` and ``"stride"`` (default ``f``); optionally ``"pad"``, ``"dilation"``,
        ``"ceil_mode"``, ``"count_include_pad"``, ``"layout"``.
    mode : {"max", "average"}
        ``"avg"`` accepted.
    layout : {"nhwc", "nchw"}, optional
        Overrides ``hparameters["layout"]``.

    Returns
    -------
    A : ndarray, shape (m, n_H, n_W, n_C)
    cache : tuple
        ``(A_prev, hparameters)`` for :func:`pool_backward`.

    Raises
    ------
    ShapeError, HyperparameterError
        Invalid input or hyperparameters; the message names the values.
    """
    hp = check_hparameters(hparameters, POOL_KEYS, "pool")
    if layout is not None:
        hp["layout"] = layout
    A = pool2d(A_prev, _pool_params(hp, mode), layout=hp.get("layout", "nhwc"))
    return A, (A_prev, hp)


def pool_backward(dA, cache, mode="max"):
    """Pooling backward pass, as the exercise's ``pool_backward``.

    Max pooling sends each window's gradient to its first maximum in row-major
    order (one position, even on ties).

    Parameters
    ----------
    dA : ndarray, shape (m, n_H, n_W, n_C)
    cache : tuple
        ``(A_prev, hparameters)`` from :func:`pool_forward`.
    mode : {"max", "average"}

    Returns
    -------
    dA_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)

    Raises
    ------
    ShapeError
        ``dA`` is not of the forward output's shape.
    """
    A_prev, hp = cache
    return pool2d_backward(dA, A_prev, _pool_params(hp, mode), layout=hp.get("layout", "nhwc"))


def create_mask_from_window(x):
    """Mask of the position that receives a max window's gradient.

    Parameters
    ----------
    x : ndarray, shape (f, f)

    Returns
    -------
    mask : ndarray of bool, shape (f, f)
        True at the maximum. NOTE: on ties only the first maximum in row-major
        order is True, so the gradient is sent once (the exercise's
        ``x == np.max(x)`` would send it to every tied position).

    Examples
    --------
    >>> create_mask_from_window(np.array([[1, 3], [3, 2]]))
    array([[False,  True],
           [False, False]])
    """
    x = np.asarray(x)
    mask = np.zeros(x.shape, dtype=bool)
    if x.size:
        mask[np.unravel_index(np.argmax(x), x.shape)] = True
    return mask


def distribute_value(dz, shape):
    """Spread ``dz`` evenly over a window of ``shape`` (average-pool backward).

    Parameters
    ----------
    dz : float
    shape : (int, int)
        ``(n_H, n_W)`` of the window.

    Returns
    -------
    a : ndarray, shape ``shape``
        Every entry ``dz / (n_H * n_W)``.

    Raises
    ------
    ShapeError
        ``shape`` is not two positive sizes.

    Examples
    --------
    >>> distribute_value(2.0, (2, 2))
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    try:
        n_H, n_W = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape must be a pair (n_H, n_W), got {shape!r}") from None
    if n_H < 1 or n_W < 1:
        raise ShapeError(f"shape must be two sizes >= 1, got {shape!r}")
    return np.full((n_H, n_W), float(np.asarray(dz).item()) / (n_H * n_W))


__all__ = list(_PACKAGE_NAMES)  # one list: the package resolves these lazily without importing this module
