"""Bounded memory: every evaluation over the batch runs in chunks and gives what one whole-batch call gives."""

import tracemalloc

import numpy as np
import pytest

import cnncli.gradcheck.directional as directional
import cnncli.gradcheck.perturbed as perturbed
import cnncli.gradcheck.problems as problems
from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import conv_forward_loops
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.problems import ConvProblem, PoolProblem


def _conv_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = ConvParams(stride=2, pad=1, groups=2)
    A, W, b = rng.normal(size=(9, 7, 7, 4)), rng.normal(size=(3, 3, 2, 6)), rng.normal(size=6)
    out = conv_forward_loops(A, W, b, params).shape
    return ConvProblem(A, W, b, params, rng.normal(size=out))


def _evaluations(p, name, seed=1):
    """Everything the checker computes over the batch for input ``name`` of a fresh problem ``p``."""
    rng = np.random.default_rng(seed)
    x = p.inputs[name]
    idx = rng.choice(x.size, size=min(6, x.size), replace=False)
    plus, minus = x.reshape(-1)[idx] + 0.25, x.reshape(-1)[idx] - 0.5
    D = rng.uniform(-1, 1, size=(3,) + x.shape)
    out = {"differences": p.differences(name, idx, plus, minus),
           "directional": p.directional_blocks(name, D, 1e-3),
           "analytical": p.analytical()[name]}
    floor = p.rounding_floor(name, 1e-3)
    if floor is not None:  # max pooling has none
        out["floor"] = floor
    return out, (idx, plus, minus)


@pytest.mark.parametrize("name", ["A_prev", "W", "b"])
def test_conv_chunked_and_unchunked_evaluations_agree(monkeypatch, name):
    whole, _ = _evaluations(_conv_problem(), name)
    seen = []
    real = problems.conv2d

    def spy(A, *args, **kwargs):
        seen.append(A.shape[0])
        return real(A, *args, **kwargs)

    monkeypatch.setattr(perturbed, "BATCH_BYTES", 1)  # one example per chunk
    monkeypatch.setattr(problems, "conv2d", spy)
    p = _conv_problem()
    chunked, (idx, plus, minus) = _evaluations(p, name)
    if name != "A_prev":  # a filter is evaluated on the batch one example at a time
        assert max(seen) == 1
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-10, atol=1e-12, err_msg=key)
    # and the chunked loss differences are the loop oracle's L(x+) - L(x-)
    A, W, b = (p.inputs[k] for k in ("A_prev", "W", "b"))
    for k, i in enumerate(idx):
        xs = {"A_prev": A.copy(), "W": W.copy(), "b": b.copy()}
        losses = []
        for v in (plus[k], minus[k]):
            xs[name].reshape(-1)[i] = v
            losses.append(np.sum(p.G * conv_forward_loops(xs["A_prev"], xs["W"], xs["b"], p.params)))
        assert chunked["differences"][k] == pytest.approx(losses[0] - losses[1], rel=1e-9, abs=1e-9)


def test_pool_chunked_and_unchunked_evaluations_agree(monkeypatch):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(7, 6, 6, 2))
    params = PoolParams(f=2, stride=2, mode="max")
    G = rng.normal(size=(7, 3, 3, 2))
    whole, _ = _evaluations(PoolProblem(A, params, G), "A_prev")
    kinks = problems.max_pool_kinks(A, params, 0.3)
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 1)
    chunked, _ = _evaluations(PoolProblem(A, params, G), "A_prev")
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-12, atol=0, err_msg=key)
    np.testing.assert_array_equal(problems.max_pool_kinks(A, params, 0.3), kinks)


def test_big_batch_check_runs_in_bounded_memory(monkeypatch):
    # 400 images 16x16x3 (uint8, as a user's data set): the inputs, upstream gradient and results
    # take about 30 MiB; whole-batch evaluations (one per filter element) needed 60 MiB at peak.
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 2 * 2**20)
    rng = np.random.default_rng(0)
    A = rng.integers(0, 256, (400, 16, 16, 3)).astype(np.uint8)
    W = rng.standard_normal((3, 3, 3, 8))
    tracemalloc.start()
    try:
        conv = gradcheck_conv(A, W, None, {"pad": 1, "stride": 1})
        conv_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        pool = gradcheck_pool(A, {"f": 2, "stride": 2, "mode": "max"})
        pool_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert conv.passed and pool.passed
    assert conv_peak < 45 * 2**20  # measured 37 MiB chunked, 60.6 MiB whole-batch
    # Pooling's peak is mostly the whole arrays the check keeps (31 MiB chunked vs 34 whole-batch
    # here): too close to bound reliably at this size, so only a blow-up is caught; its chunking is
    # checked for equality with the whole-batch evaluation above.
    assert pool_peak < 45 * 2**20


