"""What the --impl report says: the user's words drawn literally, named mistakes, a truthful time limit."""

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import HyperparameterError
from cnncli.engine import conv2d
from cnncli.gradcheck import check_impl, impl_checks, sandbox
from cnncli.gradcheck.impl_checks import cases_of
from cnncli.render.gradcheck import print_impl

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


# --- the whole check's time limit: each function one status, the limit blamed on what was running ---------

CONV_CASES = [c.name for _, c in cases_of("conv")]

# right on its first configuration, then sleeps for ever (a loop that leaves the CPU to the tests): the whole
# check's limit (2 s) comes before the per-call one (--timeout 30)
BACKWARD_LOOPS_AFTER_ONE = '''
import time as _time

_cb = conv_backward
_calls = []


def conv_backward(dZ, cache):
    _calls.append(1)
    while len(_calls) > 1:
        _time.sleep(0.05)
    return _cb(dZ, cache)
'''

# right when first called on a configuration (its own check), an endless loop on the perturbed inputs of
# conv_backward's comparison with central differences of this forward
FORWARD_LOOPS_WHEN_PERTURBED = '''
import time as _time

_cf = conv_forward
_seen = set()


def conv_forward(A_prev, W, b, hparameters):
    key = (A_prev.shape, W.shape, str(hparameters))
    while key in _seen:
        _time.sleep(0.05)
    _seen.add(key)
    return _cf(A_prev, W, b, hparameters)
'''


@pytest.fixture
def two_second_check(monkeypatch):
    """The whole check's limit at 2 s under --timeout 30 (a per-call limit that never comes first)."""
    monkeypatch.setattr(sandbox, "OVERALL_FACTOR", 2 / 30)


def _with(tmp_path, extra, name="slow.py"):
    path = tmp_path / name
    path.write_text((IMPLS / "correct.py").read_text() + extra)
    return path


def test_a_backward_cut_by_the_whole_checks_limit_is_incomplete_and_the_rest_not_reached(tmp_path,
                                                                                          two_second_check):
    path = _with(tmp_path, BACKWARD_LOOPS_AFTER_ONE)
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--timeout", "30", "--json",
                            "--only", "zero_pad,conv_backward,pool_forward,pool_backward"])
    assert r.exit_code == 1, r.output  # not a pass (SPEC: a check that is inconclusive exits 1)
    doc = json.loads(r.stdout)
    assert doc["passed"] is False and doc["verdict"] == "inconclusive"
    by = {f["name"]: f for f in doc["functions"]}
    assert [(n, f["status"], f["passed"]) for n, f in by.items()] == [
        ("zero_pad", "pass", True), ("conv_backward", "incomplete", False),
        ("pool_forward", "not checked", False), ("pool_backward", "not checked", False)]
    # the time is no error of the user's code: no errors at all, every comparison made passed
    assert all(f["errors"] == [] for f in doc["functions"])
    backward = by["conv_backward"]
    assert backward["findings"] and all(f["passed"] for f in backward["findings"])
    assert {f["case"] for f in backward["findings"]} == {CONV_CASES[0]}
    assert backward["stopped"] == (f"stopped on configuration {CONV_CASES[1]}: the whole check's time limit "
                                   "(2 s) ran out while it ran")
    for name in ("pool_forward", "pool_backward"):
        assert by[name]["findings"] == [] and by[name]["stopped"] == (
            "not reached: the whole check's time limit (2 s) ran out before its check began")
    assert by["zero_pad"]["stopped"] is None
    assert (f"the whole check stopped at its time limit, 2 s (0.0666667 x --timeout 30), while your conv_backward "
            f"ran on configuration {CONV_CASES[1]}: a larger --timeout, or --only NAME[,NAME...], lets it finish"
            ) in doc["notes"]


