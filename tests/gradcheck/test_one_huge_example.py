"""A streamed check of one example too large for the workspace (issue 13, part 1): a convolution's upstream gradient
drawn by tiles, its perturbed copies made and its gradient and floor summed tile by tile; a pool's kinks, backward
and perturbed copies by tiles.

The lazy pieces are checked against the whole arrays they stand for (the whole draw, the whole direction, the
plain formulas, the untiled evaluations), bit for bit; whole checks against the same check with the upstream
gradient given whole (the same values: the same JSON) and against the in-memory check; the memory test
measures what the check holds.
"""

import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnncli.gradcheck.directional as directional
import cnncli.gradcheck.fused as fused
import cnncli.gradcheck.lazy as lazy
import cnncli.gradcheck.perturbed as perturbed
import cnncli.gradcheck.pool_problem as pool_problem
import cnncli.gradcheck.problems as problems
import cnncli.gradcheck.streamed_evals as streamed_evals
import cnncli.gradcheck.tiled as tiled
from cnncli.engine import ConvParams, PoolParams, pool2d_backward
from cnncli.engine.reference import conv_forward_loops, pool_backward_loops, pool_forward_loops
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.lazy import DirectionChunks, DrawnUpstream
from cnncli.gradcheck.pool_problem import PoolProblem
from cnncli.gradcheck.problems import ConvProblem
from cnncli.gradcheck.streamed import gradcheck_streamed
from tests.traced import traced_peak

from .broken import backward_off_at


def _tiny(monkeypatch, budget=4096):
    """Every evaluation of one example by tiles of a few outputs; the example too large for its copies."""
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", budget)
    monkeypatch.setattr(tiled, "ENGINE_BYTES", budget)
    monkeypatch.setattr(fused, "OUTPUT_BYTES", budget)
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 8 * budget)


@given(st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 9), st.integers(1, 3)),
       st.integers(1, 40), st.data())
def test_one_example_s_rectangles_are_the_whole_draw_s(shape, mark, data):
    whole = np.random.default_rng(5).standard_normal(shape)
    G = DrawnUpstream(5, shape)
    old, lazy.MARK_VALUES = lazy.MARK_VALUES, mark  # states kept every few values: skips from every kind of mark
    try:
        for _ in range(6):
            e = data.draw(st.integers(0, shape[0] - 1))
            r0 = data.draw(st.integers(0, shape[1] - 1))
            r1 = data.draw(st.integers(r0 + 1, shape[1]))
            c0 = data.draw(st.integers(0, shape[2] - 1))
            c1 = data.draw(st.integers(c0 + 1, shape[2]))
            ex = G.example(e)
            assert ex.shape == (1,) + shape[1:] and ex[0:1] is ex and ex[:] is ex
            np.testing.assert_array_equal(ex[:, r0:r1, c0:c1], whole[e:e + 1, r0:r1, c0:c1])
            np.testing.assert_array_equal(ex[0, r0:r1, c0:c1], whole[e, r0:r1, c0:c1])
        np.testing.assert_array_equal(G[0:shape[0]], whole)  # example slices after rectangles: still the draw
    finally:
        lazy.MARK_VALUES = old


@given(st.lists(st.tuples(st.integers(0, 399), st.integers(1, 60)), min_size=1, max_size=30))
def test_draws_from_where_recent_draws_began_and_ended_are_the_whole_draw_s(spans):
    # the generator's states where the latest draws began and ended are kept besides the marks: a draw starts from
    # the latest of them at or before it (forward, overlapping, backward, past the end of the last)
    whole = np.random.default_rng(2).standard_normal(460)
    G = DrawnUpstream(2, (1, 1, 460, 1))
    old, lazy.MARK_VALUES = lazy.MARK_VALUES, 2**30  # no marks but the first: only the recent states help
    try:
        for lo, n in spans:
            np.testing.assert_array_equal(G.values(lo, lo + n), whole[lo:lo + n])
    finally:
        lazy.MARK_VALUES = old


def test_one_example_is_drawn_by_rectangles_only():
    ex = DrawnUpstream(0, (2, 3, 4, 1)).example(1)
    for bad in (slice(1, 2), 1, (slice(None), 0, slice(None)), (slice(None), slice(0, 3, 2), slice(None))):
        with pytest.raises(TypeError):
            ex[bad]


