"""``shape --from`` on forged or extreme printed models: repeat counts checked against their range,
the model's size and nesting bounded before anything is built, refused at once with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state
from cnncli.errors import InputError
from cnncli.shape.torchprint import MAX_DEPTH, MAX_MODULES, parse_printed_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


def _model(*lines: str) -> str:
    return "Sequential(\n" + "".join(f"  {line}\n" for line in lines) + ")\n"


def _refused(text: str) -> str:
    with pytest.raises(InputError) as info:
        parse_printed_model(text)
    return str(info.value)


def test_the_limits_are_the_documented_ones():
    assert (MAX_MODULES, MAX_DEPTH) == (10_000, 100)


@pytest.mark.parametrize("line, first, last, times", [
    ("(0-2): 5 x ReLU()", 0, 2, 5),
    ("(0-2): 1000000000 x ReLU()", 0, 2, 10**9),
    ("(4-9): 5 x ReLU()", 4, 9, 5),
])
def test_a_repeat_count_that_disagrees_with_its_range_is_refused(line, first, last, times):
    message = _refused(_model(line))
    said = f"'({first}-{last})' names {last - first + 1} modules but the line repeats {times}"
    # the line's text gives way to 80 columns; where even that does not fit, the whole words stay
    assert message in (f"--from line 2: {said}", f"--from line 2 '{line}': {said}")
    assert (message == f"--from line 2: {said}") == (times == 5)


def test_a_repeat_count_on_a_name_that_is_no_range_is_refused():
    assert "'(3)' is not a range a-b" in _refused(_model("(3): 3 x ReLU()"))


def test_repeats_that_agree_with_the_range_expand_to_that_many_rows():
    specs, _ = parse_printed_model(_model("(0): ReLU()", "(1-4): 4 x Tanh()",
                                          "(5-6): 2 x Sequential(", "  (0): ReLU()", "  (1-2): 2 x Dropout(p=0.5)",
                                          ")"))
    # 1 + 4 + 2 * (1 + 2) = 11 rows, the repeated container's children repeated with it.
    assert [s.kind for s in specs] == ["relu"] + ["act"] * 4 + ["relu", "dropout", "dropout"] * 2
    assert [s.text.split(":")[0] for s in specs[:5]] == ["0", "1-4", "1-4#2", "1-4#3", "1-4#4"]


@pytest.mark.parametrize("lines, line", [
    (["(0-10000): 10001 x ReLU()"], 2),  # one over, in one line
    (["(0-99999999999): 100000000000 x Conv2d(3, 3, kernel_size=(1, 1), stride=(1, 1))"], 2),
    # 1000 x 1000 = 10**6 from a nested repeat: refused at the inner line, before anything is expanded
    (["(0-999): 1000 x Sequential(", "  (0-999): 1000 x ReLU()", ")"], 3),
    ([f"(0-{'9' * 5000}): 1{'0' * 5000} x ReLU()"], 2),  # past int()'s 4300 digits
])
def test_a_model_over_the_module_limit_is_refused_at_its_line(lines, line):
    message = _refused(_model(*lines))
    assert message.startswith((f"--from line {line} '", f"--from line {line}: "))
    assert message.endswith("the model has over 10,000 modules (cnncli's limit)")


def test_a_model_at_the_limit_is_read(monkeypatch):
    from cnncli.shape import torchprint

    monkeypatch.setattr(torchprint, "MAX_MODULES", 1000)  # the same check, quicker to reach
    # 1 container + 999 ReLUs = 1000 modules: the limit itself is allowed; one more is refused.
    assert len(parse_printed_model(_model("(0-998): 999 x ReLU()"))[0]) == 999
    assert _refused(_model("(0-998): 999 x ReLU()", "(999): ReLU()")).startswith("--from line 3: ")


@pytest.mark.parametrize("via_stdin", [False, True])
def test_a_forged_huge_repeat_is_refused_at_once_in_a_real_process(tmp_path, via_stdin):
    # Before the check this grew memory without bound (1.2 GB after 15 s): a subprocess with a timeout.
    text = _model("(0-2): 1000000000 x ReLU()")
    path = tmp_path / "rep.txt"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "cnncli", "shape", "--from", "-" if via_stdin else str(path),
                           "--input", "3x32x32", "--layout", "nchw", "--json"], input=text.encode(),
                          capture_output=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode() == ("cnncli: error: --from line 2 '(0-2): 1000000000 x ReLU()': '(0-2)' names 3 "
                                    "modules but the line repeats 1000000000\n")


def _nested(depth: int) -> str:
    # `depth` containers inside the top one, a ReLU in the innermost.
    return ("Sequential(\n" + "".join("  " * (k + 1) + "(0): Sequential(\n" for k in range(depth))
            + "  " * (depth + 1) + "(0): ReLU()\n" + "".join("  " * k + ")\n" for k in range(depth, -1, -1)))


def test_nesting_up_to_the_limit_is_read_and_deeper_is_refused_naming_the_limit():
    specs, _ = parse_printed_model(_nested(MAX_DEPTH - 1))  # MAX_DEPTH containers in all
    assert len(specs) == 1 and specs[0].text == ".".join(["0"] * MAX_DEPTH) + ": ReLU()"
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "8"], input=_nested(1000))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "cnncli: error: --from line 101: containers nest over 100 deep (cnncli's limit)\n"


def test_the_json_of_a_repeated_model_lists_each_repeat():
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "3x8x8", "--layout", "nchw", "--json"],
                           input=_model("(0-2): 3 x ReLU()"))
    assert result.exit_code == 0, result.stderr
    assert [layer["spec"] for layer in json.loads(result.stdout)["layers"]] == [
        "0-2: ReLU()", "0-2#2: ReLU()", "0-2#3: ReLU()"]


@pytest.mark.parametrize("name, n, output", [
    # SmallNet takes 3 channels (features.0 is Conv2d(3, 16, ...)): at 32 its classifier gives 4 features.
    ("smallnet", 32, [4]),
    # DCGAN's generator takes 100 channels: 1 -> (1-1)*1 + 3 + 1 = 4, then 2n per tconv: 64; from 2: 5 -> 80.
    ("dcgan_generator", 1, [64, 64]),
    ("dcgan_generator", 2, [80, 80]),
    ("lenet", 28, [10]),  # 1 channel, as before
])
def test_the_size_table_of_a_printed_model_uses_its_first_layers_channels(name, n, output):
    path = os.path.join(os.path.dirname(__file__), "printed", f"{name}.txt")
    result = runner.invoke(app, ["shape", "--from", path, "--json"])
    assert result.exit_code == 0, result.stderr
    rows = {row["input"]: row["stack"] for row in json.loads(result.stdout)["rows"]}
    assert rows[n]["output"] == output
    table = runner.invoke(app, ["shape", "--from", path])
    assert table.exit_code == 0 and "stack output" in table.stdout


@pytest.mark.parametrize("args, words", [
    ("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=maybe)", "cannot read ceil_mode='maybe'"),
    ("Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), bias=None)", "cannot read bias=None"),
    ("BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=1, track_running_stats=True)", "cannot read affine=1"),
    ("Linear(in_features=4, out_features=2, bias=yes)", "cannot read bias='yes'"),
])
def test_a_flag_that_is_not_true_or_false_is_refused(args, words):
    message = _refused(_model(f"(0): {args}"))
    assert message.startswith("--from line 2 ") and message.endswith(f"{words} (PyTorch prints True or False)")


def test_flags_as_pytorch_prints_them_are_read():
    specs, _ = parse_printed_model(_model("(0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), bias=False)",
                                          "(1): MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True)"))
    assert specs[0].bias is False and specs[1].ceil_mode is True


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x9b", "\x00", "\x08"])
def test_control_characters_are_refused_and_never_echoed(char):
    text = _model(f"(0{char}[31m): ReLU()")
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "8"], input=text)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"cnncli: error: --from line 2: control character {char!r} (print(model) has none)\n"
    assert len(result.stderr.rstrip("\n")) <= 80
    assert char not in result.stderr


def test_a_tab_is_whitespace():
    specs, _ = parse_printed_model("Sequential(\n\t(0): ReLU()\n)\n")
    assert [s.kind for s in specs] == ["relu"]


def test_an_underscore_in_a_printed_number_is_not_read_as_digits(tmp_path):
    # ast.literal_eval reads 1_0 as 10; print(model) never writes it, so an edited file is told
    from typer.testing import CliRunner

    from cnncli.cli import app

    path = tmp_path / "model.txt"
    path.write_text("Sequential(\n  (0): Conv2d(3, 8, kernel_size=(1_0, 3), stride=(1, 1))\n)\n")
    r = CliRunner().invoke(app, ["shape", "--from", str(path), "--input", "3x32x32", "--layout", "nchw"])
    assert r.exit_code == 2 and r.stderr.endswith(": cannot read kernel_size='(1_0, 3)'\n")
