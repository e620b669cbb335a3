"""Passes over one example by tiles of output rows and columns (cnncli.passes.tiles): the tiles' results are the
loop oracle's, their writes the whole array, their NaN census the whole example's, and their memory a tile's,
not the example's (a 1 x N x C signal, whose one output row is the whole example)."""

import io
import json
import os
import tempfile
import tracemalloc

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops, pool_backward_loops, pool_forward_loops
from cnncli.io.writers import ResultWriter
from cnncli.passes import stream as streaming
from cnncli.passes import tiles
from cnncli.passes.call import LayerCall, resolve_layer
from cnncli.passes.tiles import backward_tiles, block_cols, forward_tiles
from tests.passes.test_rows import _same_report, stored_ref


@st.composite
def calls(draw):
    kind = draw(st.sampled_from(["conv", "max", "average"]))
    H, W, C = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 2))
    f = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 5)))  # stride past the kernel: columns no window reads
    pads = tuple(draw(st.integers(0, 4 if kind == "conv" else 1)) for _ in range(4))  # conv: padding-only tiles
    if kind == "conv":
        params = ConvParams(stride=s, pad=pads, dilation=d)
    else:
        params = PoolParams(f=f, stride=s, dilation=d, pad=pads, mode=kind, ceil_mode=draw(st.booleans()),
                            count_include_pad=draw(st.booleans()))
    try:
        geom = params.geometry((H, W), f) if kind == "conv" else params.geometry((H, W))
    except Exception:  # no window fits, or a pool window of padding only: not a layer
        return None
    return (kind, (2, H, W, C), f, params, geom, draw(st.integers(1, 2)), draw(st.integers(1, 3)),
            draw(st.integers(0, 2**31)))


def _call(kind, A, W, params, G=None, b=None):
    return LayerCall(kind="conv" if kind == "conv" else "pool", A_prev=A, W=W, b=b, params=params, grad=G,
                     layout="nhwc")


