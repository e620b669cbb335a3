"""``cnncli shape`` through the real app: views, exact JSON, --like, --target, errors and exit codes."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import cnncli
from cnncli.cli import app
from cnncli.cli.app import state as app_state
from cnncli.engine import ConvParams, PoolParams, conv2d, pool2d

runner = CliRunner()
SIGNS = ["conv:f=4,s=1,p=same,c=8", "pool:f=8,s=8", "conv:f=2,s=1,p=same,c=16", "pool:f=4,s=4"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # --debug is a process-wide flag; another test setting it must not put tracebacks in ours.
    monkeypatch.setattr(app_state, "debug", False)


def shape(*args, **kwargs):
    return runner.invoke(app, ["shape", *args], **kwargs)


def shape_json(*args):
    result = shape(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_quick_start_prints_the_formula_and_a_table_over_input_sizes():
    result = shape("--f", "3", "--stride", "2")
    assert result.exit_code == 0
    out = result.stdout
    assert "n_out = floor((n_in + pad_before + pad_after - dilation*(f-1) - 1) / stride) + 1" in out
    assert "valid: n_out = floor((n_in - 3) / 2) + 1" in out
    assert "same: n_out = ceil(n_in / 2)" in out
    for n in (3, 17, 32, 224, 227, 512):
        assert f" {n} " in out
    assert "unread" in out and result.stderr == ""


def test_table_json_rows_match_the_formula():
    doc = shape_json("--f", "3", "--stride", "2")
    assert set(doc) == {"formula", "columns", "layers", "rows"}
    assert doc["columns"] == ["valid", "same"]
    inputs = [row["input"] for row in doc["rows"]]
    assert inputs == list(range(3, 33)) + [56, 64, 96, 112, 128, 224, 227, 256, 299, 512]
    for row in doc["rows"]:
        n = row["input"]
        assert row["valid"]["output"] == [(n - 3) // 2 + 1] * 2
        assert row["valid"]["unread"] == [1 - n % 2] * 2  # even sizes leave the last row/col unread
        assert row["same"]["output"] == [math.ceil(n / 2)] * 2
        total = max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0)
        assert row["same"]["pads"] == [total // 2, total - total // 2] * 2


def test_table_with_a_given_pad_adds_its_column():
    doc = shape_json("--f", "5", "--pad", "1")
    assert doc["columns"] == ["pad 1", "valid", "same"]
    row = next(r for r in doc["rows"] if r["input"] == 28)
    assert row["pad 1"]["output"] == [28 + 2 - 5 + 1] * 2 and row["valid"]["output"] == [24, 24]


def test_one_layer_exact_json():
    doc = shape_json("--input", "5x5x2", "--f", "3", "--stride", "2", "--pad", "1", "--filters", "4")
    # By hand: (5+1+1-3)//2+1 = 3 windows at rows -1, 1, 3 reading -1..5, so every input row is read;
    # field 3, centre of the first at row -1+1 = 0; 3*3*2*4 weights + 4 biases; 3*3*4 outputs * 3*3*2 MACs.
    layer = {
        "index": 1, "kind": "conv", "spec": None, "input": [5, 5, 2], "output": [3, 3, 4],
        "f": [3, 3], "stride": [2, 2], "dilation": [1, 1], "pad": [1, 1, 1, 1], "pads": [1, 1, 1, 1],
        "filters": 4, "groups": 1, "receptive_field": [3, 3], "jump": [2, 2], "start": [0.0, 0.0],
        "unread": {"trailing": [0, 0], "skipped": [0, 0], "cover_pad": [0, 0]},
        "params": 76, "macs": 648, "flops": 1296, "memory_bytes": {"float32": 144, "float64": 288}, "notes": [],
    }
    assert doc == {"input": [5, 5, 2], "layout": "nhwc", "layers": [layer], "output": [3, 3, 4],
                   "totals": {"params": 76, "macs": 648, "flops": 1296,
                              "memory_bytes": {"float32": 144, "float64": 288},
                              "receptive_field": [3, 3], "jump": [2, 2]},
                   "error": None}


def test_one_layer_report_for_people():
    result = shape("--input", "28x28x3", "--f", "3", "--stride", "2", "--filters", "8")
    assert result.exit_code == 0
    out = result.stdout
    assert "13x13x8" in out
    assert "floor((28 + 0 + 0 - (3-1) - 1) / 2) + 1 = 13" in out
    assert "last 1 row (pad bottom +1 reads it)" in out
    assert "224 (3*3*3*8 weights + 8 biases)" in out
    assert "FLOPs = 2 x MACs" in out and "float32" in out and "float64" in out


def test_same_with_stride_explains_pytorch_and_tensorflow():
    result = shape("--input", "28x28x1", "--f", "3", "--stride", "2", "--pad", "same")
    assert result.exit_code == 0
    assert "PyTorch refuses padding='same'" in result.stdout
    assert "top 0, bottom 1, left 0, right 1" in result.stdout


def test_signs_stack_json_ends_at_2x2x16():
    doc = shape_json("--input", "64x64x3", *SIGNS)
    assert doc["output"] == [2, 2, 16]
    assert [layer["kind"] for layer in doc["layers"]] == ["conv", "pool", "conv", "pool"]
    assert [layer["output"] for layer in doc["layers"]] == [[64, 64, 8], [8, 8, 8], [8, 8, 16], [2, 2, 16]]
    for before, after in zip(doc["layers"], doc["layers"][1:]):
        assert after["input"] == before["output"]
    assert doc["totals"]["params"] == (4 * 4 * 3 * 8 + 8) + (2 * 2 * 8 * 16 + 16)
    assert doc["totals"]["macs"] == 64 * 64 * 8 * 4 * 4 * 3 + 8 * 8 * 16 * 2 * 2 * 8
    assert doc["error"] is None


def test_signs_stack_table_has_a_totals_row():
    result = shape("--input", "64x64x3", *SIGNS)
    assert result.exit_code == 0
    assert "total" in result.stdout and "64x64x3 -> 2x2x16" in result.stdout


def test_a_stack_that_does_not_fit_stops_there_and_exits_2():
    result = shape("--input", "64x64x3", *SIGNS, "pool:f=3")
    assert result.exit_code == 2
    assert "8x8x16 -> 2x2x16" in result.stdout and "layer 5 does not fit" in result.stdout
    assert result.stderr == "cnncli: error: layer 5 (pool:f=3): no 3x3 window fits a 2x2 input padded by 0\n"
    doc = json.loads(shape("--input", "64x64x3", *SIGNS, "pool:f=3", "--json").stdout)
    assert len(doc["layers"]) == 4 and doc["output"] is None and "layer 5" in doc["error"]


def test_target_json_solutions_reach_the_target_in_the_engine():
    doc = shape_json("--input", "28", "--f", "3", "--stride", "2", "--target", "14")
    assert doc["target"] == [14, 14] and doc["stride_fixed"] is True
    pads = [tuple(s["pads"]) for s in doc["solutions"]]
    assert pads[:3] == [(0, 1, 0, 1), (1, 0, 1, 0), (1, 1, 1, 1)]  # smallest padding first, TF's split first
    for s in doc["solutions"]:
        Z = conv2d(np.zeros((1, 28, 28, 1)), np.zeros((3, 3, 1, 1)), None, ConvParams(stride=2, pad=s["pads"]))
        assert Z.shape[1:3] == (14, 14)


def test_target_without_stride_tries_every_stride_for_pooling():
    doc = shape_json("--input", "32x32x8", "--layer", "pool", "--f", "2", "--target", "16")
    assert doc["stride_fixed"] is False and doc["solutions"]
    for s in doc["solutions"]:
        A = pool2d(np.zeros((1, 32, 32, 8)), PoolParams(f=2, stride=s["stride"], pad=s["pads"]))
        assert A.shape[1:3] == (16, 16)
    result = shape("--input", "28", "--f", "3", "--target", "1")
    assert result.exit_code == 1 and "no padding below the window" in result.stdout  # like grep: nothing found


def test_target_table_for_people():
    result = shape("--input", "28", "--f", "3", "--target", "14")
    assert result.exit_code == 0
    assert "0,1,0,1" in result.stdout and "give --stride S" in result.stdout


@pytest.fixture
def arrays(tmp_path):
    np.save(tmp_path / "nhwc.npy", np.zeros((2, 32, 30, 3), dtype=np.float32))
    np.save(tmp_path / "nchw.npy", np.zeros((2, 3, 32, 30)))
    np.save(tmp_path / "image.npy", np.zeros((32, 30, 3)))
    np.savez(tmp_path / "case.npz", A_prev=np.zeros((4, 16, 16, 3)), W=np.zeros((3, 3, 3, 8)))
    with h5py.File(tmp_path / "data.h5", "w") as h5:
        h5.create_dataset("train/A_prev", data=np.zeros((5, 20, 24, 1)))
    return tmp_path


def test_like_reads_the_dims_of_arrays(arrays):
    assert shape_json("--like", str(arrays / "nhwc.npy"), "--f", "3")["output"] == [2, 30, 28, 3]
    nchw = shape_json("--like", str(arrays / "nchw.npy"), "--layout", "nchw", "--f", "3", "--filters", "6")
    assert nchw["layout"] == "nchw" and nchw["input"] == [2, 3, 32, 30] and nchw["output"] == [2, 6, 30, 28]
    assert shape_json("--like", str(arrays / "image.npy"), "--layer", "pool", "--f", "2")["output"] == [16, 15, 3]
    assert shape_json("--like", f"{arrays / 'case.npz'}:A_prev", "--f", "3")["input"] == [4, 16, 16, 3]
    assert shape_json("--like", f"{arrays / 'data.h5'}:/train/A_prev", "--f", "5")["output"] == [5, 16, 20, 1]


def test_like_takes_the_shape_without_reading_the_data(arrays, monkeypatch):
    # Big HDF5 datasets and .npy files must not be loaded just to learn their shape.
    from cnncli.io import arrays as array_io

    def refuse(*args, **kwargs):
        raise AssertionError("--like read array data")

    monkeypatch.setattr(array_io, "load_array", refuse)
    monkeypatch.setattr(array_io, "read_h5", refuse)
    monkeypatch.setattr(array_io.ArrayStream, "read", refuse)
    assert shape_json("--like", f"{arrays / 'data.h5'}:/train/A_prev", "--f", "5")["input"] == [5, 20, 24, 1]
    assert shape_json("--like", str(arrays / "nhwc.npy"), "--f", "3")["input"] == [2, 32, 30, 3]


@pytest.mark.parametrize("args, words", [
    (["--input", "64x", "--f", "3"], ["--input '64x': expected H, HxW, HxWxC or MxHxWxC"]),
    (["--input", "28", "--f", "0"], ["f must be >= 1, got 0"]),
    (["--input", "28", "--f", "3", "--stride", "-1"], ["stride must be >= 1"]),
    (["--input", "28", "--f", "3", "--dilation", "two"], ["dilation must be an integer"]),
    (["--input", "28", "--f", "3", "--pad", "-2"], ["pad must be >= 0"]),
    (["--input", "28", "--f", "3", "--pad", "wide"], ["pad 'wide': expected an int"]),
    (["--input", "4", "--f", "5"], ["no 5x5 window fits a 4x4 input"]),
    (["--input", "28", "--layer", "dense", "--f", "3"], ["--layer 'dense': expected conv, pool or tconv"]),
    (["--input", "28", "--layer", "conv", "--f", "3", "--mode", "max"], ["mode applies to pool layers only"]),
    (["--input", "28", "--f", "3", "--mode", "max", "--filters", "8"], ["filters applies to conv layers only"]),
    (["--input", "28"], ["--f F"]),
    (["--input", "28", "conv:f=3,q=1"], ["'conv:f=3,q=1': unknown key 'q' (f s p d c g mode ceil op bias)"]),
    (["--input", "28", "--f", "3", "conv:f=3"], ["give --f in the spec, not beside LAYER_SPECs"]),
    (["--input", "28", "--like", "x.npy", "--f", "3"], ["not both"]),
    (["--layout", "nchw", "--f", "3"], ["--layout says how to read --input or --like"]),
    (["--input", "28", "--layout", "", "--f", "3"], ["--layout must be nhwc or nchw, got ''"]),
    (["--f", "3", "--target", "14"], ["--target needs the input size"]),
    (["--input", "28", "--f", "3", "--pad", "1", "--target", "14"], ["drop --pad 1"]),
    (["--input", "28", "--f", "3", "--target", "0"], ["--target must be >= 1"]),
    (["--input", "28", "--f", "3", "--filters", "many"], ["--filters"]),
    (["--f", "3", "--groups", "2", "--filters", "3"], ["groups=2 must divide filters=3"]),
    (["--input", "4", "--f", "5", "--json"], ["no 5x5 window fits"]),
])
def test_bad_input_is_one_line_and_exit_2(args, words):
    result = shape(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("cnncli: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_like_errors_are_one_line(arrays):
    np.save(arrays / "vector.npy", np.zeros(5))
    for ref in [str(arrays / "missing.npy"), str(arrays / "vector.npy"), f"{arrays / 'case.npz'}:nope",
                str(arrays / "case.npz")]:
        result = shape("--like", ref, "--f", "3")
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, (ref, result.stderr)
    result = shape("--like", str(arrays / "nchw.npy"), "--layout", "hwcn", "--f", "3")
    assert result.exit_code == 2 and "--layout must be nhwc or nchw" in result.stderr


def _run(*args, stdin=None):
    """A real process, importing this cnncli (installed or from the source tree)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnncli.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "cnncli", *args], input=stdin, capture_output=True, env=env)


