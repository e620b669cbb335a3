"""Elementwise comparison metrics: from analytical and numerical values to a :class:`GradientResult`.

Shared by the checker (:mod:`.core`, :mod:`.directional`) and by ``--impl``'s
comparisons (:mod:`.impl`).
"""

from __future__ import annotations

import math

import numpy as np

from .results import GradientResult, Offender
from .spatial import pattern_hint, sparse_spatial_maps, spatial_maps

TOP_OFFENDERS = 5
#: Gradients of at most this many elements keep ``errors`` in their own shape (NaN where not checked);
#: larger ones (a streamed data set) keep only the height x width maps, built from the checked elements.
DENSE_ERRORS = 2**24
#: The maps of a gradient are made from its checked elements where they are fewer than 1/SPARSE_MAPS of it.
SPARSE_MAPS = 16
#: The gradient of each input, by input name.
GRADIENT_NAMES = {"A_prev": "dA_prev", "W": "dW", "b": "db"}


def gradient_name(name: str) -> str:
    """``"dA_prev"`` for ``"A_prev"`` (and so on); other names unchanged."""
    return GRADIENT_NAMES.get(name, name)


def axes_of(name: str, ndim: int) -> str:
    """The axis letters of input ``name``'s gradient (``"mhwc"``, ``"hwio"``, ``"c"``)."""
    return {"A_prev": "mhwc", "W": "hwio", "b": "c"}.get(name, "abcdefgh"[:ndim])


def gradient_metrics(name, shape, axes, how, idx, analytical, numerical, kinks, tol, floor=None, *,
                     pads=None, stride=None, dense_limit=None) -> GradientResult:
    """Build a :class:`GradientResult` from elementwise analytical/numerical values at flat ``idx``.

    ``floor`` (optional, per compared element) is the absolute error float64 rounding
    alone may leave in the numerical value: an element within it never fails, and the
    relative-error threshold is ``max(tol, ||floor|| / (||a|| + ||n||))``.
    ``pads`` (top, bottom, left, right) and ``stride`` (h, w) of the layer, when known,
    decide which pattern hints the failing positions support (see :func:`.spatial.pattern_hint`;
    stripes only on input gradients, whose rows are the stride's).
    ``dense_limit``: ``errors`` in the gradient's shape only for at most that many elements (default
    ``DENSE_ERRORS``), and, when given, the height x width ``error_map`` only for at most that many positions
    (a streamed check's; without it the map is always made, as before).
    """
    limit = DENSE_ERRORS if dense_limit is None else dense_limit
    a, n = np.asarray(analytical, dtype=np.float64), np.asarray(numerical, dtype=np.float64)
    floor = np.zeros(a.shape) if floor is None else np.asarray(floor, dtype=np.float64)
    err = np.abs(a - n)
    rel = relative_error(a, n)
    rel_floor = relative_floor(floor, a, n)
    bad = element_fails(err, n, tol) & ~(err <= floor)
    shown = np.where(np.isfinite(err), err, np.inf)
    errors, error_map, hint = None, None, None
    if int(np.prod(shape)) <= limit:
        errors = np.full(shape, np.nan)
        errors.reshape(-1)[idx] = shown
    if len(shape) == 4:
        # NOTE: the maps from the checked elements alone where they are few (the same maps): the dense ones take
        # temporaries of the gradient's size (one huge streamed example's: three of its float64 size)
        if errors is not None and len(idx) * SPARSE_MAPS > errors.size:
            failing_at = np.zeros(shape, dtype=bool)
            failing_at.reshape(-1)[idx] = bad
            error_map, failing_map = spatial_maps(errors, failing_at, axes)
        else:
            error_map, failing_map = sparse_spatial_maps(shape, idx, shown, bad, axes, with_errors=dense_limit)
        stride_of = stride if axes in ("mhwc", "mchw") else (1, 1)  # a kernel's offsets have no stride
        hint = pattern_hint(failing_map, pads, stride_of)
    rank = np.argsort(-np.where(np.isfinite(err), err, np.inf), kind="stable")[:TOP_OFFENDERS]
    top = tuple(Offender(tuple(int(v) for v in np.unravel_index(idx[r], shape)), float(a[r]), float(n[r]))
                for r in rank)
    if np.isnan(err).any():  # a NaN is not "infinitely wrong": say NaN
        max_abs = math.nan
    else:
        max_abs = float(np.max(err)) if err.size else 0.0
    failing = int(bad.sum())
    threshold = max(tol, rel_floor)
    return GradientResult(name, tuple(shape), axes, how, rel, max_abs, int(len(idx)), 0, int(kinks), failing,
                          bool(rel <= threshold and failing == 0), top[0] if top else None, top, errors, hint,
                          error_map, rounding_floor=rel_floor, tolerance=threshold)


def element_fails(abs_error: np.ndarray, numerical: np.ndarray, tol: float) -> np.ndarray:
    """Elements failing ``|a - n| <= 10*tol*max|n| + 100*tol*|n|`` (max over the finite n; NaN fails)."""
    finite = np.abs(numerical[np.isfinite(numerical)])
    scale = float(finite.max()) if finite.size else 0.0
    return ~(abs_error <= 10 * tol * scale + 100 * tol * np.abs(numerical))


def norm(v: np.ndarray) -> float:
    """The 2-norm without overflow of the squares (data near 1e300 stays finite)."""
    top = float(np.max(np.abs(v))) if v.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * float(np.linalg.norm(v / top))


def relative_error(a: np.ndarray, n: np.ndarray) -> float:
    """``||a - n|| / (||a|| + ||n||)``; 0 when both are 0, NaN when the norms overflow."""
    denom = norm(a) + norm(n)
    if not math.isfinite(denom):
        return math.nan
    return norm(a - n) / denom if denom > 0 else 0.0


def relative_floor(floor: np.ndarray, a: np.ndarray, n: np.ndarray) -> float:
    """The relative error that the rounding ``floor`` (absolute, per element) alone could produce."""
    if not floor.any():
        return 0.0
    denom = norm(a) + norm(n)
    if not denom > 0:  # both exactly zero (e.g. a filter that only ever sees padding): they agree exactly
        return 0.0
    return norm(floor) / denom


