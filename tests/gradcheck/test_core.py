"""The checker: numerical values against a loop oracle, verdicts on right and wrong gradients, kinks, metrics."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import conv_forward_loops, pool_forward_loops
from cnncli.errors import HyperparameterError, InputError, ShapeError
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.core import check_problem, step_size
from cnncli.gradcheck.metrics import element_fails, gradient_metrics
from cnncli.gradcheck.problems import ConvProblem, PoolProblem, max_pool_kinks
from cnncli.gradcheck.sampling import stratified_indices

from ..engine.strategies import conv_configs, pool_configs

RNG = np.random.default_rng(7)


def _conv_problem(A_shape, W_shape, params, seed=0):
    rng = np.random.default_rng(seed)
    A, W, b = rng.normal(size=A_shape), rng.normal(size=W_shape), rng.normal(size=W_shape[3])
    out = conv_forward_loops(A, W, b, params).shape
    return ConvProblem(A, W, b, params, rng.normal(size=out))


@settings(max_examples=12)
@given(conv_configs(max_hw=6), st.integers(0, 2**16))
def test_loss_differences_match_the_loop_oracle(config, seed):
    # The batched / filter-stacked evaluations must equal L(x+) - L(x-) computed by plain loops.
    A_shape, W_shape, kw = config
    p = _conv_problem(A_shape, W_shape, ConvParams(**kw), seed)
    rng = np.random.default_rng(seed)
    for name in ("A_prev", "W", "b"):
        x = p.inputs[name]
        idx = rng.choice(x.size, size=min(4, x.size), replace=False)
        plus, minus = x.reshape(-1)[idx] + 0.25, x.reshape(-1)[idx] - 0.5
        got = p.differences(name, idx, plus, minus)
        for k, i in enumerate(idx):
            xs = {}
            for value, key in ((plus[k], "+"), (minus[k], "-")):
                arrs = {n: p.inputs[n].copy() for n in p.names}
                arrs[name].reshape(-1)[i] = value
                xs[key] = np.sum(p.G * conv_forward_loops(arrs["A_prev"], arrs["W"], arrs["b"], p.params))
            assert got[k] == pytest.approx(xs["+"] - xs["-"], rel=1e-9, abs=1e-9)


def test_directional_differences_match_the_loop_oracle():
    p = _conv_problem((2, 5, 4, 4), (3, 2, 2, 4), ConvParams(stride=2, pad=1, groups=2))
    D = {n: RNG.uniform(-1, 1, size=(2,) + p.inputs[n].shape) for n in p.names}
    for name in p.names:
        got = p.directional(name, D[name], 0.1)
        for q in range(2):
            L = []
            for s in (1, -1):
                arrs = {n: p.inputs[n].copy() for n in p.names}
                arrs[name] = arrs[name] + s * 0.1 * D[name][q]
                L.append(np.sum(p.G * conv_forward_loops(arrs["A_prev"], arrs["W"], arrs["b"], p.params)))
            assert got[q] == pytest.approx(L[0] - L[1], rel=1e-9)


def test_pool_differences_match_the_loop_oracle():
    A = RNG.normal(size=(2, 5, 6, 2))
    params = PoolParams(f=3, stride=2, pad=1, ceil_mode=True, mode="average", count_include_pad=False)
    G = RNG.normal(size=pool_forward_loops(A, params).shape)
    p = PoolProblem(A, params, G)
    idx = np.array([0, 7, 59])
    got = p.differences("A_prev", idx, A.reshape(-1)[idx] + 1, A.reshape(-1)[idx] - 1)
    for k, i in enumerate(idx):
        L = []
        for s in (1, -1):
            X = A.copy()
            X.reshape(-1)[i] += s
            L.append(np.sum(G * pool_forward_loops(X, params)))
        assert got[k] == pytest.approx(L[0] - L[1], rel=1e-12)


@pytest.mark.parametrize("method", ["full", "fast", "sample", "auto"])
def test_engine_passes_every_method(method):
    r = gradcheck_conv(RNG.normal(size=(2, 6, 5, 3)), RNG.normal(size=(3, 3, 3, 4)), RNG.normal(size=(1, 1, 1, 4)),
                       ConvParams(stride=2, pad=1), method=method)
    assert r.passed and [g.name for g in r.gradients] == ["dA_prev", "dW", "db"]
    for mode in ("max", "average"):
        assert gradcheck_pool(RNG.normal(size=(2, 7, 6, 2)), PoolParams(f=3, stride=2, mode=mode), method=method).passed


class _Corrupted:
    """A problem whose analytical gradient of one input is off at one element."""

    def __init__(self, problem, name, index, delta):
        self.p, self.name, self.index, self.delta = problem, name, index, delta
        self.layer, self.names, self.inputs = problem.layer, problem.names, problem.inputs

    def analytical(self):
        g = {k: v.copy() for k, v in self.p.analytical().items()}
        g[self.name][self.index] += self.delta
        return g

    def __getattr__(self, attr):
        return getattr(self.p, attr)


@pytest.mark.parametrize("name,index", [("A_prev", (1, 0, 4, 2)), ("W", (2, 0, 1, 3)), ("b", (2,))])
@pytest.mark.parametrize("method", ["full", "fast"])
def test_a_wrong_element_is_caught_and_pinpointed(name, index, method):
    p = _Corrupted(_conv_problem((2, 6, 5, 3), (3, 3, 3, 4), ConvParams(pad=1)), name, index, 1e-3)
    r = check_problem(p, method=method)
    bad = {g.name: g for g in r.gradients}["d" + name]
    assert not r.passed and not bad.passed
    assert bad.worst.index == index  # fast localizes elementwise on the failing tensor
    assert bad.worst.analytical - bad.worst.numerical == pytest.approx(1e-3, rel=1e-4)
    assert bad.failing == 1
    assert all(g.passed for g in r.gradients if g.name != "d" + name)


def test_sample_reaches_a_corner_of_a_large_input():
    # 16x16x8 x4 holds 8192 values; a uniform sample of 64 would rarely hit a given corner
    # stratum, the stratified one always includes corners.
    p = _Corrupted(_conv_problem((4, 16, 16, 8), (3, 3, 8, 4), ConvParams(pad=1)), "A_prev", (0, 0, 0, 0), 5.0)
    for seed in range(3):
        idx = stratified_indices((4, 16, 16, 8), "A_prev", 64, np.random.default_rng(seed))
        corners = np.unravel_index(idx, (4, 16, 16, 8))
        assert np.any(np.isin(corners[1], [0, 15]) & np.isin(corners[2], [0, 15]))
    r = check_problem(p, method="sample", samples=64)
    assert r.gradients[0].checked == 64


def _kinks_by_loops(A, f, stride, threshold):
    m, H, W, C = A.shape
    mask = np.zeros(A.shape, bool)
    for i in range(m):
        for h in range(0, H - f + 1, stride):
            for w in range(0, W - f + 1, stride):
                for c in range(C):
                    win = A[i, h:h + f, w:w + f, c]
                    top = np.sort(win.ravel())[::-1]
                    if top[0] - top[1] <= threshold:
                        mask[i, h:h + f, w:w + f, c] |= (top[0] - win) <= threshold
    return mask


@pytest.mark.parametrize("f,stride", [(2, 2), (3, 1), (2, 1)])
def test_max_pool_kinks_match_loops_and_ties_never_fail(f, stride):
    A = RNG.integers(0, 3, size=(2, 6, 7, 2))  # an integer image: ties everywhere
    expected = _kinks_by_loops(A.astype(float), f, stride, 2e-6 * 2)
    assert np.array_equal(max_pool_kinks(A.astype(float), PoolParams(f=f, stride=stride), 2e-6 * 2), expected)
    for method in ("full", "fast", "sample"):
        r = gradcheck_pool(A, PoolParams(f=f, stride=stride), method=method)
        g = r.gradients[0]
        assert r.passed and g.kinks == expected.sum() > 0
        assert g.checked in (0, A.size - g.kinks) or method == "sample"


def _kinks_by_loops_padded(A, f, stride, dilation, pads, out_hw, threshold):
    """Kinks by loops over output positions; taps on padding hold no value and never compete."""
    mask = np.zeros(A.shape, bool)
    H, W = A.shape[1:3]
    for i in range(A.shape[0]):
        for c in range(A.shape[3]):
            for oh in range(out_hw[0]):
                for ow in range(out_hw[1]):
                    taps = [(oh * stride - pads[0] + u * dilation, ow * stride - pads[2] + v * dilation)
                            for u in range(f) for v in range(f)]
                    taps = [(h, w) for h, w in taps if 0 <= h < H and 0 <= w < W]
                    values = np.array([A[i, h, w, c] for h, w in taps])
                    top = np.sort(values)[::-1]
                    if len(top) >= 2 and top[0] - top[1] <= threshold:
                        for (h, w), v in zip(taps, values):
                            mask[i, h, w, c] |= top[0] - v <= threshold
    return mask


@pytest.mark.parametrize("f,stride,dilation,pad,ceil", [(3, 2, 1, 1, True), (2, 1, 2, 1, False),
                                                        (3, 2, 2, 0, True), (2, 3, 1, 1, True)])
def test_max_pool_kinks_with_padding_dilation_and_ceil_mode_match_loops(f, stride, dilation, pad, ceil):
    A = RNG.integers(0, 3, size=(2, 7, 6, 2)).astype(float)
    params = PoolParams(f=f, stride=stride, dilation=dilation, pad=pad, ceil_mode=ceil)
    geom = params.geometry((7, 6))
    expected = _kinks_by_loops_padded(A, f, stride, dilation, geom.pads, geom.out_hw, 0.5)
    assert expected.any() and np.array_equal(max_pool_kinks(A, params, 0.5), expected)


def test_average_pool_has_no_kinks():
    A = np.ones((2, 4, 4, 1))
    assert gradcheck_pool(A, PoolParams(f=2, mode="average"), method="full").gradients[0].kinks == 0


def test_caller_arrays_are_never_modified():
    arrays = [RNG.normal(size=(2, 5, 5, 2)), RNG.normal(size=(3, 3, 2, 3)), RNG.normal(size=3),
              RNG.normal(size=(2, 3, 3, 3))]
    copies = [a.copy() for a in arrays]
    for method in ("full", "fast", "sample"):
        gradcheck_conv(*arrays[:3], grad=arrays[3], method=method)
        gradcheck_pool(arrays[0], PoolParams(f=2, stride=1), method=method)
    for a, c in zip(arrays, copies):
        assert np.array_equal(a, c)


def test_metrics_by_hand():
    r = gradient_metrics("dW", (2, 2), "ab", "full", np.array([0, 3]), np.array([1.0, 2.0]), np.array([1.0, 2.5]),
                         kinks=1, tol=1e-7)
    assert r.relative_error == pytest.approx(0.5 / (math.sqrt(5) + math.sqrt(7.25)))
    assert r.max_abs_error == 0.5 and r.worst.index == (1, 1) and r.failing == 1 and not r.passed
    assert r.checked == 2 and r.kinks == 1
    assert np.isnan(r.errors[0, 1]) and r.errors[1, 1] == 0.5
    zero = gradient_metrics("db", (3,), "c", "full", np.arange(3), np.zeros(3), np.zeros(3), 0, 1e-7)
    assert zero.relative_error == 0.0 and zero.passed


def test_element_test_by_hand():
    # tol 1e-3, max finite |n| = 100: an element may be off by 10*1e-3*100 + 100*1e-3*|n| = 1 + 0.1*|n|
    n = np.array([100.0, 0.0, 10.0, 10.0, -50.0, 1.0, np.nan])
    err = np.array([10.9, 1.0, 1.99, 2.01, 6.1, np.nan, 0.0])
    assert element_fails(err, n, 1e-3).tolist() == [False, False, False, True, True, True, True]


def test_step_is_at_least_1e_3_only_where_the_layer_is_linear_and_follows_the_data_below_1_too():
    x = np.array([[-250.0, 3.0]])
    assert step_size(x, 1e-6, linear=False) == pytest.approx(250e-6)
    assert step_size(x, 1e-6, linear=True) == pytest.approx(0.25)
    assert step_size(x / 1000, 1e-6, linear=True) == pytest.approx(2.5e-4)
    assert step_size(x * 1e-9, 1e-6, linear=False) == pytest.approx(250e-15)  # was 1e-6: larger than the data
    assert step_size(np.zeros(3), 1e-6) == 1e-6 and step_size(x, 1e-6, scale=10.0) == pytest.approx(1e-5)
    assert step_size(x, 1e-2, linear=True) == pytest.approx(2.5)


def test_nchw_layout_reports_in_the_callers_layout():
    A, W = RNG.normal(size=(2, 3, 6, 5)), RNG.normal(size=(4, 3, 3, 3))  # (m, C, H, W), (C_out, C_in, kH, kW)
    r = gradcheck_conv(A, W, None, ConvParams(pad=1), layout="nchw", method="full")
    assert r.passed and [g.shape for g in r.gradients] == [A.shape, W.shape, (4,)]
    assert [g.axes for g in r.gradients] == ["mchw", "oihw", "c"]


def test_bad_settings_and_inputs():
    A, W = RNG.normal(size=(1, 4, 4, 1)), RNG.normal(size=(2, 2, 1, 1))
    with pytest.raises(HyperparameterError, match="method"):
        gradcheck_conv(A, W, method="exact")
    with pytest.raises(HyperparameterError, match="eps"):
        gradcheck_conv(A, W, eps=0)
    with pytest.raises(HyperparameterError, match="samples"):
        gradcheck_conv(A, W, samples=0)
    A[0, 1, 1, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        gradcheck_conv(A, W)
    with pytest.raises(ShapeError, match=r"\(1, 3, 3, 1\)"):
        gradcheck_conv(np.ones((1, 4, 4, 1)), W, grad=np.ones((1, 4, 4, 1)))


def test_eps_too_small_is_noted():
    r = gradcheck_pool(np.full((1, 2, 2, 1), 1e20) * np.arange(1, 5).reshape(1, 2, 2, 1), PoolParams(f=2),
                       eps=1e-30, method="full")
    assert any("x + eps == x" in n for n in r.notes)


def test_stratified_sample_covers_every_stratum():
    rng = np.random.default_rng(0)
    idx = stratified_indices((2, 6, 7, 3), "A_prev", 6, rng)
    _, h, w, _ = np.unravel_index(idx, (2, 6, 7, 3))
    border = np.isin(h, [0, 5]) | np.isin(w, [0, 6])
    corner = np.isin(h, [0, 5]) & np.isin(w, [0, 6])
    assert corner.any() and (border & ~corner).any() and (~border).any() and len(idx) == 6
    wi = stratified_indices((3, 3, 2, 4), "W", 9, rng)
    assert {(i, j) for i, j, _, _ in zip(*np.unravel_index(wi, (3, 3, 2, 4)))} == {(i, j) for i in range(3) for j in range(3)}
    excluded = np.zeros(5, bool)
    excluded[[1, 3]] = True
    assert stratified_indices((5,), "b", 10, rng, excluded).tolist() == [0, 2, 4]


def test_many_large_outputs_do_not_fail_spuriously():
    # 1,000 integer images (0..16) through 4 filters: ~64k output terms of magnitude ~100
    # sum into db; a 1e-6 step would leave a rounding floor near the 1e-7 tolerance.
    rng = np.random.default_rng(1)
    A = rng.integers(0, 17, size=(1000, 8, 8, 1)).astype(np.uint8)
    W = rng.integers(1, 5, size=(3, 3, 1, 4)).astype(float)  # a blur: outputs up to ~500, all positive
    r = gradcheck_conv(A, W, None, ConvParams(pad=1), method="sample", samples=64)
    assert r.passed, [(g.name, g.relative_error) for g in r.gradients]


def test_progress_reaches_its_total():
    calls = []
    gradcheck_conv(RNG.normal(size=(2, 4, 4, 2)), RNG.normal(size=(2, 2, 2, 3)), method="full",
                   progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (2 * 4 * 4 * 2 + 2 * 2 * 2 * 3 + 3,) * 2
    assert all(d1 <= d2 for (d1, _), (d2, _) in zip(calls, calls[1:]))


@settings(max_examples=15)
@given(pool_configs(max_hw=7), st.integers(0, 2**16), st.sampled_from(["full", "fast", "sample"]))
def test_engine_pooling_passes_on_integer_images(config, seed, method):
    # Small integers tie everywhere: every tie must be a kink, never a failure, with any
    # padding, dilation or ceil mode.
    from hypothesis import assume

    from cnncli.errors import HyperparameterError as HE

    shape, kw = config
    try:
        params = PoolParams(**kw)
        params.geometry(shape[1:3])
    except HE:
        assume(False)
    A = np.random.default_rng(seed).integers(0, 3, size=shape)
    r = gradcheck_pool(A, params, method=method, seed=seed)
    assert r.passed, r.to_dict()


@settings(max_examples=10)
@given(conv_configs(max_hw=7), st.integers(0, 2**16), st.sampled_from(["full", "fast"]))
def test_engine_conv_passes_random_configs(config, seed, method):
    A_shape, W_shape, kw = config
    rng = np.random.default_rng(seed)
    r = gradcheck_conv(rng.normal(size=A_shape), rng.normal(size=W_shape), rng.normal(size=W_shape[3]),
                       ConvParams(**kw), method=method, seed=seed)
    assert r.passed, r.to_dict()
