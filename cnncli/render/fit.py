"""Tables that fit the terminal with every value whole, and the same tables tab-separated.

Rich shrinks a table that is wider than the terminal by cutting cells ("1,57…",
"2.28e-…"). cnncli never lets it: :func:`print_fitted` renders a table off-screen at the
console's width and keeps it only if nothing was cut and no line is too wide (text
columns may wrap at spaces: a word, and so a number, is never split). Otherwise the
columns are dealt into several narrower tables, each repeating the first column (and the
second when the first is only an index, like ``#``), as many as it takes. When not even
one more column fits beside those, each row becomes a block — its first cell as a heading, then one ``header  value`` line per other
column — and where even a block's line cannot fit, the header goes on a line of its own
with the value below it. A value that is wider than the terminal by itself is then
printed whole on its own line (the terminal wraps it; it is never cut).

:func:`print_plain` writes a table as tab-separated values (``--plain``): a header row,
then one line per row, the cells' text without styles; a title or caption is a line
starting with ``#``.
"""

from __future__ import annotations

import copy
import io
import re
from typing import List, Optional, Sequence

from rich.cells import cell_len
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"
INDENT = 4


def cell_text(cell) -> str:
    """The plain text of a table cell (a str is rich markup, as rich reads it)."""
    if cell is None:
        return ""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def _rows(table: Table) -> List[List]:
    """The table's cells row by row (rich keeps them by column)."""
    columns = [list(col.cells) for col in table.columns]
    return [[col[i] if i < len(col) else "" for col in columns] for i in range(table.row_count)]


def _off_screen(console: Console, renderable, width: int) -> List[str]:
    """The lines ``renderable`` takes at ``width``, as plain text."""
    probe = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, legacy_windows=False,
                    force_terminal=False, soft_wrap=False, emoji=False)
    with probe.capture() as capture:
        # NOTE: crop=False: rich would cut an over-wide line to the width, border and last cell
        # with it, and the cut line would pass for one that fits.
        probe.print(renderable, crop=False)
    return capture.get().splitlines()


#: The width a table is measured at when it may take all it wants.
_UNLIMITED = 10**6


def _widest(console: Console, table: Table, memo: Optional[dict]) -> Table:
    """A two-row copy of ``table`` holding, per column, the cell of widest minimum and the cell of widest maximum.

    Rich measures a column as the largest minimum and the largest maximum of its cells, so this copy measures
    as the whole table does, at the cost of measuring each cell once (``memo``: by cell, shared by the trials
    of one :func:`print_fitted`) instead of once per trial.
    """
    if memo is None or table.row_count <= 2:
        return table
    options = console.options.update_width(_UNLIMITED)
    rows: List[List] = [[], []]
    odd: List[tuple] = []  # (column, cell) of cells that may draw wider than they measure
    for i, column in enumerate(table.columns):
        widest: List = [(-1, ""), (-1, "")]
        for cell in column.cells:
            if not isinstance(cell, (str, Text)):  # a nested renderable may measure by its width: no shortcut
                return table
            known = memo.get(id(cell))
            if known is None:
                known = memo[id(cell)] = (cell, Measurement.get(console, options, cell))  # the cell keeps its id
            for k in (0, 1):
                if known[1][k] > widest[k][0]:
                    widest[k] = (known[1][k], cell)
            if _odd(cell):
                odd.append((i, cell))
                if len(odd) > _MAX_ODD:  # many: the whole table, as rich would measure it
                    return table
        rows[0].append(widest[0][1])
        rows[1].append(widest[1][1])
    for i, cell in odd:  # NOTE: kept whole in the copy: their drawing, not their measure, decides a cut
        rows.append([cell if j == i else "" for j in range(len(table.columns))])
    proxy = copy.copy(table)
    proxy.columns = [column.copy() for column in table.columns]  # the same columns, without their cells
    proxy.rows = []
    for row in rows:
        proxy.add_row(*row)
    return proxy


#: What rich may read as an emoji code (":smile:"); a path's lone colon ("x.h5:/A_prev") is not one.
_EMOJI_CODE = re.compile(r":\S+?:")

#: More cells than this that :func:`_odd` flags, and a trial measures the whole table.
_MAX_ODD = 64


def _odd(cell) -> bool:
    """A cell rich may draw otherwise than its measure says: edge or repeated spaces (wrapping keeps leading ones
    with the first word, measuring drops them), tabs (measured as nothing), and in a str, emoji codes and markup
    (the off-screen check reads neither; a ``Text``, as user-chosen names are, is drawn as it is everywhere)."""
    text = cell.plain if isinstance(cell, Text) else cell
    spaced = text != text.strip() or "  " in text or "\t" in text
    return spaced or (isinstance(cell, str) and ("[" in text or _EMOJI_CODE.search(text) is not None))


