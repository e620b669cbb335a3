"""cnncli.io.readers: formats told by their magic bytes, and sources read once (pipes) or mapped (files)."""

import io
import os

import h5py
import numpy as np
import pytest

from cnncli.io.arrays import load_array, open_array
from cnncli.errors import InputError
from cnncli.io.readers import materialize, parse_ref


def test_hdf5_with_a_user_block_is_still_hdf5(tmp_path):
    # HDF5 may put its signature after a user block (512, 1024, ... bytes): still an HDF5 file.
    with h5py.File(tmp_path / "ub.h5", "w", userblock_size=1024) as f:
        f["x"] = np.arange(6.0)
    os.link(tmp_path / "ub.h5", tmp_path / "ub")  # no extension: sniffed
    assert parse_ref(str(tmp_path / "ub")).kind == "h5"
    np.testing.assert_array_equal(load_array(str(tmp_path / "ub.h5")), np.arange(6.0))
    os.link(tmp_path / "ub.h5", tmp_path / "ub.npy")
    with pytest.raises(InputError, match=r"is not \.npy data \(it is an HDF5 file\)"):
        load_array(str(tmp_path / "ub.npy"))


def test_regular_npy_is_memory_mapped_and_a_pipe_is_read_once(tmp_path):
    x = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "x.npy", x)
    with open_array(str(tmp_path / "x.npy")) as s:
        assert s.lazy
    buf = io.BytesIO()
    np.save(buf, x)
    r, w = os.pipe()
    os.write(w, buf.getvalue())
    os.close(w)
    try:
        ref = materialize(parse_ref(f"/dev/fd/{r}"))
        assert ref.kind == "npy" and ref.data == buf.getvalue()
        assert materialize(ref) is ref  # idempotent: the bytes are kept, the pipe is not read again
        with pytest.raises(InputError, match=r"is not \.npy, \.npz or HDF5 \(it is empty\)$"):
            load_array(f"/dev/fd/{r}")  # a second reader finds the pipe drained: why it is read only once
    finally:
        os.close(r)


def test_a_zip_member_that_is_not_npy_is_named(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("A.npy", "hello there")
    with pytest.raises(InputError) as info:
        load_array(str(tmp_path / "z.npz"))
    assert str(info.value) == f"'{tmp_path}/z.npz:A' is not .npy data (it starts with 'hello there')"


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_a_name_two_zip_members_answer_to_is_refused_not_guessed(tmp_path):
    # a zip may hold one name twice (zipfile writes it, with a warning): numpy's load gives the last member,
    # cnncli gave the first, so the same reference meant two arrays; now neither is chosen
    import warnings
    import zipfile

    one, two = np.zeros((1, 2, 2, 1)), np.ones((1, 2, 2, 1))
    with warnings.catch_warnings(), zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        warnings.simplefilter("ignore")  # "Duplicate name: 'A.npy'"
        z.writestr("A.npy", _npy_bytes(one))
        z.writestr("A.npy", _npy_bytes(two))
        z.writestr("B.npy", _npy_bytes(one))
    with zipfile.ZipFile(tmp_path / "e.npz", "w") as z:  # two file names numpy both calls 'A'
        z.writestr("A.npy", _npy_bytes(one))
        z.writestr("A", _npy_bytes(two))
    for ref, members in ((f"{tmp_path}/d.npz:A", "A.npy, A.npy"), (f"{tmp_path}/e.npz", "A.npy, A")):
        for read in (load_array, open_array):  # read whole, and streamed (its header only)
            with pytest.raises(InputError) as info:
                read(ref)
            assert str(info.value) == f"'{tmp_path}/{ref.split('/')[-1][:5]}:A' names 2 members ({members}); keep one"
    np.testing.assert_array_equal(load_array(f"{tmp_path}/d.npz:B"), one)  # the other names still read


@pytest.mark.parametrize("shape_text", ["(1+1, 8, 8, 1)", "(__import__('os').getpid(),)"])
def test_a_header_written_as_an_expression_is_damaged_in_words_that_do_not_change(tmp_path, shape_text):
    """Review: literal_eval's message carried an object's address (`<ast.BinOp object at 0x7f...>`), different
    every run; the header is never evaluated, and the line says what a header must be."""
    import struct

    header = ("{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape_text).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 1024)
    for read in (load_array, open_array):
        with pytest.raises(InputError) as info:
            read(str(tmp_path / "x.npy"))
        assert str(info.value) == (f"'{tmp_path}/x.npy' is damaged (the header is not a literal dict of descr, "
                                   "fortran_order and shape; expressions are never evaluated)")
