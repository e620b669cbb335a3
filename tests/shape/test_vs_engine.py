"""What ``shape`` computes, checked against the engine itself and against brute force.

Output sizes: run the engine's forward on zero arrays. Receptive fields and
unread input: push one-hot images through the engine (all-ones conv weights,
non-negative values) and see which input pixels reach which outputs. MACs: a
direct count of multiply-accumulates. Solutions of --target: plug them back in.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnncli.engine import ConvParams, PoolParams, conv2d, pool2d
from cnncli.errors import HyperparameterError
from cnncli.shape.stack import Dims, evaluate_stack, make_layer, parse_layer_spec
from cnncli.shape.solve import solve_target

pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731
pads = st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                 st.tuples(*[st.integers(0, 3)] * 4), st.sampled_from(["valid", "same"]))


def _pad_text(pad) -> str:
    return pad if isinstance(pad, str) else (str(pad) if isinstance(pad, int) else ",".join(map(str, pad)))


def _pair_text(p) -> str:
    return f"{p[0]}x{p[1]}"


@st.composite
def layers(draw, kind=None, ceil=True):
    """A random layer as LAYER_SPEC text, with the engine params and kernel it stands for."""
    kind = kind or draw(st.sampled_from(["conv", "pool"]))
    f, s, d, pad = draw(pair(1, 4)), draw(pair(1, 3)), draw(pair(1, 2)), draw(pads)
    text = f"{kind}:f={_pair_text(f)},s={_pair_text(s)},d={_pair_text(d)},p={_pad_text(pad)}"
    if kind == "conv":
        return text, ConvParams(stride=s, pad=pad, dilation=d), f
    ceil_mode = draw(st.booleans()) if ceil else False
    mode = draw(st.sampled_from(["max", "average"]))
    text += f",mode={mode}" + (",ceil" if ceil_mode else "")
    return text, PoolParams(f=f, stride=s, pad=pad, dilation=d, mode=mode, ceil_mode=ceil_mode), f


def _engine(params, kernel, A, c_out=None, groups=1):
    """Forward through the engine; conv weights are all ones so that values only spread."""
    if isinstance(params, PoolParams):
        return pool2d(A, params)
    W = np.ones((kernel[0], kernel[1], A.shape[3] // groups, c_out or A.shape[3]))
    return conv2d(A, W, None, params)


@given(data=st.data(), hw=pair(1, 10), m=st.integers(1, 2), groups=st.sampled_from([1, 2, 3]),
       per_group=st.integers(1, 2), mult=st.integers(1, 2))
@settings(max_examples=60)
def test_conv_output_shape_matches_the_engine(data, hw, m, groups, per_group, mult):
    text, params, kernel = data.draw(layers("conv"))
    c_in, c_out = groups * per_group, groups * mult
    text += f",c={c_out},g={groups}"
    params = ConvParams(stride=params.stride, pad=params.pad, dilation=params.dilation, groups=groups)
    result = evaluate_stack([parse_layer_spec(text)], Dims(m, hw[0], hw[1], c_in))
    try:
        Z = _engine(params, kernel, np.zeros((m, hw[0], hw[1], c_in)), c_out, groups)
    except HyperparameterError:
        assert result.error is not None and "layer 1" in str(result.error)
        return
    assert result.error is None
    assert result.output.as_list() == list(Z.shape)


@given(data=st.data(), hw=pair(1, 10), c=st.integers(1, 3))
@settings(max_examples=60)
def test_pool_output_shape_matches_the_engine(data, hw, c):
    text, params, kernel = data.draw(layers("pool"))
    result = evaluate_stack([parse_layer_spec(text)], Dims(2, hw[0], hw[1], c))
    try:
        A = pool2d(np.zeros((2, hw[0], hw[1], c)), params)
    except HyperparameterError:
        assert result.error is not None
        return
    assert result.error is None
    assert result.output.as_list() == list(A.shape)


def _one_hots(h: int, w: int) -> np.ndarray:
    """(h*w, h, w, 1): image k is 1 at pixel k (row-major), 0 elsewhere."""
    return np.eye(h * w).reshape(h * w, h, w, 1)


def _influence(stack, hw):
    """reach[k, i, j]: does input pixel k change output (i, j)? None when the stack does not fit."""
    A = _one_hots(*hw)
    try:
        for params, kernel in stack:
            A = _engine(params, kernel, A)
    except HyperparameterError:
        return None
    return A[..., 0] > 0


@given(stack=st.lists(layers(), min_size=1, max_size=3), hw=pair(1, 12))
@settings(max_examples=60)
def test_receptive_field_against_one_hot_propagation(stack, hw):
    reach = _influence([(p, k) for _, p, k in stack], hw)
    result = evaluate_stack([parse_layer_spec(t) for t, _, _ in stack], Dims(1, hw[0], hw[1], 1))
    assert (reach is None) == (result.error is not None)
    if reach is None:
        return
    last = result.layers[-1]
    rows, cols = np.divmod(np.arange(hw[0] * hw[1]), hw[1])
    n_out = reach.shape[1:]
    for i, j in itertools.product(range(n_out[0]), range(n_out[1])):
        seen = reach[:, i, j]
        first = [last.start[a] - (last.rf[a] - 1) / 2 + (i, j)[a] * last.jump[a] for a in (0, 1)]
        box = [(first[a], first[a] + last.rf[a] - 1) for a in (0, 1)]
        # Every pixel that reaches the output lies in its receptive field ...
        assert np.all((rows[seen] >= box[0][0]) & (rows[seen] <= box[0][1]))
        assert np.all((cols[seen] >= box[1][0]) & (cols[seen] <= box[1][1]))
        # ... and a field that lies inside the input is reached at both ends exactly.
        if box[0][0] >= 0 and box[0][1] <= hw[0] - 1 and box[1][0] >= 0 and box[1][1] <= hw[1] - 1:
            assert seen.any()
            assert (rows[seen].min(), rows[seen].max()) == box[0]
            assert (cols[seen].min(), cols[seen].max()) == box[1]


@given(data=st.data(), hw=pair(1, 12))
@settings(max_examples=60)
def test_unread_input_and_covering_pad_against_one_hot_propagation(data, hw):
    text, params, kernel = data.draw(layers())
    reach = _influence([(params, kernel)], hw)
    assume(reach is not None)
    layer = evaluate_stack([parse_layer_spec(text)], Dims(1, hw[0], hw[1], 1)).layers[0]
    read = reach.any(axis=(1, 2)).reshape(hw)
    if not read.any():  # reading is per axis: some axis reads none of its rows/cols at all
        assert any(layer.unread[a] == hw[a] for a in (0, 1))
        return
    for axis in (0, 1):
        read_lines = read.any(axis=1 - axis)  # an input row (col) is read if any of its pixels is
        last_read = int(np.flatnonzero(read_lines).max()) if read_lines.any() else -1
        assert layer.trailing[axis] == hw[axis] - 1 - last_read
        assert layer.skipped[axis] == int((~read_lines[:last_read + 1]).sum())
        extra = layer.cover_pad[axis]
        if extra == 0:  # nothing to cover, or no trailing padding can (a dilation stepping over the row)
            assert layer.trailing[axis] == 0 or all(
                not _reads_last(params, kernel, hw, axis, layer.pads, more) for more in range(1, 12))
            continue
        # The suggested extra padding at the bottom/right reads the last row; one less does not.
        assert _reads_last(params, kernel, hw, axis, layer.pads, extra)
        assert not _reads_last(params, kernel, hw, axis, layer.pads, extra - 1)


def _reads_last(params, kernel, hw, axis, pads, more) -> bool:
    """Does the layer, with ``more`` padding at the bottom (axis 0) or right (axis 1), read the last row/col?"""
    t, b, l, r = pads
    grown = (t, b + more, l, r) if axis == 0 else (t, b, l, r + more)
    reach = _influence([(params.__class__(**{**params.__dict__, "pad": grown}), kernel)], hw)
    if reach is None:  # pooling refuses a window entirely in padding: that padding reads nothing new
        return False
    return bool(reach.any(axis=(1, 2)).reshape(hw).any(axis=1 - axis)[-1])


def _count_macs(out_hw, kernel, c_in, c_out, groups, m):
    """Count multiply-accumulates one by one: each output value, each tap, each channel of its group."""
    count = 0
    for _ in range(m * out_hw[0] * out_hw[1]):
        for _co in range(c_out):
            for _ki, _kj in itertools.product(range(kernel[0]), range(kernel[1])):
                count += c_in // groups
    return count


@given(hw=pair(2, 8), f=pair(1, 3), groups=st.sampled_from([1, 2]), per_group=st.integers(1, 3),
       mult=st.integers(1, 3), m=st.integers(1, 2), pad=st.sampled_from(["valid", "same", 1]))
@settings(max_examples=30)
def test_params_and_macs_against_direct_counts(hw, f, groups, per_group, mult, m, pad):
    c_in, c_out = groups * per_group, groups * mult
    assume(min(hw) >= max(f))
    spec = make_layer("conv", f=f, pad=pad, filters=c_out, groups=groups)
    layer = evaluate_stack([spec], Dims(m, hw[0], hw[1], c_in)).layers[0]
    W = np.ones((f[0], f[1], c_in // groups, c_out))
    Z = conv2d(np.ones((m, hw[0], hw[1], c_in)), W, np.ones(c_out), ConvParams(pad=pad, groups=groups))
    assert layer.params == W.size + c_out  # what the engine accepted, plus one bias per filter
    assert layer.macs == _count_macs(Z.shape[1:3], f, c_in, c_out, groups, m)
    assert layer.flops == 2 * layer.macs
    assert layer.memory(4) == Z.size * 4 and layer.memory(8) == Z.nbytes
    if pad == "valid":  # no tap lands in padding: ones * ones summed over all outputs counts every MAC
        assert (Z - 1).sum() == layer.macs


def test_signs_stack_ends_at_2x2x16_like_the_engine():
    text = "conv:f=4,s=1,p=same,c=8 pool:f=8,s=8 conv:f=2,s=1,p=same,c=16 pool:f=4,s=4".split()
    result = evaluate_stack([parse_layer_spec(t) for t in text], Dims(1, 64, 64, 3, rank=3))
    A = np.zeros((1, 64, 64, 3))
    W1, W2 = np.zeros((4, 4, 3, 8)), np.zeros((2, 2, 8, 16))
    A = pool2d(conv2d(A, W1, None, ConvParams(pad="same")), PoolParams(f=8, stride=8))
    A = pool2d(conv2d(A, W2, None, ConvParams(pad="same")), PoolParams(f=4, stride=4))
    assert A.shape == (1, 2, 2, 16)
    assert result.output.as_list() == [2, 2, 16]
    assert [r.output.as_list() for r in result.layers] == [[64, 64, 8], [8, 8, 8], [8, 8, 16], [2, 2, 16]]
    assert result.params == W1.size + 8 + W2.size + 16


@given(n=st.integers(1, 16), f=st.integers(1, 4), d=st.integers(1, 2), target=st.integers(1, 8),
       kind=st.sampled_from(["conv", "pool"]), stride=st.one_of(st.none(), st.integers(1, 4)))
@settings(max_examples=40)
def test_target_solutions_reach_the_target_in_the_engine_and_miss_none(n, f, d, target, kind, stride):
    spec = make_layer(kind, f=f, dilation=d, stride=stride)
    result = solve_target(spec, Dims(1, n, n, 1, rank=2), target, stride_fixed=stride is not None)
    eff = d * (f - 1) + 1

    def engine_out(s, p):
        """Output size, or None when the engine refuses or some window reads only padding."""
        params = ConvParams(stride=s, pad=p, dilation=d) if kind == "conv" else PoolParams(f=f, stride=s, pad=p,
                                                                                          dilation=d)
        reach = _influence([(params, (f, f))], (n, n))
        return None if reach is None or not reach.any(axis=0).all() else reach.shape[1:3]

    for sol in result.solutions:
        assert engine_out(sol.stride, sol.pads) == (target, target) == sol.output
    totals = [sum(s.pads) for s in result.solutions]
    assert totals == sorted(totals)
    # Brute force over the same search space: every stride (or the given one), every pad below the window.
    strides = [stride] if stride is not None else range(1, eff + 1)
    wanted = {(s, b, a) for s in strides for b, a in itertools.product(range(eff), repeat=2)
              if engine_out(s, (b, a, b, a)) == (target, target)}
    if stride is not None:
        assert {(s.stride[0], s.pads[0], s.pads[1]) for s in result.solutions} == wanted
        assert all(s.pads[:2] == s.pads[2:] for s in result.solutions)
    else:  # one smallest (and smallest symmetric) pad per stride that has any
        assert {s.stride[0] for s in result.solutions} == {s for s, _, _ in wanted}
        for s in {s for s, _, _ in wanted}:
            best = min(b + a for t, b, a in wanted if t == s)
            assert min(sum(x.pads[:2]) for x in result.solutions if x.stride[0] == s) == best


def test_target_for_a_non_square_input_pairs_the_axes():
    spec = make_layer("conv", f=3, stride=2)
    result = solve_target(spec, Dims(1, 28, 20, 1, rank=2), "14x10", stride_fixed=True)
    assert result.solutions
    for sol in result.solutions:
        Z = conv2d(np.zeros((1, 28, 20, 1)), np.zeros((3, 3, 1, 1)), None, ConvParams(stride=2, pad=sol.pads))
        assert Z.shape[1:3] == (14, 10)


def test_target_rejects_a_bad_size():
    with pytest.raises(HyperparameterError, match="--target"):
        solve_target(make_layer("conv", f=3), Dims(1, 28, 28, 1), "0", stride_fixed=False)


def test_pool_refuses_a_middle_window_that_reads_only_padding():
    # 1 row, f=2 dilated by 2, pad 2, stride 1: the middle window reads rows -1 and 1, both padding;
    # its max would be -inf and its average over no input undefined.
    with pytest.raises(HyperparameterError, match="pooling window only padding: use less"):
        pool2d(np.ones((1, 1, 1, 1)), PoolParams(f=2, stride=1, pad=2, dilation=2))
    assert solve_target(make_layer("pool", f=2, dilation=2, stride=1), Dims(1, 1, 1, 1), 3, True).solutions == []
