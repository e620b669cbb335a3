"""The layer options shared by ``forward``, ``backward`` and ``gradcheck``: Typer glue only.

A command takes them all through one decorator::

    @app.command()
    @layer_options(grad=True)
    def backward(source: str = SourceArg, options: dict = None, output: Optional[str] = OutOpt):
        call = resolve_layer(source, **options)   # options: {"grad": ..., "layer": ..., ...}

Every option defaults to ``None`` ("not given") so that
:func:`cnncli.passes.call.resolve_layer` can let a case file's attributes fill it in;
the resolution itself (loading, layouts, dtypes, checks) lives in :mod:`cnncli.passes.call`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Callable, Optional

import typer

from .command import choices

_PANEL = "Layer"

LayerOpt = Annotated[Optional[str], typer.Option(
    "--layer", metavar="KIND", rich_help_panel=_PANEL, autocompletion=choices("conv", "pool"),
    help="Layer kind: conv or pool (default: the case's; else conv with --weights, pool with --f/--mode).")]
WeightsOpt = Annotated[Optional[str], typer.Option(
    "--weights", metavar="ARRAY", rich_help_panel=_PANEL,
    help="Conv filters W: (f, f, n_C_prev/groups, n_C); nchw: (C_out, C_in/groups, kH, kW).")]
BiasOpt = Annotated[Optional[str], typer.Option(
    "--bias", metavar="ARRAY", rich_help_panel=_PANEL, help="Conv bias b: (n_C,) or (1, 1, 1, n_C); zeros if omitted.")]
FOpt = Annotated[Optional[str], typer.Option(
    "--f", metavar="F", rich_help_panel=_PANEL, help="Pooling window: an int or HxW (conv: must match W).")]
StrideOpt = Annotated[Optional[str], typer.Option(
    "--stride", metavar="S", rich_help_panel=_PANEL, help="Stride: an int or HxW (default conv 1, pool f).")]
PadOpt = Annotated[Optional[str], typer.Option(
    "--pad", metavar="P", rich_help_panel=_PANEL, autocompletion=choices("valid", "same"),
    help="Padding: p, 'h,w', 't,b,l,r' (top, bottom, left, right), valid or same (default 0).")]
DilationOpt = Annotated[Optional[str], typer.Option(
    "--dilation", metavar="D", rich_help_panel=_PANEL, help="Dilation: an int or HxW (default 1).")]
GroupsOpt = Annotated[Optional[int], typer.Option(
    "--groups", metavar="G", rich_help_panel=_PANEL, help="Conv channel groups (default 1; n_C_prev = depthwise).")]
ModeOpt = Annotated[Optional[str], typer.Option(
    "--mode", metavar="MODE", rich_help_panel=_PANEL, autocompletion=choices("max", "average", "avg"),
    help="Pooling mode: max (default) or average (avg accepted).")]
CeilModeOpt = Annotated[Optional[bool], typer.Option(
    "--ceil-mode/--no-ceil-mode", rich_help_panel=_PANEL, show_default=False,
    help="Pooling: round the output size up (PyTorch's rule).")]
# NOTE: the off switch is an option of its own, hidden: shown beside the on switch, the two names are too wide
# for an 80-column help table, and rich cuts both ("--count-include-…").
CountIncludePadOpt = Annotated[Optional[bool], typer.Option(
    "--count-include-pad", rich_help_panel=_PANEL, show_default=False,
    help="Average pooling: count padded zeros in the divisor (default; --no-count-include-pad: do not).")]
NoCountIncludePadOpt = Annotated[Optional[bool], typer.Option("--no-count-include-pad", hidden=True,
                                                              show_default=False)]
LayoutOpt = Annotated[Optional[str], typer.Option(
    "--layout", metavar="AXES", rich_help_panel=_PANEL, autocompletion=choices("nhwc", "nchw"),
    help="Array layout of inputs and outputs: nhwc (default) or nchw (PyTorch's).")]
DtypeOpt = Annotated[Optional[str], typer.Option(
    "--dtype", metavar="DTYPE", rich_help_panel=_PANEL,
    autocompletion=choices("float64", "float32"),
    help="Compute dtype: float64 (default; ints, bools, float16/32 are converted with a note) or float32.")]
GradOpt = Annotated[Optional[str], typer.Option(
    "--grad", metavar="ARRAY", rich_help_panel=_PANEL,
    help="Upstream gradient (dZ for conv, dA for pool), shaped like the forward output.")]
AllowExternalOpt = Annotated[Optional[bool], typer.Option(
    "--allow-external", rich_help_panel=_PANEL, show_default=False,
    help="Let HDF5 inputs read other files (external links, external storage, virtual datasets); refused by default.")]
#: ``--plain`` of every command that prints tables.
PlainOpt = typer.Option(False, "--plain", help="Print tables as tab-separated values (spreadsheets, awk); "
                                               "other lines start with #.")


def check_output_flags(as_json: bool, plain: bool) -> None:
    """``--json`` and ``--plain`` are two ways to print the same result: one at a time."""
    if as_json and plain:
        from ..errors import HyperparameterError

        raise HyperparameterError("give --json or --plain, not both")


# Parsed but not shown: a command that refuses --dtype can then say why instead of "no such option".
HiddenDtypeOpt = Annotated[Optional[str], typer.Option("--dtype", hidden=True)]

_ANNOTATIONS = {"layer": LayerOpt, "weights": WeightsOpt, "bias": BiasOpt, "f": FOpt, "stride": StrideOpt,
                "pad": PadOpt, "dilation": DilationOpt, "groups": GroupsOpt, "mode": ModeOpt,
                "ceil_mode": CeilModeOpt, "count_include_pad": CountIncludePadOpt, "layout": LayoutOpt,
                "dtype": DtypeOpt, "grad": GradOpt, "allow_external": AllowExternalOpt}
#: :data:`cnncli.passes.call.OPTION_KEYS`, in its order (a test checks they agree): spelled out
#: here so that declaring the commands does not import the layer-call machinery (start-up time).
OPTION_KEYS = tuple(_ANNOTATIONS)


def layer_options(*, grad: bool = False, dtype: bool = True) -> Callable:
    """Decorate a command so that its ``options`` parameter becomes the layer options.

    Typer reads the command's signature, so the decorator rewrites it: ``options``
    is replaced, in place, by ``--grad`` (when ``grad``), ``--layer`` ... ``--layout``
    and ``--dtype`` (hidden when not ``dtype``); the command receives their values as
    one dict ``options`` (None = not given), ready for :func:`cnncli.passes.call.resolve_layer`.
    """
    names = (["grad"] if grad else []) + [k for k in OPTION_KEYS if k != "grad"]
    annotations = dict(_ANNOTATIONS, dtype=DtypeOpt if dtype else HiddenDtypeOpt)

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        params = []
        for param in signature.parameters.values():
            if param.name != "options":
                params.append(param)
                continue
            params += [inspect.Parameter(name, param.POSITIONAL_OR_KEYWORD, default=None, annotation=annotations[name])
                       for name in names]
            params.append(inspect.Parameter("no_count_include_pad", param.POSITIONAL_OR_KEYWORD, default=None,
                                            annotation=NoCountIncludePadOpt))

        @functools.wraps(command)
        def run(**kwargs):
            options = {name: kwargs.pop(name) for name in names}
            if kwargs.pop("no_count_include_pad"):
                if options["count_include_pad"]:
                    from ..errors import HyperparameterError

                    raise HyperparameterError("give --count-include-pad or --no-count-include-pad, not both")
                options["count_include_pad"] = False
            return command(options=options, **kwargs)

        run.__signature__ = signature.replace(parameters=params)
        return run

    return decorate
