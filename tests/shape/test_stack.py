"""The shape library without a terminal: DIMS and LAYER_SPEC parsing, stacks, the size table."""

from __future__ import annotations

import math

import pytest

from cnncli.errors import HyperparameterError, ShapeError
from cnncli.shape.stack import Dims, dims_from_shape, evaluate_stack, make_layer, parse_dims, parse_layer_spec
from cnncli.shape.table import COMMON_SIZES, size_table, table_sizes


@pytest.mark.parametrize("text, dims, as_list", [
    ("28", Dims(1, 28, 28, 1, rank=1), [28, 28]),
    ("28x20", Dims(1, 28, 20, 1, rank=2), [28, 20]),
    ("64x64x3", Dims(1, 64, 64, 3, rank=3), [64, 64, 3]),
    ("8x64x32x3", Dims(8, 64, 32, 3, rank=4), [8, 64, 32, 3]),
    (" 5 X 6 ", Dims(1, 5, 6, 1, rank=2), [5, 6]),
])
def test_parse_dims(text, dims, as_list):
    assert parse_dims(text) == dims
    assert parse_dims(text).as_list() == as_list


@pytest.mark.parametrize("text", ["", "0", "28x", "x28", "2x3x4x5x6", "28.5", "-3", "ax3", "28x0x3"])
def test_parse_dims_refuses(text):
    with pytest.raises(ShapeError, match="H, HxW, HxWxC or MxHxWxC"):
        parse_dims(text)


def test_dims_from_array_shapes_by_layout():
    assert dims_from_shape((2, 32, 30, 3)) == Dims(2, 32, 30, 3, rank=4)
    assert dims_from_shape((2, 3, 32, 30), "nchw") == Dims(2, 32, 30, 3, rank=4, layout="nchw")
    assert dims_from_shape((32, 30, 3)) == Dims(1, 32, 30, 3, rank=3)
    assert dims_from_shape((3, 32, 30), "nchw").as_list() == [3, 32, 30]
    assert dims_from_shape((5, 7)) == Dims(1, 5, 7, 1, rank=2)
    for bad in [(5,), (1, 2, 3, 4, 5)]:
        with pytest.raises(ShapeError, match=r"expected \(m, H, W, C\), \(H, W, C\) or \(H, W\)$"):
            dims_from_shape(bad)
    with pytest.raises(ShapeError, match=r"^--like is \(0, 3, 3\): an axis is empty$"):
        dims_from_shape((0, 3, 3))


def test_layer_spec_keys_and_defaults():
    spec = parse_layer_spec("conv:f=4,s=1,p=same,c=8")
    assert (spec.kind, spec.f, spec.stride, spec.pad, spec.filters, spec.groups) == ("conv", (4, 4), (1, 1),
                                                                                      "same", 8, 1)
    long = parse_layer_spec("conv:f=3x2,stride=2,pad=1,dilation=2,filters=6,groups=3")
    assert (long.f, long.stride, long.pad, long.dilation, long.filters, long.groups) == (
        (3, 2), (2, 2), (1, 1, 1, 1), (2, 2), 6, 3)
    pool = parse_layer_spec("pool:f=3")
    assert (pool.stride, pool.mode, pool.ceil_mode, pool.pad) == ((3, 3), "max", False, (0, 0, 0, 0))
    assert parse_layer_spec("POOL:f=2,mode=avg,ceil").mode == "average"
    assert parse_layer_spec("pool:f=2,ceil").ceil_mode is True
    assert parse_layer_spec("pool:f=2,ceil=0").ceil_mode is False
    assert parse_layer_spec("conv:f=3").stride == (1, 1)


def test_layer_spec_pad_forms():
    # A bare item continues the previous value, so commas inside pads work.
    assert parse_layer_spec("conv:f=3,p=0,1,0,1,c=4").pad == (0, 1, 0, 1)
    assert parse_layer_spec("conv:f=3,p=1,2").pad == (1, 1, 2, 2)
    assert parse_layer_spec("conv:f=3,p=1x2").pad == (1, 1, 2, 2)
    assert parse_layer_spec("conv:f=3,p=valid").pad == (0, 0, 0, 0)
    assert parse_layer_spec("conv:f=3,d=2,1").dilation == (2, 1)


