"""The checks of each classic function a user's file defines, on the battery (for :mod:`.impl`).

One check per function (:data:`CHECKS`): the helpers against numpy, the forwards
against the engine on every classic configuration, the backwards against the engine's
gradients and against central differences of the user's own forward. Each call into
the user's code goes through the sandbox; what it returned is kept on the :class:`Run`
for the diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from ..engine import conv2d, conv2d_backward, pool2d, pool2d_backward
from .battery import BATTERY, Configuration
from .core import DEFAULT_EPS, step_size
from .findings import Finding, compare
from .metrics import gradient_metrics
from .pool_problem import max_pool_kinks
from .sampling import stratified_indices
from .sandbox import Sandbox, call_perturbed, call_user
from .userfile import UserCallFailed, UserException
from .wire import Kept


class Run:
    """State of one check: the module, settings, and what the user's forwards returned.

    Parameters
    ----------
    module : Sandbox
        The child process running the user's file.
    method : {"full", "sample"}
        Elements compared with the user's own numerical gradients.
    samples : int
        Elements per tensor under ``"sample"``.
    eps, tol : float
    seed : int
        Seeds the battery's arrays and the samples.
    """

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
        #: distribute_value's trials: (passed, returned, dz, shape).
        self.distributed: List[tuple] = []
        #: Per function: the mistakes recognised in it (they lead its diagnosis).
        self.recognised: Dict[str, Tuple[str, ...]] = {}
        #: (backward, gradient, why) -> configurations whose comparison with central differences of the
        #: user's own forward was left out because of --eps (see :func:`uncompared_notes`).
        self.uncompared: Dict[Tuple[str, str, str], List[str]] = {}


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


#: The battery's classic configurations by name (the diagnosis reads their hyperparameters).
CLASSIC_CASES: Dict[str, Configuration] = {c.name: c for c in BATTERY if c.classic}


def cases_of(layer: str):
    """(battery index, configuration) of the classic configurations of ``layer`` ("conv" or "pool")."""
    return [(i, c) for i, c in enumerate(BATTERY) if c.classic and c.layer == layer]


def _helpers(run: Run, name: str, findings, errors) -> None:
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
        elif name == "distribute_value":
            run.distributed.append((findings[-1].passed, got) + args)


def _forward(run: Run, layer: str, findings, errors) -> None:
    """conv_forward / pool_forward against the engine on the classic cases."""
    fname = f"{layer}_forward"
    for i, case in cases_of(layer):
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
        out = _sequence(out)
        if not (isinstance(out, tuple) and len(out) == 2):
            findings.append(Finding(case.name, "Z" if layer == "conv" else "A", "engine", False,
                                    detail="did not return a pair (output, cache)"))
            continue
        f = compare(case.name, "Z" if layer == "conv" else "A", "engine", out[0], expected, run.tol)
        findings.append(f)
        run.returned.setdefault(fname, []).append((case, run.seed + i, f.passed, out[0]))
        run.caches[(layer, case.name)] = out[1]
        run.forward_ok[(layer, case.name)] = f.detail == ""  # right shape: usable for numerical gradients


def _backward(run: Run, layer: str, findings, errors) -> None:
    """conv_backward / pool_backward against the engine and the user's own numerical gradients."""
    fname = f"{layer}_backward"
    names = ("A_prev", "W", "b") if layer == "conv" else ("A_prev",)
    for i, case in cases_of(layer):
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
            kinks = ties = {}
        else:
            cache = run.caches.get((layer, case.name)) if own_forward else (A.copy(), hp)
            expected = {"A_prev": pool2d_backward(G, A, case.pool_params())}
            h = step_size(A, run.eps, linear=case.mode != "max")
            kinks = {"A_prev": max_pool_kinks(A, case.pool_params(), 2 * h)} if case.mode == "max" else {}
            # NOTE: only exact ties may route the gradient differently from the engine (every tied maximum
            # or the first); the comparison with the engine takes no step, so --eps must not shrink it
            ties = {"A_prev": max_pool_kinks(A, case.pool_params(), 0.0)} if case.mode == "max" else {}
        try:
            args = (G.copy(), cache) if layer == "conv" else (G.copy(), cache, case.mode)
            out = call_user(run.module, fname, case.name, *args)
        except UserCallFailed as exc:
            errors.append(exc.info)
            continue
        got = _sequence(out) if layer == "conv" else (out,)
        if not (isinstance(got, tuple) and len(got) == len(names)):
            findings.append(Finding(case.name, "dA_prev", "engine", False,
                                    detail=f"did not return {len(names)} gradient(s) "
                                           f"({', '.join('d' + n for n in names)})"))
            continue
        user_grads = dict(zip(names, got))
        against_engine = [compare(case.name, "d" + n, "engine", user_grads[n], expected[n], run.tol, ties.get(n))
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


def _numerical(run: Run, trial: _Trial, errors: list) -> List[Finding]:
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
        n_kinks = 0 if excluded is None else int(excluded.sum())
        if idx.size == 0 and n_kinks:
            run.uncompared.setdefault((f"{layer}_backward", "d" + name, TIES), []).append(case.name)
            continue
        if np.any(plus == values) or np.any(minus == values):  # the step is below the values' resolution
            run.uncompared.setdefault((f"{layer}_backward", "d" + name, ROUNDING), []).append(case.name)
            continue
        changes = [pair for k, flat in enumerate(idx) for pair in ((flat, plus[k]), (flat, minus[k]))]
        try:
            # NOTE: one request for every perturbed call of this tensor: the child runs them back to back
            outs = call_perturbed(run.module, fname, case.name, args, which, changes)
            # each pair converted and reduced in turn: the user's outputs are never all held in float64
            with np.errstate(over="ignore", invalid="ignore"):  # an extreme --eps: inf and NaN are reported
                sums = [np.sum((_forward_output(outs[2 * k], layer, case.name, G.shape)
                                - _forward_output(outs[2 * k + 1], layer, case.name, G.shape)) * G)
                        for k in range(len(idx))]
        except UserCallFailed as exc:
            errors.append(exc.info)
            return findings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            numerical = np.array(sums, dtype=np.float64) / (plus - minus)
        if not np.isfinite(numerical).all() and np.isfinite(g.reshape(-1)[idx]).all():
            # a finite gradient against differences that overflow: the step's fault, not the user's
            run.uncompared.setdefault((f"{layer}_backward", "d" + name, OVERFLOW), []).append(case.name)
            continue
        r = gradient_metrics("d" + name, x.shape, "", "numerical", idx, g.reshape(-1)[idx], numerical, n_kinks, run.tol)
        w = r.worst
        findings.append(Finding(case.name, "d" + name, "numerical", r.passed, r.max_abs_error, r.relative_error,
                                w.index if w else None, w.numerical if w else None, w.analytical if w else None,
                                r.checked, r.kinks))
    return findings


#: Why a comparison with central differences was left out (see :func:`uncompared_notes`).
TIES = "every element lies within the step of a tie"
ROUNDING = "the step is lost in rounding"
OVERFLOW = "the differences overflow"


def uncompared_notes(run: Run) -> List[str]:
    """One note per backward and gradient whose check against the user's own forward --eps left out."""
    # at the default step the differences can still overflow: a forward gone to inf when perturbed
    advice = "" if run.eps == DEFAULT_EPS else " (the default --eps compares them)"
    return [f"{fn}'s {grad} was not compared with central differences of your {fn.replace('backward', 'forward')}"
            f" on {len(cases)} configuration{'s' if len(cases) > 1 else ''} ({', '.join(cases)}): at --eps "
            f"{run.eps:g} {why}{advice}"
            for (fn, grad, why), cases in run.uncompared.items()]


def _sequence(value):
    """A list returned where the exercise returns a tuple (``[Z, cache]``, ``[dA, dW, db]``) as that tuple:
    the exercise's own tests unpack either the same way."""
    return tuple(value) if isinstance(value, list) else value


def _forward_output(out, layer: str, case: str, shape) -> np.ndarray:
    """The output (of ``shape``) of a user's forward called on perturbed inputs; a call failure when it is none."""
    message = "returned no (output, cache) pair on perturbed inputs"
    try:
        out = _sequence(out)
        if isinstance(out, tuple) and len(out) == 2 and not isinstance(out[0], Kept):
            # the shape first, before any conversion: a wrong one would not broadcast with G (or be huge)
            if np.shape(out[0]) == tuple(shape):
                return np.asarray(out[0], dtype=np.float64)
            message = f"returned an output of shape {np.shape(out[0])} on perturbed inputs, not {tuple(shape)}"
    except (TypeError, ValueError):
        pass
    raise UserCallFailed(UserException(f"{layer}_forward", message, None, case, kind="result"))


#: (classic function, its check): a check appends Findings and the user's exceptions to its two lists.
CHECKS = (
    ("zero_pad", lambda run, f, e: _helpers(run, "zero_pad", f, e)),
    ("conv_single_step", lambda run, f, e: _helpers(run, "conv_single_step", f, e)),
    ("create_mask_from_window", lambda run, f, e: _helpers(run, "create_mask_from_window", f, e)),
    ("distribute_value", lambda run, f, e: _helpers(run, "distribute_value", f, e)),
    ("conv_forward", lambda run, f, e: _forward(run, "conv", f, e)),
    ("conv_backward", lambda run, f, e: _backward(run, "conv", f, e)),
    ("pool_forward", lambda run, f, e: _forward(run, "pool", f, e)),
    ("pool_backward", lambda run, f, e: _backward(run, "pool", f, e)),
)
