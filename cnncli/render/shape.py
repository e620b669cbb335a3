"""Rendering of ``cnncli shape`` results as rich tables for people.

No computation here beyond formatting: every number comes from the reports of
:mod:`cnncli.shape.stack`, :mod:`cnncli.shape.table` and :mod:`cnncli.shape.solve`;
their JSON is their own ``to_dict()``, written by :func:`cnncli.render.common.to_json`.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Optional

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..engine.geometry import effective_size, format_pads
from ..errors import printable
from ..shape.stack import LayerResult, StackResult
from ..shape.solve import TargetResult
from ..shape.table import FORMULA, TCONV_FORMULA, SizeTable
from ..units import BINARY_UNITS, scaled
from . import common
from .common import literal, size_formula, to_json  # noqa: F401  (to_json: used by cli/shape.py)

UNREAD_MARK = "*"


def console(stderr: bool = False, plain: bool = False) -> Console:
    """:func:`cnncli.render.common.console`: a formula line longer than the terminal wraps between
    its terms (at spaces), so every number in it stays whole and no line is wider than the terminal."""
    return common.console(stderr, plain=plain)


# ----------------------------------------------------------------- formatting

def _hw(pair, sep: str = "x") -> str:
    """``3`` when both axes agree, else ``3x2``."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}{sep}{pair[1]}"


def _num(value: Fraction) -> str:
    """A receptive-field coordinate, exact: ``4``, ``0.5``, ``-1.5`` (a multiple of 1/2)."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{'-' if value < 0 else ''}{abs(value).numerator // 2}.5"


#: SI prefixes of a count, largest first (ronna and quetta since 2022).
_COUNT_UNITS = tuple((unit, 10 ** e) for unit, e in (("Q", 30), ("R", 27), ("Y", 24), ("Z", 21), ("E", 18),
                                                     ("P", 15), ("T", 12), ("G", 9), ("M", 6)))


def _count(n: int) -> str:
    """``1,605,632`` below ten million, ``33.6M`` .. ``9999.9Q`` above, and whole (``1,000,...``) past that."""
    parts = scaled(n, _COUNT_UNITS, least=10, most=10_000)
    return f"{n:,}" if parts is None else parts[0] + parts[1]


def _bytes(n: int) -> str:
    """:func:`~cnncli.units.format_bytes`'s spelling, with ZiB and YiB up to 9999.9 YiB, whole bytes past that."""
    parts = scaled(n, BINARY_UNITS, most=10_000)
    if parts is None:
        return f"{n:,} B" if n >= 2 ** 10 else f"{n} B"
    return f"{parts[0]} {parts[1]}"


def _print_words(out: Console, text: str, style: Optional[str] = None) -> None:
    """A line wrapped between its words at the console's width; a word wider than that (a huge number)
    goes whole on a line of its own, never folded (rich would cut it anywhere)."""
    # NOTE: measured in cells, as rich draws: a CJK module name takes two columns a character
    if getattr(out, "plain", False) or cell_len(text) <= out.width:
        out.print(Text(text, style=style or ""))
        return
    lines: list = []
    for word in re.split(r" (?!(?:[KMGTPEZY]i)?B\b)", text):  # a size and its unit stay together
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= out.width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    out.print(Text("\n".join(lines), style=style or ""), soft_wrap=True)


def _pads(pads) -> str:
    return format_pads(tuple(pads), "list")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _unread_text(layer: LayerResult) -> str:
    """Input rows/cols no window reads, and the padding that would read the trailing ones."""
    parts = []
    for axis, word, side in ((0, "row", "bottom"), (1, "col", "right")):
        if layer.trailing[axis]:
            n, extra = layer.trailing[axis], layer.cover_pad[axis]
            fix = (f"pad {side} +{extra} reads {'it' if n == 1 else 'them'}" if extra
                   else f"no {side} padding reaches them")
            parts.append(f"last {_plural(n, word)} ({fix})")
        if layer.skipped[axis]:
            parts.append(f"{_plural(layer.skipped[axis], word)} between windows (stride > window; padding can't help)")
    return "; ".join(parts) if parts else "none"


# ----------------------------------------------------------------- people

def _rf_text(layer: LayerResult) -> str:
    return "n/a" if layer.rf is None else f"{layer.rf[0]}x{layer.rf[1]} ({_hw(layer.jump)})"


def _layer_grid(layer: LayerResult, title: str) -> Table:
    """The two-column grid of a one-layer report, opened with its layer, input and output rows."""
    g_in, g_out = layer.input, layer.output
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("layer", title)
    grid.add_row("input", g_in.text() + (" (nchw)" if g_in.layout == "nchw" else "")
                 + ("" if g_in.channels_known else "  (channels not given: 1 assumed)"))
    grid.add_row("output", Text(g_out.text(), style="bold green"))
    return grid


