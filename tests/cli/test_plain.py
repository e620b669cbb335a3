"""--plain (issue 11 part 8): tab-separated tables for spreadsheets and scripts, other lines as comments."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _rows(text):
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def test_a_stack_is_one_header_row_and_one_row_per_layer():
    result = runner.invoke(app, ["shape", "--input", "64x64x3", "conv:f=4,p=same,c=8", "pool:f=8,s=8", "--plain"])
    assert result.exit_code == 0
    rows = _rows(result.stdout)
    assert rows[0][:3] == ["index", "layer", "input -> output"]
    assert all(len(row) == len(rows[0]) for row in rows)
    conv = dict(zip(rows[0], rows[1]))
    assert conv["input -> output"] == "64x64x3 -> 64x64x8"
    assert conv["params"] == f"{4 * 4 * 3 * 8 + 8:,}"
    assert conv["MACs"] == f"{64 * 64 * 8 * 4 * 4 * 3:,}"
    assert conv["pads"] == "1,2,1,2"  # 'same' for f=4: 3 pixels, the extra one after
    assert dict(zip(rows[0], rows[2]))["input -> output"] == "64x64x8 -> 8x8x8"
    assert "\x1b" not in result.stdout and "│" not in result.stdout


def test_the_size_table_is_tab_separated_with_the_formulas_as_comments():
    result = runner.invoke(app, ["shape", "--f", "3", "--stride", "2", "--plain"])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# n_out = floor(")
    rows = _rows(result.stdout)
    assert rows[0] == ["input", "valid output", "same output (pads)"]
    by_input = {int(r[0]): r for r in rows[1:]}
    assert by_input[28][1] == str((28 - 3) // 2 + 1) + " *"  # 13, the last row unread
    assert by_input[28][2].startswith(str(-(-28 // 2)))


def test_forward_plain_lists_the_arrays():
    result = runner.invoke(app, ["forward", str(EXAMPLES / "conv_case.h5"), "--plain"])
    assert result.exit_code == 0
    rows = _rows(result.stdout)
    header = next(r for r in rows if r[0] == "array")
    out = dict(zip(header, next(r for r in rows if r[0] == "out Z")))
    assert out["shape"] == "(4, 8, 8, 4)"


def test_gradcheck_plain_one_row_per_gradient(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((2, 4, 4, 2)))
    result = runner.invoke(app, ["gradcheck", str(tmp_path / "A.npy"), "--f", "2", "--mode", "average", "--plain"])
    assert result.exit_code == 0
    rows = _rows(result.stdout)
    assert rows[0][0] == "gradient" and rows[1][0] == "dA_prev"
    assert dict(zip(rows[0], rows[1]))["checked"] == str(2 * 4 * 4 * 2)
    assert result.stdout.splitlines()[-1].startswith("# gradient check: PASS")


@pytest.mark.parametrize("argv", [["shape", "--f", "3"], ["gradcheck"], ["forward", "x.npy"]])
def test_plain_and_json_are_one_at_a_time(argv):
    result = runner.invoke(app, argv + ["--plain", "--json"])
    assert result.exit_code == 2
    assert result.stderr == "cnncli: error: give --json or --plain, not both\n"
