"""``shape``'s refusals of short input fit an 80-column terminal (the README's rule; tests/cli/test_error_width.py
holds the other commands'): one line, at most 80 characters with the "cnncli: error: " prefix, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state

runner = CliRunner()
WIDTH = 80


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


@pytest.mark.parametrize("args, stdin, words", [
    (["--input", "8", ":f=3"], None, "':f=3' must start with a kind (conv, pool, tconv"),  # was 145 characters
    (["--input", "8", "blah:f=3"], None, "'blah:f=3' must start with a kind"),
    (["--input", "8", "tconv:f=3,s=2,op=5"], None, "op=5 must be < stride 2 or dilation 1 in 'tconv:f=3,s=2,op=5'"),
    (["--input", "8", "conv:f=3,g=2,c=3"], None, "groups=2 must divide filters=3 in layer spec 'conv:f=3,g=2,c=3'"),
    (["--input", "8", "--f", "3", "--groups", "2", "--filters", "3"], None, "groups=2 must divide filters=3"),
    (["--from", "-", "--input", "8"],
     "Sequential(\n  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), weird=2)\n)\n",
     "--from line 2: Conv2d argument 'weird' is not one cnncli reads"),  # was 155 with the line quoted
])
def test_short_bad_input_is_one_line_within_80_columns(args, stdin, words):
    result = runner.invoke(app, ["shape", *args], input=stdin)
    assert result.exit_code == 2 and result.stdout == ""
    line = result.stderr
    assert line.startswith("cnncli: error: ") and line.count("\n") == 1 and words in line
    assert len(line.rstrip("\n")) <= WIDTH, (len(line), line)
