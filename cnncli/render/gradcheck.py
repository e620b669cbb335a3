"""Rendering of gradient checks: rich tables, error heatmaps and offenders for people, JSON for scripts.

Works on the result objects of :mod:`cnncli.gradcheck` (which carry the error maps
and hints); nothing is computed here.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import printable
from .common import console, literal, to_json  # noqa: F401  (console, to_json: used by cli/gradcheck.py)

SHADES = ((0.5, "█", "bold red"), (0.1, "▓", "red"), (0.01, "▒", "yellow"), (1e-3, "░", "yellow"))


def _e(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "nan" if x is None or math.isnan(x) else str(x)
    return f"{x:.2e}"


def _verdict(passed, verdict: Optional[str] = None) -> Text:
    """PASS / FAIL, or INCONCLUSIVE (not a pass: nothing meaningful could be checked)."""
    if verdict == "inconclusive":
        return Text("INCONCLUSIVE", style="bold yellow")
    return Text("PASS", style="bold green") if passed else Text("FAIL", style="bold red")


def _status(report) -> Text:
    """A user function's status: PASS, FAIL, or INCOMPLETE / NOT CHECKED (its check did not run to the end)."""
    if report.status in ("pass", "fail"):
        return _verdict(report.passed)
    return Text(report.status.upper(), style="bold yellow")


def _idx(index) -> str:
    return str(tuple(int(i) for i in index))


def _worst(g) -> str:
    return "-" if g.worst is None else _idx(g.worst.index)


def check_table(result, title: Optional[Text] = None) -> Table:
    """One row per gradient: what was checked and the verdict."""
    t = Table(title=title, title_justify="left")
    for col, just in (("gradient", "left"), ("shape", "left"), ("method", "left"), ("checked", "right"),
                      ("kinks", "right"), ("rel. error", "right"), ("max |a-n|", "right"),
                      ("worst at", "left"), ("failing", "right"), ("", "left")):
        t.add_column(col, justify=just, no_wrap=col in ("shape", "method", "checked", "worst at"))
    for g in result.gradients:
        checked = str(g.checked)
        if g.directions:
            checked = f"{g.checked} + {g.directions} dir" if g.checked else f"{g.directions} directions"
        t.add_row(g.name, _idx(g.shape), g.method, checked, str(g.kinks), _e(g.relative_error),
                  _e(g.max_abs_error), _worst(g), str(g.failing), _verdict(g.passed, g.verdict))
    return t


#: Cells of a heatmap at most (rows, columns): two characters a cell, so a row fits 80 columns.
HEATMAP_CELLS = (24, 38)


