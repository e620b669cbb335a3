"""shape's wrapped lines (its totals, its notes) are measured in terminal cells, as rich draws them: a note
naming a module in CJK (two cells a character) still wraps between words within the width."""

import io

import pytest
from rich.cells import cell_len
from rich.console import Console

from cnncli.render.shape import _print_words


def _lines(text, width):
    out = io.StringIO()
    _print_words(Console(file=out, width=width, color_system=None), text)
    return out.getvalue().rstrip("\n").split("\n")


@pytest.mark.parametrize("text", [
    "note: 訓練ブロック 訓練ブロック (line 2): a module cnncli does not know is left out of the stack",
    "note: ｆｕｌｌ ｗｉｄｔｈ ｗｏｒｄｓ take two cells each in a terminal, as CJK does",
    "note: layer 3: 畳み込み層の出力は入力より大きい 12 x 12 -> 14 x 14 (padding 2 reads only zeros)",
])
@pytest.mark.parametrize("width", [30, 40, 80])
def test_wide_characters_wrap_between_words_within_the_width(text, width):
    lines = _lines(text, width)
    # a lone word wider than the width goes whole on its own line, never folded
    assert all(cell_len(line) <= width or " " not in line for line in lines), [(cell_len(x), x) for x in lines]
    assert any(" " in line and cell_len(line) > width / 2 for line in lines)  # words do share lines
    assert " ".join(lines).split() == text.split()  # every word whole, in order


def test_a_line_that_fits_in_cells_is_one_line():
    text = "note: 訓練 " + "x" * 60  # 71 cells
    assert _lines(text, 80) == [text]
