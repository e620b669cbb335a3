"""W's and b's evaluations of a streamed conv made in the one pass over the set (gradcheck.fused):
the same loss differences as the unfused evaluation, the same verdicts as the in-memory check, every
evaluation of a passing check foreseen, and a wrong gradient still failing."""

import numpy as np
import pytest

import cnncli.gradcheck.fused as fused
import cnncli.gradcheck.perturbed as perturbed
import cnncli.gradcheck.problems as problems
from cnncli.engine import ConvParams, PoolParams, conv2d
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.fused import Bank, StreamedConv
from cnncli.gradcheck.lazy import DrawnUpstream, Examples
from cnncli.gradcheck.streamed import gradcheck_streamed
from tests.gradcheck.same import same_check

RNG = np.random.default_rng(5)
A = RNG.integers(0, 256, size=(30, 12, 12, 4)).astype(np.float64)
W = RNG.normal(size=(3, 3, 4, 6)) * 0.1
W_GROUPED = RNG.normal(size=(3, 3, 2, 6)) * 0.1  # groups=2: 3 output channels per group
B = RNG.normal(size=6)

CONFIGS = [
    (W, ConvParams(pad="same")),
    (W, ConvParams(stride=2, pad=1)),
    (W_GROUPED, ConvParams(groups=2, pad=1)),
    (W_GROUPED, ConvParams(stride=2, dilation=2, groups=2)),
]


def _problem(W_, params, seed=0):
    G = DrawnUpstream(seed, (A.shape[0],) + params.geometry(A.shape[1:3], W_.shape[:2]).out_hw + (W_.shape[3],))
    return StreamedConv(Examples(A), W_, B, params, G)


def _requests(W_, params):
    """Requests of every kind the checks make: W along directions, W and b elementwise, b along directions."""
    p = _problem(W_, params)
    rng = np.random.default_rng(1)
    n_C = W_.shape[3]
    D = rng.uniform(-1, 1, size=(3,) + W_.shape)
    D[1, ..., 2] = 0.0  # a direction that leaves channel 2 alone
    ks = np.nonzero(D.reshape(3, -1, n_C).any(axis=1))
    h = 1e-3
    out = [([W_[..., ks[1]] + s * h * D[ks[0], ..., ks[1]].transpose(1, 2, 3, 0) for s in (1.0, -1.0)],
            (np.zeros(ks[1].size),) * 2, ks[1])]
    idx = rng.choice(W_.size, 9, replace=False)
    i, j, c, k = np.unravel_index(idx, W_.shape)
    Fp, Fm = W_[..., k].copy(), W_[..., k].copy()
    Fp[i, j, c, np.arange(k.size)] += h
    Fm[i, j, c, np.arange(k.size)] -= h
    out.append(((Fp, Fm), (np.zeros(k.size),) * 2, k))
    kb = np.array([0, 5, 3, 5, 1])  # b elementwise (a channel twice: two requests may share a filter)
    out.append(([W_[..., kb]] * 2, (B[kb] + 0.5, B[kb] - 0.5), kb))
    Db = rng.uniform(-1, 1, size=(3, n_C))
    pb, kb = np.nonzero(Db)
    out.append(([W_[..., kb]] * 2, tuple(B[kb] + s * 0.01 * Db[pb, kb] for s in (1.0, -1.0)), kb))
    return p, out


@pytest.mark.parametrize("W_, params", CONFIGS)
@pytest.mark.parametrize("tight", [False, True])
def test_the_banks_sums_are_the_unfused_evaluations(W_, params, tight, monkeypatch):
    if tight:  # many banks, segments, slices and chunks
        monkeypatch.setattr(fused, "BANK_COLUMNS", 6)
        monkeypatch.setattr(fused, "SEGMENT_PAIRS", 2)
        monkeypatch.setattr(fused, "SLICE_OUTPUTS", 7)
        monkeypatch.setattr(perturbed, "BATCH_BYTES", 2**18)
    p, requests = _requests(W_, params)
    bank = Bank(p, requests)
    mags = [bank.add(A[sl], p.G[sl]) for sl in problems.batch_chunks(A.shape[0], p._example_bytes())]
    # the rounding estimates' magnitudes came with the bank's outputs (the input has no negative values)
    np.testing.assert_allclose(np.concatenate(mags), conv2d(A, np.abs(W_), None, params), rtol=1e-14, atol=0)
    assert bank.add(A[:2] - 1.0, p.G[0:2]) is None  # with negative values: computed on their own
    bank.out[:] = 0.0
    for sl in problems.batch_chunks(A.shape[0], p._example_bytes()):
        bank.add(A[sl], p.G[sl])
    # the in-memory problem's evaluation (the engine's own bias add, one chunking of its own) is the oracle
    whole = problems.ConvProblem(A, W_, B, params, p.G[0:A.shape[0]])
    for (F, bias, k), got in zip(requests, bank.values()):
        want = whole._filter_differences(F, bias, k)
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale)


def _unfused(monkeypatch):
    monkeypatch.setattr(StreamedConv, "foresee", lambda self, rng, top: None)


@pytest.mark.parametrize("W_, params", CONFIGS)
@pytest.mark.parametrize("method", ["auto", "fast", "sample", "full"])
def test_the_fused_check_is_the_in_memory_and_the_unfused_check(W_, params, method, monkeypatch):
    fast = gradcheck_streamed(A, W_, B, params, method=method, seed=3)
    same_check(gradcheck_conv(A, W_, B, params, method=method, seed=3), fast)
    _unfused(monkeypatch)
    same_check(gradcheck_streamed(A, W_, B, params, method=method, seed=3), fast)
    assert fast.passed


