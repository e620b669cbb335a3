"""Checking a user's own classic functions (``cnncli gradcheck --impl FILE.py``).

For each classic function the file defines (SPEC "Python API"):

- ``zero_pad``, ``conv_single_step``, ``create_mask_from_window``,
  ``distribute_value``: against a direct numpy reference;
- ``conv_forward``, ``pool_forward``: against the engine on every classic case
  of the battery (max difference, worst index);
- ``conv_backward``, ``pool_backward``: against the engine's gradients (the
  verdict), and against numerical gradients of the user's *own* forward (when
  defined) as a consistency check: a gradient that matches the engine but not
  the user's forward points at the forward, which is what the report then says
  (on the forward's row), not a failure of the backward.

Max-pool ties are kinks: a correct classic solution sends the gradient to every
tied maximum while the engine sends it to the first, so kink elements are left
out of both comparisons (the battery's normal draws make ties improbable anyway).
The user's functions are called per perturbed element (they are plain Python);
the battery's sizes keep that bounded, and ``sample`` (the default here) checks
a stratified handful of elements per tensor.
"""

from __future__ import annotations

import difflib
import linecache
import os
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engine import conv2d, conv2d_backward, pool2d, pool2d_backward
from ..errors import HyperparameterError, ImplError
from .battery import BATTERY, Configuration
from .core import DEFAULT_EPS, DEFAULT_TOL, step_size, validate_settings
from .diagnose import ARRAY_INTO_ELEMENT, diagnose
from .findings import Finding, FunctionReport, ImplResult, compare
from .metrics import gradient_metrics
from .mistakes import BIAS_NOT_ADDED, recognise_function, single_step_without_bias
from .notebook import plan_impl
from .pool_problem import max_pool_kinks
from .sampling import stratified_indices
from .sandbox import DEFAULT_TIMEOUT, Sandbox, call_perturbed, call_user
from .userfile import CLASSIC, UserCallFailed, UserException, UserOutput
from .wire import Kept

#: Elements per tensor compared with the user's own numerical gradients by default.
IMPL_SAMPLES = 12


class _Run:
    """State of one check: the module, settings, and what the user's forwards returned."""

    def __init__(self, module: Sandbox, method, samples, eps, tol, seed):
        self.module, self.method, self.samples, self.eps, self.tol = module, method, samples, eps, tol
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.caches: Dict[Tuple[str, str], object] = {}
        self.forward_ok: Dict[Tuple[str, str], bool] = {}
        #: Per layer: (case, gradient) where the backward matched the engine but not the user's forward.
        self.forward_suspect: Dict[str, List[Tuple[str, str]]] = {}
        #: Per classic forward/backward: what it returned on each configuration (see :mod:`.mistakes`).
        self.returned: Dict[str, list] = {}
        #: conv_single_step's trials: (passed, returned, expected, b).
        self.single_steps: List[tuple] = []
        #: Per function: the mistakes recognised in it (they lead its diagnosis).
        self.recognised: Dict[str, Tuple[str, ...]] = {}


@dataclass(frozen=True)
class _Trial:
    """One configuration's backward as the user's code returned it, to check against their own forward."""

    layer: str
    case: Configuration
    inputs: Dict[str, np.ndarray]  # A_prev, W, b as given to the user's functions
    G: np.ndarray  # the upstream gradient
    user_grads: Dict[str, object]  # what the user's backward returned, by input name
    names: Tuple[str, ...]  # the inputs checked
    kinks: Dict[str, np.ndarray]  # per input: elements where the layer is not differentiable


