"""Names the user chose (module names, file paths) are drawn as they are written: every character, literally.

A colon does not end a module's name, rich's emoji codes (':smile:') stay text, and a control character is
drawn as the escape Python writes (``\\t``), as error lines draw it (:func:`cnncli.errors.printable`).
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


def _shape(model: str, width: int = 120, *extra):
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "1x8x8x3", *extra], input=model,
                           env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.stdout


def _rows(stdout: str):
    """The table's body rows as lists of stripped cells."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")]


def test_a_module_name_with_colons_is_shown_whole():
    # the name was cut at its first colon: 'enc:0' read 'enc', 'a: b' read 'a'
    model = "Sequential(\n  (enc:0): ReLU()\n  (a: b): ReLU()\n  (c:): ReLU()\n  (d): ReLU()\n)\n"
    rows = _rows(_shape(model))
    assert [r[1] for r in rows] == ["enc:0 relu", "a: b relu", "c: relu", "d relu", "total"]


def test_a_nested_module_name_with_a_colon_keeps_its_path():
    model = "Sequential(\n  (blk:1): Sequential(\n    (0): Conv2d(3, 4, kernel_size=(1, 1), stride=(1, 1))\n  )\n)\n"
    assert _rows(_shape(model))[0][1] == "blk:1.0 conv f=1 s=1 p=valid c=4"


def test_a_tab_in_a_module_name_is_drawn_as_python_writes_it_and_json_keeps_it():
    # the tab reached the table raw: rich measured it as nothing and expanded it to the next tab stop
    model = "Sequential(\n  (a\tb): ReLU()\n  (c): ReLU()\n)\n"
    assert [r[1] for r in _rows(_shape(model))] == ["a\\tb relu", "c relu", "total"]
    doc = json.loads(_shape(model, 120, "--json"))
    assert [layer["spec"] for layer in doc["layers"]] == ["a\tb: ReLU()", "c: ReLU()"]


def test_emoji_codes_in_a_module_name_stay_text():
    model = "Sequential(\n  (x:smile:y): ReLU()\n  (:fire:): ReLU()\n)\n"
    out = _shape(model)
    assert [r[1] for r in _rows(out)] == ["x:smile:y relu", ":fire: relu", "total"]
    assert "\U0001f604" not in out and "\U0001f525" not in out  # rich's :smile: and :fire:


def test_a_container_note_names_the_module_as_written():
    # a container other than Sequential gets a note naming it; its name went out raw (a tab, an emoji code)
    model = "Sequential(\n  (b\tx:smile:): MyBlock(\n    (0): ReLU()\n  )\n)\n"
    notes = [line for line in _shape(model, 200).splitlines() if line.startswith("note:")]
    assert notes == ["note: MyBlock b\\tx:smile: (line 2): its children are taken in the order printed; print(model) "
                     "does not show forward(), so a module used twice, or a reshape done there, is not seen"]


def test_file_names_with_emoji_codes_or_tabs_are_shown_as_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(":smile:.npy", np.ones((1, 4, 4, 1)))
    np.save("a\tb.npy", np.ones((1, 4, 4, 1)))
    for source, out, drawn in ((":smile:.npy", ":fire:.npy", (":smile:.npy", ":fire:.npy")),
                               ("a\tb.npy", "c\td.npy", ("a\\tb.npy", "c\\td.npy"))):
        result = runner.invoke(app, ["forward", source, "--f", "2", "-o", out], env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        cells = [line.split("│")[-2].strip() for line in result.stdout.splitlines() if line.startswith("│")]
        assert cells == list(drawn)
        assert np.array_equal(np.load(out), np.ones((1, 2, 2, 1)))


def test_the_impl_table_title_shows_the_path_as_named():
    from types import SimpleNamespace

    from cnncli.render import common
    from cnncli.render.gradcheck import print_impl

    import io
    result = SimpleNamespace(path="my:smile:\tfile.py", functions=[], missing=[], notes=[], passed=True,
                             verdict="pass", method="central")
    out = common._Console(file=io.StringIO(), width=80, color_system=None, highlight=False)
    print_impl(result, out)
    assert out.file.getvalue().splitlines()[0].strip() == "your functions in my:smile:\\tfile.py"


_NAMES = ["a\tb", "x:smile:y", "enc:0.\t:fire:", "[red]z", "dec\t\tlong_module_name:thumbs_up:"]


@pytest.mark.parametrize("width", [30, 40, 60, 80, 120])
def test_tables_of_such_names_fit_the_width_with_every_value_whole(width):
    model = "Sequential(\n" + "".join(f"  ({n}): Conv2d(3, 3, kernel_size=(1, 1), stride=(1, 1))\n" for n in _NAMES) + ")\n"
    out = _shape(model, width)
    assert "…" not in out
    # ASCII only: a character is a column. The one line that may be wider holds a word that is (the block form
    # prints such a value whole, indented by 8, for the terminal to wrap): 'dec\\t\\tlong_module_name:thumbs_up:'
    over = [line for line in out.splitlines() if len(line) > width]
    assert all(max(len(word) for word in line.split()) > width - 8 for line in over), over
    assert len(over) <= (width < 50)
    for name in _NAMES:  # each name whole, on one line (the name column does not wrap where it fits)
        assert name.replace("\t", "\\t") in out
