"""float32 3x3 convolutions by Winograd's F(2x2, 3x3) (``pip install 'cnncli[fast]'``, numba) against the
loop oracle and the numpy path, and when ``CNNCLI_JIT`` takes them."""

from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncli.engine import ConvParams, _jit, conv, conv2d, conv2d_backward
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops
from cnncli.errors import SettingError

from .test_pool_jit import jit

numba = pytest.importorskip("numba", reason="the compiled path needs numba (the [fast] extra)")

EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True, scope="module")
def _fresh_process_state_after():
    """As test_pool_jit's: the tests that follow see a process that never loaded the transforms."""
    kernels, counted, failure = dict(_jit._kernels), _jit._numpy_macs, _jit._failure
    yield
    _jit._kernels.clear()
    _jit._kernels.update(kernels)
    _jit._numpy_macs, _jit._failure = counted, failure


@contextmanager
def spy():
    """A list that gets, at each of conv.py's calls of the Winograd path in the block, the input's shape
    (a forward correlation: the forward pass or dA_prev) or "dW" (not a fixture: hypothesis reuses
    function fixtures)."""
    calls, forward, weights = [], conv.correlate3x3, conv.weight_grad3x3

    def correlation(X, *args):
        calls.append(X.shape)
        return forward(X, *args)

    def weight_grad(*args):
        calls.append("dW")
        return weights(*args)
    with mock.patch.object(conv, "correlate3x3", correlation), mock.patch.object(conv, "weight_grad3x3", weight_grad):
        yield calls


def _within_bound(got, A, W, b, params, scale=16):
    """Every element within ``scale`` float32 epsilons of the size of its 2x2 output block: the sums of
    |x| |w| (+ |b|) over the block's four windows (a transform mixes the 4x4 input tile they read:
    Winograd's error measured at 2.4 epsilons of it; a direct sum's bound is that of its own window)."""
    exact = conv_forward_loops(A.astype(np.float64), W.astype(np.float64),
                               None if b is None else b.astype(np.float64), params)
    assert got.dtype == np.float32 and got.shape == exact.shape
    m, n_H, n_W, K = exact.shape
    # NOTE: an odd last row or column of outputs ends in a tile whose other outputs lie past the edge: the
    # transforms still mix the input they would read (one more row or column of zeros after the padding),
    # so their windows count in the block (counted as 0, a one-row, one-column layer failed the bound)
    t, bottom, l, r = params.pad
    even = conv_forward_loops(np.abs(A).astype(np.float64), np.abs(W).astype(np.float64),
                              None if b is None else np.abs(b).astype(np.float64),
                              ConvParams(pad=(t, bottom + n_H % 2, l, r + n_W % 2)))
    block = even.reshape(m, -(-n_H // 2), 2, -(-n_W // 2), 2, K).sum(axis=(2, 4))
    block = block.repeat(2, axis=1).repeat(2, axis=2)[:, :n_H, :n_W]
    excess = np.abs(got - exact) - scale * EPS * block
    assert excess.max(initial=-1.0) <= 0, f"worst {np.unravel_index(excess.argmax(), excess.shape)}"


@st.composite
def layers(draw):
    """(A, W, b, pads) of a random float32 3x3 layer at stride 1: any pads (four sides, up to 3), odd
    and even sizes down to a single row, a few channels, values over six orders of magnitude."""
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    H = draw(st.integers(max(1, 3 - pads[0] - pads[1]), 11))
    W_ = draw(st.integers(max(1, 3 - pads[2] - pads[3]), 11))
    m, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A = (rng.standard_normal((m, H, W_, C)) * 10.0 ** draw(st.integers(-3, 3))).astype(np.float32)
    Wt = rng.standard_normal((3, 3, C, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if draw(st.booleans()) else None
    return A, Wt, b, pads


@settings(deadline=None)
@given(layers(), st.sampled_from([None, 1, 4096]))
def test_forward_and_input_gradient_match_the_loops(layer, workspace):
    """Forward and dA_prev by the transforms (a tiny workspace: one tile row a chunk) within a direct
    sum's error bound of the exact values; dW and db as before."""
    A, W, b, pads = layer
    params = ConvParams(pad=pads)
    with jit("on"), spy() as calls:
        Z = conv2d(A, W, b, params, workspace_bytes=workspace)
        dZ = np.random.default_rng(A.size).standard_normal(Z.shape).astype(np.float32)
        dA, dW, db = conv2d_backward(dZ, A, W, params, workspace_bytes=workspace)
    assert calls == [A.shape, "dW", dZ.shape]
    _within_bound(Z, A, W, b, params)
    # dA_prev is the correlation of dZ with the flipped, transposed taps, padded by 2 - pad
    t, bottom, l, r = pads
    dZ_pad = np.pad(dZ, ((0, 0), (2 - min(t, 2), 2 - min(bottom, 2)), (2 - min(l, 2), 2 - min(r, 2)), (0, 0)))
    dZ_pad = dZ_pad[:, max(t - 2, 0):dZ_pad.shape[1] - max(bottom - 2, 0), max(l - 2, 0):dZ_pad.shape[2] - max(r - 2, 0)]
    _within_bound(dA, dZ_pad, np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2)), None, ConvParams())
    want = conv_backward_loops(dZ, A, W, params)
    np.testing.assert_allclose(dA, want[0], rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want[0]).max()))
    for got, exact in zip((dW, db), want[1:]):
        np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(exact).max()))


