"""cnncli.io: arrays, cases, dtypes and writers: every reference form, case files, dtype policy, atomic writes."""

import io
import os
import pickle
import sys

import h5py
import numpy as np
import pytest

from cnncli.io import readers
from cnncli.io.arrays import load_array, open_array
from cnncli.io.cases import is_case, load_case
from cnncli.io.dtypes import apply_dtype_policy
from cnncli.io.writers import write_results
from cnncli.errors import InputError, OutputError
from cnncli.io.writers import ResultWriter


@pytest.fixture
def files(tmp_path):
    x = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "one.npz", only=x)
    np.savez(tmp_path / "two.npz", a=x, b=x * 2)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["train/A_prev"] = x
        f["other"] = np.ones(3)
    with h5py.File(tmp_path / "single.hdf5", "w") as f:
        f["g/x"] = x
    return tmp_path, x


@pytest.mark.parametrize("ref, factor", [
    ("x.npy", 1), ("one.npz", 1), ("two.npz:b", 2), ("d.h5:/train/A_prev", 1), ("d.h5:train/A_prev", 1),
    ("single.hdf5", 1), ("single.hdf5:/g/x", 1),
])
def test_every_reference_form_loads_the_stored_values(files, ref, factor):
    path, x = files
    got = load_array(str(path / ref))
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, x * factor)


def test_stdin_reference_reads_npy_bytes(monkeypatch):
    buf = io.BytesIO()
    np.save(buf, np.eye(3))

    class FakeStdin:
        buffer = io.BytesIO(buf.getvalue())

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    np.testing.assert_array_equal(load_array("-"), np.eye(3))


@pytest.mark.parametrize("ref, message", [
    # a long path (pytest's folder): no list fits 80 columns, the shortest line names one
    ("two.npz", "'{p}/two.npz' holds 2 arrays; name one, e.g. {p}/two.npz:a"),
    ("two.npz:c", "'{p}/two.npz' has no array 'c'; it has: a, b"),
    ("d.h5", "'{p}/d.h5' holds 2 datasets; name one, e.g. {p}/d.h5:/other"),
    ("d.h5:/train/X", "'{p}/d.h5' has no dataset '/train/X'; it has: /other, /train/A_prev"),
    ("d.h5:/train", "'{p}/d.h5:/train' is a group, not a dataset; datasets in it: /train/A_prev"),
    ("nope.npy", "'{p}/nope.npy': no such file"),
    ("x.npy:a", "'{p}/x.npy:a': a .npy file holds one array; drop the ':a'"),
])
def test_unknown_names_list_what_exists(files, ref, message):
    path, _ = files
    with pytest.raises(InputError) as info:
        load_array(str(path / ref))
    assert str(info.value) == message.format(p=path)


def test_pickles_and_object_arrays_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with open(tmp_path / "raw.npy", "wb") as fp:
        pickle.dump([1, 2], fp)
    for name in ("obj.npy", "raw.npy"):
        with pytest.raises(InputError, match="pickled objects"):
            load_array(str(tmp_path / name))


@pytest.mark.parametrize("value", [np.array(["ab", "c"]), np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
                                   np.array([1 + 2j])])
def test_string_structured_and_complex_dtypes_are_refused(tmp_path, value):
    np.save(tmp_path / "s.npy", value)
    with pytest.raises(InputError, match="expected bool, int or float data"):
        load_array(str(tmp_path / "s.npy"))


def test_truncated_and_corrupt_files_are_input_errors(files):
    path, _ = files
    data = (path / "x.npy").read_bytes()
    (path / "cut.npy").write_bytes(data[:-7])
    (path / "cut.npz").write_bytes((path / "one.npz").read_bytes()[:40])
    (path / "junk.h5").write_bytes(b"not hdf5 at all" * 10)
    (path / "cut.h5").write_bytes((path / "d.h5").read_bytes()[:900])
    for name in ("cut.npy", "cut.npz", "cut.h5:/other"):
        with pytest.raises(InputError, match="is damaged \\("):
            load_array(str(path / name))
    with pytest.raises(InputError) as info:
        load_array(str(path / "junk.h5"))
    assert str(info.value) == f"'{path}/junk.h5' is not an HDF5 file (it starts with 'not hdf5 at allnot hdf5')"


def test_file_without_known_extension_is_sniffed(files):
    path, x = files
    (path / "blob").write_bytes((path / "x.npy").read_bytes())
    np.testing.assert_array_equal(load_array(str(path / "blob")), x)
    (path / "text").write_text("hello")
    with pytest.raises(InputError, match="is not .npy, .npz or HDF5"):
        load_array(str(path / "text"))


def test_open_array_reads_hdf5_slices_lazily(files):
    path, x = files
    with open_array(str(path / "d.h5:/train/A_prev")) as stream:
        assert stream.lazy and stream.shape == x.shape and stream.dtype == np.int16
        np.testing.assert_array_equal(stream.read(1, 2), x[1:2])