def test_a_direction_s_span_is_its_values_there():
    shape = (3, 4, 5, 2)
    excluded = np.zeros(shape, dtype=bool)
    D = DirectionChunks(np.random.default_rng(9), shape)
    for p in range(directional.FAST_DIRECTIONS):
        for e in range(3):
            flat = D.chunk(p, e, e + 1, excluded[e:e + 1]).reshape(-1)
            for lo, hi in ((0, 40), (7, 23), (39, 40), (5, 5)):
                np.testing.assert_array_equal(D.span(p, e, lo, hi), flat[lo:hi])


def test_the_stuck_mask_by_pieces_is_the_formula(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 1000, 2)) * 10.0 ** rng.integers(-3, 25, size=(1, 3, 1000, 2))
    h = 1e-6
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", 64)
    got = streamed_evals.stuck_mask(x, h)
    np.testing.assert_array_equal(got, ((x + h) == x) | ((x - h) == x))
    assert got.any() and not got.all()


@pytest.mark.parametrize("params", [ConvParams(), ConvParams(stride=(1, 2), pad=(0, 0, 3, 1)),
                                    ConvParams(pad="same", dilation=(1, 2))])
def test_the_largest_output_magnitude_by_tiles_is_the_untiled_one(params, monkeypatch):
    rng = np.random.default_rng(4)
    A, Wt, b = rng.normal(size=(1, 2, 500, 2)), rng.normal(size=(2, 3, 2, 3)), rng.normal(size=3)
    p = ConvProblem(A, Wt, b, params, np.zeros((1,) + params.geometry((2, 500), (2, 3)).out_hw + (3,)))
    whole = p.floor_top()
    _tiny(monkeypatch, 2048)
    assert p.by_tiles()
    assert p.floor_top() == whole
    # and that is max(conv(|A|, |W|) + |b|) by the loop oracle, up to its summation order
    assert whole == pytest.approx(float(np.max(conv_forward_loops(np.abs(A), np.abs(Wt), np.abs(b), params))),
                                  rel=1e-12)


@pytest.mark.parametrize("params", [ConvParams(), ConvParams(stride=(2, 3), pad=(2, 1, 4, 0), dilation=(1, 2)),
                                    ConvParams(pad=(9, 9, 9, 9))])  # large pads: tiles of padding only
def test_a_directed_difference_is_the_difference_of_the_perturbed_copies(params, monkeypatch):
    rng = np.random.default_rng(6)
    x, Wt = rng.normal(size=(1, 4, 300, 2)), rng.normal(size=(2, 3, 2, 3))
    s = rng.normal(size=x.shape) * 1e-3
    out_hw = params.geometry((4, 300), (2, 3)).out_hw
    G = rng.normal(size=(1,) + out_hw + (3,))
    _tiny(monkeypatch, 2048)
    p = ConvProblem(x, Wt, np.zeros(3), params, G)
    asked = []

    def steps(rows, cols):  # two steps: s and -s / 3, asked for once per tile
        asked.append((rows.start, rows.stop, cols.start, cols.stop))
        return [s[:, rows, cols], -s[:, rows, cols] / 3]
    got = p._directed_difference(x, G, steps, 2)
    assert len(asked) > 3 and len(set(asked)) == len(asked)  # by tiles, each copy made from its rectangle
    for k, step in enumerate((s, -s / 3)):  # the same values as the copies', bit for bit
        assert got[k] == p._differences_of(np.concatenate([x + step, x - step]), G)[0]
        oracle = np.sum(G * (conv_forward_loops(x + step, Wt, np.zeros(3), params)
                             - conv_forward_loops(x - step, Wt, np.zeros(3), params)))
        assert got[k] == pytest.approx(oracle, rel=1e-9, abs=1e-12)


def _huge(n=3000, n_C=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, 1, n, 2)), rng.normal(size=(1, 5, 2, n_C)), rng.normal(size=n_C)


def _spy_draws(monkeypatch):
    """The longest run of upstream values drawn at once (a whole example's: its output size)."""
    drawn = [0]
    real = DrawnUpstream.values

    def spy(self, lo, hi):
        drawn[0] = max(drawn[0], hi - lo)
        return real(self, lo, hi)
    monkeypatch.setattr(DrawnUpstream, "values", spy)
    return drawn


