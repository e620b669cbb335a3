"""Naming the likely mistake: from where in one array the errors sit, and from the
pattern of failing configurations.

- :func:`spatial_maps` and :func:`pattern_hint`: one gradient's errors over height
  x width; errors only on the border point at the padding, stripes at the stride.
- :func:`diagnose`: a rule fires when every failing case has a property and at
  least one checked case without it passed: "errors only with stride > 1" means
  exactly that the stride-1 cases were right. The battery varies pad, stride,
  shape and mode independently enough for these patterns to separate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import numpy as np

from .userfile import SIGNATURES

if TYPE_CHECKING:  # battery imports the checker, which imports this module
    from .battery import Case

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

_RULES: Tuple[Tuple[str, Callable[["Case"], bool], str], ...] = (
    ("conv", lambda c: c.pad == 0,
     "errors only at pad = 0: a slice like [pad:-pad] is empty when pad is 0"),
    ("conv", lambda c: c.pad != 0,
     "errors only with padding (pad > 0): check zero_pad and where the padding is removed"),
    ("any", lambda c: c.stride > 1,
     "errors only with stride > 1: check the window start (vert_start = h * stride) and the output size"),
    ("any", lambda c: c.A_shape[1] != c.A_shape[2],
     "errors only on non-square inputs: are height and width swapped somewhere?"),
    ("pool", lambda c: c.stride < c.f,
     "errors only where pooling windows overlap (stride < f): check the output size, and accumulate "
     "the gradient with +=, not ="),
    ("pool", lambda c: c.mode == "average", "errors only in average pooling"),
    ("pool", lambda c: c.mode == "max", "errors only in max pooling"),
    ("conv", lambda c: c.W_shape is not None and c.W_shape[3] != c.A_shape[3],
     "errors only when n_C != n_C_prev: input and output channel axes mixed up?"),
    ("conv", lambda c: c.kernel > 1, "errors only with f > 1"),
)

# Exceptions whose message alone names the mistake: (text in the message, hint).
_EXCEPTION_HINTS: Tuple[Tuple[str, str], ...] = (
    # NOTE: recent numpy refuses float() of an array with ndim > 0 (deprecated since 1.25), which
    # the classic exercise's `float(b)` on a (1, 1, 1) bias does; the code was right on older numpy.
    ("only 0-dimensional arrays can be converted to Python scalars",
     f"numpy {np.__version__} refuses float() of a (1, 1, 1) array such as b: use b.item() or "
     "float(np.squeeze(b))"),
    ("could not be broadcast together",
     "array shapes disagree: compare the slice's shape with W's (f, f, n_C_prev) and the window bounds"),
)


def diagnose(findings, errors, cases: Dict[str, "Case"]) -> Tuple[str, ...]:
    """Likely mistakes for one function, from its findings and exceptions.

    Parameters
    ----------
    findings : sequence of Finding
    errors : sequence of UserException
    cases : dict
        Battery cases by name (helper-function trials have no case and no pattern).

    Returns
    -------
    tuple of str
        Empty when nothing failed or no pattern is clear.
    """
    failed = [f for f in findings if not f.passed]
    if not failed and not errors:
        return ()
    hints: List[str] = []
    for text, hint in _EXCEPTION_HINTS:
        if any(text in e.exception for e in errors) and hint not in hints:
            hints.append(hint)
    # A TypeError before any line of the user's file ran: the call itself did not fit the signature.
    for e in errors:
        hint = f"expected {SIGNATURES[e.function]} (the classic exercise's signature)"
        if e.line is None and e.exception.startswith("TypeError") and e.function in SIGNATURES and hint not in hints:
            hints.append(hint)
    bad_q = {f.quantity for f in failed}
    all_q = {f.quantity for f in findings}
    if bad_q == {"db"} and len(all_q) > 1:
        hints.append("only the bias gradient db is wrong")
    elif bad_q and bad_q < all_q and not errors:
        hints.append(f"only {', '.join(sorted(bad_q))} wrong; {', '.join(sorted(all_q - bad_q))} right")
    grads = [f for f in failed if f.quantity == "dA_prev" and f.detail == ""]
    if grads and all(f.border_only for f in grads):
        hints.append("dA_prev is wrong only on the border rows/columns: padding handled wrongly")
    checked = {f.case for f in findings if f.case in cases} | {e.case for e in errors if e.case in cases}
    failing = {f.case for f in failed if f.case in cases} | {e.case for e in errors if e.case in cases}
    if failing and failing != checked:
        hints.extend(_case_patterns(failing, checked, cases))
    return tuple(hints[:3])


def _case_patterns(failing, checked, cases) -> List[str]:
    """Rule messages whose property covers every failing case, the most specific first.

    A property held by exactly the failing cases is strong evidence and always
    reported; otherwise only the narrowest property, and only when it holds for
    at most half of the checked cases (a property most cases share says little).
    """
    layers = {cases[c].layer for c in checked}
    exact, loose = [], []
    for scope, has, message in _RULES:
        if scope != "any" and scope not in layers:
            continue
        with_p = {c for c in checked if has(cases[c])}
        if failing <= with_p and with_p != checked:
            (exact if with_p == failing else loose).append((len(with_p), message))
    if exact:
        return [m for _, m in sorted(exact)][:2]
    loose.sort()
    return [loose[0][1]] if loose and 2 * loose[0][0] <= len(checked) else []
