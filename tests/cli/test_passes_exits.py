"""Exit codes of the environment: signals during a write, readers that go away, closed or full standard streams.

Real subprocesses: these are about file descriptors and signals, which an in-process runner does not have.
"""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CNNCLI = [sys.executable, "-m", "cnncli"]
ENV = dict(os.environ, PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(3).integers(0, 255, (4000, 16, 16, 3), dtype=np.uint8)
    return path


@pytest.mark.parametrize("signum, code, words, out", [
    (signal.SIGTERM, 143, "terminated", "out.h5"),
    (signal.SIGHUP, 129, "hung up", "out.npz"),  # .npz: its .parts/ folder too
    (signal.SIGTERM, 143, "terminated", "-"),    # stdout: its temporary folder
])
def test_sigterm_and_sighup_mid_write_leave_no_temporary_file(tmp_path, big, signum, code, words, out):
    target = "-" if out == "-" else str(tmp_path / out)
    if out != "-":
        (tmp_path / out).write_bytes(b"old result")
    env = dict(ENV, CNNCLI_CHUNK_BYTES="1", TMPDIR=str(tmp_path))  # one example per chunk: a slow stream
    proc = subprocess.Popen(CNNCLI + ["forward", f"{big}:/x", "--f", "2", "-o", target, "--force"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not [p for p in os.listdir(tmp_path) if p.endswith(".part") or p.startswith("cnncli-")]:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert stderr.decode().splitlines()[-1:] == [f"cnncli: error: {words}"] and b"Traceback" not in stderr
    assert stdout == b""
    assert sorted(os.listdir(tmp_path)) == ([] if out == "-" else [out])
    if out != "-":
        assert (tmp_path / out).read_bytes() == b"old result"


def _ignoring(*signums):
    """A preexec_fn that starts the child with ``signums`` ignored, as nohup (SIGHUP) and a shell's
    background job (SIGINT) do."""
    def start():
        for signum in signums:
            signal.signal(signum, signal.SIG_IGN)
    return start


def test_signals_ignored_at_start_stay_ignored_mid_write(tmp_path, big):
    # `nohup cnncli forward ... &` then logging out: the SIGHUP nohup ignores ended the run (129, no output),
    # because the write's guard and the app set handlers over the inherited SIG_IGN
    env = dict(ENV, CNNCLI_CHUNK_BYTES="3000", TMPDIR=str(tmp_path))  # a few examples a chunk: 2-4 s in all
    out = tmp_path / "out.h5"
    proc = subprocess.Popen(CNNCLI + ["forward", f"{big}:/x", "--f", "2", "-o", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_ignoring(signal.SIGHUP, signal.SIGINT))
    deadline = time.time() + 30
    while not [p for p in os.listdir(tmp_path) if p.endswith(".part")]:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGHUP)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    with h5py.File(out, "r") as f:
        assert f["A"].shape == (4000, 8, 8, 3)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]


@pytest.mark.parametrize("args", [
    ["forward", "{A}", "--f", "2", "-o", "-"],
    ["shape", "--f", "3", "--stride", "2", "--json"],
    ["shape", "--f", "3", "--stride", "2"],
    ["gradcheck", "--json"],
])
def test_a_reader_that_goes_away_gives_0_quietly(tmp_path, args):
    np.save(tmp_path / "A.npy", np.ones((64, 32, 32, 3)))
    proc = subprocess.Popen(CNNCLI + [a.format(A=tmp_path / "A.npy") for a in args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has written anything (it is still importing)
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0, stderr  # not 1, which means a failed check
    assert b"Traceback" not in stderr and b"error" not in stderr


def shell(command, **kw):
    return subprocess.run(["bash", "-c", command], env=ENV, capture_output=True, timeout=60, **kw)


def test_closed_stdin_is_an_input_error_when_it_is_read(tmp_path):
    res = shell(f"{sys.executable} -m cnncli forward - --f 2 <&-")
    assert (res.returncode, res.stderr) == (2, b"cnncli: error: stdin is closed ('<&-'): pipe .npy bytes into "
                                               b"'-' or give a file\n")
    res = shell(f"{sys.executable} -m cnncli shape --f 3 --input 8 --json <&-")
    assert res.returncode == 0 and b'"output"' in res.stdout  # not read: not an error
    res = shell(f"{sys.executable} -m cnncli shape --from - <&-")  # text, not .npy bytes
    assert (res.returncode, res.stderr) == (2, b"cnncli: error: --from: standard input is closed ('<&-'); pipe the "
                                               b"text into '-' or give a file\n")


def test_closed_stdout_is_one_line_and_exit_2(tmp_path):
    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))
    for args in ("shape --f 3", f"forward {tmp_path}/A.npy --f 2 -o {tmp_path}/out.npy", "gradcheck --json"):
        res = shell(f"{sys.executable} -m cnncli {args} >&-")
        assert (res.returncode, res.stderr) == (2, b"cnncli: error: standard output is closed ('>&-'); redirect "
                                                   b"it, e.g. >/dev/null\n")
    assert os.listdir(tmp_path) == ["A.npy"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_bad_input_with_stderr_full_or_closed_still_exits_2(tmp_path):
    for redirect in ("2>/dev/full", "2>&-"):
        res = shell(f"{sys.executable} -m cnncli forward {tmp_path}/missing.npy --f 2 {redirect}")
        assert res.returncode == 2, res
    res = shell(f"{sys.executable} -m cnncli shape --f 3 --json >/dev/full")
    assert res.returncode == 2 and res.stderr.startswith(b"cnncli: error: cannot complete: No space left on device")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_closed_or_full_stderr_changes_no_result(tmp_path):
    # the run's notes (time, dtype) go to stderr; with stderr closed they once went into stdout's .npy bytes
    case = os.path.join(ROOT, "examples", "conv_case.h5")
    quiet = shell(f"{sys.executable} -m cnncli forward {case} -o - 2>/dev/null")
    assert quiet.returncode == 0 and quiet.stdout.startswith(b"\x93NUMPY")
    impl = tmp_path / "prints.py"
    impl.write_text(open(os.path.join(ROOT, "tests", "impls", "correct.py")).read()
                    + "\nprint('hello from the module')\n")
    for redirect in ("2>&-", "2>/dev/full"):
        res = shell(f"{sys.executable} -m cnncli forward {case} -o - {redirect}")
        assert (res.returncode, res.stdout) == (0, quiet.stdout), redirect
        res = shell(f"{sys.executable} -m cnncli gradcheck --impl {impl} {redirect}")
        assert res.returncode == 0 and res.stdout.endswith(b"gradient check: PASS (8/8 functions, method sample)\n")
        res = shell(f"{sys.executable} -m cnncli gradcheck {redirect}")
        assert res.returncode == 0 and b"gradient check: PASS" in res.stdout


@pytest.mark.parametrize("name, value", [("CNNCLI_CHUNK_BYTES", "abc"), ("CNNCLI_CHUNK_BYTES", "1e3"),
                                         ("CNNCLI_CHUNK_BYTES", ""), ("CNNCLI_CHUNK_BYTES", "0"),
                                         ("CNNCLI_MEMORY_BYTES", "x"), ("CNNCLI_MEMORY_BYTES", "-1")])
def test_a_bad_setting_is_one_line_naming_the_variable_not_a_flag(tmp_path, name, value):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((2, 5, 7, 4)))
    np.save(tmp_path / "W.npy", rng.standard_normal((3, 3, 4, 8)))
    res = subprocess.run(CNNCLI + ["forward", str(tmp_path / "A.npy"), "--weights", str(tmp_path / "W.npy"),
                                   "-o", str(tmp_path / "Z.npy")], env=dict(ENV, **{name: value}),
                         capture_output=True, timeout=60)
    assert (res.returncode, res.stderr) == (
        2, f"cnncli: error: {name} must be a positive number of bytes, got {value!r}\n".encode())
    assert sorted(os.listdir(tmp_path)) == ["A.npy", "W.npy"]


@pytest.mark.parametrize("out", ["keep.h5", "keep.npy"])
def test_a_disk_that_refuses_the_output_is_one_line_and_no_file(tmp_path, out):
    # HDF5's write error spans lines of details (time, buf = 0x..., offset): the line keeps its error message
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f["x"] = np.random.default_rng(0).integers(0, 255, (400, 32, 32, 3), dtype=np.uint8)
    res = shell(f"ulimit -f 20; {sys.executable} -m cnncli forward {tmp_path}/big.h5:/x --f 2 -o {tmp_path}/{out}")
    assert (res.returncode, res.stderr) == (2, b"cnncli: error: cannot complete: File too large (writing the output)\n")
    assert os.listdir(tmp_path) == ["big.h5"]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_signal_either_side_of_the_rename_keeps_the_exit_code_honest(tmp_path, monkeypatch, when):
    # exit 143 must mean the old file is untouched: a SIGTERM just after the rename lets the run end (exit 0)
    from typer.testing import CliRunner

    from cnncli.cli import app
    from cnncli.io import writers

    np.save(tmp_path / "A.npy", np.ones((2, 4, 4, 1)))
    out = tmp_path / "out.npy"
    out.write_bytes(b"old result")
    place = writers.ResultWriter._place

    def signalled_place(self):
        if when == "before":
            os.kill(os.getpid(), signal.SIGTERM)
        place(self)
        if when == "after":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writers.ResultWriter, "_place", signalled_place)
    r = CliRunner().invoke(app, ["forward", str(tmp_path / "A.npy"), "--f", "2", "-o", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(out), np.ones((2, 2, 2, 1)))  # the new result, whole
    assert sorted(os.listdir(tmp_path)) == ["A.npy", "out.npy"]


def test_a_bad_memory_setting_is_told_even_when_the_run_would_not_read_it(tmp_path):
    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))  # memory-mapped: the budget is never consulted
    res = subprocess.run(CNNCLI + ["forward", str(tmp_path / "A.npy"), "--f", "2"],
                         env=dict(ENV, CNNCLI_MEMORY_BYTES="abc"), capture_output=True, timeout=60)
    assert (res.returncode, res.stderr) == (2, b"cnncli: error: CNNCLI_MEMORY_BYTES must be a positive number of "
                                               b"bytes, got 'abc'\n")


