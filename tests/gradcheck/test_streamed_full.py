"""--method full on a data set read chunk by chunk: every element compared a chunk at a time (metrics.Comparison),
the same verdict, counts, worst elements and maps as the in-memory full check, in memory that does not grow
with the set."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnncli.gradcheck.perturbed as perturbed
import cnncli.gradcheck.problems as problems
import cnncli.gradcheck.streamed_evals as streamed_evals
from cnncli.engine import ConvParams, PoolParams
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.metrics import Comparison
from cnncli.gradcheck.spatial import BORDER_HINT
from cnncli.gradcheck.streamed import gradcheck_streamed
from tests.gradcheck.same import same_check
from tests.traced import traced_peak

RNG = np.random.default_rng(4)
A = RNG.normal(size=(9, 7, 7, 3))
W = RNG.normal(size=(3, 3, 3, 4))
B = RNG.normal(size=4)


def _expected(shape, idx, a, n, floor, tol):
    """The elementwise comparison of the whole arrays at once, written out: the oracle of Comparison."""
    err = np.abs(a - n)
    finite = np.abs(n[np.isfinite(n)])
    scale = finite.max() if finite.size else 0.0
    bad = ~(err <= 10 * tol * scale + 100 * tol * np.abs(n)) & ~(err <= floor)
    shown = np.where(np.isfinite(err), err, np.inf)
    order = np.argsort(-shown, kind="stable")[:5]
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    errors = np.full(shape, np.nan)
    errors.reshape(-1)[idx] = shown
    failing_at = np.zeros(shape, dtype=bool)
    failing_at.reshape(-1)[idx] = bad
    return {"failing": int(bad.sum()), "top": [tuple(int(v) for v in np.unravel_index(idx[r], shape)) for r in order],
            "max_abs": np.nan if np.isnan(err).any() else (err.max() if err.size else 0.0),
            "rel": np.linalg.norm(a - n) / denom if denom > 0 else 0.0,
            "rel_floor": np.linalg.norm(floor) / denom if floor.any() and denom > 0 else 0.0,
            "error_map": np.fmax.reduce(errors, axis=(0, 3)), "failing_map": failing_at.any(axis=(0, 3)),
            "errors": errors}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.floats(0, 1), max_size=5), wrong=st.integers(0, 12),
       dense=st.booleans(), sparse=st.booleans())
def test_a_comparison_given_in_parts_is_the_comparison_of_the_whole(seed, cuts, wrong, dense, sparse):
    rng = np.random.default_rng(seed)
    shape = (3, 5, 6, 2)
    size = int(np.prod(shape))
    idx = np.sort(rng.choice(size, size=rng.integers(1, size // 3) if sparse else size, replace=False))
    # |n| grows along the parts, so that elements failing at an early part's scale pass at the end's
    n = rng.normal(size=idx.size) * np.linspace(1e-3, 5, idx.size) ** rng.integers(0, 4)
    a = n + rng.normal(size=idx.size) * 1e-12
    a[rng.choice(idx.size, size=min(wrong, idx.size), replace=False)] += rng.normal(size=min(wrong, idx.size)) * 1e-4
    floor = np.abs(rng.normal(size=idx.size)) * 1e-9 * rng.integers(0, 2)
    tol = 1e-7
    bounds = [0] + sorted(int(c * idx.size) for c in cuts) + [idx.size]
    c = Comparison(shape, "mhwc", tol, dense_limit=None if dense else 8)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        c.add(idx[lo:hi], a[lo:hi], n[lo:hi], floor[lo:hi])
    r = c.result("dA_prev", "full", 0, pads=(0, 0, 0, 0), stride=(1, 1))
    want = _expected(shape, idx, a, n, floor, tol)
    assert r.checked == idx.size and r.failing == want["failing"]
    assert [o.index for o in r.top] == want["top"]
    assert r.max_abs_error == want["max_abs"]
    assert r.relative_error == pytest.approx(want["rel"], rel=1e-12, abs=1e-300)
    assert r.rounding_floor == pytest.approx(want["rel_floor"], rel=1e-12, abs=1e-300)
    assert r.passed == (r.relative_error <= max(tol, r.rounding_floor) and want["failing"] == 0)
    if dense:  # 180 values: errors in the gradient's shape and the map
        np.testing.assert_array_equal(r.errors, want["errors"])
        np.testing.assert_array_equal(r.error_map, want["error_map"])
    else:  # 30 positions over the limit of 8: neither, and the hint still read from the failing positions
        assert r.errors is None and r.error_map is None


def test_a_comparison_in_parts_names_non_finite_errors_and_fails_them():
    c = Comparison((2, 3), "ab", 1e-7)
    c.add(np.array([0, 1]), np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    c.add(np.array([2, 3]), np.array([np.nan, np.inf]), np.array([3.0, 4.0]))
    r = c.result("x", "full", 0)
    assert np.isnan(r.max_abs_error) and np.isnan(r.relative_error) and r.failing == 2 and not r.passed
    assert [o.index for o in r.top[:2]] == [(0, 2), (1, 0)]  # NaN and inf rank first, in order
    empty = Comparison((4, 4, 4, 1), "mhwc", 1e-7).result("dA_prev", "full", 64)
    assert empty.checked == 0 and empty.passed and empty.error_map is None and empty.worst is None


def _small_chunks(monkeypatch):
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 2**13)  # a few examples per chunk: the set in several
    monkeypatch.setattr(perturbed, "CHUNK_BYTES", 2**13)


@pytest.mark.parametrize("layer", ["conv", "max", "average"])
def test_a_full_check_chunk_by_chunk_is_the_in_memory_full_check(layer, monkeypatch):
    calls = []
    real = streamed_evals.every_element
    monkeypatch.setattr("cnncli.gradcheck.streamed.every_element", lambda *a: calls.append(1) or real(*a))
    _small_chunks(monkeypatch)
    if layer == "conv":
        memory = gradcheck_conv(A, W, B, ConvParams(pad=1), method="full", seed=3)
        stream = gradcheck_streamed(A, W, B, ConvParams(pad=1), method="full", seed=3)
    else:
        params = PoolParams(f=3, stride=2, mode=layer)
        memory = gradcheck_pool(A, params, method="full", seed=3)
        stream = gradcheck_streamed(A, params=params, kind="pool", method="full", seed=3)
    assert calls and stream.passed and stream.gradients[0].method == "full"
    assert stream.gradients[0].checked == A.size - stream.gradients[0].kinks
    same_check(memory, stream)
    # every element compared, at the same errors up to rounding (a passing gradient's errors are rounding)
    np.testing.assert_allclose(stream.gradients[0].errors, memory.gradients[0].errors, rtol=0, atol=1e-9)


def test_a_wrong_element_fails_the_full_check_chunk_by_chunk_where_it_fails_in_memory(monkeypatch):
    real = problems.conv2d_backward

    def broken(G, A_prev, W_, params, **options):
        g = real(G, A_prev, W_, params, **options)
        if g.dA_prev is None:
            return g
        dA = g.dA_prev.copy()
        dA[:, 0, 3, 1] *= 1.001  # every example, one position on the top row: a wrong engine
        return type(g)(dA, g.dW, g.db)

    monkeypatch.setattr(problems, "conv2d_backward", broken)
    _small_chunks(monkeypatch)
    memory = gradcheck_conv(A, W, B, ConvParams(pad=1), method="full", seed=3)
    stream = gradcheck_streamed(A, W, B, ConvParams(pad=1), method="full", seed=3)
    g = stream.gradients[0]
    assert stream.verdict == "fail" and g.failing == 9 and g.worst.index[1:] == (0, 3, 1)
    assert g.hint == BORDER_HINT  # padded, and every failing position on the border
    same_check(memory, stream)


def test_a_max_pools_kinks_are_left_out_of_the_full_check_chunk_by_chunk(monkeypatch):
    _small_chunks(monkeypatch)
    tied = np.round(A * 2) / 2  # many ties: kinks
    params = PoolParams(f=2, mode="max")
    memory = gradcheck_pool(tied, params, method="full", seed=3)
    stream = gradcheck_streamed(tied, params=params, kind="pool", method="full", seed=3)
    assert stream.gradients[0].kinks > 0 and stream.passed
    same_check(memory, stream)


def _full_peak(tmp_path, m):
    path = tmp_path / f"set{m}.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(m).normal(size=(m, 6, 6, 2))
    with h5py.File(path, "r") as f:
        x = f["x"]
        r, peak = traced_peak(lambda: gradcheck_streamed(x, params=PoolParams(f=2, mode="average"), kind="pool",
                                                         method="full", seed=0))
    assert r.passed and r.gradients[0].checked == x.size
    return peak


def test_a_full_check_of_a_set_holds_no_more_as_the_set_grows(tmp_path, monkeypatch):
    # chunks of 5 examples (2.9 KiB of A_prev): the set's A_prev is 36 KiB at 64 examples and 144 KiB at 256.
    # Loaded whole with every element's index, gradient, floor and difference, the check held 60-70 bytes more per
    # element of the set; now about 3 (the upstream gradient's generator states, one per example drawn)
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 2**13)
    monkeypatch.setattr(perturbed, "CHUNK_BYTES", 2**13)
    monkeypatch.setattr(streamed_evals, "DENSE_VALUES", 2**8)  # no errors array of the set's shape either
    _full_peak(tmp_path, 16)  # what a first check allocates once (caches, imports)
    small, large = _full_peak(tmp_path, 64), _full_peak(tmp_path, 256)
    per_element = (large - small) / ((256 - 64) * 72)
    assert per_element < 12, (small, large, per_element)


# one example too large for the workspace (read by rectangles, its G drawn or read by tiles): --method full took
# its gradient from the pass at every element's index and read it whole; now it is compared piece by piece


def _huge_full(layer, monkeypatch, given=False, broken_at=None, method="full"):
    """``(in-memory check, streamed check)`` of one 1 x 2 x 1500 x 2 example taken as huge (``--method full``)."""
    from .test_unread_example import _small_budgets, _whole_reads
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 2, 1500, 2))
    _small_budgets(monkeypatch, x.nbytes)
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", 512)  # many pieces
    if method == "full":
        monkeypatch.setattr(streamed_evals, "checkable", None)  # no index of every element
    if layer == "conv":
        Wt, b = rng.normal(size=(1, 5, 2, 3)), rng.normal(size=3)
        params = ConvParams(stride=(1, 2), pad=(0, 0, 3, 1))
        out_hw = params.geometry(x.shape[1:3], Wt.shape[:2]).out_hw
        args, kind, n_C = (x, Wt, b, params), "conv", 3
    else:
        params = PoolParams(f=(1, 3), stride=(1, 2), mode=layer)
        out_hw = params.geometry(x.shape[1:3]).out_hw
        args, kind, n_C = (x, None, None, params), "pool", 2
    if broken_at is not None:
        if kind == "conv":
            from .broken import backward_off_at
            monkeypatch.setattr(problems, "conv2d_backward",
                                backward_off_at(problems.conv2d_backward, x[broken_at], 1e-2))
        else:
            import cnncli.gradcheck.pool_problem as pool_problem
            real = pool_problem.pool2d_backward

            def wrong(G, A_prev, p, **options):  # the tile that holds the element: off there
                dA = real(G, A_prev, p, **options).copy()
                dA[A_prev == x[broken_at]] += 1e-2
                return dA
            monkeypatch.setattr(pool_problem, "pool2d_backward", wrong)
    G = np.random.default_rng(3).standard_normal((1,) + out_hw + (n_C,))
    memory = (gradcheck_conv(*args, method=method, seed=3) if kind == "conv" else
              gradcheck_pool(x, params, method=method, seed=3, grad=G) if given else
              gradcheck_pool(x, params, method=method, seed=3))
    reads = _whole_reads(monkeypatch)
    stream = gradcheck_streamed(*args, kind=kind, method=method, seed=3, **({"grad": G} if given else {}))
    assert reads[0] == 0  # neither the example nor a given G read whole: rectangles only
    return memory, stream


@pytest.mark.parametrize("layer", ["conv", "max", "average"])
def test_a_full_check_of_one_huge_example_piece_by_piece_is_the_in_memory_full_check(layer, monkeypatch):
    memory, stream = _huge_full(layer, monkeypatch)
    g = stream.gradients[0]
    assert stream.passed and g.method == "full" and g.checked == 6000 - g.kinks
    same_check(memory, stream)
    np.testing.assert_allclose(g.errors, memory.gradients[0].errors, rtol=0, atol=1e-9)


def test_a_full_check_of_one_huge_example_with_its_upstream_gradient_given(monkeypatch):
    memory, stream = _huge_full("average", monkeypatch, given=True)
    assert stream.passed
    same_check(memory, stream)


@pytest.mark.parametrize("layer", ["conv", "average"])
def test_a_wrong_element_of_one_huge_example_fails_its_full_check_where_it_fails_in_memory(layer, monkeypatch):
    at = (0, 1, 777, 1)
    memory, stream = _huge_full(layer, monkeypatch, broken_at=at)
    g = stream.gradients[0]
    assert stream.verdict == "fail" and g.failing == 1 and g.worst.index == at
    same_check(memory, stream)


def test_a_full_check_of_one_huge_example_holds_no_more_as_it_grows(tmp_path, monkeypatch):
    # read whole, with every element's index, gradient, floor and difference held, it grew by over 60 bytes per
    # element; piece by piece, by what its generator states and bits take
    from .test_unread_example import file_budgets
    file_budgets(monkeypatch)
    Wt, b = np.random.default_rng(8).normal(size=(1, 5, 2, 2)), np.zeros(2)
    peaks = []
    for n in (20_000, 80_000):
        with h5py.File(tmp_path / f"x{n}.h5", "w") as f:
            f["x"] = np.random.default_rng(7).normal(size=(1, 1, n, 2))
        with h5py.File(tmp_path / f"x{n}.h5", "r") as f:
            r, peak = traced_peak(lambda: gradcheck_streamed(f["x"], Wt, b, ConvParams(), method="full", seed=1))
        assert r.passed and r.gradients[0].checked == 2 * n
        peaks.append(peak)
    per_element = (peaks[1] - peaks[0]) / (2 * 60_000)
    assert per_element < 12, (peaks, per_element)


@pytest.mark.parametrize("how", ["fast+bisect", "fast+full"])
@pytest.mark.parametrize("layer, method", [("conv", "auto"), ("conv", "fast"), ("average", "auto"),
                                           ("average", "fast")])
def test_a_failing_check_of_one_huge_example_is_localized_without_reading_it_whole(layer, method, how,
                                                                                   monkeypatch):
    # its directional check disagrees; the example was then read whole, with its G, gradient and directions, to be
    # bisected (or every checkable element's index taken from it whole); now its largest errors are found comparing
    # it piece by piece, and its checkable elements a piece at a time. A conv's under --method fast: its context
    # sample, drawn only when the check fails, moves the generator, so W's directions are not the ones the pass
    # foresaw: W's check evaluated them over the example read whole; now by tiles, each reading its rectangle
    import cnncli.gradcheck.core as core
    if how == "fast+bisect":  # the 6000 elements are more than a full localization takes
        monkeypatch.setattr(core, "LOCALIZE_FULL_LIMIT", 100)
        monkeypatch.setattr(streamed_evals, "LOCALIZE_FULL_LIMIT", 100)
    at = (0, 0, 321, 0)
    memory, stream = _huge_full(layer, monkeypatch, broken_at=at, method=method)
    g, m = stream.gradients[0], memory.gradients[0]
    assert stream.verdict == memory.verdict == "fail"
    assert g.worst.index == m.worst.index == at and g.failing == m.failing == 1
    assert g.method == m.method == how


def test_w_s_evaluations_not_foreseen_draw_the_upstream_gradient_by_tiles_where_the_pass_does(monkeypatch):
    # one example whose A_prev is read (not huge) but whose G goes by tiles (too large for the workspace in its
    # copies): under a failing --method fast, W's evaluations not foreseen drew its G whole (10 times here)
    from cnncli.gradcheck.lazy import DrawnUpstream
    from .test_unread_example import _small_budgets
    from .broken import backward_off_at
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 2, 1500, 2))
    _small_budgets(monkeypatch, x.nbytes)
    import cnncli.gradcheck.tiled as tiled
    monkeypatch.setattr(tiled, "HUGE_INPUT_BYTES", 2 * x.nbytes)  # A_prev read whole, not unread
    Wt, b = rng.normal(size=(1, 5, 2, 3)), rng.normal(size=3)
    monkeypatch.setattr(problems, "conv2d_backward", backward_off_at(problems.conv2d_backward, x[0, 0, 321, 0], 1e-2))
    drawn, real = [0], DrawnUpstream.__getitem__
    monkeypatch.setattr(DrawnUpstream, "__getitem__", lambda self, sel: drawn.__setitem__(0, drawn[0] + 1) or
                        real(self, sel))
    memory = gradcheck_conv(x, Wt, b, ConvParams(), method="fast", seed=3)
    stream = gradcheck_streamed(x, Wt, b, ConvParams(), method="fast", seed=3)
    assert drawn[0] == 0
    assert stream.verdict == memory.verdict == "fail"
    assert stream.gradients[0].worst.index == memory.gradients[0].worst.index == (0, 0, 321, 0)


def test_a_huge_example_s_localization_ranks_the_elements_that_fail_first(monkeypatch):
    # ranked by raw error, elements within their rounding floor outranked the one that fails by a hair: the
    # localized elements then held no failing one ("no single element did")
    tol = 1e-7
    pieces = [  # (flat indices, analytical, numerical, floor)
        (np.array([0, 1]), np.array([1.0, 10.9]), np.array([0.0, 10.0]), np.array([2.0, 1.0])),
        (np.array([2, 3]), np.array([1.0 + 2e-4, 3.0]), np.array([1.0, 3.0]), np.array([0.0, 0.0])),
    ]
    a, n, floor = (np.concatenate([p[k] for p in pieces]) for k in (1, 2, 3))
    err = np.abs(a - n)
    failing = ~(err <= 10 * tol * np.abs(n).max() + 100 * tol * np.abs(n)) & (err > floor)  # the rule, written out
    assert np.flatnonzero(failing).tolist() == [2] and np.argmax(err) == 0
    monkeypatch.setattr(streamed_evals, "_pieces_of_one", lambda batch, sl, h: iter(pieces))
    assert streamed_evals._worst_of_one(None, slice(0, 1), 1e-6, 1, tol).tolist() == [2]
    assert streamed_evals._worst_of_one(None, slice(0, 1), 1e-6, 3, tol).tolist() == [0, 1, 2]
