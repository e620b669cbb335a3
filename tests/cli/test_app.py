"""The app shell: version, help, usage errors as one line, exit codes, python -m."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import cnncli
from cnncli.cli import app

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"cnncli {cnncli.__version__}\n"


def test_no_arguments_prints_help_and_succeeds():
    result = runner.invoke(app, [])
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_unknown_option_is_one_line_exit_2():
    result = runner.invoke(app, ["--bogus"])
    assert result.exit_code == 2
    assert result.stderr == "cnncli: error: No such option: --bogus (see 'cnncli --help')\n"


def test_unknown_command_is_one_line_exit_2():
    result = runner.invoke(app, ["frobnicate"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "frobnicate" in result.stderr


def test_python_dash_m_runs_the_app():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "cnncli", "--version"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    assert proc.stdout.startswith("cnncli ")


def test_debug_does_not_leak_into_the_next_run():
    from cnncli.cli.app import state

    runner.invoke(app, ["--debug", "--version"])
    runner.invoke(app, ["--version"])
    assert state.debug is False


def test_closed_pipe_is_not_a_failure():
    """`cnncli ... | head -1`: the reader leaving early is exit 0, not 1 (1 means a failed check)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    # --help and --version are printed by Typer's own code (rich's console, click's echo), which exited 1 (review)
    for args in (["shape", "--f", "3", "--stride", "2"], ["gradcheck"], ["--help"], ["forward", "--help"],
                 ["gradcheck", "-h"], ["--version"]):
        proc = subprocess.Popen([sys.executable, "-m", "cnncli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        proc.stdout.close()  # like `| head -0`: every write of the app now meets a closed pipe
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, (args, err)
        assert err == b"" if args[-1].startswith("-") else (b"Traceback" not in err and b"Exception ignored" not in err)


def test_a_closed_pipe_keeps_a_failed_checks_exit_1(tmp_path):
    """`cnncli gradcheck ... | head`: a failed check stays exit 1 when the reader leaves, as with `--json | head`
    (the JSON fits the pipe in one write): it was 0 once the table met the closed pipe, a FAIL passing
    `set -o pipefail` CI as a success."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    bad = tmp_path / "bad.py"
    bad.write_text("def zero_pad(X, pad):\n    return X\n")
    for args, code in ((["gradcheck", "--impl", str(bad), "--only", "zero_pad"], 1),
                       (["gradcheck", "--impl", str(bad), "--only", "zero_pad", "--json"], 1),
                       (["shape", "--input", "32", "--f", "3", "--target", "1000"], 1),
                       (["shape", "--input", "32", "--f", "3", "--target", "16"], 0)):
        proc = subprocess.Popen([sys.executable, "-m", "cnncli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == code, (args, err)
        assert b"Traceback" not in err and b"Exception ignored" not in err


def test_absurd_sizes_are_bad_input_not_a_crash(tmp_path):
    import numpy as np

    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 2)))
    np.save(tmp_path / "W.npy", np.ones((3, 3, 2, 2)))
    result = runner.invoke(app, ["forward", str(tmp_path / "A.npy"), "--weights", str(tmp_path / "W.npy"),
                                 "--pad", "10000000", "-o", str(tmp_path / "Z.npy")])
    assert result.exit_code == 2
    # Refused from the geometry before anything is allocated (issue 12): 4 + 2*10^7 - 3 + 1 rows and columns.
    assert result.stderr.startswith("cnncli: error: output 1x20000002x20000002x2 needs ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "Z.npy").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_one_line_exit_2_not_an_internal_error():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "cnncli", "shape", "--f", "3", "--stride", "2"],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr == "cnncli: error: cannot complete: No space left on device (writing the output)\n"


def test_a_run_gives_back_the_unraisable_hook_and_an_outer_run_s_interrupt():
    # the run's swallowed-Ctrl-C flag is its own: left set after it, a later check outside any run raised a
    # KeyboardInterrupt; a run inside another (these tests') cleared the outer one's
    from cnncli.cli.app import state

    hook = sys.unraisablehook
    state.interrupted = True  # an outer run's, interrupted
    try:
        assert runner.invoke(app, ["--version"]).exit_code == 0  # this run was not
        assert state.interrupted is True and sys.unraisablehook is hook
    finally:
        state.interrupted = False
