"""Result objects of the gradient checker: per gradient, per layer call; ``to_dict`` gives plain Python types.

Pure data: built by :mod:`cnncli.gradcheck.core`, rendered by ``cnncli/render/gradcheck.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Offender:
    """One checked element: its index (in the input's own shape) and both derivatives."""

    index: Tuple[int, ...]
    analytical: float
    numerical: float

    @property
    def abs_error(self) -> float:
        return abs(self.analytical - self.numerical)

    def to_dict(self) -> dict:
        return {"index": list(self.index), "analytical": _num(self.analytical),
                "numerical": _num(self.numerical), "abs_error": _num(self.abs_error)}


@dataclass(frozen=True)
class GradientResult:
    """Verdict and metrics for one gradient (``dA_prev``, ``dW`` or ``db``).

    Attributes
    ----------
    name : str
        ``"dA_prev"``, ``"dW"`` or ``"db"``.
    shape : tuple of int
        Shape of the gradient (the input's shape, in the caller's layout).
    axes : str
        One letter per axis, e.g. ``"mhwc"``, ``"mchw"``, ``"hwio"``, ``"c"``.
    method : str
        ``"full"``, ``"sample"``, ``"fast"``, ``"fast+sample"``, ``"fast+full"`` or
        ``"fast+bisect"`` (a failing fast check localized: every element, or by bisection).
    relative_error, max_abs_error : float
    checked : int
        Elements compared elementwise (0 for a fast check that passed).
    directions : int
        Random directions compared (fast method).
    kinks : int
        Elements excluded as kinks of max pooling (or left unchanged by eps).
    failing : int
        Checked elements failing the elementwise test.
    passed : bool
    worst : Offender or None
    top : tuple of Offender
        The largest errors, worst first.
    errors : ndarray or None
        ``|a - n|`` in the gradient's shape, NaN where not checked.
    hint : str or None
        Where the failing elements sit, when that names a likely mistake (errors only
        on the border: padding; stripes: stride); see :mod:`cnncli.gradcheck.spatial`.
    error_map : ndarray, shape (H, W), or None
        ``errors`` reduced to height x width (max over the other axes; for heatmaps).
    rounding_floor : float
        The relative error that float64 rounding of the numerical gradient alone could
        reach at this data's magnitude (an upper estimate, comparable with ``relative_error``).
    tolerance : float or None
        The relative-error threshold applied: ``max(tol, rounding_floor)``.
    inconclusive : str or None
        Why the gradient could not be checked (overflow, rounding floor too high,
        (almost) every element a kink); such a gradient does not pass.
    """

    name: str
    shape: Tuple[int, ...]
    axes: str
    method: str
    relative_error: float
    max_abs_error: float
    checked: int
    directions: int
    kinks: int
    failing: int
    passed: bool
    worst: Optional[Offender] = None
    top: Tuple[Offender, ...] = ()
    errors: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    hint: Optional[str] = None
    error_map: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    rounding_floor: float = 0.0
    tolerance: Optional[float] = None
    inconclusive: Optional[str] = None

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"fail"`` or ``"inconclusive"``."""
        return "inconclusive" if self.inconclusive else ("pass" if self.passed else "fail")

    def to_dict(self) -> dict:
        """The JSON entry of this gradient (SPEC: name, relative_error, ... passed)."""
        return {
            "name": self.name, "shape": list(self.shape), "method": self.method,
            "relative_error": _num(self.relative_error), "max_abs_error": _num(self.max_abs_error),
            "worst_index": list(self.worst.index) if self.worst else None,
            "worst_analytical": _num(self.worst.analytical) if self.worst else None,
            "worst_numerical": _num(self.worst.numerical) if self.worst else None,
            "checked": self.checked, "directions": self.directions, "kinks": self.kinks,
            "failing": self.failing, "passed": self.passed, "verdict": self.verdict,
            "reason": self.inconclusive, "rounding_floor": _num(self.rounding_floor),
            "tolerance": None if self.tolerance is None else _num(self.tolerance), "hint": self.hint,
            "top": [o.to_dict() for o in self.top],
        }


@dataclass(frozen=True)
class CheckResult:
    """Result of checking one layer call.

    Attributes
    ----------
    layer : str
        ``"conv"`` or ``"pool"``.
    method, eps, tol, seed
        The settings used (``method`` as asked; each gradient says what ran).
    gradients : tuple of GradientResult
    notes : tuple of str
        Things the user should know (dtype promotion, eps too small, ...).
    label : str
        A name for the configuration (battery cases).
    params : dict
        The hyperparameters, for reports.
    """

    layer: str
    method: str
    eps: float
    tol: float
    seed: Optional[int]
    gradients: Tuple[GradientResult, ...]
    notes: Tuple[str, ...] = ()
    label: str = ""
    params: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gradients)

    @property
    def verdict(self) -> str:
        """``"fail"`` when a gradient fails, else ``"inconclusive"`` when one could not be checked, else ``"pass"``."""
        verdicts = {g.verdict for g in self.gradients}
        return "fail" if "fail" in verdicts else ("inconclusive" if "inconclusive" in verdicts else "pass")

    def to_dict(self) -> dict:
        """Plain Python types (NaN stays NaN): ``{"passed", "verdict", "layer", ..., "gradients": [...]}``."""
        d = {"passed": self.passed, "verdict": self.verdict, "layer": self.layer}
        if self.label:
            d["label"] = self.label
        d.update({"params": self.params, "method": self.method, "eps": self.eps, "tol": self.tol,
                  "seed": self.seed, "gradients": [g.to_dict() for g in self.gradients],
                  "notes": list(self.notes)})
        return d


def _num(x) -> float:
    """A Python float; NaN and inf stay (the one ``--json`` writer, ``cnncli.render.common.to_json``, writes null)."""
    return float(x)


def relayout(result: CheckResult, perms: Dict[str, Tuple[Tuple[int, ...], str]]) -> CheckResult:
    """Express a result computed in NHWC in another layout.

    ``perms`` maps a gradient name to ``(axes permutation, axis letters)``; e.g.
    ``{"dA_prev": ((0, 3, 1, 2), "mchw")}`` for NCHW inputs.
    """
    grads = []
    for g in result.gradients:
        if g.name not in perms:
            grads.append(g)
            continue
        perm, axes = perms[g.name]  # NOTE: every layout keeps height before width: error_map is unchanged
        move = lambda o: Offender(tuple(o.index[p] for p in perm), o.analytical, o.numerical)  # noqa: E731
        top = tuple(move(o) for o in g.top)
        grads.append(replace(g, shape=tuple(g.shape[p] for p in perm), axes=axes, worst=top[0] if top else None,
                             top=top, errors=None if g.errors is None else np.transpose(g.errors, perm)))
    return CheckResult(result.layer, result.method, result.eps, result.tol, result.seed, tuple(grads),
                       result.notes, result.label, result.params)
