"""--impl runs the user's code in a child process: nothing it does changes the verdict, the JSON or the exit code.

Each hostile file is correct.py with one function replaced (or a module-level
trick added) at test time; the expected verdict follows from what that function
really computes, never from what the file claims.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.gradcheck.impl import check_impl
from cnncli.gradcheck.userfile import CLASSIC

ROOT = Path(__file__).resolve().parents[2]
CORRECT = (ROOT / "tests" / "impls" / "correct.py").read_text()
runner = CliRunner()


HELPERS = ("zero_pad", "conv_single_step", "create_mask_from_window", "distribute_value")


def hostile(tmp_path, extra: str, name: str = "hostile.py") -> str:
    """correct.py followed by ``extra`` (a later definition replaces the correct one).

    correct.py's layers call its helpers through private names bound to the correct
    versions, so a hostile helper fails only its own check.
    """
    text = CORRECT
    for helper in HELPERS:
        text = text.replace(f"= {helper}(", f"= _{helper}(").replace(f"+= {helper}(", f"+= _{helper}(")
    text += "\n\n" + "\n".join(f"_{h} = {h}" for h in HELPERS) + "\n\n\n" + extra
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def by_name(result):
    return {f.name: f for f in result.functions}


def only_failing(result, name):
    """Every function but ``name`` passed; return ``name``'s report."""
    reports = by_name(result)
    assert [n for n, r in reports.items() if not r.passed] == [name], {n: r.errors for n, r in reports.items()}
    return reports[name]


@pytest.mark.parametrize("body,kind,text", [
    ("import os\n    os._exit(0)", "crash", "ended the process it ran in (exit status 0"),
    ("import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)", "crash", "killed by SIGSEGV"),
    ("raise KeyboardInterrupt", "exception", "KeyboardInterrupt"),
    ("raise GeneratorExit('bye')", "exception", "GeneratorExit: bye"),
    ("class Stop(BaseException):\n        pass\n    raise Stop('custom')", "exception", "Stop: custom"),
    ("import sys\n    sys.exit(0)", "exception", "SystemExit: 0"),
    ("return input('pad? ')", "exception", "EOFError"),
])
def test_a_function_that_exits_or_raises_anything_fails_alone(tmp_path, body, kind, text):
    # distribute_value checked after it: the restarted (or unharmed) process still answers
    r = check_impl(hostile(tmp_path, f"def zero_pad(X, pad):\n    {body}\n"), timeout=5,
                   only=["zero_pad", "distribute_value"])
    report = only_failing(r, "zero_pad")
    assert report.errors[0].kind == kind and text in report.errors[0].exception, report.errors
    assert not r.passed


@pytest.mark.parametrize("value,detail", [
    ("10 ** 400", "returned an int of about 401 digits, not an array"),
    ("'1.5'", "returned a str, not an array"),
    ("Bad()", "returned a Bad, not an array"),
])
def test_values_that_are_no_array_fail_with_what_they_are(tmp_path, value, detail):
    extra = ("class Bad:\n    def __array__(self, *args, **kwargs):\n        raise RuntimeError('no')\n\n"
             f"def conv_single_step(a_slice_prev, W, b):\n    return {value}\n")
    report = only_failing(check_impl(hostile(tmp_path, extra), timeout=5, only=["conv_single_step"]),
                          "conv_single_step")
    assert {f.detail for f in report.findings} == {detail}


def test_patching_numpy_and_cnncli_in_the_users_code_forges_nothing(tmp_path):
    extra = '''
import numpy
numpy.allclose = lambda *a, **k: True
numpy.abs = lambda x: numpy.zeros_like(x)
try:
    import cnncli.gradcheck.impl as _m
    import cnncli.gradcheck.core as _c
    _m.compare = lambda *a, **k: None
    _m.FunctionReport.passed = property(lambda self: True)
    _c.gradient_metrics = None
    print("patched")
except ImportError:
    print("cnncli not importable")


def distribute_value(dz, shape):
    return numpy.full(shape, dz)  # wrong: not divided by n_H * n_W
'''
    output = []
    r = check_impl(hostile(tmp_path, extra), timeout=5, echo=output.append)
    assert output == ["patched"]
    only_failing(r, "distribute_value")


