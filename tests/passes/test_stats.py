"""cnncli.passes.stream.Stats: chunked statistics of the finite values and counts of the others,
against numpy on the whole array."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncli.passes.stream import Stats, nonfinite_counts


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), cuts=st.lists(st.integers(0, 60), max_size=4),
       scale=st.sampled_from([1e-300, 1e-3, 1.0, 1e8, 1e300]), n_bad=st.integers(0, 5))
def test_chunked_stats_equal_numpy_on_the_finite_values(seed, n, cuts, scale, n_bad):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * scale
    bad = rng.choice([np.nan, np.inf, -np.inf], size=min(n_bad, n))
    where = rng.choice(n, size=bad.size, replace=False)
    x[where] = bad
    s = Stats()
    for part in np.split(x, sorted(c for c in cuts if c <= n)):
        s.add(part)
    got = s.as_dict()
    finite = x[np.isfinite(x)]
    assert got["nan_count"] == int(np.isnan(x).sum())
    assert got["inf_count"] == int(np.isinf(x).sum())
    if finite.size == 0:
        assert all(math.isnan(got[k]) for k in ("min", "max", "mean", "std"))
        return
    # numpy's own std overflows at 1e300: compare in units of the scale (exact powers of ten aside).
    unit = finite / scale
    assert got["min"] == finite.min() and got["max"] == finite.max()
    assert got["mean"] / scale == pytest.approx(unit.mean(), rel=1e-9, abs=1e-12)
    assert got["std"] / scale == pytest.approx(unit.std(), rel=1e-9, abs=1e-12)


def test_values_near_the_float64_limit_keep_a_finite_spread():
    x = np.array([1.5e308, -1.5e308, 1.0e308, -1.0e308])
    s = Stats()
    s.add(x[:2])
    s.add(x[2:])
    got = s.as_dict()
    assert got["mean"] == 0.0
    assert got["std"] == pytest.approx(math.sqrt((1.5**2 + 1.0**2) / 2) * 1e308, rel=1e-12)


@pytest.mark.parametrize("x, counts", [
    (np.array([1.0, np.nan, np.inf, -np.inf]), (1, 2)),
    (np.array([1e308, 1e308]), (0, 0)),  # the sum overflows, the values do not
    (np.arange(4), (0, 0)),
    (np.array([np.nan], dtype=np.float32), (1, 0)),
])
def test_nonfinite_counts(x, counts):
    assert nonfinite_counts(x) == counts


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       slice_size=st.integers(1, 9), n_bad=st.integers(0, 3), f32=st.booleans())
def test_a_chunk_over_the_slice_size_is_folded_in_slices_with_numpys_values(seed, shape, slice_size, n_bad, f32):
    """A chunk of more than STATS_SLICE values (one example's huge output) is folded a slice at a time, so
    its temporaries stay a slice's size; the statistics are still numpy's over the whole chunk."""
    import cnncli.passes.stream as stream

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "STATS_SLICE", slice_size)
        _check_sliced(seed, shape, n_bad, f32)


def _check_sliced(seed, shape, n_bad, f32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 1
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=min(n_bad, flat.size), replace=False)] = np.nan
    x = x.astype(np.float32) if f32 else x
    s = Stats()
    s.add(x)
    got = s.as_dict()
    finite = x[np.isfinite(x)].astype(np.float64)
    assert got["nan_count"] == int(np.isnan(x).sum()) and got["inf_count"] == 0
    if finite.size == 0:
        assert math.isnan(got["mean"])
        return
    assert got["min"] == finite.min() and got["max"] == finite.max()
    assert got["mean"] == pytest.approx(finite.mean(), rel=1e-12, abs=1e-12)
    assert got["std"] == pytest.approx(finite.std(), rel=1e-9, abs=1e-12)


def test_folding_a_big_chunk_takes_temporaries_of_a_slice_not_of_the_chunk():
    import tracemalloc

    from cnncli.passes.stream import STATS_SLICE

    x = np.ones(4 * STATS_SLICE, dtype=np.float32)  # 64 MiB: whole, its float64 copy and deviations took 256 MiB
    tracemalloc.start()
    try:
        Stats().add(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * STATS_SLICE * 8  # a slice's float64 copy and its squared deviations
