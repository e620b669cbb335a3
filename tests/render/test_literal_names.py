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
