"""``shape --from``: PyTorch's printed models (text fixtures in tests/shape/printed/), by hand-derived values."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state
from cnncli.errors import InputError
from cnncli.shape.stack import evaluate_stack, parse_dims
from cnncli.shape.torchprint import parse_printed_model

HERE = os.path.join(os.path.dirname(__file__), "printed")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


def fixture(name):
    with open(os.path.join(HERE, f"{name}.txt")) as fh:
        return fh.read()


def from_json(name, dims, *extra):
    result = runner.invoke(app, ["shape", "--from", os.path.join(HERE, f"{name}.txt"), "--input", dims,
                                 "--layout", "nchw", "--json", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_lenet_by_hand():
    doc = from_json("lenet", "1x1x28x28")
    # 28 padded by 2, 5x5: 28; pool 14; 5x5: 10; pool 5; 16*5*5 = 400 features; 120, 84, 10.
    assert [layer["output"] for layer in doc["layers"]] == [
        [1, 6, 28, 28], [1, 6, 28, 28], [1, 6, 14, 14], [1, 16, 10, 10], [1, 16, 10, 10], [1, 16, 5, 5],
        [1, 400], [1, 120], [1, 120], [1, 84], [1, 84], [1, 10]]
    params = [layer["params"] for layer in doc["layers"]]
    assert params == [5 * 5 * 1 * 6 + 6, 0, 0, 5 * 5 * 6 * 16 + 16, 0, 0, 0, 400 * 120 + 120, 0, 120 * 84 + 84, 0,
                      84 * 10 + 10]
    assert doc["totals"]["params"] == 61706
    assert doc["layers"][0]["spec"] == "0: Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"
    assert doc["layers"][2]["mode"] == "average" and doc["layers"][6]["kind"] == "flatten"
    assert any("AvgPool2d prints no ceil_mode" in note for note in doc["notes"])


def test_dcgan_generator_by_hand():
    doc = from_json("dcgan_generator", "1x100x1x1")
    tconvs = [layer for layer in doc["layers"] if layer["kind"] == "tconv"]
    # (1-1)*1 + 3 + 1 = 4, then (n-1)*2 - 2 + 3 + 1 = 2n: 8, 16, 32, 64.
    assert [layer["output"] for layer in tconvs] == [[1, 512, 4, 4], [1, 256, 8, 8], [1, 128, 16, 16],
                                                     [1, 64, 32, 32], [1, 3, 64, 64]]
    assert [layer["params"] for layer in tconvs] == [100 * 512 * 16, 512 * 256 * 16, 256 * 128 * 16,
                                                     128 * 64 * 16, 64 * 3 * 16]
    bns = [layer["params"] for layer in doc["layers"] if layer["kind"] == "bn"]
    assert bns == [2 * 512, 2 * 256, 2 * 128, 2 * 64]
    assert doc["totals"]["params"] == 3576704 and doc["output"] == [1, 3, 64, 64]
    assert doc["totals"]["receptive_field"] is None  # not applicable after a transposed convolution
    # fvcore's count: every input pixel times every weight (no bias here).
    assert tconvs[1]["macs"] == 4 * 4 * 512 * 256 * 16
    assert [layer["spec"].split(":")[0] for layer in doc["layers"]][:3] == ["main.0", "main.1", "main.2"]


def test_every_printed_argument_is_read():
    specs, notes = parse_printed_model(fixture("smallnet"))
    by_path = {s.text.split(":")[0]: s for s in specs}
    grouped = by_path["features.3"]
    assert (grouped.stride, grouped.pad, grouped.groups, grouped.bias, grouped.in_channels) == (
        (2, 2), (1, 1, 1, 1), 4, False, 16)
    assert by_path["features.5"].ceil_mode is True and by_path["features.5"].pad == (1, 1, 1, 1)
    same = by_path["features.6.0"]
    assert (same.f, same.pad, same.dilation) == ((3, 5), "same", (2, 1))
    assert by_path["classifier.4"].bias is False and by_path["classifier.1"].in_channels == 32
    assert [s.kind for s in specs].count("dropout") == 2 and by_path["avgpool"].kind == "gap"
    assert "children are taken in the order printed" in notes[0]
    up, _ = parse_printed_model(fixture("upsampler"))
    assert (up[0].output_padding, up[2].output_padding, up[2].dilation, up[2].groups) == ((1, 1), (2, 1), (3, 1), 2)
    assert up[1].affine is False and up[3].pad == (0, 0, 0, 0)


def test_smallnet_shapes_by_hand():
    doc = from_json("smallnet", "2x3x32x32")
    out = {layer["spec"].split(":")[0]: layer["output"] for layer in doc["layers"]}
    # 32 -> same -> stride 2 pad 1: floor(33/2)+1 = 16 -> max 3/2 pad 1 ceil: ceil(15/2)+1 = 9 -> same 9 -> avg 2: 4.
    assert out["features.3"] == [2, 16, 16, 16] and out["features.5"] == [2, 16, 9, 9]
    assert out["features.6.0"] == [2, 32, 9, 9] and out["features.7"] == [2, 32, 4, 4]
    assert out["avgpool"] == [2, 32, 1, 1] and out["flatten"] == [2, 32] and out["classifier.4"] == [2, 4]
    params = {layer["spec"].split(":")[0]: layer["params"] for layer in doc["layers"]}
    assert params["features.3"] == 3 * 3 * 4 * 16 and params["features.6.0"] == 3 * 5 * 16 * 32 + 32
    assert params["features.1"] == 32 and params["classifier.4"] == 40


def test_upsampler_shapes_by_hand():
    doc = from_json("upsampler", "1x8x5x7")
    # (5-1)*2 - 2 + 2 + 1 + 1 = 10, (7-1)*2 - 2 + 2 + 1 + 1 = 14; then h: (10-1) - 4 + 6 + 2 + 1 = 14,
    # w: (14-1)*2 - 0 + 1 + 1 + 1 = 29; the valid 3x3 conv: 12x27.
    assert [layer["output"] for layer in doc["layers"]] == [[1, 8, 10, 14], [1, 8, 10, 14], [1, 6, 14, 29],
                                                           [1, 6, 12, 27]]
    assert [layer["params"] for layer in doc["layers"]] == [8 * 8 * 9 + 8, 0, 8 * 3 * 3 * 2 + 6, 6 * 6 * 9 + 6]


@pytest.mark.parametrize("name, line, words", [
    # the line's text gives way to 80 columns (both lines were 100 and more with it); its number names it
    ("residual_block", 7, ["--from line 7: a branch off the main path: not a plain chain"]),
    ("unknown_module", 3, ["--from line 3: unknown module 'PReLU' (README lists them)"]),
])
def test_refusals_name_the_module_and_its_line(name, line, words):
    result = runner.invoke(app, ["shape", "--from", os.path.join(HERE, f"{name}.txt"), "--input", "3x32x32",
                                 "--layout", "nchw"])
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert f"--from line {line}: " in result.stderr and len(result.stderr.rstrip("\n")) <= 80
    for word in words:
        assert word in result.stderr


def test_a_channel_mismatch_names_the_layer_and_its_line():
    result = runner.invoke(app, ["shape", "--from", os.path.join(HERE, "channel_mismatch.txt"), "--input",
                                 "3x32x32", "--layout", "nchw"])
    assert result.exit_code == 2
    # the printed line was quoted whole (148 columns): its number and module name it
    assert result.stderr == "cnncli: error: layer 3 (line 4: Conv2d): expects 16 input channels, got 8\n"
    first = runner.invoke(app, ["shape", "--from", os.path.join(HERE, "lenet.txt"), "--input", "28x28x3"])
    assert first.exit_code == 2 and "line 2" in first.stderr and "expects 1 input channels, got 3" in first.stderr
    bare = runner.invoke(app, ["shape", "--from", os.path.join(HERE, "lenet.txt"), "--input", "28"])
    assert bare.exit_code == 0 and "-> 10 " in bare.stdout  # 1 assumed channel is what LeNet takes
    three = runner.invoke(app, ["shape", "--from", os.path.join(HERE, "channel_mismatch.txt"), "--input", "32"])
    assert three.stderr == "cnncli: error: layer 1 (line 2: Conv2d): expects 3 channels: give C in --input\n"
    fc = evaluate_stack(parse_printed_model(fixture("lenet"))[0], parse_dims("1x1x32x32", layout="nchw"))
    assert str(fc.error) == "layer 8 (line 9: Linear): expects 400 input features, got 576"
    assert "in_features" in fc.error.whole  # 32x32 gives 16*6*6 = 576, not 400


@pytest.mark.parametrize("text, words", [
    ("hello world", ["line 1", "not a line of PyTorch's print(model) output"]),
    ("Sequential(\n  (0): ReLU()\n", ["never closed"]),
    ("Sequential(\n  (0): AdaptiveAvgPool2d(output_size=(7, 7))\n)", ["only AdaptiveAvgPool2d(1)", "line 2"]),
    ("Sequential(\n  (0): Flatten(start_dim=0, end_dim=-1)\n)", ["only Flatten(start_dim=1"]),
    ("Sequential(\n  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), weird=2)\n)", ["'weird'"]),
    ("Net(\n  (a): ModuleDict(\n    (x): ReLU()\n  )\n)", ["ModuleDict is not a chain"]),
    ("", ["no module found"]),
])
def test_text_that_is_not_a_printed_chain_is_refused(text, words):
    with pytest.raises(InputError) as info:
        parse_printed_model(text)
    for word in words:
        assert word in str(info.value)


def test_from_stdin_and_repeated_modules():
    text = "Sequential(\n  (0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))\n  (1-2): 2 x ReLU()\n)\n"
    result = runner.invoke(app, ["shape", "--from", "-", "--input", "3x8x8", "--layout", "nchw", "--json"],
                           input=text)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [layer["kind"] for layer in doc["layers"]] == ["conv", "relu", "relu"] and doc["output"] == [4, 6, 6]
    both = runner.invoke(app, ["shape", "--from", "-", "conv:f=3", "--input", "8"], input=text)
    assert both.exit_code == 2
    assert both.stderr == "cnncli: error: give the layers one way: --from FILE, LAYER_SPECs or options\n"
    missing = runner.invoke(app, ["shape", "--from", "nope.txt", "--input", "8"])
    assert missing.exit_code == 2 and "no such file 'nope.txt'" in missing.stderr
