"""One pooling example too large to hold, never read whole (issue 13, part 1: "whatever the size"), as a
convolution's since the fourteenth session: its max-pool kinks, exact ties and the elements some window reads are
computed rectangle by rectangle from the windows around each (``PoolProblem.kinks_at`` and ``reads_at``), and the
whole streamed check gives what it gives with the example read whole, in memory that does not grow with it.
"""

import json

import h5py
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnncli.gradcheck.pool_problem as pool_problem
import cnncli.gradcheck.sampling as sampling
import cnncli.gradcheck.streamed as streamed
import cnncli.gradcheck.streamed_evals as streamed_evals
from cnncli.engine import PoolParams
from cnncli.errors import HyperparameterError
from cnncli.gradcheck import gradcheck_pool
from cnncli.gradcheck.lazy import Examples
from cnncli.gradcheck.pool_problem import PoolProblem
from cnncli.gradcheck.streamed import gradcheck_streamed
from cnncli.gradcheck.streamed_evals import ExcludedRect, excluded_mask

from tests.traced import traced_peak

from .test_unread_example import GROWTH_BOUND, _small_budgets, _whole_reads, file_budgets, read_whole


def _loop_masks(A, params, threshold):
    """Kinks and read elements of one example by a loop over its windows and taps (the oracle): a window is a
    kink when its two largest taps (padding and overflow: -inf) lie within ``threshold``, and then so is each of
    its input elements within ``threshold`` of its maximum."""
    geom = params.geometry(A.shape[1:3])
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = geom.kernel, geom.stride, geom.dilation, geom.out_hw
    t, _, left, _ = geom.pads
    _, H, W, C = A.shape
    kinks, reads = np.zeros(A.shape, dtype=bool), np.zeros(A.shape, dtype=bool)
    for r in range(oh):
        for c in range(ow):
            taps = [(r * sh - t + a * dh, c * sw - left + b * dw) for a in range(kh) for b in range(kw)]
            inside = [(i, j) for i, j in taps if 0 <= i < H and 0 <= j < W]
            for i, j in inside:
                reads[0, i, j, :] = True
            for k in range(C):
                vals = sorted([A[0, i, j, k] for i, j in inside] + [-np.inf] * (len(taps) - len(inside)))[::-1]
                if len(vals) > 1 and vals[0] - vals[1] <= threshold:
                    for i, j in inside:
                        if vals[0] - A[0, i, j, k] <= threshold:
                            kinks[0, i, j, k] = True
    return kinks, reads


@st.composite
def _pool_layer(draw):
    H, W, C = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 2))
    f = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, 1)) for _ in range(4))
    try:
        params = PoolParams(f=f, stride=stride, dilation=dilation, pad=pad, ceil_mode=draw(st.booleans()))
        geom = params.geometry((H, W))
    except HyperparameterError:
        assume(False)
    assume(geom.out_hw[0] >= 1 and geom.out_hw[1] >= 1)
    return (H, W, C), params


@given(_pool_layer(), st.sampled_from([0.0, 0.5, 2.0]), st.booleans(), st.data())
def test_a_rectangle_s_kinks_and_reads_are_those_of_the_whole_example(layer, threshold, ties, data):
    (H, W, C), params = layer
    # small integers: many exact ties and gaps of 1 and 2, at and around every threshold (kink windows many: the
    # dense search); or normal values, scaled so that a few windows are kinks at 0.5 and 2 (the sparse one)
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    A = rng.integers(0, 4, size=(1, H, W, C)).astype(float) if ties else 40 * rng.normal(size=(1, H, W, C))
    want_kinks, want_reads = _loop_masks(A, params, threshold)
    np.testing.assert_array_equal(pool_problem.max_pool_kinks(A, params, threshold), want_kinks)
    p = PoolProblem(Examples(A).example(0), params, np.zeros((1,) + params.geometry((H, W)).out_hw + (C,)))
    np.testing.assert_array_equal(PoolProblem(A, params, p.G).reads("A_prev"), want_reads)
    r0, c0 = data.draw(st.integers(0, H - 1)), data.draw(st.integers(0, W - 1))
    r1, c1 = data.draw(st.integers(r0, H)), data.draw(st.integers(c0, W))
    got = p.kinks_at("A_prev", threshold / 2, (r0, r1), (c0, c1))  # kinks at a step h are those within 2h
    np.testing.assert_array_equal(got, want_kinks[:, r0:r1, c0:c1])
    np.testing.assert_array_equal(p.reads_at("A_prev", (r0, r1), (c0, c1)), want_reads[:, r0:r1, c0:c1])
    # excluded (unchanged by the step, or kinks), by rectangles and by flat spans
    h = threshold / 2 or 1e-300
    whole = excluded_mask(PoolProblem(A, params, p.G), A, h)
    ex = ExcludedRect(p, Examples(A).example(0), h)
    np.testing.assert_array_equal(ex[:, r0:r1, c0:c1], whole[:, r0:r1, c0:c1])
    lo = data.draw(st.integers(0, A.size))
    hi = data.draw(st.integers(lo, A.size))
    np.testing.assert_array_equal(ex.flat(lo, hi), whole.reshape(-1)[lo:hi])
    avg = PoolProblem(Examples(A).example(0), PoolParams(**{**params.__dict__, "mode": "average"}), p.G)
    assert avg.kinks_at("A_prev", 1.0, (r0, r1), (c0, c1)) is None


