"""cnncli forward / backward through the real app: values against the loop oracle, layouts,
case files, outputs, the JSON document and a shell pipeline."""

import io
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.passes import stream as streaming
from cnncli.io.cases import to_python
from cnncli.cli import app
from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import (conv_backward_loops, conv_forward_loops, pool_backward_loops,
                                     pool_forward_loops)

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(args, stdin=None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def save(path, **arrays):
    for name, value in arrays.items():
        np.save(path / f"{name}.npy", value)
    return {name: str(path / f"{name}.npy") for name in arrays}


def stats(x):
    return {"min": pytest.approx(float(x.min()), rel=1e-12), "max": pytest.approx(float(x.max()), rel=1e-12),
            "mean": pytest.approx(float(x.mean()), rel=1e-9, abs=1e-12),
            "std": pytest.approx(float(x.std()), rel=1e-9, abs=1e-12), "nan_count": 0, "inf_count": 0}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # A few examples per chunk: every test below also exercises the chunked path (dW/db accumulation).
    monkeypatch.setattr(streaming, "IO_CHUNK_BYTES", 4000)


CONV_CASES = [
    ({}, ConvParams()),
    ({"--pad": "same", "--stride": "2"}, ConvParams(stride=2, pad="same")),
    ({"--pad": "0,1,2,0", "--dilation": "2x1"}, ConvParams(pad=(0, 1, 2, 0), dilation=(2, 1))),
    ({"--groups": "2", "--stride": "1x2", "--pad": "1"}, ConvParams(groups=2, stride=(1, 2), pad=1)),
]


@pytest.mark.parametrize("opts, params", CONV_CASES)
def test_conv_forward_and_backward_match_the_loop_oracle(tmp_path, opts, params):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 7, 6, 4))
    W = rng.standard_normal((3, 2, 4 // params.groups, 6))
    b = rng.standard_normal((1, 1, 1, 6))
    Z = conv_forward_loops(A, W, b, params)
    dZ = rng.standard_normal(Z.shape)
    dA, dW, db = conv_backward_loops(dZ, A, W, params)
    f = save(tmp_path, A=A, W=W, b=b, dZ=dZ)
    flags = [x for kv in opts.items() for x in kv]
    res = run(["forward", f["A"], "--weights", f["W"], "--bias", f["b"], *flags, "-o", tmp_path / "z.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), Z, rtol=1e-12, atol=1e-12)
    res = run(["backward", f["A"], "--grad", f["dZ"], "--weights", f["W"], "--bias", f["b"], *flags,
               "-o", tmp_path / "g.npz"])
    assert res.exit_code == 0, res.stderr
    with np.load(tmp_path / "g.npz") as g:
        assert sorted(g.files) == ["dA_prev", "dW", "db"]
        np.testing.assert_allclose(g["dA_prev"], dA, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g["dW"], dW, rtol=1e-10, atol=1e-12)
        assert g["db"].shape == (1, 1, 1, 6)  # shaped like the bias that was given
        np.testing.assert_allclose(g["db"].reshape(-1), db, rtol=1e-10)


POOL_CASES = [
    (["--f", "2"], PoolParams(f=2)),
    (["--f", "3", "--stride", "2", "--mode", "avg", "--pad", "1", "--no-count-include-pad"],
     PoolParams(f=3, stride=2, mode="average", pad=1, count_include_pad=False)),
    (["--f", "3", "--stride", "2", "--ceil-mode"], PoolParams(f=3, stride=2, ceil_mode=True)),
    (["--f", "2x3", "--dilation", "2", "--mode", "average"], PoolParams(f=(2, 3), dilation=2, mode="average")),
]


@pytest.mark.parametrize("flags, params", POOL_CASES)
def test_pool_forward_and_backward_match_the_loop_oracle(tmp_path, flags, params):
    rng = np.random.default_rng(4)
    A = rng.integers(0, 4, (6, 8, 7, 3)).astype(np.float64)  # ties: max backward picks the first maximum
    out = pool_forward_loops(A, params)
    dA = rng.standard_normal(out.shape)
    f = save(tmp_path, A=A, dA=dA)
    res = run(["forward", f["A"], *flags, "-o", tmp_path / "a.h5"])
    assert res.exit_code == 0, res.stderr
    with h5py.File(tmp_path / "a.h5") as h:
        np.testing.assert_allclose(h["A"][()], out, rtol=1e-12)
        assert h.attrs["layer"] == "pool" and h.attrs["mode"] == params.mode
    res = run(["backward", f["A"], "--grad", f["dA"], *flags, "-o", tmp_path / "g.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), pool_backward_loops(dA, A, params), rtol=1e-12)


def test_nchw_layout_reads_and_writes_pytorch_layouts(tmp_path):
    rng = np.random.default_rng(5)
    A, W, b = rng.standard_normal((3, 5, 5, 4)), rng.standard_normal((3, 3, 2, 6)), rng.standard_normal(6)
    params = ConvParams(pad=1, groups=2)
    Z = conv_forward_loops(A, W, b, params)
    dZ = rng.standard_normal(Z.shape)
    dA, dW, db = conv_backward_loops(dZ, A, W, params)
    f = save(tmp_path, A=A.transpose(0, 3, 1, 2), W=W.transpose(3, 2, 0, 1), b=b, dZ=dZ.transpose(0, 3, 1, 2))
    common = ["--weights", f["W"], "--bias", f["b"], "--pad", "1", "--groups", "2", "--layout", "nchw"]
    assert run(["forward", f["A"], *common, "-o", tmp_path / "z.npy"]).exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), Z.transpose(0, 3, 1, 2), rtol=1e-12)
    res = run(["backward", f["A"], "--grad", f["dZ"], *common, "-o", tmp_path / "g.h5"])
    assert res.exit_code == 0, res.stderr
    with h5py.File(tmp_path / "g.h5") as h:
        np.testing.assert_allclose(h["dA_prev"][()], dA.transpose(0, 3, 1, 2), rtol=1e-10)
        np.testing.assert_allclose(h["dW"][()], dW.transpose(3, 2, 0, 1), rtol=1e-10)
        np.testing.assert_allclose(h["db"][()], db, rtol=1e-10)
        assert h.attrs["layout"] == "nchw"


def test_case_file_attributes_apply_and_options_override_them(tmp_path):
    rng = np.random.default_rng(6)
    A, W, b = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 2)), rng.standard_normal(2)
    with h5py.File(tmp_path / "case.h5", "w") as h:
        h["A_prev"], h["W"], h["b"] = A, W, b
        h.attrs.update(layer="conv", stride=2, pad="same")
    res = run(["forward", tmp_path / "case.h5", "-o", tmp_path / "z1.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z1.npy"), conv_forward_loops(A, W, b, ConvParams(2, "same")))
    res = run(["forward", tmp_path / "case.h5", "--stride", "1", "--pad", "0", "-o", tmp_path / "z2.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z2.npy"), conv_forward_loops(A, W, b, ConvParams()))
    np.savez(tmp_path / "pool.npz", A_prev=A, layer=np.array("pool"), f=np.array(3), mode=np.array("avg"))
    res = run(["forward", tmp_path / "pool.npz", "--mode", "max", "-o", tmp_path / "p.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), pool_forward_loops(A, PoolParams(f=3)))


def test_backward_takes_the_gradient_from_the_case(tmp_path):
    rng = np.random.default_rng(7)
    A = rng.standard_normal((2, 4, 4, 2))
    dA = rng.standard_normal((2, 2, 2, 2))
    np.savez(tmp_path / "case.npz", A_prev=A, dA=dA, layer=np.array("pool"), f=np.array(2))
    res = run(["backward", tmp_path / "case.npz", "-o", tmp_path / "g.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), pool_backward_loops(dA, A, PoolParams(f=2)))


def test_json_document_is_exact(tmp_path):
    A = np.arange(2 * 5 * 7 * 1, dtype=np.uint8).reshape(2, 5, 7, 1)
    W = np.ones((3, 3, 1, 2))
    f = save(tmp_path, A=A, W=W)
    Z = conv_forward_loops(A, W, None, ConvParams(stride=2, pad="same"))
    res = run(["forward", f["A"], "--weights", f["W"], "--stride", "2", "--pad", "same", "--json",
               "-o", tmp_path / "z.h5"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    doc = json.loads(res.stdout)
    assert isinstance(doc.pop("seconds"), float)
    assert doc == {
        "command": "forward", "layer": "conv",
        "hyperparameters": {"layer": "conv", "layout": "nhwc", "f": [3, 3], "stride": [2, 2],
                            "pad": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1},
        "pad_spec": "same",
        "output_size": {
            "height": {"n_in": 5, "f": 3, "stride": 2, "dilation": 1, "pad_before": 1, "pad_after": 1, "n_out": 3},
            "width": {"n_in": 7, "f": 3, "stride": 2, "dilation": 1, "pad_before": 1, "pad_after": 1, "n_out": 4},
        },
        "dtype": "float64",
        "inputs": {"A_prev": {"source": f["A"], "shape": [2, 5, 7, 1], "dtype": "uint8",
                              "nan_count": 0, "inf_count": 0},
                   "W": {"source": f["W"], "shape": [3, 3, 1, 2], "dtype": "float64",
                         "nan_count": 0, "inf_count": 0}},
        "outputs": {"Z": {"shape": [2, 3, 4, 2], "dtype": "float64", **stats(Z)}},
        "output_file": str(tmp_path / "z.h5"),
        "written": ["Z"],
        "notes": ["A_prev is uint8: computed in float64 (--dtype float32 to compute in float32)",
                  "no bias given: b = 0"],
    }


def test_dtype_float32_computes_and_writes_float32(tmp_path):
    A = np.random.default_rng(8).standard_normal((2, 4, 4, 3)).astype(np.float32)
    f = save(tmp_path, A=A)
    res = run(["forward", f["A"], "--f", "2", "--dtype", "float32", "--json", "-o", tmp_path / "a.npy"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["notes"] == [] and doc["dtype"] == "float32"
    out = np.load(tmp_path / "a.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pool_forward_loops(A, PoolParams(f=2)).astype(np.float32))


def test_human_report_shows_formula_pads_and_notes(tmp_path):
    f = save(tmp_path, A=np.ones((1, 5, 7, 2), dtype=np.int32))
    res = run(["forward", f["A"], "--f", "3", "--stride", "2", "--pad", "same"])
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "pad=same -> 1" in out
    assert "floor((5 + 1 + 1 - (3-1) - 1) / 2) + 1 = 3" in out
    assert "floor((7 + 1 + 1 - (3-1) - 1) / 2) + 1 = 4" in out
    assert "(1, 3, 4, 2)" in out and "note: A_prev is int32: computed in float64" in out


def test_output_to_stdout_is_npy_and_the_table_goes_to_stderr(tmp_path):
    A = np.random.default_rng(9).standard_normal((2, 4, 4, 1))
    f = save(tmp_path, A=A)
    res = run(["forward", f["A"], "--f", "2", "-o", "-"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(res.stdout_bytes)), pool_forward_loops(A, PoolParams(f=2)))
    assert "out A" in res.stderr and "stdout" in res.stderr


def test_stdin_source(tmp_path):
    A = np.random.default_rng(10).standard_normal((2, 4, 4, 1))
    buf = io.BytesIO()
    np.save(buf, A)
    res = run(["forward", "-", "--f", "2", "--mode", "average", "-o", tmp_path / "a.npy"], stdin=buf.getvalue())
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), pool_forward_loops(A, PoolParams(f=2, mode="average")))


def test_forward_h5_output_is_a_readable_record_and_feeds_the_next_command(tmp_path):
    A = np.random.default_rng(11).standard_normal((2, 8, 8, 2))
    f = save(tmp_path, A=A)
    assert run(["forward", f["A"], "--f", "2", "-o", tmp_path / "p1.h5"]).exit_code == 0
    res = run(["forward", tmp_path / "p1.h5", "--f", "2", "-o", tmp_path / "p2.npy"])
    assert res.exit_code == 0, res.stderr
    twice = pool_forward_loops(pool_forward_loops(A, PoolParams(f=2)), PoolParams(f=2))
    np.testing.assert_array_equal(np.load(tmp_path / "p2.npy"), twice)
    with h5py.File(tmp_path / "p1.h5") as h:
        attrs = {k: to_python(v) for k, v in h.attrs.items()}
    assert attrs == {"command": "forward", "layer": "pool", "layout": "nhwc", "f": (2, 2), "mode": "max",
                     "stride": (2, 2), "pad": (0, 0, 0, 0), "dilation": (1, 1), "ceil_mode": False,
                     "count_include_pad": True}


def test_shell_pipeline_from_the_issue(tmp_path):
    rng = np.random.default_rng(12)
    A, W, b = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    save(tmp_path, x=A, w=W, b=b)
    cmd = (f"{sys.executable} -m cnncli forward x.npy --weights w.npy --bias b.npy --pad same -o - | "
           f"{sys.executable} -m cnncli forward - --layer pool --f 2 --stride 2 -o out.npy")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("out A") == 1  # the second table on stdout, the first on stderr
    expected = pool_forward_loops(conv_forward_loops(A, W, b, ConvParams(pad="same")), PoolParams(f=2))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-12)


def test_case_attributes_of_every_kind_and_boolean_overrides(tmp_path):
    A = np.random.default_rng(13).standard_normal((2, 7, 6, 2))
    with h5py.File(tmp_path / "case.h5", "w") as h:
        h["A_prev"] = A
        h.attrs.update(layer=b"pool", f=np.array([3, 2]), stride=np.array([2, 2]), pad=np.array([1, 0, 0, 1]),
                       mode="avg", ceil_mode=np.bool_(True), count_include_pad=False)
    stored = PoolParams(f=(3, 2), stride=2, pad=(1, 0, 0, 1), mode="average", ceil_mode=True,
                        count_include_pad=False)
    res = run(["forward", tmp_path / "case.h5", "-o", tmp_path / "a.npy"])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), pool_forward_loops(A, stored), rtol=1e-12)
    res = run(["forward", tmp_path / "case.h5", "--no-ceil-mode", "--count-include-pad", "-o", tmp_path / "b.npy"])
    assert res.exit_code == 0, res.stderr
    flipped = PoolParams(f=(3, 2), stride=2, pad=(1, 0, 0, 1), mode="average")
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), pool_forward_loops(A, flipped), rtol=1e-12)
