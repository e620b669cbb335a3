"""Names and paths the user chose are printed as they are: rich markup in them is text, not style."""

import numpy as np
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()


def test_a_module_named_like_a_closing_tag_is_printed_not_a_crash():
    # "[/x]" parsed as markup was a MarkupError: exit 3 (an internal error)
    model = "Sequential(\n  ([/x]): ReLU()\n  ([red]a): ReLU()\n)\n"
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "1x8x8x3"], input=model,
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "│ 1 │ [/x] relu " in result.stdout and "│ 2 │ [red]a relu " in result.stdout


def test_file_names_with_brackets_are_shown_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("[red]x.npy", np.ones((1, 4, 4, 1)))
    result = runner.invoke(app, ["forward", "[red]x.npy", "--f", "2", "-o", "[b]out.npy"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert " [red]x.npy " in result.stdout and " [b]out.npy " in result.stdout
    assert np.array_equal(np.load("[b]out.npy"), np.ones((1, 2, 2, 1)))
