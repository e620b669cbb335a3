"""Tables that fit the width with every value whole (issue 11 part 1), and --plain's tab-separated form."""

import io

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cnncli.render import common, fit


def _console(width: int, plain: bool = False) -> Console:
    out = common._Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    out.plain = plain
    return out


def _table() -> Table:
    t = Table(title="stack")
    for name, justify in (("#", "right"), ("layer", "left"), ("params", "right"), ("MACs", "right"),
                          ("mem f32", "right"), ("note", "left")):
        t.add_column(name, justify=justify, no_wrap=name != "note")
    t.add_row("1", "conv f=3 s=1 p=same c=64", "1,792", "1,605,632,000", "12,845.0 KiB", "the stride reads every row")
    t.add_row("2", "pool f=2 s=2 p=valid max", "0", "0", "3,211.3 KiB", Text("none", style="green"))
    return t


NUMBERS = ["1,792", "1,605,632,000", "12,845.0 KiB", "3,211.3 KiB"]
TEXTS = ["conv f=3 s=1 p=same c=64", "pool f=2 s=2 p=valid max"]


@pytest.mark.parametrize("width", [200, 80, 60, 40, 30])
def test_every_value_is_whole_and_no_line_is_too_wide(width):
    out = _console(width)
    out.print(_table())
    text = out.file.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for cell in NUMBERS + (TEXTS if width >= 60 else []):  # on one line, as written (text may wrap when narrow)
        assert cell in text


def test_a_wide_console_keeps_the_one_table():
    out = _console(200)
    out.print(_table())
    header = [line for line in out.file.getvalue().splitlines() if "layer" in line]
    assert len(header) == 1 and all(h in header[0] for h in ("#", "params", "MACs", "mem f32", "note"))


def test_a_narrow_console_deals_the_columns_into_tables_that_repeat_the_first():
    out = _console(60)
    out.print(_table())
    text = out.file.getvalue()
    headers = [line for line in text.splitlines() if "┃" in line and "layer" in line]
    assert len(headers) >= 2  # the index column alone says too little: "layer" is repeated too
    assert text.count("conv f=3 s=1 p=same c=64") == len(headers)


def test_too_narrow_for_two_columns_becomes_a_block_per_row():
    out = _console(30)
    out.print(_table())
    lines = out.file.getvalue().splitlines()
    assert "# 1" in [line.strip() for line in lines]
    assert any(line.strip().startswith("MACs") and "1,605,632,000" in line for line in lines) or \
        "1,605,632,000" in [line.strip() for line in lines]


def test_a_word_wider_than_the_console_is_printed_whole():
    t = Table()
    t.add_column("name")
    t.add_column("value", no_wrap=True)
    t.add_row("x", "123456789012345678901234567890")
    out = _console(20)
    out.print(t)
    assert "123456789012345678901234567890" in out.file.getvalue()


def test_plain_is_tab_separated_with_a_header_row():
    out = _console(40, plain=True)
    out.print(_table())
    out.print("note: two layers")
    lines = out.file.getvalue().splitlines()
    assert lines[0] == "# stack"
    assert lines[1].split("\t") == ["index", "layer", "params", "MACs", "mem f32", "note"]
    assert lines[2].split("\t") == ["1", "conv f=3 s=1 p=same c=64", "1,792", "1,605,632,000", "12,845.0 KiB",
                                    "the stride reads every row"]
    assert lines[3].split("\t")[5] == "none"
    assert lines[4] == "# note: two layers"
    assert "\x1b" not in out.file.getvalue()


def test_plain_cells_keep_their_columns():
    t = Table()
    t.add_column("a")
    t.add_column("b")
    t.add_row("x\ty", "two\nlines")
    out = _console(40, plain=True)
    out.print(t)
    assert out.file.getvalue().splitlines()[1] == "x y\ttwo lines"


def test_a_wrapping_column_is_never_squeezed_to_nothing():
    # Rich gives a wrapping column no width at all when no_wrap ones take the line, without an ellipsis.
    t = Table()
    t.add_column("configuration")
    for name in ("result", "against", "max |got-expected|", "worst index: got vs expected"):
        t.add_column(name, no_wrap=True)
    t.add_row("conv f3 s1 p1", "dW", "numerical", "8.16e+00", "(1, 1, 1, 0): 10.0166 vs 1.85866")
    out = _console(80)
    out.print(t)
    text = out.file.getvalue()
    assert "conv f3 s1 p1" in text and "(1, 1, 1, 0): 10.0166 vs 1.85866" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_heatmap_with_inf_errors_shades_them_as_the_worst_without_warnings():
    import warnings

    import numpy as np

    from cnncli.render.gradcheck import heatmap

    errors = np.array([[np.inf, 1.0], [0.001, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would reach the user's terminal
        text = heatmap("dA_prev", "mhwc", errors, None).plain
    assert text.splitlines()[1:] == ["████", "░░  "]  # inf and the finite worst full; 0.1% of it; not checked
    only_inf = heatmap("dA_prev", "mhwc", np.array([[np.inf, 0.0]]), None).plain
    assert only_inf.splitlines()[1:] == ["██··"]


def test_a_large_heatmap_is_shown_by_blocks_within_80_columns():
    import warnings

    import numpy as np

    from cnncli.render.gradcheck import HEATMAP_CELLS, heatmap

    errors = np.full((64, 64), 1e-6)
    errors[63, 63] = 1.0  # one bad position, bottom right
    errors[:6, :4] = np.nan  # a corner never checked
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN block must not warn
        text = heatmap("dA_prev", "mhwc", errors, None)
    out = _console(80)
    out.print(text)
    lines = out.file.getvalue().splitlines()
    legend_end = next(i for i, line in enumerate(lines) if "blank not checked" in line)
    rows = [r for r in lines[legend_end + 1:] if r]  # the map's rows (the console ends with a blank line)
    # 64 rows by 64 columns in blocks of ceil(64 / 24) = 3 by ceil(64 / 38) = 2 positions: 22 x 32 cells
    assert len(rows) == -(-64 // 3) <= HEATMAP_CELLS[0] and all(len(r) == 2 * 32 for r in rows)
    assert "a cell the largest of 3 x 2 positions" in " ".join(line.strip() for line in lines[:legend_end + 1])
    assert rows[-1].endswith("██") and rows[-1].count("█") == 2  # the block holding (63, 63): the worst
    assert rows[0].startswith("    ") and rows[2].startswith("··")  # blocks of rows 0-5, columns 0-3: blank
    assert max(len(line) for line in lines) <= 80


def test_a_heatmap_of_a_long_signal_is_one_row_of_blocks():
    import numpy as np

    from cnncli.render.gradcheck import heatmap

    errors = np.full((1, 2_000_000), np.nan)
    errors[0, ::1000] = 1e-9
    errors[0, 1_999_999] = 1.0
    rows = heatmap("dA_prev", "mhwc", errors, None).plain.splitlines()[1:]
    cells = -(-2_000_000 // -(-2_000_000 // 38))  # blocks of ceil(2e6 / 38) positions
    assert len(rows) == 1 and len(rows[0]) == 2 * cells <= 76 and rows[0].endswith("██")


def test_a_small_heatmap_is_drawn_position_by_position():
    import numpy as np

    from cnncli.render.gradcheck import heatmap

    text = heatmap("dA_prev", "mhwc", np.arange(35.0).reshape(5, 7) + 1, None).plain
    assert "a cell the largest" not in text and [len(r) for r in text.splitlines()[1:]] == [14] * 5