@given(calls())
def test_tiles_give_the_loop_oracles_results_and_see_every_input_once(spec):
    if spec is None:
        return
    kind, shape, f, params, geom, rows, cols, seed = spec
    rng = np.random.default_rng(seed)
    A = rng.integers(-3, 4, shape).astype(np.float64)  # small integers: ties in max pooling
    W = rng.standard_normal(f + (shape[3], 2)) if kind == "conv" else None
    b = rng.standard_normal(2) if kind == "conv" else None
    out = conv_forward_loops(A, W, b, params) if kind == "conv" else pool_forward_loops(A, params)
    G = rng.standard_normal(out.shape)
    call = _call(kind, A, W, params, G, b)
    n_H, n_W = geom.out_hw
    for i in range(shape[0]):
        got = np.full(out[i:i + 1].shape, np.nan)
        covered = np.zeros(out.shape[1:3], dtype=int)
        seen = []
        for r0, c0, z in forward_tiles(call, i, rows, cols, seen.append):
            assert z.shape[1] <= rows + 1 and z.shape[2] <= cols + 1  # a ceil-mode last one joins the one before
            got[:, r0:r0 + z.shape[1], c0:c0 + z.shape[2]] = z
            covered[r0:r0 + z.shape[1], c0:c0 + z.shape[2]] += 1
        assert (covered == 1).all()
        np.testing.assert_allclose(got, out[i:i + 1], rtol=1e-12, atol=1e-12)
        assert sum(x.size for x in seen) == A[i].size and sum(x.sum() for x in seen) == A[i].sum()
    if kind == "conv":
        dA, dW, db = conv_backward_loops(G, A, W, params)
    else:
        dA = pool_backward_loops(G, A, params)
    sums = [np.zeros_like(W), np.zeros(2)] if kind == "conv" else None
    for i in range(shape[0]):
        got = np.full(A[i:i + 1].shape, np.nan)
        covered = np.zeros(A.shape[1:3], dtype=int)
        seen, grads_seen = [], []
        for y0, x0, dx, grads in backward_tiles(call, i, rows, cols, seen.append, grads_seen.append):
            got[:, y0:y0 + dx.shape[1], x0:x0 + dx.shape[2]] = dx
            covered[y0:y0 + dx.shape[1], x0:x0 + dx.shape[2]] += 1
            if grads is not None:  # conv's, but for the zeros where no window reaches
                sums[0] += grads.dW
                sums[1] += grads.db
        assert (covered == 1).all()  # every input element once, final
        np.testing.assert_allclose(got, dA[i:i + 1], rtol=1e-10, atol=1e-10)
        assert sum(x.size for x in seen) == A[i].size and sum(x.sum() for x in seen) == A[i].sum()
        assert sum(x.size for x in grads_seen) == G[i].size
    if kind == "conv":
        np.testing.assert_allclose(sums[0], dW, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(sums[1], db, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cols", [1, 2, 5])
def test_every_input_element_is_counted_once_even_those_no_window_reads(cols):
    A = np.zeros((1, 5, 13, 1))
    A[0, [0, 1, 4], [0, 2, 12], 0] = np.nan  # f=1 stride 2 by 3 reads rows 0, 2, 4 and columns 0, 3, 6, 9, 12
    A[0, 3, 5, 0] = np.inf
    call = _call("conv", A, np.ones((1, 1, 1, 1)), ConvParams(stride=(2, 3)), np.ones((1, 3, 5, 1)))
    for run in (lambda s: forward_tiles(call, 0, 1, cols, s), lambda s: backward_tiles(call, 0, 1, cols, s)):
        seen = []
        list(run(seen.append))
        assert sum(int(np.isnan(x).sum()) for x in seen) == 3 and sum(int(np.isinf(x).sum()) for x in seen) == 1
        assert sum(x.size for x in seen) == 65


def test_conv_columns_of_padding_only_are_the_bias_and_zeros_where_no_window_reads():
    A = np.ones((1, 1, 3, 1))
    W = np.ones((1, 2, 1, 1))
    call = _call("conv", A, W, ConvParams(pad=(0, 0, 4, 4)), np.ones((1, 1, 10, 1)), np.array([0.5]))
    Z = np.concatenate([z for _, _, z in forward_tiles(call, 0, 1, 2)], axis=2)  # columns 0-2 and 7-9: padding
    np.testing.assert_array_equal(Z[0, 0, :, 0], [0.5] * 3 + [1.5, 2.5, 2.5, 1.5] + [0.5] * 3)
    call = _call("conv", np.ones((1, 1, 10, 1)), W, ConvParams(stride=(1, 4)), np.ones((1, 1, 3, 1)))
    pieces = list(backward_tiles(call, 0, 1, 1))  # windows at 0-1, 4-5, 8-9: columns 2, 3, 6, 7 read by none
    dA = np.concatenate([dx for _, _, dx, _ in pieces], axis=2)
    np.testing.assert_array_equal(dA[0, 0, :, 0], [1, 1, 0, 0, 1, 1, 0, 0, 1, 1])
    assert [x0 for _, x0, _, _ in pieces] == [0, 2, 4, 6, 8]  # columns 2-3 and 6-7 are zeros of their own


def test_block_cols_fill_the_budget_and_never_go_below_one_column():
    A = np.zeros((1, 1, 1000, 3))  # a 1 x 1000 x 3 signal, a 1 x 5 kernel at stride 2: K columns read 2K + 3
    call = _call("conv", A, np.zeros((1, 5, 3, 4)), ConvParams(stride=2))  # an output column: 4 values
    for budget_values in (1, 40, 200, 1000):
        cols = block_cols(call, budget_values * 8)
        assert cols == max(1, (budget_values - 5 * 3 - 4) // (2 * 3 + 4) + 1)
        assert cols == 1 or ((cols - 1) * 2 + 5) * 3 + cols * 4 <= budget_values  # it fits
        assert (cols * 2 + 5) * 3 + (cols + 1) * 4 > budget_values  # one more column would not
        assert block_cols(call, budget_values * 16, backward=True) == cols
    assert block_cols(call, 10**12) == 498  # at most every output column


@given(st.integers(1, 2), st.integers(1, 4), st.integers(1, 5), st.integers(1, 2), st.sampled_from([1, 2]),
       st.sampled_from(["npy", "npz", "h5"]), st.randoms(use_true_random=False))
def test_tiles_written_in_any_order_are_the_whole_array(m, H, W, C, axis, kind, rnd):
    full = np.arange(m * H * W * C, dtype=np.float64).reshape(m, H, W, C)
    if axis == 2:
        full = full.transpose(0, 3, 1, 2).copy()  # NCHW: rows along axis 2, columns along 3

    def cuts(n):
        c = sorted(rnd.sample(range(1, n), rnd.randint(0, n - 1)))
        return list(zip([0] + c, c + [n]))

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, f"o.{kind}")
        with ResultWriter(out, main="Z") as w:
            stream = w.create("Z", full.shape, "float64")
            for i in range(m):
                parts = [(r, c) for r in cuts(H) for c in (cuts(W) if rnd.random() < 0.7 else [None])]
                rnd.shuffle(parts)
                for (lo, hi), c in parts:
                    sel = (slice(i, i + 1),) + (slice(None),) * (axis - 1) + (slice(lo, hi),)
                    if c is None:  # whole rows, between the tiles of other rows
                        stream.write_rows(i, axis, lo, full[sel])
                    else:
                        stream.write_rows(i, axis, lo, full[sel + (slice(*c),)], col=c[0])
        if kind == "npy":
            np.testing.assert_array_equal(np.load(out), full)
        elif kind == "npz":
            with np.load(out) as z:
                np.testing.assert_array_equal(z["Z"], full)
        else:
            with h5py.File(out) as f:
                np.testing.assert_array_equal(f["Z"][()], full)


@pytest.mark.parametrize("kind", ["npy", "h5", "npz"])
def test_a_stream_takes_each_tile_once_and_commits_nothing_cut_short(tmp_path, kind):
    out = str(tmp_path / f"o.{kind}")

    def attempt(*steps):
        with ResultWriter(out, main="Z") as w:
            s = w.create("Z", (2, 4, 5, 1), "float64")
            for step in steps:
                step(s)

    def tile(example, lo, hi, c0, c1):
        return lambda s: s.write_rows(example, 1, lo, np.zeros((1, hi - lo, c1 - c0, 1)), col=c0)

    rows = lambda example, lo, hi: (lambda s: s.write_rows(example, 1, lo, np.zeros((1, hi - lo, 5, 1))))  # noqa
    whole = lambda n: (lambda s: s.write(np.zeros((n, 4, 5, 1))))  # noqa: E731
    with pytest.raises(ValueError, match="rows 0:2, columns 2:4 of example 0 are written twice"):
        attempt(tile(0, 0, 2, 0, 3), tile(0, 0, 2, 2, 4))
    with pytest.raises(ValueError, match="rows 1:3 of example 0 cross the tiles of rows 0:2"):
        attempt(tile(0, 0, 2, 0, 3), tile(0, 1, 3, 3, 5))  # other rows over a row span being tiled
    with pytest.raises(ValueError, match="rows 1:2 of example 0 cross the tiles of rows 0:2"):
        attempt(tile(0, 0, 2, 0, 3), rows(0, 1, 2))  # whole rows over it
    with pytest.raises(ValueError, match="rows 0:2 of example 0 are written twice"):
        attempt(rows(0, 0, 2), tile(0, 0, 2, 0, 1))  # a tile of rows written whole
    with pytest.raises(ValueError, match="does not fit"):
        attempt(tile(0, 0, 2, 3, 6))  # past the last column
    with pytest.raises(ValueError, match="example 1 while example 0"):
        attempt(tile(0, 0, 4, 0, 2), tile(1, 0, 4, 2, 5))
    with pytest.raises(ValueError, match="1 examples do not fit .* after 0 examples and a part"):
        attempt(tile(0, 0, 4, 0, 2), whole(1))
    with pytest.raises(ValueError, match="wrote 0 of 2 rows and a part"):
        attempt(tile(0, 0, 4, 0, 2), tile(0, 0, 4, 3, 5))  # column 2 never written
    assert os.listdir(tmp_path) == []  # nothing committed, nothing left behind
    attempt(tile(0, 2, 4, 3, 5), tile(0, 0, 2, 0, 5), tile(0, 2, 4, 0, 3), whole(1))
    if kind == "h5":
        with h5py.File(out) as f:
            assert f["Z"].shape == (2, 4, 5, 1)
    else:
        assert os.path.exists(out)


@pytest.mark.parametrize("kind", ["npy", "npz"])
@pytest.mark.parametrize("command", ["forward", "backward"])
def test_a_long_signal_streams_in_the_memory_of_a_tile(tmp_path, command, kind):
    # a 1 x 200000 x 4 float64 signal (6.4 MB), one output row: row mode alone held it whole (tracemalloc's peak
    # was 42.7 MiB forward, 55.0 MiB backward with a 256 KiB chunk; by tiles, about 1 MiB). From a compressed
    # .npz member its example was inflated and held whole (6.4 MB) until its rectangles were read from the
    # inflater's kept states
    rng = np.random.default_rng(1)
    A = rng.standard_normal((1, 1, 200000, 4))
    W = rng.standard_normal((1, 5, 4, 4))
    G = rng.standard_normal((1, 1, 199996, 4))
    for name, x in (("A", A), ("W", W), ("G", G)):
        np.save(tmp_path / f"{name}.npy", x)
    np.savez_compressed(tmp_path / "A.npz", A=A)
    main = "Z" if command == "forward" else "dA_prev"
    with resolve_layer(str(tmp_path / ("A.npy" if kind == "npy" else "A.npz")), stream=True,
                       weights=str(tmp_path / "W.npy"), grad=str(tmp_path / "G.npy")) as call:
        with ResultWriter(str(tmp_path / "o.npy"), main=main) as w:
            tracemalloc.start()
            getattr(streaming, command)(call, w, chunk_bytes=2**18)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    # a tile's input and output (256 KiB) and the engine's unrolled patches (5 taps of 4 channels, 20 values per
    # output column: 2.5 times the tile), not the 6.4 MB input nor the 32 MB of its whole patches
    assert peak < 2 * 2**20, peak
    got = np.load(tmp_path / "o.npy", mmap_mode="r")[0, 0]
    taps = np.lib.stride_tricks.sliding_window_view(A[0, 0], 5, axis=0)  # (199996, 4, 5): an independent conv
    if command == "forward":
        np.testing.assert_allclose(got, np.einsum("nck,kcd->nd", taps, W[0]), rtol=1e-10, atol=1e-10)
    else:  # dA[x] = sum over the windows o = x - k that read it of G[o] W[k]^T
        per_tap = np.einsum("nd,kcd->knc", G[0, 0], W[0])  # (5, 199996, 4)
        want = np.zeros((200000, 4))
        for k in range(5):
            want[k:k + 199996] += per_tap[k]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [(1, 30000), (1, 60000), (3, 25000)])
def test_the_input_gradient_no_window_reaches_is_written_in_the_memory_of_a_tile(tmp_path, stride):
    # a 3 x 60000 x 1 example (1.4 MB), a 1x1 conv at a stride of 25000 columns and more: the windows read 3, 2
    # or 1 columns of each row they read, and the dA_prev of the columns between them (zeros) was one stripe as
    # wide as the stride, of every row (1.5 MB of tracemalloc's peak with a 4 KiB chunk at a stride of 60000)
    A = np.ones((1, 3, 60000, 1))
    A[0, :, 1, 0] = np.nan  # read by no window: counted, and no NaN in dA_prev
    oh, ow = -(-3 // stride[0]), -(-60000 // stride[1])
    G = np.arange(1, oh * ow + 1, dtype=np.float64).reshape(1, oh, ow, 1)
    with h5py.File(tmp_path / "A.h5", "w") as f:
        f["A"], f["G"], f["W"] = A, G, np.full((1, 1, 1, 1), 2.0)
    with resolve_layer(f"{tmp_path}/A.h5:/A", stream=True, weights=f"{tmp_path}/A.h5:/W", grad=f"{tmp_path}/A.h5:/G",
                       stride=f"{stride[0]}x{stride[1]}") as call:
        with ResultWriter(str(tmp_path / "o.npz"), main="dA_prev") as w:
            tracemalloc.start()
            results = streaming.backward(call, w, chunk_bytes=2**12)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert call.inputs["A_prev"]["nan_count"] == 3
    want = np.zeros_like(A)
    want[:, ::stride[0], ::stride[1]] = 2 * G
    with np.load(tmp_path / "o.npz") as f:
        np.testing.assert_array_equal(f["dA_prev"], want)
        assert f["dW"].item() == (A[:, ::stride[0], ::stride[1]] * G).sum()  # the NaN is read by no window
        assert f["db"].item() == G.sum()
    assert results["dA_prev"].stats.nan_count == 0
    assert peak < 400 * 2**10, peak  # a tile's 4 KiB, the pieces of zeros as large, h5py's buffers


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("kind", ["h5", "npy", "npz"])
def test_an_examples_rectangles_are_read_from_the_file(tmp_path, kind, layout):
    from cnncli.io.arrays import ArrayStream
    from cnncli.passes.layer import Batches

    A = np.arange(2 * 3 * 7 * 2, dtype=np.float32).reshape(2, 3, 7, 2)
    stored = A.transpose(0, 3, 1, 2) if layout == "nchw" else A
    ref = stored_ref(tmp_path, kind, stored)
    with ArrayStream(ref) as s:
        b = Batches(s, layout, np.dtype(np.float64))
        for i, lo, hi, cols in ((1, 0, 2, (2, 5)), (1, 1, 3, (6, 7)), (0, 0, 1, (0, 7))):
            got = b.rows(i, lo, hi, cols)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, A[i:i + 1, lo:hi, cols[0]:cols[1]])


@pytest.mark.parametrize("command", ["forward", "backward"])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("source, out", [("A.npy", "o.npy"), ("A.h5:/A", "o.h5"), ("A.npz:A", "o.npz"),
                                         ("A.npy", "-")])
@pytest.mark.parametrize("layer", [["--weights", "W.npy", "--bias", "b.npy", "--pad", "0,0,3,2", "--stride", "1x3"],
                                   ["--f", "1x3", "--stride", "1x2", "--pad", "0,0,1,1", "--ceil-mode",
                                    "--mode", "max"]])
def test_a_long_signal_by_tiles_gives_the_bytes_and_report_of_the_whole_run(tmp_path, monkeypatch, command,
                                                                          layout, source, out, layer):
    from typer.testing import CliRunner

    from cnncli.cli import app

    rng = np.random.default_rng(7)
    A = rng.integers(-4, 5, size=(2, 1, 40, 3)).astype(np.float64)  # integers: max-pool ties, exact sums
    A[1, 0, 7, 1], A[0, 0, 39, 0] = np.nan, np.inf  # counted once, by tiles as whole
    to_user = (lambda x: x.transpose(0, 3, 1, 2)) if layout == "nchw" else (lambda x: x)
    np.save(tmp_path / "A.npy", to_user(A))
    np.savez(tmp_path / "A.npz", A=to_user(A))
    with h5py.File(tmp_path / "A.h5", "w") as f:
        f["A"] = to_user(A)
    W = rng.integers(-2, 3, size=(1, 3, 3, 4)).astype(np.float64)
    np.save(tmp_path / "W.npy", W.transpose(3, 2, 0, 1) if layout == "nchw" else W)
    np.save(tmp_path / "b.npy", rng.integers(-2, 3, size=4).astype(np.float64))
    # conv: 1 by (40 + 5 - 3) / 3 + 1 = 15; pool: 1 by ceil((40 + 2 - 3) / 2) + 1 = 21 (the last one overflows)
    out_shape = (2, 1, 15, 4) if "--weights" in layer else (2, 1, 21, 3)
    np.save(tmp_path / "G.npy", to_user(rng.integers(-3, 4, size=out_shape).astype(np.float64)))
    grad = ["--grad", "G.npy"] if command == "backward" else []
    monkeypatch.chdir(tmp_path)
    calls = []
    run = tiles.backward_tiles if command == "backward" else tiles.forward_tiles
    monkeypatch.setattr(streaming, run.__name__, lambda *a, **k: calls.append(a[3]) or run(*a, **k))
    results = {}
    # an example is 120 input values and 60 or 63 output values (1.4 KB+): 200 bytes make tiles of 1-3 columns
    for mode, chunk in (("whole", 2**20), ("tiles", 200)):
        monkeypatch.setattr(streaming, "IO_CHUNK_BYTES", chunk)
        r = CliRunner().invoke(app, [command, source, *layer, *grad, "--layout", layout, "-o", out] +
                               (["--force", "--json"] if out != "-" else []))
        assert r.exit_code == 0, r.stderr
        assert bool(calls) == (mode == "tiles") and all(1 <= c <= 3 for c in calls)
        if out == "-":
            results[mode] = ({"main": r.stdout_bytes}, None)
            continue
        if out.endswith(".h5"):
            with h5py.File(out) as f:
                data = {k: f[k][()].tobytes() for k in f}
        elif out.endswith(".npz"):
            with np.load(out) as z:
                data = {k: z[k].tobytes() for k in z.files}
        else:
            data = {"main": open(out, "rb").read()}
        results[mode] = (data, json.loads(r.stdout))
    whole, tiled = results["whole"][0], results["tiles"][0]
    assert whole == tiled  # byte for byte: integer data sum exactly in any order
    if out != "-":
        _same_report(results["whole"][1], results["tiles"][1])
        assert results["tiles"][1]["inputs"]["A_prev"]["nan_count"] == 1
        assert results["tiles"][1]["inputs"]["A_prev"]["inf_count"] == 1
    else:
        np.load(io.BytesIO(tiled["main"]))  # a whole .npy on stdout


@pytest.mark.parametrize("command", ["forward", "backward"])
def test_progress_is_called_at_every_tile_with_the_examples_done(tmp_path, command):
    # the CLI checks for Ctrl-C in its progress callback: one long signal must not hold it off to its end
    np.save(tmp_path / "A.npy", np.ones((2, 1, 60, 1)))
    np.save(tmp_path / "G.npy", np.ones((2, 1, 58, 1)))
    calls = []
    with resolve_layer(str(tmp_path / "A.npy"), stream=True, f="1x3", stride="1", grad=str(tmp_path / "G.npy")) \
            as call:
        run = streaming.forward if command == "forward" else streaming.backward
        run(call, progress=lambda done, total: calls.append((done, total)), chunk_bytes=200)
    cols = block_cols(call, 200, backward=command == "backward")
    per_example = -(-58 // cols)
    assert cols < 58 and calls == [(0, 2)] * per_example + [(1, 2)] * (per_example + 1) + [(2, 2)]
