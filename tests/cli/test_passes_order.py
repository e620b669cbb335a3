"""Errors in the order a person needs them (a missing file before anything it hides), expected shapes
named, PyTorch's layout recognised, and empty option values refused like any bad value."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def d(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((2, 6, 6, 4)))      # NHWC
    np.save(tmp_path / "An.npy", rng.standard_normal((2, 4, 6, 6)))     # the same sizes, NCHW
    np.save(tmp_path / "Wt.npy", rng.standard_normal((8, 4, 3, 3)))     # PyTorch's (C_out, C_in, kH, kW)
    np.save(tmp_path / "W.npy", rng.standard_normal((3, 3, 4, 8)))
    np.save(tmp_path / "g3.npy", rng.standard_normal((4, 4, 8)))
    return tmp_path


@pytest.mark.parametrize("extra", [[], ["--stride", "0"], ["--layer", "dense"], ["--layout", "chw"]])
def test_a_missing_source_is_reported_first(d, extra, monkeypatch):
    monkeypatch.chdir(d)
    res = run("forward", "exmaples/conv_case.h5", *extra)
    assert (res.exit_code, res.stderr) == (2, "cnncli: error: 'exmaples/conv_case.h5': no such file\n")


def test_missing_arrays_of_options_come_before_hyperparameter_errors(d):
    res = run("backward", d / "A.npy", "--weights", d / "W.npy", "--grad", d / "dZ.npy", "--stride", "0")
    assert res.stderr == f"cnncli: error: --grad '{d}/dZ.npy': no such file\n"
    res = run("forward", d / "A.npy", "--weights", d / "nope.npy", "--pad", "-1")
    assert res.stderr == f"cnncli: error: --weights '{d}/nope.npy': no such file\n"
    res = run("forward", d, "--f", "2")
    assert res.stderr == f"cnncli: error: '{d}' is a folder, not an array file\n"


def test_a_gradient_of_the_wrong_ndim_names_the_expected_shape(d):
    # pool f=2 over 6x6 with the default stride 2: floor((6 - 2) / 2) + 1 = 3
    res = run("backward", d / "A.npy", "--f", "2", "--grad", d / "g3.npy")
    assert res.stderr == f"cnncli: error: dA '{d}/g3.npy' is (4, 4, 8); expected the output's (2, 3, 3, 4)\n"
    res = run("backward", d / "An.npy", "--weights", d / "Wt.npy", "--layout", "nchw", "--grad", d / "g3.npy")
    # conv 3x3 over 6x6, stride 1: 4x4 with 8 filters, in NCHW order
    assert res.stderr == f"cnncli: error: dZ '{d}/g3.npy' is (4, 4, 8); expected the output's (2, 8, 4, 4)\n"


def test_pytorch_filters_without_layout_nchw_get_the_flag_suggested(d):
    res = run("forward", d / "An.npy", "--weights", d / "Wt.npy")
    assert res.exit_code == 2
    assert res.stderr == f"cnncli: error: W '{d}/Wt.npy' is (8, 4, 3, 3) as in PyTorch: give --layout nchw\n"
    assert run("forward", d / "An.npy", "--weights", d / "Wt.npy", "--layout", "nchw").exit_code == 0
    res = run("forward", d / "A.npy", "--weights", d / "Wt.npy")  # NHWC data, PyTorch's filters
    assert res.stderr.endswith("as in PyTorch; NHWC wants (3, 3, 4, 8)\n")
    np.save(d / "W5.npy", np.ones((3, 3, 5, 8)))  # plainly wrong NHWC filters: no PyTorch reading fits
    res = run("forward", d / "A.npy", "--weights", d / "W5.npy")
    assert "PyTorch" not in res.stderr and "A_prev's 4 channels need (3, 3, 4, 8)" in res.stderr



def test_pytorch_filters_with_groups_get_the_hint(d):
    # W (8, 2, 3, 3) is PyTorch's (C_out, C_in/groups, kH, kW) for 4 channels in 2 groups; read as NHWC its
    # (f, f, C_in/g, C_out) = (8, 2, 3, 3) makes n_C = 3, which groups=2 does not divide
    np.save(d / "Wg.npy", np.ones((8, 2, 3, 3)))
    res = run("forward", d / "An.npy", "--weights", d / "Wg.npy", "--groups", "2")
    assert (res.exit_code, res.stderr) == (2, f"cnncli: error: W '{d}/Wg.npy' is (8, 2, 3, 3) as in PyTorch: "
                                              "give --layout nchw\n")
    assert run("forward", d / "An.npy", "--weights", d / "Wg.npy", "--groups", "2", "--layout", "nchw").exit_code == 0
    res = run("forward", d / "A.npy", "--weights", d / "Wg.npy", "--groups", "2")
    assert res.stderr == f"cnncli: error: W '{d}/Wg.npy' is (8, 2, 3, 3) as in PyTorch; NHWC wants (3, 3, 2, 8)\n"
    res = run("forward", d / "An.npy", "--weights", d / "Wg.npy", "--groups", "4")  # 2 x 4 = 8 channels, not 4
    assert res.exit_code == 2 and "PyTorch" not in res.stderr


def test_pytorch_filters_whose_nhwc_window_does_not_fit_get_the_hint(d):
    # A (1, 4, 5, 5) NCHW and W (6, 4, 5, 5): read as NHWC, A is 4x5 with 5 channels and W a 6x4 window over
    # 5 channels -- the channels agree, the window does not fit; in PyTorch's reading a 5x5 window fits 5x5
    np.save(d / "A5.npy", np.ones((1, 4, 5, 5)))
    np.save(d / "W5t.npy", np.ones((6, 4, 5, 5)))
    res = run("forward", d / "A5.npy", "--weights", d / "W5t.npy")
    assert (res.exit_code, res.stderr) == (2, f"cnncli: error: W '{d}/W5t.npy' is (6, 4, 5, 5) as in PyTorch: "
                                              "give --layout nchw\n")
    res = run("forward", d / "A5.npy", "--weights", d / "W5t.npy", "--layout", "nchw", "--json")
    z = json.loads(res.stdout)["outputs"]["Z"]
    assert res.exit_code == 0 and z["shape"] == [1, 6, 1, 1] and z["max"] == 4 * 5 * 5  # ones over one window
    # no PyTorch reading fits either (a 5x5 window over 4x4 with stride 1): the window's own message
    np.save(d / "A4.npy", np.ones((1, 4, 4, 5)))
    res = run("forward", d / "A4.npy", "--weights", d / "W5t.npy")
    assert res.stderr == "cnncli: error: no 6x4 window fits a 4x4 input padded by 0\n"


EMPTY = [
    ("--layout", "nhwc or nchw"), ("--layer", "conv or pool"), ("--mode", "max or average"),
    ("--dtype", "float64 or float32"), ("--f", "an int or HxW"), ("--stride", "an int or HxW"),
    ("--dilation", "an int or HxW"), ("--pad", "an int, 'h,w', 't,b,l,r', valid or same"),
    ("--weights", "x.npy, x.npz[:NAME], x.h5[:PATH] or -"),
    ("--bias", "x.npy, x.npz[:NAME], x.h5[:PATH] or -"),
]


@pytest.mark.parametrize("flag, expected", EMPTY)
@pytest.mark.parametrize("value", ["", "  "])
def test_empty_option_values_are_refused(d, flag, expected, value):
    res = run("forward", d / "A.npy", "--weights", d / "W.npy", flag, value, "-o", d / "out.npy")
    assert res.exit_code == 2
    assert res.stderr == f"cnncli: error: {flag} is empty: give {expected}\n"
    assert not (d / "out.npy").exists()


def test_empty_grad_and_gradcheck_options_are_refused(d):
    res = run("backward", d / "A.npy", "--f", "2", "--grad", "")
    assert res.exit_code == 2 and res.stderr.startswith("cnncli: error: --grad is empty: give x.npy")
    res = run("gradcheck", d / "A.npy", "--f", "2", "--layout", "")
    assert res.exit_code == 2 and res.stderr == "cnncli: error: --layout is empty: give nhwc or nchw\n"


@pytest.mark.parametrize("name, content, message", [
    ("x.npz", b"hello\n", "'x.npz' is not .npz data (it starts with 'hello')"),
    ("cut.npy", b"\x93NUMPY\x01\x00v\x00{'descr'", "'cut.npy' is damaged (the header is cut short)"),
    ("empty.npy", b"", "'empty.npy' is not .npy data (it is empty)"),
])
@pytest.mark.parametrize("command", [["forward"], ["gradcheck"], ["backward", "--grad", "A.npy"]])
def test_a_damaged_source_is_reported_before_the_layer_kind_it_hid(d, monkeypatch, name, content, message, command):
    monkeypatch.chdir(d)
    (d / name).write_bytes(content)
    r = run(command[0], name, *command[1:])
    assert r.exit_code == 2 and r.stderr == f"cnncli: error: {message}\n"
    r = run(command[0], "A.npy", *command[1:])  # a good file: the layer kind is what is missing
    assert r.stderr == "cnncli: error: layer kind unknown: give --layer, --weights (conv) or --f (pool)\n"