def _spy_sums(monkeypatch):
    """The sums of each pass over the batch (the dicts pass_over_batch returns), in order."""
    import cnncli.gradcheck.streamed as streamed
    seen = []
    real = streamed.pass_over_batch
    monkeypatch.setattr(streamed, "pass_over_batch", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    return seen


@pytest.mark.parametrize("piece", [2**20, 64])  # the gradient and floor final in one piece, or in many
@pytest.mark.parametrize("layer", [("auto", (1, 2), (0, 0, 3, 1)), ("fast", (1, 1), "same"),
                                   ("sample", (1, 3), (0, 0, 9, 9)), ("full", (1, 2), (0, 0, 3, 1)),
                                   ("auto", (1, 2), "max"), ("fast", (1, 1), "average"), ("sample", (1, 2), "average")])
def test_one_huge_example_s_check_draws_its_upstream_gradient_by_tiles_as_if_given_whole(layer, piece, monkeypatch):
    # given whole, G goes the way of any example: its gradient and floor whole, its copies by tiles
    method, stride, pad = layer
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", piece)
    A, Wt, b = _huge()
    if pad in ("max", "average"):  # a pool's (1x3 windows)
        params = PoolParams(f=(1, 3), stride=stride, mode=pad)
        Wt = b = None
        out_shape = (1,) + params.geometry(A.shape[1:3]).out_hw + (A.shape[3],)
        kind, in_memory_check = "pool", lambda: gradcheck_pool(A, params, method=method, seed=3)
    else:
        params = ConvParams(stride=stride, pad=pad)
        out_shape = (1,) + params.geometry(A.shape[1:3], Wt.shape[:2]).out_hw + (Wt.shape[3],)
        kind, in_memory_check = "conv", lambda: gradcheck_conv(A, Wt, b, params, method=method, seed=3)
    G = np.random.default_rng(3).standard_normal(out_shape)  # seed 3's draw: the G the check draws
    _tiny(monkeypatch)
    sums = _spy_sums(monkeypatch)
    given_whole = gradcheck_streamed(A, Wt, b, params, kind=kind, method=method, seed=3, grad=G)
    drawn = _spy_draws(monkeypatch)
    by_tiles = gradcheck_streamed(A, Wt, b, params, kind=kind, method=method, seed=3)
    assert 0 < drawn[0] < G.size // 10  # never drawn whole
    # the pass's sums (directional, the kept gradient and floor), which the JSON shows only as a verdict
    whole_sums, tiled_sums = sums
    assert whole_sums.keys() == tiled_sums.keys()
    for key, value in whole_sums.items():
        np.testing.assert_array_equal(tiled_sums[key], value, err_msg=key)
    assert by_tiles.verdict == "pass"
    assert json.dumps(by_tiles.to_dict()) == json.dumps(given_whole.to_dict())
    in_memory = in_memory_check()
    assert in_memory.verdict == by_tiles.verdict and in_memory.notes == by_tiles.notes
    for x, y in zip(in_memory.gradients, by_tiles.gradients):
        assert (x.name, x.method, x.checked, x.failing, x.passed) == (y.name, y.method, y.checked, y.failing,
                                                                      y.passed)


@pytest.mark.parametrize("method", ["auto", "fast", "sample"])
def test_a_wrong_gradient_of_one_huge_example_is_found_at_its_element(method, monkeypatch):
    A, Wt, b = _huge(n=2000)
    at = (0, 0, 1234, 1)
    value = A[at]
    monkeypatch.setattr(problems, "conv2d_backward", backward_off_at(problems.conv2d_backward, value, 1e-2))
    _tiny(monkeypatch)
    drawn = _spy_draws(monkeypatch)
    # the sample is made to hold the element: method sample with every element asked
    r = gradcheck_streamed(A, Wt, b, ConvParams(pad="same"), method=method, seed=2,
                           samples=A.size if method == "sample" else None)
    g = r.gradients[0]
    assert not g.passed and g.worst.index == at
    assert r.gradients[1].passed and r.gradients[2].passed
    if method == "sample":
        assert 0 < drawn[0] < A.size  # the upstream gradient never drawn whole for the pass and the sample


def test_one_huge_example_s_streamed_check_holds_none_of_its_gradients_whole(monkeypatch):
    # a fast check of a 1 x 1 x N x 2 signal (5 taps, 2 channels out: its output about its size): it held the
    # example read, its upstream gradient, dA_prev, its floor and a direction whole with two perturbed copies
    # (6.3x the example's float64 bytes traced); the upstream gradient and the copies were then made tile by
    # tile (3.0x), and now dA_prev and its floor are kept only where not yet final (1.96x)
    monkeypatch.setattr(directional, "SLICE_VALUES", 2**14)
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", 2**14)
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", 2**18)
    monkeypatch.setattr(tiled, "ENGINE_BYTES", 2**18)
    monkeypatch.setattr(fused, "OUTPUT_BYTES", 2**18)
    A, Wt, b = _huge(n=200_000, n_C=2)
    r, peak = traced_peak(lambda: gradcheck_streamed(A, Wt, b, ConvParams(), method="fast", seed=1))
    assert r.passed
    # the sample's candidates (int32: half the example each, a stratum and its shuffle), the errors of the
    # compared elements in the gradient's shape (the result's ``errors``), the masks, the tiles' workspace
    assert peak < 2.5 * A.nbytes


def _direction_of(D, q, e, excluded, h):
    """Direction ``q`` of example ``e`` as the perturbed copies were made of it whole: drawn, zeroed, scaled."""
    hd = D.rows(q, np.array([e]), excluded)
    hd *= h
    return hd


def test_the_pieces_of_a_perturbed_example_are_its_whole_copies_values(monkeypatch):
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", 7)
    rng = np.random.default_rng(12)
    shape, h = (3, 3, 5, 2), 1e-3
    x, excluded = rng.normal(size=shape), rng.random(size=shape) < 0.3
    D = DirectionChunks(np.random.default_rng(1), shape)
    for q in range(directional.FAST_DIRECTIONS):
        hd = _direction_of(D, q, 1, excluded[1:2], h)
        plus, minus = (x[1:2] + hd).reshape(-1), (x[1:2] - hd).reshape(-1)
        pieces = list(streamed_evals._drawn_pieces(x[1:2], D, q, 1, excluded[1:2], h))
        assert [sl.start for sl, _, _ in pieces] == list(range(0, plus.size, 7))
        np.testing.assert_array_equal(np.concatenate([p for _, p, _ in pieces]), plus)
        np.testing.assert_array_equal(np.concatenate([m for _, _, m in pieces]), minus)


def test_a_rectangle_s_step_is_the_whole_direction_s_there():
    rng = np.random.default_rng(13)
    shape, h = (2, 4, 6, 3), 1e-4
    excluded = rng.random(size=shape) < 0.3
    D = DirectionChunks(np.random.default_rng(2), shape)
    P = directional.FAST_DIRECTIONS
    whole = [_direction_of(D, q, 1, excluded[1:2], h) for q in range(P)]
    steps = streamed_evals._rect_steps(D, 1, excluded[1:2], h, P)
    for r0 in range(4):
        for r1 in range(r0 + 1, 5):
            for c0, c1 in ((0, 6), (2, 3), (1, 6), (0, 4)):
                got = list(steps(slice(r0, r1), slice(c0, c1)))
                assert len(got) == P
                for q in range(P):
                    np.testing.assert_array_equal(got[q], whole[q][:, r0:r1, c0:c1])


def _window(draw, kernel, rows: int, cols: int):
    """A window (kh, kw), its dilation and an input of up to ``rows`` x ``cols`` windows' positions beyond it."""
    kh, kw = draw(st.integers(1, kernel[0])), draw(st.integers(1, kernel[1]))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return kh, kw, dil, draw(st.integers(1, rows)) + (kh - 1) * dil[0], draw(st.integers(1, cols)) + (kw - 1) * dil[1]


@st.composite
def _tiled_layers(draw):
    kh, kw, dil, H, W = _window(draw, (4, 4), 6, 30)
    pad = draw(st.one_of(st.just("same"), st.tuples(*[st.integers(0, 5)] * 4)))
    params = ConvParams(stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), pad=pad, dilation=dil)
    C = draw(st.integers(1, 3))
    return (1, H, W, C), (kh, kw), params, draw(st.integers(1, 3000)), draw(st.integers(1, 50))


