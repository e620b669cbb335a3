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
a stratified handful of elements per tensor. The checks themselves are in
:mod:`.impl_checks`; this module runs the file and turns their findings into reports.
"""

from __future__ import annotations

import difflib
import linecache
import os
from dataclasses import replace
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import HyperparameterError, ImplError, fit_names
from .core import DEFAULT_EPS, DEFAULT_TOL, unused_samples, validate_settings
from .diagnose import ARRAY_INTO_ELEMENT, diagnose
from .findings import Finding, FunctionReport, ImplResult
from .impl_checks import CHECKS, CLASSIC_CASES, Run, cases_of, uncompared_notes
from .mistakes import (BIAS_NOT_ADDED, DISTRIBUTED_MISTAKE, distribute_mistake, pool_backward_by_distribute,
                       recognise_distribute, recognise_function, single_step_without_bias)
from .notebook import plan_impl
from .sandbox import DEFAULT_TIMEOUT, MIN_TIMEOUT, Sandbox
from .userfile import CLASSIC, UserException, UserOutput

#: Elements per tensor compared with the user's own numerical gradients by default.
IMPL_SAMPLES = 12


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
        Seconds each call into the user's code may take (at least ``MIN_TIMEOUT``, 1); the whole check may take
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
        Invalid settings, an unknown name in ``only``, a timeout that is not a number of seconds of at least
        ``MIN_TIMEOUT`` (see :mod:`.sandbox`).
    """
    asked, _ = validate_settings(method, samples, eps, tol, seed)
    only = validate_only(only)
    if not (isinstance(timeout, (int, float)) and np.isfinite(timeout) and timeout > 0):
        raise HyperparameterError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if timeout < MIN_TIMEOUT:
        raise HyperparameterError(f"timeout must be at least {MIN_TIMEOUT:g} s (a shorter limit times cnncli's "
                                  f"own process, not your code), got {timeout!r}")
    method = "full" if asked == "full" else "sample"
    n = samples or IMPL_SAMPLES
    unused = unused_samples(asked, method, samples)  # your functions are checked by elements: full or sample
    notes = [unused] if unused else []
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
            absent = [n for n in CLASSIC if n in only and n not in found]
            if absent:  # one absent name of several too: a "checked only ..." note would claim it was checked
                joint = " or ".join(absent) if len(absent) == len(only) else ", ".join(absent)
                name, only_ = repr(os.fspath(path)), f"--only {', '.join(absent)}: "
                raise ImplError.worded(f"{name} defines {', '.join(found)}, not {joint} (--only)",
                                       f"{only_}{name} defines {', '.join(found)}",
                                       fit_names(f"{only_}{name} defines ", found, ("",), f"{only_}not in {name}"))
            notes.append(f"checked only {', '.join(n for n in CLASSIC if n in only)} (--only)")
        notes.extend(plan.notes)
        notes.extend(f"{m} is not installed here: its import was let through, and a function that uses it fails "
                     "when called" for m in loaded.get("missing", ()))
        notes.extend(loaded.get("notes", ()))
        run = Run(box, method, n, eps, tol, seed)
        run.defined = tuple(name for name in found if name not in plan.unchecked)
        # NOTE: --only conv_backward still runs the user's conv_forward (unreported) when the file defines it:
        # the backward then gets the cache its own forward makes, and the numerical check has a forward.
        wanted = set(CLASSIC if only is None else only)
        helpers = {n.replace("backward", "forward") for n in wanted if n.endswith("backward")} - wanted
        steps = [(name, fn) for name, fn in CHECKS if name in found and name in wanted | helpers]
        reports = []
        for i, (name, fn) in enumerate(steps):
            if progress:
                progress(i, len(steps))
            if name in plan.unchecked:
                reports.append(_not_checked(name, *plan.unchecked[name]))
                continue
            if box.broken:  # nothing is called any more: its check would only repeat that
                reports.append(FunctionReport(name, (), (), (), stopped=_unreached(box)))
                continue
            findings: List[Finding] = []
            errors: List[UserException] = []
            fn(run, findings, errors)
            # a call that was not made (time up, no process) is no error of the user's code: the check stopped
            cut = next((e for e in errors if e.kind == "stopped"), None)
            errors = _with_source([e for e in errors if e.kind != "stopped"], path)
            run.recognised[name] = _recognised(run, name)
            hints = diagnose(findings, errors, CLASSIC_CASES, function=name, recognised=run.recognised[name])
            reports.append(FunctionReport(name, tuple(findings), _dedupe(errors),
                                          hints + _facts(run, name, errors, hints),
                                          stopped=_cut_short(box, name, cut) if cut else ""))
        if progress:
            progress(len(steps), len(steps))
    if box.cutoff is not None:
        notes.append(_cutoff_note(box, timeout))
    for r in reports:
        if r.name not in wanted and r.status == "fail":
            notes.append(f"{r.name} (run for {r.name.replace('forward', 'backward')}'s cache, not reported under "
                         f"--only) does not match cnncli's: check it too")
    notes.extend(uncompared_notes(run))
    reports = _blame_forwards(run, [r for r in reports if r.name in wanted], notes)
    missing = tuple(n for n in CLASSIC if n not in found)
    return ImplResult(str(path), tuple(reports), missing, method, tuple(notes), output.lines, output.shown)