def _add_axes(grid: Table, axes) -> None:
    """The height and width formula rows, one row when both axes read the same."""
    if axes[0] == axes[1]:
        grid.add_row("height, width", axes[0])
    else:
        grid.add_row("height", axes[0])
        grid.add_row("width", axes[1])


def _weights_text(layer: LayerResult) -> str:
    """The parameter count of a layer with weights, and what it counts."""
    bias = f" + {layer.output.c} biases" if layer.spec.bias else ""
    return f"{layer.params:,} ({'*'.join(map(str, layer.weight_shape))} weights{bias})"


def _activations_text(layer: LayerResult) -> str:
    """The output's size in values and in bytes at float32 and float64."""
    return (f"output {layer.output.elements:,} values: {_bytes(layer.memory(4))} float32, "
            f"{_bytes(layer.memory(8))} float64")


def _print_tconv(layer: LayerResult, out: Console) -> None:
    """The one-layer report of a transposed convolution."""
    spec, g_in, g_out = layer.spec, layer.input, layer.output
    t, b, l, r = layer.pads
    grid = _layer_grid(layer, "tconv  " + spec.summary + "  (PyTorch's ConvTranspose2d)")
    grid.add_row("formula", TCONV_FORMULA)
    axes = [f"({n} - 1)*{spec.stride[a]} - {pb} - {pa} + {spec.dilation[a]}*({spec.f[a]}-1) + "
            f"{spec.output_padding[a]} + 1 = {o}"
            for a, (n, pb, pa, o) in enumerate(((g_in.h, t, b, g_out.h), (g_in.w, l, r, g_out.w)))]
    _add_axes(grid, axes)
    grid.add_row("pads", f"top {t}, bottom {b}, left {l}, right {r} (cropped from the output)")
    grid.add_row("receptive field", "n/a (an output of a transposed convolution sees a number of inputs that "
                                    "depends on its position)")
    grid.add_row("parameters", _weights_text(layer))
    grid.add_row("MACs", f"{layer.macs:,}  (every input pixel times every weight; FLOPs = 2 x MACs = "
                         f"{layer.flops:,})" + (f" for a batch of {g_in.m}" if g_in.m > 1 else ""))
    grid.add_row("activations", _activations_text(layer))
    out.print(grid)


def print_layer(result: StackResult, out: Console) -> None:
    """The one-layer report: formula with numbers, pads, coverage, receptive field, cost.

    Layers without a window (bn, fc, ...) get the stack table instead.
    """
    layer = result.layers[0]
    if layer.spec.kind == "tconv":
        _print_tconv(layer, out)
        return
    if not layer.spec.windowed:
        print_stack(result, out)
        return
    spec, g_in, g_out = layer.spec, layer.input, layer.output
    t, b, l, r = layer.pads
    grid = _layer_grid(layer, f"{spec.kind}  {spec.summary}")
    grid.add_row("formula", FORMULA + ("  (ceil mode: round up, drop a last window starting in the padding)"
                                       if spec.ceil_mode else ""))
    axes = [size_formula(n, spec.f[a], spec.stride[a], spec.dilation[a], pb, pa, o, spec.ceil_mode)
            for a, (n, pb, pa, o) in enumerate(((g_in.h, t, b, g_out.h), (g_in.w, l, r, g_out.w)))]
    _add_axes(grid, axes)
    how = " (TensorFlow's 'same' split: the extra pixel at the bottom/right)" if spec.pad == "same" and (
        t != b or l != r) else ""
    grid.add_row("pads", f"top {t}, bottom {b}, left {l}, right {r}{how}")
    grid.add_row("unread input", _unread_text(layer))
    rows, cols = layer.rf_edges
    grid.add_row("receptive field", f"{layer.rf[0]}x{layer.rf[1]} (jump {_hw(layer.jump)}, "
                 f"start {_hw(tuple(map(_num, layer.start)))}; "
                 f"output (0,0) sees input rows {_num(rows[0])}..{_num(rows[1])}, "
                 f"cols {_num(cols[0])}..{_num(cols[1])})")
    if spec.kind == "conv":
        grid.add_row("parameters", _weights_text(layer))
        grid.add_row("MACs", f"{layer.macs:,}  (FLOPs = 2 x MACs = {layer.flops:,})"
                     + (f" for a batch of {g_in.m}" if g_in.m > 1 else ""))
    else:
        grid.add_row("parameters", "0 (pooling has no weights; no MACs counted)")
    grid.add_row("activations", _activations_text(layer))
    out.print(grid)
    for note in result.notes + layer.notes:
        out.print(literal("note: " + note, style="yellow"))


