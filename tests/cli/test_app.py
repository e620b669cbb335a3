"""The app shell: version, help, usage errors as one line, exit codes, python -m."""

import os
import subprocess
import sys

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