@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_kinks_of_few_and_of_many_kink_windows_are_the_loop_s(ties):
    # few kink windows are searched by their indices, many by whole tap planes: both give the loops' mask
    rng = np.random.default_rng(11)
    A = rng.integers(0, 3, size=(1, 15, 17, 3)).astype(float) if ties else 40 * rng.normal(size=(1, 15, 17, 3))
    for params in (PoolParams(f=3, stride=2, pad=1), PoolParams(f=(2, 3), stride=(1, 2), dilation=(2, 1)),
                   PoolParams(f=3, stride=2, ceil_mode=True)):
        want, _ = _loop_masks(A, params, 1.0)
        windows = int(np.prod(params.geometry((15, 17)).out_hw)) * 3
        kink_windows = 0
        geom = params.geometry((15, 17))
        for r in range(geom.out_hw[0]):  # windows whose two largest taps are within the threshold
            for c in range(geom.out_hw[1]):
                for k in range(3):
                    t, _, left, _ = geom.pads
                    vals = sorted([A[0, i, j, k] if 0 <= i < 15 and 0 <= j < 17 else -np.inf
                                   for i in (r * geom.stride[0] - t + a * geom.dilation[0] for a in range(geom.kernel[0]))
                                   for j in (c * geom.stride[1] - left + b * geom.dilation[1]
                                             for b in range(geom.kernel[1]))])[::-1]
                    kink_windows += vals[0] - vals[1] <= 1.0
        assert (8 * kink_windows >= windows) == ties  # the path this data takes
        assert want.any()
        np.testing.assert_array_equal(pool_problem.max_pool_kinks(A, params, 1.0), want)


LAYERS = [
    ("auto", PoolParams(f=(1, 3), stride=(1, 2)), "normal"),
    ("fast", PoolParams(f=(2, 3), stride=(1, 2), pad=(0, 1, 1, 1), ceil_mode=True), "normal"),
    ("sample", PoolParams(f=(1, 3), stride=(1, 1), dilation=(1, 2)), "ties"),
    ("auto", PoolParams(f=(2, 2), stride=(1, 3), mode="average", pad=(0, 1, 0, 1)), "normal"),
    ("auto", PoolParams(f=(1, 3), stride=(1, 2)), "ties"),
    ("auto", PoolParams(f=(1, 3), stride=(1, 2)), "constant"),
]