def test_a_wrong_transform_fails_the_bound():
    """The bound is tight enough to catch a transform off by one term (the test can fail)."""
    rng = np.random.default_rng(0)
    A, W = rng.standard_normal((1, 6, 6, 3)).astype(np.float32), rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    params = ConvParams(pad=1)
    with jit("on"):
        Z = conv2d(A, W, None, params)
    _within_bound(Z, A, W, None, params)
    wrong = Z.copy()
    wrong[0, 2, 3, 1] += 1e-4 * abs(wrong[0, 2, 3, 1]) + 1e-4
    with pytest.raises(AssertionError):
        _within_bound(wrong, A, W, None, params)


@pytest.mark.parametrize("where", ["nan", "inf", "-inf", "huge"])
def test_rows_with_nan_infinities_or_huge_values_are_computed_as_the_numpy_path_does(where):
    """inf - inf inside a transform would make NaN where the direct sum gives an infinity, and a huge
    input (3e37 with weights near 1: the direct sums stay finite) could overflow an intermediate: the
    tile rows reading such a value take im2col. The other
    rows keep the transforms (one chunk per tile row) and every element is the direct sum's."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((2, 12, 10, 3)).astype(np.float32)
    W = np.abs(rng.standard_normal((3, 3, 3, 4))).astype(np.float32)  # one sign: inf stays inf
    value = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e37}[where]
    A[1, 7, 4, 2] = value
    params = ConvParams(pad="same")
    with jit("off"), np.errstate(invalid="ignore"):
        want = conv2d(A, W, None, params)
    with jit("on"), spy() as calls, np.errstate(invalid="ignore"):
        got = conv2d(A, W, None, params, workspace_bytes=1)
    assert calls
    special = ~np.isfinite(want) if where != "huge" else np.abs(want) > 1e30
    assert special.any() and special[1].sum() == special.sum()
    if where == "nan":
        assert np.isnan(got[special]).all()
    else:
        assert np.array_equal(got[special], want[special])  # the im2col path's, in these rows
    assert np.isfinite(got[~special]).all()
    np.testing.assert_allclose(got[~special], want[~special], rtol=1e-5, atol=1e-6)


def test_weights_with_an_infinity_take_the_numpy_path_whole():
    rng = np.random.default_rng(2)
    A, W = rng.standard_normal((1, 5, 5, 2)).astype(np.float32), rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
    W[1, 1, 0, 0] = np.inf
    with jit("off"):
        want = conv2d(A, W, None, ConvParams(pad=1))
    with jit("on"), np.errstate(invalid="ignore"):
        got = conv2d(A, W, None, ConvParams(pad=1))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kw, dtype", [
    (dict(stride=2, pad=1), np.float32),
    (dict(dilation=2, pad=2), np.float32),
    (dict(pad=1, groups=2), np.float32),
    (dict(pad=1), np.float64),
])
def test_other_layers_keep_the_numpy_path(kw, dtype):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((1, 8, 8, 4)).astype(dtype)
    W = rng.standard_normal((3, 3, 4 // kw.get("groups", 1), 4)).astype(dtype)
    with jit("on"), spy() as calls:
        Z = conv2d(A, W, None, ConvParams(**kw))
        conv2d_backward(np.ones_like(Z), A, W, ConvParams(**kw))
        # a 5x5 window is not 3x3 either
        conv2d(A, rng.standard_normal((5, 5, 4, 4)).astype(np.float32), None, ConvParams(pad=2))
    assert calls == []


def test_auto_rents_before_it_buys(monkeypatch):
    """Under auto a process computes AUTO_AFTER_MACS multiply-adds of such layers on the numpy path
    first, never takes the transforms for layers of few channels, and takes them for every call after."""
    monkeypatch.setattr(_jit, "_kernels", {k: v for k, v in _jit._kernels.items() if k != ("winograd", np.float32)})
    monkeypatch.setattr(_jit, "_numpy_macs", 0)
    monkeypatch.setattr(_jit, "AUTO_AFTER_MACS", 3 * (4 * 6 * 6 * 9 * 16 * 16))
    rng = np.random.default_rng(4)
    A = rng.standard_normal((4, 6, 6, 16)).astype(np.float32)
    W = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    narrow = rng.standard_normal((3, 3, 16, 8)).astype(np.float32)
    with jit("auto"), spy() as calls:
        for _ in range(3):
            conv2d(A, W, None, ConvParams(pad=1))
        assert calls == []
        conv2d(A, narrow, None, ConvParams(pad=1))  # 8 output channels: not counted, not taken
        assert calls == [] and _jit._numpy_macs == 3 * (4 * 6 * 6 * 9 * 16 * 16)
        conv2d(A, W, None, ConvParams(pad=1))
        assert len(calls) == 1
        conv2d(A, W, None, ConvParams(pad=1))
        assert len(calls) == 2
        conv2d(A, narrow, None, ConvParams(pad=1))
        assert len(calls) == 2
    with jit("off"), spy() as calls:
        conv2d(A, W, None, ConvParams(pad=1))
    assert calls == []


def test_on_is_refused_in_one_line_when_the_transforms_cannot_be_had(monkeypatch):
    monkeypatch.setattr(_jit, "_kernels", {})
    monkeypatch.setattr(_jit, "_failure", "needs numba: pip install 'cnncli[fast]'")
    A = np.ones((1, 4, 4, 1), np.float32)
    with jit("on"), pytest.raises(SettingError, match=r"CNNCLI_JIT=on needs numba"):
        conv2d(A, np.ones((3, 3, 1, 1), np.float32))
    with jit("auto"):  # auto never insists: the numpy path
        np.testing.assert_array_equal(conv2d(A, np.ones((3, 3, 1, 1), np.float32))[0, :, :, 0], [[9, 9], [9, 9]])


@pytest.mark.parametrize("array", ["A_prev", "dZ"])
@pytest.mark.parametrize("where", ["nan", "inf", "huge"])
def test_a_weight_gradient_the_transforms_could_get_wrong_is_the_numpy_paths(array, where):
    """dW sums over every tile: one NaN or infinity (inf - inf in a transform) or values whose sums could
    overflow in the transformed space send the whole dW to im2col, so it is the numpy path's, bit for bit."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    W = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    dZ = rng.standard_normal((2, 9, 8, 2)).astype(np.float32)
    value = {"nan": np.nan, "inf": np.inf, "huge": 2e37}[where]
    (A if array == "A_prev" else dZ)[1, 4, 3, 1] = value
    if where == "huge":
        (dZ if array == "A_prev" else A)[0, 2, 2, 0] = 30.0  # the product of the two largest is what counts
    with jit("off"), np.errstate(all="ignore"):
        want = conv2d_backward(dZ, A, W, ConvParams(pad=1), input_grad=False).dW
    with jit("on"), spy() as calls, np.errstate(all="ignore"):
        got = conv2d_backward(dZ, A, W, ConvParams(pad=1), input_grad=False).dW
    assert calls == ["dW"] and want.dtype == np.float32  # tried, and refused
    np.testing.assert_array_equal(got, want)