def test_subprocess_quick_start_and_exit_codes():
    proc = _run("shape", "--f", "3", "--stride", "2")
    assert proc.returncode == 0 and b"n_out = floor(" in proc.stdout and proc.stderr == b""
    proc = _run("shape", "--input", "4", "--f", "5")
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().splitlines() == ["cnncli: error: no 5x5 window fits a 4x4 input padded by 0"]


def test_subprocess_like_from_stdin_json():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 3, 10, 12)))
    proc = _run("shape", "--like", "-", "--layout", "nchw", "--f", "3", "--pad", "same", "--json",
                stdin=buffer.getvalue())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"] == [1, 3, 10, 12]


def test_mode_or_ceil_mode_alone_means_a_pool_layer():
    """As in forward: --mode/--ceil-mode without --layer ask for pooling (28 -> floor((28-3)/3)+1 = 9)."""
    for extra in (["--mode", "avg"], ["--ceil-mode"]):
        result = runner.invoke(app, ["shape", "--input", "28x28x2", "--f", "3", "--json", *extra])
        assert result.exit_code == 0, result.stderr
        layer = json.loads(result.stdout)["layers"][0]
        assert layer["kind"] == "pool"
        expected = 9 if extra[0] == "--mode" else 10  # ceil((28-3)/3)+1 = 10
        assert layer["output"] == [expected, expected, 2]


