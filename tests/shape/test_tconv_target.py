"""``shape --target`` for a transposed convolution: any target size, in closed form, against a brute force."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.shape.solve import MAX_SOLUTIONS, solve_target
from cnncli.shape.stack import make_layer, parse_dims

runner = CliRunner()


def _out(n, f, s, d, p, op):
    return (n - 1) * s - 2 * p + d * (f - 1) + op + 1  # PyTorch's ConvTranspose2d, one axis


def _brute(n, f, d, t):
    """Per stride pair (each axis its own), each axis's smallest (padding, output_padding), tried one by one."""
    best = []
    for a in (0, 1):
        by_stride = {}
        for s in range(1, t[a] + d[a] * (f[a] - 1) + 2):
            pairs = [(p, op) for p in range(d[a] * (f[a] - 1) + 1) for op in range(max(s, d[a]))
                     if _out(n[a], f[a], s, d[a], p, op) == t[a]]
            if pairs:
                by_stride[s] = min(pairs)
        best.append(by_stride)
    rows = [((sh, sw), h, w) for sh, h in best[0].items() for sw, w in best[1].items()]
    rows.sort(key=lambda r: (2 * (r[1][0] + r[2][0]), r[1][1] + r[2][1], r[0]))
    return rows


def test_a_target_far_above_the_input_is_found_at_once():
    # 3 -> 100001 with f=2: (3-1)*s + 1 + op + 1 - 2p = 100001; s = 49999, p = 0, op = 1 is the best.
    # It recursed until Python's limit (exit 3) before.
    result = runner.invoke(app, ["shape", "--input", "3", "--layer", "tconv", "--f", "2", "--target", "100001",
                                 "--json"])
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    first = doc["solutions"][0]
    assert first["stride"] == [49999, 49999] and first["pads"] == [0] * 4 and first["output_padding"] == [1, 1]
    assert _out(3, 2, 49999, 1, 0, 1) == 100001
    # Then stride 49998 on one axis: no padding, output padding 3 there (2*49998 + 2 + 3 = 100001).
    assert [s["stride"] for s in doc["solutions"][:3]] == [[49999, 49999], [49998, 49999], [49999, 49998]]
    assert [s["output_padding"] for s in doc["solutions"][:3]] == [[1, 1], [3, 1], [1, 3]]
    assert len(doc["solutions"]) == MAX_SOLUTIONS and doc["complete"] is False


def test_each_axis_takes_its_own_stride():
    # 4 -> 8 with f=4: (4-1)*2 - 2 + 3 + 1 = 8 (stride 2, p=1); 8 -> 32: (8-1)*4 + 3 + 1 = 32 (stride 4, p=0).
    result = runner.invoke(app, ["shape", "--input", "4x8", "--layer", "tconv", "--f", "4", "--target", "8x32",
                                 "--json"])
    assert result.exit_code == 0, result.stdout
    first = json.loads(result.stdout)["solutions"][0]
    assert (first["stride"], first["pads"], first["output_padding"]) == ([2, 4], [1, 1, 0, 0], [0, 0])
    assert _out(4, 4, 2, 1, 1, 0) == 8 and _out(8, 4, 4, 1, 0, 0) == 32


def test_no_solution_answers_with_the_nearest_sizes():
    # n=2, f=1 (no padding possible): stride s gives s + 1 + op, op < s: s=1 gives 2, s=2 gives 3 or 4;
    # each axis its own stride: 2x2 (2 away from 1x1), then 2x3 (3 away).
    result = runner.invoke(app, ["shape", "--input", "2", "--layer", "tconv", "--f", "1", "--target", "1",
                                 "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["solutions"] == [] and doc["nearest"] == [[2, 2], [2, 3]]


@given(st.integers(2, 6), st.integers(2, 6), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.integers(1, 40), st.integers(1, 40))
def test_the_listing_matches_a_brute_force(h, w, fh, fw, dh, dw, th, tw):
    spec = make_layer("tconv", f=(fh, fw), dilation=(dh, dw))
    result = solve_target(spec, parse_dims(f"{h}x{w}"), f"{th}x{tw}", stride_fixed=False)
    want = _brute((h, w), (fh, fw), (dh, dw), (th, tw))
    got = [(s.stride, (s.pads[0], s.output_padding[0]), (s.pads[2], s.output_padding[1])) for s in result.solutions]
    assert got == want[:MAX_SOLUTIONS]
    for s in result.solutions:
        assert s.output == (th, tw)
