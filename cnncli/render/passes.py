"""Rendering of ``forward`` / ``backward`` reports: a rich table for people, JSON for scripts.

The report is a :class:`cnncli.passes.report.PassReport`; the table reads its ``to_dict()``, the
document ``--json`` prints, so both views show the same values. Nothing is computed here.
JSON goes through :func:`cnncli.render.common.to_json` (NaN and infinity become null).
"""

from __future__ import annotations

import math
from typing import Optional

from rich.console import Console
from rich.table import Table

from ..engine.geometry import format_pads
from .common import console, literal, size_formula, to_json  # noqa: F401  (console, to_json: used by cli/passes.py)


def _pair(p) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _shape(s) -> str:
    return str(tuple(int(v) for v in s))


def _num(x: float) -> str:
    # Statistics are of the finite values; NaN means there was none (a note says so).
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.6g}"


def _hyper_text(hp: dict, pad_spec: Optional[str]) -> str:
    pads = hp["pad"]
    pad = format_pads(tuple(pads), "keys")
    if pad_spec == "same":
        pad = f"same -> {pad}"
    parts = [f"f={_pair(hp['f'])}", f"stride={_pair(hp['stride'])}", f"pad={pad}"]
    if hp["dilation"] != [1, 1]:
        parts.append(f"dilation={_pair(hp['dilation'])}")
    if hp["layer"] == "conv":
        if hp["groups"] != 1:
            parts.append(f"groups={hp['groups']}")
    else:
        parts.append(f"mode={hp['mode']}")
        if hp["ceil_mode"]:
            parts.append("ceil_mode")
        if hp["mode"] == "average" and not hp["count_include_pad"]:
            parts.append("count_include_pad=false")
    return "  ".join(parts)


def print_report(report, out: Console) -> None:
    """The human view of a PassReport: what ran, how the output size came about, inputs, outputs, notes."""
    report = report.to_dict()
    hp = report["hyperparameters"]
    title = f"cnncli {report['command']}: {'convolution' if hp['layer'] == 'conv' else 'pooling'}"
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("hyperparameters", _hyper_text(hp, report.get("pad_spec")))
    for name in ("height", "width"):
        axis = report["output_size"][name]
        table.add_row(f"n_{name[0].upper()}", size_formula(axis["n_in"], axis["f"], axis["stride"], axis["dilation"],
                                                           axis["pad_before"], axis["pad_after"], axis["n_out"],
                                                           hp.get("ceil_mode", False)))
    table.add_row("layout / dtype", f"{hp['layout']} / {report['dtype']}")
    out.print(table)

    io_table = Table(show_lines=False, title_justify="left")
    for col, just in (("array", "left"), ("shape", "left"), ("dtype", "left"), ("min", "right"),
                      ("max", "right"), ("mean", "right"), ("std", "right"), ("from / to", "left")):
        io_table.add_column(col, justify=just, no_wrap=col != "from / to")  # a shape or a value is never split
    for name, info in report["inputs"].items():
        # NOTE: paths as text: a file named "[red]x.npy" or ":smile:.npy" is shown as named, not as markup or emoji
        io_table.add_row(f"in  {name}", _shape(info["shape"]), info["dtype"], "", "", "", "", literal(info["source"]))
    target = report.get("output_file")
    for name, info in report["outputs"].items():
        where = target if target and name in report.get("written", []) else ""
        if where == "-":
            where = "stdout"
        io_table.add_row(f"out {name}", _shape(info["shape"]), info["dtype"], _num(info["min"]), _num(info["max"]),
                         _num(info["mean"]), _num(info["std"]), literal(where))
    out.print(io_table)
    for note in report.get("notes", []):
        out.print(literal(f"note: {note}"))  # a note may quote a case's attribute names
    if report.get("seconds") is not None:
        out.print(f"time: {report['seconds']:.3f} s", style="dim")
