"""print_fitted measures each cell once, not once per trial, and draws exactly what measuring every cell draws.

The oracle is the same algorithm without the shortcut: ``fit._widest`` replaced by the table itself, so every
trial measures (and, when it must, draws) the whole table, as rich does for any table.
"""

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state
from cnncli.render import common, fit

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


def _model(n: int) -> str:
    lines = [f"  ({i}): " + ("Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" if i % 3 == 0
                             else "MaxPool2d(kernel_size=1, stride=1)" if i % 3 == 1 else "ReLU()") for i in range(n)]
    return "Sequential(\n" + "\n".join(lines) + "\n)\n"


def _draw(table: Table, width: int) -> str:
    out = common._Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    out.print(table)
    return out.file.getvalue()


def _drawn_both_ways(table: Table, width: int):
    """``table`` drawn at ``width`` as fitted, then measuring every cell in every trial (the oracle).
    Not monkeypatch: hypothesis reuses a test's function-scoped fixtures across its examples."""
    fast = _draw(table, width)
    saved = fit._widest
    fit._widest = lambda console, t, memo: t
    try:
        return fast, _draw(table, width)
    finally:
        fit._widest = saved


def _every_cell(monkeypatch):
    monkeypatch.setattr(fit, "_widest", lambda console, table, memo: table)


@pytest.mark.parametrize("width", [24, 40, 60, 80, 100, 130, 200])
def test_a_printed_model_draws_as_when_every_cell_is_measured_in_every_trial(monkeypatch, width):
    args = ["shape", "--from", "-", "--input", "1x16x16x8"]
    fast = runner.invoke(app, args, input=_model(40), env={"COLUMNS": str(width)})
    with monkeypatch.context() as m:
        _every_cell(m)
        slow = runner.invoke(app, args, input=_model(40), env={"COLUMNS": str(width)})
    assert fast.exit_code == slow.exit_code == 0
    assert fast.stdout == slow.stdout and "38 relu" in fast.stdout


_words = st.one_of(st.text("abcxyz0123456789,.-", min_size=1, max_size=14),
                   st.sampled_from([":smile:", "a:smile:b", "\u6f22\u5b57", "\U0001f600", "[b]x"]))
_gaps = st.sampled_from([" ", " ", " ", "  ", "\t"])
_edges = st.sampled_from(["", "", "", " ", "   ", "          "])


@st.composite
def _text(draw, min_words=0):
    """Words joined by spaces (sometimes two, or a tab), sometimes with leading or trailing spaces: rich wraps
    a cell's leading spaces with its first word but measures without them."""
    words = draw(st.lists(_words, min_size=min_words, max_size=4))
    body = words[0] if words else ""
    for w in words[1:]:
        body += draw(_gaps) + w
    return draw(_edges) + body + draw(_edges)


_cells = st.one_of(_text(), _text(min_words=1).map(lambda t: Text(t, style="bold")))


@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(st.tuples(_words, st.booleans()), min_size=n, max_size=n),
    st.lists(st.lists(_cells, min_size=n, max_size=n), min_size=3, max_size=12))),
    st.integers(8, 90))
def test_any_table_draws_as_when_every_cell_is_measured(columns_rows, width):
    columns, rows = columns_rows
    table = Table(title="t")
    for header, no_wrap in columns:  # headers: plain words
        table.add_column(header, no_wrap=no_wrap)
    for row in rows:
        table.add_row(*row)
    fast, slow = _drawn_both_ways(table, width)
    assert fast == slow


def test_each_cell_is_measured_a_few_times_not_once_per_trial(monkeypatch):
    # 80 columns are too narrow for a stack's nine columns: before, each of ~20 trials measured every cell
    # of its columns twice and drew the whole table; now a cell is measured once for all trials, and again
    # only by the final drawing of its part (rich measures what it prints; the first columns repeat in each).
    calls = []
    real = Measurement.get.__func__

    def counting(cls, console, options, renderable):
        calls.append(1)
        return real(cls, console, options, renderable)

    monkeypatch.setattr(Measurement, "get", classmethod(counting))
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "1x16x16x8"], input=_model(300),
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0 and "298 pool" in result.stdout
    cells = 9 * 301  # nine columns, 300 layers and the totals row
    assert len(calls) < 8 * cells, len(calls) / cells  # 54 per cell before, 4 now


@pytest.mark.parametrize("rows, widths", [
    (["      ab", "abcde", "x x x x x x x x"], range(13, 16)),  # leading spaces wrap with the first word
    (["a:smile:b", "abcdefghij", "x x x x x x x x x x x"], range(18, 29)),  # an emoji code
    (["a\tb", "abcdefghij", "x x x x x"], range(8, 20)),  # a tab measures as nothing
])
def test_cells_that_draw_otherwise_than_they_measure_are_drawn_as_before(rows, widths):
    # A cell not among a column's widest by measure was left out of the trials' copy, and then cut
    # ('│           a.n… │' in a forward table at COLUMNS=96, where measuring every cell splits the table)
    for width in widths:
        table = Table(title="t")
        table.add_column("k", no_wrap=True)
        table.add_column("v")
        for i, text in enumerate(rows):
            table.add_row(f"k{i}", text)
        fast, slow = _drawn_both_ways(table, width)
        assert fast == slow, width


