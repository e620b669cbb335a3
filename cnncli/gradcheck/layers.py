"""Entry points: check the engine's gradients of one conv or pool layer call."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..engine import ConvParams, PoolParams
from ..engine.params import without_window
from ..engine.layout import check_layout, nchw_to_nhwc, weights_nchw_to_nhwc, window_of
from ..engine.shapes import check_conv_shapes, check_layer_fits, raise_w_shape_error
from ..errors import HyperparameterError, InputError, ShapeError
from ..io.text import read_hyperparameters
from .context import Progress
from .core import DEFAULT_EPS, DEFAULT_TOL, check_problem, validate_settings
from .results import CheckResult, relayout
from .pool_problem import PoolProblem
from .problems import ConvProblem

NCHW_PERMS = {"dA_prev": ((0, 3, 1, 2), "mchw"), "dW": ((3, 2, 0, 1), "oihw")}


def _as_float64(x, name: str, notes: list) -> np.ndarray:
    """A float64 *copy* of ``x`` (the caller's array is never touched), refusing non-finite values."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"{name} has dtype {x.dtype}; expected a numeric array (integer, bool or float)")
    if x.dtype != np.float64:
        notes.append(f"{name} ({x.dtype}) is checked in float64")
    out = np.array(x, dtype=np.float64, copy=True)
    refuse_non_finite(name, out)
    return out


def refuse_non_finite(name: str, x, bad: Optional[int] = None) -> None:
    """Refuse an input with ``bad`` NaN/inf values (counted in ``x`` when not given): gradients are checked at
    finite points only.

    Raises
    ------
    InputError
        ``"A_prev holds 1 NaN/inf value(s); checks need finite ones"`` (fits 80 columns).
    """
    bad = int(np.count_nonzero(~np.isfinite(x))) if bad is None else bad
    if bad:
        raise InputError(f"{name} holds {bad} NaN/inf value(s); checks need finite ones")


def _upstream(grad, shape, seed, notes: list, layout: str, name: str) -> np.ndarray:
    """The upstream gradient G in NHWC: ``grad`` if given, else standard normal from ``seed``."""
    if grad is None:
        return np.random.default_rng(seed).standard_normal(shape)
    G = _as_float64(grad, name, notes)
    if layout == "nchw" and G.ndim == 4:
        G = np.ascontiguousarray(nchw_to_nhwc(G))
    if G.shape != tuple(shape):
        raise ShapeError(f"{name} must have the layer output's shape {tuple(shape)} (NHWC), got {G.shape}")
    return G


def gradcheck_conv(A_prev, W, b=None, params: Union[ConvParams, dict, None] = None, *, grad=None,
                   layout: str = "nhwc",
                   method: str = "auto", samples: Optional[int] = None, eps: float = DEFAULT_EPS,
                   tol: float = DEFAULT_TOL, seed: Optional[int] = 0, progress: Optional[Progress] = None,
                   label: str = "") -> CheckResult:
    """Check the engine's convolution gradients dA_prev, dW, db against central differences.

    The loss is ``L = sum(G * conv2d(A_prev, W, b))`` with ``G = grad`` or, when
    omitted, a standard normal array drawn from ``seed``. Everything runs in
    float64 on copies: the caller's arrays are never modified.

    Parameters
    ----------
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C_prev)
        (``(m, C, H, W)`` with ``layout="nchw"``.)
    W : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C)
        (PyTorch's ``(C_out, C_in/groups, kH, kW)`` with ``layout="nchw"``.)
    b : ndarray, shape (n_C,) or (1, 1, 1, n_C), optional
        Zeros when omitted.
    params : ConvParams or dict, optional
        A dict is the classic exercise's ``hparameters`` (``{"pad": 1, "stride": 2}``,
        see :meth:`cnncli.engine.ConvParams.from_hparameters`).
    grad : ndarray, shape (m, n_H, n_W, n_C), optional
        Upstream gradient (in ``layout``).
    layout : {"nhwc", "nchw"}
    method, samples, eps, tol, seed, progress
        See :func:`cnncli.gradcheck.core.check_problem`.
    label : str
        Name of the configuration in reports.

    Returns
    -------
    CheckResult
        Gradients ``dA_prev``, ``dW``, ``db``; indices in ``layout``.

    Raises
    ------
    ShapeError, HyperparameterError
        As :func:`cnncli.engine.conv2d`, ``grad`` of the wrong shape, invalid settings
        (method, samples, eps, tol, seed < 0), or ``params`` neither ConvParams nor a dict.
    InputError
        Non-numeric or non-finite inputs.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = gradcheck_conv(rng.normal(size=(2, 5, 5, 3)), rng.normal(size=(3, 3, 3, 4)),
    ...                    params=ConvParams(pad=1), method="full")
    >>> r.passed, [g.name for g in r.gradients]
    (True, ['dA_prev', 'dW', 'db'])
    """
    method, _ = validate_settings(method, samples, eps, tol, seed)  # before the seed draws the upstream gradient
    layout = _layout_of(params, layout)
    try:
        params = as_params(params, "conv", window_of(W, layout))
    except ShapeError:  # a dict's "f" disagrees with W's window: W's own shape may be why, as in conv_forward
        raise_w_shape_error(A_prev, W, b, params.get("groups", 1) if isinstance(params, dict) else 1, layout)
        raise
    layout = check_layout(layout)
    notes: list = []
    A = _as_float64(A_prev, "A_prev", notes)
    Wt = _as_float64(W, "W", notes)
    if layout == "nchw":
        A, Wt = np.ascontiguousarray(nchw_to_nhwc(A)), np.ascontiguousarray(weights_nchw_to_nhwc(Wt))
    bias = None if b is None else _as_float64(b, "b", notes)
    check_conv_shapes(A.shape, Wt.shape, None if bias is None else bias.shape, params.groups)
    n_C = Wt.shape[3]
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    check_layer_fits(geom, A.shape[0], A.shape[3], n_C, 8)  # before G is drawn
    out_shape = geom.out_hw + (n_C,)
    bias = np.zeros(n_C) if bias is None else bias.reshape(n_C)
    G = _upstream(grad, (A.shape[0],) + out_shape, seed, notes, layout, "--grad")
    problem = ConvProblem(A, Wt, bias, params, G)
    result = check_problem(problem, method=method, samples=samples, eps=eps, tol=tol, seed=seed,
                           progress=progress, label=label, params=describe_params(params), notes=notes)
    return relayout(result, NCHW_PERMS) if layout == "nchw" else result


def gradcheck_pool(A_prev, params: Union[PoolParams, dict, None] = None, *, grad=None, layout: str = "nhwc",
                   method: str = "auto", samples: Optional[int] = None, eps: float = DEFAULT_EPS,
                   tol: float = DEFAULT_TOL, seed: Optional[int] = 0, progress: Optional[Progress] = None,
                   label: str = "") -> CheckResult:
    """Check the engine's pooling gradient dA_prev against central differences.

    Max-pool kinks (windows whose two largest values lie within twice the step,
    ties included) are excluded from the verdict and counted in ``kinks``.

    Parameters
    ----------
    A_prev : ndarray, shape (m, n_H_prev, n_W_prev, n_C)
        (``(m, C, H, W)`` with ``layout="nchw"``.)
    params : PoolParams or dict, optional
        A dict is the exercise's ``hparameters`` (``{"f": 2, "stride": 2}``), with an
        optional ``"mode"`` (see :meth:`cnncli.engine.PoolParams.from_hparameters`).
    grad : ndarray, shape (m, n_H, n_W, n_C), optional
        Upstream gradient (in ``layout``); standard normal from ``seed`` when omitted.
    layout : {"nhwc", "nchw"}
    method, samples, eps, tol, seed, progress, label
        As :func:`gradcheck_conv`.

    Returns
    -------
    CheckResult
        One gradient, ``dA_prev``.

    Raises
    ------
    ShapeError, HyperparameterError, InputError
        As :func:`gradcheck_conv`.

    Examples
    --------
    >>> x = np.array([[1, 1], [0, 2]]).reshape(1, 2, 2, 1)   # an integer image with a tie
    >>> r = gradcheck_pool(np.concatenate([x, x]), PoolParams(f=(1, 2), stride=1), method="full")
    >>> r.passed, r.gradients[0].kinks
    (True, 4)
    """
    method, _ = validate_settings(method, samples, eps, tol, seed)
    layout = _layout_of(params, layout)
    params = as_params(params, "pool")
    layout = check_layout(layout)
    notes: list = []
    A = _as_float64(A_prev, "A_prev", notes)
    if layout == "nchw":
        A = np.ascontiguousarray(nchw_to_nhwc(A))
    if A.ndim != 4:
        raise ShapeError(f"A_prev must be 4-D (m, n_H, n_W, n_C), got shape {A.shape}")
    geom = params.geometry(A.shape[1:3])
    check_layer_fits(geom, A.shape[0], A.shape[3], A.shape[3], 8, pool=True)  # before G is drawn
    G = _upstream(grad, (A.shape[0],) + geom.out_hw + (A.shape[3],), seed, notes, layout,
                  "--grad")
    problem = PoolProblem(A, params, G)
    result = check_problem(problem, method=method, samples=samples, eps=eps, tol=tol, seed=seed,
                           progress=progress, label=label, params=describe_params(params), notes=notes)
    return relayout(result, NCHW_PERMS) if layout == "nchw" else result


def _layout_of(params, layout: str) -> str:
    """The layout: an hparameters dict's ``"layout"`` (as conv_forward reads it) when the keyword is left at nhwc."""
    if not (isinstance(params, dict) and "layout" in params):
        return layout
    given = params["layout"]
    if _word(layout) != "nhwc" and _word(given) != _word(layout):
        raise HyperparameterError(f"layout given twice: layout={layout!r} and hparameters['layout']={given!r}")
    return given


def _word(value):
    """A word in lower case without surrounding blanks (anything else as it is)."""
    return value.strip().lower() if isinstance(value, str) else value


def as_params(params, kind: str, window=None):
    """``params`` as ConvParams/PoolParams: None gives the defaults, an exercise-style dict is converted.

    ``window`` is W's ``(kH, kW)`` (conv): a conv dict's ``"f"`` must be it, as in ``conv_forward``.

    Raises
    ------
    HyperparameterError
        Anything else, or a dict with unknown keys / without a pool's ``f``.
    ShapeError
        A conv dict's ``"f"`` is not ``window``.
    """
    want = ConvParams if kind == "conv" else PoolParams
    if params is None:
        return want()
    if isinstance(params, want):
        return params
    if isinstance(params, dict):
        if kind == "conv":
            return ConvParams.from_hparameters(without_window(read_hyperparameters(params), window))
        hp = dict(params)
        mode = hp.pop("mode", "max")
        return PoolParams.from_hparameters(read_hyperparameters(hp), mode)
    extra = " (plus 'mode')" if kind == "pool" else ""
    raise HyperparameterError(f"gradcheck_{kind} needs a {want.__name__} or an exercise-style hparameters "
                              f"dict{extra} as params, e.g. {{'pad': 1, 'stride': 2}}; got {type(params).__name__}")


def describe_params(params) -> dict:
    """Hyperparameters as a JSON-ready dict."""
    d = {}
    for key, value in vars(params).items():
        d[key] = list(value) if isinstance(value, tuple) else value
    return d
