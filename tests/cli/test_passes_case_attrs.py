"""Case-file attributes through forward/backward: unknown ones are noted (with the closest known name),
and an error caused by an attribute names the case file."""

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.engine import ConvParams
from cnncli.engine.reference import conv_forward_loops

runner = CliRunner()
KNOWN = "layer, stride, pad, f, mode, dilation, groups, layout, ceil_mode, count_include_pad"


def run(args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def arrays():
    rng = np.random.default_rng(11)
    return rng.standard_normal((2, 6, 6, 4)), rng.standard_normal((3, 3, 4, 5))


def h5_case(path, A, W=None, **attrs):
    with h5py.File(path, "w") as f:
        f["A_prev"] = A
        if W is not None:
            f["W"] = W
        f.attrs.update(attrs)
    return path


def test_a_misspelt_attribute_is_noted_with_the_closest_name_and_ignored(tmp_path, arrays):
    A, W = arrays
    case = h5_case(tmp_path / "c.h5", A, W, layer="conv", strid=2)
    res = run(["forward", case, "--json", "-o", tmp_path / "z.npy"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["notes"] == ["case attribute 'strid' is not used (did you mean 'stride'?)",
                                               "no bias given: b = 0"]
    # Not an error: the layer runs with the default stride 1, as the note warns.
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), conv_forward_loops(A, W, np.zeros(5), ConvParams()),
                               rtol=1e-12)


def test_npz_case_entries_are_checked_the_same_way(tmp_path, arrays):
    A, _ = arrays
    np.savez(tmp_path / "c.npz", A_prev=A, layer=np.array("pool"), f=np.array(2), padding=np.array(1),
             Mode=np.array("max"))
    res = run(["forward", tmp_path / "c.npz", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["notes"] == ["case attribute 'padding' is not used (did you mean 'pad'?)",
                                               "case attribute 'Mode' is not used (did you mean 'mode'?)"]


def test_unrelated_attributes_are_noted_with_the_known_names_but_descriptions_are_not(tmp_path, arrays):
    A, _ = arrays
    case = h5_case(tmp_path / "c.h5", A, layer="pool", f=2, xyz=1, seed=3, note="four digits",
                   description="a test case")
    res = run(["forward", case, "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["notes"] == [f"case attributes 'seed', 'xyz' are not used; cnncli reads: {KNOWN}"]


def test_one_unrelated_attribute(tmp_path, arrays):
    A, _ = arrays
    case = h5_case(tmp_path / "c.h5", A, layer="pool", f=2, epoch=3)
    res = run(["forward", case, "--json"])
    assert json.loads(res.stdout)["notes"] == [f"case attribute 'epoch' is not used; cnncli reads: {KNOWN}"]


BAD = [
    ({"layer": "pool", "f": 2, "stride": -1}, [], "'{case}': stride must be >= 1, got -1"),
    ({"layer": "pool", "f": 0}, [], "'{case}': f must be >= 1, got 0"),
    ({"layer": "pool", "f": 2, "pad": -2}, [], "'{case}': pad must be >= 0, got -2"),
    ({"layer": "pool", "f": 2, "mode": "median"}, [], "'{case}': mode must be 'max' or 'average' (or 'avg'), "
                                                       "got 'median'"),
    ({"layer": "dense"}, [], "'{case}': layer must be 'conv' or 'pool', got 'dense'"),
    ({"layer": "pool", "f": 2, "layout": "chw"}, [], "'{case}': layout must be 'nhwc' or 'nchw', got 'chw'"),
    ({"layer": "pool", "f": 2, "count_include_pad": "maybe"}, [],
     "'{case}': count_include_pad must be true or false, got 'maybe'"),
    ({"layer": "conv", "groups": 0}, ["W"], "'{case}': groups must be >= 1, got 0"),
    # a conv case's f is checked against W's window; a value that is no window at all names the file too
    ({"layer": "conv", "f": 0}, ["W"], "'{case}': f must be >= 1, got 0"),
    ({"layer": "conv", "f": "x"}, ["W"], "'{case}': f must be an integer, got 'x'"),
    ({"layer": "conv", "f": np.array([3, 3, 3])}, ["W"], "'{case}': f must be an int or a pair (h, w), got (3, 3, 3)"),
    # errors of a combination name the attributes the case set
    ({"layer": "pool", "f": 9}, [], "no 9x9 window fits a 6x6 input padded by 0 ('{case}' sets f=9)"),
    ({"layer": "pool", "f": 4, "dilation": 2, "stride": 1}, [],
     "no 4x4 window (dilated to 7x7) fits a 6x6 input padded by 0 ('{case}' sets f=4, "
     "stride=1, dilation=2)"),
    ({"layer": "conv", "groups": 3}, ["W"], "groups=3 must divide the input channels n_C_prev=4 "
                                            "('{case}' sets groups=3)"),
]


@pytest.mark.parametrize("attrs, datasets, message", BAD, ids=[str(a) for a, _, _ in BAD])
def test_errors_from_case_attributes_name_the_file(tmp_path, arrays, attrs, datasets, message):
    A, W = arrays
    case = h5_case(tmp_path / "c_bad.h5", A, W if datasets else None, **attrs)
    res = run(["forward", case])
    assert res.exit_code == 2, res.stdout
    assert res.stderr == f"cnncli: error: {message.format(case=case)}\n"


def test_an_option_overrides_a_bad_attribute(tmp_path, arrays):
    A, _ = arrays
    case = h5_case(tmp_path / "c_neg.h5", A, layer="pool", f=2, stride=-1)
    res = run(["forward", case, "--stride", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["hyperparameters"]["stride"] == [2, 2]


def test_an_option_error_does_not_blame_the_case(tmp_path, arrays):
    A, _ = arrays
    case = h5_case(tmp_path / "c.h5", A, layer="pool", mode="max")
    res = run(["forward", case, "--f", "9"])
    assert res.exit_code == 2
    assert res.stderr == "cnncli: error: no 9x9 window fits a 6x6 input padded by 0\n"


def test_arrays_a_case_file_holds_but_the_layer_never_reads_are_noted(tmp_path):
    import h5py
    from typer.testing import CliRunner

    from cnncli.cli import app

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "pool.h5", "w") as f:  # a pool case with dZ: its upstream gradient would be drawn
        f["A_prev"] = rng.standard_normal((2, 6, 6, 3))
        f["dZ"] = np.zeros((2, 3, 3, 3))
        f.attrs.update(layer="pool", f=2)
    with h5py.File(tmp_path / "conv.h5", "w") as f:
        f["A_prev"] = rng.standard_normal((2, 6, 6, 3))
        f["W"] = rng.standard_normal((3, 3, 3, 4))
        f["Wt"] = np.ones(3)
        f.attrs.update(layer="conv")
    r = CliRunner().invoke(app, ["gradcheck", str(tmp_path / "pool.h5"), "--json"])
    assert "the case's dZ is not used: a pool layer's upstream gradient is dA" in json.loads(r.stdout)["notes"]
    r = CliRunner().invoke(app, ["forward", str(tmp_path / "conv.h5"), "--json"])
    assert "the case's Wt is not used (a conv layer reads A_prev, W, b and dZ)" in json.loads(r.stdout)["notes"]


@pytest.fixture
def nchw_case(tmp_path, monkeypatch):
    """A conv case stored in PyTorch's layout, saying so: A (2, 4, 6, 6), W (5, 4, 3, 3), and a pool one."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    h5_case("c.h5", rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((5, 4, 3, 3)), layer="conv",
            layout="nchw")
    h5_case("p.h5", rng.standard_normal((2, 3, 8, 8)), layer="pool", layout="nchw", f=4)
    return tmp_path


@pytest.mark.parametrize("command", ["forward", "gradcheck"])
def test_a_layout_option_against_the_cases_layout_names_both_when_the_arrays_disagree(nchw_case, command):
    # read as NHWC, W (5, 4, 3, 3) is a 5x4 window over 3 channels per group: A (2, 4, 6, 6) has 6
    res = run([command, "c.h5", "--layout", "nhwc"])
    assert (res.exit_code, res.stderr) == (2, "cnncli: error: --layout nhwc misreads 'c.h5' (its layout is nchw)\n")
    res = run([command, "c.h5", "--layout", "NHWC"])  # the word in any case; the message says it canonically
    assert (res.exit_code, res.stderr) == (2, "cnncli: error: --layout nhwc misreads 'c.h5' (its layout is nchw)\n")
    # pool: A (2, 3, 8, 8) read as NHWC is 3x8, where no 4x4 window fits
    res = run([command, "p.h5", "--layout", "nhwc"])
    assert (res.exit_code, res.stderr) == (2, "cnncli: error: --layout nhwc misreads 'p.h5' (its layout is nchw)\n")


def test_a_layout_option_against_the_cases_layout_still_overrides_it_with_a_note(nchw_case):
    # SPEC: options override the case. A (2, 3, 8, 8) read as NHWC with f=2: 3x8 with 8 channels -> (2, 1, 4, 8)
    res = run(["forward", "p.h5", "--layout", "nhwc", "--f", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["notes"] == ["--layout nhwc overrides the case's layout nchw"]
    assert doc["outputs"]["A"]["shape"] == [2, 1, 4, 8]
    # the same layout as the case's, or none given: no note, and the case's arrays read as it says
    for extra in (["--layout", "nchw"], []):
        res = run(["forward", "c.h5", *extra, "--json"])
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["notes"] == ["no bias given: b = 0"] and doc["outputs"]["Z"]["shape"] == [2, 5, 4, 4]


def test_a_gradient_under_a_contradicting_layout(nchw_case):
    # conv 3x3 over 6x6 (pad 0): read as NHWC the arrays disagree at W, but a 3-D dZ is wrong read as the
    # case says too: "misreads" would send the user to another error, so the first one is told
    np.save("g3.npy", np.ones((5, 4, 4)))
    res = run(["backward", "c.h5", "--layout", "nhwc", "--grad", "g3.npy"])
    assert res.stderr == "cnncli: error: W 'c.h5:/W' is 5x4x3x3; A_prev's 6 channels need 5x4x6x3\n"
    np.save("g4.npy", np.ones((2, 5, 4, 4)))  # NCHW's dZ: as the case says, all agree
    res = run(["backward", "c.h5", "--layout", "nhwc", "--grad", "g4.npy"])
    assert res.stderr == "cnncli: error: --layout nhwc misreads 'c.h5' (its layout is nchw)\n"
    # pool p.h5 with f=2 read as NHWC: A (2, 3, 8, 8) -> output (2, 1, 4, 8); a dA of NCHW's (2, 3, 4, 4)
    np.save("dA.npy", np.ones((2, 3, 4, 4)))
    res = run(["backward", "p.h5", "--layout", "nhwc", "--f", "2", "--grad", "dA.npy"])
    assert (res.exit_code, res.stderr) == (2, "cnncli: error: --layout nhwc misreads 'p.h5' (its layout is nchw)\n")
    # a gradient of the wrong ndim is wrong in any layout: its own message
    res = run(["backward", "p.h5", "--layout", "nhwc", "--f", "2", "--grad", "g3.npy"])
    assert res.stderr == "cnncli: error: dA 'g3.npy' is (5, 4, 4); expected the output's (2, 1, 4, 8)\n"


def test_misreads_is_said_only_when_the_arrays_agree_read_as_the_case_says(tmp_path, monkeypatch):
    # A case whose layout attribute is wrong (its arrays are NHWC): --layout nhwc is the right reading, so
    # an error the arrays have under it is the error to tell, never "misreads"
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    h5_case("wrong.h5", rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 4)), layer="conv",
            layout="nchw")
    h5_case("pwrong.h5", rng.standard_normal((2, 6, 6, 3)), layer="pool", layout="nchw", f=2)
    np.save("g_bad.npy", np.ones((2, 4, 4, 5)))
    assert run(["forward", "wrong.h5", "--layout", "nhwc"]).exit_code == 0
    cases = [
        (["backward", "wrong.h5", "--layout", "nhwc", "--grad", "g_bad.npy"],
         "dZ 'g_bad.npy' is (2, 4, 4, 5); expected (2, 4, 4, 4)"),
        (["forward", "wrong.h5", "--layout", "nhwc", "--dilation", "50"],
         "no 3x3 window (dilated to 101x101) fits a 6x6 input padded by 0"),
        (["forward", "wrong.h5", "--layout", "nhwc", "--groups", "2"],
         "groups=2 must divide the input channels n_C_prev=3"),
        (["forward", "pwrong.h5", "--layout", "nhwc", "--f", "7"], "no 7x7 window fits a 6x6 input padded by 0"),
    ]
    for args, message in cases:
        res = run(args)
        assert (res.exit_code, res.stderr) == (2, f"cnncli: error: {message}\n"), args


def test_a_conv_cases_f_is_checked_against_w_as_f_is(tmp_path, monkeypatch):
    # --f that is not W's window is refused, and so is the API's hparameters['f']: a case's f too
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    h5_case("cf.h5", rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 4)), layer="conv", f=5)
    res = run(["forward", "cf.h5"])
    assert (res.exit_code, res.stderr) == (
        2, "cnncli: error: 'cf.h5' sets f=5x5, but W 'cf.h5:/W' is 3x3\n")
    assert run(["forward", "cf.h5", "--f", "3"]).exit_code == 0  # the option wins, as any does
    h5_case("cf3.h5", rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 4)), layer="conv", f=3)
    assert run(["forward", "cf3.h5"]).exit_code == 0


def test_an_attribute_of_the_other_layer_kind_is_noted_not_silently_dropped(tmp_path, arrays):
    # --mode on a conv layer is refused; a conv case's mode, ceil_mode or count_include_pad (or a pool case's
    # groups) were dropped without a word, though the README promises a note for every attribute not read
    A, W = arrays
    conv = h5_case(tmp_path / "c.h5", A, W, layer="conv", mode="average", ceil_mode=1, stride=1)
    res = run(["forward", conv, "--json"])
    assert res.exit_code == 0, res.stderr
    assert "the case's mode, ceil_mode are not used: a conv layer has none" in json.loads(res.stdout)["notes"]
    pool = h5_case(tmp_path / "p.h5", A, layer="pool", f=2, groups=2)
    res = run(["forward", pool, "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["notes"] == ["the case's groups is not used: a pool layer has none"]
    res = run(["forward", h5_case(tmp_path / "q.h5", A, layer="pool", f=2, mode="max"), "--json"])
    assert json.loads(res.stdout)["notes"] == []  # its own kind's attributes: nothing to say
