"""``cnncli gradcheck SET.h5:/x`` (or SET.npy, SET.npz): a data set too large to hold in float64 is checked chunk by chunk,
with the verdict, counts and notes of the in-memory check (small sets are forced to stream here)."""

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import cnncli.cli.gradcheck as cli_gradcheck
import cnncli.gradcheck.perturbed as perturbed
import cnncli.gradcheck.streamed as streamed
import cnncli.gradcheck.streamed_evals as streamed_evals
from cnncli.cli.app import load_app
from tests.traced import traced_peak

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


def _set_files(tmp_path, kind, x):
    """``x`` (NHWC) saved as ``kind``; the A_prev argument(s) that name it."""
    if kind == "h5":
        with h5py.File(tmp_path / "set.h5", "w") as f:
            f["x"] = x
        return [str(tmp_path / "set.h5") + ":/x"]
    if kind == "npy":
        np.save(tmp_path / "set.npy", x)
        return [str(tmp_path / "set.npy")]
    if kind == "npy-nchw":
        np.save(tmp_path / "set.npy", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        return [str(tmp_path / "set.npy"), "--layout", "nchw"]
    save = np.savez if kind == "npz" else np.savez_compressed
    save(tmp_path / "set.npz", x=x)
    return [str(tmp_path / "set.npz") + ":x"]


def _without_sources(doc):
    return {k: v for k, v in doc.items() if k != "source"}


@pytest.mark.parametrize("layer", ["conv", "max"])
def test_a_large_npy_or_npz_set_streams_as_an_hdf5_set_does(tmp_path, monkeypatch, layer):
    # 60 uint8 images 24x24x3: in float64 A_prev is 0.8 MiB, and the conv's G 2.1 MiB; with 128 KiB budgets a
    # streamed check holds nothing of that size, whatever the file's format (an .npy is memory-mapped, an
    # .npz member read by rows); loaded whole, as .npy and .npz sets were before, it holds all of it
    for name, value in [("BATCH_BYTES", 2**17), ("CHUNK_BYTES", 2**17)]:
        monkeypatch.setattr(perturbed, name, value)
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 2**13)
    monkeypatch.setattr(streamed, "SAMPLED_EXAMPLES", 16)
    monkeypatch.setattr(streamed_evals, "DENSE_VALUES", 2**13)
    monkeypatch.setenv("CNNCLI_CHUNK_BYTES", str(2**17))
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 2**16)  # 60 images: over 100K values streamed
    x = np.random.default_rng(0).integers(0, 256, size=(60, 24, 24, 3), dtype=np.uint8)
    layer_args = _files(tmp_path)[1:] if layer == "conv" else ["--f", "3", "--stride", "2"]
    (tmp_path / "h5").mkdir()
    h5_code, h5_doc = _run(_set_files(tmp_path / "h5", "h5", x) + layer_args)
    assert h5_code == 0 and h5_doc["verdict"] == "pass"
    for kind in ["npy", "npz", "npz-deflated"]:
        (tmp_path / kind).mkdir()
        args = _set_files(tmp_path / kind, kind, x) + layer_args
        (code, doc), peak = traced_peak(lambda: _run(args))
        assert code == 0 and _without_sources(doc) == _without_sources(h5_doc), kind  # the same check, every digit
        assert peak < 8 * 2**20, (kind, peak / 2**20)  # measured 1.4-4.7 MiB; loaded whole: 10.3-13.8 MiB


def test_an_nchw_npy_set_streams_with_its_indices_in_nchw(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)
    x = np.random.default_rng(3).integers(0, 256, size=(12, 10, 10, 3), dtype=np.uint8)
    code, h5 = _run(_set_files(tmp_path, "h5", x) + ["--f", "2"])
    n_code, nchw = _run(_set_files(tmp_path, "npy-nchw", x) + ["--f", "2"])
    assert code == n_code == 0 and h5["verdict"] == nchw["verdict"] == "pass"
    a, n = h5["gradients"][0], nchw["gradients"][0]
    assert n["shape"] == [12, 3, 10, 10] and a["shape"] == [12, 10, 10, 3]
    e, i, j, c = a["worst_index"]
    assert n["worst_index"] == [e, c, i, j] and n["max_abs_error"] == a["max_abs_error"]


@pytest.mark.parametrize("deflated", [True, False])
def test_a_damaged_npz_set_is_one_line_and_exit_2_streamed_as_in_memory(tmp_path, monkeypatch, deflated):
    x = np.random.default_rng(0).integers(0, 256, size=(300, 32, 32, 3), dtype=np.uint8)
    (np.savez_compressed if deflated else np.savez)(tmp_path / "set.npz", x=x)
    data = bytearray((tmp_path / "set.npz").read_bytes())
    data[len(data) * 3 // 4] ^= 0x55  # a byte of the member's data: its CRC no longer matches
    (tmp_path / "set.npz").write_bytes(bytes(data))
    args = ["gradcheck", str(tmp_path / "set.npz"), "--f", "2"]
    whole = runner.invoke(app, args)
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)
    streamed_run = runner.invoke(app, args)
    for r in (whole, streamed_run):
        assert r.exit_code == 2 and r.exception is None or isinstance(r.exception, SystemExit)
        assert r.output.strip().splitlines() == [f"cnncli: error: '{tmp_path / 'set.npz'}:x' is damaged "
                                                 "(Bad CRC-32 for file 'x.npy')"]
