"""The compiled max-pool backward (``pip install 'cnncli[fast]'``, numba) against the loop oracle and
the numpy path, and the ``CNNCLI_JIT`` setting that chooses it."""

import os
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnncli.engine import PoolParams, pool2d_backward
from cnncli.engine import _jit
from cnncli.engine.reference import pool_backward_loops, pool_forward_loops
from cnncli.errors import HyperparameterError, SettingError

from .strategies import pool_configs

numba = pytest.importorskip("numba", reason="the compiled path needs numba (the [fast] extra)")


@pytest.fixture(autouse=True, scope="module")
def _fresh_process_state_after():
    """Forget, after this module, which dtypes the kernel has loaded: under CNNCLI_JIT=auto the tests
    that follow take the numpy path again, as in a process that never loaded it."""
    ready, counted = set(_jit._ready), _jit._numpy_elements
    yield
    _jit._ready.clear()
    _jit._ready.update(ready)
    _jit._numpy_elements = counted


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


def both_paths(dA, A, params, **kw):
    """(compiled, numpy) results; the compiled one must really have been compiled."""
    with jit("on"):
        assert _jit.max_backward_kernel(np.ascontiguousarray(A), np.ascontiguousarray(dA), (0,)) is not None
        compiled = pool2d_backward(dA, A, params, **kw)
    with jit("off"):
        plain = pool2d_backward(dA, A, params, **kw)
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


def test_the_nchw_layout_and_a_non_contiguous_input_give_the_same_gradient():
    rng = np.random.default_rng(9)
    params = PoolParams(f=2, stride=2, mode="max")
    A = rng.integers(0, 4, (2, 8, 6, 3)).astype(np.float64)
    dA = rng.integers(1, 5, (2, 4, 3, 3)).astype(np.float64)
    want = pool_backward_loops(dA, A, params)
    with jit("on"):
        got = pool2d_backward(dA.transpose(0, 3, 1, 2), A.transpose(0, 3, 1, 2), params, layout="nchw")
        assert_same(got, want.transpose(0, 3, 1, 2))
        # every other column of a wider array: not C-contiguous, so the numpy path takes it
        wide = np.repeat(A, 2, axis=2)[:, :, ::2]
        assert not wide.flags.c_contiguous
        assert_same(pool2d_backward(dA, wide, params), want)


def test_strides_beyond_int64_keep_the_numpy_path_and_its_answer():
    # 2**70 rows between windows: one window per axis; the compiled kernel's int64 arithmetic is not used
    A = np.arange(2 * 3 * 3 * 2, dtype=np.float64).reshape(2, 3, 3, 2) % 5
    params = PoolParams(f=2, stride=2**70, mode="max")
    dA = np.ones((2, 1, 1, 2))
    with jit("on"):
        got = pool2d_backward(dA, A, params)
    assert_same(got, pool_backward_loops(dA, A, params))


def test_auto_takes_the_numpy_path_until_the_inputs_add_up_to_the_loading_cost(monkeypatch):
    # a fresh process's state: nothing loaded, nothing counted
    monkeypatch.setattr(_jit, "_ready", set())
    monkeypatch.setattr(_jit, "_numpy_elements", 0)
    monkeypatch.setattr(_jit, "AUTO_AFTER_ELEMENTS", 100)
    A = np.zeros((1, 5, 5, 2), np.float32)  # 50 elements
    with jit("auto"):
        assert _jit.max_backward_kernel(A, A, (1,)) is None  # 50
        assert _jit.max_backward_kernel(A, A, (1,)) is None  # 100: not more than the budget yet
        assert _jit.max_backward_kernel(A, A.astype(np.float64), (1,)) is None  # mixed dtypes: never
        assert _jit.max_backward_kernel(A, A, (2**41,)) is None  # int64 could overflow: never
        assert _jit.max_backward_kernel(A, A, (1,)) is not None  # 150: from here on, the kernel
        assert _jit.max_backward_kernel(A[:, :1], A[:, :1], (1,)) is not None  # even small calls
        assert _jit.max_backward_kernel(A, A[..., ::2], (1,)) is None  # not contiguous: never
    with jit("OFF"):
        assert _jit.max_backward_kernel(A, A, (1,)) is None
    monkeypatch.setattr(_jit, "_numpy_elements", 0)
    with jit(" On "):  # from the first call, whatever its size
        assert _jit.max_backward_kernel(A[:, :1, :1, :1], A[:, :1, :1, :1], (1,)) is not None


def test_auto_switches_mid_stream_and_the_results_do_not_change(monkeypatch):
    monkeypatch.setattr(_jit, "_ready", set())
    monkeypatch.setattr(_jit, "_numpy_elements", 0)
    monkeypatch.setattr(_jit, "AUTO_AFTER_ELEMENTS", 3 * 8 * 8 * 4)
    rng = np.random.default_rng(11)
    params = PoolParams(f=3, stride=2, pad=1, mode="max")
    A = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    dA = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    with jit("off"):
        want = pool2d_backward(dA, A, params)
    with jit("auto"):
        results = [pool2d_backward(dA, A, params) for _ in range(5)]
    assert np.dtype(np.float32) in _jit._ready  # the fourth call loaded the kernel
    assert all(r.tobytes() == want.tobytes() for r in results)


def test_on_without_a_working_numba_says_why(monkeypatch):
    monkeypatch.setattr(_jit, "_kernel", None)
    monkeypatch.setattr(_jit, "_failure", "ModuleNotFoundError: No module named 'numba'")
    A = np.zeros((1, 4, 4, 1))
    with jit("on"), pytest.raises(SettingError) as err:
        pool2d_backward(np.zeros((1, 2, 2, 1)), A, PoolParams(f=2, mode="max"))
    assert str(err.value) == ("CNNCLI_JIT=on needs numba (pip install 'cnncli[fast]'): "
                              "ModuleNotFoundError: No module named 'numba'")
    monkeypatch.setattr(_jit, "_numpy_elements", 2**40)
    with jit("auto"):  # auto falls back to numpy, silently
        assert _jit.max_backward_kernel(A, A, (1,)) is None
