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
