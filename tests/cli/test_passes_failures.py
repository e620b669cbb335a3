"""Every bad input of forward/backward through the real app: exit 2, one line naming the value,
no traceback, and no output file left behind."""

import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def d(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((2, 6, 6, 4)))
    np.save(tmp_path / "W.npy", rng.standard_normal((3, 3, 4, 8)))
    np.save(tmp_path / "b.npy", rng.standard_normal(8))
    np.save(tmp_path / "W5.npy", rng.standard_normal((3, 3, 5, 8)))
    np.save(tmp_path / "dZ.npy", rng.standard_normal((2, 4, 4, 8)))
    np.save(tmp_path / "A3.npy", rng.standard_normal((6, 6, 4)))
    np.save(tmp_path / "An.npy", rng.standard_normal((2, 4, 6, 6)))  # NCHW twins of A, W, W5
    np.save(tmp_path / "Wn.npy", rng.standard_normal((8, 4, 3, 3)))
    np.save(tmp_path / "Wn5.npy", rng.standard_normal((8, 5, 3, 3)))
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps(np.ones(3)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "A.npy").read_bytes()[:200])
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 but not really a zip file")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["train/x"] = rng.standard_normal((2, 6, 6, 4))
        f["train/y"] = np.arange(2)
    (tmp_path / "cut.h5").write_bytes((tmp_path / "data.h5").read_bytes()[:3000])
    np.savez(tmp_path / "two.npz", a=np.ones(2), b=np.ones(2))
    (tmp_path / "out").mkdir()
    return tmp_path


CONV = ["--weights", "{d}/W.npy", "--bias", "{d}/b.npy"]