def validate_only(only: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """The names of ``only`` (None: all); an unknown one raises :class:`HyperparameterError` naming the nearest."""
    if only is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in only if n.strip()))  # --only a,a is --only a
    for name in names:
        if name not in CLASSIC:
            # NOTE: the eight names do not fit one 80-column line; --help lists them
            near = difflib.get_close_matches(name, CLASSIC, n=1)
            raise HyperparameterError(f"--only {name!r} is unknown" + (f"; did you mean {near[0]}?" if near else
                                                                       " (the eight: cnncli gradcheck --help)"))
    if not names:
        raise HyperparameterError("--only needs a function name (see cnncli gradcheck --help)")
    return names


def _cut_short(box: Sandbox, name: str, cut: UserException) -> str:
    """Why the check of ``name`` stopped at the call ``cut``, naming what ran when the time ran out."""
    c = box.cutoff
    if c is None:  # the process could not be restarted
        return f"stopped on configuration {cut.case}: {box.broken.replace('not checked: ', '', 1)}"
    limit = f"the whole check's time limit ({box.overall:g} s) ran out"
    if c.running is None:
        return f"stopped before configuration {c.case}: {limit} between calls into your code"
    whose = "it" if c.running == name else f"your {c.running} (called by this check)"
    return f"stopped on configuration {c.case}: {limit} while {whose} ran"


def _unreached(box: Sandbox) -> str:
    """Why a check never began: the time was up, or no process was left to run the user's code."""
    if box.cutoff is not None:
        return f"not reached: the whole check's time limit ({box.overall:g} s) ran out before its check began"
    return f"not reached: {box.broken.replace('not checked: ', '', 1)}"


def _cutoff_note(box: Sandbox, timeout: float) -> str:
    """Where the whole check's time ran out, once for the report (an unreported --only helper included)."""
    c = box.cutoff
    where = (f"while your {c.running} ran on configuration {c.case}" if c.running else
             f"between calls into your code, before configuration {c.case}")
    return (f"the whole check stopped at its time limit, {box.overall:g} s ({box.overall / timeout:g} x --timeout "
            f"{timeout:g}), {where}: a larger --timeout, or --only NAME[,NAME...], lets it finish")


def _not_checked(name: str, cell: int, line: int, message: str) -> FunctionReport:
    """The report of a function whose notebook cell does not parse."""
    error = UserException(name, f"not checked: {message}", line, "", kind="syntax", cell=cell)
    return FunctionReport(name, (), (error,), (f"not checked: {message}",))


def _blame_forwards(run: Run, reports: List[FunctionReport], notes: List[str]) -> List[FunctionReport]:
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
        if backward is not None and reports[backward].status == "fail":  # say what matched: the two rows agree
            quantities = ", ".join(sorted({q for _, q in suspects}))
            cases = list(dict.fromkeys(case for case, _ in suspects))
            where = "" if len(cases) == len(cases_of(layer)) else f" on {', '.join(cases)}"
            message = (f"{layer}_backward's {quantities} match cnncli's gradients{where} but not the numerical "
                       f"gradients of your {layer}_forward: your {layer}_forward is likely wrong "
                       f"({layer}_backward fails elsewhere: see its row)")
        else:
            message = (f"{layer}_backward matches cnncli's gradients but not the numerical gradients of your "
                       f"{layer}_forward: your {layer}_forward is likely wrong")
        i = by.get(f"{layer}_forward")
        if i is not None and reports[i].status == "fail":
            r = reports[i]
            # a recognised mistake of the forward stays first: it says more than where the forward is wrong
            hints = (r.diagnosis + (message,))[:3] if run.recognised.get(r.name) else (message,) + r.diagnosis
            reports[i] = replace(r, diagnosis=hints)
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


def _recognised(run: Run, name: str) -> Tuple[str, ...]:
    """Mistakes of function ``name`` whose replay equals what it returned (see :mod:`.mistakes`)."""
    if name == "conv_single_step":
        return (BIAS_NOT_ADDED,) if single_step_without_bias(run.single_steps) else ()
    if name == "distribute_value":
        return recognise_distribute(run.distributed)
    found = recognise_function(name, run.returned.get(name, ()))
    if name == "pool_backward" and not found:  # the classic pool_backward calls distribute_value
        mistake = distribute_mistake(run.distributed)
        if mistake and pool_backward_by_distribute(run.returned.get(name, ()), mistake[0]):
            return (DISTRIBUTED_MISTAKE,)
    return found


def _facts(run: Run, name: str, errors, hints) -> Tuple[str, ...]:
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