def fits(console: Console, table: Table, width: int, memo: Optional[dict] = None) -> bool:
    """Whether rich draws ``table`` within ``width`` columns with no cell cut or dropped.

    Checked on the drawing itself: no line wider than ``width``, no ellipsis that is not in
    the cells, and every word of every cell on the page whole (rich squeezes a wrapping column
    it cannot fit down to nothing, without an ellipsis).

    Parameters
    ----------
    console : rich.console.Console
        The console the table is meant for (its options: styles, encoding).
    table : rich.table.Table
        The table, left unchanged.
    width : int
        Columns available.
    memo : dict, optional
        Measurements of cells already taken (by :func:`print_fitted`, across its trials); filled as it goes.

    Returns
    -------
    bool
        True when printing ``table`` at ``width`` shows every value whole.
    """
    # Measured without a limit (rich clamps a measure to the width it is given).
    widest = _widest(console, table, memo)
    measure = console.measure(widest, options=console.options.update_width(_UNLIMITED))
    if measure.minimum > width:
        return False
    if measure.maximum <= width:  # every column at its natural width: nothing is wrapped or cut
        return True
    # NOTE: drawn with the widest cells only: rich gives it the same column widths, and a column cuts
    # one of its cells only if it cuts its longest word (wrapping) or its longest line (no_wrap).
    texts = [cell_text(c) for row in _rows(widest) for c in row] + [cell_text(col.header) for col in widest.columns]
    lines = _off_screen(console, widest, width)
    shown = "\n".join(lines)
    if any(cell_len(line) > width for line in lines) or shown.count(ELLIPSIS) > "".join(texts).count(ELLIPSIS):
        return False
    return all(word in shown for text in texts for word in text.split())


def print_fitted(console: Console, table: Table, print_whole) -> None:
    """Print ``table`` whole at the console's width: as it is, dealt into narrower tables, or as blocks.

    Parameters
    ----------
    console : rich.console.Console
        Gives the width (``console.width``) and the rendering options.
    table : rich.table.Table
        The table to show; copies are made for the narrower forms, it is never changed.
    print_whole : callable(renderable, **kwargs)
        Prints one renderable as rich would (the console's own ``print``).
    """
    width = console.width
    # NOTE: the first column names the row (a configuration, a layer): kept whole when that
    # takes no more tables than letting it wrap (other text columns may always wrap).
    best, memo = None, {}
    for candidate in (_first_whole(table), table):
        if fits(console, candidate, width, memo):
            parts = [candidate]
        else:
            parts = _split(console, candidate, width, memo) if table.show_header else None
        if parts and (best is None or len(parts) < len(best)):
            best = parts
        if best and len(best) == 1:  # one table: no later candidate can take fewer
            break
    if best:
        for i, part in enumerate(best):
            if i:
                print_whole("")
            print_whole(part)
        return
    if table.title:
        print_whole(_as_text(table.title, style="italic"))
    headers = [cell_text(col.header) for col in table.columns]
    whole: dict = {}  # by value: whether it fits beside the indent (values repeat from row to row)
    for row in _rows(table):
        _print_block(console, headers, row, table.show_header, width, print_whole, whole)
    if table.caption:
        print_whole(_as_text(table.caption, style="dim"))


def _first_whole(table: Table) -> Table:
    """A copy of ``table`` whose first column does not wrap."""
    whole = copy.copy(table)
    whole.columns = [copy.copy(col) for col in table.columns]
    if whole.columns:
        whole.columns[0].no_wrap = True
    return whole


def _part(table: Table, columns: Sequence[int], first: bool, last: bool) -> Table:
    """A copy of ``table`` with only ``columns`` (the title on the first part, the caption on the last)."""
    part = copy.copy(table)
    part.columns = [copy.copy(table.columns[i]) for i in columns]
    part.title = table.title if first else None
    part.caption = table.caption if last else None
    return part


def _split(console: Console, table: Table, width: int, memo: Optional[dict] = None) -> Optional[List[Table]]:
    """The columns of ``table`` dealt into tables that each fit ``width``, or None when none can."""
    n = len(table.columns)
    index_only = n > 2 and max([len(cell_text(c)) for c in table.columns[0].cells] + [0]) <= 3
    keys = [0, 1] if index_only else [0]
    groups, current = [], []
    for i in range(len(keys), n):
        trial = keys + current + [i]
        if fits(console, _part(table, trial, not groups, False), width, memo):
            current.append(i)
        elif current:
            groups.append(current)
            if not fits(console, _part(table, keys + [i], False, False), width, memo):
                return None
            current = [i]
        else:
            return None
    groups.append(current)
    return [_part(table, keys + g, i == 0, i == len(groups) - 1) for i, g in enumerate(groups)]


