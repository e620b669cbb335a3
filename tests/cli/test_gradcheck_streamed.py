"""``cnncli gradcheck SET.h5:/x``: a data set too large to hold in float64 is checked chunk by chunk,
with the verdict, counts and notes of the in-memory check (small sets are forced to stream here)."""

import json

import h5py
import numpy as np
from typer.testing import CliRunner

import cnncli.cli.gradcheck as cli_gradcheck
from cnncli.cli.app import load_app

# NOTE: importing cnncli.cli.gradcheck first binds the name cnncli.cli.app to the module, so
# `from cnncli.cli import app` run alone would get the module; load_app() is the Typer app
app = load_app()
runner = CliRunner()


def _files(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "signs.h5", "w") as f:
        f["train_set_x"] = rng.integers(0, 256, size=(12, 10, 10, 3), dtype=np.uint8)
    np.save(tmp_path / "W.npy", rng.normal(size=(4, 4, 3, 8)) * 0.1)
    np.save(tmp_path / "b.npy", rng.normal(size=8))
    return [str(tmp_path / "signs.h5") + ":/train_set_x", "--weights", str(tmp_path / "W.npy"),
            "--bias", str(tmp_path / "b.npy"), "--pad", "same"]


def _run(args):
    r = runner.invoke(app, ["gradcheck", *args, "--json"])
    return r.exit_code, json.loads(r.stdout)


def test_a_streamed_check_of_an_hdf5_set_gives_the_in_memory_verdict(tmp_path, monkeypatch):
    args = _files(tmp_path)
    code, whole = _run(args)
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)  # stream this small set
    s_code, streamed = _run(args)
    assert code == s_code == 0 and whole["verdict"] == streamed["verdict"] == "pass"
    assert whole["notes"] == streamed["notes"] and whole["params"] == streamed["params"]
    for a, s in zip(whole["gradients"], streamed["gradients"]):
        assert (a["name"], a["method"], a["checked"], a["directions"]) == (s["name"], s["method"], s["checked"],
                                                                          s["directions"])


def test_a_streamed_pool_check_with_a_given_gradient(tmp_path, monkeypatch):
    args = _files(tmp_path)[:1] + ["--f", "2", "--stride", "2"]
    G = np.random.default_rng(1).normal(size=(12, 5, 5, 3))
    np.save(tmp_path / "dA.npy", G)
    args += ["--grad", str(tmp_path / "dA.npy")]
    code, whole = _run(args)
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)
    s_code, streamed = _run(args)
    assert code == s_code == 0 and whole["verdict"] == streamed["verdict"] == "pass"
    assert whole["gradients"][0]["checked"] == streamed["gradients"][0]["checked"]


def test_bad_input_to_a_streamable_source_is_the_in_memory_error(tmp_path, monkeypatch):
    args = _files(tmp_path)
    np.save(tmp_path / "W.npy", np.ones((4, 4, 2, 8)))  # 2 input channels for a 3-channel set
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)
    r = runner.invoke(app, ["gradcheck", *args])
    assert r.exit_code == 2 and "A_prev's 3 channels need (4, 4, 3, 8)" in r.output


def test_a_streamed_check_of_a_subnormal_set_is_inconclusive(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "tiny.h5", "w") as f:
        f["x"] = np.random.default_rng(2).normal(size=(4, 6, 6, 2)) * 1e-315
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)
    code, doc = _run([str(tmp_path / "tiny.h5") + ":/x", "--f", "2"])
    assert code == 1 and doc["verdict"] == "inconclusive" and not doc["passed"]
    g = doc["gradients"][0]
    assert (g["name"], g["verdict"]) == ("dA_prev", "inconclusive")
    assert g["reason"].startswith("dA_prev: the loss underflows float64 at this scale (max |A_prev| ")