@pytest.mark.parametrize("text, words", [
    ("blah:f=3", ["must start with a kind", "conv, pool, tconv", "blah:f=3"]),
    ("dense:f=3", ["fc takes no 'f'", "keys for fc: c, bias", "dense:f=3"]),
    ("bn:c=3", ["bn takes no 'c'", "none"]),
    ("fc", ["needs its number of outputs c"]),
    ("tconv:f=3,p=same", ["tconv takes no p=same", "use p=1,op=0", "tconv:f=3,p=same"]),
    ("tconv:f=3,s=2,op=2", ["op=2 must be < stride 2 or dilation 1"]),
    ("conv", ["window size f"]),
    ("conv:s=2", ["window size f", "conv:s=2"]),
    ("conv:f=3,k=2", ["unknown key 'k' (f s p d c g mode ceil op bias)"]),
    ("conv:f=3,f=2", ["'f' given twice"]),
    ("conv:f=", ["'f' has no value"]),
    ("conv:f=0", ["f must be >= 1", "conv:f=0"]),
    ("conv:f=3,s=0", ["stride must be >= 1"]),
    ("conv:f=3,p=-1", ["pad must be >= 0"]),
    ("conv:f=3,p=huge", ["pad 'huge': expected an int"]),
    ("conv:f=3,d=x", ["dilation must be an integer"]),
    ("conv:f=3,c=0", ["filters must be >= 1"]),
    ("conv:f=3,mode=max", ["mode applies to pool layers only"]),
    ("conv:f=3,ceil", ["ceil is for pool layers only, not conv in 'conv:f=3,ceil'"]),  # 'ceil-mode applies' was 81
    ("pool:f=2,c=8", ["filters applies to conv layers only"]),
    ("pool:f=2,mode=median", ["mode 'median': give max or average in 'pool:f=2,mode=median'"]),  # was 104
    ("pool:f=2,ceil=maybe", ["ceil must be true or false"]),
    ("conv:,f=3", ["expected key=value"]),
])
def test_layer_spec_errors_name_the_problem(text, words):
    with pytest.raises(HyperparameterError) as info:
        parse_layer_spec(text)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_stack_stops_at_the_layer_that_does_not_fit():
    specs = [parse_layer_spec(t) for t in ("conv:f=3,c=4", "pool:f=2", "conv:f=5", "pool:f=2")]
    result = evaluate_stack(specs, Dims(1, 8, 8, 3, rank=3))
    assert [r.output.as_list() for r in result.layers] == [[6, 6, 4], [3, 3, 4]]
    assert result.output is None
    # 88 columns with the input's dims, which the window's words name again
    assert str(result.error) == "layer 3 (conv:f=5): no 5x5 window fits a 3x3 input padded by 0"
    assert result.error.whole == "layer 3 (conv:f=5) on 3x3x4: no 5x5 window fits a 3x3 input padded by 0"


def test_stack_channel_and_group_errors():
    result = evaluate_stack([parse_layer_spec("conv:f=1,g=2,c=4")], Dims(1, 4, 4, 3, rank=3))
    assert str(result.error) == "layer 1 (conv:f=1,g=2,c=4) on 4x4x3: groups=2 must divide C_in=3"
    assert "groups=2 must divide the input channels n_C_prev=3" in result.error.whole
    # Depthwise: groups == channels, filters default to the input's channels.
    depthwise = evaluate_stack([parse_layer_spec("conv:f=3,g=8")], Dims(1, 5, 5, 8, rank=3)).layers[0]
    assert depthwise.output.as_list() == [3, 3, 8]
    assert depthwise.params == 3 * 3 * 1 * 8 + 8


def test_same_pad_with_stride_notes_pytorch_and_tensorflow():
    layer = evaluate_stack([make_layer("conv", f=3, stride=2, pad="same")], Dims(1, 28, 28, 1)).layers[0]
    assert layer.pads == (0, 1, 0, 1)  # TensorFlow: total (14-1)*2+3-28 = 1, the extra pixel after
    assert len(layer.notes) == 1 and "PyTorch refuses" in layer.notes[0] and "bottom/right" in layer.notes[0]
    stride_one = evaluate_stack([make_layer("conv", f=3, pad="same")], Dims(1, 28, 28, 1)).layers[0]
    assert stride_one.notes == ()


def test_receptive_field_of_a_known_stack_by_hand():
    # Three 3x3 convs (stride 1) see 7x7; a 2x2/2 pool then doubles the jump and adds 1*1 to the field.
    specs = [parse_layer_spec(t) for t in ("conv:f=3", "conv:f=3", "conv:f=3", "pool:f=2", "conv:f=3")]
    layers = evaluate_stack(specs, Dims(1, 32, 32, 1)).layers
    assert [r.rf[0] for r in layers] == [3, 5, 7, 8, 12]
    assert [r.jump[0] for r in layers] == [1, 1, 1, 2, 2]
    assert [r.start[0] for r in layers] == [1, 2, 3, 3.5, 5.5]