def _as_text(value, style: str = "") -> Text:
    return value if isinstance(value, Text) else Text(cell_text(value), style=style)


#: The space between a block's indent, header and value columns.
_GAP = 2


def _side_by_side_may_fit(console: Console, pairs: Sequence[tuple], width: int) -> bool:
    """Whether a block's ``header  value`` grid has room for its headers whole and each value's longest word.
    Without it :func:`fits` need not draw the grid: rich keeps the no-wrap header column whole while the value
    column can give room, so a word of a value is cut (or, with no room left at all, a header)."""
    options = console.options.update_width(_UNLIMITED)
    headers = max(Measurement.get(console, options, header or "").maximum for header, _ in pairs)
    words = max(Measurement.get(console, options, cell).minimum for _, cell in pairs)
    return INDENT + _GAP + headers + _GAP + words <= width


def _drawn_as(cell) -> Optional[tuple]:
    """What decides how a str or Text cell draws (its text and layout settings; styles take no room), else None."""
    if isinstance(cell, str):
        return ("str", cell)
    if isinstance(cell, Text):
        return ("Text", cell.plain, cell.justify, cell.overflow, cell.no_wrap, cell.end, cell.tab_size)
    return None


def _print_block(console, headers: Sequence[str], row: Sequence, has_header: bool, width: int, print_whole,
                 whole: dict):
    """One row as a heading line and ``header  value`` lines (``value`` on its own line when needed); ``whole``
    remembers, by :func:`_drawn_as`, whether a value fits beside the indent."""
    if not any(cell_text(c).strip() for c in row):
        return
    heading = Text(f"{headers[0]} " if has_header and headers[0] else "")
    heading.append_text(_as_text(row[0]))
    heading.stylize("bold")
    print_whole(heading)
    pairs = [(h, c) for h, c in zip(headers[1:], row[1:]) if cell_text(c).strip()]
    if not pairs:
        return
    grid = Table.grid(padding=(0, _GAP), pad_edge=False)
    grid.add_column(width=INDENT, no_wrap=True)
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column()
    for header, cell in pairs:
        grid.add_row("", header or "", cell)
    if _side_by_side_may_fit(console, pairs, width) and fits(console, grid, width):
        print_whole(grid)
        return
    # NOTE: the lines that rich can draw go out as one Group (one print, not two per pair: most of a
    # 10,000-row table's time in blocks); a Group draws each of its parts as printing it alone does.
    lines: List = []
    for header, cell in pairs:  # too narrow for header and value side by side
        if header:
            lines.append(Text(" " * INDENT + header, style="dim"))
        value = _as_text(cell)
        inner = Table.grid(pad_edge=False)
        inner.add_column(width=2 * INDENT, no_wrap=True)
        inner.add_column()
        inner.add_row("", value)
        key = _drawn_as(cell)
        if key is None or key not in whole:
            verdict = fits(console, inner, width)
            if key is not None:
                whole[key] = verdict
        else:
            verdict = whole[key]
        if verdict:
            lines.append(inner)
            continue
        if lines:
            print_whole(Group(*lines))
            lines = []
        # a single word wider than the terminal: printed whole, never cut
        print_whole(Text(" " * 2 * INDENT) + value, soft_wrap=True, overflow="ignore", crop=False)
    if lines:
        print_whole(Group(*lines))


def print_plain(table: Table, write) -> None:
    """``table`` as tab-separated lines: a ``# title``, the header row (if any), the rows, a ``# caption``.

    Parameters
    ----------
    table : rich.table.Table
        The table; cells are written as their plain text (no styles, markup resolved).
    write : callable(str)
        Writes one line (without its newline).
    """
    if table.title:
        write("# " + cell_text(table.title))
    if table.show_header:
        # A header named "#" (a row index) would read as a comment line: name it.
        write("\t".join(_tsv(cell_text(col.header)).replace("#", "index", 1) if cell_text(col.header) == "#"
                        else _tsv(cell_text(col.header)) for col in table.columns))
    for row in _rows(table):
        write("\t".join(_tsv(cell_text(c)) for c in row))
    if table.caption:
        write("# " + cell_text(table.caption))


def _tsv(text: str) -> str:
    # A tab or newline inside a cell would split it: a space keeps the columns aligned.
    return " ".join(text.replace("\t", " ").split("\n")).strip()
