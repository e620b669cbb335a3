"""``cnncli gradcheck``: parse, run the library checker, render; exit 1 when a check fails.

Three modes: no SOURCE runs the built-in battery on the engine; SOURCE checks
the engine on that layer call (same options as ``forward`` but ``--dtype``: checks
always run in float64); ``--impl FILE.py`` checks the user's own classic functions.
"""

from __future__ import annotations

import math
import sys
from typing import List, Optional

import typer

from ..errors import HyperparameterError
from .app import app, check_interrupted, state
from .command import CnncliCommand, choices, examples
from .options import PlainOpt, check_output_flags, layer_options

_CHECK = "Check"
SourceArg = typer.Argument(None, metavar="SOURCE", show_default=False,
                           help="A case file (.h5/.npz) or an array for A_prev; omit to run the built-in battery.")
ImplOpt = typer.Option(None, "--impl", metavar="FILE.py|FILE.ipynb", rich_help_panel=_CHECK,
                       help="Check your own classic functions (conv_forward, pool_backward, ...) from a .py file, "
                            "an nbconvert export or a notebook; your code runs in a separate process.")
OnlyOpt = typer.Option(None, "--only", metavar="NAME[,NAME...]", rich_help_panel=_CHECK,
                       help="With --impl: check just these of the eight functions (zero_pad, conv_single_step, "
                            "create_mask_from_window, distribute_value, conv_forward, conv_backward, pool_forward, "
                            "pool_backward), e.g. --only conv_backward,pool_backward; given twice, both lists.")
TimeoutOpt = typer.Option(None, "--timeout", metavar="S", rich_help_panel=_CHECK, show_default=False,
                          help="With --impl: seconds each call into your code may take (at least 1, default 10; "
                               "the whole check: 30x that).")
MethodOpt = typer.Option("auto", "--method", metavar="auto|full|fast|sample", rich_help_panel=_CHECK,
                         autocompletion=choices("auto", "full", "fast", "sample"),
                         help="full: every element; fast: random directions; sample: stratified elements; "
                              "auto: full when small, else fast + sample. With --impl: sample unless full "
                              "(fast runs sample, with a note).")
SamplesOpt = typer.Option(None, "--samples", metavar="N", rich_help_panel=_CHECK,
                          help="Elements per tensor for sample/auto (default 256; --impl 12).")
EpsOpt = typer.Option(1e-6, "--eps", metavar="E", rich_help_panel=_CHECK,
                      help="Central-difference step, times a tensor's max |x| (at least 1e-3 where the layer "
                           "is linear in the input: conv, average pool; a bias follows its outputs).")
TolOpt = typer.Option(1e-7, "--tol", metavar="T", rich_help_panel=_CHECK,
                      help="Pass when ||a-n|| / (||a|| + ||n||) <= T and no element is off.")
SeedOpt = typer.Option(0, "--seed", metavar="N", rich_help_panel=_CHECK,
                       help="Seed of the random upstream gradient, directions and samples.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")

_EXAMPLES = examples(
    "The built-in battery of conv and pool configurations on cnncli's engine:",
    "cnncli gradcheck",
    "The engine's gradients on your layer call (a case file, or arrays and options):",
    "cnncli gradcheck examples/conv_case.h5",
    "Your own conv_forward, conv_backward, pool_backward... (a .py file or notebook):",
    "cnncli gradcheck --impl my_layers.ipynb",
    "Just the backward functions:",
    "cnncli gradcheck --impl my_layers.py --only conv_backward,pool_backward",
    "Every element instead of a sample, a JSON report for CI:",
    "cnncli gradcheck --impl my_layers.py --method full --json",
)

#: Above this many input values a single check shows a progress bar (on a terminal).
PROGRESS_VALUES = 4000
#: Above this many values of A_prev and the output together, a source is
#: checked chunk by chunk instead of being loaded whole in float64 (32 MiB of A_prev + output).
STREAM_VALUES = 2**22


