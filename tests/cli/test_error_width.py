"""What a person sees of a bad input fits an 80-column terminal: one line, at most 80 characters
(the "cnncli: error: " prefix included), naming the bad value, exit 2.

The files have short relative names, as typed at a prompt; a long path of the user's may still push a
line over, which is why the fixed words of each message are kept short."""

import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()
WIDTH = 80


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save("A.npy", rng.standard_normal((2, 6, 6, 4)))
    np.save("W.npy", rng.standard_normal((3, 3, 4, 8)))
    np.save("W5.npy", rng.standard_normal((3, 3, 5, 8)))
    np.save("g.npy", rng.standard_normal((2, 6, 5, 4)))  # conv 3x3 over 6x6 gives (2, 4, 4, 8)
    np.save("s.npy", np.array(["a"]))
    with open("p.npy", "wb") as fh:
        pickle.dump([1, 2], fh)
    with open("taken.npy", "wb") as fh:
        fh.write(b"keep")
    return tmp_path


# (argv, words that name the bad value in the line)
BAD = [
    (["backward", "A.npy", "--weights", "W.npy", "--grad", "g.npy"], "dZ 'g.npy' is (2, 6, 5, 4)"),
    (["forward", "A.npy", "--weights", "W.npy", "--pad", "nope"], "pad 'nope'"),
    (["forward", "A.npy", "--weights", "W5.npy"], "W 'W5.npy' is (3, 3, 5, 8)"),
    (["forward", "s.npy", "--f", "2"], "dtype <U1"),
    (["forward", "p.npy", "--f", "2"], "'p.npy' holds pickled objects"),
    (["forward", "nowhere.npy", "--f", "2"], "'nowhere.npy': no such file"),
    (["forward", "A.npy", "--f", "2", "-o", "out.txt"], "'.txt'"),
    (["forward", "A.npy", "--f", "2", "-o", "taken.npy"], "-o 'taken.npy' exists"),
    (["forward", "A.npy", "--f", "2", "--layout", ""], "--layout is empty"),
    (["forward", "A.npy", "--f", "2", "-o", "-", "--json"], "--json and -o -"),
    (["forward", "A.npy"], "layer kind unknown"),
    (["backward", "A.npy", "--f", "2"], "backward needs dA"),
    (["shape", "--input", "64x", "--f", "3"], "--input '64x'"),
    (["shape", "--input", "28", "conv:f=3,q=1"], "unknown key 'q'"),
    (["shape", "--input", "28", "--layer", "dense", "--f", "3"], "--layer 'dense'"),
    (["shape", "--input", "28", "--f", "3", "--json", "true"], "--json takes no value: for 'true'"),
    (["shape", "--input", "28", "--kernel-size", "3"], "--kernel-size; did you mean --f?"),
    (["gradcheck", "--pad", "1"], "--pad needs a SOURCE"),
    (["gradcheck", "--dtype", "float32"], "drop --dtype float32"),
    (["gradcheck", "--impl", "nowhere.py"], "--impl 'nowhere.py': no such file"),
    (["gradcheck", "--impl", "nowhere.py", "--only", "conv_backwards"], "did you mean conv_backward?"),
    # the engine's own refusals
    (["forward", "A.npy", "--weights", "W.npy", "--dilation", "3"], "no 3x3 window (dilated to 7x7) fits"),
    (["forward", "A.npy", "--f", "3", "--stride", "3", "--pad", "3"], "pad 3 leaves a 3x3 pooling window only padding"),
    (["forward", "A.npy", "--f", "3", "--stride", "3", "--pad", "3,0,0,0"], "pad 3,0,0,0 leaves a 3x3 pooling window"),
    (["forward", "A.npy", "--f", "3", "--stride", "2", "--pad", "5,0,0,0", "--dilation", "4"],
     "no 3x3 window (dilated to 9x9) fits a 6x6 input padded by 5,0,0,0"),
    (["forward", "A.npy", "--weights", "W.npy", "--pad", "1000000"], "output 1x2000004x2000004x8 needs"),
]