def test_target_larger_than_the_input_says_why_no_pad_reaches_it():
    result = runner.invoke(app, ["shape", "--input", "8", "--f", "3", "--target", "100"])
    assert result.exit_code == 1
    assert "grows its input by at most f-1" in result.stdout and "transposed convolution" in result.stdout
    assert "larger stride" not in result.stdout


@pytest.mark.parametrize("specs, index", [(["pool:f=3"], 1), (["conv:f=1", "pool:f=3"], 2)])
def test_a_stack_that_stops_at_any_layer_is_one_json_document(specs, index):
    # A 3x3 window never fits 2x2 unpadded; conv f=1 keeps 2x2x16 (1x1 windows, 16 channels kept).
    result = shape("--input", "2x2x16", *specs, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert [layer["output"] for layer in doc["layers"]] == [[2, 2, 16]] * (index - 1)
    assert doc["output"] is None and doc["totals"] is None
    assert doc["error"] == f"layer {index} (pool:f=3) on 2x2x16: no 3x3 window fits a 2x2 input padded by 0"
    # the line on stderr fits 80 columns (it was 89): the dims go, which the window's words name again
    assert result.stderr == f"cnncli: error: layer {index} (pool:f=3): no 3x3 window fits a 2x2 input padded by 0\n"


@pytest.mark.parametrize("args, want", [
    (["--f", "(3, 5)"], [28 - 3 + 1, 28 - 5 + 1]),  # PyTorch's kernel_size=(3, 5): a pair
    (["--f", "[3, 5]"], [26, 24]),
    (["conv:f=(3,5)"], [26, 24]),
    (["--f", "3", "--pad", "(1, 2)"], [28 + 2 - 3 + 1, 28 + 4 - 3 + 1]),
])
def test_pairs_may_be_written_as_pytorch_prints_them(args, want):
    doc = json.loads(shape("--input", "28", *args, "--json").stdout)
    assert doc["output"] == want


@pytest.mark.parametrize("args, words", [
    (["--f", "3", "--stride", "2_0"], "stride '2_0': write numbers with digits only (no '_')"),
    (["conv:f=1_0"], "f '1_0': write numbers with digits only (no '_')"),
    (["--f", "3", "--target", "1_4"], "--target '1_4': write numbers with digits only (no '_')"),
])
def test_an_underscore_in_a_number_is_refused_not_read_as_a_separator(args, words):
    result = shape("--input", "28", *args)
    assert result.exit_code == 2 and result.stdout == "" and words in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--input", "28", "--f", "\uff13"], "f '\uff13': write numbers with the digits 0-9"),  # full-width 3
    (["--input", "28", "conv:f=\uff13"], "f '\uff13': write numbers with the digits 0-9"),
    (["--input", "28", "--f", "3", "--stride", "\u0662"], "stride '\u0662': write numbers with the digits 0-9"),
    (["--input", "\uff128", "--f", "3"], "--input '\uff128': expected H, HxW, HxWxC or MxHxWxC (positive ints)"),
    (["--input", "28x\uff128", "--f", "3"], "--input '28x\uff128': expected H, HxW, HxWxC or MxHxWxC"),
])
def test_digits_of_other_scripts_are_refused_not_read_as_numbers(args, words):
    # int() reads '３' (full-width) and '٢' (Arabic-Indic) as 3 and 2: the table then shows a number never typed
    result = shape(*args)
    assert result.exit_code == 2 and result.stdout == "" and words in result.stderr


