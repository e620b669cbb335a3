"""The shape reports' ``to_dict()`` is the JSON document: checked here without the CLI, by hand."""

from __future__ import annotations

import json

import pytest

from cnncli.errors import HyperparameterError
from cnncli.shape.solve import solve_target
from cnncli.shape.stack import Dims, evaluate_stack, make_layer, parse_layer_spec
from cnncli.shape.table import FORMULA, size_table_report


def test_stack_to_dict_by_hand():
    # 6x6x2, conv 3x3 c=4 pad 1 stride 2: floor((6+2-3)/2)+1 = 3; windows start at rows -1, 1, 3 and read
    # rows -1..5, so none unread. Then a 2x2 max pool of 3x3: 1 window, row 2 and col 2 unread (+1 pad covers).
    specs = [parse_layer_spec("conv:f=3,s=2,p=1,c=4"), parse_layer_spec("pool:f=2")]
    doc = evaluate_stack(specs, Dims(1, 6, 6, 2, rank=3)).to_dict()
    conv, pool = doc["layers"]
    assert conv == {
        "index": 1, "kind": "conv", "spec": "conv:f=3,s=2,p=1,c=4", "input": [6, 6, 2], "output": [3, 3, 4],
        "f": [3, 3], "stride": [2, 2], "dilation": [1, 1], "pad": [1, 1, 1, 1], "pads": [1, 1, 1, 1],
        "filters": 4, "groups": 1, "receptive_field": [3, 3], "jump": [2, 2], "start": [0.0, 0.0],
        "unread": {"trailing": [0, 0], "skipped": [0, 0], "cover_pad": [0, 0]},
        "params": 3 * 3 * 2 * 4 + 4, "macs": 3 * 3 * 4 * (3 * 3 * 2), "flops": 2 * 3 * 3 * 4 * 18,
        "memory_bytes": {"float32": 36 * 4, "float64": 36 * 8}, "notes": [],
    }
    assert pool["kind"] == "pool" and pool["mode"] == "max" and pool["ceil_mode"] is False
    assert pool["pad"] == "valid" and pool["output"] == [1, 1, 4]
    assert pool["unread"] == {"trailing": [1, 1], "skipped": [0, 0], "cover_pad": [1, 1]}
    # Field: 3 + (2-1)*2 = 5 rows, jump 4; centre 0 + (0.5 - 0)*2 = 1.0.
    assert pool["receptive_field"] == [5, 5] and pool["jump"] == [4, 4] and pool["start"] == [1.0, 1.0]
    assert doc["output"] == [1, 1, 4] and doc["error"] is None and doc["layout"] == "nhwc"
    assert doc["totals"] == {"params": 76, "macs": 648, "flops": 1296,
                             "memory_bytes": {"float32": (36 + 4) * 4, "float64": (36 + 4) * 8},
                             "receptive_field": [5, 5], "jump": [4, 4]}
    json.dumps(doc, allow_nan=False)  # a plain JSON document


def test_stack_to_dict_of_a_stack_that_stops():
    specs = [parse_layer_spec("conv:f=3"), parse_layer_spec("conv:f=5")]
    doc = evaluate_stack(specs, Dims(1, 5, 5, 1, rank=2)).to_dict()
    assert len(doc["layers"]) == 1 and doc["output"] is None and doc["totals"] is None
    assert doc["error"] == "layer 2 (conv:f=5) on 3x3: no 5x5 window fits a 3x3 input padded by 0"


def test_size_table_report_columns_rows_and_formulas():
    table = size_table_report([make_layer("conv", f=3, stride=2, pad=1)])
    assert list(table.columns) == ["pad 1", "valid", "same"] and table.single
    assert [s.pad for s in table.columns["valid"]] == [(0, 0, 0, 0)]
    assert table.formulas() == [
        FORMULA,
        "pad 1: n_out = floor((n_in + 2 - 3) / 2) + 1",
        "valid: n_out = floor((n_in - 3) / 2) + 1",
        "same: n_out = ceil(n_in / 2); pad total = max((n_out-1)*2 + 3 - n_in, 0), before = total // 2, "
        "the extra pixel after (bottom/right)",
    ]
    doc = table.to_dict()
    assert set(doc) == {"formula", "columns", "layers", "rows"} and doc["layers"] is None
    row = next(r for r in doc["rows"] if r["input"] == 8)
    # 8 rows: pad 1 -> floor(7/2)+1 = 4 windows reading -1..7; valid -> 3 windows reading 0..6, row 7 unread;
    # same -> ceil(8/2) = 4, total (4-1)*2+3-8 = 1: pads 0, 1.
    assert row == {"input": 8,
                   "pad 1": {"output": [4, 4], "pads": [1, 1, 1, 1], "unread": [0, 0]},
                   "valid": {"output": [3, 3], "pads": [0, 0, 0, 0], "unread": [1, 1]},
                   "same": {"output": [4, 4], "pads": [0, 1, 0, 1], "unread": [0, 0]}}


def test_size_table_report_of_a_stack():
    doc = size_table_report([parse_layer_spec("conv:f=3"), parse_layer_spec("pool:f=2,s=2")]).to_dict()
    assert doc["columns"] == ["stack"] and doc["layers"] == ["conv:f=3", "pool:f=2,s=2"]
    assert doc["formula"][1] == "stack: conv f=3 s=1 p=valid | pool f=2 s=2 p=valid max"
    first = doc["rows"][0]
    assert first == {"input": 4, "stack": {"output": [1, 1], "unread_layers": []}}  # 4 -> 2 -> 1
    five = next(r for r in doc["rows"] if r["input"] == 5)
    assert five["stack"] == {"output": [1, 1], "unread_layers": [2]}  # 5 -> 3 -> 1, the pool drops row 2


def test_size_table_report_refuses_layers_that_fit_nothing(monkeypatch):
    from cnncli.shape import table

    # a window above the table's sizes starts the table where it fits (test_stack); above the search's
    # limit (10**1000, here 1000) nothing is found
    monkeypatch.setattr(table, "_SEARCH_LIMIT", 1000)
    with pytest.raises(HyperparameterError, match="fit no input size up to 10"):
        size_table_report([make_layer("conv", f=5000), make_layer("pool", f=2)])
    assert size_table_report([make_layer("conv", f=600), make_layer("pool", f=2)]).rows[0].n_in == 601


def test_target_to_dict():
    doc = solve_target(make_layer("conv", f=3, stride=2), Dims(1, 6, 6, 1, rank=1), "3", stride_fixed=True).to_dict()
    assert {k: doc[k] for k in ("input", "target", "kind", "f", "dilation", "stride_fixed")} == {
        "input": [6, 6], "target": [3, 3], "kind": "conv", "f": [3, 3], "dilation": [1, 1], "stride_fixed": True}
    # floor((6 + T - 3)/2) + 1 = 3 needs T in {1, 2}: (0,1), (1,0), then (1,1), (0,2), (2,0).
    assert [s["pads"][:2] for s in doc["solutions"]][:5] == [[0, 1], [1, 0], [1, 1], [0, 2], [2, 0]]
    assert doc["solutions"][0] == {"stride": [2, 2], "pads": [0, 1, 0, 1], "output": [3, 3], "unread": [0, 0]}
