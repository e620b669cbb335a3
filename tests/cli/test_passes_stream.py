"""Streaming HDF5 through forward/backward: chunked reads, chunked writes, accumulated dW/db,
and Ctrl-C in the middle of a stream leaving no partial file."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnncli.io import arrays
from cnncli.passes import stream as streaming
from cnncli.cli import app
from cnncli.passes.call import resolve_layer
from cnncli.io.writers import ResultWriter
from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import (conv_backward_loops, conv_forward_loops, pool_backward_loops,
                                     pool_forward_loops)

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def reads(monkeypatch):
    """Record the (lo, hi) slices read from lazily opened arrays."""
    seen = []
    original = arrays.ArrayStream.read

    def spy(self, lo=0, hi=None):
        seen.append((self.ref, lo, hi))
        return original(self, lo, hi)

    monkeypatch.setattr(arrays.ArrayStream, "read", spy)
    return seen


def test_hdf5_case_is_streamed_in_chunks_and_matches_the_oracle(tmp_path, monkeypatch, reads):
    rng = np.random.default_rng(1)
    A = rng.integers(0, 256, (23, 9, 8, 3), dtype=np.uint8)  # 23: the last chunk is a partial one
    W, b = rng.standard_normal((3, 3, 3, 5)), rng.standard_normal(5)
    params = ConvParams(stride=2, pad="same")
    Z = conv_forward_loops(A, W, b, params)
    dZ = rng.standard_normal(Z.shape)
    with h5py.File(tmp_path / "case.h5", "w") as f:
        f["A_prev"], f["W"], f["b"], f["dZ"] = A, W, b, dZ
        f.attrs.update(layer="conv", stride=2, pad="same")
    monkeypatch.setattr(streaming, "IO_CHUNK_BYTES", 6000)  # a few examples per chunk
    res = runner.invoke(app, ["forward", str(tmp_path / "case.h5"), "-o", str(tmp_path / "z.h5")])
    assert res.exit_code == 0, res.stderr
    with h5py.File(tmp_path / "z.h5") as f:
        np.testing.assert_allclose(f["Z"][()], Z, rtol=1e-12)
    a_reads = [(lo, hi) for ref, lo, hi in reads if ref.endswith(":/A_prev")]
    assert len(a_reads) > 3 and a_reads[0][0] == 0 and a_reads[-1][1] == 23
    assert all(prev[1] == nxt[0] for prev, nxt in zip(a_reads, a_reads[1:]))  # contiguous, in order
    assert max(hi - lo for lo, hi in a_reads) < 23

    reads.clear()
    res = runner.invoke(app, ["backward", str(tmp_path / "case.h5"), "-o", str(tmp_path / "g.h5")])
    assert res.exit_code == 0, res.stderr
    dA, dW, db = conv_backward_loops(dZ, A, W, params)
    with h5py.File(tmp_path / "g.h5") as f:
        np.testing.assert_allclose(f["dA_prev"][()], dA, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f["dW"][()], dW, rtol=1e-10)  # summed over the chunks
        np.testing.assert_allclose(f["db"][()], db, rtol=1e-10)
    assert len([r for r in reads if r[0].endswith(":/dZ")]) > 3


def test_nchw_hdf5_stream_and_pool_backward(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((11, 6, 6, 2))
    params = PoolParams(f=3, stride=2, pad=1, mode="max")
    dA = rng.standard_normal((11, 3, 3, 2))
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["images"] = A.transpose(0, 3, 1, 2)
        f["grads/dA"] = dA.transpose(0, 3, 1, 2)
    monkeypatch.setattr(streaming, "IO_CHUNK_BYTES", 1000)
    res = runner.invoke(app, ["backward", f"{tmp_path}/x.h5:/images", "--grad", f"{tmp_path}/x.h5:/grads/dA",
                              "--f", "3", "--stride", "2", "--pad", "1", "--layout", "nchw", "-o", str(tmp_path / "g.npy")])
    assert res.exit_code == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), pool_backward_loops(dA, A, params).transpose(0, 3, 1, 2))


def test_ctrl_c_mid_stream_exits_130_and_leaves_no_partial_file(tmp_path):
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f["x"] = np.random.default_rng(3).integers(0, 255, (4000, 16, 16, 3), dtype=np.uint8)
    (tmp_path / "out.h5").write_bytes(b"old result")
    env = dict(os.environ, PYTHONPATH=ROOT, CNNCLI_CHUNK_BYTES="1")  # one example per chunk: a slow stream
    proc = subprocess.Popen([sys.executable, "-m", "cnncli", "forward", f"{tmp_path}/big.h5:/x", "--f", "2",
                             "--mode", "avg", "-o", str(tmp_path / "out.h5"), "--force"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not [p for p in os.listdir(tmp_path) if p.endswith(".part")]:  # the stream has started writing
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode().splitlines()[-1:] == ["cnncli: error: interrupted"], (out, err)
    assert b"Traceback" not in err and out == b""
    assert sorted(os.listdir(tmp_path)) == ["big.h5", "out.h5"]
    assert (tmp_path / "out.h5").read_bytes() == b"old result"


@st.composite
def layer_calls(draw):
    kind = draw(st.sampled_from(["conv", "pool"]))
    m, H, W, C = (draw(st.integers(1, 5)), draw(st.integers(3, 7)), draw(st.integers(3, 7)), draw(st.integers(1, 3)))
    f = draw(st.integers(1, 3))
    stride, pad = draw(st.integers(1, 3)), draw(st.sampled_from([0, 1, "same"]))
    layout = draw(st.sampled_from(["nhwc", "nchw"]))
    if kind == "conv":
        params = ConvParams(stride=stride, pad=pad)
    else:
        pad = 0 if pad == "same" or f < 2 else pad
        params = PoolParams(f=f, stride=stride, pad=pad, mode=draw(st.sampled_from(["max", "average"])))
    return kind, (m, H, W, C), f, params, layout, draw(st.integers(1, 5000)), draw(st.integers(0, 2**31))


@settings(max_examples=25, deadline=None)
@given(layer_calls())
def test_streamed_passes_equal_the_loop_oracle_for_any_chunk_size(spec):
    """Any chunking of any layer, through HDF5 files and both layouts, gives the oracle's numbers."""
    kind, shape, f, params, layout, chunk_bytes, seed = spec
    rng = np.random.default_rng(seed)
    A = rng.integers(-3, 4, shape).astype(np.float64)  # small integers: ties in max pooling
    W = rng.standard_normal((f, f, shape[3], 2)) if kind == "conv" else None
    out = conv_forward_loops(A, W, None, params) if kind == "conv" else pool_forward_loops(A, params)
    G = rng.standard_normal(out.shape)
    to_user = (lambda x: x.transpose(0, 3, 1, 2)) if layout == "nchw" else (lambda x: x)
    with tempfile.TemporaryDirectory() as tmp:
        with h5py.File(f"{tmp}/case.h5", "w") as h:
            h["A_prev"], h["G"] = to_user(A), to_user(G)
            if kind == "conv":
                h["W"] = W.transpose(3, 2, 0, 1) if layout == "nchw" else W
        opts = dict(layer=kind, layout=layout, stride=str(params.stride[0]), grad=f"{tmp}/case.h5:/G",
                    pad="same" if params.pad == "same" else str(params.pad[0]))
        if kind == "conv":
            opts["weights"] = f"{tmp}/case.h5:/W"
        else:
            opts.update(f=str(f), mode=params.mode)
        with resolve_layer(f"{tmp}/case.h5:/A_prev", stream=True, **opts) as call:
            with ResultWriter(f"{tmp}/fwd.h5", main="Z" if kind == "conv" else "A") as w:
                streaming.forward(call, w, chunk_bytes=chunk_bytes)
            with ResultWriter(f"{tmp}/bwd.npz", main="dA_prev") as w:
                streaming.backward(call, w, chunk_bytes=chunk_bytes)
        with h5py.File(f"{tmp}/fwd.h5") as h:
            np.testing.assert_allclose(h["Z" if kind == "conv" else "A"][()], to_user(out), rtol=1e-12, atol=1e-12)
        with np.load(f"{tmp}/bwd.npz") as g:
            if kind == "conv":
                dA, dW, db = conv_backward_loops(G, A, W, params)
                np.testing.assert_allclose(g["dW"], dW.transpose(3, 2, 0, 1) if layout == "nchw" else dW,
                                           rtol=1e-10, atol=1e-10)
                np.testing.assert_allclose(g["db"], db, rtol=1e-10, atol=1e-10)
            else:
                dA = pool_backward_loops(G, A, params)
            np.testing.assert_allclose(g["dA_prev"], to_user(dA), rtol=1e-10, atol=1e-10)