@given(_tiled_layers(), st.integers(0, 2**16))
def test_a_rolling_window_of_tiles_is_their_dense_sum_piece_by_piece(layer, seed):
    shape, kernel, params, budget, piece = layer
    geom = params.geometry(shape[1:3], kernel)
    plan = tiled.plan(geom, shape[3], 1, 0, budget)
    if plan is None:
        plan = (geom.out_hw[0], geom.out_hw[1])
    tiles = tiled.tiles(geom, params, *plan)
    rng = np.random.default_rng(seed)
    dense = [np.zeros(shape), np.zeros(shape)]
    rolling = streamed_evals._Rolling(shape, piece)
    got, widest = [], 0
    for tile, bound in zip(tiles, rolling.bounds(tiles)):
        if tile.real:
            rect = (slice(None), slice(tile.rb.in_lo, tile.rb.in_hi), slice(tile.cb.in_lo, tile.cb.in_hi))
            for which in (0, 1):
                part = rng.normal(size=dense[which][rect].shape)
                dense[which][rect] += part  # the sums of tiled.backward, in the same order
                rolling.add(which, tile, part)
        got += list(rolling.ready(bound))
        widest = max(widest, rolling.bufs[0].size)
    got += list(rolling.ready(None))
    n = int(np.prod(shape))
    assert [(lo, hi) for lo, hi, _, _ in got] == [(lo, min(n, lo + piece)) for lo in range(0, n, piece)]
    for which in (0, 1):
        np.testing.assert_array_equal(np.concatenate([g[2 + which] for g in got]), dense[which].reshape(-1))
    # held: at most the pieces not yet final and the rows a tile reaches, doubled as the window grows
    rows = max((t.rb.in_hi - t.rb.in_lo + 1) * shape[2] * shape[3] for t in tiles)
    assert widest <= 2 * (piece + rows)