def test_case_files_h5_and_npz(tmp_path):
    A, W = np.ones((1, 4, 4, 2)), np.ones((2, 2, 2, 3))
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["A_prev"], f["W"] = A, W
        f.attrs.update({"layer": "conv", "stride": 2, "pad": np.array([0, 1, 0, 1]), "mode": b"max"})
    np.savez(tmp_path / "c.npz", A_prev=A, layer=np.array("pool"), f=np.array(2), stride=np.array([2, 1]))
    case = load_case(str(tmp_path / "c.h5"))
    assert case.attrs == {"layer": "conv", "stride": 2, "pad": (0, 1, 0, 1), "mode": "max"}
    assert set(case.arrays) == {"A_prev", "W"}
    assert type(case.attrs["stride"]) is int
    case = load_case(str(tmp_path / "c.npz"))
    assert case.attrs == {"layer": "pool", "f": 2, "stride": (2, 1)}
    assert list(case.arrays) == ["A_prev"]
    assert is_case(str(tmp_path / "c.h5")) and is_case(str(tmp_path / "c.npz"))
    assert not is_case(str(tmp_path / "c.h5:/A_prev"))
    np.save(tmp_path / "a.npy", A)
    assert not is_case(str(tmp_path / "a.npy")) and not is_case(str(tmp_path / "missing.h5"))
    np.savez(tmp_path / "noA.npz", W=np.ones(2))
    with pytest.raises(InputError, match="no A_prev in it"):
        load_case(str(tmp_path / "noA.npz"))


@pytest.mark.parametrize("dtype, asked, expected, noted", [
    (np.uint8, None, np.float64, True), (np.bool_, None, np.float64, True), (np.float16, None, np.float64, True),
    (np.float32, None, np.float64, True), (np.float64, None, np.float64, False),
    (np.float32, "float32", np.float32, False), (np.int32, "float32", np.float32, True),
    (np.float64, "float32", np.float32, True),
])
def test_dtype_policy(dtype, asked, expected, noted):
    x = np.array([1, 0, 1], dtype=dtype)
    out, note = apply_dtype_policy(x, asked, name="A_prev")
    assert out.dtype == expected
    np.testing.assert_array_equal(out, [1.0, 0.0, 1.0])
    assert (note is not None) == noted
    if noted:
        assert note.startswith(f"A_prev is {np.dtype(dtype)}: computed in {np.dtype(expected)}")


def test_dtype_policy_refuses_unknown_words():
    with pytest.raises(InputError, match="--dtype must be 'float64' or 'float32', got 'float16'"):
        apply_dtype_policy(np.ones(2), "float16")


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5", ".hdf5"])
def test_write_results_round_trip(tmp_path, ext):
    results = {"dA_prev": np.arange(12.0).reshape(1, 2, 3, 2), "dW": np.ones((1, 1, 2, 2)), "db": np.arange(2.0)}
    out = str(tmp_path / f"r{ext}")
    write_results(out, results, main="dA_prev", attrs={"layer": "conv", "pad": [0, 1, 0, 1], "skip": None},
                  force=False)
    if ext == ".npy":
        np.testing.assert_array_equal(np.load(out), results["dA_prev"])
    else:
        for name, value in results.items():
            np.testing.assert_array_equal(load_array(f"{out}:{name}"), value)
    if ext in (".h5", ".hdf5"):
        with h5py.File(out) as f:
            assert f.attrs["layer"] == "conv" and list(f.attrs["pad"]) == [0, 1, 0, 1] and "skip" not in f.attrs
    assert os.listdir(tmp_path) == [f"r{ext}"]  # no temporary file left


def test_existing_output_is_refused_and_untouched_without_force(tmp_path):
    out = tmp_path / "z.npy"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists; use --force to overwrite it"):
        write_results(str(out), {"Z": np.ones(2)}, main="Z", attrs=None, force=False)
    assert out.read_bytes() == b"precious"
    write_results(str(out), {"Z": np.ones(2)}, main="Z", attrs=None, force=True)
    np.testing.assert_array_equal(np.load(out), np.ones(2))


@pytest.mark.parametrize("path, message", [
    ("nowhere/z.npy", "folder 'nowhere' does not exist"),
    ("z.txt", "unknown type '.txt'; expected .npy, .npz, .h5 or -"),
])
def test_bad_destinations(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match=message):
        write_results(path, {"Z": np.ones(2)}, main="Z", attrs=None, force=False)


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
def test_failure_mid_write_leaves_nothing_behind(tmp_path, ext):
    out = tmp_path / f"z{ext}"
    with pytest.raises(KeyboardInterrupt):
        with ResultWriter(str(out), main="Z", force=False) as writer:
            sink = writer.create("Z", (4, 3), "float64")
            sink.write(np.ones((2, 3)))
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_streamed_rows_must_be_complete(tmp_path):
    with pytest.raises(ValueError, match="wrote 2 of 4 rows"):
        with ResultWriter(str(tmp_path / "z.npy"), main="Z") as writer:
            writer.create("Z", (4, 3), "float64").write(np.ones((2, 3)))
    assert os.listdir(tmp_path) == []


def test_parse_ref_forms():
    assert readers.parse_ref("a.b.h5:/x/y").path == "a.b.h5"
    assert readers.parse_ref("A.NPZ:w").kind == "npz"
    assert readers.parse_ref("-").kind == "stdin"


@pytest.mark.parametrize("stored, asked, note", [
    (">f8", None, None),                      # float64 already: only the byte order is another machine's
    (">f4", "float32", None),
    (">f4", None, "A_prev is float32: computed in float64"),
    (">i2", None, "A_prev is int16: computed in float64"),
    ("<f8", "float32", "A_prev is float64: computed in float32"),
])
def test_the_dtype_note_is_about_the_type_not_the_byte_order(stored, asked, note):
    x = np.array([1.5, -2.0, 3.0]).astype(stored)
    out, said = apply_dtype_policy(x, asked, name="A_prev")
    np.testing.assert_array_equal(out, x.astype(np.float64))
    assert out.dtype == np.dtype(asked or "float64") and out.dtype.isnative
    assert (said is None) if note is None else said.startswith(note), said
