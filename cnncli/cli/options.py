"""The layer options shared by ``forward``, ``backward`` and ``gradcheck``: Typer glue only.

Every option defaults to ``None`` ("not given") so that
:func:`cnncli.calls.resolve_layer` can let a case file's attributes fill it in;
the resolution itself (loading, layouts, dtypes, checks) lives in :mod:`cnncli.calls`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

_PANEL = "Layer"

LayerOpt = Annotated[Optional[str], typer.Option(
    "--layer", metavar="conv|pool", rich_help_panel=_PANEL,
    help="Layer kind (default: the case's; else conv with --weights, pool with --f/--mode).")]
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
    "--pad", metavar="P", rich_help_panel=_PANEL,
    help="Padding: p, 'h,w', 'top,bottom,left,right', valid or same (default 0).")]
DilationOpt = Annotated[Optional[str], typer.Option(
    "--dilation", metavar="D", rich_help_panel=_PANEL, help="Dilation: an int or HxW (default 1).")]
GroupsOpt = Annotated[Optional[int], typer.Option(
    "--groups", metavar="G", rich_help_panel=_PANEL, help="Conv channel groups (default 1; n_C_prev = depthwise).")]
ModeOpt = Annotated[Optional[str], typer.Option(
    "--mode", metavar="max|average", rich_help_panel=_PANEL, help="Pooling mode (avg accepted; default max).")]
CeilModeOpt = Annotated[Optional[bool], typer.Option(
    "--ceil-mode/--no-ceil-mode", rich_help_panel=_PANEL, show_default=False,
    help="Pooling: round the output size up (PyTorch's rule).")]
CountIncludePadOpt = Annotated[Optional[bool], typer.Option(
    "--count-include-pad/--no-count-include-pad", rich_help_panel=_PANEL, show_default=False,
    help="Average pooling: count padded zeros in the divisor (default yes).")]
LayoutOpt = Annotated[Optional[str], typer.Option(
    "--layout", metavar="nhwc|nchw", rich_help_panel=_PANEL,
    help="Array layout of inputs and outputs (nchw: PyTorch's). Default nhwc.")]
DtypeOpt = Annotated[Optional[str], typer.Option(
    "--dtype", metavar="float64|float32", rich_help_panel=_PANEL,
    help="Compute dtype (default float64: ints, bools, float16/32 are converted with a note).")]
GradOpt = Annotated[Optional[str], typer.Option(
    "--grad", metavar="ARRAY", rich_help_panel=_PANEL,
    help="Upstream gradient (dZ for conv, dA for pool), shaped like the forward output.")]

