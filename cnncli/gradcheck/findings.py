"""What ``--impl`` found: one :class:`Finding` per comparison of a user's array with the
expected one (:func:`compare`), a :class:`FunctionReport` per classic function, and the
:class:`ImplResult` of the whole file; ``to_dict`` gives plain Python types (``--json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .metrics import gradient_metrics
from .spatial import BORDER_HINT
from .userfile import UserException
from .wire import Kept


@dataclass(frozen=True)
class Finding:
    """One comparison of a user function's output on one configuration.

    ``against`` is ``"engine"``, ``"numerical"`` (central differences of the
    user's own forward) or ``"reference"`` (direct numpy). ``expected`` and
    ``got`` are the values at ``worst_index``.
    """

    case: str
    quantity: str
    against: str
    passed: bool
    max_abs_error: Optional[float] = None
    relative_error: Optional[float] = None
    worst_index: Optional[Tuple[int, ...]] = None
    expected: Optional[float] = None
    got: Optional[float] = None
    checked: int = 0
    kinks: int = 0
    detail: str = ""
    border_only: bool = False
    #: Where the failing elements sit, when that names a likely mistake (see :mod:`.spatial`).
    hint: Optional[str] = None
    #: max |got - expected| over height x width (NaN where not compared), for heatmaps.
    error_map: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        del d["error_map"]
        d["worst_index"] = list(self.worst_index) if self.worst_index is not None else None
        return d


#: The statuses of a :class:`FunctionReport`, one per function.
STATUSES = ("pass", "fail", "incomplete", "not checked")


@dataclass(frozen=True)
class FunctionReport:
    """Everything found about one user function.

    ``stopped`` says why its check did not run to the end ("" when it did): the
    whole check's time limit ran out, or the process running the user's code could
    not be restarted. A call that was never made is no error of the user's code, so
    it is not among ``errors``.
    """

    name: str
    findings: Tuple[Finding, ...]
    errors: Tuple[UserException, ...]
    diagnosis: Tuple[str, ...]
    stopped: str = ""

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`: ``fail`` when a comparison failed or the code raised (checked or not to the
        end); else ``incomplete`` when cut short after some comparisons, ``not checked`` when before any."""
        if self.errors or not all(f.passed for f in self.findings):
            return "fail"
        if self.stopped:
            return "incomplete" if self.findings else "not checked"
        return "pass"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "status": self.status, "stopped": self.stopped or None,
                "diagnosis": list(self.diagnosis), "errors": [e.to_dict() for e in self.errors],
                "findings": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True)
class ImplResult:
    """Result of ``--impl``: one report per classic function the file defines."""

    path: str
    functions: Tuple[FunctionReport, ...]
    missing: Tuple[str, ...]
    method: str
    #: Things the user should know (a method that does not apply, hidden prints, ...).
    notes: Tuple[str, ...] = ()
    #: Lines the user's code printed on stdout and stderr (captured, see :class:`.userfile.UserOutput`).
    printed_lines: int = 0
    #: Of those, the lines passed to ``echo`` (bounded in lines and bytes).
    echoed_lines: int = 0

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.functions)

    @property
    def verdict(self) -> str:
        """``pass``; ``fail`` when a function failed; else ``inconclusive`` (one was not checked to the end)."""
        if self.passed:
            return "pass"
        return "fail" if any(f.status == "fail" for f in self.functions) else "inconclusive"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "verdict": self.verdict, "impl": self.path, "method": self.method,
                "functions": [f.to_dict() for f in self.functions], "not_defined": list(self.missing),
                "printed_lines": self.printed_lines, "notes": list(self.notes)}


def compare(case: str, quantity: str, against: str, got, expected, tol: float,
            exclude: Optional[np.ndarray] = None) -> Finding:
    """Compare a user's array with the expected one (shape first, then values).

    ``db`` of shape (1, 1, 1, n_C) and (n_C,) compare equal; a scalar compares
    with a size-1 array. Excluded (kink) elements are not compared.
    """
    if got is None:  # np.asarray(None, float) is nan: say what really happened
        return Finding(case, quantity, against, False, detail="returned None (a missing return?)")
    if isinstance(got, Kept):  # what the user's code returned could not be an array (a str, 10**400, ...)
        return Finding(case, quantity, against, False, detail=f"returned {got.what}, not an array")
    try:
        g = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return Finding(case, quantity, against, False, detail=f"returned {type(got).__name__}, not an array")
    e = np.asarray(expected, dtype=np.float64)
    if g.shape != e.shape:
        if g.size == e.size and (g.size == 1 or quantity in ("db",)):
            g = g.reshape(e.shape)
        else:
            return Finding(case, quantity, against, False, detail=f"shape {g.shape}, expected {e.shape}")
    keep = np.ones(e.shape, dtype=bool) if exclude is None else ~exclude
    idx = np.flatnonzero(keep)
    axes = ("hwio" if quantity == "dW" else "mhwc") if e.ndim == 4 else ""
    with np.errstate(invalid="ignore", over="ignore"):  # the user's NaN/inf is reported, not warned about
        r = gradient_metrics(quantity, e.shape, axes, against, idx, g.reshape(-1)[idx], e.reshape(-1)[idx],
                             int(e.size - idx.size), tol)
    w = r.worst
    return Finding(case, quantity, against, r.passed, r.max_abs_error, r.relative_error,
                   w.index if w else None, w.numerical if w else None, w.analytical if w else None,
                   r.checked, r.kinks, _non_finite(g[keep], e[keep]), r.hint == BORDER_HINT, r.hint, r.error_map)


def _non_finite(got: np.ndarray, expected: np.ndarray) -> str:
    """``"returned NaN"`` (and where the count helps) when the user's values are NaN/inf and the expected are not."""
    bad = ~np.isfinite(got) & np.isfinite(expected)
    if not bad.any():
        return ""
    what = "NaN" if np.isnan(got[bad]).any() else "inf"
    return f"returned {what}" + (f" in {int(bad.sum())} of {bad.size} elements" if bad.size > 1 else "")