def test_the_weight_gradient_by_transforms_matches_the_loops_over_many_chunks():
    """A tiny workspace: one tile row a chunk, the parts added over chunks and both threads' shares."""
    rng = np.random.default_rng(6)
    A = rng.standard_normal((3, 13, 11, 4)).astype(np.float32)
    W = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    params = ConvParams(pad=(1, 2, 0, 1))
    dZ = rng.standard_normal(conv_forward_loops(A, W, None, params).shape).astype(np.float32)
    with jit("on"), spy() as calls:
        got = conv2d_backward(dZ, A, W, params, workspace_bytes=1)
        whole = conv2d_backward(dZ, A, W, params)
    assert calls.count("dW") == 2
    want = conv_backward_loops(dZ.astype(np.float64), A.astype(np.float64), W.astype(np.float64), params)
    size = conv_backward_loops(np.abs(dZ).astype(np.float64), np.abs(A).astype(np.float64), W, params)[1]
    for dW in (got.dW, whole.dW):
        assert dW.dtype == np.float32
        # within 16 epsilons of the sum of |x| |dz| over all nine taps: the transforms mix a tile's
        # 16 inputs with its block's 4 gradients
        assert (np.abs(dW - want[1]) <= 16 * EPS * size.sum(axis=(0, 1))).all()


def test_the_transformed_tiles_stay_within_the_workspace():
    """Transformed, the whole batch's tiles take 4 MiB (16 per 2x2 block, input and output channels);
    chunked by the workspace only a few hundred KiB per thread are held besides the 512 KiB output."""
    import tracemalloc

    rng = np.random.default_rng(7)
    A = rng.standard_normal((64, 16, 16, 8)).astype(np.float32)  # 512 KiB
    W = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    dZ = np.ones((64, 16, 16, 8), np.float32)
    with jit("on"), spy() as calls:
        conv2d(A, W, None, ConvParams(pad=1))  # compiled and loaded before measuring
        tracemalloc.start()
        try:
            conv2d(A, W, None, ConvParams(pad=1), workspace_bytes=2**18)
            forward = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            conv2d_backward(dZ, A, W, ConvParams(pad=1), workspace_bytes=2**18)
            backward = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(calls) == 4  # two forward passes, dW, dA_prev
    assert forward < 1.25 * 2**20 and backward < 1.5 * 2**20, (forward, backward)