def test_atexit_and_a_printing_thread_do_not_touch_the_verdict_or_stdout(tmp_path):
    extra = '''
import atexit
import os
import threading
import time

atexit.register(lambda: os._exit(0))


def _spam():
    while True:
        print("spam" * 100)
        time.sleep(0.001)


threading.Thread(target=_spam, daemon=True).start()


def zero_pad(X, pad):
    return X  # wrong
'''
    r = runner.invoke(app, ["gradcheck", "--impl", hostile(tmp_path, extra), "--json", "--timeout", "5"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["passed"] is False
    assert [f["name"] for f in doc["functions"] if not f["passed"]] == ["zero_pad"]
    assert doc["printed_lines"] > 0 and r.stderr == ""


def test_fork_in_a_function_answers_once_and_leaves_no_process(tmp_path):
    pids = tmp_path / "pids"
    extra = f'''
import os
import time


def distribute_value(dz, shape):
    pid = os.fork()
    if pid == 0:  # the copy returns a wrong value and lingers
        with open({str(pids)!r}, "a") as fh:
            fh.write(str(os.getpid()) + "\\n")
        time.sleep(60)
        return np.zeros(shape)
    for _ in range(500):  # until the copy has written its pid
        if os.path.exists({str(pids)!r}) and str(pid) in open({str(pids)!r}).read().split():
            break
        time.sleep(0.01)
    return np.full(shape, dz / (shape[0] * shape[1]))
'''
    r = check_impl(hostile(tmp_path, extra), timeout=5, only=["distribute_value"])
    assert r.passed, [(f.name, f.errors) for f in r.functions if not f.passed]
    assert len(pids.read_text().split()) == 3  # one copy per call, each waited for
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid)


def _alive(pid: int, wait: float = 5.0) -> bool:
    """Whether ``pid`` still runs ``wait`` seconds from now (SIGKILL lands when the process is next scheduled)."""
    end = time.monotonic() + wait
    while _running(pid):
        if time.monotonic() > end:
            return True
        time.sleep(0.05)
    return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_recursion_limit_chdir_and_module_getattr_change_nothing(tmp_path):
    extra = '''
import os
import sys

sys.setrecursionlimit(25)
os.chdir("/")


def __getattr__(name):  # would make every classic name look defined
    return lambda *args: None
'''
    r = check_impl(hostile(tmp_path, extra), timeout=5)
    assert r.passed and [f.name for f in r.functions] == list(CLASSIC)
    getattr_only = tmp_path / "getattr_only.py"
    getattr_only.write_text("def __getattr__(name):\n    return lambda *args: None\n\n\n"
                            "def zero_pad(X, pad):\n    return X\n")
    r = check_impl(getattr_only, timeout=5)
    assert [f.name for f in r.functions] == ["zero_pad"] and not r.passed


def test_an_infinite_loop_is_reported_and_the_rest_still_checked(tmp_path):
    extra = "def conv_forward(A_prev, W, b, hparameters):\n    while True:\n        pass\n"
    r = runner.invoke(app, ["gradcheck", "--impl", hostile(tmp_path, extra), "--timeout", "1", "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    fns = {f["name"]: f for f in doc["functions"]}
    assert [n for n, f in fns.items() if not f["passed"]] == ["conv_forward"]
    (error,) = fns["conv_forward"]["errors"]
    assert error["kind"] == "timeout" and error["case"] == "conv f3 s1 p0"
    assert error["exception"] == "did not return within 1 s on configuration conv f3 s1 p0 (an infinite loop?)"
    assert fns["conv_backward"]["passed"]  # checked with the classic cache after the restart
    table = runner.invoke(app, ["gradcheck", "--impl", hostile(tmp_path, extra), "--timeout", "1"])
    assert ("conv_forward did not return within 1 s on configuration conv f3 s1 p0 (an infinite loop?)"
            in table.stdout.replace("\n", " "))


def test_an_infinite_loop_at_module_level_is_bad_input(tmp_path):
    path = tmp_path / "loop.py"
    path.write_text("while True:\n    pass\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--timeout", "1"])
    assert r.exit_code == 2 and r.stdout == ""
    # where it was when the time ran out: the loop's own lines (1: while, 2: its body)
    assert r.stderr in (f"cnncli: error: {path}: loading took over 1 s, still at line {n} (a loop at module level?)\n"
                        for n in (1, 2))
    notebook = tmp_path / "loop.ipynb"
    cells = [{"cell_type": "code", "source": "import numpy as np\n"}, {"cell_type": "markdown", "source": "x"},
             {"cell_type": "code", "source": "class Slow:\n    n = 0\n    while True:\n        n += 1\n"}]
    notebook.write_text(json.dumps({"nbformat": 4, "cells": cells}))
    r = runner.invoke(app, ["gradcheck", "--impl", str(notebook), "--timeout", "1"])
    assert r.stderr in (f"cnncli: error: {notebook}: loading took over 1 s, still at cell 3, line {n} (a loop at "
                        "module level?)\n" for n in (3, 4))
    deaf = tmp_path / "deaf.py"  # the user's code took SIGUSR1 for itself: the line is not known, the rest holds
    deaf.write_text("import signal\nsignal.signal(signal.SIGUSR1, signal.SIG_IGN)\nwhile True:\n    pass\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(deaf), "--timeout", "1"])
    assert r.stderr == f"cnncli: error: {deaf}: loading took over 1 s (a loop at module level?)\n"


def test_memory_is_capped(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS is enforced on Linux")
    extra = "def zero_pad(X, pad):\n    return np.ones((1 << 40,), dtype=np.uint8)\n"  # 1 TiB
    report = only_failing(check_impl(hostile(tmp_path, extra), timeout=5, only=["zero_pad"]),
                          "zero_pad")
    assert report.errors[0].exception.startswith(("MemoryError", "numpy.core._exceptions._ArrayMemoryError",
                                                  "_ArrayMemoryError"))


def test_prints_are_bounded_in_bytes_not_only_lines(tmp_path):
    extra = "def zero_pad(X, pad):\n    print('x' * 5_000_000, end='')\n    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))\n"
    r = runner.invoke(app, ["gradcheck", "--impl", hostile(tmp_path, extra), "--timeout", "5", "--only", "zero_pad"])
    assert r.exit_code == 0
    assert len(r.stderr) < 70_000  # three 5 MB lines, each cut short
    assert r.stderr.startswith("[your code] " + "x" * 1000 + " [...]\n")


def test_ctrl_c_exits_130_and_leaves_no_child(tmp_path):
    pid_file = tmp_path / "pid"
    extra = (f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n\n\n"
             "def zero_pad(X, pad):\n    while True:\n        pass\n")
    proc = subprocess.Popen([sys.executable, "-m", "cnncli", "gradcheck", "--impl", hostile(tmp_path, extra)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    time.sleep(0.3)  # inside the loop by now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.endswith("cnncli: error: interrupted\n"), err
    assert not _alive(int(pid_file.read_text()))


def test_closing_the_channel_and_looping_is_a_crash_not_a_hang(tmp_path):
    extra = ("import os\nimport sys\n\n\ndef zero_pad(X, pad):\n    os.close(int(sys.argv[2]))\n"
             "    while True:\n        pass\n")
    report = only_failing(check_impl(hostile(tmp_path, extra), timeout=5, only=["zero_pad", "distribute_value"]),
                          "zero_pad")
    assert report.errors[0].kind == "crash"
    assert report.errors[0].exception == "closed its channel to the checker on configuration pad 0"


def test_closing_sys_stdout_does_not_silence_later_prints(tmp_path):
    extra = ("import sys\n\n\ndef distribute_value(dz, shape):\n    print('dz', dz)\n    sys.stdout.close()\n"
             "    return np.full(shape, dz / (shape[0] * shape[1]))\n")
    lines = []
    r = check_impl(hostile(tmp_path, extra), timeout=5, only=["distribute_value"], echo=lines.append)
    assert r.passed and lines == ["dz 2.0", "dz -1.5", "dz 0.7"]


def test_a_reply_that_is_waiting_is_read_even_after_the_deadline():
    # cnncli stopped (Ctrl-Z) while the child answered in time: after fg the reply is there, not a timeout
    from cnncli.gradcheck.sandbox import _ready, _Timeout

    r, w = os.pipe()
    try:
        with pytest.raises(_Timeout):
            _ready(r, time.monotonic() - 1)  # nothing to read and no time left
        os.write(w, b"x")
        _ready(r, time.monotonic() - 1)
        _ready(r, time.monotonic() + 1e12)  # a deadline select() alone could not take (OverflowError)
        _ready(w, time.monotonic() - 1, write=True)
    finally:
        os.close(r)
        os.close(w)


def test_a_huge_timeout_is_as_good_as_none():
    r = runner.invoke(app, ["gradcheck", "--impl", str(ROOT / "tests" / "impls" / "correct.py"), "--timeout", "1e12",
                            "--only", "zero_pad", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["passed"] is True


def test_a_value_that_could_not_be_sent_back_is_not_blamed_on_the_call():
    # an 800 MB return: the function ran to its end; framing the reply failed in the child
    from cnncli.gradcheck.sandbox import Sandbox
    from cnncli.gradcheck.userfile import UserCallFailed

    box = Sandbox.__new__(Sandbox)
    header = {"ok": False, "type": "MemoryError", "message": "(no message)", "line": None, "stage": "result"}
    with pytest.raises(UserCallFailed) as err:
        box._raised("zero_pad", "pad 0", header)
    info = err.value.info
    assert (info.kind, info.message) == ("result", "zero_pad returned a value that could not be sent back "
                                                   "(MemoryError: (no message))")
    with pytest.raises(UserCallFailed) as err:  # raised in the user's own code: their line, as before
        box._raised("zero_pad", "pad 0", dict(header, stage=None, type="ValueError", message="bad", line=3))
    assert err.value.info.kind == "exception" and err.value.info.line == 3