def check_impl(path, *, method: str = "sample", samples: Optional[int] = None, eps: float = DEFAULT_EPS,
               tol: float = DEFAULT_TOL, seed: int = 0, progress: Optional[Callable[[int, int], None]] = None,
               echo: Optional[Callable[[str], None]] = None, only: Optional[Sequence[str]] = None,
               timeout: float = DEFAULT_TIMEOUT) -> ImplResult:
    """Run ``path`` in a child process and check every classic function it defines.

    Parameters
    ----------
    path : str or os.PathLike
        The user's ``.py`` file, nbconvert ``.py`` export or notebook (``.ipynb``).
    method : {"auto", "full", "fast", "sample"}
        Elements compared with the user's own numerical gradients: ``full`` every
        element, otherwise a stratified sample of ``samples`` per tensor (default 12);
        ``fast`` (random directions) does not apply to the user's per-element calls and
        runs ``sample``, with a note. Comparisons with the engine always cover every element.
    samples, eps, tol, seed
        As :func:`cnncli.gradcheck.core.check_problem`.
    progress : callable(done, total), optional
    echo : callable(str), optional
        Receives each line the user's code prints (at most ``ECHO_LIMIT`` lines and
        ``ECHO_BYTES``); every line is counted in ``printed_lines`` either way.
    only : sequence of str, optional
        Check just these classic functions.
    timeout : float
        Seconds each call into the user's code may take; the whole check may take
        ``OVERALL_FACTOR`` times that (see :mod:`.sandbox`).

    Returns
    -------
    ImplResult

    Raises
    ------
    ImplError
        The file cannot be read or loaded (syntax or import error, with file and line;
        not a notebook), or defines none of the classic functions (none of ``only``).
    HyperparameterError
        Invalid settings, an unknown name in ``only``, a timeout that is not a positive number.
    """
    asked, _ = validate_settings(method, samples, eps, tol, seed)
    only = validate_only(only)
    if not (isinstance(timeout, (int, float)) and np.isfinite(timeout) and timeout > 0):
        raise HyperparameterError(f"timeout must be a positive number of seconds, got {timeout!r}")
    method = "full" if asked == "full" else "sample"
    n = samples or IMPL_SAMPLES
    notes = []
    if asked == "fast":
        # NOTE: random directions need the whole input perturbed at once, which a user's forward can do,
        # but a disagreement would then have to be localized by per-element calls anyway: sample directly.
        notes.append(f"--method fast does not apply to your functions (they are called once per perturbed "
                     f"element); ran sample instead: {n} elements per tensor")
    plan = plan_impl(path)
    output = UserOutput(echo)
    with Sandbox(plan.request, output, timeout) as box:
        loaded = box.start()
        found = [name for name in CLASSIC if name in loaded["defined"] or name in plan.unchecked]
        if not found:
            raise ImplError(f"--impl {os.fspath(path)!r} defines no classic function (conv_forward...)")
        if only is not None:
            if not set(only) & set(found):
                raise ImplError(f"{os.fspath(path)!r} defines {', '.join(found)}, not {' or '.join(only)} (--only)")
            notes.append(f"checked only {', '.join(n for n in CLASSIC if n in only)} (--only)")
        notes.extend(plan.notes)
        notes.extend(f"{m} is not installed here: its import was let through, and a function that uses it fails "
                     "when called" for m in loaded.get("missing", ()))
        notes.extend(loaded.get("notes", ()))
        run = _Run(box, method, n, eps, tol, seed)
        run.defined = tuple(name for name in found if name not in plan.unchecked)
        # NOTE: --only conv_backward still runs the user's conv_forward (unreported) when the file defines it:
        # the backward then gets the cache its own forward makes, and the numerical check has a forward.
        wanted = set(CLASSIC if only is None else only)
        helpers = {n.replace("backward", "forward") for n in wanted if n.endswith("backward")} - wanted
        steps = [(name, fn) for name, fn in _CHECKS if name in found and name in wanted | helpers]
        reports = []
        for i, (name, fn) in enumerate(steps):
            if progress:
                progress(i, len(steps))
            if name in plan.unchecked:
                reports.append(_not_checked(name, *plan.unchecked[name]))
                continue
            findings: List[Finding] = []
            errors: List[UserException] = []
            fn(run, findings, errors)
            errors = _with_source(errors, path)
            run.recognised[name] = _recognised(run, name)
            hints = diagnose(findings, errors, _CASES, function=name, recognised=run.recognised[name])
            reports.append(FunctionReport(name, tuple(findings), _dedupe(errors),
                                          hints + _facts(run, name, errors, hints)))
        if progress:
            progress(len(steps), len(steps))
    for r in reports:
        if r.name not in wanted and not r.passed:
            notes.append(f"{r.name} (run for {r.name.replace('forward', 'backward')}'s cache, not reported under "
                         f"--only) does not match cnncli's: check it too")
    reports = _blame_forwards(run, [r for r in reports if r.name in wanted], notes)
    missing = tuple(n for n in CLASSIC if n not in found)
    return ImplResult(str(path), tuple(reports), missing, method, tuple(notes), output.lines, output.shown)


