"""Start-up (issue 11): light imports, the option list agreeing with the resolver's, Ctrl-C during imports."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cnncli
from cnncli.cli import options

REPO = Path(__file__).resolve().parents[2]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="80")


def _modules_after(argv):
    """The modules a real ``python -m cnncli ARGV`` process has imported when it exits."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.__stderr__.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n'))\n"
            "sys.argv = ['cnncli'] + sys.argv[1:]\n"
            "from cnncli.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], env=_env(), cwd=REPO, capture_output=True, text=True)
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    return done.returncode, set(line.split()[1:])


def test_option_keys_agree_with_the_resolver():
    from cnncli.passes.call import OPTION_KEYS

    assert options.OPTION_KEYS == OPTION_KEYS


def test_lazy_package_exposes_the_api():
    from cnncli import api

    assert cnncli.__all__ == api.__all__
    for name in cnncli.__all__:  # the one list names only functions api defines
        assert callable(api.__dict__[name]) and getattr(cnncli, name) is api.__dict__[name]
    assert cnncli.conv_forward is api.conv_forward
    with pytest.raises(AttributeError):
        cnncli.no_such_function  # noqa: B018


@pytest.mark.parametrize("argv, heavy", [
    (["--version"], {"numpy", "rich", "h5py", "cnncli.engine.conv"}),
    (["--help"], {"numpy", "h5py", "cnncli.engine.conv"}),
    (["shape", "--f", "3", "--stride", "2"], {"numpy", "h5py", "cnncli.engine.conv", "cnncli.passes.call"}),
    (["shape", "--input", "64x64x3", "conv:f=4,p=same,c=8", "pool:f=8,s=8"], {"numpy", "h5py"}),
])
def test_a_command_imports_only_what_it_needs(argv, heavy):
    code, modules = _modules_after(argv)
    assert code == 0
    assert not heavy & modules


#: The lines that run before cnncli's Ctrl-C handler can be in place: the import of the module that installs it
#: and the call that does (an interrupt raised on that line came before the handler: after it, the handler runs).
_BEFORE_THE_GUARD = ("from . import _startup", "from .. import _startup", "_startup.guard()")


def _in_interpreter_startup(err: str) -> bool:
    """A traceback from before the handler: Python's own start-up (site, runpy), or the imports that bring the
    handler in (the package's ``__init__``, ``_startup`` itself, the import line of :data:`_BEFORE_THE_GUARD`)."""
    if "Traceback" not in err:
        return False
    frames = re.findall(r'File "([^"]*)", line \d+, in [^\n]*\n(?: +([^\n]*)\n)?', err)
    ours = [(path, code) for path, code in frames if "/cnncli/" in path]
    if not ours:
        return True
    path, code = ours[-1]  # the innermost of ours: where the interrupt landed in cnncli
    return path.endswith(("/cnncli/__init__.py", "/cnncli/_startup.py")) or code.strip() in _BEFORE_THE_GUARD


@pytest.mark.parametrize("trace, expected", [
    ('  File "/usr/lib/python3.11/runpy.py", line 198, in _run_module_as_main\n    return _run_code(code)\n', True),
    ('  File "<frozen runpy>", line 198, in _run_module_as_main\n'
     '  File "/r/cnncli/__main__.py", line 3, in <module>\n    from . import _startup\n', True),
    ('  File "/r/cnncli/__init__.py", line 12, in <module>\n    __all__ = [\n', True),
    ('  File "/r/cnncli/cli/__init__.py", line 8, in <module>\n    from .. import _startup\n', True),
    # once the guard is in place, a traceback is a failure to report, wherever it lands
    ('  File "/r/cnncli/__main__.py", line 7, in <module>\n    from .cli import main  # noqa: E402\n'
     '  File "/r/cnncli/cli/app.py", line 40, in <module>\n    import typer\n', False),
    ('  File "/r/cnncli/__main__.py", line 5, in <module>\n    _startup.guard()\n', True),
    ('  File "/r/cnncli/cli/__init__.py", line 14, in main\n    from .app import run\n', False),
])
def test_the_start_up_window_is_told_from_a_real_traceback(trace, expected):
    assert _in_interpreter_startup("Traceback (most recent call last):\n" + trace + "KeyboardInterrupt\n") is expected
    assert not _in_interpreter_startup("cnncli: error: interrupted\n")