@pytest.mark.parametrize("value", ["1_000_000", "١٠٠٠"])  # digits only, ASCII: int() takes both of these
def test_a_setting_is_digits_only(tmp_path, value):
    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 1)))
    res = subprocess.run(CNNCLI + ["forward", str(tmp_path / "A.npy"), "--f", "2"],
                         env=dict(ENV, CNNCLI_MEMORY_BYTES=value), capture_output=True, timeout=60)
    assert res.returncode == 2
    # 'a positive number of bytes' took these to 86 and 81 columns
    assert res.stderr == f"cnncli: error: CNNCLI_MEMORY_BYTES must be a positive integer, got {value!r}\n".encode()


@pytest.mark.parametrize("limit, extra", [(0, []), (2000, ["--weights", "W.npy", "--grad", "dZ.npy"])])
def test_every_hdf5_write_that_fails_is_one_line_and_leaves_nothing(tmp_path, limit, extra):
    # 0: creating the file fails; 2000 KiB: the whole dW (2.4 MB) written at the end does
    np.save(tmp_path / "A.npy", np.ones((1, 3, 3, 256)))
    np.save(tmp_path / "W.npy", np.ones((3, 3, 256, 128)))
    np.save(tmp_path / "dZ.npy", np.ones((1, 1, 1, 128)))
    command = "backward" if extra else "forward"
    layer = extra or ["--f", "2"]
    res = shell(f"cd {tmp_path} && ulimit -f {limit}; {sys.executable} -m cnncli {command} A.npy {' '.join(layer)} "
                f"-o out.h5")
    assert (res.returncode, res.stderr) == (2, b"cnncli: error: cannot complete: File too large (writing the output)\n")
    assert sorted(os.listdir(tmp_path)) == ["A.npy", "W.npy", "dZ.npy"]


