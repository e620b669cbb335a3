"""Elementwise comparison metrics: from analytical and numerical values to a :class:`GradientResult`.

Shared by the checker (:mod:`.core`, :mod:`.directional`) and by ``--impl``'s
comparisons (:mod:`.impl`).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .results import GradientResult, Offender
from .spatial import SPATIAL_AXES, pattern_hint, sparse_spatial_maps, spatial_maps

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

    The values given in several parts, one after another, are :class:`Comparison`'s.
    """
    c = Comparison(shape, axes, tol, dense_limit=dense_limit)
    c.add(idx, analytical, numerical, floor)
    return c.result(name, how, kinks, pads=pads, stride=stride)


class Comparison:
    """:func:`gradient_metrics` of values given in parts (``add``: the elements of a chunk of a data set, one
    chunk after another), holding nothing per element but what the result keeps.

    Kept: the parts' norms (the norm of the parts' norms is the whole's norm), the largest error, the
    ``TOP_OFFENDERS`` largest errors, the height x width error map, ``errors`` in the gradient's shape where it
    is at most ``dense_limit`` values, and the elements failing so far (index, error, ``|n|``): whether an
    element fails depends on the largest ``|n|`` of all (:func:`element_fails`), which only grows, so an element
    passing at the largest ``|n|`` so far passes at the end (they are dropped when it grows). A passing
    comparison holds none; a failing one holds 24 bytes per element failing so far. Given in one part, the
    result is :func:`gradient_metrics`' exactly (one part's norm is its norm; the maxima and the stable ranking
    of the parts in order are the whole's).

    Parameters
    ----------
    shape : tuple of int
        The gradient's shape.
    axes : str
        Its axis letters (``"mhwc"``, ...).
    tol : float
    dense_limit : int, optional
        As :func:`gradient_metrics`'.
    """

    def __init__(self, shape, axes: str, tol: float, *, dense_limit: Optional[int] = None):
        self.shape, self.axes, self.tol, self.dense_limit = tuple(int(s) for s in shape), axes, tol, dense_limit
        limit = DENSE_ERRORS if dense_limit is None else dense_limit
        size = int(np.prod(self.shape))
        self.errors = np.full(self.shape, np.nan) if size <= limit else None
        self.count, self.scale, self.max_err, self.nan = 0, 0.0, 0.0, False
        self.norms = {"a": [], "n": [], "d": [], "floor": []}
        self.floored = False  # any floor nonzero (relative_floor: none, no floor)
        self.top = []  # (shown error, flat index, a, n), at most TOP_OFFENDERS, in ranking order
        self.fails = []  # per part: (flat index, error, |n|) of its elements failing at the scale so far
        self.spatial = SPATIAL_AXES.get(axes) if len(self.shape) == 4 else None
        self.error_map = None
        if self.spatial is not None and self.errors is None:  # dense errors give their map at the end
            hw = (self.shape[self.spatial[0]], self.shape[self.spatial[1]])
            if dense_limit is None or hw[0] * hw[1] <= dense_limit:
                self.error_map = np.full(hw, np.nan)

    def add(self, idx, analytical, numerical, floor=None) -> None:
        """The elements ``idx`` (flat) with their analytical and numerical values and rounding floor (None: 0)."""
        idx = np.asarray(idx)
        a, n = np.asarray(analytical, dtype=np.float64), np.asarray(numerical, dtype=np.float64)
        floor = np.zeros(a.shape) if floor is None else np.asarray(floor, dtype=np.float64)
        err = np.abs(a - n)
        self.count += int(len(idx))
        for key, v in (("a", a), ("n", n), ("d", a - n), ("floor", floor)):
            self.norms[key].append(norm(v))
        self.floored |= bool(floor.any())
        finite = np.abs(n[np.isfinite(n)])
        grown, self.scale = self.scale, max(self.scale, float(finite.max()) if finite.size else 0.0)
        grown = self.scale > grown
        del finite
        if np.isnan(err).any():
            self.nan = True
        elif err.size:
            self.max_err = max(self.max_err, float(np.max(err)))
        shown = np.where(np.isfinite(err), err, np.inf)
        if self.errors is not None:
            self.errors.reshape(-1)[idx] = shown
        if grown:  # the earlier parts' failing elements at the new scale (this part's are at it already)
            self._prune()
        bad = self._failing(err, np.abs(n), floor)
        if bad.any():
            self.fails.append((idx[bad], err[bad], np.abs(n[bad])))
        del bad
        rank = np.argsort(-shown, kind="stable")[:TOP_OFFENDERS]
        # NOTE: the earlier parts' first: a stable sort of both ranks ties as the whole's stable sort does
        merged = self.top + [(float(shown[r]), int(idx[r]), float(a[r]), float(n[r])) for r in rank]
        order = np.argsort(-np.array([t[0] for t in merged]), kind="stable")[:TOP_OFFENDERS]
        self.top = [merged[r] for r in order]
        if self.error_map is not None and len(idx):
            np.fmax.at(self.error_map, self._at(idx), shown)  # fmax: a NaN (not yet checked) gives way to any value

    def _failing(self, err, absn, floor) -> np.ndarray:
        """:func:`element_fails` at the largest |n| so far, and not within the floor."""
        return fails_at(err, absn, self.tol, self.scale) & ~(err <= floor)

    def _prune(self) -> None:
        """The elements failing so far, at the largest |n| so far (those passing now pass at the end)."""
        kept = []
        for i, e, absn in self.fails:
            still = fails_at(e, absn, self.tol, self.scale)
            if still.all():
                kept.append((i, e, absn))
            elif still.any():
                kept.append((i[still], e[still], absn[still]))
        self.fails = kept

    def _at(self, idx: np.ndarray) -> tuple:
        coords = np.unravel_index(np.asarray(idx, dtype=np.int64), self.shape)
        return coords[self.spatial[0]], coords[self.spatial[1]]

    def result(self, name: str, how: str, kinks: int, *, pads=None, stride=None) -> GradientResult:
        """The :class:`GradientResult` of everything added (``kinks``: the elements not checked)."""
        # every part's failing elements are at the final scale already (each add prunes where the scale grew)
        parts = [i for i, _, _ in self.fails]
        failing_idx = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, np.int64)
        error_map, hint = (self.error_map if self.count else None), None
        if self.spatial is not None:
            failing_map = None
            if self.count:
                if self.errors is not None:
                    failing_at = np.zeros(self.shape, dtype=bool)
                    failing_at.reshape(-1)[failing_idx] = True
                    # NOTE: the maps from the checked elements alone where they are few (the same maps): the dense
                    # ones take temporaries of the gradient's size
                    if self.count * SPARSE_MAPS > self.errors.size:
                        error_map, failing_map = spatial_maps(self.errors, failing_at, self.axes)
                    else:
                        checked = np.flatnonzero(~np.isnan(self.errors.reshape(-1)))
                        error_map, failing_map = sparse_spatial_maps(
                            self.shape, checked, self.errors.reshape(-1)[checked],
                            failing_at.reshape(-1)[checked], self.axes, with_errors=self.dense_limit)
                else:
                    hw = (self.shape[self.spatial[0]], self.shape[self.spatial[1]])
                    failing_map = np.zeros(hw, dtype=bool)
                    failing_map[self._at(failing_idx)] = True
            stride_of = stride if self.axes in ("mhwc", "mchw") else (1, 1)  # a kernel's offsets have no stride
            hint = pattern_hint(failing_map, pads, stride_of)
        top = tuple(Offender(tuple(int(v) for v in np.unravel_index(i, self.shape)), a, n) for _, i, a, n in self.top)
        norms = {k: norm(np.array(v)) if v else 0.0 for k, v in self.norms.items()}
        denom = norms["a"] + norms["n"]
        rel = (math.nan if not math.isfinite(denom) else norms["d"] / denom if denom > 0 else 0.0)
        rel_floor = norms["floor"] / denom if self.floored and denom > 0 else 0.0
        max_abs = math.nan if self.nan else self.max_err
        failing = int(failing_idx.size)
        threshold = max(self.tol, rel_floor)
        return GradientResult(name, self.shape, self.axes, how, rel, max_abs, self.count, 0, int(kinks), failing,
                              bool(rel <= threshold and failing == 0), top[0] if top else None, top, self.errors,
                              hint, error_map, rounding_floor=rel_floor, tolerance=threshold)


def element_fails(abs_error: np.ndarray, numerical: np.ndarray, tol: float) -> np.ndarray:
    """Elements failing ``|a - n| <= 10*tol*max|n| + 100*tol*|n|`` (max over the finite n; NaN fails)."""
    finite = np.abs(numerical[np.isfinite(numerical)])
    return fails_at(abs_error, np.abs(numerical), tol, float(finite.max()) if finite.size else 0.0)


def fails_at(abs_error: np.ndarray, abs_numerical: np.ndarray, tol: float, scale: float) -> np.ndarray:
    """:func:`element_fails` with the scale (the largest finite ``|n|``) given: its bound only grows with ``scale``,
    so an element passing at a scale passes at every larger one (:class:`Comparison` keeps no others)."""
    return ~(abs_error <= 10 * tol * scale + 100 * tol * abs_numerical)


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