@pytest.mark.parametrize("argv, words", BAD, ids=[" ".join(a)[:50] for a, _ in BAD])
def test_a_bad_input_is_one_line_of_at_most_80_columns(here, argv, words):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert lines[0].startswith("cnncli: error: ") and words in lines[0], lines[0]
    assert len(lines[0]) <= WIDTH, f"{len(lines[0])} columns: {lines[0]}"
    assert (here / "taken.npy").read_bytes() == b"keep"


def test_an_error_about_a_huge_value_is_cut_in_its_middle(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from cnncli.cli import app
    from cnncli.cli.app import MAX_ERROR_CHARS

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", A_prev=rng.standard_normal((1, 6, 6, 3)), W=rng.standard_normal((3, 3, 3, 4)),
             b=np.zeros(4), stride=np.zeros((100, 100)))  # a 50 KB value in the message
    r = CliRunner().invoke(app, ["gradcheck", str(tmp_path / "big.npz")])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    line = r.stderr.rstrip("\n")
    assert len(line) < len("cnncli: error: ") + MAX_ERROR_CHARS + 40
    assert "stride must be an int or a pair (h, w), got" in line and " characters ...] " in line


def _exercise_case(path, A_shape=(2, 5, 7, 4), f=3, n_C=8, pad=1, stride=2):
    import h5py

    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as h5:
        h5["A_prev"], h5["W"] = rng.standard_normal(A_shape), rng.standard_normal((f, f, A_shape[3], n_C))
        h5["b"] = np.zeros((1, 1, 1, n_C))
        h5.attrs.update(layer="conv", pad=pad, stride=stride)


# 5x7 padded by 1, 3x3 windows at stride 2: floor((5 + 2 - 3) / 2) + 1 = 3 rows, floor((7 + 2 - 3) / 2) + 1 = 4 columns
GRAD_REFS = [  # the whole words where they fit, fewer, then shapes written 10x4x4x8
    ("dZ.npy", "dZ 'dZ.npy' is (10, 4, 4, 8); expected the output's (2, 3, 4, 8)"),
    ("grads.h5:/layer2/dZ", "dZ 'grads.h5:/layer2/dZ' is (10, 4, 4, 8); expected (2, 3, 4, 8)"),
    ("examples/grads.h5:/layer2/dZ", "dZ 'examples/grads.h5:/layer2/dZ' is 10x4x4x8; expected 2x3x4x8"),
    ("examples/dZ_wrong_shape.npy", "dZ 'examples/dZ_wrong_shape.npy' is 10x4x4x8; expected 2x3x4x8"),
]


@pytest.mark.parametrize("ref, line", GRAD_REFS)
def test_a_misshapen_gradient_from_a_realistic_path_fits_80_columns(tmp_path, monkeypatch, ref, line):
    # "expected the output's (2, 3, 4, 8)" took the line to 100 columns with examples/dZ_wrong_shape.npy
    import h5py

    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()
    _exercise_case("examples/exercise_conv.h5")
    wrong = np.ones((10, 4, 4, 8))
    if ".h5:" in ref:
        with h5py.File(ref.split(":")[0], "w") as h5:
            h5["layer2/dZ"] = wrong
    else:
        np.save(ref, wrong)
    result = runner.invoke(app, ["backward", "examples/exercise_conv.h5", "--grad", ref, "-o", "out.npz"])
    assert (result.exit_code, result.stderr) == (2, f"cnncli: error: {line}\n")
    assert len(result.stderr.rstrip("\n")) <= WIDTH and "Traceback" not in result.output
    assert not (tmp_path / "out.npz").exists()