def test_the_limit_hit_in_a_forward_called_by_the_backwards_check_is_not_the_forwards_failure(tmp_path,
                                                                                            two_second_check):
    # the tester's report: conv_forward shown PASS and "conv_forward not checked", the error counted against
    # conv_backward; the forward passed its own check, the backward's check was cut while the forward ran
    result = check_impl(_with(tmp_path, FORWARD_LOOPS_WHEN_PERTURBED), timeout=30,
                        only=["conv_forward", "conv_backward", "pool_backward"])
    by = {f.name: f for f in result.functions}
    assert [(n, f.status) for n, f in by.items()] == [
        ("conv_forward", "pass"), ("conv_backward", "incomplete"), ("pool_backward", "not checked")]
    assert all(f.errors == () for f in result.functions)
    assert len(by["conv_forward"].findings) == len(CONV_CASES) and by["conv_forward"].stopped == ""
    # the engine comparisons of the first configuration were made; its central differences were cut
    assert {(f.case, f.against) for f in by["conv_backward"].findings} == {(CONV_CASES[0], "engine")}
    assert by["conv_backward"].stopped == (f"stopped on configuration {CONV_CASES[0]}: the whole check's time "
                                           "limit (2 s) ran out while your conv_forward (called by this check) ran")
    assert result.verdict == "inconclusive" and not result.passed
    # the table says the same: one status per row, no row both PASS and "not checked"
    out = io.StringIO()
    print_impl(result, Console(file=out, width=250, color_system=None))
    text = out.getvalue()
    rows = {line.split("│")[1].strip(): line.split("│")[5].strip() for line in text.splitlines()
            if line.startswith("│")}
    assert rows == {"conv_forward": "PASS", "conv_backward": "INCOMPLETE", "pool_backward": "NOT CHECKED"}
    assert f"conv_backward {by['conv_backward'].stopped}\n" in text
    assert ("pool_backward not reached: the whole check's time limit (2 s) ran out before its check began\n"
            in text)
    assert "conv_forward not checked" not in text and "took longer than" not in text
    assert text.splitlines()[-1] == "gradient check: INCONCLUSIVE (1/3 functions, method sample)"


def test_a_failure_before_the_limit_keeps_the_verdict_fail(tmp_path, two_second_check):
    # a zero_pad that pads nothing fails; the backward is then cut short: FAIL, not inconclusive
    path = _with(tmp_path, BACKWARD_LOOPS_AFTER_ONE + "\n\ndef zero_pad(X, pad):\n    return X\n")
    result = check_impl(path, timeout=30, only=["zero_pad", "conv_backward"])
    assert [(f.name, f.status) for f in result.functions] == [("zero_pad", "fail"), ("conv_backward", "incomplete")]
    assert result.verdict == "fail" and result.to_dict()["verdict"] == "fail"


def test_functions_after_a_process_that_cannot_be_restarted_are_not_reached(tmp_path):
    # the file loads once; after zero_pad's timeout the process is restarted and loading it again fails
    marker = tmp_path / "loaded"
    path = tmp_path / "once.py"
    path.write_text(f"import os\nif os.path.exists({str(marker)!r}):\n    raise RuntimeError('second load')\n"
                    f"open({str(marker)!r}, 'w').close()\n" + (IMPLS / "correct.py").read_text() +
                    "\n\nimport time\n\n\ndef zero_pad(X, pad):\n    while True:\n        time.sleep(0.05)\n")
    result = check_impl(path, timeout=1, only=["zero_pad", "distribute_value"])
    zero_pad, distribute = result.functions
    assert zero_pad.status == "fail" and [e.kind for e in zero_pad.errors] == ["timeout"]
    assert distribute.status == "not checked" and distribute.errors == ()
    assert distribute.stopped == "not reached: the process running your code could not be restarted"
    assert result.verdict == "fail"


def test_time_that_runs_out_between_calls_blames_no_function_of_the_user(tmp_path, monkeypatch):
    # cnncli's own work between two calls (its reference, slowed here) uses the time up: no call was running
    monkeypatch.setattr(sandbox, "OVERALL_FACTOR", 2 / 30)
    slow = []

    def slow_conv2d(*args, **kwargs):
        if not slow:
            slow.append(time.sleep(2.5))
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(impl_checks, "conv2d", slow_conv2d)
    result = check_impl(IMPLS / "correct.py", timeout=30, only=["conv_forward", "pool_forward"])
    forward, pool = result.functions
    assert forward.errors == () and pool.status == "not checked" and result.verdict == "inconclusive"
    assert forward.stopped.startswith("stopped before configuration conv f3 s1 p")
    assert forward.stopped.endswith(": the whole check's time limit (2 s) ran out between calls into your code")
    assert any("between calls into your code, before configuration" in n for n in result.notes)