def test_the_sample_s_int32_candidates_are_the_int64_ones_shuffled_alike(monkeypatch):
    import cnncli.gradcheck.sampling as sampling
    rng = np.random.default_rng(0)
    excluded = rng.random(size=(3, 7, 9, 2)) < 0.4

    def strata(shape):  # corners, edges, interior of every example and channel, written out
        _, H, W, _ = shape
        i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        border = (i == 0) | (i == H - 1), (j == 0) | (j == W - 1)
        planes = (border[0] & border[1], (border[0] | border[1]) & ~(border[0] & border[1]),
                  ~(border[0] | border[1]))
        return [np.broadcast_to(s[None, :, :, None], shape) for s in planes]

    def old_way(shape, n, gen, excluded):  # the sampler before int32 candidates, its oracle
        pools = []
        for mask in strata(shape):
            cand = np.flatnonzero(mask & ~excluded)
            if cand.size:
                pools.append(gen.permutation(cand))
        take, left = [0] * len(pools), min(n, sum(p.size for p in pools))
        while left:
            for s, pool in enumerate(pools):
                if left and take[s] < pool.size:
                    take[s] += 1
                    left -= 1
        return np.sort(np.concatenate([pool[:k] for pool, k in zip(pools, take)]))
    monkeypatch.setattr(sampling, "CANDIDATE_PIECE", 10)  # many pieces
    for n in (1, 17, 100, 10**6):
        a, b = np.random.default_rng(n), np.random.default_rng(n)
        got = sampling.stratified_indices(excluded.shape, "A_prev", n, a, excluded)
        want = old_way(excluded.shape, n, b, excluded)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
        assert a.random() == b.random()  # the generator moved on alike


def test_the_maps_of_a_few_checked_elements_are_the_dense_maps(monkeypatch):
    import cnncli.gradcheck.metrics as metrics
    rng = np.random.default_rng(1)
    shape = (2, 9, 11, 3)
    idx = np.sort(rng.choice(int(np.prod(shape)), size=30, replace=False))
    a = rng.normal(size=30)
    n = a + np.where(rng.random(30) < 0.3, 1e-3, 1e-15)  # some fail
    monkeypatch.setattr(metrics, "SPARSE_MAPS", 10**9)  # from the dense arrays, whatever the count
    dense = metrics.gradient_metrics("dA_prev", shape, "mhwc", "sample", idx, a, n, 0, 1e-7, pads=(1, 1, 1, 1),
                                     stride=(1, 1))
    monkeypatch.setattr(metrics, "SPARSE_MAPS", 0)  # from the checked elements alone
    sparse = metrics.gradient_metrics("dA_prev", shape, "mhwc", "sample", idx, a, n, 0, 1e-7, pads=(1, 1, 1, 1),
                                      stride=(1, 1))
    np.testing.assert_array_equal(sparse.error_map, dense.error_map)
    assert sparse.hint == dense.hint and dense.failing > 0
    np.testing.assert_array_equal(sparse.errors, dense.errors)


# --- pooling: one huge example's evaluations by tiles too --------------------------------------------------