@app.command(cls=CnncliCommand, epilog=_EXAMPLES)
@layer_options(grad=True, dtype=False)
def gradcheck(
    source: Optional[str] = SourceArg, options: dict = None,
    impl: Optional[str] = ImplOpt, only: Optional[List[str]] = OnlyOpt, timeout: Optional[float] = TimeoutOpt,
    method: str = MethodOpt, samples: Optional[int] = SamplesOpt,
    eps: float = EpsOpt, tol: float = TolOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
    plain: bool = PlainOpt,
) -> None:
    """Check analytical gradients against numerical ones (central differences in float64).

    With no SOURCE: the built-in battery of conv and pool configurations on cnncli's engine.

    Exit 0 when every gradient passes, 1 when one fails or is inconclusive, 2 on bad input.
    """
    from ..gradcheck.core import validate_settings

    check_output_flags(as_json, plain)
    method, _ = validate_settings(method, samples, eps, tol, seed, prefix="--")
    # SPEC gives gradcheck the options of forward: --dtype float64 is what it does anyway.
    if options["dtype"] is not None and options["dtype"].strip().lower() != "float64":
        raise HyperparameterError(f"gradcheck computes in float64 only: drop --dtype {options['dtype']}")
    only = only or None  # an option never given is an empty list to Click
    given = [k for k, v in options.items() if v is not None]
    if impl is None and (only is not None or timeout is not None):
        flag = "--only" if only is not None else "--timeout"
        raise HyperparameterError(f"{flag} needs --impl FILE (your own functions)")
    if impl is not None and source is not None:
        raise HyperparameterError(f"--impl takes no SOURCE (it runs its own battery); drop {source!r}")
    if impl is not None and given:
        what = {"weights": "arrays", "bias": "arrays", "grad": "arrays", "layer": "layers", "layout": "layout"}
        raise HyperparameterError(f"--impl sets the {what.get(given[0], 'hyperparameters')} itself: "
                                  f"drop --{given[0].replace('_', '-')}")
    if source is None and given:
        flag = "--" + given[0].replace("_", "-")
        raise HyperparameterError(f"{flag} needs a SOURCE (the battery sets its own)")
    from ..engine import jit_mode
    from ..render import gradcheck as render
    from ..render.progress import progress_bar

    jit_mode()  # a bad CNNCLI_JIT is told before any work, as forward and backward do
    tty = sys.stderr is not None and sys.stderr.isatty()  # None: started with stderr closed (2>&-)
    if impl is not None:
        from ..gradcheck.impl import check_impl, validate_only
        from ..gradcheck.sandbox import DEFAULT_TIMEOUT, MIN_TIMEOUT

        # NOTE: repeatable, as a user writes it: keeping the last list left the first's functions silently unchecked
        names = validate_only([n for words in only for n in words.split(",")]) if only is not None else None
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise HyperparameterError(f"--timeout {timeout:g}: expected a positive number of seconds (e.g. 10)")
        if timeout is not None and timeout < MIN_TIMEOUT:  # shorter would time our own process, not their code
            raise HyperparameterError(f"--timeout {timeout:g}: expected at least {MIN_TIMEOUT:g} second (e.g. 10)")
        # Students debug with print: without --json their lines go to stderr, prefixed; with --json
        # stdout carries only the document, so they are counted and a note says so.
        echo = None if as_json else _echo_user_line
        advice = ("to shorten: --method sample (the default with --impl) compares a sample of elements, "
                  "--only NAME[,NAME...] checks fewer functions" if method == "full" else
                  "to shorten: a smaller --samples N, or --only NAME[,NAME...] (fewer functions)")
        with progress_bar("checking your functions", show=tty, advice=advice) as progress:
            result = check_impl(impl, method=method, samples=samples, eps=eps, tol=tol, seed=seed,
                                progress=_watched(progress), echo=echo, only=names,
                                timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
        result = _printed_note(result, as_json)
        show = render.print_impl
        doc = result.to_dict()
    elif source is None:
        from ..gradcheck.battery import run_battery

        result = run_battery(method=method, samples=samples, eps=eps, tol=tol, seed=seed)
        show = render.print_battery
        doc = result.to_dict()
    else:
        result = _check_source(source, options, method, samples, eps, tol, seed, tty, render)
        show = render.print_check
        doc = result.to_dict()
        doc["source"] = source
    check_interrupted()  # a Ctrl-C Python swallowed during the check: no answer printed
    if not result.passed:
        state.verdict = 1  # before printing: a reader leaving mid-table (`| head`) keeps the exit 1
    if as_json:
        typer.echo(render.to_json(doc))
    else:
        show(result, render.console(plain=plain))
    if not result.passed:
        raise typer.Exit(1)


def _watched(progress):
    """``progress`` that first stops the check if a Ctrl-C arrived whose KeyboardInterrupt Python swallowed."""
    def update(done: int, total: int) -> None:
        check_interrupted()
        progress(done, total)
    return update


def _echo_user_line(line: str) -> None:
    from ..render.common import stderr_line

    stderr_line(f"[your code] {line}")


def _printed_note(result, as_json: bool):
    """Add a note on the user's prints: hidden (``--json``) or cut short on stderr."""
    from dataclasses import replace

    n = result.printed_lines
    if as_json and n:
        note = (f"your code printed {n} line(s) on stdout, hidden so that stdout holds only the JSON "
                "document; run without --json to see them on stderr")
    elif n > result.echoed_lines:
        note = f"your code printed {n} lines; the first {result.echoed_lines} are shown on stderr ([your code] ...)"
    else:
        return result
    return replace(result, notes=result.notes + (note,))


def _check_source(source, options, method, samples, eps, tol, seed, tty, render):
    """Resolve the layer call (as ``forward`` does) and check the engine's gradients on it.

    A data set too large to hold whole in float64 (HDF5, ``.npy``, ``.npz``) is checked as
    ``forward`` reads it, chunk by chunk (:mod:`cnncli.gradcheck.streamed`).
    """
    from ..gradcheck.layercall import check_layer_call
    from ..io.readers import read_once
    from ..passes.call import resolve_layer

    # float64 asked for explicitly: the dtype note then says "computed in float64" and offers no --dtype float32.
    opts = dict(options, dtype="float64")
    with read_once():  # stdin and pipes: the in-memory resolution gets the bytes the first one read
        call = _streamed_call(source, opts)
        if call is None:
            call = resolve_layer(source, **opts)
    size = math.prod(call.A_prev.shape) + (call.W.size if call.W is not None else 0)
    from ..render.progress import progress_bar

    advice = ("to shorten: --method fast (random directions: seconds) or --method sample --samples N "
              "(N elements per tensor)" if method == "full" else
              "to shorten: --method fast, or a smaller --samples N")
    with call, progress_bar("gradcheck", show=tty and size > PROGRESS_VALUES, advice=advice) as progress:
        return check_layer_call(call, progress=_watched(progress), method=method, samples=samples, eps=eps,
                                tol=tol, seed=seed)


def _streamed_call(source, opts):
    """The layer call with A_prev (and --grad) left on disk, when too large to check in memory; else None.

    Anything smaller is resolved again in memory (by the caller), so its check is the in-memory check.
    Bad input is told by this resolution, as ``forward`` tells it: it reads headers only, so a file of any
    size is never loaded (nor refused by the memory budget) to say that the weights or a flag are wrong.
    """
    from ..passes.call import resolve_layer
    from ..passes.layer import Batches

    call = resolve_layer(source, stream=True, **opts)
    values = math.prod(call.A_prev.shape) + math.prod(call.out_shape)
    # NOTE: every format streams as forward reads it (HDF5 by slices, .npy memory-mapped, .npz members by
    # rows): before, .npy and .npz sets were loaded whole, so the same 3000 images took 3.1 GB and 3x the time
    if isinstance(call.A_prev, Batches) and values > STREAM_VALUES:
        return call
    call.close()
    return None
