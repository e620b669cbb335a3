"""Where the errors sit: the error map over height x width and the border/stripe hint."""

import numpy as np

from cnncli.gradcheck.metrics import gradient_metrics
from cnncli.gradcheck.spatial import BORDER_HINT, border_only, pattern_hint, spatial_maps


def _failing(shape, cells):
    m = np.zeros(shape, dtype=bool)
    for cell in cells:
        m[cell] = True
    return m


def test_border_only_needs_a_failing_border_and_a_clean_interior():
    assert border_only(_failing((5, 4), [(0, 1), (4, 3)]))
    assert not border_only(_failing((5, 4), [(0, 1), (2, 2)]))
    assert not border_only(_failing((5, 4), []))
    assert not border_only(_failing((2, 4), [(0, 1)]))  # no interior to compare with


def test_pattern_hint_names_border_and_stripes():
    assert pattern_hint(_failing((5, 5), [(0, 0), (2, 4)])) == BORDER_HINT
    assert pattern_hint(_failing((6, 5), [(1, c) for c in range(5)] + [(3, 2)])) == \
        "errors in rows 1, 3 only (a stripe): look at the stride"
    assert pattern_hint(_failing((4, 7), [(r, c) for r in range(4) for c in (1, 4)])) == \
        "errors in columns 1, 4 only (a stripe): look at the stride"
    assert pattern_hint(np.ones((4, 4), dtype=bool)) is None
    assert pattern_hint(_failing((4, 4), [])) is None and pattern_hint(None) is None


def test_spatial_maps_reduce_over_the_non_spatial_axes_of_each_layout():
    errors = np.full((2, 3, 4, 5), np.nan)  # read as oihw: height 4, width 5
    errors[1, 2, 3, 4], errors[0, 0, 3, 4], errors[0, 1, 0, 0] = 0.5, 0.25, 0.0
    failing = errors > 0.3
    error_map, failing_map = spatial_maps(errors, failing, "oihw")
    assert error_map.shape == (4, 5) and error_map[3, 4] == 0.5 and error_map[0, 0] == 0.0
    assert np.isnan(error_map[1, 1]) and np.isnan(error_map).sum() == 18
    assert np.flatnonzero(failing_map).tolist() == [19]
    assert spatial_maps(errors, failing, "ab") == (None, None)


def test_gradient_metrics_store_the_map_and_hint_of_failing_elements():
    shape = (2, 5, 5, 3)  # mhwc
    n = np.ones(shape)
    a = n.copy()
    a[1, 4, 2, 0] += 1.0  # one wrong element on the bottom row
    idx = np.arange(a.size)
    r = gradient_metrics("dA_prev", shape, "mhwc", "full", idx, a.reshape(-1), n.reshape(-1), 0, 1e-7,
                         pads=(1, 1, 1, 1), stride=(1, 1))
    assert r.failing == 1 and r.hint == BORDER_HINT and r.to_dict()["hint"] == BORDER_HINT
    assert r.error_map.shape == (5, 5) and r.error_map[4, 2] == 1.0 and np.count_nonzero(r.error_map) == 1
    ok = gradient_metrics("dA_prev", shape, "mhwc", "full", idx, n.reshape(-1), n.reshape(-1), 0, 1e-7)
    assert ok.passed and ok.hint is None and ok.to_dict()["hint"] is None


def test_a_single_bad_corner_element_at_pad_0_gets_no_border_hint():
    corner = _failing((5, 5), [(4, 4)])
    assert pattern_hint(corner, pads=(0, 0, 0, 0), stride=(1, 1)) is None
    assert pattern_hint(corner) is None  # unknown padding: one element is no evidence either
    assert pattern_hint(corner, pads=(0, 1, 0, 1), stride=(1, 1)) == BORDER_HINT  # the layer pads
    # several border failures on more than one side point at the border even at pad 0
    assert pattern_hint(_failing((5, 5), [(0, 2), (4, 1)]), pads=(0, 0, 0, 0), stride=(1, 1)) == BORDER_HINT
    assert pattern_hint(_failing((5, 5), [(0, 1), (0, 3)]), pads=(0, 0, 0, 0), stride=(1, 1)) is None  # one side


def test_stripe_hints_need_two_lines_repeating_with_the_stride():
    one_row = _failing((8, 8), [(5, 3)])
    assert pattern_hint(one_row, pads=(0, 0, 0, 0), stride=(1, 1)) is None
    assert pattern_hint(one_row) is None
    rows_1_3_5 = _failing((8, 8), [(r, c) for r in (1, 3, 5) for c in (2, 6)])  # columns: period 4
    assert pattern_hint(rows_1_3_5, pads=(0, 0, 0, 0), stride=(1, 1)) is None  # stride 1: nothing to blame
    assert pattern_hint(rows_1_3_5, pads=(0, 0, 0, 0), stride=(3, 3)) is None  # period 2 is not the stride 3
    assert pattern_hint(rows_1_3_5, pads=(0, 0, 0, 0), stride=(2, 1)) == \
        "errors in rows 1, 3, 5 only (a stripe): look at the stride"


def test_a_single_bad_element_of_a_real_check_gets_no_hint():
    from cnncli.engine import ConvParams
    from cnncli.gradcheck.core import check_problem
    from cnncli.gradcheck.problems import ConvProblem

    rng = np.random.default_rng(0)
    for index in [(0, 5, 5, 0), (1, 2, 3, 1)]:  # a corner at pad 0, an interior element at stride 1
        A, W = rng.standard_normal((2, 6, 6, 2)), rng.standard_normal((3, 3, 2, 3))
        p = ConvProblem(A, W, np.zeros(3), ConvParams(), rng.standard_normal((2, 4, 4, 3)))
        wrong = p.analytical()
        wrong["A_prev"][index] += 1.0
        p.analytical = lambda w=wrong: w
        g = check_problem(p, method="full").gradients[0]
        assert g.failing == 1 and g.worst.index == index and g.hint is None, g.hint


def test_sparse_spatial_maps_are_the_dense_maps():
    from cnncli.gradcheck.spatial import sparse_spatial_maps

    rng = np.random.default_rng(4)
    for axes, shape in (("mhwc", (3, 5, 6, 2)), ("hwio", (4, 3, 2, 5))):
        idx = np.sort(rng.choice(int(np.prod(shape)), size=40, replace=False))
        err = rng.random(40)
        err[3] = np.inf
        bad = rng.random(40) < 0.3
        errors = np.full(shape, np.nan)
        errors.reshape(-1)[idx] = err
        failing = np.zeros(shape, dtype=bool)
        failing.reshape(-1)[idx] = bad
        dense = spatial_maps(errors, failing, axes)
        sparse = sparse_spatial_maps(shape, idx, err, bad, axes)
        np.testing.assert_array_equal(sparse[0], dense[0])
        np.testing.assert_array_equal(sparse[1], dense[1])
    assert sparse_spatial_maps((3, 5, 6, 2), np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, bool),
                               "mhwc") == (None, None)
