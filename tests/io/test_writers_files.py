"""Outputs as files the user creates: the umask's mode, --force keeps the old mode, symlinks are never
written through, long names work."""

import os
import stat

import numpy as np
import pytest

from cnncli.errors import OutputError
from cnncli.io.writers import write_results

RESULTS = {"Z": np.arange(6.0).reshape(1, 2, 3, 1), "dW": np.ones(2)}


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def read_z(path):
    """The main result Z of an output file."""
    path = str(path)
    if path.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            return f["Z"][()]
    return np.load(path) if path.endswith(".npy") else np.load(path)["Z"]


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_output_gets_0666_less_the_umask(tmp_path, umask, ext, mask):
    umask(mask)
    write_results(str(tmp_path / f"out{ext}"), RESULTS, main="Z")
    assert mode(tmp_path / f"out{ext}") == 0o666 & ~mask
    assert os.listdir(tmp_path) == [f"out{ext}"]


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
def test_force_keeps_the_replaced_files_mode(tmp_path, umask, ext):
    umask(0o022)
    path = tmp_path / f"out{ext}"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    write_results(str(path), RESULTS, main="Z", force=True)
    assert mode(path) == 0o640
    if ext == ".npy":
        np.testing.assert_array_equal(np.load(path), RESULTS["Z"])


def test_a_dangling_symlink_is_refused_with_or_without_force(tmp_path):
    link = tmp_path / "out.npy"
    os.symlink(tmp_path / "missing" / "target.npy", link)
    for force in (False, True):
        with pytest.raises(OutputError) as info:
            write_results(str(link), RESULTS, main="Z", force=force)
        target = str(tmp_path / "missing" / "target.npy")
        assert str(info.value) == f"-o {str(link)!r} is a broken link (to {target!r}); remove it or rename"
    assert os.path.islink(link) and sorted(os.listdir(tmp_path)) == ["out.npy"]


def test_force_replaces_a_live_symlink_and_never_writes_through_it(tmp_path):
    target = tmp_path / "target.npy"
    target.write_bytes(b"keep me")
    link = tmp_path / "out.npy"
    os.symlink(target, link)
    write_results(str(link), RESULTS, main="Z", force=True)
    assert not os.path.islink(link) and target.read_bytes() == b"keep me"
    np.testing.assert_array_equal(np.load(link), RESULTS["Z"])


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
def test_a_name_of_246_characters_works(tmp_path, ext):
    name = "a" * (246 - len(ext)) + ext  # the temporary name must not exceed NAME_MAX (255)
    write_results(str(tmp_path / name), RESULTS, main="Z")
    assert os.listdir(tmp_path) == [name]
    name = "é" * 125 + ext  # 250 + 4 bytes in UTF-8: cut on bytes for the temporary name
    write_results(str(tmp_path / name), RESULTS, main="Z")
    assert name in os.listdir(tmp_path) and len(os.listdir(tmp_path)) == 2


def test_a_destination_under_a_file_or_with_a_name_too_long_is_refused_before_any_work(tmp_path):
    from cnncli.errors import OutputError
    from cnncli.io.writers import check_destination

    (tmp_path / "A.npy").write_bytes(b"x")
    with pytest.raises(OutputError, match=r"^-o '.*A\.npy/x\.npy': '.*A\.npy' is a file, not a folder$"):
        check_destination(str(tmp_path / "A.npy" / "x.npy"), force=False)
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    with pytest.raises(OutputError, match=f"the file name is over {limit} bytes, too long for its folder$"):
        check_destination(str(tmp_path / ("a" * (limit - 3) + ".npy")), force=False)
    assert check_destination(str(tmp_path / ("a" * (limit - 4) + ".npy")), force=False) == "npy"


def _temporaries(folder):
    """Mode of every temporary name in ``folder`` (``.NAME.*.part`` files, ``.NAME.*.parts`` folders)."""
    return {entry: mode(folder / entry) for entry in os.listdir(folder) if entry.startswith(".")}


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5", "-"])
@pytest.mark.parametrize("old_mode", [None, 0o444])
def test_temporaries_stay_writable_whatever_the_umask_or_the_replaced_mode(tmp_path, umask, monkeypatch, ext,
                                                                             old_mode):
    # the result's mode was given to the temporary file before it was written: under umask 0222, or with --force
    # over a 0444 file, cnncli then could not open its own file ("Permission denied (.out.npy.x1y2.part)");
    # root writes anyway, so the modes themselves are checked here (test_writing_without_owner_write_succeeds
    # runs it for real)
    from cnncli.io.writers import ResultWriter

    umask(0o222)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where -o - keeps its bytes before they are sent
    path = "-" if ext == "-" else str(tmp_path / f"out{ext}")
    if old_mode is not None and ext != "-":
        (tmp_path / f"out{ext}").write_bytes(b"old")
        os.chmod(path, old_mode)
    writer = ResultWriter(path, main="Z", force=True)
    with pytest.raises(KeyboardInterrupt):  # nothing is committed: this test looks only at the temporaries
        with writer:
            writer.create("Z", (1, 2, 3, 1), "float64")
            seen = _temporaries(tmp_path) if ext != "-" else {d: mode(tmp_path / d) for d in os.listdir(tmp_path)}
            assert seen and all(m & 0o200 for m in seen.values()), {k: oct(m) for k, m in seen.items()}
            assert all(m & 0o700 == 0o700 for k, m in seen.items() if os.path.isdir(tmp_path / k)), seen
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ([] if old_mode is None or ext == "-" else [f"out{ext}"])


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
def test_writing_without_owner_write_succeeds(tmp_path, ext):
    # as a user without root's override of permissions: umask 0222 gives a new result 0444, and --force over a
    # 0444 file keeps 0444; both used to fail on cnncli's own temporary file
    import shutil
    import subprocess
    import sys

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: permissions are not enforced")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    code = ("import os, sys, numpy as np; from cnncli.io.writers import write_results; os.umask(0o222); "
            "write_results(sys.argv[1], {'Z': np.arange(6.0).reshape(1, 2, 3, 1), 'dW': np.ones(2)}, main='Z', "
            "force=sys.argv[2] == 'force')")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    new = tmp_path / f"new{ext}"
    old = tmp_path / f"old{ext}"
    old.write_bytes(b"old")
    os.chmod(old, 0o444)
    for path, force in ((new, "no"), (old, "force")):
        r = subprocess.run(prefix + [sys.executable, "-c", code, str(path), force], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0, r.stderr[-500:]
        assert mode(path) == 0o444
        np.testing.assert_array_equal(read_z(path), RESULTS["Z"])
    assert sorted(os.listdir(tmp_path)) == sorted([new.name, old.name])
