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
    """Per square stride, each axis's smallest (padding, output_padding), tried one by one."""
    rows = []
    for s in range(1, max(t) + max(d[a] * (f[a] - 1) for a in (0, 1)) + 2):
        best = []
        for a in (0, 1):
            pairs = [(p, op) for p in range(d[a] * (f[a] - 1) + 1) for op in range(max(s, d[a]))
                     if _out(n[a], f[a], s, d[a], p, op) == t[a]]
            best.append(min(pairs) if pairs else None)
        if best[0] and best[1]:
            rows.append(((s, s), best[0], best[1]))
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
    # Then strides 49998, 49997, ...: no padding, output padding 3, 5, ... (2*49998 + 2 + 3 = 100001).
    assert [s["stride"][0] for s in doc["solutions"][:3]] == [49999, 49998, 49997]
    assert [s["output_padding"][0] for s in doc["solutions"][:3]] == [1, 3, 5]
    assert len(doc["solutions"]) == MAX_SOLUTIONS and doc["complete"] is False


def test_no_solution_answers_with_the_nearest_sizes():
    # n=2, f=1 (no padding possible): stride s gives s + 1 + op, op < s: s=1 gives 2, s=2 gives 3 or 4.
    result = runner.invoke(app, ["shape", "--input", "2", "--layer", "tconv", "--f", "1", "--target", "1",
                                 "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["solutions"] == [] and doc["nearest"] == [[2, 2], [3, 3]]


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
