"""Layer calls whose arrays could never be allocated are refused first: exit 2, one line, no file, no hang.

Real subprocesses with a timeout: before this was fixed, some of these calls allocated until the
machine ran out of memory and others looped over two billion window taps.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    d = tmp_path_factory.mktemp("astro")
    np.save(d / "A.npy", np.random.default_rng(0).normal(size=(2, 6, 6, 3)))
    np.save(d / "W.npy", np.ones((3, 3, 3, 4)))
    np.save(d / "G.npy", np.ones((2, 1, 1, 3)))
    return d


def _run(d, *args):
    proc = subprocess.run([sys.executable, "-m", "cnncli", *args], cwd=d, env=ENV, capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _side(pad: int, n: int = 6, f: int = 3) -> int:
    return n + 2 * pad - f + 1  # stride 1: one output row per window start


#: 2000000006 x 2000000006 x 3 padded pixels of 8 bytes, in EiB (2**60 bytes)
_PADDED_EIB = f"padded input needs {2000000006 ** 2 * 3 * 8 / 2**60:.1f} EiB per example; memory is "


@pytest.mark.parametrize("args, message", [
    (["forward", "A.npy", "--weights", "W.npy", "--pad", "1000000000"],
     f"output 1x{_side(10**9)}x{_side(10**9)}x4: "),
    (["forward", "A.npy", "--weights", "W.npy", "--pad", "99999999999999999999999"],
     "output needs "),  # its dims (24 digits each) give way to 80 columns
    (["forward", "A.npy", "--weights", "W.npy", "--pad", "1000000000", "-o", "x.h5"],
     f"output 1x{_side(10**9)}x{_side(10**9)}x4: "),
    (["forward", "A.npy", "--weights", "W.npy", "--pad", "99999999999999999999999", "-o", "x.npy"],
     "output needs "),
    (["gradcheck", "A.npy", "--weights", "W.npy", "--pad", "1000000000"],
     f"output 1x{_side(10**9)}x{_side(10**9)}x4: "),
    # --f alone makes a pooling layer: a 2e9-wide window over the padded 6x6 input (its dims give way to 80 columns)
    (["forward", "A.npy", "--f", "2000000000", "--pad", "1000000000"],
     _PADDED_EIB),
    (["gradcheck", "A.npy", "--f", "2000000000", "--pad", "1000000000"],
     _PADDED_EIB),
    (["backward", "A.npy", "--f", "2000000000", "--pad", "1000000000", "--grad", "G.npy", "-o", "dA.npy"],
     _PADDED_EIB),
])
def test_astronomical_calls_are_refused_before_allocating(arrays, args, message):
    before = set(os.listdir(arrays))
    code, out, err = _run(arrays, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnncli: error: " + message), err
    assert "memory" in lines[0] and "Traceback" not in err
    if "99999999999999999999999" not in args:  # there the size alone is 34 digits of EiB: its line is the shortest
        assert len(lines[0]) <= 80, lines[0]
    assert set(os.listdir(arrays)) == before  # no output, no temporary file


def test_a_huge_window_that_fits_is_computed_exactly(arrays):
    # 400x400 window, stride 3, pad 200, over a 6x6 input: (406 - 400) // 3 + 1 = 3 windows per axis,
    # starting at -200, -197, -194; each holds the whole input. Few of its 160000 taps read the input.
    code, out, err = _run(arrays, "forward", "A.npy", "--f", "400", "--stride", "3", "--pad", "200", "-o", "m.npy",
                          "--force")
    assert code == 0, err
    A = np.load(arrays / "A.npy")
    got = np.load(arrays / "m.npy")
    assert got.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(got, np.broadcast_to(A.max(axis=(1, 2))[:, None, None, :], got.shape))
    os.remove(arrays / "m.npy")