def _module_name(spec) -> str:
    """A printed module's dotted name, colons and all (its text is ``NAME: Type(args)``; a type has no colon,
    a name no parenthesis); a module printed without a name keeps its whole text."""
    head = spec.text.partition("(")[0]
    return head.rpartition(": ")[0] if ": " in head else spec.text


def print_stack(result: StackResult, out: Console) -> None:
    """One row per layer and a totals row; a stack stopped by a layer that does not fit ends there."""
    layout = " (nchw)" if result.input.layout == "nchw" else ""
    table = Table(title=f"input {result.input.text()}{layout}", title_justify="left")
    for name, justify in (("#", "right"), ("layer", "left"), ("input -> output", "left"), ("pads", "left"),
                          ("RF (jump)", "left"), ("params", "right"), ("MACs", "right"),
                          ("mem f32", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("unread input", justify="left", min_width=12)
    for layer in result.layers:
        # A printed PyTorch model's rows carry the module's name (features.0) before what it is.
        name = _module_name(layer.spec) + " " if layer.spec.line is not None and layer.spec.text else ""
        table.add_row(str(layer.index), literal(name + layer.spec.title),  # "[/x]", ":smile:": text, as named
                      f"{layer.input.text()} -> {layer.output.text()}",
                      _pads(layer.pads) if layer.spec.windowed else "-",
                      _rf_text(layer), _count(layer.params), _count(layer.macs),
                      _bytes(layer.memory(4)), _unread_text(layer) if layer.trailing is not None else "n/a")
    if result.error is not None:
        nxt = len(result.layers) + 1
        table.add_row(str(nxt), Text(f"layer {nxt} does not fit", style="bold red"), "", "", "", "", "", "", "")
    else:
        last = result.layers[-1]
        table.add_section()
        table.add_row("", Text("total", style="bold"), Text(f"{result.input.text()} -> {last.output.text()}",
                                                            style="bold green"),
                      "", _rf_text(last), _count(result.params), _count(result.macs),
                      _bytes(result.memory(4)), "")
    out.print(table)
    if result.error is None:
        batch = f"; batch of {result.input.m}" if result.input.m > 1 else ""
        _print_words(out, f"FLOPs = 2 x MACs = {result.flops:,}; activations in float64: "
                          f"{_bytes(result.memory(8))}{batch}")
    for note in result.notes:  # a note may name a module ('MyBlock blk (line 2): ...')
        _print_words(out, printable(f"note: {note}"), style="yellow")
    for layer in result.layers:
        for note in layer.notes:
            _print_words(out, printable(f"note: layer {layer.index}: {note}"), style="yellow")
    if any(layer.rf is None for layer in result.layers):
        out.print("RF n/a: from a transposed convolution on, an output's field depends on its position")


def _cell(res: Optional[StackResult], with_pads: bool) -> Text:
    if res is None:
        return Text("-", style="dim")
    text = Text(str(res.output.c) if res.output.flat else _hw((res.output.h, res.output.w)))
    if with_pads and len(res.layers) == 1 and any(res.layers[0].pads):
        text.append(f" ({_pads(res.layers[0].pads)})", style="dim")
    if any(sum(layer.unread) for layer in res.layers):
        text.append(" " + UNREAD_MARK, style="bold yellow")
    return text


def print_size_table(report: SizeTable, out: Console) -> None:
    """Output size for each input size n x n, one column per padding (or the stack)."""
    for line in report.formulas():
        out.print(line)
    rows, columns, single = report.rows, report.columns, report.single
    table = Table()
    table.add_column("input", justify="right", no_wrap=True)
    for label in columns:
        table.add_column(f"{label} output" + (" (pads)" if single and label == "same" else ""), justify="left",
                         no_wrap=True)  # "2 (0,1,0,1) *": a size and its pads stay on one line
    for row in rows:
        table.add_row(str(row.n_in), *[_cell(row.cells[label], single) for label in columns])
    out.print(table)
    if single:
        out.print("pads: one number for all sides, else top,bottom,left,right")
    what = "the stride leaves" if single else "some layer's stride leaves its"
    out.print(f"{UNREAD_MARK} {what} input rows/columns unread; "
              "give --input N for which ones and the padding that covers them")


def _print_tconv_targets(result: TargetResult, out: Console) -> None:
    """Strides, paddings and output paddings of a ConvTranspose2d that reach the size."""
    spec = result.spec
    want = f"{result.input.h}x{result.input.w} -> {result.target[0]}x{result.target[1]}"
    scope = f"stride {_hw(spec.stride)}" if result.stride_fixed else "any stride"
    dil = "" if spec.dilation == (1, 1) else f" d={_hw(spec.dilation)}"
    if not result.solutions:
        near = " or ".join(f"{h}x{w}" for h, w in result.nearest)
        reach = f"; nearest sizes it reaches: {near}" if near else ""
        out.print(f"no padding and output padding make tconv f={_hw(spec.f)}{dil} go {want} with {scope}{reach}; "
                  "try another stride or f")
        return
    table = Table(title=f"tconv f={_hw(spec.f)}{dil}: {want}, {scope}", title_justify="left")
    for name in ("stride", "padding", "output_padding", "PyTorch"):
        table.add_column(name)
    for s in result.solutions:
        pad, op = (s.pads[0], s.pads[2]), s.output_padding
        call = (f"ConvTranspose2d(C_in, C_out, {_hw(spec.f, ', ') if spec.f[0] == spec.f[1] else spec.f}, "
                f"stride={_hw(s.stride) if s.stride[0] == s.stride[1] else s.stride}, "
                f"padding={_hw(pad) if pad[0] == pad[1] else pad}"
                + (f", output_padding={_hw(op) if op[0] == op[1] else op}" if any(op) else "")
                + (f", dilation={_hw(spec.dilation) if spec.dilation[0] == spec.dilation[1] else spec.dilation}"
                   if spec.dilation != (1, 1) else "") + ")")
        table.add_row(_hw(s.stride), _hw(pad), _hw(op), call)
    out.print(table)
    if not result.complete:
        out.print(f"the first {len(result.solutions)} solutions (smallest padding first); there are or may be more")
    out.print("padding crops each side alike, as in PyTorch (0 to dilation*(f-1)); output_padding adds rows at the "
              "bottom/right and must stay below the stride or the dilation"
              + ("" if result.stride_fixed else "; the smallest padding per stride, give --stride S for all"))


def print_targets(result: TargetResult, out: Console) -> None:
    """The strides and pads that reach the target size, smallest padding first."""
    if result.spec.kind == "tconv":
        _print_tconv_targets(result, out)
        return
    spec = result.spec
    eff = [effective_size(spec.f[a], spec.dilation[a]) for a in (0, 1)]
    want = f"{result.input.h}x{result.input.w} -> {result.target[0]}x{result.target[1]}"
    scope = f"stride {_hw(spec.stride)}" if result.stride_fixed else f"strides 1..{max(eff)}"
    if not result.solutions:
        if result.target[0] > result.input.h or result.target[1] > result.input.w:
            advice = ("; padded by less than its window, a layer grows its input by at most f-1 (dilated) "
                      "pixels: to enlarge more, upsample or use a transposed convolution")
        elif result.stride_fixed:
            advice = "; try another stride or f"
        else:
            advice = "; try another f or --dilation"
        near = " or ".join(f"{h}x{w}" for h, w in result.nearest)
        reach = f"; nearest sizes it reaches: {near}" if near else ""
        # One line whatever its length, like grep's answer or an error line: scripts read it whole.
        out.print(f"no padding below the window makes {spec.kind} f={_hw(spec.f)} go {want} with {scope}"
                  f"{reach}{advice}", soft_wrap=True)
        return
    table = Table(title=f"{spec.kind} f={_hw(spec.f)}{'' if spec.dilation == (1, 1) else f' d={_hw(spec.dilation)}'}: "
                        f"{want}, {scope}", title_justify="left")
    for name in ("stride", "pad (top,bottom,left,right)", "total pad", "symmetric", "unread input"):
        table.add_column(name, no_wrap=name != "unread input")
    for s in result.solutions:
        symmetric = s.pads[0] == s.pads[1] and s.pads[2] == s.pads[3]
        table.add_row(_hw(s.stride), _pads(s.pads), str(sum(s.pads)), "yes" if symmetric else "no",
                      "none" if not sum(s.unread) else f"{_plural(s.unread[0], 'row')}, {_plural(s.unread[1], 'col')}")
    out.print(table)
    if not result.complete:
        out.print(f"the first {len(result.solutions)} solutions (smallest padding first); there are or may be more")
    if not result.stride_fixed:
        out.print("the smallest padding per stride (and the smallest symmetric one); "
                  "give --stride S for every padding with that stride")
    if any(s.pads[0] != s.pads[1] or s.pads[2] != s.pads[3] for s in result.solutions):
        out.print("asymmetric pads: PyTorch's Conv2d pads symmetrically; use F.pad first, or TensorFlow-style "
                  "explicit padding")
