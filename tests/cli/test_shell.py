"""Shell conventions (issue 11 part 4): usage lines, flags, suggestions, help examples, completion."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.command import suggest_options

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["shape", "forward", "backward", "gradcheck"]


def _help(*args):
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    return result.stdout


@pytest.mark.parametrize("command, usage", [
    ("forward", "Usage: cnncli forward [OPTIONS] SOURCE"),
    ("backward", "Usage: cnncli backward [OPTIONS] SOURCE"),
    ("gradcheck", "Usage: cnncli gradcheck [OPTIONS] [SOURCE]"),
    ("shape", "Usage: cnncli shape [OPTIONS] [LAYER_SPEC...]"),
])
def test_usage_writes_arguments_as_the_shell_does(command, usage):
    text = _help(command)
    assert usage in text
    assert "{" not in text.split("\n\n")[0] + text.splitlines()[1]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_flags_show_no_value_and_nothing_shows_a_python_type(command):
    text = _help(*([command] if command else []))
    for python_type in ("<bool>", "<str>", "<int>", "<float>", "list[str]"):
        assert python_type not in text
    json_lines = [line for line in text.splitlines() if line.startswith("│ --json") or line.startswith("│ --debug")]
    assert json_lines
    for line in json_lines:  # the flag is followed by its help text, not by a value placeholder
        after = line.split("--json" if "--json" in line else "--debug", 1)[1].strip(" │")
        assert after.split()[0][0].isupper()


@pytest.mark.parametrize("command", ["forward", "backward", "gradcheck", "shape"])
def test_help_ends_with_examples_that_fit_80_columns(command):
    text = _help(command)
    examples = text.split("Examples:", 1)[1]
    lines = [line.strip() for line in examples.splitlines() if line.strip().startswith("cnncli ")]
    assert len(lines) >= 3
    for line in lines:  # each example is one whole command line
        assert shlex.split(line)[0:2] == ["cnncli", command]
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("argv, flag", [
    (["shape", "--input", "28", "--f", "3", "--json", "true"], "--json"),
    (["shape", "--input", "28", "--f", "3", "--ceil-mode", "yes"], "--ceil-mode"),
    (["forward", "x.npy", "--json", "false"], "--json"),
    (["gradcheck", "--json", "1"], "--json"),
])
def test_a_flag_given_a_value_says_it_takes_none(argv, flag):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"cnncli: error: {flag} takes no value: for '{argv[-1]}' ")
    assert result.stderr.count("\n") == 1


def test_a_flag_before_a_file_named_like_a_word_is_not_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("true").write_text("not an array")
    result = runner.invoke(app, ["forward", "--json", "true", "--f", "2"])
    assert result.exit_code == 2
    assert "takes no value" not in result.stderr  # `true` is the SOURCE here: its own error is reported


@pytest.mark.parametrize("command, typed, meant", [
    ("shape", "-f", "--f"),
    ("shape", "--kernel-size", "--f"),
    ("forward", "--kernel-size", "--f"),
    ("shape", "--padding", "--pad"),
    ("shape", "--strid", "--stride"),
    ("shape", "-s", "--stride"),
    ("shape", "--out-channels", "--filters"),
    ("gradcheck", "--ceil_mode", "--ceil-mode"),
    ("gradcheck", "--sample", "--samples"),
])
def test_unknown_options_suggest_the_nearest(command, typed, meant):
    result = runner.invoke(app, [command, typed, "3"])
    assert result.exit_code == 2
    line = f"cnncli: error: No such option: {typed}; did you mean {meant}?"
    hinted = f"{line} (see 'cnncli {command} --help')"
    assert result.stderr == (hinted if len(hinted) <= 80 else line) + "\n"  # the pointer only where it fits


def test_suggestions_only_name_options_that_exist():
    assert suggest_options("--kernel-size", ["--stride", "--pad"]) == []
    assert suggest_options("--bogus", ["--f", "--stride", "--pad", "--json"]) == []
    assert suggest_options("--filter", ["--filters", "--f"]) == ["--filters"]


def test_pytorch_names_are_not_aliases():
    result = runner.invoke(app, ["shape", "--input", "28", "--kernel-size", "3"])
    assert result.exit_code == 2


def test_values_are_converted_without_typer_adapters():
    result = runner.invoke(app, ["shape", "--input", "28", "--f", "3", "--filters", "x"])
    assert result.exit_code == 2
    assert result.stderr == "cnncli: error: Invalid value for '--filters': 'x' is not an integer\n"
    result = runner.invoke(app, ["gradcheck", "--tol", "1e-x"])
    assert "'1e-x' is not a number" in result.stderr
    result = runner.invoke(app, ["shape", "--input", "28", "--f", "3", "--filters", " 8", "--json"])
    assert result.exit_code == 0 and '"filters": 8' in result.stdout


# ----------------------------------------------------------------- completion

def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
    return env


def _run(*argv, **env):
    return subprocess.run([sys.executable, "-m", "cnncli", *argv], env=_env(**env), cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o default -F _cnncli_completion cnncli"),
    ("zsh", "#compdef cnncli"),
    ("fish", "complete --command cnncli"),
])
def test_show_completion_prints_the_script(shell, marker):
    done = _run("--show-completion", shell, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert "_CNNCLI_COMPLETE=complete_" + shell in done.stdout


def test_install_completion_writes_the_script_for_bash(tmp_path):
    done = _run("--install-completion", "bash", HOME=str(tmp_path), _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "cnncli.sh"
    assert "_CNNCLI_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


def _complete_bash(line: str):
    """What bash's completion function gets back for ``line`` (Typer's protocol, in this process)."""
    words = line.split(" ")  # a trailing space gives the empty word being completed, as bash has it
    result = runner.invoke(app, [], prog_name="cnncli",
                           env={"_CNNCLI_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)})
    assert result.exit_code == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("line, expected", [
    ("cnncli ", ["shape", "forward", "backward", "gradcheck"]),
    ("cnncli gr", ["gradcheck"]),
    ("cnncli shape --st", ["--stride"]),
    ("cnncli forward x.npy --layout ", ["nhwc", "nchw"]),
    ("cnncli shape --mode a", ["average", "avg"]),
    ("cnncli gradcheck --method f", ["full", "fast"]),
    ("cnncli gradcheck --method ", ["auto", "full", "fast", "sample"]),
    ("cnncli forward x.npy --pad s", ["same"]),
])
def test_completion_offers_commands_options_and_choices(line, expected):
    assert _complete_bash(line) == expected


def test_completion_leaves_paths_to_the_shell():
    # No candidates: bash (-o default), zsh (_files) and fish then complete file names themselves.
    assert _complete_bash("cnncli forward exam") == []
    assert _complete_bash("cnncli backward x.npy --grad ex") == []


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_cuts_no_flag_name_or_word(command):
    text = _help(command)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_hidden_off_switch_of_count_include_pad_still_works_and_not_with_the_on_switch(tmp_path):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "A.npy", np.ones((1, 2, 2, 1)))
    base = ["forward", str(tmp_path / "A.npy"), "--f", "2", "--stride", "1", "--mode", "average", "--pad", "1"]
    for flag, corner in (([], 0.25), (["--count-include-pad"], 0.25), (["--no-count-include-pad"], 1.0)):
        out = tmp_path / f"P{len(flag)}{corner}.npy"
        r = runner.invoke(app, base + flag + ["-o", str(out)])
        assert r.exit_code == 0, r.output
        assert np.load(out)[0, 0, 0, 0] == corner  # 1 pixel of 4 (padded zeros counted) or of 1
    r = runner.invoke(app, base + ["--count-include-pad", "--no-count-include-pad"])
    assert r.exit_code == 2 and r.stderr == "cnncli: error: give --count-include-pad or --no-count-include-pad, not both\n"
