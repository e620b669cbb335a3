"""The hyperparameter records built from the exercise's dicts, and the one conv shape validator."""

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams, conv2d
from cnncli.engine.shapes import ConvShapeError, check_conv_shapes
from cnncli.errors import HyperparameterError, ShapeError


def test_conv_from_hparameters_defaults_and_layout_key():
    assert ConvParams.from_hparameters({}) == ConvParams(stride=1, pad=0, dilation=1, groups=1)
    assert ConvParams.from_hparameters({"stride": 2, "pad": "same", "layout": "nchw"}) == ConvParams(stride=2, pad="same")


def test_pool_from_hparameters_needs_f_and_defaults_stride_to_it():
    p = PoolParams.from_hparameters({"f": (3, 2)}, "avg")
    assert (p.f, p.stride, p.mode, p.ceil_mode, p.count_include_pad) == ((3, 2), (3, 2), "average", False, True)
    with pytest.raises(HyperparameterError, match="pool hparameters need 'f'"):
        PoolParams.from_hparameters({"stride": 2})
    with pytest.raises(HyperparameterError, match="unknown pool hyperparameter\\(s\\) 'mode'; valid keys: f, "):
        PoolParams.from_hparameters({"f": 2, "mode": "max"})


@pytest.mark.parametrize("A, W, b, groups, problem, message", [
    ((2, 5, 5, 4), (3, 3, 0, 2), None, 1, "empty W", "W must have no empty axis, got shape (3, 3, 0, 2)"),
    ((2, 5, 5, 4), (3, 3, 3, 2), None, 1, "channels",
     "W has 3 input channel(s) per group but A_prev has n_C_prev=4 with groups=1 (expected W.shape[2] == 4)"),
    ((2, 5, 5, 4), (3, 3, 2, 2), (3,), 2, "bias", "b must have shape (2,) or (1, 1, 1, 2) to match W, got (3,)"),
])
def test_conv_shape_problems_are_named(A, W, b, groups, problem, message):
    with pytest.raises(ConvShapeError) as info:
        check_conv_shapes(A, W, b, groups)
    assert (info.value.problem, str(info.value)) == (problem, message)
    # conv2d runs the same check: same error, same words.
    with pytest.raises(ConvShapeError) as info:
        conv2d(np.ones(A), np.ones(W), None if b is None else np.ones(b), ConvParams(groups=groups))
    assert str(info.value) == message


def test_conv_shape_check_order_and_plain_errors():
    with pytest.raises(ShapeError, match="A_prev must be 4-D"):
        check_conv_shapes((5, 5, 4), (3, 3, 4, 2), None, 1)
    with pytest.raises(ShapeError, match="at least one example"):
        check_conv_shapes((0, 5, 5, 4), (3, 3, 4, 2), None, 1)
    with pytest.raises(HyperparameterError, match="groups=3 must divide the input channels n_C_prev=4"):
        check_conv_shapes((1, 5, 5, 4), (3, 3, 1, 2), None, 3)
    assert check_conv_shapes((1, 5, 5, 4), (3, 3, 2, 6), (1, 1, 1, 6), 2) == 2


def test_layer_fits_refuses_in_closed_form_before_allocating():
    from cnncli.engine.shapes import check_layer_fits
    from cnncli.engine import pool2d, PoolParams

    geom = ConvParams(pad=10**9).geometry((6, 6), (3, 3))
    with pytest.raises(ShapeError, match=r"^output 2x2000000004x2000000004x4: [0-9.]+ EiB; memory is "):
        check_layer_fits(geom, 2, 3, 4, 8)
    small = ConvParams(pad=1).geometry((6, 6), (3, 3))
    check_layer_fits(small, 2, 3, 4, 8, limit=2 * 6 * 6 * 4 * 8)  # exactly the output's bytes: fits
    with pytest.raises(ShapeError, match="output 2x6x6x4 needs 2304 bytes; memory is 2303 bytes"):
        check_layer_fits(small, 2, 3, 4, 8, limit=2 * 6 * 6 * 4 * 8 - 1)
    with pytest.raises(ShapeError, match="^output 2x6x6x4 needs 2304 bytes, over CNNCLI_MEMORY_BYTES$"):
        check_layer_fits(small, 2, 3, 4, 8, limit=2 * 6 * 6 * 4 * 8 - 1, setting="CNNCLI_MEMORY_BYTES")
    # The engine itself refuses before allocating (this would need exbibytes).
    with pytest.raises(ShapeError, match="output 1x2000000004x2000000004x2: "):
        conv2d(np.ones((1, 6, 6, 1)), np.ones((3, 3, 1, 2)), params=ConvParams(pad=10**9))
    with pytest.raises(ShapeError, match="^padded input needs 27.8 EiB per example; memory is "):
        pool2d(np.ones((1, 6, 6, 1)), PoolParams(f=2 * 10**9, pad=10**9))


@pytest.mark.parametrize("mode", ["max", "average"])
def test_a_window_far_larger_than_the_input_matches_the_loops(mode):
    # 400x400 windows over a 6x6 input: only the taps that read the input are visited and numbered.
    from cnncli.engine import PoolParams, pool2d, pool2d_backward
    from cnncli.engine.reference import pool_backward_loops, pool_forward_loops

    rng = np.random.default_rng(5)
    A = rng.standard_normal((2, 6, 6, 3))
    p = PoolParams(f=400, stride=3, pad=200, mode=mode)
    out = pool2d(A, p)
    np.testing.assert_allclose(out, pool_forward_loops(A, p), rtol=1e-12, atol=1e-12)
    dA = rng.standard_normal(out.shape)
    np.testing.assert_allclose(pool2d_backward(dA, A, p), pool_backward_loops(dA, A, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pad, f, limit, setting, message", [
    # 8 * 8 * 2 pixels of 8 bytes = 1024 bytes: the whole words fit
    (1, 3, 512, None, "padded input 8x8x2 needs 1.0 KiB per example; memory is 512 bytes"),
    # 2006 * 2006 * 2 * 8 = 64,384,576 bytes = 61.4 MiB: "per example" gives way (it was 85 columns)
    (1000, 2000, 2**24, None, "padded example 2006x2006x2 needs 61.4 MiB; memory is 16.0 MiB"),
    # 200006**2 * 2 * 8 = 640,038,400,576 bytes = 596.1 GiB
    (10**5, 2 * 10**5, 2**30, None, "padded example 200006x200006x2 needs 596.1 GiB; memory is 1.0 GiB"),
    # 2000000006**2 * 2 * 8 bytes = 55.5 EiB: the dims give way, the size and the limit stay (it was 98)
    (10**9, 2 * 10**9, 2**30, None, "padded input needs 55.5 EiB per example; memory is 1.0 GiB"),
    (1, 3, 1000, "CNNCLI_MEMORY_BYTES", "padded example 8x8x2 needs 1.0 KiB, over CNNCLI_MEMORY_BYTES"),
    (1000, 2000, 2**24, "CNNCLI_MEMORY_BYTES", "padded example needs 61.4 MiB, over CNNCLI_MEMORY_BYTES"),
])
def test_a_pools_padded_input_refusal_fits_80_columns(pad, f, limit, setting, message):
    from cnncli.engine.shapes import check_layer_fits

    geom = PoolParams(f=f, stride=1, pad=pad).geometry((6, 6))
    with pytest.raises(ShapeError) as info:
        check_layer_fits(geom, 1, 2, 2, 8, pool=True, limit=limit, setting=setting)
    assert str(info.value) == message and len("cnncli: error: " + message) <= 80
