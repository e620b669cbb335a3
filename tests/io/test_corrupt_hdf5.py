"""Damaged HDF5 metadata is bad input (exit 2, one line naming the file), never an internal error."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()


def _case(path):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["A_prev"] = rng.standard_normal((2, 5, 7, 4))
        f["W"] = np.ones((3, 3, 4, 8))
        f["b"] = np.ones(8)
        f.attrs.update(layer="conv", stride=1, pad=1)
    return path.read_bytes()


def test_a_case_file_with_broken_attribute_messages_is_damaged(tmp_path):
    data = bytearray(_case(tmp_path / "case.h5"))
    for i in range(2000, len(data), 97):  # every 97th byte flipped past the superblock
        data[i] ^= 0xFF
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(bytes(data))
    for args in (["forward", str(bad)], ["gradcheck", str(bad)], ["backward", str(bad)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.startswith(f"cnncli: error: '{bad}' is damaged (") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("seed", range(12))
def test_random_byte_damage_is_never_an_internal_error(tmp_path, seed):
    data = bytearray(_case(tmp_path / "case.h5"))
    rng = np.random.default_rng(seed)
    for i in rng.integers(96, len(data), 24):  # the superblock kept: the file still opens as HDF5
        data[i] ^= int(rng.integers(1, 256))
    bad = tmp_path / "fuzz.h5"
    bad.write_bytes(bytes(data))
    for args in (["forward", str(bad)], ["shape", "--like", f"{bad}:/A_prev", "--f", "2"]):
        r = runner.invoke(app, args)
        assert r.exit_code in (0, 1, 2), (args, r.output)
        if r.exit_code == 2:
            assert r.stderr.count("\n") == 1 and "internal error" not in r.stderr


def _unknown_filter(path, shape, name="A_prev", code=32001):
    """A dataset whose chunks went through HDF5 filter ``code`` (Blosc's id), which this HDF5 lacks."""
    data = np.arange(np.prod(shape), dtype="f8").reshape(shape)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(name, shape=shape, dtype="f8", chunks=(1,) + shape[1:], compression=code,
                              allow_unknown_filter=True)
        for i in range(shape[0]):  # the chunks as the filter's writer would have stored them (bytes it alone reads)
            ds.id.write_direct_chunk((i, 0, 0, 0), data[i:i + 1].tobytes()[::-1])
    return path


def test_a_compression_filter_this_hdf5_lacks_is_named_not_called_damage(tmp_path, monkeypatch):
    # Blosc-compressed data (PyTables, hdf5plugin) read without the plugin said "'x.h5' is damaged (Can't
    # synchronously read data (can't open directory (/usr/local/lib/plugin)...))": the file is sound
    if h5py.h5z.filter_avail(32001):
        pytest.skip("this HDF5 has a Blosc plugin")
    monkeypatch.chdir(tmp_path)
    _unknown_filter(tmp_path / "z.h5", (2, 4, 4, 2))
    _unknown_filter(tmp_path / "g.h5", (2, 2, 2, 2), name="dA")
    np.save("A.npy", np.ones((2, 4, 4, 2)))
    for args, ref in ((["forward", "z.h5", "--f", "2"], "z.h5:/A_prev"),
                      (["gradcheck", "z.h5", "--f", "2"], "z.h5:/A_prev"),
                      (["backward", "A.npy", "--f", "2", "--grad", "g.h5"], "g.h5")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert r.stderr.endswith(f"'{ref}' needs HDF5 filter 32001; see HDF5_PLUGIN_PATH\n"), (args, r.stderr)
    r = runner.invoke(app, ["shape", "--like", "z.h5", "--f", "2", "--json"])  # the shape needs no chunk
    assert r.exit_code == 0 and '"input": [2, 4, 4, 2]' in r.stdout
