"""Astronomical sizes: shape answers exactly, fast and in little memory (issue: closed-form arithmetic).

Each command runs in a real process that reports its own peak RSS; the timeout is
generous (shared CI machines), the memory bound is not: a loop over rows or a
byte per row would take gigabytes here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import cnncli

N63 = 2**63 - 1
MEMORY_BOUND = 100 * 2**20

# The child runs the real app, then prints its peak RSS in KiB on the last stderr line. VmHWM belongs
# to the new program (ru_maxrss can carry the forking pytest process's peak across exec).
_CHILD = """
import resource, runpy, sys
sys.argv = ["cnncli"] + sys.argv[1:]
try:
    runpy.run_module("cnncli", run_name="__main__")  # what python -m cnncli runs
finally:
    try:
        peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write("\\nmaxrss %d\\n" % peak)
"""


def _shape(*args, code=0):
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnncli.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), COLUMNS="200")
    proc = subprocess.run([sys.executable, "-c", _CHILD, "shape", *args, "--json"], capture_output=True,
                          env=env, timeout=60)
    err = proc.stderr.decode().strip().splitlines()
    assert err and err[-1].startswith("maxrss "), proc.stderr
    assert int(err[-1].split()[1]) * 1024 < MEMORY_BOUND
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def test_a_stride_far_larger_than_the_input():
    # 28 rows, 3x3 every 10^7: one window, rows 0..2 read; row 27 only a tap k=27 could read: no pad helps.
    layer = _shape("--input", "28", "--f", "3", "--stride", "10000000")["layers"][0]
    assert layer["output"] == [1, 1]
    assert layer["unread"] == {"trailing": [25, 25], "skipped": [0, 0], "cover_pad": [0, 0]}
    spec = _shape("--input", "28", "conv:f=3,s=1000000000")["layers"][0]
    assert spec["output"] == [1, 1] and spec["unread"]["trailing"] == [25, 25]


def test_the_size_table_with_a_huge_stride():
    doc = _shape("--f", "3", "--stride", "1000000000")
    for row in doc["rows"]:
        n = row["input"]
        assert row["valid"] == {"output": [1, 1], "pads": [0, 0, 0, 0], "unread": [n - 3] * 2}
        # same: ceil(n / 10^9) = 1 output; total pad max(0 + 3 - n, 0) = 0 for n >= 3.
        assert row["same"]["output"] == [1, 1] and row["same"]["pads"] == [0, 0, 0, 0]


def test_a_billion_rows_dilated():
    # 10^9 rows, f=3 dilation 2: n - 4 windows; window p reads p, p+2, p+4, so every row is read.
    layer = _shape("--input", "1000000000", "--f", "3", "--dilation", "2")["layers"][0]
    assert layer["output"] == [10**9 - 4] * 2 and layer["receptive_field"] == [5, 5]
    assert layer["unread"] == {"trailing": [0, 0], "skipped": [0, 0], "cover_pad": [0, 0]}


def test_two_billion_rows_every_other_one():
    # f=1 stride 2 on 2*10^9 rows: 10^9 windows read the even rows; the last (odd) row no padding reaches.
    layer = _shape("--input", "2000000000", "--f", "1", "--stride", "2")["layers"][0]
    assert layer["output"] == [10**9] * 2
    assert layer["unread"] == {"trailing": [1, 1], "skipped": [10**9 - 1] * 2, "cover_pad": [0, 0]}


def test_2_to_the_63_rows():
    # f=1 stride 2 on 2^63-1 rows (odd): 2^62 windows read rows 0, 2, .., 2^63-2 (the last row).
    layer = _shape("--input", str(N63), "--f", "1", "--stride", "2")["layers"][0]
    assert layer["output"] == [2**62] * 2
    assert layer["unread"] == {"trailing": [0, 0], "skipped": [2**62 - 1] * 2, "cover_pad": [0, 0]}
    # Taps 2^40 apart, windows every 2^41: rows read are the multiples of 2^40 up to the last window's last tap.
    d, s = 2**40, 2**41
    layer = _shape("--input", str(N63), "conv:f=2,d=1099511627776,s=2199023255552")["layers"][0]
    n_out = (N63 - d - 1) // s + 1
    last = (n_out - 1) * s + d
    assert layer["output"] == [n_out, n_out]
    assert layer["unread"]["trailing"] == [N63 - 1 - last] * 2
    assert layer["unread"]["skipped"] == [last + 1 - 2 * n_out] * 2


def test_target_on_2_to_the_63_rows():
    # floor((2^63-1 + T - 3)/2) + 1 = 2^62 needs T in {2, 3}; each side at most 2.
    doc = _shape("--input", str(N63), "--f", "3", "--stride", "2", "--target", str(2**62))
    assert [s["pads"][:2] for s in doc["solutions"]] == [[1, 1], [0, 2], [2, 0], [1, 2], [2, 1]]
    assert "complete" not in doc


def test_target_with_a_1000_wide_window():
    # Stride 1 needs T = 14 - 1 + 1000 - 28 = 985: (492, 493) first. Every row listed reaches 14.
    doc = _shape("--input", "28", "--f", "1000", "--target", "14")
    first = doc["solutions"][0]
    assert first["stride"] == [1, 1] and first["pads"] == [492, 493, 492, 493]
    for sol in doc["solutions"]:
        (sh, sw), (t, b, l, r) = sol["stride"], sol["pads"]  # each axis its own stride
        assert (28 + t + b - 1000) // sh + 1 == 14 and (28 + l + r - 1000) // sw + 1 == 14
        assert max(sol["pads"]) < 1000
    fixed = _shape("--input", "28", "--f", "1000", "--stride", "3", "--target", "14")
    assert fixed["solutions"] and all((28 + s["pads"][0] + s["pads"][1] - 1000) // 3 + 1 == 14
                                      for s in fixed["solutions"])


def test_target_with_a_dilation_far_larger_than_the_input():
    from tests.shape import loops

    doc = _shape("--input", "28", "--f", "3", "--dilation", "200", "--target", "14")
    assert doc["solutions"]
    for sol in doc["solutions"]:
        s, (t, b) = sol["stride"][0], sol["pads"][:2]
        assert (28 + t + b - 401) // s + 1 == 14
        assert loops.axis_sees_input(28, 3, s, 200, t, 14)  # no window lies wholly in the padding


@pytest.mark.parametrize("args", [
    ["--input", str(N63), "--f", "3", "--dilation", "1234567", "--stride", "7654321"],
    ["--input", str(N63), "--f", str(2**62), "--dilation", "3", "--target", "5"],
    ["--input", "4611686018427387904", "--f", "1099511627776", "--stride", "1000000000",
     "--dilation", "8911853477260457531", "--layer", "pool", "--target", "4611686018427387904"],
])
def test_any_size_up_to_2_to_the_63_answers(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnncli.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, "shape", *args, "--json"], capture_output=True, env=env,
                          timeout=60)
    assert proc.returncode in (0, 1), proc.stderr  # 1: a --target with no solution
    assert int(proc.stderr.decode().split()[-1]) * 1024 < MEMORY_BOUND
    json.loads(proc.stdout)
