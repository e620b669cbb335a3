"""PassReport: the library builds forward/backward's JSON document; values from the loop oracle."""

import json
import math

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops, pool_forward_loops
from cnncli.io.writers import ResultWriter
from cnncli.passes import stream
from cnncli.passes.call import resolve_layer
from cnncli.passes.report import PassReport


def _stats(x):
    return {"min": pytest.approx(float(x.min()), rel=1e-12), "max": pytest.approx(float(x.max()), rel=1e-12),
            "mean": pytest.approx(float(x.mean()), rel=1e-9, abs=1e-12),
            "std": pytest.approx(float(x.std()), rel=1e-9, abs=1e-12), "nan_count": 0, "inf_count": 0}


def test_conv_forward_report_to_dict(tmp_path):
    rng = np.random.default_rng(0)
    A, W, b = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    for name, value in (("A", A), ("W", W), ("b", b)):
        np.save(tmp_path / f"{name}.npy", value)
    with resolve_layer(str(tmp_path / "A.npy"), weights=str(tmp_path / "W.npy"), bias=str(tmp_path / "b.npy"),
                       stride="2", pad="1") as call:
        results = stream.forward(call)
        report = PassReport.of("forward", call, results, seconds=0.123456)
    doc = report.to_dict()
    Z = conv_forward_loops(A, W, b, ConvParams(stride=2, pad=1))
    # floor((5 + 1 + 1 - 3) / 2) + 1 = 3 on both axes
    axis = {"n_in": 5, "f": 3, "stride": 2, "dilation": 1, "pad_before": 1, "pad_after": 1, "n_out": 3}
    assert doc["output_size"] == {"height": axis, "width": axis}
    assert doc["outputs"] == {"Z": {"shape": [2, 3, 3, 4], "dtype": "float64", **_stats(Z)}}
    assert doc["hyperparameters"] == {"layer": "conv", "layout": "nhwc", "f": [3, 3], "stride": [2, 2],
                                      "pad": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1}
    assert doc["inputs"]["W"] == {"source": str(tmp_path / "W.npy"), "shape": [3, 3, 3, 4], "dtype": "float64",
                                  "nan_count": 0, "inf_count": 0}
    assert (doc["command"], doc["layer"], doc["pad_spec"], doc["dtype"]) == ("forward", "conv", None, "float64")
    assert (doc["output_file"], doc["written"], doc["notes"], doc["seconds"]) == (None, [], [], 0.1235)
    assert list(doc) == ["command", "layer", "hyperparameters", "pad_spec", "output_size", "dtype", "inputs",
                         "outputs", "output_file", "written", "notes", "seconds"]
    json.dumps(doc)  # plain Python values only


def test_backward_report_names_what_was_written(tmp_path):
    rng = np.random.default_rng(1)
    A, W = rng.standard_normal((3, 4, 4, 2)), rng.standard_normal((2, 2, 2, 3))
    dZ = rng.standard_normal((3, 3, 3, 3))
    for name, value in (("A", A), ("W", W), ("dZ", dZ)):
        np.save(tmp_path / f"{name}.npy", value)
    out = str(tmp_path / "out.npy")
    with resolve_layer(str(tmp_path / "A.npy"), weights=str(tmp_path / "W.npy"), grad=str(tmp_path / "dZ.npy"),
                       stream=True) as call:
        writer = ResultWriter(out, main="dA_prev")
        with writer as sink:
            results = stream.backward(call, sink)
        report = PassReport.of("backward", call, results, writer=writer)
    dA, dW, db = conv_backward_loops(dZ, A, W, ConvParams())
    doc = report.to_dict()
    assert doc["output_file"] == out and doc["written"] == ["dA_prev"]  # a .npy holds the main result only
    assert doc["outputs"]["dA_prev"] == {"shape": [3, 4, 4, 2], "dtype": "float64", **_stats(dA)}
    assert doc["outputs"]["dW"] == {"shape": [2, 2, 2, 3], "dtype": "float64", **_stats(dW)}
    assert doc["outputs"]["db"] == {"shape": [3], "dtype": "float64", **_stats(np.asarray(db).reshape(-1))}
    assert "no bias given: b = 0" in doc["notes"]
    np.testing.assert_allclose(np.load(out), dA, rtol=1e-12, atol=1e-12)


def test_pool_report_same_padding_and_nan_statistics(tmp_path):
    A = np.full((1, 3, 3, 1), np.nan)
    np.save(tmp_path / "A.npy", A)
    with resolve_layer(str(tmp_path / "A.npy"), f="2", pad="same", stride="2") as call:
        report = PassReport.of("forward", call, stream.forward(call))
    doc = report.to_dict()
    # same: n_out = ceil(3 / 2) = 2; total pad = (2 - 1) * 2 + 2 - 3 = 1, before 0, after 1
    axis = {"n_in": 3, "f": 2, "stride": 2, "dilation": 1, "pad_before": 0, "pad_after": 1, "n_out": 2}
    assert doc["output_size"] == {"height": axis, "width": axis} and doc["pad_spec"] == "same"
    out = doc["outputs"]["A"]
    assert out["nan_count"] == 4 and out["inf_count"] == 0 and all(math.isnan(out[k]) for k in ("min", "std"))
    assert pool_forward_loops(A, PoolParams(f=2, stride=2, pad="same")).shape == (1, 2, 2, 1)
    assert doc["seconds"] is None


def test_report_is_frozen_and_replaced_not_mutated(tmp_path):
    np.save(tmp_path / "A.npy", np.ones((1, 2, 2, 1)))
    with resolve_layer(str(tmp_path / "A.npy"), f="2") as call:
        report = PassReport.of("forward", call, stream.forward(call))
    with pytest.raises(Exception):
        report.notes = ("x",)
    from dataclasses import replace

    assert replace(report, notes=("x",)).to_dict()["notes"] == ["x"] and report.notes == ()
