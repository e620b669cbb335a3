"""The gradient checker: numerical vs analytical gradients (results in :mod:`.results`).

Works on a *problem* (see :mod:`cnncli.gradcheck.problems`): named float64
inputs, their analytical gradients, and batched loss differences under
perturbations. Knows nothing of terminals; progress is a callback.

Metrics per gradient (over the checked, non-kink elements):

- relative error ``||a - n|| / (||a|| + ||n||)`` (0 when both are 0); passes at ``<= tol``;
- max absolute error and the worst element with both values;
- the count of elements failing ``|a - n| <= 10*tol*max|n| + 100*tol*|n|``, and
  where they sit (a hint, see :mod:`.diagnose`).

A gradient passes when its relative error is within ``max(tol, rounding floor)`` and no
element fails (an element within its own rounding floor never does; see the problems'
``rounding_floor``). It is *inconclusive* (not a pass) when the loss overflows, when the
floor exceeds ``MAX_TOLERANCE``, or when the step (not exact ties) leaves fewer checkable
elements than :func:`min_checked` of those a window reads. Input whose windows all have tied
maxima passes with ``checked == 0`` and a note: it admits no test.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Optional

import numpy as np

from ..errors import HyperparameterError
from .diagnose import pattern_hint, spatial_maps
from .results import CheckResult, GradientResult, Offender, relayout  # noqa: F401  (re-exported)
from .problems import MACHINE_EPS
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
#: A failing fast check on a tensor larger than LOCALIZE_FULL_LIMIT bisects at most this many blocks.
LOCALIZE_BLOCKS = 8
#: Smallest relative step on layers linear in the perturbed input (see :func:`step_size`).
LINEAR_MIN_EPS = 1e-3
TOP_OFFENDERS = 5
#: A relative tolerance the rounding floor would raise above this checks nothing meaningful: inconclusive.
MAX_TOLERANCE = 1e-2
#: A verdict needs this many checkable elements or this fraction of those a window reads,
#: whichever is smaller (see :func:`min_checked`); fewer, because of eps: inconclusive.
MIN_CHECKED = 32
MIN_CHECKED_FRACTION = 0.1
#: ``auto``'s sample (without --samples) evaluates at most about this many output values per tensor:
#: an element of W or b costs two evaluations over the whole batch, so on large batches fewer of
#: them are sampled (never fewer than one per kernel offset; see :func:`_auto_samples`).
AUTO_SAMPLE_BUDGET = 2**27
#: Elements per slice of the directional check's analytical sums (bounded temporaries).
SLICE_VALUES = 2**20
#: Tensors with more values than this keep their random directions one at a time (see :func:`_Directions`).
LAZY_DIRECTIONS = 2**22

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
    auto_samples = samples is None
    method, samples = validate_settings(method, samples, eps, tol, seed)
    rng = np.random.default_rng(seed)
    total_values = sum(problem.inputs[n].size for n in problem.names)
    if method == "auto":
        method_used = "full" if total_values <= AUTO_FULL_LIMIT else "fast+sample"
    else:
        method_used = method
    tracker = _Tracker(progress)
    notes = list(notes)
    results = []
    # NOTE: at extreme magnitudes float64 overflows; that becomes a verdict with a message, never a raw
    # numpy warning on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        analytical = problem.analytical()
        G = getattr(problem, "G", None)
        for name in problem.names:
            if G is not None and not np.any(G):
                # L = sum(0 * layer(x)) is 0 for any layer: both sides agree and nothing is tested
                gname = GRADIENT_NAMES.get(name, name)
                results.append(_inconclusive(gname, name, analytical[name], (
                    f"{gname}: --grad is all zeros: every gradient is zero whatever the layer does; "
                    "nothing is tested (give a nonzero upstream gradient, or omit --grad for a random one)")))
                continue
            n = _auto_samples(problem, name, samples, notes) if auto_samples and method_used == "fast+sample" \
                else samples
            results.append(_check_input(problem, name, analytical[name], eps, method_used, n, tol, rng,
                                        tracker, notes))
    return CheckResult(problem.layer, method, eps, tol, seed, tuple(results), tuple(notes), label, params or {})


def _auto_samples(problem, name, samples, notes) -> int:
    """``auto``'s sample size for input ``name``: ``samples``, fewer when each element costs a whole batch.

    A problem may say how many output values one elementwise evaluation computes
    (``element_cost``); the sample is cut to ``AUTO_SAMPLE_BUDGET`` of them, but keeps
    at least one element per kernel offset of W (the strata of :mod:`.sampling`).
    """
    cost = problem.element_cost(name) if hasattr(problem, "element_cost") else 0
    x = problem.inputs[name]
    if cost <= 0 or min(samples, x.size) * cost <= AUTO_SAMPLE_BUDGET:
        return samples
    least = x.shape[0] * x.shape[1] if name == "W" and x.ndim == 4 else 1
    n = max(least, AUTO_SAMPLE_BUDGET // cost)
    if n < min(samples, x.size):
        gname = GRADIENT_NAMES.get(name, name)
        notes.append(f"{gname}: {n} of its elements sampled (each costs two evaluations over the whole batch); "
                     "--samples N or --method full checks more")
        return n
    return samples


def _check_input(problem, name, grad, eps, method, samples, tol, rng, tracker, notes) -> GradientResult:
    """Check one input of ``problem``: step, rounding floor, kinks and coverage, then the comparison."""
    x = problem.inputs[name]
    gname = GRADIENT_NAMES.get(name, name)
    scale = problem.step_scale(name) if hasattr(problem, "step_scale") else None
    h = step_size(x, eps, linear=getattr(problem, "linear", False), scale=scale)
    floor = problem.rounding_floor(name, h) if hasattr(problem, "rounding_floor") else None
    if not (np.all(np.isfinite(grad)) and math.isfinite(h) and (floor is None or np.all(np.isfinite(floor)))):
        sizes = ", ".join(f"max |{k}| {_max_abs(problem.inputs[k]):.2g}" for k in problem.names)
        return _inconclusive(gname, name, grad, f"{gname}: the loss overflows float64 at this scale ({sizes}); "
                                                "rescale the input")
    kinks = problem.kinks(name, h)
    stuck = ((x + h) == x) | ((x - h) == x)
    if stuck.any():
        notes.append(f"{int(stuck.sum())} element(s) of {name} do not change under eps={eps:g} "
                     f"(x + eps == x); they are skipped: use a larger --eps")
    excluded = stuck if kinks is None else (stuck | kinks)
    coverage = _coverage(problem, name, gname, excluded, kinks, eps, h, notes)
    if coverage is not None:
        return _inconclusive(gname, name, grad, coverage, kinks=int(excluded.sum()))
    if excluded.all() or (hasattr(problem, "reads") and not (problem.reads(name) & ~excluded).any()):
        # every read element is an exact tie (see _coverage's note): nothing to check, nothing wrong seen
        return GradientResult(gname, tuple(grad.shape), _axes(name, grad.ndim), "none", math.nan, math.nan, 0, 0,
                              int(excluded.sum()), 0, True)
    r = _check_tensor(problem, name, x, grad, h, excluded, method, samples, tol, rng, tracker, floor, notes)
    if r.tolerance is not None and r.tolerance > MAX_TOLERANCE:
        return replace(r, passed=False, inconclusive=(
            f"{gname}: at this data's magnitude float64 rounding alone could make a relative error of "
            f"{r.rounding_floor:.1e}; nothing meaningful can be checked: rescale the input"))
    if r.tolerance is not None and r.tolerance > tol:
        notes.append(f"{gname}: tolerance raised from {tol:g} to {r.tolerance:.2g} because of the data's "
                     f"magnitude (the float64 rounding floor of its numerical gradient; max |{name}| "
                     f"{_max_abs(x):.2g})")
    return r


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def _coverage(problem, name, gname, excluded, kinks, eps, h, notes) -> Optional[str]:
    """The reason a gradient is inconclusive when too little of it can be checked, else None.

    Counts only elements that some window reads (the others have a zero gradient
    whatever the layer does, so checking them proves nothing). A verdict needs
    ``min_checked(n_read)`` checkable elements (an absolute count suffices on large
    inputs: 32 checked elements of a binary mask test the layer as well as 10% would).

    NOTE: only exclusions the user's eps causes make a check inconclusive: kinks
    whose gap is nonzero but within the step (a smaller --eps recovers them) and
    elements unchanged by the step (a larger one does). Exact ties (gap 0, every
    integer or binary image has them) are kinks at any eps: the data admits no
    test there, which is no evidence of a bug, so they never make a check
    inconclusive; the note says how many there are.
    """
    if not excluded.any():
        return None
    reads = problem.reads(name) if hasattr(problem, "reads") else np.ones(excluded.shape, dtype=bool)
    n_read = int(reads.sum())
    n_out = int((excluded & reads).sum())
    left = n_read - n_out
    if n_read == 0:
        return None
    ties = problem.kinks(name, 0.0) if kinks is not None else None
    n_ties = 0 if ties is None else int((ties & reads).sum())
    n_eps = n_out - n_ties  # excluded because of this eps (near-ties, or unchanged by the step)
    at_kinks = ties is not None and bool((kinks & ~ties & reads).any())
    if left < min_checked(n_read) and n_eps > 0:
        if at_kinks:
            what = "at kinks"
            why = (f"the step {h:.2g} (--eps {eps:g} times max |{name}|) is not smaller than the nonzero gaps "
                   "between window values")
        else:
            what, why = "unchanged by the step", "x + eps == x"
        checked = "nothing was checked" if left == 0 else f"only {left} could be checked"
        return (f"{gname}: {n_eps} of {n_read} elements are {what}: {why}; {checked}: "
                f"use a {'smaller' if at_kinks else 'larger'} --eps")
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
                     f"{left} checked")
    return None


def min_checked(n_read: int) -> int:
    """Checkable elements a verdict needs: 32 or 10% of those read, whichever is smaller (at least 1)."""
    return max(1, min(MIN_CHECKED, math.ceil(MIN_CHECKED_FRACTION * n_read)))


def _inconclusive(gname, name, grad, reason, kinks=0) -> GradientResult:
    return GradientResult(gname, tuple(grad.shape), _axes(name, grad.ndim), "none", math.nan, math.nan, 0, 0,
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
    if method not in METHODS:
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


def _check_tensor(problem, name, x, grad, h, excluded, method, samples, tol, rng, tracker, floor,
                  notes) -> GradientResult:
    kinks = int(excluded.sum())
    args = (problem, name, x, grad, h)
    if method == "full":
        idx = np.flatnonzero(~excluded)
        return _elementwise(*args, idx, kinks, "full", tol, tracker, floor)
    if method == "sample":
        idx = stratified_indices(x.shape, name, samples, rng, excluded)
        return _elementwise(*args, idx, kinks, "sample", tol, tracker, floor)
    fast, (D, blocks, pairs) = _directional(*args, excluded, tol, rng, tracker, floor)
    if not fast.passed:  # localize the disagreement elementwise on this tensor
        n_ok = x.size - kinks
        if n_ok <= LOCALIZE_FULL_LIMIT:
            idx, how = np.flatnonzero(~excluded), "fast+full"
        else:
            how = "fast+bisect"
            found = _localize(problem, name, x, grad, h, D, blocks, pairs, tol, tracker, floor)
            context = stratified_indices(x.shape, name, samples, rng, excluded)
            idx = np.union1d(found, context).astype(np.int64)
        local = _elementwise(*args, idx, kinks, how, tol, tracker, floor)
        if local.failing == 0:
            notes.append(f"{fast.name}: a directional check disagreed by {fast.max_abs_error:.2g} but no single "
                         f"element did{'' if how == 'fast+full' else ' (of those localized and sampled)'}: "
                         "rerun with --method full")
        return _merge(fast, local, how, passed=False)
    if method == "fast+sample":
        idx = stratified_indices(x.shape, name, samples, rng, excluded)
        local = _elementwise(*args, idx, kinks, "fast+sample", tol, tracker, floor)
        return _merge(fast, local, "fast+sample", passed=local.passed)
    return fast


def _merge(fast: GradientResult, local: GradientResult, how: str, passed: bool) -> GradientResult:
    # NOTE: max_abs_error stays elementwise (a directional difference is a sum over many
    # elements, not comparable with the worst element's error shown beside it); a check
    # localized in full reports the complete elementwise relative error.
    rel = local.relative_error if how == "fast+full" else max(fast.relative_error, local.relative_error)
    return replace(local, method=how, relative_error=rel, directions=fast.directions, passed=passed,
                   rounding_floor=max(fast.rounding_floor, local.rounding_floor),
                   tolerance=max(fast.tolerance, local.tolerance))


def _axes(name: str, ndim: int) -> str:
    return {"A_prev": "mhwc", "W": "hwio", "b": "c"}.get(name, "abcdefgh"[:ndim])


def _elementwise(problem, name, x, grad, h, idx, kinks, how, tol, tracker, floor=None) -> GradientResult:
    """Central differences of the elements ``idx`` (flat) of input ``name``."""
    idx = np.asarray(idx, dtype=np.int64)
    tracker.plan(len(idx))
    xs = x.reshape(-1)[idx]
    plus, minus = xs + h, xs - h
    diff = problem.differences(name, idx, plus, minus, tracker.tick) if len(idx) else np.empty(0)
    numerical = diff / (plus - minus)  # the step actually taken, not 2h: rounding of x+h is exact here
    analytical = grad.reshape(-1)[idx]
    geom = getattr(problem, "geom", None)
    return gradient_metrics(GRADIENT_NAMES.get(name, name), grad.shape, _axes(name, grad.ndim), how,
                            idx, analytical, numerical, kinks, tol,
                            None if floor is None else floor.reshape(-1)[idx],
                            pads=None if geom is None else geom.pads, stride=None if geom is None else geom.stride)


def gradient_metrics(name, shape, axes, how, idx, analytical, numerical, kinks, tol, floor=None, *,
                     pads=None, stride=None) -> GradientResult:
    """Build a :class:`GradientResult` from elementwise analytical/numerical values at flat ``idx``.

    ``floor`` (optional, per compared element) is the absolute error float64 rounding
    alone may leave in the numerical value: an element within it never fails, and the
    relative-error threshold is ``max(tol, ||floor|| / (||a|| + ||n||))``.
    ``pads`` (top, bottom, left, right) and ``stride`` (h, w) of the layer, when known,
    decide which pattern hints the failing positions support (see :func:`.diagnose.pattern_hint`;
    stripes only on input gradients, whose rows are the stride's).
    """
    a, n = np.asarray(analytical, dtype=np.float64), np.asarray(numerical, dtype=np.float64)
    floor = np.zeros(a.shape) if floor is None else np.asarray(floor, dtype=np.float64)
    err = np.abs(a - n)
    rel = _relative_error(a, n)
    rel_floor = _relative_floor(floor, a, n)
    bad = element_fails(err, n, tol) & ~(err <= floor)
    errors = np.full(shape, np.nan)
    errors.reshape(-1)[idx] = np.where(np.isfinite(err), err, np.inf)
    error_map, hint = None, None
    if len(shape) == 4:
        failing_at = np.zeros(shape, dtype=bool)
        failing_at.reshape(-1)[idx] = bad
        error_map, failing_map = spatial_maps(errors, failing_at, axes)
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


def _norm(v: np.ndarray) -> float:
    """The 2-norm without overflow of the squares (data near 1e300 stays finite)."""
    top = float(np.max(np.abs(v))) if v.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * float(np.linalg.norm(v / top))


def _relative_error(a: np.ndarray, n: np.ndarray) -> float:
    denom = _norm(a) + _norm(n)
    if not math.isfinite(denom):
        return math.nan
    return _norm(a - n) / denom if denom > 0 else 0.0


def _relative_floor(floor: np.ndarray, a: np.ndarray, n: np.ndarray) -> float:
    """The relative error that the rounding ``floor`` (absolute, per element) alone could produce."""
    if not floor.any():
        return 0.0
    denom = _norm(a) + _norm(n)
    if not denom > 0:  # both exactly zero (e.g. a filter that only ever sees padding): they agree exactly
        return 0.0
    return _norm(floor) / denom


def _directional(problem, name, x, grad, h, excluded, tol, rng, tracker, floor=None) -> GradientResult:
    """Compare ``<grad, d>`` with the central difference along random directions d.

    Directions are uniform in [-1, 1] (so ``max|d| <= 1``, which the kink
    threshold assumes) and zero on excluded elements. The rounding floor of a
    directional value is ``sum |d| * floor``.

    Besides the sums over the whole tensor, each *block* (an example of A_prev,
    an output channel of W or b; see the problems' ``block_ids``) is compared on
    its own, from the same evaluations: one wrong element among a million is
    lost in the whole sum's tolerance but not in its own example's. A block
    that disagrees (:func:`_disagree`) fails the check.

    Returns
    -------
    result : GradientResult
    localize : (D, blocks, pairs)
        The directions, the block of each element, and the (direction, block)
        pairs to bisect when the check failed (block -1: the whole direction).
    """
    tracker.plan(FAST_DIRECTIONS)
    D = _Directions(rng, x.shape, excluded)
    blocks = _block_ids(problem, name, x)
    n_blocks = int(blocks.max()) + 1 if blocks.size else 0
    if hasattr(problem, "directional_blocks"):
        def evaluate(d):
            return problem.directional_blocks(name, d, h, tracker.tick)
    else:
        blocks, n_blocks = np.zeros(x.shape, dtype=np.int64), 1

        def evaluate(d):
            return problem.directional(name, d, h, tracker.tick)[:, None]
    # a lazy D is evaluated one direction at a time: only one is drawn (as large as x) at a time
    parts = [evaluate(D)] if isinstance(D, np.ndarray) else [evaluate(D[p][None]) for p in range(FAST_DIRECTIONS)]
    per_block = np.concatenate(parts) / (2 * h)
    numerical = per_block.sum(axis=1)
    # NOTE: the analytical side uses the step actually taken, (x + hd) - (x - hd) as rounded (the
    # problems build their perturbed inputs with the same operations), as the elementwise check does:
    # a step near the data's ulp (--eps 1e-14 on 0..255) otherwise shows rounding as a gradient error.
    # one direction and one slice of elements at a time: the temporaries stay bounded whatever x's size
    a_blk, l1_blk, f_blk = (np.zeros((FAST_DIRECTIONS, n_blocks)) for _ in range(3))
    bid, g, xf = blocks.reshape(-1), grad.reshape(-1), x.reshape(-1)
    fl = None if floor is None else floor.reshape(-1)
    for p in range(FAST_DIRECTIONS):
        dp = D[p].reshape(-1)  # drawn once per direction
        for lo in range(0, x.size, SLICE_VALUES):
            sl = slice(lo, lo + SLICE_VALUES)
            flat = ((xf[sl] + h * dp[sl]) - (xf[sl] - h * dp[sl])) / (2 * h)
            terms = flat * g[sl]
            a_blk[p] += np.bincount(bid[sl], terms, n_blocks)
            l1_blk[p] += np.bincount(bid[sl], np.abs(terms), n_blocks)
            if fl is not None:
                f_blk[p] += np.bincount(bid[sl], np.abs(flat) * fl[sl], n_blocks)
    analytical = a_blk.sum(axis=1)
    dir_floor = f_blk.sum(axis=1)
    err = np.abs(analytical - numerical)
    rel = _relative_error(analytical, numerical)
    rel_floor = _relative_floor(dir_floor, analytical, numerical)
    failing = int(np.sum(element_fails(err, numerical, tol) & ~(err <= dir_floor)))
    bad_blocks = np.argwhere(_disagree(a_blk, per_block, l1_blk, f_blk, tol))  # (direction, block) pairs
    threshold = max(tol, rel_floor)
    r = GradientResult(GRADIENT_NAMES.get(name, name), tuple(grad.shape), _axes(name, grad.ndim), "fast",
                       rel, float(err.max()), 0, FAST_DIRECTIONS, int(excluded.sum()), 0,
                       bool(rel <= threshold and failing == 0 and len(bad_blocks) == 0),
                       rounding_floor=rel_floor, tolerance=threshold)
    if not len(bad_blocks):  # the whole sums disagree, no single block does: bisect the worst direction whole
        bad_blocks = np.array([[int(np.argmax(err)), -1]])
    return r, (D, blocks, bad_blocks)


def _Directions(rng, shape, excluded):
    """The ``FAST_DIRECTIONS`` random directions: uniform in [-1, 1], zero on ``excluded``.

    Small tensors get an array (FAST_DIRECTIONS,) + shape. A tensor of more than
    ``LAZY_DIRECTIONS`` values gets a :class:`_LazyDirections` instead: the same
    values, drawn again from the generator's saved state when one is needed, so
    only one direction is in memory at a time (they are as large as the input).
    """
    n = int(np.prod(shape))
    advance = getattr(rng.bit_generator, "advance", None)
    if n <= LAZY_DIRECTIONS or advance is None:
        D = rng.uniform(-1.0, 1.0, size=(FAST_DIRECTIONS,) + tuple(shape))
        D[:, excluded] = 0.0
        return D
    lazy = _LazyDirections(rng.bit_generator, shape, excluded)
    advance(FAST_DIRECTIONS * n)  # the generator moves on exactly as if all had been drawn (one draw per value)
    return lazy


class _LazyDirections:
    """``D[p]`` of :func:`_Directions`, drawn on demand from a saved generator state."""

    def __init__(self, bit_generator, shape, excluded):
        self.kind, self.state = type(bit_generator), bit_generator.state
        self.shape, self.excluded = (FAST_DIRECTIONS,) + tuple(shape), excluded

    def __getitem__(self, p: int) -> np.ndarray:
        bits = self.kind()
        bits.state = self.state
        n = int(np.prod(self.shape[1:]))
        bits.advance(int(p) * n)
        d = np.random.Generator(bits).uniform(-1.0, 1.0, size=self.shape[1:])
        d[self.excluded] = 0.0
        return d


def _block_ids(problem, name, x) -> np.ndarray:
    return problem.block_ids(name) if hasattr(problem, "block_ids") else np.zeros(x.shape, dtype=np.int64)


def _disagree(a, n, l1, floor, tol) -> np.ndarray:
    """Where directional values ``a`` (analytical) and ``n`` (numerical) disagree beyond rounding.

    The allowance is the larger of: ``tol`` relative to the values, the numerical
    rounding ``floor``, and the float64 rounding of the contraction itself
    (``1000 * eps_machine`` times the sum of the terms' magnitudes ``l1``, so a
    sum cancelling to nearly 0 is not a disagreement).
    """
    err = np.abs(a - n)
    allow = np.maximum(np.maximum(tol * (np.abs(a) + np.abs(n)), floor), 1e3 * MACHINE_EPS * l1)
    return ~(err <= allow)


def _localize(problem, name, x, grad, h, D, blocks, pairs, tol, tracker, floor) -> np.ndarray:
    """Flat indices of failing elements found by bisecting the disagreeing (direction, block) pairs.

    At most ``LOCALIZE_BLOCKS`` blocks, ``TOP_OFFENDERS`` elements each: enough to
    show where the gradient is wrong at ``O(log N)`` evaluations per element.
    """
    found: list = []
    done = set()
    bid = blocks.reshape(-1)
    for p, blk in pairs:
        if blk in done or len(done) >= LOCALIZE_BLOCKS:
            continue
        done.add(blk)
        d = D[p].reshape(-1)
        support = np.flatnonzero((d != 0) & ((bid == blk) if blk >= 0 else True))
        found.extend(_bisect(problem, name, x, grad, h, d, support, tol, tracker, floor, TOP_OFFENDERS))
    return np.unique(np.asarray(found, dtype=np.int64))


def _bisect(problem, name, x, grad, h, d, support, tol, tracker, floor, limit) -> list:
    """Flat indices of single elements whose directional check along ``d`` disagrees.

    ``support`` (flat indices, all in one block) is known to disagree. It is split
    in halves, both evaluated in one call (two directions, each nonzero only on
    its half: two forward evaluations of the block); halves that disagree are
    split again, down to single elements: about ``2 log2(len(support))``
    evaluations per failing element. Stops after ``limit`` elements.
    """
    found: list = []
    stack = [np.asarray(support, dtype=np.int64)]
    fl = None if floor is None else floor.reshape(-1)
    while stack and len(found) < limit:
        s = stack.pop()
        if s.size == 1:
            found.append(int(s[0]))
            continue
        halves = (s[:s.size // 2], s[s.size // 2:])
        Dh = np.zeros((2, x.size))
        for k, half in enumerate(halves):
            Dh[k, half] = d[half]
        Dh = Dh.reshape((2,) + x.shape)
        tracker.plan(2)
        numerical = problem.directional(name, Dh, h, tracker.tick) / (2 * h)
        taken = (((x[None] + h * Dh) - (x[None] - h * Dh)) / (2 * h)).reshape(2, -1)
        g = grad.reshape(-1)
        for k, half in enumerate(halves):
            terms = taken[k, half] * g[half]
            f = 0.0 if fl is None else float(np.sum(np.abs(taken[k, half]) * fl[half]))
            if _disagree(np.sum(terms), numerical[k], np.sum(np.abs(terms)), f, tol):
                stack.append(half)
    return found