def validate_only(only: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """The names of ``only`` (None: all); an unknown one raises :class:`HyperparameterError` naming the nearest."""
    if only is None:
        return None
    names = tuple(n.strip() for n in only if n.strip())
    for name in names:
        if name not in CLASSIC:
            # NOTE: the eight names do not fit one 80-column line; --help lists them
            near = difflib.get_close_matches(name, CLASSIC, n=1)
            raise HyperparameterError(f"--only {name!r} is unknown" + (f"; did you mean {near[0]}?" if near else
                                                                       " (the eight: cnncli gradcheck --help)"))
    if not names:
        raise HyperparameterError("--only needs a function name (see cnncli gradcheck --help)")
    return names


def _not_checked(name: str, cell: int, line: int, message: str) -> FunctionReport:
    """The report of a function whose notebook cell does not parse."""
    error = UserException(name, f"not checked: {message}", line, "", kind="syntax", cell=cell)
    return FunctionReport(name, (), (error,), (f"not checked: {message}",))


def _blame_forwards(run: _Run, reports: List[FunctionReport], notes: List[str]) -> List[FunctionReport]:
    """Say on the forward's row where its backward matched the engine but not the forward's own gradients.

    The message names those configurations, and says so when the backward fails
    elsewhere, so the two rows never contradict each other. A forward that passes
    against the engine yet disagrees with its own numerical gradients (say, it
    depends on something besides its inputs) gets a note instead, so a PASS row
    never carries a "likely wrong".
    """
    by = {r.name: i for i, r in enumerate(reports)}
    for layer, suspects in run.forward_suspect.items():
        if not suspects:
            continue
        backward = by.get(f"{layer}_backward")
        if backward is not None and not reports[backward].passed:  # say what matched: the two rows agree
            quantities = ", ".join(sorted({q for _, q in suspects}))
            cases = list(dict.fromkeys(case for case, _ in suspects))
            where = "" if len(cases) == len(_cases(layer)) else f" on {', '.join(cases)}"
            message = (f"{layer}_backward's {quantities} match cnncli's gradients{where} but not the numerical "
                       f"gradients of your {layer}_forward: your {layer}_forward is likely wrong "
                       f"({layer}_backward fails elsewhere: see its row)")
        else:
            message = (f"{layer}_backward matches cnncli's gradients but not the numerical gradients of your "
                       f"{layer}_forward: your {layer}_forward is likely wrong")
        i = by.get(f"{layer}_forward")
        if i is not None and not reports[i].passed:
            r = reports[i]
            # a recognised mistake of the forward stays first: it says more than where the forward is wrong
            hints = (r.diagnosis + (message,))[:3] if run.recognised.get(r.name) else (message,) + r.diagnosis
            reports[i] = FunctionReport(r.name, r.findings, r.errors, hints)
        else:
            notes.append(message)
    return reports


def _with_source(errors: List[UserException], path) -> List[UserException]:
    """The exceptions with the text of their line in the user's file (quoted in reports)."""
    out = []
    for e in errors:
        # a notebook cell's line is not the file's: the child sends those lines' text itself
        text = linecache.getline(str(path), e.line).strip() if e.line and e.cell is None else ""
        out.append(replace(e, source=text) if text and e.source is None else e)
    return out


def _recognised(run: _Run, name: str) -> Tuple[str, ...]:
    """Mistakes of function ``name`` whose replay equals what it returned (see :mod:`.mistakes`)."""
    if name == "conv_single_step":
        return (BIAS_NOT_ADDED,) if single_step_without_bias(run.single_steps) else ()
    return recognise_function(name, run.returned.get(name, ()))


def _facts(run: _Run, name: str, errors, hints) -> Tuple[str, ...]:
    """What is known to be right besides a crash: conv_single_step's value when conv_forward cannot store it."""
    if name != "conv_forward" or not any(ARRAY_INTO_ELEMENT in e.exception for e in errors) or len(hints) >= 3:
        return ()
    shapes = {np.shape(got) for passed, got, _, _ in run.single_steps if passed}
    if run.single_steps and all(passed for passed, *_ in run.single_steps) and shapes and () not in shapes:
        return (f"your conv_single_step's values are right, returned as arrays of shape "
                f"{', '.join(map(str, sorted(shapes)))} instead of numbers",)
    return ()


def _dedupe(errors: List[UserException]) -> Tuple[UserException, ...]:
    """One entry per distinct exception and line (the first case it happened on)."""
    seen, out = set(), []
    for e in errors:
        key = (e.exception, e.line)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return tuple(out)


_CASES: Dict[str, Configuration] = {c.name: c for c in BATTERY if c.classic}


def _cases(layer: str):
    return [(i, c) for i, c in enumerate(BATTERY) if c.classic and c.layer == layer]


def _helpers(run: _Run, name: str, findings, errors) -> None:
    """zero_pad, conv_single_step, create_mask_from_window, distribute_value against numpy."""
    rng = np.random.default_rng(run.seed)
    trials = []
    if name == "zero_pad":
        X = rng.standard_normal((2, 3, 4, 2))
        for pad in (0, 1, 2):
            expected = np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            trials.append((f"pad {pad}", "X_pad", (X.copy(), pad), expected))
    elif name == "conv_single_step":
        for shape in ((3, 3, 4), (2, 2, 1), (4, 4, 3)):
            a, W, b = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal((1, 1, 1))
            trials.append((f"slice {shape}", "Z", (a.copy(), W.copy(), b.copy()), np.sum(a * W) + b.item()))
    elif name == "create_mask_from_window":
        for shape in ((2, 2), (3, 3), (4, 4)):
            x = rng.standard_normal(shape)  # no ties: the classic x == max(x) and first-max agree
            trials.append((f"window {shape}", "mask", (x.copy(),), (x == x.max()).astype(float)))
    else:
        for dz, shape in ((2.0, (2, 2)), (-1.5, (3, 3)), (0.7, (2, 3))):
            trials.append((f"dz {dz} shape {shape}", "a", (dz, shape), np.full(shape, dz / (shape[0] * shape[1]))))
    for case, quantity, args, expected in trials:
        try:
            got = call_user(run.module, name, case, *args)
        except UserCallFailed as exc:
            errors.append(exc.info)
            continue
        findings.append(compare(case, quantity, "reference", got, expected, run.tol))
        if name == "conv_single_step":
            run.single_steps.append((findings[-1].passed, got, expected, args[2]))


def _forward(run: _Run, layer: str, findings, errors) -> None:
    """conv_forward / pool_forward against the engine on the classic cases."""
    fname = f"{layer}_forward"
    for i, case in _cases(layer):
        A, W, b, _ = case.arrays(run.seed + i)
        try:
            if layer == "conv":
                out = call_user(run.module, fname, case.name, A.copy(), W.copy(), b.copy(), case.hparameters(),
                                keep=True)
                expected = conv2d(A, W, b, case.conv_params())
            else:
                out = call_user(run.module, fname, case.name, A.copy(), case.hparameters(), case.mode, keep=True)
                expected = pool2d(A, case.pool_params())
        except UserCallFailed as exc:
            errors.append(exc.info)
            continue
        if not (isinstance(out, tuple) and len(out) == 2):
            findings.append(Finding(case.name, "Z" if layer == "conv" else "A", "engine", False,
                                    detail="did not return a pair (output, cache)"))
            continue
        f = compare(case.name, "Z" if layer == "conv" else "A", "engine", out[0], expected, run.tol)
        findings.append(f)
        run.returned.setdefault(fname, []).append((case, run.seed + i, f.passed, out[0]))
        run.caches[(layer, case.name)] = out[1]
        run.forward_ok[(layer, case.name)] = f.detail == ""  # right shape: usable for numerical gradients


def _backward(run: _Run, layer: str, findings, errors) -> None:
    """conv_backward / pool_backward against the engine and the user's own numerical gradients."""
    fname = f"{layer}_backward"
    names = ("A_prev", "W", "b") if layer == "conv" else ("A_prev",)
    for i, case in _cases(layer):
        A, W, b, G = case.arrays(run.seed + i)
        hp = case.hparameters()
        inputs = {"A_prev": A, "W": W, "b": b}
        # A cache kept by a child process that has since been restarted (a timeout) is gone: use the classic one.
        own_forward = run.forward_ok.get((layer, case.name), False) and run.module.live(
            run.caches.get((layer, case.name)))
        if layer == "conv":
            cache = run.caches.get((layer, case.name)) if own_forward else (A.copy(), W.copy(), b.copy(), hp)
            engine = conv2d_backward(G, A, W, case.conv_params())
            expected = {"A_prev": engine.dA_prev, "W": engine.dW, "b": engine.db}
            kinks = {}
        else:
            cache = run.caches.get((layer, case.name)) if own_forward else (A.copy(), hp)
            expected = {"A_prev": pool2d_backward(G, A, case.pool_params())}
            h = step_size(A, run.eps, linear=case.mode != "max")
            kinks = {"A_prev": max_pool_kinks(A, case.pool_params(), 2 * h)} if case.mode == "max" else {}
        try:
            args = (G.copy(), cache) if layer == "conv" else (G.copy(), cache, case.mode)
            out = call_user(run.module, fname, case.name, *args)
        except UserCallFailed as exc:
            errors.append(exc.info)
            continue
        got = out if layer == "conv" else (out,)
        if not (isinstance(got, tuple) and len(got) == len(names)):
            findings.append(Finding(case.name, "dA_prev", "engine", False,
                                    detail=f"did not return {len(names)} gradient(s) "
                                           f"({', '.join('d' + n for n in names)})"))
            continue
        user_grads = dict(zip(names, got))
        against_engine = [compare(case.name, "d" + n, "engine", user_grads[n], expected[n], run.tol, kinks.get(n))
                          for n in names]
        findings.extend(against_engine)
        run.returned.setdefault(fname, []).append(
            (case, run.seed + i, all(f.passed for f in against_engine), got if layer == "conv" else got[0]))
        if own_forward:
            engine_ok = {f.quantity: f.passed for f in findings if f.case == case.name and f.against == "engine"}
            trial = _Trial(layer, case, inputs, G, user_grads, names, kinks)
            for f in _numerical(run, trial, errors):
                # NOTE: right against the engine but not against the user's forward: the forward is what
                # disagrees with the true gradient, so the backward keeps its pass (see _blame_forwards).
                if not f.passed and engine_ok.get(f.quantity):
                    run.forward_suspect.setdefault(layer, []).append((case.name, f.quantity))
                else:
                    findings.append(f)


def _numerical(run: _Run, trial: _Trial, errors: list) -> List[Finding]:
    """The user's backward against central differences of the user's own forward; a failed call goes to errors."""
    layer, case, inputs, G, kinks = trial.layer, trial.case, trial.inputs, trial.G, trial.kinks
    findings: List[Finding] = []
    for name in trial.names:
        x = inputs[name]
        try:
            g = np.asarray(trial.user_grads[name], dtype=np.float64).reshape(x.shape)
        except (TypeError, ValueError):
            continue  # wrong shape: already reported against the engine
        # NOTE: the same step as the engine check: conv and average pooling are linear in each input
        h = step_size(x, run.eps, linear=layer == "conv" or case.mode == "average")
        excluded = kinks.get(name)
        if run.method == "full":
            idx = np.flatnonzero(np.ones(x.shape, bool) if excluded is None else ~excluded)
        else:
            idx = stratified_indices(x.shape, name, run.samples, run.rng, excluded)
        values = x.reshape(-1)[idx]
        plus, minus = values + h, values - h
        if layer == "conv":
            fname, args, which = "conv_forward", (inputs["A_prev"], inputs["W"], inputs["b"],
                                                  case.hparameters()), ("A_prev", "W", "b").index(name)
        else:
            fname, args, which = "pool_forward", (inputs["A_prev"], case.hparameters(), case.mode), 0
        changes = [pair for k, flat in enumerate(idx) for pair in ((flat, plus[k]), (flat, minus[k]))]
        try:
            # NOTE: one request for every perturbed call of this tensor: the child runs them back to back
            outs = call_perturbed(run.module, fname, case.name, args, which, changes)
            Z = [_forward_output(out, layer, case.name) for out in outs]
        except UserCallFailed as exc:
            errors.append(exc.info)
            return findings
        numerical = np.array([np.sum((Z[2 * k] - Z[2 * k + 1]) * G) for k in range(len(idx))]) / (plus - minus)
        n_kinks = 0 if excluded is None else int(excluded.sum())
        r = gradient_metrics("d" + name, x.shape, "", "numerical", idx, g.reshape(-1)[idx], numerical, n_kinks, run.tol)
        w = r.worst
        findings.append(Finding(case.name, "d" + name, "numerical", r.passed, r.max_abs_error, r.relative_error,
                                w.index if w else None, w.numerical if w else None, w.analytical if w else None,
                                r.checked, r.kinks))
    return findings


def _forward_output(out, layer: str, case: str) -> np.ndarray:
    """The output array of a user's forward called on perturbed inputs; a call failure when it is none."""
    try:
        if isinstance(out, tuple) and len(out) == 2 and not isinstance(out[0], Kept):
            return np.asarray(out[0], dtype=np.float64)
    except (TypeError, ValueError):
        pass
    raise UserCallFailed(UserException(f"{layer}_forward", "returned no (output, cache) pair on perturbed inputs",
                                       None, case, kind="result"))


_CHECKS = (
    ("zero_pad", lambda run, f, e: _helpers(run, "zero_pad", f, e)),
    ("conv_single_step", lambda run, f, e: _helpers(run, "conv_single_step", f, e)),
    ("create_mask_from_window", lambda run, f, e: _helpers(run, "create_mask_from_window", f, e)),
    ("distribute_value", lambda run, f, e: _helpers(run, "distribute_value", f, e)),
    ("conv_forward", lambda run, f, e: _forward(run, "conv", f, e)),
    ("conv_backward", lambda run, f, e: _backward(run, "conv", f, e)),
    ("pool_forward", lambda run, f, e: _forward(run, "pool", f, e)),
    ("pool_backward", lambda run, f, e: _backward(run, "pool", f, e)),
)
