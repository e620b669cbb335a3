"""The classic exercise's functions: signatures, caches, published values, extra keys."""

import inspect

import numpy as np
import pytest

import cnncli
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
from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import conv_forward_loops, pool_backward_loops
from cnncli.errors import HyperparameterError, ShapeError


def test_star_import_exposes_the_exercise():
    ns = {}
    exec("from cnncli import *", ns)
    for name in ("zero_pad", "conv_single_step", "conv_forward", "conv_backward", "pool_forward",
                 "pool_backward", "create_mask_from_window", "distribute_value"):
        assert callable(ns[name])


@pytest.mark.parametrize("fn, params", [
    (zero_pad, ["X", "pad"]),
    (conv_single_step, ["a_slice_prev", "W", "b"]),
    (conv_forward, ["A_prev", "W", "b", "hparameters"]),
    (conv_backward, ["dZ", "cache"]),
    (pool_forward, ["A_prev", "hparameters", "mode"]),
    (pool_backward, ["dA", "cache", "mode"]),
    (create_mask_from_window, ["x"]),
    (distribute_value, ["dz", "shape"]),
])
def test_signatures(fn, params):
    positional = [p.name for p in inspect.signature(fn).parameters.values() if p.kind != p.KEYWORD_ONLY]
    assert positional == params
    if "mode" in params:
        assert inspect.signature(fn).parameters["mode"].default == "max"


def test_exercise_zero_pad():
    np.random.seed(1)
    x = np.random.randn(4, 3, 3, 2)
    x_pad = zero_pad(x, 3)
    assert x_pad.shape == (4, 9, 9, 2)
    np.testing.assert_array_equal(x_pad[1, 3:6, 3:6], x[1])
    assert np.all(x_pad[:, :3] == 0) and np.all(x_pad[:, :, -3:] == 0)
    assert zero_pad(x, (0, 1, 2, 3)).shape == (4, 4, 8, 2)


def test_exercise_conv_single_step():
    np.random.seed(1)
    a_slice_prev = np.random.randn(4, 4, 3)
    W = np.random.randn(4, 4, 3)
    b = np.random.randn(1, 1, 1)
    Z = conv_single_step(a_slice_prev, W, b)
    assert isinstance(Z, float)
    assert Z == pytest.approx(-6.999089450680221)  # the exercise's printed value
    assert Z == pytest.approx(float(np.sum(a_slice_prev * W) + b.item()))


def test_exercise_conv_forward_and_cache():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    hparameters = {"pad": 1, "stride": 2}
    Z, cache_conv = conv_forward(A_prev, W, b, hparameters)
    assert Z.shape == (2, 3, 4, 8)
    assert np.mean(Z) == pytest.approx(0.5511276474566768)
    np.testing.assert_allclose(cache_conv[0][1][2][3], [-1.1191154, 1.9560789, -0.3264995, -1.34267579], atol=1e-7)
    assert cache_conv[0] is A_prev and cache_conv[1] is W and cache_conv[2] is b
    assert cache_conv[3] == hparameters
    assert hparameters == {"pad": 1, "stride": 2}  # never mutated


def test_exercise_conv_backward_published_means():
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z, cache_conv = conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})
    dA, dW, db = conv_backward(Z, cache_conv)
    assert dA.shape == (10, 4, 4, 3) and dW.shape == (2, 2, 3, 8) and db.shape == (1, 1, 1, 8)
    assert np.mean(dA) == pytest.approx(1.4524377775388075)
    assert np.mean(dW) == pytest.approx(1.7269914583139097)
    assert np.mean(db) == pytest.approx(7.839232564616838)


def test_exercise_pool_forward_backward():
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    hparameters = {"stride": 1, "f": 2}
    A, cache = pool_forward(A_prev, hparameters)
    assert cache[0] is A_prev and cache[1] == hparameters
    dA = np.random.randn(5, 4, 2, 2)
    dA_prev = pool_backward(dA, cache, mode="max")
    np.testing.assert_allclose(dA_prev[1, 1], [[0, 0], [5.05844394, -1.68282702], [0, 0]], atol=1e-8)
    dA_prev = pool_backward(dA, cache, mode="average")
    np.testing.assert_allclose(dA_prev[1, 1], [[0.08485462, 0.2787552], [1.26461098, -0.25749373],
                                               [1.17975636, -0.53624893]], atol=1e-8)
    assert np.mean(dA) == pytest.approx(0.14571390272918056)