_LENET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shape", "printed", "lenet.txt")


@pytest.mark.parametrize("dims, line", [
    # LeNet's first Conv2d takes 1 channel: 1x28x28 read as NHWC has 28, its height is the 1 it expects
    ("1x28x28", "layer 1 expects 1 channels, got 28: NCHW input? add --layout nchw"),
    ("1x1x28x28", "layer 1 expects 1 channels, got 28: NCHW input? add --layout nchw"),
    # not NCHW-looking (height 28), or the layout given: the refusal as it was
    ("28x28x3", "layer 1 (line 2: Conv2d): expects 1 input channels, got 3"),
])
def test_an_input_that_looks_nchw_is_asked_about_when_the_first_layer_refuses_it(dims, line):
    r = CliRunner().invoke(app, ["shape", "--from", _LENET, "--input", dims], env={"COLUMNS": "80"})
    assert (r.exit_code, r.stderr) == (2, f"cnncli: error: {line}\n")
    r = CliRunner().invoke(app, ["shape", "--from", _LENET, "--input", dims, "--layout", "nhwc"])
    assert r.exit_code == 2 and "NCHW" not in r.stderr  # said nhwc: no question
    r = CliRunner().invoke(app, ["shape", "--from", _LENET, "--input", "1x28x28", "--layout", "nchw", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["layers"][-1]["output"] == [10]