@pytest.mark.parametrize("method,params,data", LAYERS)
def test_one_huge_pool_example_read_by_rectangles_is_checked_as_with_it_read_whole(method, params, data,
                                                                                   monkeypatch):
    rng = np.random.default_rng(4)
    A = {"normal": rng.normal(size=(1, 2, 1500, 2)), "ties": rng.integers(0, 5, size=(1, 2, 1500, 2)).astype(float),
         "constant": np.ones((1, 2, 1500, 2))}[data]
    _small_budgets(monkeypatch, A.nbytes)
    out_shape = (1,) + params.geometry(A.shape[1:3]).out_hw + (2,)
    G = np.random.default_rng(3).standard_normal(out_shape)  # seed 3's draw: what the unread check draws
    seen = []
    real = streamed.pass_over_batch
    monkeypatch.setattr(streamed, "pass_over_batch", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    whole = read_whole(monkeypatch, lambda: gradcheck_streamed(A, kind="pool", params=params, method=method, seed=3))
    reads = _whole_reads(monkeypatch)
    unread = gradcheck_streamed(A, kind="pool", params=params, method=method, seed=3)
    given = gradcheck_streamed(A, kind="pool", params=params, method=method, seed=3, grad=G)  # --grad: by rectangles
    assert reads[0] == 0  # neither A nor a given G read whole: rectangles only
    assert json.dumps(unread.to_dict()) == json.dumps(whole.to_dict()) == json.dumps(given.to_dict())
    for run in seen[1:]:
        for key, value in seen[0].items():
            np.testing.assert_array_equal(run[key], value, err_msg=key)
    in_memory = gradcheck_pool(A, params, method=method, seed=3)
    assert in_memory.verdict == unread.verdict
    for x, y in zip(in_memory.gradients, unread.gradients):
        assert (x.name, x.method, x.checked, x.failing, x.passed, x.kinks) == \
            (y.name, y.method, y.checked, y.failing, y.passed, y.kinks)
    if data == "constant":  # every window tied: nothing to check, and said so, as in memory
        assert unread.gradients[0].checked == 0 and any("tied maxima" in n for n in unread.notes)
    else:
        assert unread.verdict == "pass" and (unread.gradients[0].checked or unread.gradients[0].directions) > 0
    if data == "ties":
        assert unread.gradients[0].kinks > 0


def test_a_wrong_max_pool_gradient_of_an_unread_example_is_found_at_its_element(monkeypatch):
    rng = np.random.default_rng(8)
    A = rng.normal(size=(1, 1, 2000, 2))
    _small_budgets(monkeypatch, A.nbytes)
    params = PoolParams(f=(1, 3), stride=(1, 2))
    at = (0, 0, 1234, 1)
    real = pool_problem.pool2d_backward

    def broken(dZ, X, p):
        dA = real(dZ, X, p)
        if p.mode == "max":
            dA = dA.copy()
            dA[X == A[at]] += 1e-2
        return dA
    monkeypatch.setattr(pool_problem, "pool2d_backward", broken)
    reads = _whole_reads(monkeypatch)
    r = gradcheck_streamed(A, kind="pool", params=params, method="sample", seed=2, samples=A.size)
    g = r.gradients[0]
    assert reads[0] == 0 and not g.passed and g.worst.index == at


@pytest.mark.parametrize("mode", ["max", "average"])
def test_one_huge_pool_example_from_a_file_is_checked_in_memory_that_does_not_grow_with_it(mode, tmp_path,
                                                                                          monkeypatch):
    # read whole in every pass (and its kinks, its excluded mask of its size): what was held grew with it
    file_budgets(monkeypatch)
    params = PoolParams(f=(1, 3), stride=(1, 2), mode=mode)
    peaks = []
    for n in (100_000, 400_000):
        A = np.random.default_rng(7).normal(size=(1, 1, n, 2))
        with h5py.File(tmp_path / f"x{n}.h5", "w") as f:
            f["x"] = A
        with h5py.File(tmp_path / f"x{n}.h5", "r") as f:
            r, peak = traced_peak(lambda: gradcheck_streamed(f["x"], kind="pool", params=params, method="auto", seed=1))
            peaks.append(peak)
        assert r.passed and r.gradients[0].method == "fast+sample"
    # 4x the example: 4.8 MB more of it; read whole, what is held grew by 6.5 MB (average) and 14.4 MB (max),
    # peaking at 11.7 and 19.9 MB; unread, peaked at 2.8-3.1 MB
    assert peaks[1] - peaks[0] < GROWTH_BOUND
    assert peaks[1] < 0.75 * 8 * 2 * 400_000


@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 3), st.integers(1, 40), st.data())
def test_a_mask_memo_written_by_spans_gives_the_mask_by_any_rectangle_or_span(H, W, C, values, data):
    # spans of any length from any flat position (most not on a byte's boundary), as the coverage pass's blocks
    shape = (1, H, W, C)
    mask = np.random.default_rng(data.draw(st.integers(0, 99))).random(shape) < 0.4
    memo = streamed_evals.MaskMemo(shape)
    for lo, rows, cols in sampling.example_rects(H, W, C, values):
        assert not memo.done
        memo.put(lo, mask[:, rows, cols])
    assert memo.done
    r0, r1 = sorted(data.draw(st.tuples(st.integers(0, H), st.integers(0, H))))
    c0, c1 = sorted(data.draw(st.tuples(st.integers(0, W), st.integers(0, W))))
    got = memo.rect((r0, r1), (c0, c1))
    assert got.dtype == bool
    np.testing.assert_array_equal(got, mask[:, r0:r1, c0:c1])
    lo, hi = sorted(data.draw(st.tuples(st.integers(0, mask.size), st.integers(0, mask.size))))
    np.testing.assert_array_equal(memo.flat(lo, hi), mask.reshape(-1)[lo:hi])


def test_a_mask_memo_is_written_in_order_only():
    memo = streamed_evals.MaskMemo((1, 1, 10, 1))
    memo.put(0, np.ones((1, 1, 3, 1), dtype=bool))
    with pytest.raises(ValueError):
        memo.put(5, np.ones((1, 1, 2, 1), dtype=bool))


@pytest.mark.parametrize("data", ["normal", "ties"])
def test_an_unread_max_pool_example_s_windows_are_searched_once(data, monkeypatch):
    # its coverage pass keeps the excluded mask (a bit per element); the sample, the directions' steps and the
    # analytical sums read it instead of searching the windows around each of their rectangles again
    rng = np.random.default_rng(5)
    A = rng.normal(size=(1, 2, 3000, 2)) if data == "normal" else rng.integers(0, 4, size=(1, 2, 3000, 2)) * 1.0
    _small_budgets(monkeypatch, A.nbytes)
    params = PoolParams(f=(1, 3), stride=(1, 2))
    searched = [0]
    real = pool_problem._window_kinks

    def counted(X, p, thresholds):
        searched[0] += X.size
        return real(X, p, thresholds)
    monkeypatch.setattr(pool_problem, "_window_kinks", counted)
    kept = gradcheck_streamed(A, kind="pool", params=params, method="auto", seed=6)
    once = searched[0]
    searched[0] = 0
    monkeypatch.setattr(streamed_evals, "MASK_MEMO_BYTES", 0)  # no memo: every rectangle searches its windows
    again = gradcheck_streamed(A, kind="pool", params=params, method="auto", seed=6)
    assert json.dumps(kept.to_dict()) == json.dumps(again.to_dict())
    assert kept.passed
    assert A.size <= once < 1.2 * A.size  # the blocks' windows: each block and a column either side
    assert searched[0] > 3 * A.size