def test_extra_hyperparameters_reach_the_engine():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 7, 6, 4))
    W = rng.standard_normal((3, 2, 2, 6))
    b = rng.standard_normal((1, 1, 1, 6))
    hp = {"stride": (2, 1), "pad": "same", "dilation": 2, "groups": 2}
    Z, cache = conv_forward(A, W, b, hp)
    np.testing.assert_allclose(Z, conv_forward_loops(A, W, b, ConvParams(stride=(2, 1), pad="same", dilation=2, groups=2)))
    dA = rng.integers(0, 3, (2, 4, 4, 4)).astype(float)
    hp = {"f": 3, "stride": 2, "pad": 1, "ceil_mode": True, "count_include_pad": False}
    A_out, cache = pool_forward(A, hp, mode="avg")
    assert A_out.shape == (2, 4, 4, 4)  # 7x6 input: ceil((7+2-3)/2)+1, ceil((6+2-3)/2)+1
    np.testing.assert_allclose(pool_backward(dA, cache, mode="average"),
                               pool_backward_loops(dA, A, PoolParams(mode="average", **hp)))


def test_layout_keyword_nchw():
    rng = np.random.default_rng(1)
    A, W, b = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal((1, 1, 1, 4))
    Z, _ = conv_forward(A, W, b, {"stride": 1, "pad": 1})
    Zn, cache = conv_forward(A.transpose(0, 3, 1, 2), W.transpose(3, 2, 0, 1), b.reshape(4), {"stride": 1, "pad": 1},
                             layout="nchw")
    np.testing.assert_allclose(Zn, Z.transpose(0, 3, 1, 2))
    dA, dW, db = conv_backward(np.ones_like(Zn), cache)
    assert dA.shape == (2, 3, 5, 5) and dW.shape == (4, 3, 3, 3) and db.shape == (4,)


def test_mask_and_distribute():
    np.random.seed(1)
    x = np.random.randn(2, 3)
    mask = create_mask_from_window(x)
    np.testing.assert_array_equal(mask, x == x.max())
    tie = create_mask_from_window(np.array([[1, 3], [3, 2]]))
    assert tie.sum() == 1 and tie[0, 1]
    np.testing.assert_allclose(distribute_value(2, (2, 2)), np.full((2, 2), 0.5))


