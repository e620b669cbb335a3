"""The compiled max-pool backward (``pip install 'cnncli[fast]'``, numba) against the loop oracle and
the numpy path, and the ``CNNCLI_JIT`` setting that chooses it."""

import os
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnncli.engine import PoolParams, pool2d_backward
from cnncli.engine import _jit, pool
from cnncli.engine.reference import pool_backward_loops, pool_forward_loops
from cnncli.errors import HyperparameterError, SettingError

from .strategies import pool_configs

numba = pytest.importorskip("numba", reason="the compiled path needs numba (the [fast] extra)")


@pytest.fixture(autouse=True, scope="module")
def _fresh_process_state_after():
    """Forget, after this module, which dtypes the kernel has loaded: under CNNCLI_JIT=auto the tests
    that follow take the numpy path again, as in a process that never loaded it."""
    kernels, counted, failure = dict(_jit._kernels), _jit._numpy_elements, _jit._failure
    yield
    _jit._kernels.clear()
    _jit._kernels.update(kernels)
    _jit._numpy_elements, _jit._failure = counted, failure


@contextmanager
def jit(mode):
    """CNNCLI_JIT set to ``mode`` inside the block (not a fixture: hypothesis reuses function fixtures)."""
    old = os.environ.get("CNNCLI_JIT")
    os.environ["CNNCLI_JIT"] = mode
    try:
        yield
    finally:
        if old is None:
            del os.environ["CNNCLI_JIT"]
        else:
            os.environ["CNNCLI_JIT"] = old


@contextmanager
def kernel_calls():
    """A list that gets one entry per call of the compiled kernel inside the block (pool.py's)."""
    calls, choose = [], pool.max_backward_kernel

    def spy(*args):
        kernel = choose(*args)
        if kernel is None:
            return None

        def counted(*kargs):
            calls.append(kargs[0].shape)
            return kernel(*kargs)
        return counted

    pool.max_backward_kernel = spy
    try:
        yield calls
    finally:
        pool.max_backward_kernel = choose


def both_paths(dA, A, params, **kw):
    """(compiled, numpy) results; the compiled one must really have come from the kernel."""
    with jit("on"), kernel_calls() as calls:
        compiled = pool2d_backward(dA, A, params, **kw)
    assert calls, "the kernel was not called"
    with jit("off"), kernel_calls() as calls:
        plain = pool2d_backward(dA, A, params, **kw)
    assert not calls
    return compiled, plain


