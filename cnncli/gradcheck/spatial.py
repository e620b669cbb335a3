"""Hints about one array: where in one gradient the errors sit.

- :func:`spatial_maps` reduces a gradient's errors to its height x width;
- :func:`pattern_hint` names a likely cause from that map, only on real evidence:
  errors only on the border point at the padding, stripes at the stride.

Used by the checker (:mod:`.core`, per gradient) and by ``--impl`` (:mod:`.impl`,
per comparison); the rules over many configurations are :mod:`.diagnose`'s.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: The axes holding height and width, per axis naming of a gradient.
SPATIAL_AXES = {"mhwc": (1, 2), "mchw": (2, 3), "hwio": (0, 1), "oihw": (2, 3)}
BORDER_HINT = "errors only along the border: look at the padding"


def spatial_maps(errors: np.ndarray, failing: np.ndarray, axes: str):
    """One gradient's errors reduced to its height x width.

    Parameters
    ----------
    errors : ndarray, 4-D
        ``|a - n|`` per element, NaN where not checked.
    failing : ndarray of bool, shape of ``errors``
        Elements failing the pass/fail test.
    axes : str
        Axis letters of the gradient, e.g. ``"mhwc"``, ``"hwio"``.

    Returns
    -------
    error_map : ndarray, shape (H, W), or None
        Max of ``errors`` over the other axes, NaN where nothing was checked.
    failing_map : ndarray of bool, shape (H, W), or None
        Whether any element at that position fails.
        Both None when the array has no height and width or nothing was checked.
    """
    spatial = SPATIAL_AXES.get(axes)
    if spatial is None or errors.ndim != 4 or np.all(np.isnan(errors)):
        return None, None
    other = tuple(a for a in range(4) if a not in spatial)
    with np.errstate(all="ignore"):
        checked = ~np.all(np.isnan(errors), axis=other)
        top = np.max(np.where(np.isnan(errors), -np.inf, errors), axis=other)
    return np.where(checked, top, np.nan), np.any(failing, axis=other)


def sparse_spatial_maps(shape, idx: np.ndarray, errors: np.ndarray, failing: np.ndarray, axes: str,
                        with_errors: Optional[int] = None):
    """:func:`spatial_maps` of a gradient of ``shape`` known only at the flat indices ``idx``.

    ``errors`` and ``failing`` are given per element of ``idx``; the maps are the
    same as those of the dense arrays (NaN / unchecked elsewhere), without them.
    ``with_errors``: the error map only where height x width is at most that many values (else None:
    the failing map alone, which the pattern hints read).
    """
    spatial = SPATIAL_AXES.get(axes)
    if spatial is None or len(shape) != 4 or len(idx) == 0:
        return None, None
    coords = np.unravel_index(np.asarray(idx, dtype=np.int64), shape)
    at = (coords[spatial[0]], coords[spatial[1]])
    hw = (shape[spatial[0]], shape[spatial[1]])
    error_map = None
    if with_errors is None or hw[0] * hw[1] <= with_errors:
        error_map = np.full(hw, np.nan)
        np.fmax.at(error_map, at, errors)  # fmax: a NaN (not yet checked) gives way to any value
    failing_map = np.zeros(hw, dtype=bool)
    np.logical_or.at(failing_map, at, failing)
    return error_map, failing_map


def border_only(failing_map: np.ndarray) -> bool:
    """Whether every failing position lies on the outermost rows/columns (of a map at least 3x3)."""
    return bool(min(failing_map.shape) >= 3 and failing_map.any() and not failing_map[1:-1, 1:-1].any())


def _sides(failing_map: np.ndarray) -> int:
    """How many of the four sides (top, bottom, left, right) hold a failing position."""
    return int(failing_map[0].any()) + int(failing_map[-1].any()) + int(failing_map[:, 0].any()) + \
        int(failing_map[:, -1].any())


def _period(lines: np.ndarray) -> int:
    """The largest period of the failing rows (columns) ``lines``: gcd of their gaps; 0 for fewer than 2."""
    return int(np.gcd.reduce(np.diff(lines))) if lines.size >= 2 else 0


def pattern_hint(failing_map: Optional[np.ndarray], pads=None, stride=None) -> Optional[str]:
    """A likely cause from where the failing positions sit, only on real evidence; else None.

    - ``BORDER_HINT`` when they all sit on the border *and* either the layer pads
      (``pads``: top, bottom, left, right, any > 0) or at least two of them fail on
      more than one side: one bad element that happens to be at a corner of an
      unpadded layer says nothing about padding.
    - A stripe hint when the failing rows (columns) are at least two, fill at most
      half of them, and repeat with a period > 1 that equals the layer's stride
      along that axis (any period > 1 when ``stride`` is unknown): a single bad
      row is no stripe, and a stride-1 layer has no stride to blame.

    ``pads``/``stride`` None mean unknown (the evidence rules above then decide alone).
    """
    if failing_map is None or min(failing_map.shape) < 3 or not failing_map.any() or failing_map.all():
        return None
    if border_only(failing_map):
        padded = pads is not None and any(int(p) > 0 for p in pads)
        if padded or (int(failing_map.sum()) >= 2 and _sides(failing_map) >= 2):
            return BORDER_HINT
    rows, cols = np.flatnonzero(failing_map.any(axis=1)), np.flatnonzero(failing_map.any(axis=0))
    n_h, n_w = failing_map.shape
    for axis, lines, n, what in ((0, rows, n_h, "rows"), (1, cols, n_w, "columns")):
        period = _period(lines)
        fits = period > 1 if stride is None else (int(stride[axis]) > 1 and period == int(stride[axis]))
        if fits and lines.size <= n // 2 and lines.size < n - 1:
            return f"errors in {what} {', '.join(map(str, lines))} only (a stripe): look at the stride"
    return None
