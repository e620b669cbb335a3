"""``cnncli shape``: output sizes, receptive fields and costs of conv/pool layers and stacks.

Parse the options, call :mod:`cnncli.shape`, render with :mod:`cnncli.render.shape`.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import ArrayChoiceError, HyperparameterError, InputError, ShapeError, fit_names, fits
from .app import app, state
from .command import CnncliCommand, choices, examples
from .options import PlainOpt, check_output_flags

_EXAMPLES = examples(
    "The formula and a table of output sizes over input sizes:",
    "cnncli shape --f 3 --stride 2",
    "One layer on a 28x28 grey image: pads, receptive field, parameters, MACs:",
    "cnncli shape --input 28x28x1 --f 5 --pad same --filters 6",
    "A stack, one row per layer:",
    "cnncli shape --input 64x64x3 conv:f=4,p=same,c=8 pool:f=8 conv:f=2,c=16",
    "Which strides and pads give a 14x14 output?",
    "cnncli shape --input 28 --f 3 --target 14",
)


def _choose_one(path: str, names, what: str) -> str:
    """``--like 'x.h5' has 2 datasets (/A_prev, /W); add :NAME``, the list cut by :func:`~cnncli.errors.fit_names`."""
    head = f"--like {path!r} has {len(names)} {what}s"
    return fit_names(f"{head} (", names, ("); add :NAME",), f"{head}; add :NAME")


def _like_dims(ref: str, layout: Optional[str], allow_external: bool = False):
    """Dims of the array at ``ref`` (any array reference of SPEC), read in ``layout``."""
    from ..io.arrays import open_array  # NOTE: lazy: h5py and file handling only when --like is used
    from ..shape.spec import dims_from_shape

    # Opened, not loaded: HDF5 datasets and .npy files (memory-mapped) give their shape without reading data.
    try:
        with open_array(ref, role="--like", allow_external=allow_external) as array:
            shape = array.shape
    except ArrayChoiceError as exc:
        if len(exc.names) < 2:  # a file with none: io's own words say it
            raise
        raise InputError(_choose_one(exc.path, exc.names, exc.what)) from exc
    return dims_from_shape(shape, layout or "nhwc", name=f"--like {ref!r}")


@app.command(cls=CnncliCommand, epilog=_EXAMPLES)
def shape(
    layer_specs: Optional[List[str]] = typer.Argument(
        None, metavar="LAYER_SPEC",
        help="A stack of layers, each KIND:key=value,... (KIND conv, pool, tconv, bn, gap, flatten, fc/linear/dense, "
             "relu, act, dropout; keys f, s, p, d, c, g, mode, ceil, op, bias), e.g. conv:f=3,p=same,c=16 pool:f=2 "
             "flatten fc:c=10."),
    input_dims: Optional[str] = typer.Option(
        None, "--input", "-i", metavar="DIMS",
        help="Input size: H, HxW, HxWxC or MxHxWxC (NHWC order; with --layout nchw CxHxW or MxCxHxW)."),
    from_file: Optional[str] = typer.Option(
        None, "--from", metavar="FILE|-", help="Read the layers from PyTorch's print(model) text (a file or - for stdin)."),
    like: Optional[str] = typer.Option(
        None, "--like", metavar="ARRAY", help="Take the input size from an array (x.npy, x.npz:NAME, x.h5:PATH, -)."),
    layout: Optional[str] = typer.Option(
        None, "--layout", metavar="nhwc|nchw", autocompletion=choices("nhwc", "nchw"), help="Axis order of --input or the --like array (default nhwc)."),
    layer: Optional[str] = typer.Option(None, "--layer", metavar="conv|pool|tconv", autocompletion=choices("conv", "pool", "tconv"), help="Layer kind (default conv; pool when --mode or --ceil-mode is given)."),
    f: Optional[str] = typer.Option(None, "--f", metavar="F", help="Window size: 3 or 3x2."),
    stride: Optional[str] = typer.Option(None, "--stride", metavar="S", help="Step (conv: 1, pool: f)."),
    pad: Optional[str] = typer.Option(
        None, "--pad", metavar="P", autocompletion=choices("valid", "same"), help="valid (default), same, 1, 'h,w' or 'top,bottom,left,right'."),
    dilation: Optional[str] = typer.Option(None, "--dilation", metavar="D", help="Window dilation (default 1)."),
    filters: Optional[int] = typer.Option(None, "--filters", metavar="N", help="Conv output channels (default: keep)."),
    groups: Optional[int] = typer.Option(None, "--groups", metavar="G", help="Conv channel groups (default 1)."),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="max|average", autocompletion=choices("max", "average", "avg"), help="Pooling mode (default max)."),
    ceil_mode: bool = typer.Option(False, "--ceil-mode", help="Pooling: round the output size up (PyTorch's rule)."),
    target: Optional[str] = typer.Option(
        None, "--target", metavar="SIZE", help="Solve: list the strides and pads that give this output size (H or HxW)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    plain: bool = PlainOpt,
    allow_external: bool = typer.Option(
        False, "--allow-external", help="Let --like take an HDF5 array from another file (a link, storage)."),
) -> None:
    """Output sizes, pads, receptive fields, parameters and MACs of layers and whole models.

    With no --input or --like: the formula and a table of output sizes over input sizes.
    """
    # NOTE: imported here, not at the top: --help and the other commands never load them (start-up time).
    from ..render import shape as render
    from ..shape.spec import layout_note, looks_nchw, spec_gives
    from ..shape.stack import evaluate_stack, make_layer, parse_dims, parse_layer_spec
    from ..shape.solve import solve_target
    from ..shape.table import size_table_report

    check_output_flags(as_json, plain)
    options = {"--layer": layer, "--f": f, "--stride": stride, "--pad": pad, "--dilation": dilation,
               "--filters": filters, "--groups": groups, "--mode": mode, "--ceil-mode": ceil_mode or None}
    given = [name for name, value in options.items() if value is not None]
    if layer_specs and given:
        raise HyperparameterError(f"give {given[0]} in the spec, not beside LAYER_SPECs (e.g. conv:f=3,s=2)")
    if input_dims is not None and like is not None:
        raise ShapeError("give the input size with --input DIMS or --like ARRAY, not both")
    if allow_external and like is None:
        raise ShapeError("--allow-external lets --like read another file; give --like ARRAY")
    if layout is not None:
        if like is None and input_dims is None:
            raise ShapeError("--layout says how to read --input or --like; give one of them")
        if layout.strip().lower() not in ("nhwc", "nchw"):
            raise ShapeError(f"--layout must be nhwc or nchw, got {layout!r}")
        layout = layout.strip().lower()
    if layer is not None and layer.strip().lower() not in ("conv", "pool", "tconv"):
        raise HyperparameterError(f"--layer {layer!r}: expected conv, pool or tconv (or a LAYER_SPEC)")
    if from_file is not None and (layer_specs or given):
        raise HyperparameterError("give the layers one way: --from FILE, LAYER_SPECs or options")

    if from_file is not None:
        from ..io.textfile import read_text
        from ..shape.torchprint import parse_printed_model

        specs, model_notes = parse_printed_model(read_text(from_file, role="--from"),
                                                 source="stdin" if from_file == "-" else from_file)
    elif layer_specs:
        specs, model_notes = [parse_layer_spec(text) for text in layer_specs], []
    else:
        if f is None:
            raise HyperparameterError("give the window size with --f F (e.g. --f 3), or LAYER_SPECs")
        # As in forward: options only pooling has (--mode, --ceil-mode) say which layer is meant.
        kind = layer or ("pool" if mode is not None or ceil_mode else "conv")
        specs, model_notes = [make_layer(kind, f=f, stride=stride, pad=pad, dilation=dilation, filters=filters,
                                         groups=groups, mode=mode, ceil_mode=ceil_mode)], []
    dims = parse_dims(input_dims, layout=layout or "nhwc") if input_dims is not None else (
        _like_dims(like, layout, allow_external) if like is not None else None)

    if target is not None:
        if from_file is not None or len(specs) != 1 or not specs[0].windowed:
            raise HyperparameterError("--target solves one conv, pool or tconv layer (--f F or a spec)")
        if pad is not None:
            raise HyperparameterError(f"--target finds the padding; drop --pad {pad}")
        for key, word in (("pad", "p="), ("output_padding", "op=")):
            if layer_specs and spec_gives(layer_specs[0], key):
                raise HyperparameterError(f"--target finds the padding; drop {word} from {layer_specs[0]!r}")
        if dims is None:
            raise ShapeError("--target needs the input size: give --input DIMS or --like ARRAY")
        fixed = stride is not None or bool(layer_specs and spec_gives(layer_specs[0], "stride"))
        report = solve_target(specs[0], dims, target, stride_fixed=fixed)
        if not report.solutions:
            state.verdict = 1  # before printing: a reader leaving early (`| head`) keeps the exit 1
        if as_json:
            typer.echo(render.to_json(report.to_dict()))
        else:
            render.print_targets(report, render.console(plain=plain))
        if not report.solutions:
            raise typer.Exit(1)  # like grep finding nothing: a clean answer, but not a solution
        return

    if dims is None:
        table = size_table_report(specs)
        if as_json:
            typer.echo(render.to_json(table.to_dict()))
        else:
            render.print_size_table(table, render.console(plain=plain))
        return

    note = layout_note(dims, layout_given=layout is not None)
    result = evaluate_stack(specs, dims, notes=model_notes + ([note] if note else []))
    if as_json:
        # A stack (LAYER_SPECs, --from) that stops at a layer is still a document, whichever layer it is
        # ("error" names it); one layer from options is not a stack: its refusal is just the error line.
        if result.layers or layer_specs or from_file is not None:
            typer.echo(render.to_json(result.to_dict()))
    elif len(specs) == 1 and result.error is None and from_file is None:
        render.print_layer(result, render.console(plain=plain))
    elif result.layers:
        render.print_stack(result, render.console(plain=plain))
    if result.error is not None:
        if layout is None and looks_nchw(dims):  # '3x32x32' read as 3 rows of 32 columns of 32 channels
            raise _nchw_hint(result.error, dims, specs[len(result.layers)], len(result.layers) + 1)
        raise result.error  # the app prints it as one line and exits 2


def _nchw_hint(err, dims, spec, index: int):
    """``err`` with the NCHW question after it, in the first wording that fits (else ``err`` as it was).

    Where the first layer's channels are the input's height, the likely misreading is said in its own
    words: the layer's label and the dims leave no room for the question at 80 columns."""
    hinted = err.with_context(after=("; if the input is NCHW, add --layout nchw", "; NCHW? add --layout nchw"))
    if fits(str(hinted)):
        return hinted
    if index == 1 and spec.in_channels is not None and spec.in_channels == dims.h != dims.c:
        asked = f"layer 1 expects {spec.in_channels} channels, got {dims.c}: NCHW input? add --layout nchw"
        if fits(asked):
            new = type(err).worded(asked)
            new.__cause__ = err
            return new
    return err