def test_auto_samples_fewer_filter_elements_on_a_large_batch_unless_told(monkeypatch):
    # each sampled element of W costs two evaluations over the whole batch: auto keeps it bounded,
    # one element per kernel offset at least; an explicit --samples is honoured
    import cnncli.gradcheck.core as core

    monkeypatch.setattr(core, "AUTO_SAMPLE_BUDGET", 1)
    rng = np.random.default_rng(1)
    A, W = rng.normal(size=(6, 24, 24, 3)), rng.normal(size=(3, 3, 3, 4))  # > AUTO_FULL_LIMIT
    r = gradcheck_conv(A, W, None, {"pad": 1})
    dW = next(g for g in r.gradients if g.name == "dW")
    assert dW.checked == 9 and r.passed
    assert any(n.startswith("dW: 9 of its elements sampled") for n in r.notes)
    r = gradcheck_conv(A, W, None, {"pad": 1}, samples=50)
    assert next(g for g in r.gradients if g.name == "dW").checked == 50


def test_lazy_directions_are_the_drawn_directions_and_leave_the_generator_where_drawing_would():
    shape = (3, 4, 5, 2)
    excluded = np.random.default_rng(5).random(shape) < 0.2
    rng = np.random.default_rng(11)
    D = rng.uniform(-1.0, 1.0, size=(directional.FAST_DIRECTIONS,) + shape)
    D[:, excluded] = 0.0
    after = rng.random(4)
    rng = np.random.default_rng(11)
    lazy = directional.LazyDirections(rng.bit_generator, shape, excluded)
    rng.bit_generator.advance(directional.FAST_DIRECTIONS * int(np.prod(shape)))
    for p in (2, 0, 1):
        np.testing.assert_array_equal(lazy[p], D[p])
    np.testing.assert_array_equal(rng.random(4), after)


def test_lazy_directions_give_the_same_check(monkeypatch):
    rng = np.random.default_rng(2)
    A, W = rng.normal(size=(5, 20, 20, 3)), rng.normal(size=(3, 3, 3, 4))
    whole = gradcheck_conv(A, W, None, {"pad": 1}).to_dict()
    monkeypatch.setattr(directional, "LAZY_DIRECTIONS", 0)
    assert not isinstance(directional.directions(np.random.default_rng(0), (2, 2), np.zeros((2, 2), bool)), np.ndarray)
    assert gradcheck_conv(A, W, None, {"pad": 1}).to_dict() == whole


def test_one_wide_example_s_filter_evaluations_stay_within_the_workspace(monkeypatch):
    # One example of a 1 x 20000 x 4 signal: a chunk cannot go below an example, so each convolution of
    # the stacked perturbed filters (up to 256 pairs, 512 output channels: 82 MB here) must itself be cut
    # to the workspace; the differences are the same as with every pair in one call.
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 2 * 2**20)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((1, 1, 20000, 4))
    W = rng.standard_normal((1, 5, 4, 4))
    problem = problems.ConvProblem(A, W, np.zeros(4), ConvParams(), rng.standard_normal((1, 1, 19996, 4)))
    idx = rng.choice(W.size, 60, replace=False)
    i, j, c, k = np.unravel_index(idx, W.shape)
    plus, minus = W.flat[idx] + 1e-3, W.flat[idx] - 1e-3
    tracemalloc.start()
    try:
        got = problem.differences("W", idx, plus, minus)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # independent: each filter element's loss difference from two plain forward passes (windows by numpy's
    # sliding view, the loop twin's arithmetic; the loops themselves take a minute at this width)
    windows = np.lib.stride_tricks.sliding_window_view(A[0, 0], 5, axis=0)  # (19996, 4, 5): [w, c, j]

    def forward(Wx):
        return np.einsum("wcj,jck->wk", windows, Wx[0])[None, None]

    assert np.allclose(forward(W)[:, :, :50], conv_forward_loops(A[:, :, :54], W, np.zeros(4), ConvParams()))
    want = []
    for n in range(len(idx)):
        Wp, Wm = W.copy(), W.copy()
        Wp[i[n], j[n], c[n], k[n]], Wm[i[n], j[n], c[n], k[n]] = plus[n], minus[n]
        want.append(np.sum(problem.G * (forward(Wp) - forward(Wm))))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert peak < 8 * 2**20, peak  # the 2 MiB workspace and the example's own arrays (0.6 MB each)
