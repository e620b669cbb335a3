"""The gradient checker: numerical vs analytical gradients (results in :mod:`.results`).

Works on a *problem* (see :mod:`cnncli.gradcheck.problems`): named float64
inputs, their analytical gradients, and batched loss differences under
perturbations. Knows nothing of terminals; progress is a callback.

Metrics per gradient (over the checked, non-kink elements):

- relative error ``||a - n|| / (||a|| + ||n||)`` (0 when both are 0); passes at ``<= tol``;
- max absolute error and the worst element with both values;
- the count of elements failing ``|a - n| <= 10*tol*max|n| + 100*tol*|n|``, and
  where they sit (a hint, see :mod:`.spatial`).

A gradient passes when its relative error is within ``max(tol, rounding floor)`` and no
element fails (an element within its own rounding floor never does; see the problems'
``rounding_floor``). It is *inconclusive* (not a pass) when the loss overflows, when the
floor exceeds ``MAX_TOLERANCE``, or when the step (not exact ties) leaves fewer checkable
elements than :func:`min_checked` of those a window reads. Input whose windows all have tied
maxima passes with ``checked == 0`` and a note: it admits no test.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np

from ..errors import HyperparameterError
from .context import Progress, TensorCheck, Tracker
from .directional import directional, localize
from .metrics import axes_of, gradient_metrics, gradient_name
from .protocol import Problem
from .results import CheckResult, GradientResult, relayout  # noqa: F401  (relayout re-exported)
from .sampling import stratified_indices

METHODS = ("auto", "full", "fast", "sample")
DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-7
DEFAULT_SAMPLES = 256
#: ``auto`` checks every element when the inputs hold at most this many values.
AUTO_FULL_LIMIT = 4096
#: ``fast`` localizes a failing tensor elementwise in full up to this size, else by a sample.
LOCALIZE_FULL_LIMIT = 20000
#: Smallest relative step on layers linear in the perturbed input (see :func:`step_size`).
LINEAR_MIN_EPS = 1e-3
#: A relative tolerance the rounding floor would raise above this checks nothing meaningful: inconclusive.
MAX_TOLERANCE = 1e-2
#: A verdict needs this many checkable elements or this fraction of those a window reads,
#: whichever is smaller (see :func:`min_checked`); fewer, because of eps: inconclusive.
MIN_CHECKED = 32
MIN_CHECKED_FRACTION = 0.1
#: ``auto``'s sample (without --samples) evaluates at most about this many output values per tensor:
#: an element of W or b costs two evaluations over the whole batch, so on large batches fewer of
#: them are sampled (never fewer than one per kernel offset; see :func:`auto_samples`).
AUTO_SAMPLE_BUDGET = 2**27


def check_problem(problem: Problem, *, method: str = "auto", samples: Optional[int] = None, eps: float = DEFAULT_EPS,
                  tol: float = DEFAULT_TOL, seed: Optional[int] = 0, progress: Optional[Progress] = None,
                  label: str = "", params: Optional[dict] = None, notes=()) -> CheckResult:
    """Check every input of ``problem``; see the module docstring for the metrics.

    Parameters
    ----------
    problem : Problem
        A :class:`~.problems.ConvProblem`, :class:`~.pool_problem.PoolProblem`, or any
        :class:`~.protocol.Problem` (:class:`~.protocol.ProblemDefaults` fills in the optional parts).
    method : {"auto", "full", "fast", "sample"}
    samples : int, optional
        Elements per tensor for ``sample`` (and ``auto``'s sample); default 256.
    eps : float
        Step of the central differences, relative to a tensor's largest magnitude
        (so inputs of magnitude 255 or 1e-6 get steps of their own scale); at
        least 1e-3 on layers linear in the input (see :func:`step_size`).
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
    sample_size_free = samples is None  # auto may cut the sample (see auto_samples)
    method, samples = validate_settings(method, samples, eps, tol, seed)
    rng = np.random.default_rng(seed)
    total_values = sum(problem.inputs[n].size for n in problem.names)
    if method == "auto":
        method_used = "full" if total_values <= AUTO_FULL_LIMIT else "fast+sample"
    else:
        method_used = method
    tracker = Tracker(progress)
    notes = list(notes)
    unused = unused_samples(method, method_used, None if sample_size_free else samples)
    if unused:
        notes.append(unused)
    results = []
    # NOTE: at extreme magnitudes float64 overflows; that becomes a verdict with a message, never a raw
    # numpy warning on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        analytical = problem.analytical()
        G = problem.G
        for name in problem.names:
            if G is not None and not np.any(G):
                # L = sum(0 * layer(x)) is 0 for any layer: both sides agree and nothing is tested
                gname = gradient_name(name)
                results.append(inconclusive(gname, name, analytical[name], (
                    f"{gname}: --grad is all zeros: every gradient is zero whatever the layer does; "
                    "nothing is tested (give a nonzero upstream gradient, or omit --grad for a random one)")))
                continue
            n = auto_samples(problem, name, samples, notes) if sample_size_free and method_used == "fast+sample" \
                else samples
            t = tensor_check(problem, name, analytical[name], eps, tol, rng, tracker, notes)
            results.append(t if isinstance(t, GradientResult) else verdict(t, eps, method_used, n))
    return CheckResult(problem.layer, method, eps, tol, seed, tuple(results), tuple(notes), label, params or {})


def unused_samples(asked: str, used: str, samples: Optional[int]) -> Optional[str]:
    """The note that ``--samples N``, given, was not used by the method ``used`` (None when it was, or not given)."""
    # NOTE: said, not refused: --samples N is harmless where every element or random directions are checked,
    # and a script may pass one --samples to every method
    if samples is None or used not in ("full", "fast"):
        return None
    if used == "fast":
        why = "--method fast checks random directions, not elements"
    else:
        why = "--method full checks every element" if asked == "full" else \
            "auto checks every element of an input this small"
    return f"--samples {samples} not used: {why}"


def auto_samples(problem, name, samples, notes) -> int:
    """``auto``'s sample size for input ``name``: ``samples``, fewer when each element costs a whole batch.

    A problem may say how many output values one elementwise evaluation computes
    (``element_cost``); the sample is cut to ``AUTO_SAMPLE_BUDGET`` of them, but keeps
    at least one element per kernel offset of W (the strata of :mod:`.sampling`).
    """
    cost = problem.element_cost(name)
    x = problem.inputs[name]
    if cost <= 0 or min(samples, x.size) * cost <= AUTO_SAMPLE_BUDGET:
        return samples
    least = x.shape[0] * x.shape[1] if name == "W" and x.ndim == 4 else 1
    n = max(least, AUTO_SAMPLE_BUDGET // cost)
    if n < min(samples, x.size):
        notes.append(f"{gradient_name(name)}: {n} of its elements sampled (each costs two evaluations over the whole batch); "
                     "--samples N or --method full checks more")
        return n
    return samples


def input_sizes(maxima) -> str:
    """``"max |A_prev| 1e-315, max |W| 2.9"``: the magnitudes an overflow or underflow verdict names."""
    return ", ".join(f"max |{k}| {v:.2g}" for k, v in maxima)


def underflow_reason(gname: str, max_grad: float, h: float, sizes: Callable[[], str]) -> Optional[str]:
    """The reason a gradient cannot be checked when the loss's change over one step is subnormal, else None.

    The change is about ``max_grad * h``; ``sizes()`` gives the magnitudes to name (see :func:`input_sizes`).
    """
    # NOTE: below the normal range subnormal numbers keep fewer and fewer bits: the rounding floor, a
    # relative estimate, no longer holds and the differences are noise
    if 0 < max_grad * h < sys.float_info.min:
        return f"{gname}: the loss underflows float64 at this scale ({sizes()}); rescale the input"
    return None


def tensor_check(problem: Problem, name: str, grad, eps: float, tol: float, rng, tracker: Tracker,
                  notes: list, known: Optional[dict] = None):
    """One input of ``problem`` ready to compare (step, rounding floor, kinks), or its verdict when it cannot be.

    ``known`` gives the max |x| of inputs the problem does not hold whole (a streamed A_prev), for the
    magnitudes an overflow or underflow verdict names.
    """
    x = problem.inputs[name]
    gname = gradient_name(name)
    h = step_size(x, eps, linear=problem.linear, scale=problem.step_scale(name))
    floor = problem.rounding_floor(name, h)

    def named_sizes() -> str:
        return input_sizes(list((known or {}).items()) +
                           [(k, _max_abs(problem.inputs[k])) for k in problem.names if k not in (known or {})])
    if not (np.all(np.isfinite(grad)) and math.isfinite(h) and (floor is None or np.all(np.isfinite(floor)))):
        return inconclusive(gname, name, grad, f"{gname}: the loss overflows float64 at this scale "
                                                f"({named_sizes()}); rescale the input")
    reason = underflow_reason(gname, _max_abs(grad), h, named_sizes)
    if reason is not None:
        return inconclusive(gname, name, grad, reason)
    kinks = problem.kinks(name, h)
    stuck = ((x + h) == x) | ((x - h) == x)
    if stuck.any():
        notes.append(f"{int(stuck.sum())} element(s) of {name} do not change under eps={eps:g} "
                     f"(x + eps == x); they are skipped: use a larger --eps")
    excluded = stuck if kinks is None else (stuck | kinks)
    coverage = _coverage(problem, name, excluded, kinks, eps, h, notes)
    if coverage is not None:
        return inconclusive(gname, name, grad, coverage, kinks=int(excluded.sum()))
    if excluded.all() or not (problem.reads(name) & ~excluded).any():
        # every read element is an exact tie (see _coverage's note): nothing to check, nothing wrong seen
        return GradientResult(gname, tuple(grad.shape), axes_of(name, grad.ndim), "none", math.nan, math.nan, 0, 0,
                              int(excluded.sum()), 0, True)
    return TensorCheck(problem, name, x, grad, h, excluded, tol, rng, tracker, floor, notes)


def verdict(t: TensorCheck, eps: float, method: str, samples: int) -> GradientResult:
    """Compare the tensor with ``method``; see :func:`settle`."""
    return settle(_check_tensor(t, method, samples), t.name, t.tol, t.notes, _max_abs(t.x))


def settle(r: GradientResult, name: str, tol: float, notes: list, max_abs: float) -> GradientResult:
    """A rounding floor above ``tol`` raises the tolerance (noted), above ``MAX_TOLERANCE`` voids the check
    (a ``tol`` above it does not: the user asked for that tolerance)."""
    gname = gradient_name(name)
    # the floor, not the user's --tol: a generous --tol (0.5) is the user's to choose, and checks as asked
    if r.rounding_floor is not None and r.rounding_floor > MAX_TOLERANCE:
        return replace(r, passed=False, inconclusive=(
            f"{gname}: at this data's magnitude float64 rounding alone could make a relative error of "
            f"{r.rounding_floor:.1e}; nothing meaningful can be checked: rescale the input"))
    if r.tolerance is not None and r.tolerance > tol:
        notes.append(f"{gname}: tolerance raised from {tol:g} to {r.tolerance:.2g} because of the data's "
                     f"magnitude (the float64 rounding floor of its numerical gradient; max |{name}| "
                     f"{max_abs:.2g})")
    return r


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def _coverage(problem: Problem, name: str, excluded, kinks, eps: float, h: float, notes: list) -> Optional[str]:
    """The reason a gradient is inconclusive when too little of it can be checked, else None (see :class:`Coverage`)."""
    if not excluded.any():
        return None
    ties = problem.kinks(name, 0.0) if kinks is not None else None
    return Coverage.of(excluded, kinks, ties, problem.reads(name)).reason(name, eps, h, notes)


@dataclass(frozen=True)
class Coverage:
    """How much of an input can be checked, counted over the elements some window reads.

    Those are the only ones that count (the others have a zero gradient whatever
    the layer does, so checking them proves nothing). A verdict needs
    ``min_checked(n_read)`` checkable elements (an absolute count suffices on large
    inputs: 32 checked elements of a binary mask test the layer as well as 10% would).
    Counts add up, so a streamed input is counted chunk by chunk.

    NOTE: only exclusions the user's eps causes make a check inconclusive: kinks
    whose gap is nonzero but within the step (a smaller --eps recovers them) and
    elements unchanged by the step (a larger one does). Exact ties (gap 0, every
    integer or binary image has them) are kinks at any eps: the data admits no
    test there, which is no evidence of a bug, so they never make a check
    inconclusive; the note says how many there are.
    """

    n_read: int = 0
    n_out: int = 0  # excluded among those read
    n_ties: int = 0  # exact ties among those read
    at_kinks: bool = False  # some read element is a kink at this step but not an exact tie

    @classmethod
    def of(cls, excluded, kinks, ties, reads) -> "Coverage":
        """The counts of one array (or chunk): masks of the excluded, the kinks at the step, the exact ties."""
        return cls(int(reads.sum()), int((excluded & reads).sum()), 0 if ties is None else int((ties & reads).sum()),
                   ties is not None and bool((kinks & ~ties & reads).any()))

    def __add__(self, other: "Coverage") -> "Coverage":
        return Coverage(self.n_read + other.n_read, self.n_out + other.n_out, self.n_ties + other.n_ties,
                        self.at_kinks or other.at_kinks)

    def reason(self, name: str, eps: float, h: float, notes: list) -> Optional[str]:
        """Why the gradient of input ``name`` is inconclusive, else None (notes what was left out)."""
        gname = gradient_name(name)
        n_read, n_out, n_ties = self.n_read, self.n_out, self.n_ties
        left = n_read - n_out
        if n_read == 0:
            return None
        n_eps = n_out - n_ties  # excluded because of this eps (near-ties, or unchanged by the step)
        if left < min_checked(n_read) and n_eps > 0:
            if self.at_kinks:
                what = "at kinks"
                why = (f"the step {h:.2g} (--eps {eps:g} times max |{name}|) is not smaller than the nonzero gaps "
                       "between window values")
            else:
                what, why = "unchanged by the step", "x + eps == x"
            checked = "nothing was checked" if left == 0 else f"only {left} could be checked"
            return (f"{gname}: {n_eps} of {n_read} elements are {what}: {why}; {checked}: "
                    f"use a {'smaller' if self.at_kinks else 'larger'} --eps")
        if left == 0:
            notes.append(f"{gname}: every pooling window of this input has tied maxima: the max-pool gradient is "
                         "not defined there; nothing to check (no evidence of a bug either)")
        elif 2 * n_out > n_read:
            parts = []
            if n_ties:
                parts.append(f"{n_ties} in windows with tied maxima (exact ties: not checkable at any eps)")
            if n_eps:
                parts.append(f"{n_eps} at kinks or unchanged by the step")
            notes.append(f"{gname}: {n_out} of {n_read} elements were not checked: {'; '.join(parts)}; "
                         f"{left} checkable")  # not "checked": a sample is drawn from these
        return None


def min_checked(n_read: int) -> int:
    """Checkable elements a verdict needs: 32 or 10% of those read, whichever is smaller (at least 1)."""
    return max(1, min(MIN_CHECKED, math.ceil(MIN_CHECKED_FRACTION * n_read)))


def inconclusive(gname, name, grad, reason, kinks=0) -> GradientResult:
    return GradientResult(gname, tuple(grad.shape), axes_of(name, grad.ndim), "none", math.nan, math.nan, 0, 0,
                          kinks, 0, False, inconclusive=reason)


def step_size(x: np.ndarray, eps: float, linear: bool = False, scale: Optional[float] = None) -> float:
    """The central-difference step for input ``x``: ``eps`` times its magnitude ``max|x|`` (or ``scale``).

    The step follows the data's magnitude, below 1 too: a fixed step on data of
    magnitude 1e-6 would be as large as the data (every max-pool window a kink),
    on data of magnitude 1e6 lost in rounding. All-zero data gets ``eps`` itself.

    NOTE: a layer that is linear in the perturbed input (convolution in each of
    A_prev, W, b; average pooling) has no truncation error whatever the step, only
    rounding, which shrinks as the step grows: with millions of output terms a step
    of 1e-6 leaves a rounding floor near the 1e-7 tolerance. Such inputs (problems
    declaring ``linear = True``) get at least ``LINEAR_MIN_EPS``; max pooling keeps
    ``eps`` (its kinks are defined by the step). A problem may give ``scale`` when
    another magnitude matters more (a bias is added to outputs of ``|A*W|``'s size).
    """
    base = max(eps, LINEAR_MIN_EPS) if linear else eps
    magnitude = _max_abs(x) if scale is None else float(scale)
    if not magnitude > 0:
        magnitude = 1.0
    return base * magnitude


def validate_settings(method: str, samples, eps: float, tol: float, seed=None, prefix: str = ""):
    """Check the checker's settings; return ``(method, samples)`` with defaults filled in.

    ``prefix`` goes before each setting's name in the messages (the CLI passes
    ``"--"`` so they name its flags).

    Raises
    ------
    HyperparameterError
        Unknown method, samples < 1, eps or tol not a positive finite number, seed < 0.
    """
    word = method.strip().lower() if isinstance(method, str) else method  # any case, as every word of cnncli
    if word not in METHODS:
        raise HyperparameterError(f"{prefix}method must be one of {', '.join(METHODS)}, got {method!r}")
    if samples is None:
        samples = DEFAULT_SAMPLES
    if int(samples) < 1:
        raise HyperparameterError(f"{prefix}samples must be >= 1, got {samples}")
    if not (eps > 0 and math.isfinite(eps)):
        raise HyperparameterError(f"{prefix}eps must be a positive number, got {eps}")
    if not (tol > 0 and math.isfinite(tol)):
        raise HyperparameterError(f"{prefix}tol must be a positive number, got {tol}")
    if seed is not None and int(seed) < 0:  # numpy's own message ("expected non-negative integer") names nothing
        raise HyperparameterError(f"{prefix}seed must be >= 0, got {seed}")
    return word, int(samples)


def _check_tensor(t: TensorCheck, method: str, samples: int) -> GradientResult:
    """The comparison ``method`` on one input: elementwise, or directional then localized / sampled."""
    if method == "full":
        return elementwise(t, np.flatnonzero(~t.excluded), "full")
    if method == "sample":
        return elementwise(t, stratified_indices(t.x.shape, t.name, samples, t.rng, t.excluded), "sample")
    fast, (D, blocks, pairs) = directional(t)
    if not fast.passed:  # localize the disagreement elementwise on this tensor
        n_ok = t.x.size - t.n_excluded
        if n_ok <= LOCALIZE_FULL_LIMIT:
            idx, how = np.flatnonzero(~t.excluded), "fast+full"
        else:
            how = "fast+bisect"
            found = localize(t, D, blocks, pairs)
            context = stratified_indices(t.x.shape, t.name, samples, t.rng, t.excluded)
            idx = np.union1d(found, context).astype(np.int64)
        local = elementwise(t, idx, how)
        if local.failing == 0:
            t.notes.append(f"{fast.name}: a directional check disagreed by {fast.max_abs_error:.2g} but no single "
                           f"element did{'' if how == 'fast+full' else ' (of those localized and sampled)'}: "
                           "rerun with --method full")
        return merge(fast, local, how, passed=False)
    if method == "fast+sample":
        idx = stratified_indices(t.x.shape, t.name, samples, t.rng, t.excluded)
        local = elementwise(t, idx, "fast+sample")
        return merge(fast, local, "fast+sample", passed=local.passed)
    return fast


def merge(fast: GradientResult, local: GradientResult, how: str, passed: bool) -> GradientResult:
    # NOTE: max_abs_error stays elementwise (a directional difference is a sum over many
    # elements, not comparable with the worst element's error shown beside it); a check
    # localized in full reports the complete elementwise relative error.
    rel = local.relative_error if how == "fast+full" else max(fast.relative_error, local.relative_error)
    return replace(local, method=how, relative_error=rel, directions=fast.directions, passed=passed,
                   rounding_floor=max(fast.rounding_floor, local.rounding_floor),
                   tolerance=max(fast.tolerance, local.tolerance))


def elementwise(t: TensorCheck, idx, how: str) -> GradientResult:
    """Central differences of the elements ``idx`` (flat) of the tensor."""
    idx = np.asarray(idx, dtype=np.int64)
    t.tracker.plan(len(idx))
    xs = t.x.reshape(-1)[idx]
    plus, minus = xs + t.h, xs - t.h
    diff = t.problem.differences(t.name, idx, plus, minus, t.tracker.tick) if len(idx) else np.empty(0)
    numerical = diff / (plus - minus)  # the step actually taken, not 2h: rounding of x+h is exact here
    analytical = t.grad.reshape(-1)[idx]
    geom = t.problem.geom
    return gradient_metrics(t.gname, t.grad.shape, t.axes, how, idx, analytical, numerical, t.n_excluded, t.tol,
                            None if t.floor is None else t.floor.reshape(-1)[idx],
                            pads=None if geom is None else geom.pads, stride=None if geom is None else geom.stride)
