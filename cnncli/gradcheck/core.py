"""The gradient checker: numerical vs analytical gradients (results in :mod:`.results`).

Works on a *problem* (see :mod:`cnncli.gradcheck.problems`): named float64
inputs, their analytical gradients, and batched loss differences under
perturbations. Knows nothing of terminals; progress is a callback.

Metrics per gradient (over the checked, non-kink elements):

- relative error ``||a - n|| / (||a|| + ||n||)`` (0 when both are 0); passes at ``<= tol``;
- max absolute error and the worst element with both values;
- the count of elements failing ``|a - n| <= 10*tol*max|n| + 100*tol*|n|``, and
  where they sit (a hint, see :mod:`.diagnose`).

A gradient passes when its relative error is within ``tol`` and no element fails.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from ..errors import HyperparameterError
from .diagnose import pattern_hint, spatial_maps
from .results import CheckResult, GradientResult, Offender, relayout  # noqa: F401  (re-exported)
from .sampling import stratified_indices

METHODS = ("auto", "full", "fast", "sample")
DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-7
DEFAULT_SAMPLES = 256
#: ``auto`` checks every element when the inputs hold at most this many values.
AUTO_FULL_LIMIT = 4096
#: ``fast`` localizes a failing tensor elementwise in full up to this size, else by a sample.
LOCALIZE_FULL_LIMIT = 20000
FAST_DIRECTIONS = 3
#: Smallest relative step on layers linear in the perturbed input (see :func:`step_size`).
LINEAR_MIN_EPS = 1e-3
TOP_OFFENDERS = 5

GRADIENT_NAMES = {"A_prev": "dA_prev", "W": "dW", "b": "db"}
Progress = Callable[[int, int], None]


def check_problem(problem, *, method: str = "auto", samples: Optional[int] = None, eps: float = DEFAULT_EPS,
                  tol: float = DEFAULT_TOL, seed: Optional[int] = 0, progress: Optional[Progress] = None,
                  label: str = "", params: Optional[dict] = None, notes=()) -> CheckResult:
    """Check every input of ``problem``; see the module docstring for the metrics.

    Parameters
    ----------
    problem : ConvProblem or PoolProblem (or any object with the same methods)
    method : {"auto", "full", "fast", "sample"}
    samples : int, optional
        Elements per tensor for ``sample`` (and ``auto``'s sample); default 256.
    eps : float
        Step of the central differences, relative to a tensor's largest magnitude
        when that exceeds 1 (so large-valued inputs, e.g. images in 0..255, are
        not drowned in rounding); at least 1e-3 on layers linear in the input
        (see :func:`step_size`).
    tol : float
        Pass threshold of the relative error.
    seed : int or None
        Seed of the random directions and samples.
    progress : callable(done, total), optional

    Returns
    -------
    CheckResult

    Raises
    ------
    HyperparameterError
        Unknown method, non-positive eps/tol/samples.
    """
    method, samples = validate_settings(method, samples, eps, tol)
    rng = np.random.default_rng(seed)
    analytical = problem.analytical()
    total_values = sum(problem.inputs[n].size for n in problem.names)
    if method == "auto":
        method_used = "full" if total_values <= AUTO_FULL_LIMIT else "fast+sample"
    else:
        method_used = method
    tracker = _Tracker(progress)
    notes = list(notes)
    results = []
    for name in problem.names:
        x, grad = problem.inputs[name], analytical[name]
        h = step_size(x, eps, linear=getattr(problem, "linear", False))
        kinks = problem.kinks(name, h)
        stuck = ((x + h) == x) | ((x - h) == x)
        if stuck.any():
            notes.append(f"{int(stuck.sum())} element(s) of {name} do not change under eps={eps:g} "
                         f"(x + eps == x); they are skipped: use a larger --eps")
        excluded = stuck if kinks is None else (stuck | kinks)
        results.append(_check_tensor(problem, name, x, grad, h, excluded, method_used, samples, tol, rng, tracker))
    return CheckResult(problem.layer, method, eps, tol, seed, tuple(results), tuple(notes), label, params or {})


def step_size(x: np.ndarray, eps: float, linear: bool = False) -> float:
    """The central-difference step for input ``x``: ``eps`` times ``max(1, max|x|)``.

    NOTE: a layer that is linear in the perturbed input (convolution in each of
    A_prev, W, b; average pooling) has no truncation error whatever the step, only
    rounding, which shrinks as the step grows: with millions of output terms a step
    of 1e-6 leaves a rounding floor near the 1e-7 tolerance. Such inputs (problems
    declaring ``linear = True``) get at least ``LINEAR_MIN_EPS``; max pooling keeps
    ``eps`` (its kinks are defined by the step).
    """
    base = max(eps, LINEAR_MIN_EPS) if linear else eps
    return base * max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)


def validate_settings(method: str, samples, eps: float, tol: float):
    """Check the checker's settings; return ``(method, samples)`` with defaults filled in."""
    if method not in METHODS:
        raise HyperparameterError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if samples is None:
        samples = DEFAULT_SAMPLES
    if int(samples) < 1:
        raise HyperparameterError(f"samples must be >= 1, got {samples}")
    if not (eps > 0 and math.isfinite(eps)):
        raise HyperparameterError(f"eps must be a positive number, got {eps}")
    if not (tol > 0 and math.isfinite(tol)):
        raise HyperparameterError(f"tol must be a positive number, got {tol}")
    return method, int(samples)


class _Tracker:
    """Cumulative progress over a total that may grow (a failing fast check localizes)."""

    def __init__(self, callback: Optional[Progress]):
        self.callback, self.done, self.total = callback, 0, 0

    def plan(self, n: int) -> None:
        self.total += n
        if self.callback:
            self.callback(self.done, self.total)

    def tick(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(self.done, self.total)


def _check_tensor(problem, name, x, grad, h, excluded, method, samples, tol, rng, tracker) -> GradientResult:
    kinks = int(excluded.sum())
    if method == "full":
        idx = np.flatnonzero(~excluded)
        return _elementwise(problem, name, x, grad, h, idx, kinks, "full", tol, tracker)
    if method == "sample":
        idx = stratified_indices(x.shape, name, samples, rng, excluded)
        return _elementwise(problem, name, x, grad, h, idx, kinks, "sample", tol, tracker)
    fast = _directional(problem, name, x, grad, h, excluded, tol, rng, tracker)
    if not fast.passed:  # localize the disagreement elementwise on this tensor
        n_ok = x.size - kinks
        if n_ok <= LOCALIZE_FULL_LIMIT:
            idx, how = np.flatnonzero(~excluded), "fast+full"
        else:
            how = "fast+sample"
            idx = stratified_indices(x.shape, name, max(samples, 4 * DEFAULT_SAMPLES), rng, excluded)
        local = _elementwise(problem, name, x, grad, h, idx, kinks, how, tol, tracker)
        return _merge(fast, local, how, passed=False)
    if method == "fast+sample":
        idx = stratified_indices(x.shape, name, samples, rng, excluded)
        local = _elementwise(problem, name, x, grad, h, idx, kinks, "fast+sample", tol, tracker)
        return _merge(fast, local, "fast+sample", passed=local.passed)
    return fast


def _merge(fast: GradientResult, local: GradientResult, how: str, passed: bool) -> GradientResult:
    # NOTE: max_abs_error stays elementwise (a directional difference is a sum over many
    # elements, not comparable with the worst element's error shown beside it); a check
    # localized in full reports the complete elementwise relative error.
    rel = local.relative_error if how == "fast+full" else max(fast.relative_error, local.relative_error)
    return GradientResult(
        fast.name, local.shape, local.axes, how, rel,
        local.max_abs_error, local.checked, fast.directions, local.kinks,
        local.failing, passed, local.worst, local.top, local.errors, local.hint, local.error_map)


def _axes(name: str, ndim: int) -> str:
    return {"A_prev": "mhwc", "W": "hwio", "b": "c"}.get(name, "abcdefgh"[:ndim])


def _elementwise(problem, name, x, grad, h, idx, kinks, how, tol, tracker) -> GradientResult:
    """Central differences of the elements ``idx`` (flat) of input ``name``."""
    idx = np.asarray(idx, dtype=np.int64)
    tracker.plan(len(idx))
    xs = x.reshape(-1)[idx]
    plus, minus = xs + h, xs - h
    diff = problem.differences(name, idx, plus, minus, tracker.tick) if len(idx) else np.empty(0)
    numerical = diff / (plus - minus)  # the step actually taken, not 2h: rounding of x+h is exact here
    analytical = grad.reshape(-1)[idx]
    return gradient_metrics(GRADIENT_NAMES.get(name, name), grad.shape, _axes(name, grad.ndim), how,
                            idx, analytical, numerical, kinks, tol)


def gradient_metrics(name, shape, axes, how, idx, analytical, numerical, kinks, tol) -> GradientResult:
    """Build a :class:`GradientResult` from elementwise analytical/numerical values at flat ``idx``."""
    a, n = np.asarray(analytical, dtype=np.float64), np.asarray(numerical, dtype=np.float64)
    err = np.abs(a - n)
    rel = _relative_error(a, n)
    bad = element_fails(err, n, tol)
    errors = np.full(shape, np.nan)
    errors.reshape(-1)[idx] = np.where(np.isfinite(err), err, np.inf)
    error_map, hint = None, None
    if len(shape) == 4:
        failing_at = np.zeros(shape, dtype=bool)
        failing_at.reshape(-1)[idx] = bad
        error_map, failing_map = spatial_maps(errors, failing_at, axes)
        hint = pattern_hint(failing_map)
    rank = np.argsort(-np.where(np.isfinite(err), err, np.inf), kind="stable")[:TOP_OFFENDERS]
    top = tuple(Offender(tuple(int(v) for v in np.unravel_index(idx[r], shape)), float(a[r]), float(n[r]))
                for r in rank)
    max_abs = float(np.max(np.where(np.isfinite(err), err, np.inf))) if err.size else 0.0
    failing = int(bad.sum())
    return GradientResult(name, tuple(shape), axes, how, rel, max_abs, int(len(idx)), 0, int(kinks), failing,
                          bool(rel <= tol and failing == 0), top[0] if top else None, top, errors, hint, error_map)


def element_fails(abs_error: np.ndarray, numerical: np.ndarray, tol: float) -> np.ndarray:
    """Elements failing ``|a - n| <= 10*tol*max|n| + 100*tol*|n|`` (max over the finite n; NaN fails)."""
    finite = np.abs(numerical[np.isfinite(numerical)])
    scale = float(finite.max()) if finite.size else 0.0
    return ~(abs_error <= 10 * tol * scale + 100 * tol * np.abs(numerical))


def _relative_error(a: np.ndarray, n: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) + np.linalg.norm(n))
    if not math.isfinite(denom):
        return math.nan
    return float(np.linalg.norm(a - n)) / denom if denom > 0 else 0.0


def _directional(problem, name, x, grad, h, excluded, tol, rng, tracker) -> GradientResult:
    """Compare ``<grad, d>`` with the central difference along random directions d.

    Directions are uniform in [-1, 1] (so ``max|d| <= 1``, which the kink
    threshold assumes) and zero on excluded elements.
    """
    tracker.plan(FAST_DIRECTIONS)
    D = rng.uniform(-1.0, 1.0, size=(FAST_DIRECTIONS,) + x.shape)
    D[:, excluded] = 0.0
    diff = problem.directional(name, D, h, tracker.tick)
    numerical = diff / (2 * h)
    analytical = np.einsum("pi,i->p", D.reshape(FAST_DIRECTIONS, -1), grad.reshape(-1))
    err = np.abs(analytical - numerical)
    rel = _relative_error(analytical, numerical)
    failing = int(np.sum(element_fails(err, numerical, tol)))
    return GradientResult(GRADIENT_NAMES.get(name, name), tuple(grad.shape), _axes(name, grad.ndim), "fast",
                          rel, float(err.max()), 0, FAST_DIRECTIONS, int(excluded.sum()), 0,
                          bool(rel <= tol and failing == 0))