def assert_same(got, want):
    """Equal element for element, NaN where NaN (the sums of small integers are exact)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(want))


def _max_params(a_shape, kw):
    params = PoolParams(**dict(kw, mode="max"))
    try:
        params.geometry(a_shape[1:3])
    except HyperparameterError:
        return None
    return params


@given(pool_configs(), st.integers(0, 2**16), st.sampled_from([np.float64, np.float32]), st.booleans())
def test_compiled_max_pool_backward_matches_the_loops_and_the_numpy_path(cfg, seed, dtype, one_per_chunk):
    """Ties, NaN, +-inf and mostly -inf inputs (all -inf windows keep tap (0, 0), dropped in the padding),
    inf/NaN gradients; every stride, dilation, pad form and ceil mode the strategy draws."""
    a_shape, kw = cfg
    params = _max_params(a_shape, kw)
    if params is None:
        return
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([0.0, 1.0, 2.0, np.nan, np.inf, -np.inf]), size=a_shape,
                        p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    A = np.where(rng.random(a_shape) < rng.choice([0.0, 0.85]), -np.inf, values).astype(dtype)
    out_shape = pool_forward_loops(A, params).shape
    dA = rng.integers(-3, 4, out_shape).astype(dtype)
    if rng.random() < 0.3:
        dA[rng.random(out_shape) < 0.15] = rng.choice([np.inf, -np.inf, np.nan])
    compiled, plain = both_paths(dA, A, params, workspace_bytes=1 if one_per_chunk else None)
    assert_same(compiled, pool_backward_loops(dA, A, params).astype(dtype))
    assert_same(compiled, plain)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("stride, dilation, pad", [(1, 1, 0), (2, 1, 1), (2, 2, 2), ((1, 3), (2, 1), 1)])
def test_3x3_windows_inside_the_input_take_the_first_maximum_as_the_loops_do(dtype, stride, dilation, pad):
    # The kernel's unrolled path for 3x3 windows wholly inside the input, beside the general loop for
    # the windows that reach into the padding: 19 channels (vector code and its remainder); ties,
    # a few NaN (a window holding one, in any channel, is searched again under NaN's rule: so few
    # that most windows are not), +-inf, windows of -inf only.
    rng = np.random.default_rng(11)
    params = PoolParams(f=3, stride=stride, pad=pad, dilation=dilation, mode="max")
    for _ in range(4):
        values = rng.choice(np.array([0.0, 1.0, 2.0, np.inf, -np.inf]), size=(2, 13, 12, 19),
                            p=[0.35, 0.25, 0.3, 0.05, 0.05])
        values.reshape(-1)[rng.choice(values.size, 4, replace=False)] = np.nan
        A = np.where(rng.random(values.shape) < 0.3, -np.inf, values).astype(dtype)
        dA = rng.integers(-3, 4, pool_forward_loops(A, params).shape).astype(dtype)
        compiled, plain = both_paths(dA, A, params)
        assert_same(compiled, pool_backward_loops(dA, A, params).astype(dtype))
        assert_same(compiled, plain)


@given(pool_configs(large_pads=True), st.integers(0, 2**16))
def test_compiled_max_pool_backward_with_pads_beyond_half_the_window(cfg, seed):
    a_shape, kw = cfg
    params = _max_params(a_shape, kw)
    if params is None:
        return
    rng = np.random.default_rng(seed)
    A = rng.integers(-3, 4, a_shape).astype(np.float64)
    dA = rng.integers(1, 5, pool_forward_loops(A, params).shape).astype(np.float64)
    compiled, plain = both_paths(dA, A, params)
    assert_same(compiled, pool_backward_loops(dA, A, params))
    assert_same(compiled, plain)


def test_random_floats_on_the_benchmark_geometry_are_bit_identical_to_the_numpy_path():
    # 3x3 stride 2 pad 1 over 64 channels (the benchmark's layer, fewer examples): the overlapping
    # windows add into the same pixels in the same order on both paths, so even rounding agrees
    rng = np.random.default_rng(3)
    params = PoolParams(f=3, stride=2, pad=1, mode="max")
    for dtype in (np.float32, np.float64):
        A = rng.standard_normal((3, 30, 28, 64)).astype(dtype)
        dA = rng.standard_normal((3, 15, 14, 64)).astype(dtype)
        compiled, plain = both_paths(dA, A, params)
        assert compiled.tobytes() == plain.tobytes()
        np.testing.assert_allclose(compiled, pool_backward_loops(dA, A, params), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_window_much_larger_than_the_input_visits_only_its_taps_inside(dtype):
    # 301x301 taps (pad 150) over 4x5 pixels: the loops inside the input only (90,601 taps would
    # still be fast; the point is that the answer matches where most taps are padding)
    rng = np.random.default_rng(5)
    A = rng.integers(0, 3, (2, 4, 5, 3)).astype(dtype)
    params = PoolParams(f=301, stride=1, pad=150, mode="max")
    dA = rng.integers(1, 5, pool_forward_loops(A, params).shape).astype(dtype)
    compiled, _ = both_paths(dA, A, params)
    assert_same(compiled, pool_backward_loops(dA, A, params).astype(dtype))


def test_the_nchw_layout_a_non_contiguous_and_a_read_only_input_take_the_kernel_too():
    rng = np.random.default_rng(9)
    params = PoolParams(f=2, stride=2, mode="max")
    A = rng.integers(0, 4, (2, 8, 6, 3)).astype(np.float64)
    dA = rng.integers(1, 5, (2, 4, 3, 3)).astype(np.float64)
    want = pool_backward_loops(dA, A, params)
    with jit("on"), kernel_calls() as calls:
        got = pool2d_backward(dA.transpose(0, 3, 1, 2), A.transpose(0, 3, 1, 2), params, layout="nchw")
        assert_same(got, want.transpose(0, 3, 1, 2))
        # every other column of a wider array: not C-contiguous, copied a chunk at a time
        wide = np.repeat(A, 2, axis=2)[:, :, ::2]
        assert not wide.flags.c_contiguous
        assert_same(pool2d_backward(dA, wide, params, workspace_bytes=1), want)
        # a read-only input (np.load(mmap_mode="r"), jax) matches the kernel's one signature: no
        # compile at the call, in the worker threads
        frozen = A.copy()
        frozen.setflags(write=False)
        assert_same(pool2d_backward(dA, frozen, params), want)
    assert len(calls) == 1 + 2 + 1  # the last two: one chunk per example, then one chunk
    assert len(_jit._kernels[np.dtype(np.float64)].signatures) == 1


def test_geometry_numbers_beyond_2_40_keep_the_numpy_path():
    A = np.zeros((1, 4, 4, 8))
    with jit("on"):
        assert _jit.max_backward_kernel(A, A, (2**40,)) is not None
        assert _jit.max_backward_kernel(A, A, (2**40 + 1,)) is None
        assert _jit.max_backward_kernel(A, A, (-1,)) is None


def test_auto_takes_the_numpy_path_until_the_inputs_add_up_to_the_loading_cost(monkeypatch):
    # a fresh process's state: nothing loaded, nothing counted
    monkeypatch.setattr(_jit, "_kernels", {})
    monkeypatch.setattr(_jit, "_numpy_elements", 0)
    monkeypatch.setattr(_jit, "AUTO_AFTER_ELEMENTS", 100)
    A = np.zeros((1, 2, 3, 8), np.float32)  # 48 elements
    with jit("auto"):
        assert _jit.max_backward_kernel(A, A, (1,)) is None  # 48
        assert _jit.max_backward_kernel(A, A, (1,)) is None  # 96: not more than the budget yet
        assert _jit.max_backward_kernel(A, A.astype(np.float64), (1,)) is None  # mixed dtypes: never
        assert _jit.max_backward_kernel(A, A, (2**41,)) is None  # int64 could overflow: never
        assert _jit.max_backward_kernel(A, A, (1,)) is not None  # 144: from here on, the kernel
        assert _jit.max_backward_kernel(A[:, :1], A[:, :1], (1,)) is not None  # even small calls
        few = np.zeros((9, 9, 9, 7), np.float32)
        assert _jit.max_backward_kernel(few, few, (1,)) is None  # under 8 channels numpy is faster
    with jit("on"):
        assert _jit.max_backward_kernel(few, few, (1,)) is not None  # on: whatever the channels
    with jit("OFF"):
        assert _jit.max_backward_kernel(A, A, (1,)) is None
    monkeypatch.setattr(_jit, "_numpy_elements", 0)
    with jit(" On "):  # from the first call, whatever its size
        assert _jit.max_backward_kernel(A[:, :1, :1, :1], A[:, :1, :1, :1], (1,)) is not None


def test_auto_switches_mid_stream_and_the_results_do_not_change(monkeypatch):
    monkeypatch.setattr(_jit, "_kernels", {})
    monkeypatch.setattr(_jit, "_numpy_elements", 0)
    monkeypatch.setattr(_jit, "AUTO_AFTER_ELEMENTS", 3 * 8 * 8 * 8)
    rng = np.random.default_rng(11)
    params = PoolParams(f=3, stride=2, pad=1, mode="max")
    A = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    dA = rng.standard_normal((1, 4, 4, 8)).astype(np.float32)
    with jit("off"):
        want = pool2d_backward(dA, A, params)
    with jit("auto"), kernel_calls() as calls:
        results = [pool2d_backward(dA, A, params) for _ in range(5)]
    assert len(calls) == 2  # the fourth and fifth calls
    assert all(r.tobytes() == want.tobytes() for r in results)


def _fresh(monkeypatch):
    monkeypatch.setattr(_jit, "_kernels", {})
    monkeypatch.setattr(_jit, "_failure", None)


def test_on_without_a_working_numba_says_why(monkeypatch):
    monkeypatch.setattr(_jit, "_kernels", {})
    monkeypatch.setattr(_jit, "_failure", "needs numba: pip install 'cnncli[fast]'")
    A = np.zeros((1, 4, 4, 1))
    with jit("on"), pytest.raises(SettingError) as err:
        pool2d_backward(np.zeros((1, 2, 2, 1)), A, PoolParams(f=2, mode="max"))
    assert str(err.value) == "CNNCLI_JIT=on needs numba: pip install 'cnncli[fast]'"
    monkeypatch.setattr(_jit, "_numpy_elements", 2**40)
    with jit("auto"):  # auto falls back to numpy, silently
        assert _jit.max_backward_kernel(np.zeros((1, 4, 4, 8)), np.zeros((1, 4, 4, 8)), (1,)) is None


def test_numba_disable_jit_is_not_taken_for_a_kernel(monkeypatch):
    # with NUMBA_DISABLE_JIT the kernel would be the Python loops: 75x the numpy path's time
    _fresh(monkeypatch)
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    A = np.zeros((1, 4, 4, 8))
    with jit("on"), pytest.raises(SettingError) as err:
        _jit.max_backward_kernel(A, A, (1,))
    assert str(err.value) == "CNNCLI_JIT=on cannot compile: NUMBA_DISABLE_JIT is set"


def test_a_cache_numba_cannot_use_falls_back_to_compiling_in_memory(monkeypatch):
    from cnncli.engine import _jit_kernels

    _fresh(monkeypatch)
    real, asked = _jit_kernels.max_pool_backward, []

    def no_cache_locator(dtype, cache=True):
        asked.append(cache)
        if cache:
            raise RuntimeError("cannot cache function '_max_pool_backward': no locator available")
        return real(dtype, cache=False)

    monkeypatch.setattr(_jit_kernels, "max_pool_backward", no_cache_locator)
    rng = np.random.default_rng(1)
    A = rng.integers(0, 3, (2, 6, 6, 8)).astype(np.float32)
    dA = rng.integers(1, 4, (2, 3, 3, 8)).astype(np.float32)
    params = PoolParams(f=2, stride=2, mode="max")
    compiled, plain = both_paths(dA, A, params)
    assert asked == [True, False]
    assert compiled.tobytes() == plain.tobytes()

    def broken(dtype, cache=True):
        raise ValueError("bad index")

    _fresh(monkeypatch)
    monkeypatch.setattr(_jit_kernels, "max_pool_backward", broken)
    with jit("on"), pytest.raises(SettingError) as err:
        pool2d_backward(dA, A, params)
    assert str(err.value) == "CNNCLI_JIT=on cannot build the kernel: ValueError: bad index"

    def verbose(dtype, cache=True):
        raise RuntimeError("cannot cache function '_max_pool_backward': no locator available for file "
                           "'/usr/lib/python3/site-packages/cnncli/engine/_jit_kernels.py'")

    _fresh(monkeypatch)
    monkeypatch.setattr(_jit_kernels, "max_pool_backward", verbose)
    with jit("on"), pytest.raises(SettingError) as err:
        pool2d_backward(dA, A, params)
    line = f"cnncli: error: {err.value}"
    assert line == "cnncli: error: CNNCLI_JIT=on cannot build the kernel: RuntimeError: cannot ca..."
