"""Geometry against brute-force counting of windows, and its validation messages."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnncli.engine.geometry import (
    as_flag,
    as_pair,
    normalize_pad,
    output_length,
    pool_geometry,
    same_pads,
    window_counts,
    window_geometry,
)
from cnncli.errors import HyperparameterError


def brute_force_length(n, f, s, d, before, after, ceil_mode=False):
    """Count window starts directly: full windows; in ceil mode one more partial window if the
    last full one stops short of the end, then (PyTorch) a last window starting in the trailing
    padding is dropped, once."""
    padded, span = n + before + after, d * (f - 1) + 1
    starts = [p for p in range(0, padded) if p % s == 0 and p + span <= padded]
    if ceil_mode and starts:
        if starts[-1] + span < padded:
            starts.append(starts[-1] + s)
        if starts[-1] >= n + before:
            starts.pop()
    return len(starts)


@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 5), st.integers(1, 3),
       st.integers(0, 4), st.integers(0, 4), st.booleans())
def test_output_length_brute_force(n, f, s, d, before, after, ceil_mode):
    assert output_length(n, f, s, d, before, after, ceil_mode) == brute_force_length(n, f, s, d, before, after, ceil_mode)


@given(st.integers(1, 300), st.integers(1, 9), st.integers(1, 6), st.integers(1, 3))
def test_same_gives_ceil_for_any_stride(n, f, s, d):
    before, after = same_pads(n, f, s, d)
    assert output_length(n, f, s, d, before, after) == math.ceil(n / s)
    assert 0 <= after - before <= 1  # TensorFlow: the extra pixel goes after


def test_same_split_examples():
    # TF: n=6, f=3, s=2 -> out 3, total pad = (3-1)*2 + 3 - 6 = 1 -> (0, 1)
    assert same_pads(6, 3, 2) == (0, 1)
    assert same_pads(5, 3, 1) == (1, 1)
    assert same_pads(4, 4, 1) == (1, 2)
    assert same_pads(7, 1, 3) == (0, 0)


def test_pad_forms():
    assert normalize_pad(2) == (2, 2, 2, 2)
    assert normalize_pad((1, 2)) == (1, 1, 2, 2)
    assert normalize_pad((0, 1, 2, 3)) == (0, 1, 2, 3)
    assert normalize_pad("valid") == (0, 0, 0, 0)
    assert normalize_pad("SAME") == "same"
    assert as_pair((3, 2), "f") == (3, 2)


@pytest.mark.parametrize("call", [
    lambda: normalize_pad("1,2"), lambda: as_pair("3x2", "f"), lambda: as_pair("3", "f"),
    lambda: as_flag("false", "ceil_mode"), lambda: window_geometry(4, "3"),
])
def test_the_engine_takes_numbers_not_text(call):
    # Text is read at the edge (cnncli.io.text); the engine refuses it rather than guess.
    with pytest.raises(HyperparameterError):
        call()


def test_geometry_resolves_same_asymmetric():
    g = window_geometry((6, 5), (3, 2), stride=2, pad="same")
    assert g.out_hw == (3, 3)
    assert g.pads == (0, 1, 0, 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_hw=4, kernel=5), "no 5x5 window fits a 4x4 input padded by 0"),
    (dict(in_hw=4, kernel=3, stride=0), "stride must be >= 1, got 0"),
    (dict(in_hw=4, kernel=0), "f must be >= 1, got 0"),
    (dict(in_hw=4, kernel=3, dilation=-1), "dilation must be >= 1, got -1"),
    (dict(in_hw=4, kernel=3, pad=-1), "pad must be >= 0, got -1"),
    (dict(in_hw=4, kernel=3, pad="half"),
     "pad must be an int, a pair (pad_h, pad_w), (top, bottom, left, right), 'valid' or 'same', got 'half'"),
    (dict(in_hw=4, kernel=3, pad=(1, 2, 3)), "pad must have 1, 2 or 4 values"),
    (dict(in_hw=4, kernel=2.5), "f must be an integer, got 2.5"),
    (dict(in_hw=4, kernel=3, dilation=2), "no 3x3 window (dilated to 5x5) fits a 4x4 input padded by 0"),
])
def test_validation_messages(kwargs, message):
    with pytest.raises(HyperparameterError) as info:
        window_geometry(**kwargs)
    assert message in str(info.value)


def test_pool_window_entirely_in_padding_is_refused():
    with pytest.raises(HyperparameterError, match="pooling window only padding: use less"):
        pool_geometry(4, 2, stride=2, pad=2)


@pytest.mark.parametrize("include_pad", [False, True])
def test_window_counts_count_only_the_border_windows_one_by_one(include_pad, monkeypatch):
    # a 1 x 2,000,000 row under a 1x5 average window at stride 2, padded by 3: a million windows of which only
    # those overlapping the padding or the row's ends are not all 5 taps; sizes are arithmetic, not a loop over
    # the windows (each pool2d call of a gradient check recomputed them: 0.44 s for 300,000 windows)
    import cnncli.engine.geometry as geometry
    calls = []
    real = geometry.taps_within
    monkeypatch.setattr(geometry, "taps_within", lambda *a: calls.append(a) or real(*a))
    g = window_geometry((1, 2_000_000), (1, 5), (1, 2), (1, 1), (0, 0, 3, 3))
    counts_h, counts_w = window_counts(g, include_pad)
    assert counts_h == [1] and len(counts_w) == 1_000_001
    # the first windows start at -3, -1, 1 and the last at N - 7, N - 5, N - 3: taps in [-3, N + 3) or [0, N)
    first, last = ([5] * 3, [5] * 3) if include_pad else ([2, 4, 5], [5, 5, 3])
    assert counts_w[:3] == first and counts_w[-3:] == last and set(counts_w[3:-3]) == {5}
    assert len(calls) <= 2 * 4 + 1  # per side, about span / stride border windows (and the one row)


@pytest.mark.parametrize("value", [((3,),), ((3, 3),), ((1, 2), (3, 4)), [[2], [2]]])
def test_a_nested_pair_is_named_whole(value):
    # an HDF5 attribute f=[[3]] reads as ((3,),): the refusal names that, not its inner (3,) as "an integer"
    with pytest.raises(HyperparameterError) as info:
        as_pair(value, "f")
    assert str(info.value) == f"f must be an int or a pair (h, w), got {value!r}"


def test_window_counts_direct():
    g = window_geometry(3, 2, stride=2, pad=1)  # windows cover padded rows [-1,0], [1,2]
    assert window_counts(g, include_pad=True) == ([2, 2], [2, 2])
    assert window_counts(g, include_pad=False) == ([1, 2], [1, 2])


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (0, False), (1, True)])
def test_flags_are_bools_or_0_1(value, expected):
    from cnncli.engine import PoolParams

    assert as_flag(value, "ceil_mode") is expected
    assert PoolParams(f=2, ceil_mode=value).ceil_mode is expected


@pytest.mark.parametrize("value", [2, -1, "maybe", "", None, 0.5, "false"])
def test_bad_flags_are_refused(value):
    with pytest.raises(HyperparameterError, match="ceil_mode must be true or false"):
        as_flag(value, "ceil_mode")