@st.composite
def _pool_layers(draw):
    kh, kw, dil, H, W = _window(draw, (3, 4), 5, 40)
    pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)),
           draw(st.integers(0, kw // 2)))
    params = PoolParams(f=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), pad=pad,
                        dilation=dil, mode=draw(st.sampled_from(["max", "average"])),
                        ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()))
    try:
        params.geometry((H, W))
    except Exception:  # a ceil-mode or dilation geometry the engine refuses: not a layer
        assume(False)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    # few distinct values: ties and near-ties in the max windows (kinks)
    A = rng.integers(-3, 4, size=(1, H, W, draw(st.integers(1, 2)))) + rng.normal(size=(1, H, W, 1)) * 1e-7
    return A, params, draw(st.integers(64, 3000))


@given(_pool_layers())
def test_pool_kinks_and_backward_by_tiles_are_the_whole_example_s(layer):
    A, params, budget = layer
    geom = params.geometry(A.shape[1:3])
    G = np.random.default_rng(1).normal(size=(1,) + geom.out_hw + (A.shape[3],))
    whole_kinks = pool_problem.max_pool_kinks(A, params, 2e-6)
    whole_grad = pool2d_backward(G, A, params)
    old = (tiled.WORKSPACE_BYTES, tiled.ENGINE_BYTES)
    tiled.WORKSPACE_BYTES, tiled.ENGINE_BYTES = 4 * budget, budget
    try:
        kinks = pool_problem.max_pool_kinks(A, params, 2e-6)
        grad = tiled.pool_backward(G, A, params, geom, budget, pool2d_backward)
    finally:
        tiled.WORKSPACE_BYTES, tiled.ENGINE_BYTES = old
    np.testing.assert_array_equal(kinks, whole_kinks)  # any window's kink, wherever the tiles cut
    # the windows' parts added in another order where windows overlap: rounding only; the loop oracle's values
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, pool_backward_loops(G, A, params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "average"])
def test_a_pool_s_directed_difference_is_the_difference_of_its_perturbed_copies(mode, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 3, 400, 2))
    params = PoolParams(f=(2, 3), stride=(1, 2), pad=(0, 1, 1, 1), mode=mode)
    G = rng.normal(size=(1,) + params.geometry((3, 400)).out_hw + (2,))
    s = rng.normal(size=x.shape) * 1e-4
    _tiny(monkeypatch, 2048)
    p = PoolProblem(x, params, G)
    asked = []
    got = p._directed_difference(x, G, lambda rows, cols: asked.append(1) or [s[:, rows, cols], 2 * s[:, rows, cols]],
                                 2)
    assert len(asked) > 3
    for k, step in enumerate((s, 2 * s)):
        oracle = np.sum(G * (pool_forward_loops(x + step, params) - pool_forward_loops(x - step, params)))
        assert got[k] == pytest.approx(oracle, rel=1e-9, abs=1e-13)


def _pool_huge(n=3000, seed=0):
    return np.random.default_rng(seed).normal(size=(1, 1, n, 2))


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("method", ["auto", "fast", "sample"])
def test_one_huge_example_s_pool_check_by_tiles_is_the_check_without(mode, method, monkeypatch):
    A = _pool_huge()
    params = PoolParams(f=(1, 3), stride=(1, 2), mode=mode)
    whole = gradcheck_streamed(A, params=params, kind="pool", method=method, seed=4)
    seen = []
    real = pool_problem.pool2d_backward
    monkeypatch.setattr(pool_problem, "pool2d_backward", lambda dZ, X, p: seen.append(X.shape[2]) or real(dZ, X, p))
    _tiny(monkeypatch)
    by_tiles = gradcheck_streamed(A, params=params, kind="pool", method=method, seed=4)
    assert seen and max(seen) < A.shape[2]  # the backward saw tiles, never the whole row
    assert whole.verdict == by_tiles.verdict == "pass" and whole.notes == by_tiles.notes
    for x, y in zip(whole.gradients, by_tiles.gradients):
        assert (x.method, x.checked, x.kinks, x.failing) == (y.method, y.checked, y.kinks, y.failing)
        assert y.relative_error == pytest.approx(x.relative_error, rel=1e-3, abs=1e-13)
        assert y.rounding_floor == pytest.approx(x.rounding_floor, rel=1e-9)


