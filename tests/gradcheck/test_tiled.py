"""The checker's tiles for examples too large for its workspace (cnncli.gradcheck.tiled).

The tiles' forward and backward are checked against the loop oracle on random geometries, and whole checks
under tiny budgets (every example tiled) against the same checks untiled; the memory test measures what a
check of one wide example holds.
"""

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnncli.gradcheck.fused as fused
import cnncli.gradcheck.pool_problem as pool_problem
import cnncli.gradcheck.problems as problems
import cnncli.gradcheck.tiled as tiled
from cnncli.engine import ConvParams, PoolParams, pool2d
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops, pool_forward_loops
from cnncli.errors import HyperparameterError
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.streamed import gradcheck_streamed

from tests.traced import traced_peak

from .broken import backward_off_at


@st.composite
def layers(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H = draw(st.integers(1, 7)) + (kh - 1) * dil[0]
    W = draw(st.integers(1, 12)) + (kw - 1) * dil[1]
    groups = draw(st.sampled_from([1, 2]))
    C, n_C = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    pad = draw(st.one_of(st.just("same"), st.tuples(*[st.integers(0, 6)] * 4)))  # large pads: padding-only tiles
    params = ConvParams(stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), pad=pad, dilation=dil,
                        groups=groups)
    k = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A = rng.normal(size=(k, H, W, C))
    Wt = rng.normal(size=(kh, kw, C // groups, n_C))
    b = rng.normal(size=n_C)
    budget = draw(st.integers(1, 4000))  # from one output per tile up to whole rows
    return A, Wt, b, params, budget


@given(layers())
def test_tiles_forward_and_backward_are_the_loop_oracle_s(layer):
    A, Wt, b, params, budget = layer
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    Z = tiled.forward(A, Wt, b, params, geom, budget)
    np.testing.assert_allclose(Z, conv_forward_loops(A, Wt, b, params), rtol=1e-12, atol=1e-12)
    dZ = np.random.default_rng(1).normal(size=Z.shape)
    dA, dW, db = tiled.backward(dZ, A, Wt, params, geom, budget)
    ref = conv_backward_loops(dZ, A, Wt, params)
    for got, want in zip((dA, dW, db), ref):
        np.testing.assert_allclose(got, np.reshape(want, np.shape(got)), rtol=1e-11, atol=1e-11)
    none, dW2, db2 = tiled.backward(dZ, A, Wt, params, geom, budget, input_grad=False)
    assert none is None
    np.testing.assert_allclose(dW2, dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db2, db, rtol=1e-12, atol=1e-12)


@given(layers(), st.integers(0, 3), st.booleans(), st.booleans())
def test_tiles_cover_every_output_once_and_stay_within_the_budget(layer, channels, together, huge):
    A, Wt, _, params, budget = layer
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    oh, ow = geom.out_hw
    k, C = A.shape[0], A.shape[3]
    patch = Wt.shape[0] * Wt.shape[1] * C
    least = k if together else 1  # the examples the caller cannot evaluate apart
    t = tiled.plan(geom, C, k, channels, budget, least, unread=huge)
    # whole exactly when that many examples' outputs and one row's patches fit (more are the caller's chunk);
    # an unread (huge) example never
    assert (t is None) == (not huge and 8 * least * (oh * ow * channels + ow * patch) <= budget)
    if t is None:
        return
    covered = np.zeros((oh, ow), dtype=int)
    for tile in tiled.tiles(geom, params, *t):
        covered[tile.rows, tile.cols] += 1
        n = (tile.rows.stop - tile.rows.start) * (tile.cols.stop - tile.cols.start)
        # a tile within the budget, or one row of one output... (a ceil-mode last one joins its neighbour: none
        # in a conv); at least one output per tile
        assert n == 1 or 8 * k * n * (channels + patch) <= budget
        # a huge example's tile reads at most the budget of its input too (a conv whose stride passes its kernel:
        # one output row's windows spanned a 1 x 4M x 4 signal, read at once), or one output's window
        reads = 8 * k * (tile.rb.in_hi - tile.rb.in_lo) * (tile.cb.in_hi - tile.cb.in_lo) * C
        assert not huge or n == 1 or reads <= budget
        x = tile.input(A)
        assert x.shape[1:3] == (max(1, tile.rb.in_hi - tile.rb.in_lo), max(1, tile.cb.in_hi - tile.cb.in_lo))
    assert (covered == 1).all()


def test_a_huge_example_under_a_stride_past_its_kernel_is_read_a_budget_at_a_time():
    # a 1 x 1 x 4M x 4 signal (128 MB) under a 1x10 conv of stride 1000: its 4000 outputs and their patches fit the
    # engine's budget, so its one output row was one tile reading the whole signal (890 MB of RSS in gradcheck)
    geom = ConvParams(stride=(1, 1000)).geometry((1, 4_000_000), (1, 10))
    budget = tiled.ENGINE_BYTES
    rows, cols = tiled.plan(geom, 4, 1, 0, budget, unread=True)
    assert rows == 1 and 1 < cols < 4000
    for tile in tiled.tiles(geom, ConvParams(stride=(1, 1000)), rows, cols):
        assert 8 * 4 * (tile.cb.in_hi - tile.cb.in_lo) <= budget
    # where one output's window alone exceeds the budget, tiles of one output each
    wide = ConvParams().geometry((1, 4_000_000), (1, 300_000))
    assert tiled.plan(wide, 4, 1, 0, budget, unread=True) == (1, 1)


@given(layers(), st.integers(0, 2**16))
def test_local_differences_are_the_loop_oracle_s_loss_differences(layer, seed):
    # an element on the rectangle its outputs read (stride past the kernel: some read by no window)
    A, Wt, b, params, _ = layer
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(A.shape[0],) + geom.out_hw + (Wt.shape[3],))
    p = problems.ConvProblem(A, Wt, b, params, G)
    idx = rng.integers(0, A.size, size=6)
    plus, minus = A.reshape(-1)[idx] + 0.25, A.reshape(-1)[idx] - 0.5
    got = p._local_differences(idx, plus, minus)
    for k, i in enumerate(idx):
        losses = []
        for v in (plus[k], minus[k]):
            x = A.copy()
            x.reshape(-1)[i] = v
            losses.append(np.sum(G * conv_forward_loops(x, Wt, b, params)))
        assert got[k] == pytest.approx(losses[0] - losses[1], rel=1e-9, abs=1e-9)


@st.composite
def pools(draw):
    f = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, (f[a] - 1) // 2)) for a in (0, 0, 1, 1))  # a window never wholly padding
    mode = draw(st.sampled_from(["max", "average"]))
    params = PoolParams(f=f, stride=stride, pad=pad, mode=mode, ceil_mode=draw(st.booleans()),
                        count_include_pad=draw(st.booleans()))
    H, W = f[0] + draw(st.integers(0, 6)), f[1] + draw(st.integers(0, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return rng.normal(size=(draw(st.integers(1, 2)), H, W, draw(st.integers(1, 2)))), params, rng


def _pool_problem(pool):
    """``(A, params, geom, G)`` of a drawn pool layer (hypothesis assumes its geometry valid)."""
    A, params, rng = pool
    try:
        geom = params.geometry(A.shape[1:3])
    except HyperparameterError:
        assume(False)
    return A, params, geom, rng.normal(size=(A.shape[0],) + geom.out_hw + (A.shape[3],))


def _pool_loss_differences(A, G, params, idx, plus, minus) -> np.ndarray:
    """The loop oracle: each element set to plus, then minus, in the whole example, ``sum(G * pool(x))`` apart."""
    out = np.empty(len(idx))
    for k, i in enumerate(idx):
        losses = []
        for v in (plus[k], minus[k]):
            x = A.copy()
            x.reshape(-1)[i] = v
            losses.append(np.sum(G * pool_forward_loops(x, params)))
        out[k] = losses[0] - losses[1]
    return out


@given(pools())
def test_pool_local_differences_are_the_loop_oracle_s_loss_differences(pool):
    A, params, geom, G = _pool_problem(pool)
    idx = pool[2].integers(0, A.size, size=6)
    plus, minus = A.reshape(-1)[idx] + 3.0, A.reshape(-1)[idx] - 3.0  # past every neighbour: the max moves
    got = tiled.local_differences(pool2d, A, G, geom, params, idx, plus, minus)
    np.testing.assert_allclose(got, _pool_loss_differences(A, G, params, idx, plus, minus), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("check", ["memory", "streamed"])
def test_a_pool_check_of_a_wide_example_is_the_check_without_tiles(mode, check, monkeypatch):
    A = np.random.default_rng(4).normal(size=(2, 1, 300, 2))
    params = PoolParams(f=(1, 3), stride=(1, 2), pad=(0, 0, 1, 1), mode=mode, ceil_mode=True)
    run = gradcheck_pool if check == "memory" else lambda *a, **k: gradcheck_streamed(a[0], None, None, a[1],
                                                                                     kind="pool", **k)
    whole = run(A, params, method="sample", seed=3)
    calls = []
    real = pool2d

    def spy(x, *args, **kwargs):
        calls.append(x.shape[2])
        return real(x, *args, **kwargs)
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", 4096)
    monkeypatch.setattr(pool_problem, "pool2d", spy)
    local = run(A, params, method="sample", seed=3)
    assert whole.passed
    _same(whole, local)
    assert calls and min(calls) < A.shape[2]  # the sampled elements were evaluated on their windows


def _tiny_budgets(monkeypatch, budget=4096):
    """Every example of the checks below is evaluated by tiles of a few outputs."""
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", budget)
    monkeypatch.setattr(tiled, "ENGINE_BYTES", budget)
    monkeypatch.setattr(fused, "OUTPUT_BYTES", budget)


def _signal(n=300, C=2, n_C=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, 1, n, C)), rng.normal(size=(1, 5, C, n_C)), rng.normal(size=n_C)


def _same(a, b):
    assert a.verdict == b.verdict and a.notes == b.notes
    for x, y in zip(a.gradients, b.gradients):
        assert (x.name, x.method, x.passed, x.checked, x.failing) == (y.name, y.method, y.passed, y.checked, y.failing)
        assert x.relative_error == pytest.approx(y.relative_error, rel=1e-3, abs=1e-13)
        assert (x.worst is None) == (y.worst is None)
        if x.worst is not None and not x.passed:
            assert x.worst.index == y.worst.index


@pytest.mark.parametrize("method", ["auto", "fast", "sample", "full"])
@pytest.mark.parametrize("check", ["memory", "streamed"])
def test_a_check_by_tiles_is_the_check_without(method, check, monkeypatch):
    A, Wt, b = _signal()
    params = ConvParams(stride=(1, 2), pad=(0, 0, 3, 1))
    run = gradcheck_conv if check == "memory" else gradcheck_streamed
    whole = run(A, Wt, b, params, method=method, seed=5)
    calls = []
    real = problems.conv2d

    def spy(x, *args, **kwargs):
        calls.append(x.shape[2])
        return real(x, *args, **kwargs)
    monkeypatch.setattr(problems, "conv2d", spy)
    _tiny_budgets(monkeypatch)
    by_tiles = run(A, Wt, b, params, method=method, seed=5)
    assert whole.verdict == "pass"
    _same(whole, by_tiles)
    assert calls and max(calls) < A.shape[2]  # the evaluations saw tiles, never the whole row


@pytest.mark.parametrize("check", ["memory", "streamed"])
def test_a_wrong_dA_prev_is_still_found_at_its_element_by_tiles(check, monkeypatch):
    A, Wt, b = _signal(n=200)
    params = ConvParams(pad="same")
    real = problems.conv2d_backward
    at = (1, 0, 123, 1)
    value = A[at]
    calls = []
    # the layer's dA_prev off at the element of A[at]'s value, wherever a call (a tile) holds that element
    monkeypatch.setattr(problems, "conv2d_backward", backward_off_at(real, value, 1e-3, calls))
    run = gradcheck_conv if check == "memory" else gradcheck_streamed
    whole = run(A, Wt, b, params, method="full", seed=2)
    assert max(calls) == A.shape[2]
    calls.clear()
    _tiny_budgets(monkeypatch)
    by_tiles = run(A, Wt, b, params, method="full", seed=2)
    assert calls and max(calls) < A.shape[2]
    for r in (whole, by_tiles):
        g = r.gradients[0]
        assert not g.passed and g.worst.index == at and g.failing == 1
        assert r.gradients[1].passed and r.gradients[2].passed


def test_one_wide_example_s_check_holds_a_few_copies_of_it(monkeypatch):
    # a 1 x 1 x N x C signal: one output row, the engine's least block, whose patches (5 taps: 5x the example)
    # each evaluation held in each of its copies: 25x the example's float64 bytes were traced before the tiles
    rng = np.random.default_rng(0)
    A = rng.normal(size=(1, 1, 100_000, 2))
    Wt, b = rng.normal(size=(1, 5, 2, 2)), rng.normal(size=2)
    _tiny_budgets(monkeypatch, 2**18)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        r = gradcheck_conv(A, Wt, b, ConvParams(), seed=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert r.passed
    # held whole by design (README): A in float64, G (as large here), dA_prev, its rounding floor and the 3
    # directions, 7 copies; then two perturbed copies and what a step computes from them, plus the workspace
    assert peak < 14 * A.nbytes + 2**20


@pytest.mark.parametrize("method", ["auto", "fast", "full"])
@pytest.mark.parametrize("check", ["memory", "streamed"])
def test_a_batch_of_examples_each_within_the_workspace_is_checked_untiled(method, check, monkeypatch):
    # each example's outputs and one output row's patches fit the budgets, the batch's do not: the checker's
    # chunks and the engine's blocks cut such a batch by examples, so tiles would only sum in another order
    # (a 300 x 1 x 1000 x 4 signal set changed its JSON at the last digits under the default budgets)
    rng = np.random.default_rng(3)
    A, Wt, b = rng.normal(size=(40, 1, 60, 2)), rng.normal(size=(1, 5, 2, 3)), rng.normal(size=3)
    run = gradcheck_conv if check == "memory" else gradcheck_streamed
    whole = run(A, Wt, b, ConvParams(), method=method, seed=4)
    seen = []
    for name, at in (("conv2d", 0), ("conv2d_backward", 1)):  # the argument that is the input
        real = getattr(problems, name)

        def spy(*args, real=real, at=at, **kwargs):
            seen.append(args[at].shape[2])
            return real(*args, **kwargs)
        monkeypatch.setattr(problems, name, spy)
    one = 8 * 56 * (3 * 2 * Wt.size + 5 * 2)  # one example's outputs under the widest bank of filter pairs
    # (not fused.OUTPUT_BYTES: it also sets how many examples the streamed bank sums at a time)
    monkeypatch.setattr(tiled, "WORKSPACE_BYTES", 2 * one)
    monkeypatch.setattr(tiled, "ENGINE_BYTES", 2 * one)
    got = run(A, Wt, b, ConvParams(), method=method, seed=4)
    assert seen and min(seen) == A.shape[2]  # every evaluation saw whole rows
    assert json.dumps(got.to_dict()) == json.dumps(whole.to_dict())


@pytest.mark.parametrize("check, copies", [("memory", 11), ("streamed", 2.5)])
def test_a_fast_check_of_one_wide_example_holds_at_most_two_perturbed_copies_at_a_time(check, copies, monkeypatch):
    # each direction's plus and minus copies of the example are freed before the next direction's are made
    # (they were not: two more copies, 12.2x and 8.3x here). Held besides, whole: in memory A, G, dA_prev, its
    # rounding spread and floor and the 3 directions; streamed none of these (6.3x before its G, copies,
    # gradient and floor went by tiles: see test_one_huge_example.py; 1.96x now); the slices of the analytical
    # sums are made small so they do not count
    import cnncli.gradcheck.directional as directional
    import cnncli.gradcheck.streamed_evals as streamed_evals
    monkeypatch.setattr(directional, "SLICE_VALUES", 2**14)
    monkeypatch.setattr(streamed_evals, "PIECE_VALUES", 2**14)
    _tiny_budgets(monkeypatch, 2**18)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(1, 1, 200_000, 2))
    Wt, b = rng.normal(size=(1, 5, 2, 2)), rng.normal(size=2)
    run = gradcheck_conv if check == "memory" else gradcheck_streamed
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        r = run(A, Wt, b, ConvParams(), method="fast", seed=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert r.passed
    assert peak < copies * A.nbytes


def test_a_streamed_sample_of_some_examples_of_a_chunk_by_tiles(monkeypatch):
    # a chunk of three wide examples goes by tiles and only one is sampled: its rounding floor is estimated
    # on that example alone, without magnitudes from the filter bank (the data has negative values); it
    # raised TypeError (None[keep]) from gradcheck_streamed
    A, Wt, b = _signal(n=300)
    A = np.concatenate([A, -A[:1]])
    params = ConvParams(stride=(1, 2))
    whole = gradcheck_streamed(A, Wt, b, params, method="sample", samples=1, seed=0)
    _tiny_budgets(monkeypatch)
    by_tiles = gradcheck_streamed(A, Wt, b, params, method="sample", samples=1, seed=0)
    assert whole.passed and whole.gradients[0].checked == 1
    _same(whole, by_tiles)
    assert by_tiles.gradients[0].rounding_floor == pytest.approx(whole.gradients[0].rounding_floor, rel=1e-9)


def _between_taps():
    """A layer whose dilation 2 under stride 2 leaves the even input columns between every window's taps."""
    rng = np.random.default_rng(0)
    A, Wt, b = rng.normal(size=(1, 4, 15, 6)), rng.normal(size=(3, 2, 2, 3)), rng.normal(size=3)
    return A, Wt, b, ConvParams(stride=(1, 2), pad=(7, 4, 1, 4), dilation=(1, 2), groups=3), rng


def test_an_element_between_the_taps_has_a_local_difference_of_exactly_zero():
    # the outputs its windows span do not change with it, on both sides alike; stacked in one engine call the
    # plus and minus rectangles were rounded apart (up to 4.5e-14 here, where the whole example gives 0)
    A, Wt, b, params, rng = _between_taps()
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    G = rng.normal(size=(1,) + geom.out_hw + (3,))
    untapped = conv_backward_loops(np.ones(G.shape), A, np.ones_like(Wt), params)[0] == 0
    assert untapped[:, :, 0::2].all() and not untapped[:, :, 1::2].any()
    p = problems.ConvProblem(A, Wt, b, params, G)
    idx = np.flatnonzero(untapped)
    together = p._local_differences(idx, A.flat[idx] + 1.0, A.flat[idx] - 1.0)
    alone = [p._local_differences([i], A.flat[[i]] + 1.0, A.flat[[i]] - 1.0)[0] for i in idx]  # as a sample's
    assert np.all(together == 0.0) and np.all(np.array(alone) == 0.0)


def test_a_sample_of_elements_between_the_taps_passes_by_tiles(monkeypatch):
    # the two sampled elements are both between the taps (analytical 0): their noise was the whole scale of
    # the elementwise test, and the check failed the engine ("errors only along the border")
    A, Wt, b, params, _ = _between_taps()
    whole = gradcheck_conv(A, Wt, b, params, method="sample", samples=2, seed=0)
    _tiny_budgets(monkeypatch)
    by_tiles = gradcheck_conv(A, Wt, b, params, method="sample", samples=2, seed=0)
    assert whole.passed
    _same(whole, by_tiles)
    assert [o.numerical for o in by_tiles.gradients[0].top] == [0.0, 0.0]


@pytest.mark.parametrize("check", ["memory", "streamed"])
def test_a_locally_evaluated_example_s_sample_is_not_cut_as_if_each_element_cost_the_batch(check, monkeypatch):
    import cnncli.gradcheck.core as core
    A, Wt, b = _signal(n=1200)  # 4800 values: auto checks fast + a sample of 256
    run = gradcheck_conv if check == "memory" else gradcheck_streamed
    # output values: one element evaluated on its example costs 2 x 1196 x 3, on its 5 windows 2 x 5 x 3 (30)
    monkeypatch.setattr(core, "AUTO_SAMPLE_BUDGET", 30 * 300)
    whole = run(A, Wt, b, ConvParams(), seed=0)
    cut = [n for n in whole.notes if n.startswith("dA_prev:") and "costs two evaluations" in n]
    assert whole.gradients[0].checked == 1 and cut  # untiled: cut to what the budget pays for, and said why
    _tiny_budgets(monkeypatch)
    local = run(A, Wt, b, ConvParams(), seed=0)
    assert local.gradients[0].checked == 256 and local.passed
    assert not [n for n in local.notes if n.startswith("dA_prev:") and "costs two evaluations" in n]


def test_a_streamed_set_of_one_huge_example_says_its_sample_plainly(monkeypatch):
    import cnncli.gradcheck.streamed as streamed
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 100)  # a "large" set: sampled by examples first
    A, Wt, b = _signal(n=1200)
    r = gradcheck_streamed(A[:1], Wt, b, ConvParams(), seed=0, samples=7, method="sample")
    assert r.passed and r.gradients[0].checked == 7
    assert "dA_prev: 7 elements sampled from the set's one example (corners, edges and interior); --samples N " \
           "checks more" in r.notes


@pytest.mark.parametrize("method", ["auto", "sample", "full"])
def test_an_example_of_many_outputs_is_checked_locally_as_by_its_stacked_copies(method, monkeypatch):
    import cnncli.gradcheck.perturbed as perturbed
    rng = np.random.default_rng(8)
    A, Wt, b = rng.normal(size=(2, 20, 20, 3)), rng.normal(size=(3, 3, 3, 8)), rng.normal(size=8)
    params = ConvParams(pad=1, stride=(1, 2))
    monkeypatch.setattr(tiled, "LOCAL_OUTPUTS", 10**12)  # never: an example's stacked copies, as before
    stacked = gradcheck_conv(A, Wt, b, params, method=method, seed=4)
    seen = []
    real = perturbed.example_differences
    monkeypatch.setattr(perturbed, "example_differences", lambda *a, **k: seen.append(1) or real(*a, **k))
    monkeypatch.setattr(problems, "example_differences", perturbed.example_differences)
    monkeypatch.setattr(tiled, "LOCAL_OUTPUTS", 20 * 10 * 8)  # this example's outputs: locally
    local = gradcheck_conv(A, Wt, b, params, method=method, seed=4)
    assert not seen  # A_prev's elements were not evaluated on copies of their examples
    assert stacked.passed
    _same(stacked, local)


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("method", ["auto", "sample", "full"])
def test_a_pool_example_of_many_outputs_is_checked_locally_as_by_its_stacked_copies(mode, method, monkeypatch):
    # NOTE: a pool's elements went on their example's copies up to the workspace: a full check of a
    # 1 x 1 x 250000 x 4 signal (each element a pooling of the whole example) was foreseen at 2 h
    import cnncli.gradcheck.perturbed as perturbed
    rng = np.random.default_rng(9)
    A = rng.normal(size=(2, 14, 17, 3))
    params = PoolParams(f=3, stride=(2, 1), pad=(1, 0, 1, 1), mode=mode)
    monkeypatch.setattr(tiled, "LOCAL_OUTPUTS", 10**12)  # never: an example's stacked copies, as before
    stacked = gradcheck_pool(A, params, method=method, seed=4)
    seen = []
    real = perturbed.example_differences
    monkeypatch.setattr(perturbed, "example_differences", lambda *a, **k: seen.append(1) or real(*a, **k))
    monkeypatch.setattr(pool_problem, "example_differences", perturbed.example_differences)
    monkeypatch.setattr(tiled, "LOCAL_OUTPUTS", 7 * 17 * 3)  # this example's outputs: locally
    local = gradcheck_pool(A, params, method=method, seed=4)
    assert not seen  # A_prev's elements were not evaluated on copies of their examples
    assert stacked.passed and stacked.gradients[0].checked > 0
    _same(stacked, local)


def test_a_wrong_pool_gradient_is_found_where_it_is_by_the_local_differences(monkeypatch):
    # the local differences see the one wrong element: they are not zeros, nor the engine's gradient again
    rng = np.random.default_rng(10)
    A = rng.normal(size=(1, 12, 12, 2))
    real = pool_problem.pool2d_backward

    def broken(G, A_prev, params, **options):
        dA = real(G, A_prev, params, **options).copy()
        dA[..., 5, 7, 1] += 0.25  # any element: under average pooling every one is read
        return dA

    monkeypatch.setattr(pool_problem, "pool2d_backward", broken)
    monkeypatch.setattr(tiled, "LOCAL_OUTPUTS", 1)
    r = gradcheck_pool(A, PoolParams(f=2, stride=1, mode="average"), method="full", seed=1)
    g = r.gradients[0]
    assert r.verdict == "fail" and g.failing == 1 and g.worst.index == (0, 5, 7, 1)
    # the analytical value is off by the error, the numerical one is the true derivative
    assert g.worst.analytical - g.worst.numerical == pytest.approx(0.25, rel=1e-6)


@given(pools(), st.integers(1, 5), st.integers(1, 7))
def test_every_element_s_local_difference_by_pieces_and_batches_is_the_loop_oracle_s(pool, batch, piece):
    # every element at once (a full check's), in small batches and pieces: a kind's last short batch waits for
    # the next piece's members, and each element still gets its own loss difference
    A, params, geom, G = _pool_problem(pool)
    idx = np.arange(A.size)
    plus, minus = A.reshape(-1) + 3.0, A.reshape(-1) - 3.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiled, "LOCAL_BATCH", batch)
        mp.setattr(tiled, "LOCAL_PIECE", piece)
        got = tiled.local_differences(pool2d, A, G, geom, params, idx, plus, minus)
    np.testing.assert_allclose(got, _pool_loss_differences(A, G, params, idx, plus, minus), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sample", [False, True])
def test_local_differences_of_an_example_not_held_are_those_of_the_array(sample):
    # read by rectangles from a source and G drawn by them: the very values of the held example's, and never
    # the example whole (elements next to each other: the rectangle around them; spread: one by one)
    from cnncli.gradcheck.lazy import DrawnUpstream, Examples
    rng = np.random.default_rng(12)
    A, Wt = rng.normal(size=(1, 100, 400, 2)), rng.normal(size=(3, 3, 2, 3))
    params = ConvParams(pad=1, stride=(1, 2))
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    drawn = DrawnUpstream(5, (1,) + geom.out_hw + (3,))
    G = np.random.default_rng(5).standard_normal(drawn.shape)
    idx = np.sort(rng.choice(A.size, 40, replace=False)) if sample else np.arange(7000, 7800)
    plus, minus = A.reshape(-1)[idx] + 0.5, A.reshape(-1)[idx] - 0.5
    evaluate = lambda X, p: problems.conv2d(X, Wt, None, p)  # noqa: E731
    held = tiled.local_differences(evaluate, A, G, geom, params, idx, plus, minus)
    reads = []

    class Source:
        shape, dtype = A.shape, A.dtype

        def __getitem__(self, sel):
            reads.append(sel)
            return A[sel]

    unread = tiled.local_differences(evaluate, Examples(Source()).example(0), drawn.example(0), geom, params, idx,
                                     plus, minus)
    np.testing.assert_array_equal(unread, held)
    assert reads and all(len(range(*sel[1].indices(100))) < 100 for sel in reads)
    if not sample:  # most read with their neighbours (before, every element read its own rectangle)
        assert len(reads) < len(idx) // 16


@pytest.mark.parametrize("piece, codes", [(1, None), (3, None), (7, None), (None, 1)])
def test_a_conv_s_local_differences_are_the_same_bits_by_any_pieces_and_key_codes(piece, codes, monkeypatch):
    # the batches are the kinds' members in order, LOCAL_BATCH at a time, however the elements go by pieces and
    # their kinds are told apart (one int64 code per kind, or rows of fields where those codes would not fit)
    rng = np.random.default_rng(13)
    A, Wt = rng.normal(size=(2, 9, 11, 2)), rng.normal(size=(3, 2, 2, 3))
    params = ConvParams(stride=(2, 1), pad=(1, 2, 0, 1), dilation=(1, 2))
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    G = rng.normal(size=(2,) + geom.out_hw + (3,))
    p = problems.ConvProblem(A, Wt, np.zeros(3), params, G)
    idx = np.arange(A.size)
    plus, minus = A.reshape(-1) + 0.5, A.reshape(-1) - 0.25
    monkeypatch.setattr(tiled, "LOCAL_BATCH", 4)
    whole = p._local_differences(idx, plus, minus)
    if piece is not None:
        monkeypatch.setattr(tiled, "LOCAL_PIECE", piece)
    if codes is not None:
        monkeypatch.setattr(tiled, "KEY_CODES", codes)
    np.testing.assert_array_equal(p._local_differences(idx, plus, minus), whole)


def test_local_differences_of_windows_hundreds_wide_and_dilated_are_the_loss_differences(monkeypatch):
    # the kinds' fields (rectangle rows, pads, output rows, per axis) ranged too widely for one int64 code
    seen = []
    real = np.unique
    monkeypatch.setattr(np, "unique", lambda *a, **k: seen.append(k.get("axis")) or real(*a, **k))
    rng = np.random.default_rng(14)
    A, Wt = rng.normal(size=(1, 600, 600, 1)), rng.normal(size=(3, 3, 1, 1))
    params = ConvParams(pad=150, dilation=150)
    geom = params.geometry(A.shape[1:3], Wt.shape[:2])
    G = rng.normal(size=(1,) + geom.out_hw + (1,))
    p = problems.ConvProblem(A, Wt, np.zeros(1), params, G)
    idx = np.array([0, 150 * 600 + 7, 300 * 600 + 300, A.size - 1])
    plus, minus = A.reshape(-1)[idx] + 0.5, A.reshape(-1)[idx] - 0.5
    got = p._local_differences(idx, plus, minus)
    assert 0 in seen  # the rows of fields sorted: no code would fit
    for k, i in enumerate(idx):  # the whole example through the engine's convolution (its own oracle: the loops)
        sides = []
        for v in (plus[k], minus[k]):
            x = A.copy()
            x.reshape(-1)[i] = v
            sides.append(problems.conv2d(x, Wt, None, params))
        assert got[k] == pytest.approx(np.sum(G * (sides[0] - sides[1])), rel=1e-9, abs=1e-9)


def test_local_differences_of_wide_windows_go_in_batches_of_bounded_bytes(monkeypatch):
    # a 1 x 501 average window at stride 1: each element's rectangle is 1001 columns; 256 of them stacked at once
    # (both sides, outputs, G) took 15 MB whatever the budget (a window of 8001: 281 MB)
    A = np.random.default_rng(15).normal(size=(1, 1, 5000, 2))
    params = PoolParams(f=(1, 501), stride=1, mode="average")
    geom = params.geometry(A.shape[1:3])
    G = np.random.default_rng(16).normal(size=(1,) + geom.out_hw + (2,))
    idx = np.arange(2000, 2256)
    plus, minus = A.reshape(-1)[idx] + 1.0, A.reshape(-1)[idx] - 1.0
    monkeypatch.setattr(tiled, "LOCAL_BYTES", 10**12)
    unbounded, big = traced_peak(lambda: tiled.local_differences(pool2d, A, G, geom, params, idx, plus, minus))
    monkeypatch.setattr(tiled, "LOCAL_BYTES", 2**19)
    bounded, small = traced_peak(lambda: tiled.local_differences(pool2d, A, G, geom, params, idx, plus, minus))
    np.testing.assert_array_equal(bounded, unbounded)  # a pool's windows: the same values in any batch
    assert big > 10 * 2**20 and small < 3 * 2**20, (big, small)
