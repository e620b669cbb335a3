"""``shape --target`` searches each axis's stride on its own (a stride is a pair, as PyTorch's is)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.engine import geometry as geo
from cnncli.shape.solve import MAX_SOLUTIONS, solve_target
from cnncli.shape.stack import make_layer, parse_dims

from . import loops

runner = CliRunner()


def _oracle(n, f, d, t, ceil):
    """Every stride pair 1..the widest window, its smallest pads and smallest symmetric pads, tried one by one."""
    largest = max(geo.effective_size(f[a], d[a]) for a in (0, 1))
    rows = set()
    for sh in range(1, largest + 1):
        for sw in range(1, largest + 1):
            h, w = (loops.solve_pads(n[a], f[a], (sh, sw)[a], d[a], t[a], ceil) for a in (0, 1))
            if h and w:
                rows.add(((sh, sw), h[0] + w[0]))
            hs, ws = ([p for p in axis if p[0] == p[1]] for axis in (h, w))
            if hs and ws:
                rows.add(((sh, sw), hs[0] + ws[0]))
    ranked = sorted(rows, key=lambda r: (sum(r[1]), abs(r[1][1] - r[1][0]) + abs(r[1][3] - r[1][2]), r[0]))
    return ranked[:MAX_SOLUTIONS], len(ranked) <= MAX_SOLUTIONS


def test_the_reported_case_finds_stride_2x3():
    # 28 -> 14 with f=3 needs stride 2 (floor((28+1-3)/2)+1 = 14), 28 -> 10 with f=5 stride 3
    # (floor((28+4-5)/3)+1 = 10): no square stride reaches 14x10.
    result = runner.invoke(app, ["shape", "--input", "28", "--f", "3x5", "--target", "14x10", "--json"])
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert [(s["stride"], s["pads"]) for s in doc["solutions"]] == [([2, 3], [0, 1, 2, 2]), ([2, 3], [1, 1, 2, 2])]
    assert "nearest" not in doc
    table = runner.invoke(app, ["shape", "--input", "28", "--f", "3x5", "--target", "14x10"])
    assert table.exit_code == 0 and "│ 2x3    │ 0,1,2,2 " in table.stdout


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 14), st.integers(1, 14), st.booleans())
def test_the_listing_is_every_stride_pair_tried_by_hand(h, w, fh, fw, dh, dw, th, tw, ceil):
    spec = make_layer("pool" if ceil else "conv", f=(fh, fw), dilation=(dh, dw), ceil_mode=ceil)
    result = solve_target(spec, parse_dims(f"{h}x{w}"), f"{th}x{tw}", stride_fixed=False)
    want, complete = _oracle((h, w), (fh, fw), (dh, dw), (th, tw), ceil)
    assert [(s.stride, s.pads) for s in result.solutions] == want
    assert result.complete == complete
    for s in result.solutions:
        assert s.output == (th, tw)
    if not want:  # the nearest sizes are reached by some stride pair
        for size in result.nearest:
            assert _oracle((h, w), (fh, fw), (dh, dw), size, ceil)[0]
