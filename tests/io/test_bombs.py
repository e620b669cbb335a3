"""Decompression bombs and oversized inputs: sizes are checked from headers before anything is allocated,
compressed members are inflated only as far as they are read, and a pass over one holds a chunk at a time."""

import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import InputError
from cnncli.io import npy
from cnncli.io.arrays import load_array, open_array

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_bomb(path, shape, name="A_prev", data_bytes=None):
    """An .npz whose member declares ``shape`` float64 and holds ``data_bytes`` zeros (all by default), deflated."""
    head = io.BytesIO()
    np.lib.format.write_array_header_2_0(head, {"descr": "<f8", "fortran_order": False, "shape": shape})
    n = int(np.prod(shape)) * 8 if data_bytes is None else data_bytes
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open(f"{name}.npy", "w", force_zip64=True) as member:
            member.write(head.getvalue())
            while n > 0:
                member.write(block[:min(n, len(block))])
                n -= len(block)


def test_a_pass_over_a_bomb_holds_one_chunk_at_a_time(tmp_path):
    # 512 MiB of zeros in a ~2 MB file: read whole it would take over 600 MB with the interpreter.
    write_bomb(tmp_path / "bomb.npz", (512, 128, 128, 8))
    assert os.path.getsize(tmp_path / "bomb.npz") < 3 * 2**20
    script = ("import resource, sys; from cnncli.cli.app import app; import typer;"
              "code = typer.main.get_command(app).main(sys.argv[1:], standalone_mode=False);"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")
    res = subprocess.run([sys.executable, "-c", script, "forward", str(tmp_path / "bomb.npz"), "--f", "8", "--json"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert res.returncode == 0, res.stderr
    peak_mib = int(res.stderr.splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    assert peak_mib < 350, f"peak RSS {peak_mib:.0f} MiB"
    assert json.loads(res.stdout)["outputs"]["A"]["shape"] == [512, 16, 16, 8]


def test_a_member_larger_than_the_budget_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # The member declares 2**40 bytes and holds none: refused from its header, nothing allocated.
    write_bomb(tmp_path / "huge.npz", (2**17, 1024, 1024, 1), data_bytes=0)
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", str(2**30))
    with pytest.raises(InputError) as info:
        load_array(str(tmp_path / "huge.npz"))
    # 2**17 * 1024 * 1024 * 8 bytes = 2**40 = 1 TiB, against a budget of 2**30 = 1 GiB
    assert str(info.value) == f"'{tmp_path}/huge.npz:A_prev' declares 1.0 TiB; CNNCLI_MEMORY_BYTES allows 1.0 GiB"
    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))
    res = runner.invoke(app, ["forward", str(tmp_path / "A.npy"), "--weights", str(tmp_path / "huge.npz")])
    assert res.exit_code == 2 and res.stderr.startswith(f"cnncli: error: --weights '{tmp_path}/huge.npz:A_prev' "
                                                        "declares 1.0 TiB")
    # as A_prev it streams (a set of any size does), in forward and gradcheck alike: no budget applies, and
    # the first example it reads is found missing, before anything of the declared size is allocated
    fwd = runner.invoke(app, ["forward", str(tmp_path / "huge.npz"), "--f", "2", "-o", str(tmp_path / "out.npy")])
    res = runner.invoke(app, ["gradcheck", str(tmp_path / "huge.npz"), "--f", "2"])
    for r in (fwd, res):
        assert r.exit_code == 2 and r.stderr == (f"cnncli: error: '{tmp_path}/huge.npz:A_prev' is damaged "
                                                 "(cut short: example 0 has 0 of its 8388608 bytes)\n")
    assert not (tmp_path / "out.npy").exists()


def test_shape_like_reads_only_the_member_header(tmp_path, monkeypatch):
    write_bomb(tmp_path / "huge.npz", (2**17, 1024, 1024, 1), data_bytes=0)

    def refuse(*args, **kwargs):
        raise AssertionError("--like read array data")

    monkeypatch.setattr(npy, "read_npy_data", refuse)
    res = runner.invoke(app, ["shape", "--like", str(tmp_path / "huge.npz"), "--f", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["input"] == [2**17, 1024, 1024, 1]


def test_a_streamed_member_reads_rows_in_any_order(tmp_path):
    x = np.arange(5 * 3 * 2 * 1, dtype=np.float32).reshape(5, 3, 2, 1)
    np.savez_compressed(tmp_path / "x.npz", x=x)
    with open_array(str(tmp_path / "x.npz")) as s:
        assert s.lazy and s.shape == x.shape and s.dtype == np.float32
        np.testing.assert_array_equal(s.read(3, 5), x[3:5])
        np.testing.assert_array_equal(s.read(0, 2), x[0:2])  # backwards: re-inflated from the start
        np.testing.assert_array_equal(s.read(), x)
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(x))
    with open_array(str(tmp_path / "f.npz")) as s:
        np.testing.assert_array_equal(s.read(1, 4), x[1:4])


def test_a_member_cut_short_while_streamed_names_the_example_it_ends_in(tmp_path):
    # 4 examples of 8*8*1 float64 (512 bytes each), 1100 bytes of data: examples 0 and 1 whole, 76 bytes of 2
    write_bomb(tmp_path / "cut.npz", (4, 8, 8, 1), data_bytes=1100)
    text = f"'{tmp_path}/cut.npz:A_prev'"
    with open_array(str(tmp_path / "cut.npz")) as s:
        np.testing.assert_array_equal(s.read(0, 2), np.zeros((2, 8, 8, 1)))
        with pytest.raises(InputError) as info:
            s.read(1, 4)  # from example 1: 588 bytes of the 1536 asked for
        assert info.value.whole == f"{text} is damaged (cut short: example 2 has 76 of its 512 bytes)"
        with pytest.raises(InputError) as info:
            s.read(3, 4)  # the data ends before example 3 begins
        assert info.value.whole == f"{text} is damaged (cut short: example 3 has 0 of its 512 bytes)"


def test_a_truncated_member_is_a_corrupt_file(tmp_path):
    write_bomb(tmp_path / "cut.npz", (4, 8, 8, 1), data_bytes=100)
    with pytest.raises(InputError, match=r"is damaged \(cut short: 100 of 2048 data bytes\)$"):
        load_array(str(tmp_path / "cut.npz"))


def test_hdf5_whole_reads_are_bounded_too(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("W", shape=(3, 3, 64, 64), dtype="f8", compression="gzip")  # all fill value: tiny file
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", "100000")
    # 3 * 3 * 64 * 64 * 8 = 294912 bytes = 288 KiB; 100000 bytes = 97.66 KiB
    with pytest.raises(InputError, match=r"w.h5:W' declares 288.0 KiB; CNNCLI_MEMORY_BYTES allows 97.7 KiB$"):
        load_array(str(tmp_path / "w.h5:W"))


def test_stdin_is_read_within_the_budget(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 50, 50, 1)))
    env = dict(os.environ, PYTHONPATH=ROOT, CNNCLI_MEMORY_BYTES="10000")
    res = subprocess.run([sys.executable, "-m", "cnncli", "forward", "-", "--f", "2"], input=buf.getvalue(),
                         capture_output=True, env=env, timeout=60)
    assert res.returncode == 2
    assert res.stderr == b"cnncli: error: standard input holds over the 9.8 KiB CNNCLI_MEMORY_BYTES allows\n"


class _Pipe:
    """A pipe of ``size`` bytes of ``fill`` that records each read's size (never the budget at once)."""

    def __init__(self, size, fill=b"y"):
        self.left, self.fill, self.asked = size, fill, []

    def read(self, n):
        self.asked.append(n)
        n = min(n, self.left)
        self.left -= n
        return self.fill * n


def test_a_pipe_is_read_in_steps_not_with_the_whole_budget_reserved(monkeypatch):
    from cnncli.io.budget import READ_STEP, read_bounded

    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", str(10**29))  # once an OverflowError (exit 3) in read(budget + 1)
    pipe = _Pipe(3 * READ_STEP + 5)
    assert read_bounded(pipe, "standard input") == b"y" * (3 * READ_STEP + 5)
    assert max(pipe.asked) == READ_STEP
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", str(2 * READ_STEP))
    with pytest.raises(InputError, match="standard input holds over the 2.0 MiB CNNCLI_MEMORY_BYTES allows"):
        read_bounded(_Pipe(10 * READ_STEP), "standard input")


def test_standard_input_that_is_not_npy_is_refused_at_its_first_bytes(monkeypatch):
    from cnncli.io import readers

    pipe = _Pipe(10**12)  # `yes |`: endless in effect
    monkeypatch.setattr(readers.sys, "stdin", type("Stdin", (), {"buffer": pipe})())
    with pytest.raises(InputError, match=r"^'-' is not .npy data \(it starts with 'yyyy"):
        readers._stdin_bytes()
    assert sum(pipe.asked) <= 1 << 16


def test_a_compressed_chunk_larger_than_the_budget_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    path = tmp_path / "chunkbomb.h5"
    with h5py.File(path, "w") as f:  # one 8 MiB chunk of zeros: a few KB on disk
        d = f.create_dataset("x", shape=(4, 64, 64, 64), dtype="f8", chunks=(4, 64, 64, 64), compression="gzip")
        d[0, 0, 0, 0] = 1.0
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", str(4 * 2**20))
    message = f"'{path}:/x': 8.0 MiB chunks; CNNCLI_MEMORY_BYTES allows 4.0 MiB"
    with open_array(str(path)) as stream:  # the shape alone (shape --like) inflates nothing: not refused
        assert stream.shape == (4, 64, 64, 64)
        with pytest.raises(InputError, match=f"^{message}$".replace(".", r"\.")):
            stream.read(0, 1)
    grown = tmp_path / "grown.h5"
    with h5py.File(grown, "w") as f:  # 2 MiB of data in a chunk of 8 MiB (an extendable dataset's chunk)
        d = f.create_dataset("x", shape=(1, 64, 64, 64), maxshape=(None, 64, 64, 64), dtype="f8",
                             chunks=(4, 64, 64, 64), compression="gzip")
        d[0, 0, 0, 0] = 1.0
    with pytest.raises(InputError, match="grown.h5:/x': 8.0 MiB chunks; CNNCLI_MEMORY_BYTES allows"):
        load_array(str(grown))  # a whole read within the budget still inflates the whole chunk
    r = CliRunner().invoke(app, ["shape", "--like", str(path), "--f", "3", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["layers"][0]["output"] == [4, 62, 62, 64]
    r = CliRunner().invoke(app, ["forward", str(path), "--f", "2"])  # refused whole or by its chunks: one line
    assert r.exit_code == 2 and r.stderr.endswith("CNNCLI_MEMORY_BYTES allows 4.0 MiB\n") and r.stderr.count("\n") == 1


def test_large_compressed_chunks_are_inflated_once_not_once_per_batch(tmp_path):
    path = tmp_path / "big_chunks.h5"
    data = np.random.default_rng(5).integers(0, 255, (16, 64, 64, 80)).astype(np.float64)
    with h5py.File(path, "w") as f:  # one chunk of 42 MB, above h5py's default chunk cache
        f.create_dataset("x", data=data, chunks=data.shape, compression="gzip", compression_opts=1)
    with open_array(str(path)) as stream:
        rows = [stream.read(i, i + 1) for i in range(16)]
        slots, held, w0 = stream._data.id.get_access_plist().get_chunk_cache()
        assert held >= data.nbytes
    np.testing.assert_array_equal(np.concatenate(rows), data)


def test_a_refusal_whose_sizes_round_alike_gives_them_in_bytes(tmp_path, monkeypatch):
    # 2**20 declared against a budget one byte short: both would read "1.0 MiB" (the budget rounds up)
    np.save(tmp_path / "M.npy", np.zeros(2**17))  # 2**20 bytes of float64
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", str(2**20 - 1))
    with pytest.raises(InputError) as info:
        load_array(str(tmp_path / "M.npy"))
    assert str(info.value) == f"'{tmp_path}/M.npy' declares 1048576 bytes; CNNCLI_MEMORY_BYTES allows 1048575 bytes"


def test_a_refusal_over_the_default_budget_says_the_budget_not_a_setting_never_made(tmp_path, monkeypatch):
    # CNNCLI_MEMORY_BYTES unset: the budget is half the machine's memory, here said to be 2 MiB (budget 1 MiB)
    from cnncli.io import budget

    monkeypatch.delenv("CNNCLI_MEMORY_BYTES", raising=False)
    monkeypatch.setattr(budget, "physical_memory", lambda: 2 * 2**20)
    monkeypatch.chdir(tmp_path)
    write_bomb(tmp_path / "x.npz", (1, 128, 128, 16), data_bytes=0)
    (tmp_path / "bomb3.npz").write_bytes((tmp_path / "x.npz").read_bytes())
    with pytest.raises(InputError) as info:  # a flag's context leaves no room: fewer words still say the budget
        load_array("bomb3.npz", role="--weights")
    assert str(info.value) == "--weights 'bomb3.npz:A_prev': 2.0 MiB, over the 1.0 MiB budget"  # 76 columns  # 128 * 128 * 16 * 8 bytes = 2 MiB
    with pytest.raises(InputError) as info:
        load_array("x.npz")
    assert info.value.whole == ("'x.npz:A_prev' declares 2.0 MiB; the budget is 1.0 MiB (half the memory; "
                                "CNNCLI_MEMORY_BYTES sets it)")
    assert str(info.value) == "'x.npz:A_prev' declares 2.0 MiB; the default budget is 1.0 MiB"  # 76 columns
    with h5py.File("chunky.h5", "w") as f:  # one 8 MiB chunk
        f.create_dataset("x", shape=(4, 64, 64, 64), dtype="f8", chunks=(4, 64, 64, 64), compression="gzip")
    with open_array("chunky.h5") as stream, pytest.raises(InputError) as info:
        stream.read(0, 1)
    assert str(info.value) == "'chunky.h5:/x': 8.0 MiB chunks; the default budget is 1.0 MiB"  # 76 columns
    with pytest.raises(InputError) as info:
        budget.read_bounded(io.BytesIO(bytes(3 * 2**20)), "standard input")
    assert str(info.value) == "standard input: over the 1.0 MiB budget (CNNCLI_MEMORY_BYTES)"  # the whole 81
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", str(2**20))  # set: the user knows the value, the line names it
    with pytest.raises(InputError) as info:
        load_array("x.npz")
    assert info.value.whole == "'x.npz:A_prev' declares 2.0 MiB; CNNCLI_MEMORY_BYTES allows 1.0 MiB"  # 81 columns
    assert str(info.value) == "'x.npz:A_prev' declares 2.0 MiB, over CNNCLI_MEMORY_BYTES"
