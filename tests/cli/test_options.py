"""The layer options reach forward, backward and gradcheck alike (one shared decorator);
gradcheck refuses --dtype (it always checks in float64)."""

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()

# SPEC "Commands": the options of forward; backward and gradcheck add --grad.
LAYER_FLAGS = {"--layer", "--weights", "--bias", "--f", "--stride", "--pad", "--dilation", "--groups", "--mode",
               "--ceil-mode", "--count-include-pad", "--layout"}


def _flags(name):
    command = typer.main.get_command(app).commands[name]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_every_layer_command_takes_the_same_layer_options():
    assert LAYER_FLAGS | {"--dtype"} <= _flags("forward") and "--grad" not in _flags("forward")
    assert LAYER_FLAGS | {"--dtype", "--grad"} <= _flags("backward")
    assert LAYER_FLAGS | {"--grad"} <= _flags("gradcheck")


REFUSAL = "cnncli: error: gradcheck computes in float64 only: drop --dtype float32\n"


def test_gradcheck_refuses_dtype_in_one_line(tmp_path):
    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1), dtype=np.float32))
    for args in (["gradcheck", str(tmp_path / "A.npy"), "--f", "2", "--dtype", "float32"],
                 ["gradcheck", "--dtype", "float32"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2
        assert res.stderr == REFUSAL and res.stdout == ""


def test_gradcheck_help_does_not_offer_dtype_and_its_notes_do_not_suggest_it(tmp_path):
    assert "--dtype" not in runner.invoke(app, ["gradcheck", "--help"]).stdout
    assert "--dtype" in runner.invoke(app, ["forward", "--help"]).stdout
    np.save(tmp_path / "img.npy", np.arange(2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.uint8))
    res = runner.invoke(app, ["gradcheck", str(tmp_path / "img.npy"), "--f", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert "A_prev is uint8: computed in float64" in notes and not any("--dtype" in n for n in notes)


def test_gradcheck_accepts_dtype_float64_which_it_always_uses(tmp_path):
    np.save(tmp_path / "A.npy", np.random.default_rng(0).standard_normal((1, 4, 4, 1)))
    result = runner.invoke(app, ["gradcheck", str(tmp_path / "A.npy"), "--f", "2", "--dtype", "float64", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True


@pytest.mark.parametrize("flag, value", [
    ("--eps", "\uff11e-5"),   # full-width 1: float() reads it as 1e-5
    ("--tol", "1e-\u0667"),   # Arabic-Indic 7
    ("--seed", "\uff13"),     # an int option converted by the same code
    ("--samples", "\u0969"),  # Devanagari 3
])
def test_numbers_in_other_scripts_digits_are_refused_in_one_line(flag, value):
    r = CliRunner().invoke(app, ["gradcheck", flag, value], env={"COLUMNS": "80"})
    assert r.exit_code == 2
    assert f"'{flag}': {value!r}: use the digits 0-9" in r.stderr  # the whole words pass 80 columns
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("flag, value, expected", [("--eps", " 1e-5 ", 1e-5), ("--tol", "1E-3", 1e-3)])
def test_ascii_numbers_with_spaces_or_capitals_are_still_read(flag, value, expected):
    r = CliRunner().invoke(app, ["gradcheck", "--samples", "2", flag, value, "--json"])
    assert r.exit_code == 0, r.stderr
    assert {case[flag.lstrip("-")] for case in json.loads(r.stdout)["cases"]} == {expected}


@pytest.mark.parametrize("args, words", [
    (["--eps", "1e-400"], "'--eps': '1e-400' reads as 0 in float64"),
    (["--tol", "-2.5e-999"], "'--tol': '-2.5e-999' reads as 0 in float64"),
    (["--impl", "x.py", "--timeout", "1e-400"],
     "'--timeout': '1e-400' reads as 0 in float64"),
    (["--eps", "1e400"], "'--eps': '1e400' is beyond float64"),
    (["--impl", "x.py", "--timeout", "2E+309"], "'--timeout': '2E+309' is beyond float64"),
    (["--eps", "0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
               "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
               "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
               "000000000000000000000000000000000001"], "reads as 0 in float64"),
])
def test_a_number_float64_cannot_hold_is_refused_as_written(args, words):
    # NOTE: float() would read 1e-400 as 0.0 and 1e400 as inf, and the refusal would then name a value
    # the user never wrote ("--timeout 0: expected a positive number")
    r = CliRunner().invoke(app, ["gradcheck", *args], env={"COLUMNS": "80"})
    assert r.exit_code == 2 and r.stdout == ""
    assert words in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert len(r.stderr.rstrip("\n")) <= 80 or len(args[-1]) > 40  # a long value is named whole


@pytest.mark.parametrize("value", ["0", "0.0", "-0e-400", "0e5"])
def test_a_zero_as_written_is_still_refused_by_its_range_not_as_underflow(value):
    r = CliRunner().invoke(app, ["gradcheck", "--eps", value])
    assert r.exit_code == 2 and "eps must be a positive number" in r.stderr and "reads as 0" not in r.stderr


@pytest.mark.parametrize("value", ["inf", "-Infinity", "nan"])
def test_inf_and_nan_as_written_are_refused_by_their_range(value):
    r = CliRunner().invoke(app, ["gradcheck", "--tol", value])
    assert r.exit_code == 2 and "tol must be a positive number" in r.stderr and "beyond float64" not in r.stderr