def test_a_misshapen_gradient_from_a_long_path_keeps_the_whole_words(tmp_path, monkeypatch):
    # no wording fits: the line keeps all its words, and the ref uncut (a cut one would not find the file)
    monkeypatch.chdir(tmp_path)
    _exercise_case("c.h5")
    ref = "gradients_of_the_second_layer_for_batch_0.npy"
    np.save(ref, np.ones((2, 3, 4, 7)))
    result = runner.invoke(app, ["backward", "c.h5", "--grad", ref])
    assert (result.exit_code, result.stderr) == (
        2, f"cnncli: error: dZ {ref!r} is (2, 3, 4, 7); expected the output's (2, 3, 4, 8)\n")


# W (3, 3, 4, 8) read under --layout nchw is C_out=3, C_in=3 of a 4x8 window, while A_prev (2, 5, 7, 4) read
# so has 5 channels: W must be (3, 5, 4, 8). In NCHW the filters are (C_out, C_in/groups, kH, kW).
W_REFS = [  # the whole words where they fit, then shapes written 3x3x4x8, then the channel count alone
    ("W.npy", [], "W 'W.npy' is (3, 3, 4, 8); A_prev's 5 channels need (3, 5, 4, 8)"),
    ("conv.h5", [], "W 'conv.h5:/W' is 3x3x4x8; A_prev's 5 channels need 3x5x4x8"),
    ("exercise_conv.h5", [], "W 'exercise_conv.h5:/W' is 3x3x4x8; 5 channels need 3x5x4x8"),
    # a case's groups are blamed after the words, and counted in the fitting
    ("exercise_conv.h5", ["--groups", "1"], "W 'exercise_conv.h5:/W' is 3x3x4x8; 5 channels need 3x5x4x8"),
    # the channels go before the shapes do
    ("conv_layer_one_exercise_data.h5", [], "W 'conv_layer_one_exercise_data.h5:/W' is 3x3x4x8, not 3x5x4x8"),
    # no wording fits (a long path): the whole words, the ref uncut
    ("the_convolution_of_the_exercise_in_week_one.h5", [],
     "W 'the_convolution_of_the_exercise_in_week_one.h5:/W' is (3, 3, 4, 8); A_prev's 5 channels need (3, 5, 4, 8)"),
]


@pytest.mark.parametrize("path, extra, line", W_REFS)
def test_filters_whose_channels_disagree_fit_80_columns(tmp_path, monkeypatch, path, extra, line):
    # 'W 'exercise_conv.h5:/W' is (3, 3, 4, 8); A_prev's 5 channels need (3, 5, 4, 8)' was 93 columns
    monkeypatch.chdir(tmp_path)
    if path == "W.npy":  # the filters alone in a file of their own: the ref is the shortest there is
        _exercise_case("c.h5")
        import h5py

        with h5py.File("c.h5") as h5:
            np.save(path, h5["W"][()])
        argv = ["forward", "c.h5", "--weights", path]
    else:
        _exercise_case(path)
        argv = ["forward", path]
    result = runner.invoke(app, [*argv, "--layout", "nchw", *extra, "-o", "out.npy"])
    assert (result.exit_code, result.stderr) == (2, f"cnncli: error: {line}\n")
    assert len(result.stderr.rstrip("\n")) <= WIDTH or "week_one" in path
    assert not (tmp_path / "out.npy").exists()


def test_a_case_that_sets_groups_is_blamed_within_80_columns(tmp_path, monkeypatch):
    import h5py

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    with h5py.File("g.h5", "w") as h5:  # 6 channels in 2 groups need W (f, f, 3, n_C); this W has 2 per group
        h5["A_prev"], h5["W"] = rng.standard_normal((1, 5, 5, 6)), rng.standard_normal((3, 3, 2, 4))
        h5.attrs.update(layer="conv", groups=2)
    result = runner.invoke(app, ["forward", "g.h5", "-o", "out.npy"])
    line = "W 'g.h5:/W' is 3x3x2x4, not 3x3x3x4 ('g.h5' sets groups=2)"
    assert (result.exit_code, result.stderr) == (2, f"cnncli: error: {line}\n")
    assert len(result.stderr.rstrip("\n")) <= WIDTH
