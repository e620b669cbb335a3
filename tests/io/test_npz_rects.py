"""One example's rectangles read from an ``.npz`` member without inflating it from its start each time
(``npz.MemberBytes``: the inflater's state kept along the way), as HDF5 and ``.npy`` read them (issue 13, part 1:
a huge example from an ``.npz`` member was inflated and held whole)."""

import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnncli.io.npz as npz
from cnncli.errors import InputError
from cnncli.io.arrays import open_array


def _save(path, A, compressed: bool):
    (np.savez_compressed if compressed else np.savez)(path, x=A)


@settings(max_examples=40, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 9), st.integers(1, 3)), st.booleans(),
       st.sampled_from([np.float64, np.float32, np.uint8, ">f8"]), st.integers(1, 300), st.integers(1, 50),
       st.data())
def test_an_npz_member_s_rectangles_are_the_array_s_in_any_order(tmp_path_factory, shape, compressed, dtype, mark,
                                                                  feed, data):
    # tiny marks and feeds: many kept states, reads that start from one and cross others, backward and forward
    mp = pytest.MonkeyPatch()
    mp.setattr(npz, "MARK_BYTES", mark)
    mp.setattr(npz, "FEED_BYTES", feed)
    try:
        A = (np.random.default_rng(len(shape)).random(size=shape) * 200).astype(dtype)
        path = tmp_path_factory.mktemp("z") / "a.npz"
        _save(path, A, compressed)
        with open_array(str(path)) as stream:
            for _ in range(6):
                e = data.draw(st.integers(0, shape[0] - 1))
                axis = data.draw(st.sampled_from([1, 2]))
                n, w = A.shape[axis], A.shape[axis + 1] if axis + 1 < A.ndim else None
                lo = data.draw(st.integers(0, n - 1))
                hi = data.draw(st.integers(lo + 1, n))
                cols = None
                if w is not None and data.draw(st.booleans()):
                    c0 = data.draw(st.integers(0, w - 1))
                    cols = (c0, data.draw(st.integers(c0 + 1, w)))
                got = stream.read_rows(e, lo, hi, axis=axis, cols=cols)
                sel = (slice(e, e + 1),) + (slice(None),) * (axis - 1) + (slice(lo, hi),)
                if cols is not None:
                    sel += (slice(*cols),)
                np.testing.assert_array_equal(got, A[sel])
                assert got.dtype == A.dtype and got.flags.writeable
    finally:
        mp.undo()


def test_a_read_behind_the_last_inflates_from_the_nearest_kept_state_not_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(npz, "MARK_BYTES", 4096)
    monkeypatch.setattr(npz, "MAX_MARKS", 10**6)  # a state every 4096 bytes, however large the member
    A = np.random.default_rng(0).normal(size=(1, 1, 100_000, 4))  # 3.2 MB
    np.savez_compressed(tmp_path / "a.npz", x=A)
    inflated = []
    real = zlib.decompressobj

    class Counting:  # counts every inflater's output, copies included
        def __init__(self, inner):
            self.inner = inner

        def decompress(self, data, max_length=0):
            out = self.inner.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def copy(self):
            return Counting(self.inner.copy())

        def __getattr__(self, name):
            return getattr(self.inner, name)
    monkeypatch.setattr(npz.zlib, "decompressobj", lambda *a: Counting(real(*a)))
    with open_array(str(tmp_path / "a.npz")) as stream:
        np.testing.assert_array_equal(stream.read_rows(0, 0, 1, cols=(90_000, 90_010)), A[:, :, 90_000:90_010])
        inflated.clear()
        # back to a rectangle near the start, then next to the last one: each from a kept state
        np.testing.assert_array_equal(stream.read_rows(0, 0, 1, cols=(50_000, 50_003)), A[:, :, 50_000:50_003])
        np.testing.assert_array_equal(stream.read_rows(0, 0, 1, cols=(89_990, 90_000)), A[:, :, 89_990:90_000])
    assert sum(inflated) <= 2 * (4096 + 10 * 4 * 8)  # not the 2.9 MB before them


def test_a_damaged_npz_member_read_by_rectangles_is_refused_in_one_line(tmp_path):
    A = np.arange(4000, dtype=np.float64).reshape(1, 1, 1000, 4)
    np.savez(tmp_path / "a.npz", x=A)  # stored: a flipped data byte leaves the zip readable, its CRC wrong
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        info = z.getinfo("x.npy")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200 + 1000
    raw[at] ^= 0xFF
    (tmp_path / "b.npz").write_bytes(bytes(raw))
    with open_array(str(tmp_path / "b.npz")) as stream:
        for c in range(0, 1000, 100):  # a pass over the example in order: the CRC is checked at its end
            if c < 900:
                stream.read_rows(0, 0, 1, cols=(c, c + 100))
        with pytest.raises(InputError) as info:
            stream.read_rows(0, 0, 1, cols=(900, 1000))
    assert "is damaged (bad CRC-32)" in str(info.value) and "\n" not in str(info.value)
    # deflate data cut in the middle
    np.savez_compressed(tmp_path / "c.npz", x=np.random.default_rng(1).normal(size=(1, 1, 1000, 4)))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        info = z.getinfo("x.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 9000:start + 9300] = bytes(300)  # zeros in the middle of the deflate stream (its header intact)
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    with open_array(str(tmp_path / "d.npz")) as stream:
        with pytest.raises(InputError) as info:
            for c in range(0, 1000, 100):
                stream.read_rows(0, 0, 1, cols=(c, c + 100))
    assert "is damaged" in str(info.value) and "\n" not in str(info.value)


def test_a_member_cut_short_is_told_by_the_example_its_data_ends_in(tmp_path):
    from .test_bombs import write_bomb
    # (3, 2, 50, 4) float64: 3200 bytes per example, 4000 data bytes: example 1 has 800 of its 3200
    write_bomb(tmp_path / "b.npz", (3, 2, 50, 4), data_bytes=4000)
    with open_array(str(tmp_path / "b.npz:A_prev")) as stream:
        assert stream.read_rows(0, 0, 2, cols=(10, 20)).shape == (1, 2, 10, 4)  # example 0 is whole
        with pytest.raises(InputError) as info:
            stream.read_rows(1, 1, 2)
    assert "is damaged (cut short: example 1 has 800 of its 3200 bytes)" in str(info.value)  # the widest wording


@pytest.mark.parametrize("extra", [1, 4, 8])
def test_a_compressible_member_just_past_a_kept_state_reads_to_its_end(tmp_path, extra):
    # An all-zero member of 8 MiB + extra*8 bytes deflates to a few KiB: all of it is fed before the output
    # reaches the state kept at 8 MiB, and the inflater still owes the bytes after it (a long match, decoded
    # but not copied yet) when no input is left; they were taken for a member cut short
    n = (npz.MARK_BYTES - 128) // 8 + extra  # the .npy header is 128 bytes
    A = np.zeros((1, 1, n, 1))
    _save(tmp_path / "z.npz", A, compressed=True)
    with open_array(str(tmp_path / "z.npz")) as stream:
        np.testing.assert_array_equal(stream.read_rows(0, 0, 1, axis=1, cols=(n - 3, n)), A[:, :, n - 3:])
        np.testing.assert_array_equal(stream.read_rows(0, 0, 1, axis=1, cols=(0, 2)), A[:, :, :2])
        np.testing.assert_array_equal(stream.read_rows(0, 0, 1, axis=1), A)  # behind: from the first state
