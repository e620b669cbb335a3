"""`cnncli gradcheck --impl` user experience: method notes, the user's prints, signatures, NaN, folders."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.gradcheck import check_impl
from cnncli.gradcheck.userfile import ECHO_LIMIT

runner = CliRunner()
IMPLS = Path(__file__).resolve().parents[2] / "tests" / "impls"

PRINTS = '''import numpy as np
print("module loaded")

def zero_pad(X, pad):
    print("padding", X.shape, pad)
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
'''


@pytest.fixture
def user_file(tmp_path):
    def write(text, name="student.py"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def test_method_fast_runs_sample_and_says_so(user_file):
    path = user_file(PRINTS)
    r = runner.invoke(app, ["gradcheck", "--impl", path, "--method", "fast", "--json"])
    assert r.exit_code == 0, r.stdout
    doc = json.loads(r.stdout)
    assert doc["method"] == "sample"
    assert ("--method fast does not apply to your functions (they are called once per perturbed element); "
            "ran sample instead: 12 elements per tensor") in doc["notes"]
    table = runner.invoke(app, ["gradcheck", "--impl", path, "--method", "fast"])
    assert "note: --method fast does not apply to your functions" in table.stdout
    plain = json.loads(runner.invoke(app, ["gradcheck", "--impl", path, "--json"]).stdout)
    assert not any("--method" in n for n in plain["notes"])


def test_user_prints_go_to_stderr_prefixed_without_json(user_file):
    r = runner.invoke(app, ["gradcheck", "--impl", user_file(PRINTS)])
    assert r.exit_code == 0
    expected = ["[your code] module loaded"] + [f"[your code] padding (2, 3, 4, 2) {p}" for p in (0, 1, 2)]
    assert r.stderr.splitlines() == expected
    assert "[your code]" not in r.stdout and "printed" not in r.stdout


def test_user_prints_are_counted_and_hidden_with_json(user_file):
    r = runner.invoke(app, ["gradcheck", "--impl", user_file(PRINTS), "--json"])
    assert r.exit_code == 0 and r.stderr == ""
    doc = json.loads(r.stdout)  # stdout is the JSON document only
    assert doc["printed_lines"] == 4
    assert doc["notes"] == ["your code printed 4 line(s) on stdout, hidden so that stdout holds only the JSON "
                            "document; run without --json to see them on stderr"]


def test_a_print_in_a_loop_is_cut_short_with_a_note(user_file):
    loop = PRINTS.replace('    print("padding", X.shape, pad)', '    for i in range(100):\n        print(i)')
    r = runner.invoke(app, ["gradcheck", "--impl", user_file(loop)])
    assert len(r.stderr.splitlines()) == ECHO_LIMIT
    assert f"your code printed 301 lines; the first {ECHO_LIMIT} are shown on stderr" in r.stdout


def test_a_wrong_signature_is_reported_before_entering_with_the_expected_one(user_file):
    r = runner.invoke(app, ["gradcheck", "--impl", user_file("def zero_pad(X):\n    return X\n")])
    assert r.exit_code == 1
    assert ("zero_pad raised TypeError: zero_pad() takes 1 positional argument but 2 were given before entering "
            "your function (configuration: pad 0)") in r.stdout
    assert "outside your file" not in r.stdout
    doc = json.loads(runner.invoke(app, ["gradcheck", "--impl", user_file("def zero_pad(X):\n    return X\n"),
                                         "--json"]).stdout)
    assert doc["functions"][0]["diagnosis"] == ["expected zero_pad(X, pad) (the classic exercise's signature)"]


def test_an_error_inside_the_function_keeps_its_line_and_no_signature_hint(user_file):
    r = check_impl(user_file("def zero_pad(X, pad):\n    raise TypeError('mine')\n"))
    (fn,) = r.functions
    assert fn.errors[0].where == "at line 2: `raise TypeError('mine')`" and not any("expected" in d for d in fn.diagnosis)


def test_nan_is_shown_as_nan_and_named(user_file):
    r = runner.invoke(app, ["gradcheck", "--impl",
                            user_file("import numpy as np\n\ndef conv_single_step(a_slice_prev, W, b):\n"
                                      "    return np.nan\n")])
    assert r.exit_code == 1 and "returned NaN" in r.stdout and "inf" not in r.stdout
    rows = [line for line in r.stdout.splitlines() if "slice (3, 3, 4)" in line]
    assert rows and "nan" in rows[0]
    half = check_impl(user_file("import numpy as np\n\ndef distribute_value(dz, shape):\n"
                                "    a = np.full(shape, dz / (shape[0] * shape[1]))\n    a[0, 0] = np.nan\n"
                                "    return a\n", "half.py"))
    details = {f.detail for f in half.functions[0].findings}
    assert details == {"returned NaN in 1 of 4 elements", "returned NaN in 1 of 9 elements",
                       "returned NaN in 1 of 6 elements"}


def test_a_folder_is_named_as_a_folder(tmp_path):
    (tmp_path / "my_conv.py").write_text("")
    r = runner.invoke(app, ["gradcheck", "--impl", str(tmp_path)])
    assert r.exit_code == 2 and r.stdout == ""
    example = tmp_path / "my_conv.py"
    assert r.stderr == f"cnncli: error: --impl {str(tmp_path)!r} is a folder; give a .py file, e.g. {example}\n"


@pytest.mark.parametrize("flags,message", [
    (["--pad", "3"], "--impl sets the hyperparameters itself: drop --pad"),
    (["--stride", "2", "--f", "3"], "--impl sets the hyperparameters itself: drop --f"),
    (["--weights", "W.npy"], "--impl sets the arrays itself: drop --weights"),
])
def test_layer_options_with_impl_say_the_battery_sets_them(flags, message):
    r = runner.invoke(app, ["gradcheck", "--impl", str(IMPLS / "correct.py"), *flags])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"cnncli: error: {message}\n"


def test_a_relative_path_keeps_lines_and_the_missing_module_note(tmp_path, monkeypatch):
    # The README's usage is a relative path (`--impl my_conv.py`); frames name the file by its absolute path
    monkeypatch.chdir(tmp_path)
    Path("inside.py").write_text("def zero_pad(X, pad):\n    raise TypeError('mine')\n")
    (fn,) = check_impl("inside.py").functions
    assert fn.errors[0].where == "at line 2: `raise TypeError('mine')`"
    assert not any("expected" in d for d in fn.diagnosis)
    Path("at_import.py").write_text("x = 1\ny = undefined_name\n")
    r = runner.invoke(app, ["gradcheck", "--impl", "at_import.py"])
    assert r.exit_code == 2
    assert r.stderr.startswith("cnncli: error: at_import.py:2: importing the file raised NameError")
    Path("helpers.py").write_text("from public_tests_not_here import *\nimport numpy as np\n\n"
                                  "def zero_pad(X, pad):\n"
                                  "    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))\n")
    r = runner.invoke(app, ["gradcheck", "--impl", "helpers.py", "--json"])
    assert r.exit_code == 0, r.stderr
    assert any("public_tests_not_here is not installed here" in n for n in json.loads(r.stdout)["notes"])


def test_a_nul_byte_is_a_syntax_error_without_a_line(tmp_path):
    path = tmp_path / "nul.py"
    path.write_bytes(b"def zero_pad(X, pad):\n    return X\x00\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(path)])
    assert r.exit_code == 2 and r.stdout == ""
    # Python 3.11 says SyntaxError without a line; 3.10 a ValueError ("cannot be parsed")
    assert r.stderr in (f"cnncli: error: {path}: syntax error: source code string cannot contain null bytes\n",
                        f"cnncli: error: {path}: cannot be parsed (ValueError)\n")