CASES = [
    # missing, unreadable, truncated or corrupt inputs
    (["forward", "{d}/nope.npy", "--f", "2"], "'{d}/nope.npy': no such file"),
    (["forward", "{d}/out", "--f", "2"], "'{d}/out' is a folder, not an array file"),
    (["forward", "{d}/A.npy/x.npy", "--f", "2"], "'{d}/A.npy/x.npy': cannot read (Not a directory)"),
    (["forward", "{d}/cut.npy", "--f", "2"], "'{d}/cut.npy' is damaged (cut short: 200 of 2432 bytes)"),
    (["forward", "{d}/junk.npz", "--f", "2"], "'{d}/junk.npz' is damaged (File is not a zip file)"),
    (["forward", "{d}/junk.h5", "--f", "2"], "'{d}/junk.h5' is damaged ("),
    (["forward", "{d}/cut.h5:/train/x", "--f", "2"], "'{d}/cut.h5' is damaged (truncated file)\n"),
    (["forward", "{d}/A.npy", "--weights", "{d}/nope.npy"], "'{d}/nope.npy': no such file"),
    # unknown dataset or name
    (["forward", "{d}/data.h5:/train/z", "--f", "2"], "'{d}/data.h5' has no dataset '/train/z'; it has: /train/x, /train/y"),
    (["forward", "{d}/data.h5", "--f", "2"], "'{d}/data.h5' holds 2 datasets; name one, e.g. {d}/data.h5:/train/x"),
    (["forward", "{d}/two.npz:c", "--f", "2"], "'{d}/two.npz' has no array 'c'; it has: a, b"),
    # pickles and refused dtypes
    (["forward", "{d}/obj.npy", "--f", "2"], "'{d}/obj.npy' holds pickled objects; cnncli never unpickles"),
    (["forward", "{d}/pickle.npy", "--f", "2"], "'{d}/pickle.npy' holds pickled objects"),
    (["forward", "{d}/str.npy", "--f", "2"], "'{d}/str.npy' has dtype <U1; expected bool, int or float data"),
    # wrong ndim and shape mismatches
    (["forward", "{d}/A3.npy", "--f", "2"], "A_prev '{d}/A3.npy' is (6, 6, 4); expected 4-D (m, n_H, n_W, n_C)"),
    (["forward", "{d}/A.npy", "--weights", "{d}/b.npy"], "W '{d}/b.npy' is (8,); expected 4-D (f, f, n_C_prev/groups, n_C)"),
    (["forward", "{d}/A3.npy", "--weights", "{d}/W.npy", "--layout", "nchw"], "expected 4-D (m, C, H, W)"),
    (["forward", "{d}/A.npy", "--weights", "{d}/W5.npy"],
     "W '{d}/W5.npy' is (3, 3, 5, 8); A_prev's 4 channels need (3, 3, 4, 8)"),
    (["forward", "{d}/A.npy", "--weights", "{d}/W.npy", "--bias", "{d}/W.npy"],
     "b '{d}/W.npy' is (3, 3, 4, 8); expected (8,) or (1, 1, 1, 8)"),
    (["forward", "{d}/A.npy", *CONV, "--groups", "3"], "groups=3 must divide the input channels n_C_prev=4"),
    (["forward", "{d}/A.npy", *CONV, "--groups", "2"], "W '{d}/W.npy' is (3, 3, 4, 8); 4 channels, groups=2 need (3, 3, 2, 8)"),
    (["backward", "{d}/A.npy", *CONV, "--grad", "{d}/A.npy"],
     "dZ '{d}/A.npy' is (2, 6, 6, 4); expected the output's (2, 4, 4, 8)"),
    # with --layout nchw, shapes are named in NCHW order
    (["forward", "{d}/An.npy", "--weights", "{d}/Wn5.npy", "--layout", "nchw"],
     "W '{d}/Wn5.npy' is (8, 5, 3, 3); A_prev's 4 channels need (8, 4, 3, 3)"),
    (["backward", "{d}/An.npy", "--weights", "{d}/Wn.npy", "--grad", "{d}/dZ.npy", "--layout", "nchw"],
     "dZ '{d}/dZ.npy' is (2, 4, 4, 8); expected the output's (2, 8, 4, 4)"),
    (["backward", "{d}/A.npy", *CONV], "backward needs dZ: give --grad ARRAY or a case file with dZ"),
    (["forward", "{d}/A.npy", *CONV, "--f", "2"], "--f 2 disagrees with the 3x3 kernel of W"),
    # bad hyperparameter values or words
    (["forward", "{d}/A.npy", *CONV, "--stride", "0"], "stride must be >= 1, got 0"),
    (["forward", "{d}/A.npy", *CONV, "--pad", "-1"], "pad must be >= 0, got -1"),
    (["forward", "{d}/A.npy", *CONV, "--pad", "sometimes"], "pad 'sometimes': expected an int, 'h,w', 't,b,l,r', valid or same"),
    (["forward", "{d}/A.npy", *CONV, "--dilation", "4"], "no 3x3 window (dilated to 9x9) fits a 6x6 input padded by 0"),
    (["forward", "{d}/A.npy", "--f", "7"], "no 7x7 window fits a 6x6 input padded by 0"),
    (["forward", "{d}/A.npy", "--f", "2", "--mode", "median"], "mode must be 'max' or 'average' (or 'avg'), got 'median'"),
    (["forward", "{d}/A.npy", "--layer", "dense"], "--layer must be 'conv' or 'pool', got 'dense'"),
    (["forward", "{d}/A.npy", "--f", "2", "--layout", "chw"], "--layout must be 'nhwc' or 'nchw', got 'chw'"),
    (["forward", "{d}/A.npy", "--f", "2", "--dtype", "float16"], "--dtype must be 'float64' or 'float32', got 'float16'"),
    (["forward", "{d}/A.npy"], "layer kind unknown: give --layer, --weights (conv) or --f (pool)"),
    (["forward", "{d}/A.npy", "--layer", "pool"], "a pool layer needs a window size: give --f F"),
    (["forward", "{d}/A.npy", "--layer", "conv"], "a conv layer needs filters: give --weights ARRAY"),
    (["forward", "{d}/A.npy", "--f", "2", "--groups", "2"], "--groups applies to conv layers only; this is a pool layer"),
    (["forward", "{d}/A.npy", *CONV, "--mode", "max"], "--mode applies to pooling layers only; this is a conv layer"),
    (["forward", "{d}/A.npy", "--f", "2", "--stride", "x"], "stride must be an integer, got 'x'"),
    # outputs
    (["forward", "{d}/A.npy", "--f", "2", "-o", "{d}/missing/out.npy"], "-o '{d}/missing/out.npy': folder '{d}/missing' does not exist"),
    (["forward", "{d}/A.npy", "--f", "2", "-o", "{d}/out.txt"], "unknown type '.txt'; expected .npy, .npz, .h5 or -"),
    (["forward", "{d}/A.npy", "--f", "2", "-o", "{d}/out"], "-o '{d}/out' is a folder"),
    (["forward", "{d}/A.npy", "--f", "2", "-o", "-", "--json"], "--json and -o - both write to stdout; use -o FILE with --json"),
    (["forward", "-", "--weights", "-"], "only one input can be '-' (stdin), not SOURCE and --weights"),
]