@pytest.mark.parametrize("method", ["auto", "fast", "sample"])
def test_a_wrong_pool_gradient_of_one_huge_example_is_found_at_its_element(method, monkeypatch):
    A = _pool_huge(n=2000)
    # count_include_pad False: the rounding floor's calls (average, count_include_pad True) are told apart
    params = PoolParams(f=(1, 3), stride=(1, 2), mode="average", count_include_pad=False)
    at = (0, 0, 1001, 1)
    value = A[at]
    real = pool_problem.pool2d_backward

    def broken(dZ, X, p):  # dA_prev off at A[at], in whichever tile holds it (not in the floor's spread)
        dA = real(dZ, X, p)
        if p.count_include_pad:
            return dA
        return dA + np.where(X == value, 1e-2, 0.0)
    monkeypatch.setattr(pool_problem, "pool2d_backward", broken)
    _tiny(monkeypatch)
    r = gradcheck_streamed(A, params=params, kind="pool", method=method, seed=2,
                           samples=A.size if method == "sample" else None)
    g = r.gradients[0]
    assert not g.passed and g.worst.index == at


@pytest.mark.parametrize("mode, copies", [("max", 2.75), ("average", 2.5)])
def test_one_huge_example_s_streamed_pool_check_holds_a_few_copies_of_it(mode, copies, monkeypatch):
    # a pool's fast check of a 1 x 1 x N x 2 signal held 6.0x (max) and 6.4x (average) the example's float64
    # bytes traced: the kinks' window copies, the engine's backward of the whole row, two perturbed copies
    # and a direction, G, dA_prev and (average) its floor; about 2.2x and 1.9x since all go by tiles (as a
    # convolution's, its gradient and floor summed in a window of the example): the sample's candidates, the
    # compared elements' errors, the masks, a tile's workspace
    monkeypatch.setattr(directional, "SLICE_VALUES", 2**14)
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", 2**14)
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", 2**18)
    monkeypatch.setattr(tiled, "ENGINE_BYTES", 2**18)
    A = _pool_huge(n=200_000)
    params = PoolParams(f=(1, 3), stride=(1, 2), mode=mode)
    r, peak = traced_peak(lambda: gradcheck_streamed(A, params=params, kind="pool", method="fast", seed=1))
    assert r.passed
    assert peak < copies * A.nbytes


@pytest.mark.parametrize("method", ["auto", "fast", "sample"])
@pytest.mark.parametrize("workspace", [4096, 90_000])  # the directed differences by pieces of rows, or 2 rows
def test_a_set_of_huge_images_some_moved_some_sampled_is_checked_as_with_g_given_whole(method, workspace,
                                                                                       monkeypatch):
    # more huge examples than the directions move (2 of 6) and than are sampled (4): an example sampled but not
    # moved got directional sums all the same (its G drawn by tiles), and the verdict's inputs changed
    import cnncli.gradcheck.streamed as streamed
    monkeypatch.setattr(streamed, "DIRECTED_EXAMPLES", 2)
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 100)
    monkeypatch.setattr(streamed, "SAMPLED_EXAMPLES", 4)
    _tiny(monkeypatch)
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", workspace)
    monkeypatch.setattr(tiled, "LOCAL_OUTPUTS", 64)
    rng = np.random.default_rng(5)
    A, Wt, b = rng.normal(size=(6, 12, 120, 2)), rng.normal(size=(3, 3, 2, 3)), rng.normal(size=3)
    params = ConvParams(pad=1)
    G = np.random.default_rng(3).standard_normal((6, 12, 120, 3))
    sums = _spy_sums(monkeypatch)
    given_whole = gradcheck_streamed(A, Wt, b, params, method=method, seed=3, grad=G)
    drawn = _spy_draws(monkeypatch)
    by_tiles = gradcheck_streamed(A, Wt, b, params, method=method, seed=3)
    assert by_tiles.verdict == "pass" and 0 < drawn[0]
    if method != "sample":
        assert any("the directional check moves 2 of the 6" in n for n in by_tiles.notes)
        assert np.count_nonzero(sums[1]["a_blk"].any(axis=0)) == 2  # only the moved examples have sums
    for key, value in sums[0].items():
        np.testing.assert_array_equal(sums[1][key], value, err_msg=key)
    assert json.dumps(by_tiles.to_dict()) == json.dumps(given_whole.to_dict())