def test_receptive_field_edges_weight_shape_and_flops_by_hand():
    # conv f=3 pad 1 then pool 2x2: output (0,0) of the conv sees rows -1..1 (one padded row);
    # the pool's (0,0) covers conv outputs 0..1, i.e. input rows -1..2 (field 4).
    specs = [parse_layer_spec(t) for t in ("conv:f=3,p=1,g=2,c=4", "pool:f=2")]
    result = evaluate_stack(specs, Dims(2, 6, 5, 2, rank=4))
    conv, pool = result.layers
    assert conv.rf_edges == ((-1, 1), (-1, 1)) and pool.rf_edges == ((-1, 2), (-1, 2))
    assert conv.weight_shape == (3, 3, 1, 4) and pool.weight_shape is None
    # MACs: every output value (2*6*5*4) takes 3*3*1 multiply-accumulates; pooling counts none.
    assert result.flops == conv.flops == 2 * (2 * 6 * 5 * 4) * 9


def test_table_sizes_cover_f_to_32_and_the_common_sizes():
    sizes = table_sizes(3)
    assert sizes[:30] == list(range(3, 33))
    assert set(COMMON_SIZES) <= set(sizes) and sizes == sorted(set(sizes))
    assert table_sizes(40) == [n for n in COMMON_SIZES if n >= 40]


def test_size_table_valid_and_same_against_the_closed_forms():
    columns = {w: [make_layer("conv", f=3, stride=2, pad=w)] for w in ("valid", "same")}
    rows = size_table(columns)
    assert [r.n_in for r in rows] == table_sizes(3)
    for row in rows:
        n = row.n_in
        valid, same = row.cells["valid"].layers[0], row.cells["same"].layers[0]
        assert valid.output.h == (n - 3) // 2 + 1
        assert same.output.h == math.ceil(n / 2)
        # Windows of 3 every 2 rows read rows 0..2*(out-1)+2: an even n leaves its last row unread.
        assert valid.unread == ((n + 1) % 2, (n + 1) % 2)
        assert same.unread == (0, 0)


def test_size_table_of_a_stack_skips_sizes_that_do_not_fit():
    rows = size_table({"output": [parse_layer_spec("conv:f=3"), parse_layer_spec("pool:f=2")]})
    assert rows[0].n_in == 4  # 3 -> 1 cannot be pooled 2x2
    assert all(r.cells["output"].output.h == (r.n_in - 2) // 2 for r in rows)


def test_groups_must_divide_the_filters_before_any_input_is_known():
    with pytest.raises(HyperparameterError, match=r"^groups=3 must divide filters=4 "
                                                  r"in layer spec 'conv:f=3,g=3,c=4'$"):
        parse_layer_spec("conv:f=3,g=3,c=4")
    assert make_layer("conv", f=3, groups=3, filters=6).groups == 3


def test_windows_larger_than_every_table_size_start_the_table_where_they_fit():
    """Review: `shape --f 600` (a valid window) failed with "the layers fit no input size up to 512". Each
    column's table now starts at the smallest input it fits: valid n_out = n - 599 from 600, same from 1."""
    from cnncli.shape.table import size_table_report

    table = size_table_report([make_layer("conv", f=600)])
    by_size = {r.n_in: r.cells for r in table.rows}
    assert set(range(1, 9)) | set(range(600, 608)) | {1200, 2400} <= set(by_size)
    assert by_size[599 if 599 in by_size else 512]["valid"] is None
    for n in (600, 607, 1200, 2400):
        assert by_size[n]["valid"].output.h == n - 599
    assert all(cells["same"].output.h == n for n, cells in by_size.items())
    stack = size_table_report([parse_layer_spec("conv:f=600"), parse_layer_spec("pool:f=2")])
    assert [r.n_in for r in stack.rows][:3] == [601, 602, 603]  # 600 -> 1 cannot be pooled 2x2
    assert [r.cells["stack"].output.h for r in stack.rows][:3] == [1, 1, 2]


@pytest.mark.parametrize("specs", [
    ["conv:f=700"], ["conv:f=300,d=3"], ["conv:f=33,s=5", "pool:f=40"], ["pool:f=9,s=9", "conv:f=80,s=2", "pool:f=3"],
])
def test_smallest_fitting_is_the_first_size_a_walk_would_find(specs):
    from cnncli.shape.table import smallest_fitting

    stack = [parse_layer_spec(s) for s in specs]
    walk = next(n for n in range(1, 100_000) if evaluate_stack(stack, Dims(1, n, n, 1, rank=2)).error is None)
    assert smallest_fitting({"stack": stack}) == walk