def _outputs(d):
    return sorted(p for p in os.listdir(d) if p.startswith(("res", ".res")) or p.endswith(".part"))


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:1] + a[2:]) [:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(d, args, message):
    argv = [a.format(d=d) for a in args]
    if "-o" not in argv:
        argv += ["-o", str(d / "res.h5")]
    result = runner.invoke(app, argv, input=b"")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("cnncli: error: ")
    assert message.format(d=d) in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert _outputs(d) == []


def test_empty_stdin(d):
    result = runner.invoke(app, ["forward", "-", "--f", "2", "-o", str(d / "res.npy")], input=b"")
    assert result.exit_code == 2
    assert result.stderr == "cnncli: error: standard input is empty; '-' expects .npy bytes from a pipe\n"
    assert _outputs(d) == []


def test_existing_output_is_refused_and_left_untouched(d):
    (d / "res.npy").write_bytes(b"keep me")
    result = runner.invoke(app, ["forward", str(d / "A.npy"), "--f", "2", "-o", str(d / "res.npy")])
    assert result.exit_code == 2
    assert result.stderr == f"cnncli: error: -o '{d}/res.npy' exists; use --force to overwrite it\n"
    assert (d / "res.npy").read_bytes() == b"keep me"


def test_failure_after_output_opened_keeps_the_old_file(d):
    # --force with a bad gradient: the error comes after the destination was accepted.
    (d / "res.h5").write_bytes(b"old")
    result = runner.invoke(app, ["backward", str(d / "A.npy"), "--weights", str(d / "W.npy"),
                                 "--grad", str(d / "cut.npy"), "-o", str(d / "res.h5"), "--force"])
    assert result.exit_code == 2
    assert (d / "res.h5").read_bytes() == b"old"
    assert sorted(os.listdir(d)).count("res.h5") == 1 and not [p for p in os.listdir(d) if p.endswith(".part")]


def test_debug_shows_a_traceback(d, monkeypatch):
    # --debug sets a process-wide flag; monkeypatch restores it so later tests see no tracebacks.
    monkeypatch.setattr(app_state, "debug", False)
    result = runner.invoke(app, ["forward", str(d / "A.npy"), "--f", "9", "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and result.stderr.endswith("padded by 0\n")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_binary_output_to_a_terminal_is_refused(tmp_path):
    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))
    leader, follower = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "cnncli", "forward", str(tmp_path / "A.npy"), "--f", "2",
                               "-o", "-"], stdout=follower, stderr=subprocess.PIPE, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2
    assert proc.stderr == "cnncli: error: -o - writes .npy bytes; stdout is a terminal: redirect or pipe it\n"


@pytest.mark.parametrize("out", ["x.npy", "x.npz", "x.h5"])
def test_a_folder_that_takes_no_new_files_is_named_not_the_temporary_file(tmp_path, monkeypatch, out):
    # /proc passes the access check but refuses new files: the line named '/proc/.x.npy.iu194a_o.part' and
    # "No such file or directory"; here a folder whose mkstemp fails as /proc's does
    import tempfile

    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))

    def refuse(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / f".{out}.abc.part"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = str(tmp_path / out)
    result = CliRunner().invoke(app, ["forward", str(tmp_path / "A.npy"), "--f", "2", "-o", target])
    assert (result.exit_code, result.stderr) == (
        2, f"cnncli: error: -o {target!r}: folder {str(tmp_path)!r} takes no new files; write elsewhere\n")
    assert sorted(os.listdir(tmp_path)) == ["A.npy"]


def test_a_full_disk_at_the_temporary_file_keeps_the_systems_words(tmp_path, monkeypatch):
    # only a folder that takes no files is worded as one: ENOSPC says itself
    import tempfile

    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / ".x.npy.abc.part"))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    result = CliRunner().invoke(app, ["forward", str(tmp_path / "A.npy"), "--f", "2", "-o", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and result.stderr.startswith("cnncli: error: cannot complete: No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["A.npy"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_writing_into_proc_is_refused_in_one_line_naming_the_output():
    result = subprocess.run([sys.executable, "-m", "cnncli", "forward", "-", "--f", "1", "-o", "/proc/x.npy"],
                            input=_npy_bytes(np.ones((1, 2, 2, 1))), capture_output=True,
                            env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__))))))
    assert result.returncode == 2
    # 81 columns with "; write elsewhere": the shorter wording
    assert result.stderr.decode() == "cnncli: error: -o '/proc/x.npy': folder '/proc' takes no new files\n"


def _npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
