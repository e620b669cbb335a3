"""HDF5 inputs never read other files unless --allow-external; empty and unreadable objects are named."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import ExternalDataError, InputError
from cnncli.io.arrays import load_array, open_array
from cnncli.io.cases import load_case

ROOT = str(Path(__file__).resolve().parents[2])

runner = CliRunner()
SECRET = b"root:x:0:0:root:/root:/bin/bash\n"  # 33 bytes a hostile case file would copy out


@pytest.fixture
def d(tmp_path):
    (tmp_path / "secret.txt").write_bytes(SECRET[:32])
    values = np.arange(16.0).reshape(1, 4, 4, 1)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = values
        f["g/x"] = values
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("raw", shape=(1, 1, 4, 8), dtype="u1", external=[(str(tmp_path / "secret.txt"), 0, 32)])
        f["elink"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
        f["egroup"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/g")
        f["soft"] = h5py.SoftLink("/egroup/x")
        layout = h5py.VirtualLayout(shape=(1, 4, 4, 1), dtype="f8")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "data", shape=(1, 4, 4, 1))
        f.create_virtual_dataset("vds", layout)
        f["local"] = values
        inside = h5py.VirtualLayout(shape=(1, 4, 4, 1), dtype="f8")
        inside[:] = h5py.VirtualSource(f["local"])
        f.create_virtual_dataset("vds_inside", inside)
        f["empty"] = h5py.Empty("f8")
    with h5py.File(tmp_path / "case.h5", "w") as f:  # the attack of the issue: A_prev is the password file
        f.create_dataset("A_prev", shape=(1, 1, 4, 8), dtype="u1", external=[(str(tmp_path / "secret.txt"), 0, 32)])
        f.attrs["layer"], f.attrs["f"] = "pool", 1
    return tmp_path, values


@pytest.mark.parametrize("name, words", [
    ("raw", "keeps its data in '{d}/secret.txt'"),
    ("elink", "links to '{d}/other.h5:/data'"),
    ("soft", "links to '{d}/other.h5:/g'"),  # a soft link through one
    ("egroup/x", "links to '{d}/other.h5:/g'"),
    ("vds", "reads '{d}/other.h5:data' (virtual)"),
])
def test_reading_another_file_is_refused_naming_dataset_and_target(d, name, words):
    path, _ = d
    for read in (load_array, lambda ref: open_array(ref).close()):
        with pytest.raises(ExternalDataError) as info:
            read(f"{path}/t.h5:{name}")
        message = str(info.value)
        assert message.startswith(f"'{path}/t.h5:/{name}' ") and words.format(d=path) in message
        assert message.endswith(": refused without --allow-external")


@pytest.mark.parametrize("name", ["elink", "soft", "egroup/x", "vds"])
def test_allow_external_follows_links_and_virtual_sources(d, name):
    path, values = d
    np.testing.assert_array_equal(load_array(f"{path}/t.h5:{name}", allow_external=True).reshape(values.shape),
                                  values)


def test_a_virtual_dataset_inside_its_own_file_is_read(d):
    path, values = d
    np.testing.assert_array_equal(load_array(f"{path}/t.h5:vds_inside"), values)


def test_cli_refuses_the_password_file_copy_and_writes_nothing(d):
    path, _ = d
    out = path / "out.npy"
    for command in (["forward"], ["backward", "--grad", str(path / "t.h5:local")], ["gradcheck"]):
        res = runner.invoke(app, command + [str(path / "case.h5"), "-o", str(out)] if command[0] != "gradcheck"
                            else command + [str(path / "case.h5")])
        assert res.exit_code == 2, res.output
        assert res.stderr == (f"cnncli: error: '{path}/case.h5:/A_prev' keeps its data in '{path}/secret.txt': "
                              "refused without --allow-external\n")
        assert not out.exists()
    assert not [p for p in os.listdir(path) if p.startswith(".out")]


def test_cli_allow_external_reads_the_external_storage(d):
    path, _ = d
    res = runner.invoke(app, ["forward", str(path / "case.h5"), "--allow-external", "-o", str(path / "out.npy")])
    assert res.exit_code == 0, res.output
    expected = np.frombuffer(SECRET[:32], dtype=np.uint8).reshape(1, 1, 4, 8).astype(np.float64)
    np.testing.assert_array_equal(np.load(path / "out.npy"), expected)  # pool f=1: the bytes themselves
    res = runner.invoke(app, ["gradcheck", str(path / "t.h5:elink"), "--f", "2", "--allow-external", "--json"])
    assert res.exit_code == 0, res.output


def test_case_file_with_an_external_link_as_w_is_refused(d):
    path, values = d
    with h5py.File(path / "c2.h5", "w") as f:
        f["A_prev"] = values
        f["W"] = h5py.ExternalLink(str(path / "other.h5"), "/data")
    res = runner.invoke(app, ["forward", str(path / "c2.h5")])
    assert res.exit_code == 2
    # the case's own W, named as the case names it (it said --weights, a flag not given)
    assert res.stderr.startswith(f"cnncli: error: '{path}/c2.h5:/W' links to '{path}/other.h5:/data'")
    with pytest.raises(ExternalDataError):
        load_case(str(path / "c2.h5"))
    assert load_case(str(path / "c2.h5"), allow_external=True).arrays["W"].shape == (1, 4, 4, 1)


def test_empty_dataset_and_attribute_are_named(d):
    path, values = d
    with pytest.raises(InputError, match=r"^'.*/t.h5:/empty' is an empty dataset \(h5py.Empty"):
        load_array(f"{path}/t.h5:empty")
    with h5py.File(path / "c3.h5", "w") as f:
        f["A_prev"] = values
        f.attrs["layer"], f.attrs["f"] = "pool", h5py.Empty("i8")
    res = runner.invoke(app, ["forward", str(path / "c3.h5")])
    assert (res.exit_code, res.stderr) == (2, f"cnncli: error: '{path}/c3.h5': attribute 'f' is empty; give it a "
                                              "value or delete it\n")


def test_an_unreadable_attribute_names_file_and_attribute(d):
    path, values = d
    with h5py.File(path / "c4.h5", "w") as f:
        f["A_prev"] = values
        f.attrs["layer"], f.attrs["f"] = "pool", 2
        opaque = h5py.h5t.create(h5py.h5t.OPAQUE, 4)
        opaque.set_tag(b"blob")
        h5py.h5a.create(f.id, b"blob", opaque, h5py.h5s.create(h5py.h5s.SCALAR))
    res = runner.invoke(app, ["forward", str(path / "c4.h5"), "-o", str(path / "o.h5")])
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1
    assert res.stderr == f"cnncli: error: '{path}/c4.h5': attribute 'blob' is unreadable; store a number or a word\n"
    assert not (path / "o.h5").exists()


def test_a_valid_npy_with_a_large_header_is_read_not_called_pickled(tmp_path):
    values = np.arange(6.0).reshape(1, 2, 3, 1)
    buf = io.BytesIO()
    np.save(buf, values)
    raw = buf.getvalue()
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + header_len].rstrip(b"\n").rstrip(b" ")
    big = header + b" " * (20000 - len(header) - 1) + b"\n"  # numpy itself refuses headers over 10000 bytes
    data = b"\x93NUMPY\x02\x00" + len(big).to_bytes(4, "little") + big + values.tobytes()
    (tmp_path / "big.npy").write_bytes(data)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(tmp_path / "big.npy")
    np.testing.assert_array_equal(load_array(str(tmp_path / "big.npy")), values)
    res = runner.invoke(app, ["forward", str(tmp_path / "big.npy"), "--f", "1", "--json"])
    assert res.exit_code == 0, res.output
    huge = b"\x93NUMPY\x02\x00" + (2**24).to_bytes(4, "little") + b" " * 100
    (tmp_path / "huge.npy").write_bytes(huge)
    res = runner.invoke(app, ["forward", str(tmp_path / "huge.npy"), "--f", "1"])
    assert res.exit_code == 2 and "pickle" not in res.stderr
    assert res.stderr == (f"cnncli: error: '{tmp_path}/huge.npy' has a 16777216-byte header; at most "
                          "1048576 is read\n")


def test_a_file_whose_only_member_is_an_external_link_picks_it(tmp_path):
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["A_prev"] = np.arange(32.0).reshape(1, 4, 4, 2)
    with h5py.File(tmp_path / "onlylink.h5", "w") as f:
        f["x"] = h5py.ExternalLink(str(tmp_path / "target.h5"), "/A_prev")
    src = str(tmp_path / "onlylink.h5")
    r = CliRunner().invoke(app, ["forward", src, "--f", "2"])
    assert r.exit_code == 2  # was "holds 0 datasets (none)": now the link itself, refused by default
    assert r.stderr == (f"cnncli: error: '{src}:/x' links to '{tmp_path / 'target.h5'}:/A_prev': "
                        "refused without --allow-external\n")
    r = CliRunner().invoke(app, ["forward", src, "--f", "2", "--allow-external", "-o", str(tmp_path / "P.npy")])
    assert r.exit_code == 0, r.output
    expected = np.arange(32.0).reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4, 5).reshape(1, 2, 2, 4, 2).max(3)
    np.testing.assert_array_equal(np.load(tmp_path / "P.npy"), expected)


def test_a_case_file_whose_a_prev_is_a_group_is_not_read_as_its_only_dataset(tmp_path):
    path = tmp_path / "case.h5"
    with h5py.File(path, "w") as f:
        f.create_group("A_prev")
        f["W"] = np.ones((3, 3, 1, 2))
    r = CliRunner().invoke(app, ["forward", str(path), "--f", "2"])
    assert r.exit_code == 2
    assert r.stderr == f"cnncli: error: '{path}': its A_prev is a group, not the input array\n"


def test_shape_like_takes_allow_external_as_the_refusal_says(tmp_path):
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["A_prev"] = np.zeros((2, 9, 7, 3))
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["A_prev"] = h5py.ExternalLink(str(tmp_path / "target.h5"), "/A_prev")
    ref = f"{tmp_path / 'link.h5'}:/A_prev"
    r = CliRunner().invoke(app, ["shape", "--like", ref, "--f", "3", "--json"])
    assert r.exit_code == 2 and r.stderr.endswith("refused without --allow-external\n")
    r = CliRunner().invoke(app, ["shape", "--like", ref, "--f", "3", "--json", "--allow-external"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["layers"][0]["output"] == [2, 7, 5, 3]
    r = CliRunner().invoke(app, ["shape", "--f", "3", "--allow-external"])
    assert r.exit_code == 2 and r.stderr == "cnncli: error: --allow-external lets --like read another file; give --like ARRAY\n"


def test_one_dataset_beside_an_external_link_is_still_the_only_dataset(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("grp")
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["x"] = np.arange(16.0).reshape(1, 4, 4, 1)
        f["ext"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/grp")
    r = CliRunner().invoke(app, ["forward", str(tmp_path / "one.h5"), "--f", "2", "-o", str(tmp_path / "P.npy")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "P.npy")[0, :, :, 0], [[5.0, 7.0], [13.0, 15.0]])


def test_a_case_file_without_attributes_still_asks_for_the_layer_kind(tmp_path):
    with h5py.File(tmp_path / "case.h5", "w") as f:
        f["A_prev"] = np.ones((1, 4, 4, 1))
        f["dZ"] = np.ones((1, 2, 2, 1))
    r = CliRunner().invoke(app, ["forward", str(tmp_path / "case.h5")])
    assert r.exit_code == 2
    assert r.stderr == "cnncli: error: layer kind unknown: give --layer, --weights (conv) or --f (pool)\n"


def test_a_group_a_prev_is_caught_through_a_pipe_too(tmp_path):
    path = tmp_path / "grp.h5"
    with h5py.File(path, "w") as f:
        f.create_group("A_prev")
        f["W"] = np.ones((1, 4, 4, 1))
    res = subprocess.run(["bash", "-c", f"{sys.executable} -m cnncli forward <(cat {path}) --f 2 --json"],
                         capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert res.returncode == 2 and res.stdout == b""
    assert res.stderr.endswith(b": its A_prev is a group, not the input array\n")


def _chain(path, depth, fan=1, bottom_external=None):
    """``d0`` (plain, or external storage over ``bottom_external``), then ``d1..d<depth>`` each a virtual
    dataset mapping the one before ``fan`` times (in column strips), all in one file."""
    shape = (1, 4, 4, 1)
    with h5py.File(path, "w") as f:
        if bottom_external:
            f.create_dataset("d0", shape=shape, dtype="u1", external=[(str(bottom_external), 0, 16)])
        else:
            f["d0"] = np.arange(16, dtype="u1").reshape(shape)
        for i in range(1, depth + 1):
            layout = h5py.VirtualLayout(shape=shape, dtype="u1")
            for k in range(fan):
                cols = slice(4 * k // fan, 4 * (k + 1) // fan)
                layout[:, :, cols] = h5py.VirtualSource(".", f"d{i - 1}", shape=shape)[:, :, cols]
            f.create_virtual_dataset(f"d{i}", layout)


def test_a_chain_of_virtual_datasets_however_deep_is_followed_to_the_file_it_reads(d):
    """Review: a chain of in-file virtual datasets deeper than the check's old depth limit (32) was
    accepted unchecked, and its bottom, stored in /etc/passwd, read. Now every link is followed."""
    path, _ = d
    _chain(path / "chain.h5", 40, bottom_external=path / "secret.txt")
    for name in ("d1", "d33", "d40"):
        with pytest.raises(ExternalDataError) as info:
            load_array(f"{path}/chain.h5:{name}")
        assert str(info.value) == (f"'{path}/chain.h5:/{name}' keeps its data in '{path}/secret.txt': "
                                   "refused without --allow-external")
    res = runner.invoke(app, ["forward", f"{path}/chain.h5:/d40", "--f", "1", "-o", str(path / "out.npy")])
    assert res.exit_code == 2 and "keeps its data in" in res.stderr and not (path / "out.npy").exists()
    got = load_array(f"{path}/chain.h5:d40", allow_external=True)
    np.testing.assert_array_equal(got.ravel(), np.frombuffer(SECRET[:16], dtype=np.uint8))


def test_datasets_mapped_many_times_are_counted_as_the_library_would_read_them(d):
    """Review: each dataset mapping the one before twice made the check 2**depth visits (a 20 KB file
    at depth 18 ran past a minute), and the HDF5 library's own read is 2**depth as well (a minute at
    depth 30). The check visits each dataset once and counts the reads in closed form: up to
    MAX_VIRTUAL_SOURCES (4096) they are made, beyond the dataset is refused at once."""
    import time

    path, _ = d
    _chain(path / "fan.h5", 30, fan=2)  # d<k> resolves 2**(k+1) - 2 sources: d11 4094, d12 8190
    np.testing.assert_array_equal(load_array(f"{path}/fan.h5:d11").ravel(), np.arange(16))
    start = time.perf_counter()
    for name in ("d12", "d30"):
        with pytest.raises(ExternalDataError) as info:
            load_array(f"{path}/fan.h5:{name}")
        assert str(info.value) == (f"'{path}/fan.h5:/{name}' maps more than 4096 virtual sources, too many to "
                                   "check: refused without --allow-external")
    assert time.perf_counter() - start < 5  # 2**30 visits were days
    res = runner.invoke(app, ["forward", f"{path}/fan.h5:/d30", "--f", "1", "--json"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "too many" in res.stderr


def test_the_count_is_exact_at_the_limit(d, monkeypatch):
    from cnncli.io import hdf5

    path, _ = d
    _chain(path / "many.h5", 3, fan=4)  # d3 resolves 4 * (1 + 4 * (1 + 4)) = 84 sources
    monkeypatch.setattr(hdf5, "MAX_VIRTUAL_SOURCES", 83)
    with pytest.raises(ExternalDataError, match="maps more than 83 virtual sources"):
        load_array(f"{path}/many.h5:d3")
    np.testing.assert_array_equal(load_array(f"{path}/many.h5:d3", allow_external=True).ravel(), np.arange(16))
    monkeypatch.setattr(hdf5, "MAX_VIRTUAL_SOURCES", 84)
    np.testing.assert_array_equal(load_array(f"{path}/many.h5:d3").ravel(), np.arange(16))


def test_virtual_datasets_mapping_each_other_in_a_cycle_are_refused(d):
    path, _ = d
    shape = (1, 4, 4, 1)
    with h5py.File(path / "cycle.h5", "w") as f:
        for name, other in (("a", "b"), ("b", "a")):
            layout = h5py.VirtualLayout(shape=shape, dtype="f8")
            layout[:] = h5py.VirtualSource(".", other, shape=shape)
            f.create_virtual_dataset(name, layout)
    with pytest.raises(ExternalDataError, match="too many to check"):
        load_array(f"{path}/cycle.h5:a")
