"""``shape --target`` with no solution: exit 1 (like grep finding nothing) and the nearest sizes that exist."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


# By hand, with n_out = floor((n + T - eff)/s) + 1 and each side below the window (T <= 2*(eff-1)):
@pytest.mark.parametrize("args, nearest", [
    # 28 rows, f=3, strides 1..3: the fewest outputs are stride 3, no pad: floor(25/3)+1 = 9.
    (["--input", "28", "--f", "3", "--target", "1"], [[9, 9]]),
    # 8 rows, f=3: the most are stride 1, pad 2+2: 8+4-3+1 = 10.
    (["--input", "8", "--f", "3", "--target", "100"], [[10, 10]]),
    # 100 rows, f=3: stride 1 gives 98..100, stride 2 gives 49..51: 70 falls in the gap. Each axis has its
    # own stride: 51x51 (|51-70| twice: 38 away), then 51x98 (19 + 28 = 47), before 98x98 (56).
    (["--input", "100", "--f", "3", "--target", "70"], [[51, 51], [51, 98]]),
    # Stride 2x3 fixed on 28x30: heights 13..15, widths floor((27+T)/3)+1 = 10..11; 9 is out of reach.
    (["--input", "28x30", "--f", "3", "--stride", "2x3", "--target", "13x9"], [[13, 10], [14, 10]]),
])
def test_no_solution_exits_1_naming_the_nearest_sizes(args, nearest):
    result = runner.invoke(app, ["shape", *args])
    assert result.exit_code == 1 and result.stderr == ""
    line = result.stdout.strip()
    assert line.startswith("no padding below the window makes") and "\n" not in line
    assert "nearest sizes it reaches: " + " or ".join(f"{h}x{w}" for h, w in nearest) in line
    doc = runner.invoke(app, ["shape", *args, "--json"])
    assert doc.exit_code == 1
    parsed = json.loads(doc.stdout)
    assert parsed["solutions"] == [] and parsed["nearest"] == nearest


def test_a_solution_exits_0_and_has_no_nearest_key():
    result = runner.invoke(app, ["shape", "--input", "28", "--f", "3", "--target", "14", "--json"])
    assert result.exit_code == 0 and "nearest" not in json.loads(result.stdout)