def test_text_cells_with_emoji_codes_or_brackets_take_the_shortcut_and_draw_as_before():
    # A Text is drawn as it is (rich reads markup and emoji codes only in a str): such cells, user-chosen names,
    # need not stay in the trials' copy; before, each one did, and more than 64 measured the whole table.
    table = Table(title="t")
    table.add_column("k", no_wrap=True)
    table.add_column("v")
    for i in range(100):
        table.add_row(f"k{i}", Text(f"n{i}:smile:" if i % 2 else f"[red]n{i} a:fire:b"))
    out = common._Console(file=io.StringIO(), width=40, color_system=None, highlight=False)
    assert fit._widest(out, table, {}).row_count == 2
    for width in (12, 16, 20, 24, 30, 40):
        fast, slow = _drawn_both_ways(table, width)
        assert fast == slow, width
    assert "n99:smile:" in fast and "[red]n98 a:fire:b" in fast


#: Block mode's shortcuts, and what each is replaced by to draw every grid: no room check, no memo of values.
_BLOCK_SHORTCUTS = {"_side_by_side_may_fit": lambda *args: True, "_drawn_as": lambda cell: None}


def _drawn_with_and_without_shortcuts(draw):
    """``draw()``'s result, then its result with block mode's shortcuts off (every grid drawn to know)."""
    fast = draw()
    saved = {name: getattr(fit, name) for name in _BLOCK_SHORTCUTS}
    for name, oracle in _BLOCK_SHORTCUTS.items():
        setattr(fit, name, oracle)
    try:
        return fast, draw()
    finally:
        for name, real in saved.items():
            setattr(fit, name, real)


#: Values that recur from row to row, as a model's do ('0', 'none'), for the memo of values.
_recurring = st.sampled_from(["0", "none", "1x16x16x8 -> 1x16x16x8", "768 B", "a  b", " x"]).map(
    lambda t: st.just(t) | st.just(Text(t))).flatmap(lambda s: s)


@given(st.integers(2, 6).flatmap(lambda n: st.tuples(
    st.lists(_words, min_size=n, max_size=n),
    st.lists(st.lists(_cells | _recurring, min_size=n, max_size=n), min_size=1, max_size=6))),
    st.integers(8, 60))
def test_blocks_draw_as_when_every_side_by_side_grid_is_drawn(columns_rows, width):
    # a block's 'header  value' grid is drawn off-screen only when its headers and longest words have room,
    # and a value's own line is drawn to check it once per value, not once per row
    columns, rows = columns_rows
    table = Table(title="t")
    for header in columns:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    fast, slow = _drawn_with_and_without_shortcuts(lambda: _draw(table, width))
    assert fast == slow


@pytest.mark.parametrize("width", [24, 30, 36])
def test_a_printed_model_in_blocks_draws_as_when_every_grid_is_drawn(width):
    args = ["shape", "--from", "-", "--input", "1x16x16x8"]
    fast, slow = _drawn_with_and_without_shortcuts(
        lambda: runner.invoke(app, args, input=_model(30), env={"COLUMNS": str(width)}))
    assert fast.exit_code == slow.exit_code == 0
    assert fast.stdout == slow.stdout and "# 28" in fast.stdout


@given(st.lists(st.tuples(st.booleans(), _text(min_words=1)), min_size=1, max_size=5), st.integers(8, 40),
       st.booleans())
def test_a_group_of_block_lines_prints_as_its_parts_printed_one_by_one(parts, width, colour):
    # _print_block prints a block's lines as one rich Group: it must write what printing each part does
    from rich.console import Group

    def renderables():
        out = []
        for as_grid, text in parts:
            if as_grid:
                inner = Table.grid(pad_edge=False)
                inner.add_column(width=8, no_wrap=True)
                inner.add_column()
                inner.add_row("", Text(text))
                if fit.fits(console(), inner, width):  # the only grids _print_block groups
                    out.append(inner)
            else:
                out.append(Text("    " + text, style="dim"))
        return out

    def console():
        return common._Console(file=io.StringIO(), width=width, highlight=False, force_terminal=colour,
                               color_system="truecolor" if colour else None)

    one, each = console(), console()
    one.print(Group(*renderables()))
    for part in renderables():
        each.print(part)
    assert one.file.getvalue() == each.file.getvalue()


def test_blocks_draw_few_grids_off_screen(monkeypatch):
    # COLUMNS=30: every row a block. Before, each row's 'header  value' grid was drawn off-screen (only to find
    # a value cut) and each of its eight values checked on its own: 2,711 checks and 499 drawings for 301 rows
    # (a 10,000-row table took 72 s); now a grid without room is not drawn, and a value is checked once.
    calls = {"fits": 0, "drawn": 0}
    fits, off_screen = fit.fits, fit._off_screen

    def counting_fits(*args, **kwargs):
        calls["fits"] += 1
        return fits(*args, **kwargs)

    def counting_drawing(*args):
        calls["drawn"] += 1
        return off_screen(*args)

    monkeypatch.setattr(fit, "fits", counting_fits)
    monkeypatch.setattr(fit, "_off_screen", counting_drawing)
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "1x16x16x8"], input=_model(300),
                           env={"COLUMNS": "30"})
    assert result.exit_code == 0 and "# 298\n" in result.stdout and "input -> output  1x16x16x8" not in result.stdout
    rows = 301
    assert calls["fits"] < 2 * rows and calls["drawn"] < rows, calls
