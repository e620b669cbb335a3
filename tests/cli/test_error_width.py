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