def test_an_example_of_huge_input_is_tiled_by_rows_even_where_its_rows_fit(monkeypatch):
    # a 1 x 4000 x 4000 x 1 image under a 3x3 conv: its output rows fit the engine's block, so it went whole,
    # its upstream gradient, gradient and floor held at once (2.5 GB of RSS); above HUGE_INPUT_BYTES its
    # evaluations go by tiles of rows, G drawn by them
    rng = np.random.default_rng(9)
    A, Wt, b = rng.normal(size=(1, 40, 30, 2)), rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4)
    params = ConvParams(pad=1)
    geom = params.geometry((40, 30), (3, 3))
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 8 * 4096)
    monkeypatch.setattr(tiled, "ENGINE_BYTES", 2**16)  # one output row's patches (4.3 kB) fit
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", 2**16)
    monkeypatch.setattr(fused, "OUTPUT_BYTES", 2**16)  # the filter bank's tiles: rows of them too
    assert tiled.plan(geom, 2, 1, 0, tiled.ENGINE_BYTES) is None
    G = np.random.default_rng(3).standard_normal((1, 40, 30, 4))
    before = gradcheck_streamed(A, Wt, b, params, seed=3)
    monkeypatch.setattr(tiled, "HUGE_INPUT_BYTES", A.nbytes - 1)
    rows, cols = tiled.plan(geom, 2, 1, 0, tiled.ENGINE_BYTES)
    assert 1 <= rows < 40 and cols == 30  # tiles of whole rows
    sums = _spy_sums(monkeypatch)
    given_whole = gradcheck_streamed(A, Wt, b, params, seed=3, grad=G)
    drawn = _spy_draws(monkeypatch)
    by_rows = gradcheck_streamed(A, Wt, b, params, seed=3)
    assert 0 < drawn[0] < G.size // 2  # never drawn whole
    for key, value in sums[0].items():
        np.testing.assert_array_equal(sums[1][key], value, err_msg=key)
    assert json.dumps(by_rows.to_dict()) == json.dumps(given_whole.to_dict())
    _same_verdicts(before, by_rows)  # the whole example's check, up to another summation order


def _same_verdicts(a, b):
    assert a.verdict == b.verdict == "pass" and a.notes == b.notes
    for x, y in zip(a.gradients, b.gradients):
        assert (x.name, x.method, x.checked, x.failing) == (y.name, y.method, y.checked, y.failing)
        assert y.relative_error == pytest.approx(x.relative_error, rel=1e-3, abs=1e-13)


def test_ordinary_examples_are_not_tiled_by_their_input_size():
    # a 224 x 224 x 64 example (25 MB of input) keeps its untiled evaluations, and so its results to the bit
    for shape, kernel in (((224, 224), (3, 3)), ((112, 112), (7, 7))):
        geom = ConvParams(pad=1).geometry(shape, kernel)
        assert tiled.plan(geom, 64, 1, 0, tiled.ENGINE_BYTES) is None
    assert 8 * 224 * 224 * 64 < tiled.HUGE_INPUT_BYTES


def test_a_streamed_gradient_larger_than_the_dense_limit_keeps_no_maps_of_its_size(monkeypatch):
    rng = np.random.default_rng(2)
    A, Wt, b = rng.normal(size=(3, 12, 10, 2)), rng.normal(size=(3, 3, 2, 2)), rng.normal(size=2)
    whole = gradcheck_streamed(A, Wt, b, ConvParams(pad=1), seed=1)
    assert whole.gradients[0].errors.shape == A.shape and whole.gradients[0].error_map.shape == (12, 10)
    monkeypatch.setattr(streamed_evals, "DENSE_VALUES", 100)  # fewer than its 720 values and its 12 x 10 map
    small = gradcheck_streamed(A, Wt, b, ConvParams(pad=1), seed=1)
    g = small.gradients[0]
    assert g.errors is None and g.error_map is None
    assert g.hint == whole.gradients[0].hint and g.failing == whole.gradients[0].failing
    assert json.dumps(small.to_dict()) == json.dumps(whole.to_dict())  # what is reported is the same
    import cnncli.gradcheck.metrics as metrics
    monkeypatch.setattr(metrics, "DENSE_ERRORS", 100)  # in memory: no errors in its shape, its map as before
    in_memory = gradcheck_conv(A, Wt, b, ConvParams(pad=1), seed=1)
    assert in_memory.gradients[0].errors is None and in_memory.gradients[0].error_map.shape == (12, 10)
