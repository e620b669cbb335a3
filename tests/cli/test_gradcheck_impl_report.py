"""What the --impl report says: the user's words drawn literally, named mistakes, a truthful time limit."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import HyperparameterError
from cnncli.gradcheck import check_impl

runner = CliRunner()
IMPLS = Path(__file__).resolve().parents[2] / "tests" / "impls"

# an escape sequence, a bell, a tab, a carriage return, a newline, rich markup and an emoji code
HOSTILE_MESSAGE = r"\x1b[31mred\x1b[0m [bold]b[/bold] :smile: \a tab\there\rCR\nline2"


def test_a_users_exception_message_and_line_are_drawn_literally(tmp_path):
    path = tmp_path / "loud.py"
    # the line's text holds a real escape sequence and a real tab too (in its comment)
    path.write_text(f'def zero_pad(X, pad):\n    raise ValueError("{HOSTILE_MESSAGE}")  # \x1b[2J\t[red]\n')
    r = runner.invoke(app, ["gradcheck", "--impl", str(path)], env={"COLUMNS": "300"})
    assert r.exit_code == 1, r.output
    # every control character written as Python writes it, the markup and the emoji code as text; the
    # message is its first line (the worker's rule: \r ends it too)
    words = r"\x1b[31mred\x1b[0m [bold]b[/bold] :smile: \x07 tab\there"
    line = (f"zero_pad raised ValueError: {words} at line 2: `raise ValueError(\"{HOSTILE_MESSAGE}\")  "
            r"# \x1b[2J\t[red]` (configuration: pad 0)")
    assert line in r.stdout.splitlines(), r.stdout
    assert not any(c in r.stdout for c in "\x1b\x07\t\r") and "\U0001f604" not in r.stdout
    # the JSON keeps the message as it was raised
    doc = json.loads(runner.invoke(app, ["gradcheck", "--impl", str(path), "--json"]).stdout)
    (error,) = doc["functions"][0]["errors"]
    assert error["exception"] == "ValueError: \x1b[31mred\x1b[0m [bold]b[/bold] :smile: \x07 tab\there"
    assert error["source"] == f'raise ValueError("{HOSTILE_MESSAGE}")  # \x1b[2J\t[red]'


@pytest.mark.parametrize("value,shown", [("0.001", "0.001"), ("0.999", "0.999"), ("1e-300", "1e-300")])
def test_a_timeout_too_short_to_time_the_users_code_is_refused(value, shown):
    # it was accepted, and then the child's own round trip was blamed on the file ("a loop at module level?")
    r = runner.invoke(app, ["gradcheck", "--impl", str(IMPLS / "correct.py"), "--timeout", value])
    assert r.exit_code == 2 and r.stdout == ""
    line = f"cnncli: error: --timeout {shown}: expected at least 1 second (e.g. 10)\n"
    assert r.stderr == line and len(line) <= 81  # 80 columns and the newline


def test_the_shortest_timeout_checks_a_correct_solution():
    r = runner.invoke(app, ["gradcheck", "--impl", str(IMPLS / "correct.py"), "--timeout", "1", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["passed"] is True, r.output


def test_check_impl_refuses_a_timeout_below_one_second():
    with pytest.raises(HyperparameterError, match=r"^timeout must be at least 1 s \(a shorter limit times "
                                                  r"cnncli's own process, not your code\), got 0\.5$"):
        check_impl(IMPLS / "correct.py", timeout=0.5)