@pytest.mark.parametrize("W_, params", CONFIGS[::2])
def test_input_with_negative_values_gets_its_magnitudes_on_their_own(W_, params):
    signed = A - 128.0  # conv(|A|, |W|) is no longer conv(A, |W|): the bank's magnitudes are not used
    same_check(gradcheck_conv(signed, W_, B, params, seed=7), gradcheck_streamed(signed, W_, B, params, seed=7))


@pytest.mark.parametrize("W_, params", CONFIGS[:3])
def test_a_passing_check_is_served_from_the_pass_alone(W_, params, monkeypatch):
    def refused(self, F, bias, k_of):
        raise AssertionError("an evaluation over the set that the pass did not foresee")
    monkeypatch.setattr(StreamedConv, "_unfused", refused)
    r = gradcheck_streamed(A, W_, B, params, seed=4)
    assert r.passed and [g.method for g in r.gradients] == ["fast+sample"] * 3


def _break_dW(monkeypatch, at=(1, 2, 0, 4), by=1.0005):
    real = problems.conv2d_backward

    def broken(G, A_prev, W_, params, **options):
        g = real(G, A_prev, W_, params, **options)
        dW = g.dW.copy()
        dW[at] *= by  # one element of dW wrong in every call: so in the sum, however the batch is split
        return type(g)(g.dA_prev, dW, g.db)

    monkeypatch.setattr(problems, "conv2d_backward", broken)


@pytest.mark.parametrize("method", ["auto", "fast"])
def test_a_wrong_dW_still_fails_through_the_fused_path_at_the_same_element(method, monkeypatch):
    _break_dW(monkeypatch)
    params = ConvParams(pad="same")
    a = gradcheck_conv(A, W, B, params, method=method, seed=3)
    s = gradcheck_streamed(A, W, B, params, method=method, seed=3)
    same_check(a, s)
    g = s.gradients[1]
    assert s.verdict == "fail" and not g.passed and g.method == "fast+full" and g.failing >= 1
    assert g.worst.index == (1, 2, 0, 4) and s.gradients[0].passed and s.gradients[2].passed
    _unfused(monkeypatch)
    same_check(gradcheck_streamed(A, W, B, params, method=method, seed=3), s)


def test_a_wrong_db_still_fails_through_the_fused_path(monkeypatch):
    real = problems.conv2d_backward

    def broken(G, A_prev, W_, params, **options):
        g = real(G, A_prev, W_, params, **options)
        # db[2] off by 1e-3 per example, whichever calls the batch is split into
        return type(g)(g.dA_prev, g.dW, g.db + np.array([0, 0, 1e-3, 0, 0, 0]) * G.shape[0])
    monkeypatch.setattr(problems, "conv2d_backward", broken)
    params = ConvParams(pad=1)
    a, s = gradcheck_conv(A, W, B, params, seed=2), gradcheck_streamed(A, W, B, params, seed=2)
    assert a.verdict == s.verdict == "fail" and a.notes == s.notes
    (ga, gs) = (a.gradients[2], s.gradients[2])  # the other elements' errors are rounding: noise
    assert (ga.method, ga.failing, ga.worst.index) == (gs.method, gs.failing, gs.worst.index) == ("fast+full", 1, (2,))
    assert gs.max_abs_error == pytest.approx(ga.max_abs_error, rel=1e-6) and a.gradients[1].passed


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("stride", [1, 2])
def test_a_streamed_pool_check_is_the_in_memory_check(mode, stride):
    params = PoolParams(f=2, stride=stride, mode=mode)
    same_check(gradcheck_pool(A, params, seed=6), gradcheck_streamed(A, params=params, kind="pool", seed=6))


def test_requests_beyond_the_banks_budget_are_evaluated_over_the_set(monkeypatch):
    monkeypatch.setattr(fused, "BANK_BYTES", 2 * 6 * 9 * 4 * 8)  # room for b's 6 pairs of 3x3x4 filters, not W's 216
    calls = []
    real = StreamedConv._unfused

    def counted(self, F, bias, k_of):
        calls.append(len(k_of))
        return real(self, F, bias, k_of)
    monkeypatch.setattr(StreamedConv, "_unfused", counted)
    params = ConvParams(pad=1)
    s = gradcheck_streamed(A, W, B, params, method="full", seed=5)
    same_check(gradcheck_conv(A, W, B, params, method="full", seed=5), s)
    assert s.passed and calls == [W.size]  # W's elementwise check did not fit: evaluated on its own


def test_the_backward_skips_dA_prev_only_where_it_is_not_read():
    G = np.random.default_rng(2).normal(size=(30, 12, 12, 6))
    p = problems.ConvProblem(A, W, B, ConvParams(pad=1), G)
    keep = np.zeros(30, dtype=bool)
    keep[[0, 7, 8, 29]] = True
    full, part = p.analytical(), p.analytical_at(keep)
    np.testing.assert_array_equal(part["A_prev"][~keep], 0.0)
    np.testing.assert_allclose(part["A_prev"][keep], full["A_prev"][keep], rtol=1e-12, atol=1e-12)
    for name in ("W", "b"):
        np.testing.assert_allclose(part[name], full[name], rtol=1e-12, atol=1e-9)
    assert part["finite"]
    # dA_prev overflows on the examples not read: the bound says it might, so it is computed, and not finite
    with np.errstate(over="ignore", invalid="ignore"):
        big = problems.ConvProblem(A, W * 1e3, B, ConvParams(pad=1), G * 1e306).analytical_at(keep)
    assert not big["finite"]
