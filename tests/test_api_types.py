"""The classic API returns exactly the types and shapes a notebook's own tests expect of the exercise's functions.

The exercise's graders compare types (``type(Z) == np.float64``, ``isinstance(x, np.ndarray)``,
tuples recursively: the cache is a tuple of the inputs and the hparameters dict) and
shapes before values; a swap-in must pass those as a student's solution would.
"""

import numpy as np
import pytest

from cnncli import (
    conv_backward,
    conv_forward,
    conv_single_step,
    create_mask_from_window,
    distribute_value,
    pool_backward,
    pool_forward,
    zero_pad,
)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_single_step_returns_a_numpy_float_of_the_input_dtype(rng, dtype):
    a = rng.standard_normal((3, 3, 2)).astype(dtype)
    W = rng.standard_normal((3, 3, 2)).astype(dtype)
    b = rng.standard_normal((1, 1, 1)).astype(dtype)
    Z = conv_single_step(a, W, b)
    assert type(Z) is dtype  # exactly: not a Python float, not a 0-d array
    expected = sum(float(x) * float(w) for x, w in zip(a.ravel(), W.ravel())) + float(b.ravel()[0])
    assert float(Z) == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-12)


def test_conv_single_step_on_integers_and_a_python_bias_is_float64():
    Z = conv_single_step(np.arange(4).reshape(2, 2, 1), np.ones((2, 2, 1), dtype=int), 2)
    assert type(Z) is np.float64 and Z == 0 + 1 + 2 + 3 + 2


def test_zero_pad_returns_an_ndarray_padded_on_height_and_width_only(rng):
    x = rng.standard_normal((4, 3, 3, 2))
    x_pad = zero_pad(x, 3)
    assert type(x_pad) is np.ndarray and x_pad.shape == (4, 9, 9, 2) and x_pad.dtype == np.float64
    assert np.array_equal(x_pad[:, 3:6, 3:6, :], x) and not x_pad[:, :3].any() and not x_pad[:, :, 6:].any()


def test_conv_forward_returns_Z_and_the_classic_cache(rng):
    A_prev = rng.standard_normal((2, 5, 7, 4))
    W = rng.standard_normal((3, 3, 4, 8))
    b = rng.standard_normal((1, 1, 1, 8))
    hparameters = {"pad": 1, "stride": 2}
    out = conv_forward(A_prev, W, b, hparameters)
    assert type(out) is tuple and len(out) == 2
    Z, cache = out
    # n = floor((n_prev + 2 pad - f) / stride) + 1: (5 + 2 - 3) // 2 + 1 = 3, (7 + 2 - 3) // 2 + 1 = 4
    assert type(Z) is np.ndarray and Z.shape == (2, 3, 4, 8) and Z.dtype == np.float64
    assert type(cache) is tuple and len(cache) == 4
    assert [type(c) for c in cache] == [np.ndarray, np.ndarray, np.ndarray, dict]
    assert cache[0] is A_prev and cache[1] is W and cache[2] is b and cache[3] == hparameters
    for shape, hp in (((2, 9, 11, 8), {"pad": 3, "stride": 1}), ((2, 2, 3, 8), {"pad": 0, "stride": 2})):
        assert conv_forward(A_prev, W, b, hp)[0].shape == shape


def test_conv_backward_returns_three_ndarrays_shaped_like_the_inputs(rng):
    A_prev = rng.standard_normal((2, 5, 7, 4))
    W = rng.standard_normal((3, 3, 4, 8))
    b = rng.standard_normal((1, 1, 1, 8))
    Z, cache = conv_forward(A_prev, W, b, {"pad": 1, "stride": 2})
    out = conv_backward(Z, cache)
    assert type(out) is tuple and len(out) == 3
    dA, dW, db = out
    assert all(type(g) is np.ndarray for g in out)
    assert (dA.shape, dW.shape, db.shape) == (A_prev.shape, W.shape, b.shape)
    assert np.allclose(db.ravel(), Z.sum(axis=(0, 1, 2)))  # db is the sum of dZ over m, h, w


@pytest.mark.parametrize("mode", ["max", "average"])
def test_pool_forward_and_backward_types_and_shapes(rng, mode):
    A_prev = rng.standard_normal((2, 5, 7, 3))
    hparameters = {"stride": 2, "f": 2}
    out = pool_forward(A_prev, hparameters, mode=mode)
    assert type(out) is tuple and len(out) == 2
    A, cache = out
    assert type(A) is np.ndarray and A.shape == (2, 2, 3, 3)
    assert type(cache) is tuple and len(cache) == 2 and cache[0] is A_prev and cache[1] == hparameters
    assert type(cache[1]) is dict
    assert pool_forward(rng.standard_normal((4, 5, 7, 4)), {"stride": 1, "f": 5}, mode=mode)[0].shape == (4, 1, 3, 4)
    dA_prev = pool_backward(rng.standard_normal(A.shape), cache, mode=mode)
    assert type(dA_prev) is np.ndarray and dA_prev.shape == A_prev.shape


def test_create_mask_from_window_is_a_bool_ndarray_of_the_windows_shape(rng):
    x = rng.standard_normal((2, 3))
    mask = create_mask_from_window(x)
    assert type(mask) is np.ndarray and mask.dtype == np.bool_ and mask.shape == x.shape
    assert mask.sum() == 1 and x[mask][0] == x.max()


def test_distribute_value_is_a_float_ndarray_of_the_given_shape():
    a = distribute_value(2, (2, 2))
    assert type(a) is np.ndarray and a.shape == (2, 2) and a.dtype == np.float64
    assert np.array_equal(a, [[0.5, 0.5], [0.5, 0.5]])