# Delays from the first milliseconds (interpreter start-up) through the imports (numpy, h5py,
# the engine, rich) to the start of the work.
# The two ways in: `python -m cnncli` and what the console script `cnncli` runs.
ENTRIES = {"-m": ["-m", "cnncli"],
           "script": ["-c", "import sys; sys.argv[0] = 'cnncli'; from cnncli.cli import main; sys.exit(main())"]}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("delay", [0.0, 0.03, 0.07, 0.12, 0.2, 0.4])
def test_ctrl_c_during_startup_exits_130_in_one_line(delay, entry, tmp_path):
    import numpy as np

    source = tmp_path / "a.npy"  # a check of every element of this takes seconds: it is never finished
    np.save(source, np.random.default_rng(0).standard_normal((16, 32, 32, 8)))
    proc = subprocess.Popen([sys.executable, *ENTRIES[entry], "gradcheck", str(source), "--f", "2", "--mode",
                             "average", "--method", "full"],
                            env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert out == "", (proc.returncode, err)  # seen once under load, not reproduced: say what happened
    if _in_interpreter_startup(err):
        # NOTE: the interpreter's first ~15 ms (site, runpy) run before any line of cnncli can install
        # a handler; Python's default behaviour there is beyond a program's reach (README says so).
        assert delay < 0.1, err
        return
    # Before Python installs its own handler (its first milliseconds) the default action applies:
    # killed by SIGINT, which a shell reports as 130, with nothing printed.
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err)
    assert err == ("cnncli: error: interrupted\n" if proc.returncode == 130 else "")


# A Ctrl-C lands wherever the interpreter is: in a finalizer or a weakref callback (an import's module lock, seen
# under load at delay 0.4 above; h5py's objects) its KeyboardInterrupt cannot propagate, and Python printed
# "Exception ignored in ..." and went on: the check finished and printed its table, exit 0. Here the interrupt is
# raised in such a finalizer on purpose, at the start of the work.
_SWALLOWED = (
    "import sys\n"
    "import {module} as m\n"
    "real = m.{name}\n"
    "class Finalized:\n"
    "    def __del__(self):\n"
    "        raise KeyboardInterrupt  # a Ctrl-C landing in a finalizer\n"
    "def landed(*a, **k):\n"
    "    Finalized()  # collected at once: Python calls sys.unraisablehook and goes on\n"
    "    return real(*a, **k)\n"
    "m.{name} = landed\n"
    "sys.argv = ['cnncli'] + sys.argv[1:]\n"
    "from cnncli.cli import main\n"
    "sys.exit(main())\n")


@pytest.mark.parametrize("command", ["gradcheck", "forward", "shape"])
def test_a_ctrl_c_python_swallows_still_interrupts_the_run(command, tmp_path):
    import numpy as np

    source = tmp_path / "a.npy"
    np.save(source, np.random.default_rng(0).standard_normal((2, 6, 6, 2)))
    out = tmp_path / "out.npy"
    module, name, argv = {
        "gradcheck": ("cnncli.gradcheck.layercall", "check_layer_call",
                      ["gradcheck", str(source), "--f", "2", "--mode", "average"]),
        "forward": ("cnncli.passes.call", "resolve_layer", ["forward", str(source), "--f", "2", "-o", str(out)]),
        "shape": ("cnncli.shape.stack", "evaluate_stack", ["shape", "--f", "3", "--stride", "2"]),
    }[command]
    code = _SWALLOWED.format(module=module, name=name)
    done = subprocess.run([sys.executable, "-c", code, *argv], env=_env(), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr.endswith("cnncli: error: interrupted\n") and "Exception ignored" not in done.stderr, done.stderr
    if command != "shape":  # shape's answer is printed at once: the exit still says it was interrupted
        assert done.stdout == "" and not out.exists() and not list(tmp_path.glob(".out*"))