@pytest.mark.parametrize("args", [["gradcheck"], ["gradcheck", "{A}", "--f", "3", "--stride", "2", "--mode", "average"],
                                  ["gradcheck", "--impl", "{impl}"]])
def test_a_bad_jit_setting_is_refused_by_gradcheck_before_any_work(tmp_path, args):
    # average pooling never asks for the kernel: the setting is checked up front, as forward's is
    np.save(tmp_path / "A.npy", np.random.default_rng(0).standard_normal((2, 6, 6, 3)))
    (tmp_path / "impl.py").write_text("def zero_pad(X, pad):\n    return X\n")
    args = [a.format(A=tmp_path / "A.npy", impl=tmp_path / "impl.py") for a in args]
    res = subprocess.run(CNNCLI + args, env=dict(ENV, CNNCLI_JIT="fast"), capture_output=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (
        2, b"", b"cnncli: error: CNNCLI_JIT must be auto, on or off, got 'fast'\n")


def test_a_bad_jit_setting_is_one_line_and_no_file(tmp_path):
    np.save(tmp_path / "A.npy", np.random.default_rng(0).standard_normal((2, 4, 4, 3)))
    res = subprocess.run(CNNCLI + ["forward", str(tmp_path / "A.npy"), "--f", "2", "-o", str(tmp_path / "Z.npy")],
                         env=dict(ENV, CNNCLI_JIT="fast"), capture_output=True, timeout=60)
    assert (res.returncode, res.stderr) == (2, b"cnncli: error: CNNCLI_JIT must be auto, on or off, got 'fast'\n")
    assert os.listdir(tmp_path) == ["A.npy"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_backward_writes_the_same_bytes_on_either_path(tmp_path, monkeypatch, dtype):
    pytest.importorskip("numba")
    from typer.testing import CliRunner

    from cnncli.cli import app
    from cnncli.engine import pool

    rng = np.random.default_rng(4)
    np.save(tmp_path / "A.npy", rng.standard_normal((3, 9, 9, 5)).astype(np.float32))
    np.save(tmp_path / "dA.npy", rng.standard_normal((3, 4, 4, 5)).astype(np.float32))
    choose, used = pool.max_backward_kernel, []
    monkeypatch.setattr(pool, "max_backward_kernel", lambda *a: used.append(choose(*a) is not None) or choose(*a))
    outs = []
    for mode in ("on", "off"):
        monkeypatch.setenv("CNNCLI_JIT", mode)
        out = tmp_path / f"{mode}.npy"
        r = CliRunner().invoke(app, ["backward", str(tmp_path / "A.npy"), "--f", "3", "--stride", "2", "--dtype",
                                     dtype, "--grad", str(tmp_path / "dA.npy"), "-o", str(out)])
        assert r.exit_code == 0, r.output
        outs.append(out.read_bytes())
    assert used == [True, False]  # the kernel, then the numpy path
    assert np.load(tmp_path / "on.npy").dtype == dtype
    assert outs[0] == outs[1]
def test_a_memory_setting_in_force_is_what_layer_refusals_name(tmp_path, monkeypatch):
    # conv 1x1 over 100x100 with pad 100: one example's output is 300 * 300 * 4 float64 = 2,880,000 bytes
    from typer.testing import CliRunner

    from cnncli.cli import app

    np.save(tmp_path / "A.npy", np.ones((2, 100, 100, 3)))
    np.save(tmp_path / "W.npy", np.ones((1, 1, 3, 4)))
    conv = ["forward", str(tmp_path / "A.npy"), "--weights", str(tmp_path / "W.npy"), "--pad", "100"]
    runner = CliRunner()
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", "100000")
    res = runner.invoke(app, conv)
    assert (res.exit_code, res.stderr) == (
        2, "cnncli: error: output 1x300x300x4 needs 2.7 MiB, over CNNCLI_MEMORY_BYTES\n")
    assert len(res.stderr.rstrip("\n")) <= 80
    # average pooling's padded copy of one example: 102 * 102 * 3 * 8 = 249,696 bytes (its dims would make 81
    # columns)
    res = runner.invoke(app, ["forward", str(tmp_path / "A.npy"), "--f", "2", "--stride", "1", "--pad", "1",
                              "--mode", "average"])
    assert (res.exit_code, res.stderr) == (
        2, "cnncli: error: padded example needs 243.8 KiB, over CNNCLI_MEMORY_BYTES\n")
    # everyday sizes stay within 80 columns (the value set is not repeated: the user knows it)
    np.save(tmp_path / "A1k.npy", np.zeros((1, 1000, 1000, 1), np.float32))
    np.save(tmp_path / "W64.npy", np.zeros((3, 3, 1, 64), np.float32))
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", "100000000")
    res = runner.invoke(app, ["forward", str(tmp_path / "A1k.npy"), "--weights", str(tmp_path / "W64.npy"),
                              "--pad", "same"])
    assert res.stderr == "cnncli: error: output 1x1000x1000x64 needs 488.3 MiB, over CNNCLI_MEMORY_BYTES\n"
    assert len(res.stderr.rstrip("\n")) <= 80
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", "100000")
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", "2880000")  # exactly one example's output: it fits
    assert runner.invoke(app, conv).exit_code == 0
    monkeypatch.setenv("CNNCLI_MEMORY_BYTES", "2879999")  # one byte short: the sizes in exact bytes
    res = runner.invoke(app, conv)
    assert res.stderr == "cnncli: error: output 1x300x300x4 needs 2880000 bytes, over CNNCLI_MEMORY_BYTES\n"
    # not set: the machine's memory, as before
    monkeypatch.delenv("CNNCLI_MEMORY_BYTES")
    assert runner.invoke(app, conv).exit_code == 0
    res = runner.invoke(app, conv[:-1] + ["1000000000"])
    assert res.exit_code == 2 and "EiB; memory is " in res.stderr and len(res.stderr.rstrip("\n")) <= 80