def _fit_map(error_map: np.ndarray):
    """``error_map`` (H, W) reduced to at most ``HEATMAP_CELLS``: each cell the largest of a block of positions
    (NaN only where none of them was checked); with the block's (rows, columns)."""
    H, W = error_map.shape
    bh, bw = -(-H // HEATMAP_CELLS[0]), -(-W // HEATMAP_CELLS[1])  # closed form: ceil(H / rows), ceil(W / cols)
    if bh == 1 and bw == 1:
        return error_map, (1, 1)
    padded = np.full((-(-H // bh) * bh, -(-W // bw) * bw), np.nan)
    padded[:H, :W] = error_map
    blocks = padded.reshape(padded.shape[0] // bh, bh, padded.shape[1] // bw, bw)
    # fmax: a NaN (not checked) gives way to any value, and no warning where a whole block is NaN
    return np.fmax.reduce(np.fmax.reduce(blocks, axis=3), axis=1), (bh, bw)


def heatmap(name: str, axes: str, error_map: Optional[np.ndarray], hint: Optional[str]) -> Optional[Text]:
    """A terminal heatmap of ``|a - n|`` over height x width (``error_map``), with the result's hint; a map
    larger than ``HEATMAP_CELLS`` is shown by blocks of positions, each cell the largest of its block."""
    if error_map is None:
        return None
    error_map, (bh, bw) = _fit_map(np.asarray(error_map, dtype=np.float64))
    finite = error_map[np.isfinite(error_map)]
    top = float(finite.max()) if finite.size else 0.0  # an inf error (a user's inf) is shaded as the worst
    out = Text()
    cells = "" if (bh, bw) == (1, 1) else f", a cell the largest of {bh} x {bw} positions"
    out.append(f"{name}: max |a-n| over {'examples and channels' if axes[0] == 'm' else 'channels'}, "
               f"height x width{cells} (█ >= 50% of the worst, ▓ 10%, ▒ 1%, ░ 0.1%, · less, blank not checked)\n",
               style="dim")
    for row in error_map:
        for v in row:
            if np.isnan(v):
                out.append("  ")
                continue
            ratio = 1.0 if np.isinf(v) else (v / top if top > 0 else 0.0)
            for level, ch, style in SHADES:
                if ratio >= level:
                    out.append(ch * 2, style=style)
                    break
            else:
                out.append("··", style="dim")
        out.append("\n")
    if hint:
        out.append(hint + "\n", style="italic")
    return out


def offenders_table(g) -> Table:
    """The largest errors of one gradient, worst first."""
    t = Table(title=f"top offenders of {g.name} (index in {g.axes})", title_justify="left")
    for col in ("index", "analytical", "numerical", "|a-n|"):
        t.add_column(col, justify="left" if col == "index" else "right", no_wrap=True)  # values: never split
    for o in g.top:
        t.add_row(_idx(o.index), f"{o.analytical:.8g}", f"{o.numerical:.8g}", _e(o.abs_error))
    return t


def print_check(result, con: Console, title: Optional[Text] = None) -> None:
    """Table, then heatmaps and offenders of the failing gradients, then notes and the verdict."""
    con.print(check_table(result, title))
    for g in result.gradients:
        if g.passed:
            continue
        hm = heatmap(g.name, g.axes, g.error_map, g.hint)
        if hm is not None:
            con.print(hm)
        if g.top:
            con.print(offenders_table(g))
    for g in result.gradients:
        if g.inconclusive:
            con.print(Text(f"not checked: {printable(g.inconclusive)}", style="yellow"))
    for note in result.notes:
        con.print(Text(f"note: {printable(note)}", style="dim"))
    _footer(con, result.passed, f"tol {result.tol:g}, eps {result.eps:g}", result.verdict)


def _footer(con: Console, passed: bool, extra: str, verdict: Optional[str] = None) -> None:
    text = Text("gradient check: ")
    text.append_text(_verdict(passed, verdict))
    text.append(f" ({extra})", style="dim")
    con.print(text)


def print_battery(result, con: Console) -> None:
    """One row per case; details of any failing case below."""
    t = Table(title=f"built-in battery: {len(result.cases)} configurations, method {result.method}",
              title_justify="left")
    for col in ("configuration", "dA_prev", "dW", "db", "checked", "kinks", ""):
        t.add_column(col, justify="left" if col == "configuration" else "right")
    for case in result.cases:
        by = {g.name: g for g in case.gradients}
        cells = [_e(by[n].relative_error) if n in by else "" for n in ("dA_prev", "dW", "db")]
        t.add_row(literal(case.label), *cells, str(sum(g.checked for g in case.gradients)),
                  str(sum(g.kinks for g in case.gradients)), _verdict(case.passed, case.verdict))
    con.print(t)
    con.print("columns dA_prev/dW/db: relative error ||a-n|| / (||a|| + ||n||)", style="dim")
    for case in result.cases:
        if not case.passed:  # "failing" only when it fails: an inconclusive case is said to be one
            heading = "failing" if case.verdict == "fail" else "inconclusive"
            print_check(case, con, title=literal(f"{heading}: {case.label}"))
    for note in result.notes:
        con.print(Text(f"note: {printable(note)}", style="dim"))
    tol = result.cases[0].tol if result.cases else 0
    _footer(con, result.passed,
            f"{sum(c.passed for c in result.cases)}/{len(result.cases)} configurations, tol {tol:g}", result.verdict)


def print_impl(result, con: Console) -> None:
    """Per function: checks, failures, the likely mistake; then the failing comparisons."""
    t = Table(title=literal(f"your functions in {result.path}"), title_justify="left")
    for col in ("function", "checks", "failed", "errors", "", "likely mistake"):
        t.add_column(col, justify="right" if col in ("checks", "failed", "errors") else "left")
    for f in result.functions:
        failed = sum(not x.passed for x in f.findings)
        t.add_row(f.name, str(len(f.findings)), str(failed), str(len(f.errors)), _status(f),
                  literal("; ".join(f.diagnosis)))
    con.print(t)
    if result.missing:
        con.print(f"not defined in the file (not checked): {', '.join(result.missing)}", style="dim")
    for f in result.functions:
        for e in f.errors:  # the user's words (message, line text): drawn as written, never as markup
            con.print(literal(e.message, style="red"))
        if f.stopped:
            con.print(Text(f"{f.name} {f.stopped}", style="yellow"))
        bad = [x for x in f.findings if not x.passed]
        if not bad:
            continue
        ft = Table(title=f"{f.name}: failing comparisons", title_justify="left")
        for col in ("configuration", "result", "against", "max |got-expected|", "worst index: got vs expected"):
            ft.add_column(col, no_wrap=col != "configuration")  # an index or a value is never split
        for x in bad[:10]:
            worst = x.detail or (f"{_idx(x.worst_index)}: {_got_vs_expected(x.got, x.expected)}"
                                 if x.worst_index is not None else "-")
            ft.add_row(literal(x.case), x.quantity, x.against, _e(x.max_abs_error), literal(worst))
        if len(bad) > 10:
            ft.caption = f"... and {len(bad) - 10} more"
        con.print(ft)
        first = next((x for x in bad if x.error_map is not None and x.quantity == "dA_prev"), None)
        if first is not None:
            hm = heatmap(f"{f.name} dA_prev vs {first.against}, {first.case}", "mhwc", first.error_map, first.hint)
            if hm is not None:
                con.print(hm)
    for note in result.notes:
        con.print(Text(f"note: {printable(note)}", style="dim"))
    _footer(con, result.passed, f"{sum(f.passed for f in result.functions)}/{len(result.functions)} functions, "
            f"method {result.method}", result.verdict)


def _got_vs_expected(got: float, expected: float) -> str:
    """``"got vs expected"`` with the fewest significant digits (at least 6) that tell them apart."""
    for digits in range(6, 18):
        a, b = f"{got:.{digits}g}", f"{expected:.{digits}g}"
        if a != b:
            if digits > 6:  # keep trailing zeros: both numbers show the same number of digits
                a, b = f"{got:#.{digits}g}", f"{expected:#.{digits}g}"
            return f"{a} vs {b}"
    return f"{got:.6g} vs {expected:.6g}"  # equal (or both NaN): more digits would say nothing
