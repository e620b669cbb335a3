"""Every table people see at 80 and 60 columns (issue 11 part 1): no value cut, no line too wide.

The real app, through Typer's runner; its output is not a terminal, so it follows COLUMNS.
"""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
IMPLS = ROOT / "tests" / "impls"
make_bugs = sys.modules["cnncli_tests_make_bugs"]  # loaded once by tests/conftest.py


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("widths")
    rng = np.random.default_rng(0)
    np.save(folder / "A.npy", rng.standard_normal((2, 8, 8, 3)))
    np.save(folder / "W.npy", rng.standard_normal((3, 3, 3, 4)))
    np.save(folder / "dZ.npy", rng.standard_normal((2, 4, 4, 4)))
    return folder


def _argvs(a):
    return {
        "size table": ["shape", "--f", "3", "--stride", "2", "--pad", "1"],
        "one layer": ["shape", "--input", "28x28x1", "--f", "5", "--pad", "same", "--filters", "6"],
        "stack": ["shape", "--input", "224x224x3", "conv:f=7,s=2,p=3,c=64", "pool:f=3,s=2,p=1",
                  "conv:f=3,p=1,c=128", "conv:f=3,s=2,c=256"],
        "stack size table": ["shape", "conv:f=3,s=2", "pool:f=2"],
        # the SIGNS stack: a last column of long text beside four number columns
        "stack with unread input": ["shape", "--input", "64x64x3", "conv:f=4,p=same,c=8", "pool:f=8,s=8",
                                    "conv:f=2,c=16", "pool:f=4,s=4"],
        "model stack": ["shape", "--input", "32x32x3", "conv:f=3,c=16,p=1", "bn", "relu", "pool:f=2",
                        "tconv:f=2,s=2,c=8", "gap", "flatten", "fc:c=10"],
        "printed model": ["shape", "--from", str(ROOT / "tests" / "shape" / "printed" / "dcgan_generator.txt"),
                          "--input", "1x100x1x1", "--layout", "nchw"],
        "tconv target": ["shape", "--input", "16", "--layer", "tconv", "--f", "4", "--target", "32"],
        "target": ["shape", "--input", "28", "--f", "4", "--target", "13"],
        "forward": ["forward", str(a / "A.npy"), "--weights", str(a / "W.npy"), "--pad", "same", "--stride", "2"],
        "forward case": ["forward", str(EXAMPLES / "conv_case.h5")],
        "backward": ["backward", str(a / "A.npy"), "--weights", str(a / "W.npy"), "--pad", "same", "--stride", "2",
                     "--grad", str(a / "dZ.npy")],
        "gradcheck battery": ["gradcheck"],
        "gradcheck case": ["gradcheck", str(EXAMPLES / "conv_case.h5")],
        "gradcheck pool": ["gradcheck", str(a / "A.npy"), "--f", "2", "--mode", "average"],
        # --only keeps the user-code runs short; the tables are those of a whole check.
        "gradcheck impl": ["gradcheck", "--impl", str(IMPLS / "correct.py"), "--only",
                           "create_mask_from_window,conv_backward"],
        "gradcheck impl failing": ["gradcheck", "--impl", str(make_bugs.bug_file("crop_minus_pad")), "--only",
                                   "create_mask_from_window,conv_backward"],
        "gradcheck impl wrong values": ["gradcheck", "--impl", str(make_bugs.bug_file("dW_hw_swapped")), "--only",
                                        "conv_backward"],
    }


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("name", list(_argvs(Path("."))))
def test_every_table_fits_with_values_whole(name, columns, arrays, monkeypatch):
    # the arrays by short names, as typed at a prompt: a long path of the user's may push a line over (a
    # temporary folder's length is the test runner's, not cnncli's)
    monkeypatch.chdir(arrays)
    result = runner.invoke(app, _argvs(Path("."))[name], env={"COLUMNS": str(columns)})
    assert result.exit_code in (0, 1), result.stderr
    lines = result.stdout.splitlines() + [line for line in result.stderr.splitlines()
                                          if not line.startswith("cnncli: error:")]
    assert lines
    assert "…" not in result.stdout + result.stderr
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, too_wide
    # A table cut to the width loses its right border (rich crops without an ellipsis).
    cropped = [line for line in lines if _BOX.match(line) and not _BOX.match(line[-1])]
    assert not cropped, cropped
    # Nothing dropped either: every word of the wide output is on the narrow one, whole.
    missing = _wide_words(name, Path(".")) - _words(result.stdout + result.stderr)
    assert not missing, missing


_WIDE = {}
_BOX = re.compile("[\u2500-\u257f]")


def _wide_words(name, arrays) -> set:
    if name not in _WIDE:
        wide = runner.invoke(app, _argvs(arrays)[name], env={"COLUMNS": "240"})
        _WIDE[name] = _words(wide.stdout + wide.stderr)
    return _WIDE[name]


def _words(text: str) -> set:
    return set(re.findall(r"[^\s\u2500-\u257f]+", re.sub(r"time: [\d.]+ s", "", text)))


def test_wide_output_keeps_the_one_table(arrays):
    result = runner.invoke(app, _argvs(arrays)["stack"], env={"COLUMNS": "200"})
    headers = [line for line in result.stdout.splitlines() if "layer" in line and "MACs" in line]
    assert len(headers) == 1


@pytest.mark.parametrize("columns", [80, 60])
def test_numbers_of_the_stack_are_whole(arrays, columns):
    result = runner.invoke(app, _argvs(arrays)["stack"], env={"COLUMNS": str(columns)})
    # conv 7x7, 3 -> 64 channels, stride 2 pad 3 on 224x224: 112x112 outputs
    params = 7 * 7 * 3 * 64 + 64
    macs = 112 * 112 * 64 * 7 * 7 * 3
    assert f"{params:,}" in result.stdout              # 9,472
    assert f"{macs / 1e6:.1f}M" in result.stdout         # 118.0M
    assert "112x112x64" in result.stdout
