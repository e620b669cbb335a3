"""Start-up (issue 11): light imports, the option list agreeing with the resolver's, Ctrl-C during imports."""

import os
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


def _in_interpreter_startup(err: str) -> bool:
    """A traceback none of whose frames is cnncli's: Python's own start-up (site, runpy), before our first line."""
    return "Traceback" in err and "/cnncli/" not in err


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
