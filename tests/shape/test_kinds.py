"""The layer kinds beyond conv and pool, and PyTorch's NCHW order, by hand-derived values."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state
from cnncli.errors import HyperparameterError
from cnncli.shape.solve import solve_target, tconv_axis
from cnncli.shape.spec import layout_note
from cnncli.shape.stack import Dims, evaluate_stack, make_layer, parse_dims, parse_layer_spec

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


def stack(dims, *texts):
    return evaluate_stack([parse_layer_spec(t) for t in texts], dims)


def test_tconv_size_params_and_macs_by_hand():
    # 4x4x512 -> (4-1)*2 - 1 - 1 + (4-1) + 0 + 1 = 8; weights 4*4*512*256, no bias;
    # MACs: each of the 4*4 input pixels times every weight, for 2 examples.
    layer = stack(Dims(2, 4, 4, 512), "tconv:f=4,s=2,p=1,c=256,bias=0").layers[0]
    assert layer.output == Dims(2, 8, 8, 256)
    assert layer.params == 4 * 4 * 512 * 256
    assert layer.macs == 2 * 4 * 4 * 4 * 4 * 512 * 256
    assert layer.rf is None and layer.trailing is None
    d = layer.to_dict()
    assert d["output_padding"] == [0, 0] and d["bias"] is False and d["receptive_field"] is None
    assert d["unread"] is None and d["pads"] == [1, 1, 1, 1]


def test_tconv_output_padding_dilation_groups_by_hand():
    # h: (5-1)*1 - 2 - 2 + 3*(3-1) + 2 + 1 = 9; w: (7-1)*2 - 0 - 0 + 1*(2-1) + 1 + 1 = 15.
    layer = stack(Dims(1, 5, 7, 8, rank=3), "tconv:f=3x2,s=1x2,p=2,2,0,0,op=2x1,d=3x1,c=6,g=2").layers[0]
    assert (layer.output.h, layer.output.w, layer.output.c) == (9, 15, 6)
    assert layer.params == 3 * 2 * (8 // 2) * 6 + 6  # PyTorch: weight (8, 3, 3, 2) + bias 6
    assert layer.weight_shape == (3, 2, 3, 8)


@pytest.mark.parametrize("text, words", [
    # 80 columns hold the fix, not the explanation (its whole words, 145 columns, are the first wording)
    ("tconv:f=4,s=2,p=same", ["tconv takes no p=same", "use p=1,op=0"]),
    ("tconv:f=3,s=2,p=same", ["use p=1,op=1"]),  # 2p - op = 3 - 2 = 1
    ("tconv:f=3,s=1,op=1", ["op=1 must be < stride 1 or dilation 1", "op=1"]),
])
def test_tconv_refusals_explain(text, words):
    with pytest.raises(HyperparameterError) as info:
        parse_layer_spec(text)
    for word in words:
        assert word in str(info.value)
    parse_layer_spec("tconv:f=3,s=1,d=2,op=1")  # below the dilation: allowed, as in PyTorch


def test_tconv_that_crops_everything_is_refused():
    result = stack(Dims(1, 2, 2, 1, rank=2), "tconv:f=3,p=3")
    assert "pad 3 leaves no output" in str(result.error)  # (2-1)*1 - 6 + 2 + 1 = -2
    assert "has no output (-2x-2)" in result.error.whole  # the whole words, as the JSON document says them


def test_bn_gap_flatten_fc_and_no_ops():
    result = stack(Dims(4, 6, 5, 3), "bn", "relu", "gap", "flatten", "dropout", "fc:c=10", "act", "linear:c=2,bias=0")
    bn, relu, gap, flat, drop, fc, act, fc2 = result.layers
    assert bn.output == Dims(4, 6, 5, 3) and bn.params == 2 * 3 and bn.macs == 0
    assert gap.output.as_list() == [4, 1, 1, 3] and gap.params == 0
    # The pooled field is the whole 6x5 map; jump stays 1, the centre moves to (2.5, 2).
    assert gap.rf == (6, 5) and gap.start == (2.5, 2.0)
    assert flat.output.as_list() == [4, 3] and flat.output.flat and flat.notes == ()  # 1x1xC: order is moot
    assert fc.output.as_list() == [4, 10] and fc.params == 3 * 10 + 10 and fc.macs == 4 * 3 * 10
    assert fc2.params == 10 * 2 and fc2.macs == 4 * 10 * 2
    assert [r.params for r in (relu, drop, act)] == [0, 0, 0]
    assert result.output.as_list() == [4, 2] and result.params == 6 + 40 + 20
    assert [r.kind for r in (r.spec for r in result.layers)] == ["bn", "relu", "gap", "flatten", "dropout", "fc",
                                                                 "act", "fc"]


def test_fc_on_a_map_flattens_with_notes_and_the_order_note_is_said_once():
    result = stack(Dims(1, 5, 5, 16, rank=3), "flatten", "fc:c=8")
    assert result.layers[0].output.as_list() == [400] and "PyTorch flattens C,H,W" in result.layers[0].notes[0]
    assert result.layers[1].notes == ()
    direct = stack(Dims(1, 5, 5, 16, rank=3), "fc:c=8").layers[0]
    assert direct.notes[0] == "fc flattens its 5x5x16 input into 400 features first"
    assert direct.params == 400 * 8 + 8
    # Every output of the fc sees the whole 5x5 map.
    assert direct.rf == (5, 5)


def test_window_layers_refuse_flat_input():
    result = stack(Dims(1, 4, 4, 2, rank=3), "flatten", "conv:f=1")
    assert "needs a feature map" in str(result.error) and "layer 2" in str(result.error)


def test_nchw_input_is_read_and_reported_in_its_order():
    dims = parse_dims("1x3x224x224", layout="nchw")
    assert (dims.m, dims.c, dims.h, dims.w) == (1, 3, 224, 224)
    layer = stack(dims, "conv:f=3,s=2,c=8").layers[0]
    assert layer.output.as_list() == [1, 8, 111, 111]  # floor((224-3)/2)+1 = 111
    assert parse_dims("3x32x30", layout="nchw").as_list() == [3, 32, 30]
    doc = json.loads(runner.invoke(app, ["shape", "--input", "1x3x224x224", "--layout", "nchw", "--f", "3",
                                         "--json"]).stdout)
    assert doc["layout"] == "nchw" and doc["output"] == [1, 3, 222, 222] and "notes" not in doc


def test_a_4d_input_that_looks_like_nchw_gets_a_note():
    assert "add --layout nchw" in layout_note(parse_dims("1x3x224x224"), layout_given=False)
    assert layout_note(parse_dims("1x3x224x224"), layout_given=True) is None
    assert layout_note(parse_dims("8x64x64x3"), layout_given=False) is None
    result = runner.invoke(app, ["shape", "--input", "1x3x224x224", "--f", "3"])
    assert result.exit_code == 0 and "note: input 1x3x224x224 is read as NHWC" in result.stdout
    doc = json.loads(runner.invoke(app, ["shape", "--input", "1x3x224x224", "--f", "3", "--json"]).stdout)
    assert doc["output"] == [1, 1, 222, 224] and "add --layout nchw" in doc["notes"][0]


def test_tconv_target_lists_stride_padding_output_padding():
    # 4 -> 8 with f=4: stride 2 needs 10 - 2p + op = 8 (p=1, op=0); stride 3 needs 13 - 2p + op = 8 (p=3, op=1).
    result = solve_target(make_layer("tconv", f=4), Dims(1, 4, 4, 1, rank=1), 8, stride_fixed=False)
    # Each axis takes its own stride: the pairs mixing them rank between (total padding 1 + 3 on the axes).
    assert [(s.stride, s.pads, s.output_padding) for s in result.solutions] == [
        ((2, 2), (1, 1, 1, 1), (0, 0)), ((2, 3), (1, 1, 3, 3), (0, 1)), ((3, 2), (3, 3, 1, 1), (1, 0)),
        ((3, 3), (3, 3, 3, 3), (1, 1))]
    assert tconv_axis(4, 4, 2, 1, 9) == [(1, 1)]
    doc = json.loads(runner.invoke(app, ["shape", "--input", "4", "tconv:f=4,s=2", "--target", "9",
                                         "--json"]).stdout)
    assert doc["stride_fixed"] is True
    assert doc["solutions"] == [{"stride": [2, 2], "pads": [1, 1, 1, 1], "output": [9, 9],
                                 "output_padding": [1, 1]}]
    none = runner.invoke(app, ["shape", "--input", "100", "tconv:f=3", "--target", "250"])
    # Stride 2 reaches at most 198 + 2 + 1 + 1 = 202, stride 3 at least 297 + 2 + 1 - 4 = 296; each axis
    # its own stride: 296x296 (46 + 46 away), then 202x296 (48 + 46) before 202x202 (96).
    assert none.exit_code == 1 and "nearest sizes it reaches: 296x296 or 202x296" in none.stdout


def test_size_table_of_a_tconv():
    doc = json.loads(runner.invoke(app, ["shape", "--layer", "tconv", "--f", "4", "--stride", "2", "--pad", "1",
                                         "--json"]).stdout)
    assert doc["columns"] == ["pad 1"]
    assert all(row["pad 1"]["output"] == [2 * row["input"]] * 2 for row in doc["rows"])  # (n-1)*2 - 2 + 4


@pytest.mark.parametrize("args, words", [
    (["--input", "28", "--layer", "fc", "--f", "3"], ["--layer 'fc': expected conv, pool or tconv (or a LAYER_SPEC)"]),
    (["--input", "28", "conv:f=3", "conv:f=3", "--target", "5"], ["--target solves one"]),
    (["--input", "28", "tconv:f=3,op=1,s=2", "--target", "5"], ["drop op="]),
    (["--input", "28", "bn"], []),
])
def test_cli_forms(args, words):
    result = runner.invoke(app, ["shape", *args])
    assert result.exit_code == (2 if words else 0), result.stderr
    for word in words:
        assert word in result.stderr