@pytest.mark.parametrize("call, exc, message", [
    (lambda: conv_forward(np.ones((1, 4, 4, 3)), np.ones((3, 3, 2, 2)), np.ones(2), {"stride": 1, "pad": 0}),
     ShapeError, "W has 2 input channel(s) per group but A_prev has n_C_prev=3"),
    (lambda: conv_forward(np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(3), {"stride": 1, "pad": 0}),
     ShapeError, "b must have shape (2,) or (1, 1, 1, 2)"),
    (lambda: conv_forward(np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(2), {"stride": 0, "pad": 0}),
     HyperparameterError, "stride must be >= 1, got 0"),
    (lambda: conv_forward(np.ones((1, 4, 4, 3)), np.ones((5, 5, 3, 2)), np.ones(2), {"stride": 1, "pad": 0}),
     HyperparameterError, "no 5x5 window fits a 4x4 input padded by 0"),
    (lambda: conv_forward(np.ones((1, 4, 4, 4)), np.ones((3, 3, 2, 3)), np.ones(3), {"stride": 1, "pad": 0, "groups": 2}),
     HyperparameterError, "groups=2 must divide the output channels n_C=3"),
    (lambda: conv_forward(np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(2), {"strides": 1}),
     HyperparameterError, "unknown conv hyperparameter(s) 'strides'"),
    (lambda: conv_forward(np.ones((4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(2), {"stride": 1, "pad": 0}),
     ShapeError, "A_prev must be 4-D (m, n_H, n_W, n_C), got shape (4, 4, 3)"),
    (lambda: pool_forward(np.ones((1, 4, 4, 3)), {"stride": 1}), HyperparameterError, "pool hparameters need 'f'"),
    (lambda: pool_forward(np.ones((1, 4, 4, 3)), {"f": 2}, mode="min"), HyperparameterError,
     "mode must be 'max' or 'average' (or 'avg'), got 'min'"),
    (lambda: conv_backward(np.ones((1, 3, 3, 2)), (np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(2),
                                                   {"stride": 1, "pad": 0})),
     ShapeError, "dZ must have the forward output's shape (1, 2, 2, 2), got (1, 3, 3, 2)"),
    (lambda: zero_pad(np.ones((1, 2, 2, 1)), -1), HyperparameterError, "pad must be >= 0, got -1"),
    (lambda: conv_single_step(np.ones((2, 2, 1)), np.ones((2, 2, 1)), np.array([])), ShapeError,
     "b must hold one value (shape (1, 1, 1) or a scalar), got shape (0,)"),
    (lambda: conv_single_step(np.ones((2, 2, 1)), np.ones((3, 3, 1)), 0.0), ShapeError,
     "a_slice_prev (2, 2, 1) and W (3, 3, 1) must have the same shape"),
    (lambda: distribute_value(1.0, (0, 0)), ShapeError, "shape must be two sizes >= 1, got (0, 0)"),
    (lambda: distribute_value(1.0, 4), ShapeError, "shape must be a pair (n_H, n_W), got 4"),
])
def test_errors_name_the_values(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # what a notebook user would catch


def test_version_string():
    assert isinstance(cnncli.__version__, str)


def test_text_hyperparameters_are_still_accepted():
    # The engine takes numbers; the classic API reads text values at its edge, as it always accepted them.
    rng = np.random.default_rng(3)
    A, W, b = rng.normal(size=(2, 6, 7, 2)), rng.normal(size=(3, 3, 2, 3)), rng.normal(size=(1, 1, 1, 3))
    Z_text, cache = conv_forward(A, W, b, {"stride": "2x1", "pad": "0,1,0,1", "dilation": "1"})
    Z_num, _ = conv_forward(A, W, b, {"stride": (2, 1), "pad": (0, 1, 0, 1), "dilation": 1})
    np.testing.assert_array_equal(Z_text, Z_num)
    assert cache[3] == {"stride": "2x1", "pad": "0,1,0,1", "dilation": "1"}  # the cache keeps the dict as given
    A_text, _ = pool_forward(A, {"f": "3", "stride": "2", "ceil_mode": "on"})
    A_num, _ = pool_forward(A, {"f": 3, "stride": 2, "ceil_mode": True})
    np.testing.assert_array_equal(A_text, A_num)
    assert zero_pad(A, "1,2").shape == (2, 8, 11, 2)


def test_a_conv_dict_may_carry_f_when_it_is_the_window_of_W():
    # students pass one dict to conv and pool: {"f": 3, ...} with 3x3 filters is the same call
    from cnncli.gradcheck import gradcheck_conv

    rng = np.random.default_rng(8)
    A, W, b = rng.normal(size=(2, 5, 6, 3)), rng.normal(size=(3, 2, 3, 4)), rng.normal(size=(1, 1, 1, 4))
    hp = {"stride": 1, "pad": 1, "f": (3, 2)}
    Z, cache = conv_forward(A, W, b, hp)
    np.testing.assert_allclose(Z, conv_forward_loops(A, W, b.reshape(4), ConvParams(stride=1, pad=1)), rtol=1e-12)
    assert cache[3] == hp and hp == {"stride": 1, "pad": 1, "f": (3, 2)}  # kept as given, not modified
    dA, dW, db = conv_backward(np.ones_like(Z), cache)
    np.testing.assert_allclose(db.reshape(4), np.full(4, Z.shape[0] * Z.shape[1] * Z.shape[2]))  # sum of ones
    W3 = rng.normal(size=(3, 3, 3, 4))
    for f in (3, [3, 3], "3", "3x3", np.int64(3)):
        Zf, _ = conv_forward(A, W3, b, {"stride": 2, "pad": 0, "f": f})
        np.testing.assert_array_equal(Zf, conv_forward(A, W3, b, {"stride": 2, "pad": 0})[0])
    # PyTorch's layout: the window is W's last two axes
    Zn, _ = conv_forward(A.transpose(0, 3, 1, 2), W.transpose(3, 2, 0, 1), b, hp, layout="nchw")
    np.testing.assert_allclose(Zn, Z.transpose(0, 3, 1, 2), rtol=1e-12)
    assert gradcheck_conv(A, W, b, hp, method="full").passed


@pytest.mark.parametrize("f, message", [
    (2, "hparameters['f']=2 disagrees with W's 3x3 window"),
    ((3, 2), "hparameters['f']=(3, 2) disagrees with W's 3x3 window"),
    ("2x3", "hparameters['f']=(2, 3) disagrees with W's 3x3 window"),
])
def test_a_conv_dicts_f_that_is_not_the_window_of_W_is_refused_naming_both(f, message):
    from cnncli.gradcheck import gradcheck_conv

    A, W, b = np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(2)
    hp = {"stride": 1, "pad": 0, "f": f}
    calls = [lambda: conv_forward(A, W, b, hp), lambda: gradcheck_conv(A, W, b, hp),
             lambda: conv_backward(np.ones((1, 2, 2, 2)), (A, W, b, hp))]
    for call in calls:
        with pytest.raises(ShapeError) as info:
            call()
        assert str(info.value) == message and isinstance(info.value, ValueError)


def test_a_conv_dict_still_refuses_unknown_keys_and_bad_f():
    A, W, b = np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 2)), np.ones(2)
    with pytest.raises(HyperparameterError, match=r"unknown conv hyperparameter\(s\) 'kernel'; valid keys: "
                                                  r"stride, pad, dilation, groups, layout, f"):
        conv_forward(A, W, b, {"stride": 1, "f": 3, "kernel": 3})
    with pytest.raises(HyperparameterError, match="f must be >= 1, got 0"):
        conv_forward(A, W, b, {"stride": 1, "f": 0})


# PyTorch's (C_out, C_in, kH, kW) = (8, 4, 3, 3) read as the exercise's (f, f, n_C_prev, n_C): a "window" of 8x4,
# 3 input channels where A_prev has 4
W_SHAPE_FIRST = "W has 3 input channel(s) per group but A_prev has n_C_prev=4 with groups=1 (expected W.shape[2] == 4)"


@pytest.mark.parametrize("f", [3, 8, (8, 4)])
def test_a_w_in_pytorchs_layout_is_told_by_its_shape_before_f(f):
    # f=3 is the user's right window; it was told "hparameters['f']=3 disagrees with W's 8x4 window"
    from cnncli.gradcheck import gradcheck_conv

    A, W, b = np.ones((2, 5, 5, 4)), np.ones((8, 4, 3, 3)), np.zeros((1, 1, 1, 8))
    hp = {"stride": 1, "pad": 1, "f": f}
    calls = [lambda: conv_forward(A, W, b, hp), lambda: conv_backward(np.ones((2, 5, 5, 8)), (A, W, b, hp)),
             lambda: gradcheck_conv(A, W, b, hp)]
    for call in calls:
        with pytest.raises(ShapeError) as info:
            call()
        assert str(info.value) == W_SHAPE_FIRST
    assert conv_forward(A, W.transpose(2, 3, 1, 0), b, {**hp, "f": 3})[0].shape == (2, 5, 5, 8)


def test_a_wrong_f_with_a_w_of_the_right_shape_is_still_told_by_f():
    # the other order: W agrees with A_prev and b, so f is the problem
    A, W, b = np.ones((2, 5, 5, 4)), np.ones((3, 3, 4, 8)), np.zeros((1, 1, 1, 8))
    for hp in ({"stride": 1, "pad": 1, "f": 2}, {"stride": 1, "pad": 1, "f": 2, "groups": 0}):
        with pytest.raises(ShapeError) as info:
            conv_forward(A, W, b, hp)
        assert str(info.value) == "hparameters['f']=2 disagrees with W's 3x3 window"
    # a bias that does not match is b's own problem, told after f (as before)
    with pytest.raises(ShapeError) as info:
        conv_forward(A, W, np.zeros(5), {"stride": 1, "pad": 1, "f": 2})
    assert str(info.value) == "hparameters['f']=2 disagrees with W's 3x3 window"
