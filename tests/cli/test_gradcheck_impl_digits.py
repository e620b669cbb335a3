"""--impl failure tables show got and expected with enough digits to tell them apart."""

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from cnncli.cli import app

IMPLS = Path(__file__).resolve().parents[2] / "tests" / "impls"
runner = CliRunner()


def test_a_tiny_forward_error_shows_distinct_got_and_expected(tmp_path):
    text = (IMPLS / "correct.py").read_text()
    old = "    cache = (A_prev, W, b, hparameters)\n    return Z, cache\n"
    assert text.count(old) == 1
    path = tmp_path / "tiny.py"
    path.write_text(text.replace(old, "    Z = Z * (1 + 1e-6)\n" + old))  # off in the 7th digit
    doc = json.loads(runner.invoke(app, ["gradcheck", "--impl", str(path), "--json"]).stdout)
    forward = next(f for f in doc["functions"] if f["name"] == "conv_forward")
    expected = {tuple(x["worst_index"]): (x["got"], x["expected"]) for x in forward["findings"] if not x["passed"]}
    assert len(expected) == len(forward["findings"]) == 6
    r = runner.invoke(app, ["gradcheck", "--impl", str(path)], env={"COLUMNS": "200"})
    assert r.exit_code == 1
    rows = re.findall(r"\((\d+), (\d+), (\d+), (\d+)\): (\S+) vs (\S+)", r.stdout)
    assert len(rows) == 6, r.stdout
    for *index, got_text, expected_text in rows:
        got, want = expected[tuple(int(i) for i in index)]
        assert got != want and got_text != expected_text
        # each printed number is nearer its own value than the other one: the difference is visible
        assert abs(float(got_text) - got) < abs(got - want) / 2
        assert abs(float(expected_text) - want) < abs(got - want) / 2
