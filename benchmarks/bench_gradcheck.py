"""Time ``cnncli gradcheck`` as users run it (whole process) against ``torch.autograd.gradcheck``.

Run from the repository root::

    python benchmarks/bench_gradcheck.py            # 3 runs per row, medians
    python benchmarks/bench_gradcheck.py --runs 5 --torch-large   # also torch's full check on the large case (~40 s)

Rows (the issue's targets):

- conv A_prev (2,12,12,4), W (3,3,4,8), b, pad 1, float64:
  ``--method full`` vs ``torch.autograd.gradcheck`` (target: <= 0.2x), and
  ``--method fast`` vs ``gradcheck(..., fast_mode=True)`` (target: <= 1x);
- conv A_prev (4,16,16,8), W (3,3,8,16), pad 1: the default method (target: < 10 s);
- ``--hdf5``: an HDF5 set of 3000 uint8 images 64x64x3 (``--hdf5-m`` to change), W (4,4,3,8), b,
  pad same: ``cnncli gradcheck`` (streamed) against one ``cnncli forward`` over the same data,
  whole-process wall and CPU times and peak RSS of each (``os.wait4``; targets: peak RSS <= 400 MB,
  time <= 10x the forward's, a PASS), and the same check of the set saved as ``.npy``. Takes minutes.
- ``--full``: ``--method full`` over a set of 3000 uint8 images 16x16x3 (``--full-m``), W (4,4,3,64), b, pad same,
  from ``.npy``: whole-process time and peak RSS (it compares every element chunk by chunk: the peak should
  not grow with the set). Takes about 4 minutes.
- ``--huge``: sets of one very large example, a 1 x 1 x 2,000,000 x 4 float64 HDF5 signal (``--huge-n``),
  under a 1x5 conv to 4 and 8 channels and max and average pooling, and the conv to 4 under ``--method full``
  (every element, compared piece by piece): peak RSS of each check (target: 400 MB).

Both sides are separate ``python`` processes started the same way (interpreter
start, imports, loading the arrays, the check), so the ratio is what a user
waits for. torch gets the same arrays in NCHW. The startup cost alone
(``import cnncli.cli``, ``import torch``) is printed too. torch is optional:
without it only cnncli's times are shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TORCH_SCRIPT = """
import sys, numpy as np, torch
import torch.nn.functional as F
d = sys.argv[1]
fast = sys.argv[2] == "fast"
A = torch.tensor(np.load(d + "/A.npy").transpose(0, 3, 1, 2).copy(), dtype=torch.float64, requires_grad=True)
W = torch.tensor(np.load(d + "/W.npy").transpose(3, 2, 0, 1).copy(), dtype=torch.float64, requires_grad=True)
b = torch.tensor(np.load(d + "/b.npy"), dtype=torch.float64, requires_grad=True)
ok = torch.autograd.gradcheck(lambda a, w, c: F.conv2d(a, w, c, padding=1), (A, W, b), fast_mode=fast)
sys.exit(0 if ok else 1)
"""


def _time(cmd, env) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def _median(cmd, env, runs: int) -> float:
    return statistics.median(_time(cmd, env) for _ in range(runs))


def _measure(cmd, env):
    """(wall s, CPU s, peak RSS MB, exit code) of one child process (its own rusage, from os.wait4)."""
    t = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode


def _hdf5_case(tmp: Path, m: int, env, py) -> None:
    """The issue's case: gradcheck streamed over an HDF5 set vs one forward over it."""
    import h5py

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(m, 64, 64, 3), dtype=np.uint8)
    with h5py.File(tmp / "signs.h5", "w") as f:
        f["train_set_x"] = x
    np.save(tmp / "signs.npy", x)  # the same set as .npy: it streams too (memory-mapped)
    del x
    np.save(tmp / "W.npy", rng.normal(size=(4, 4, 3, 8)) * 0.1)
    np.save(tmp / "b.npy", rng.normal(size=8))
    args = ["--weights", str(tmp / "W.npy"), "--bias", str(tmp / "b.npy"), "--pad", "same"]
    h5 = str(tmp / "signs.h5") + ":/train_set_x"
    fw = _measure([py, "-m", "cnncli", "forward", h5, *args], env)
    gc = _measure([py, "-m", "cnncli", "gradcheck", h5, *args], env)
    gn = _measure([py, "-m", "cnncli", "gradcheck", str(tmp / "signs.npy"), *args], env)
    print(f"HDF5 set ({m},64,64,3) uint8 * W (4,4,3,8), pad same, one run each:")
    print(f"  forward          wall {fw[0]:7.1f} s  cpu {fw[1]:7.1f} s  peak RSS {fw[2]:6.0f} MB")
    for name, r in (("gradcheck", gc), ("gradcheck .npy", gn)):
        print(f"  {name:15s}  wall {r[0]:7.1f} s  cpu {r[1]:7.1f} s  peak RSS {r[2]:6.0f} MB  "
              f"{'PASS' if r[3] == 0 else 'exit ' + str(r[3])}")
    for name, r in (("", gc), (" (.npy)", gn)):
        print(f"  ratio gradcheck{name} / forward: wall {r[0] / fw[0]:.1f}x, cpu {r[1] / fw[1]:.1f}x "
              f"(target <= 10x); peak RSS {'ok' if r[2] <= 400 else 'MISSED'} (<= 400 MB)")


def _huge_case(tmp: Path, n: int, env, py) -> None:
    """A set of one example too large for the checker's workspace: a 1 x 1 x n x 4 float64 HDF5 signal, under a
    1x5 conv to 4 and to 8 channels and 1x3 stride-2 max and average pooling; peak RSS of each whole check."""
    import h5py

    rng = np.random.default_rng(1)
    with h5py.File(tmp / "sig.h5", "w") as f:
        # NOTE: written by pieces (the same values as one draw): a child's peak RSS from os.wait4 counts this
        # process's own high-water mark (the child runs in its memory until exec), which one draw of a 512 MB
        # signal made 536 MB for every case
        x = f.create_dataset("x", (1, 1, n, 4), dtype=np.float64)
        for lo in range(0, n, 2**20):
            x[0, 0, lo:lo + 2**20] = rng.standard_normal((min(n, lo + 2**20) - lo, 4))
    for k in (4, 8):
        np.save(tmp / f"W{k}.npy", rng.standard_normal((1, 5, 4, k)))
    src = str(tmp / "sig.h5") + ":/x"
    cases = [(f"conv 1x5 -> {k}", ["--weights", str(tmp / f"W{k}.npy")]) for k in (4, 8)]
    cases += [(f"{mode} pool 1x3 stride 2", ["--layer", "pool", "--f", "1x3", "--stride", "1x2", "--mode", mode])
              for mode in ("max", "average")]
    # every element compared, piece by piece (it was read whole, every element's index, gradient and floor held)
    cases += [("conv 1x5 -> 4, full", ["--weights", str(tmp / "W4.npy"), "--method", "full"])]
    print(f"HDF5 set of one example (1,1,{n},4) float64 ({8 * 4 * n / 1e6:.0f} MB), gradcheck, one run each:")
    for name, extra in cases:
        wall, cpu, rss, code = _measure([py, "-m", "cnncli", "gradcheck", src, *extra, "--json"], env)
        print(f"  {name:26s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  peak RSS {rss:6.0f} MB  "
              f"{'PASS' if code == 0 else 'exit ' + str(code)}  {'ok' if rss <= 400 else 'MISSED'} (<= 400 MB)")


def _full_case(tmp: Path, m: int, env, py) -> None:
    """``--method full`` over a set: every element compared, a chunk at a time."""
    rng = np.random.default_rng(3)
    np.save(tmp / "set.npy", rng.integers(0, 256, size=(m, 16, 16, 3), dtype=np.uint8))
    np.save(tmp / "W.npy", rng.standard_normal((4, 4, 3, 64)) * 0.1)
    np.save(tmp / "b.npy", rng.standard_normal(64))
    wall, cpu, rss, code = _measure([py, "-m", "cnncli", "gradcheck", str(tmp / "set.npy"), "--weights",
                                     str(tmp / "W.npy"), "--bias", str(tmp / "b.npy"), "--pad", "same",
                                     "--method", "full", "--json"], env)
    print(f"--method full over ({m},16,16,3) uint8 * W (4,4,3,64), pad same, .npy, one run ({m * 768} elements):")
    print(f"  gradcheck        wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak RSS {rss:6.0f} MB  "
          f"{'PASS' if code == 0 else 'exit ' + str(code)}  {'ok' if rss <= 400 else 'MISSED'} (<= 400 MB)")


def _write_case(folder: Path, A_shape, W_shape, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "A.npy", rng.standard_normal(A_shape))
    np.save(folder / "W.npy", rng.standard_normal(W_shape))
    np.save(folder / "b.npy", rng.standard_normal(W_shape[3]))


def _have_torch() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _positive(text: str) -> int:
    """An int >= 1, for argparse (a bad one: argparse's one-line usage error, exit 2)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per row (median reported)")
    parser.add_argument("--torch-large", action="store_true", help="also time torch's full check on the large case")
    parser.add_argument("--hdf5", action="store_true", help="also the streamed check of an HDF5 set (minutes)")
    parser.add_argument("--hdf5-m", type=int, default=3000, help="images in the HDF5 set")
    parser.add_argument("--full", action="store_true", help="also --method full over a set (minutes)")
    parser.add_argument("--full-m", type=_positive, default=3000, help="images in the --full set")
    parser.add_argument("--huge", action="store_true", help="also sets of one very large example (a minute)")
    parser.add_argument("--huge-n", type=_positive, default=2_000_000,
                        help="the large example's length (1 x 1 x N x 4)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py = sys.executable
    torch = _have_torch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        _write_case(small, (2, 12, 12, 4), (3, 3, 4, 8), 0)
        _write_case(large, (4, 16, 16, 8), (3, 3, 8, 16), 1)

        def cnncli(folder: Path, *extra):
            return [py, "-m", "cnncli", "gradcheck", str(folder / "A.npy"), "--weights", str(folder / "W.npy"),
                    "--bias", str(folder / "b.npy"), "--pad", "1", "--json", *extra]

        start_c = _median([py, "-c", "import cnncli.cli"], env, args.runs)
        start_t = _median([py, "-c", "import torch"], env, args.runs) if torch else None
        rows.append(("startup: import cnncli.cli / import torch", start_c, start_t, None))
        for method, fast, target in (("full", "full", 0.2), ("fast", "fast", 1.0)):
            c = _median(cnncli(small, "--method", method), env, args.runs)
            t = _median([py, "-c", TORCH_SCRIPT, str(small), fast], env, args.runs) if torch else None
            rows.append((f"(2,12,12,4) * (3,3,4,8) pad 1: --method {method}", c, t, target))
        c = _median(cnncli(large), env, args.runs)
        t = _median([py, "-c", TORCH_SCRIPT, str(large), "full"], env, 1) if torch and args.torch_large else None
        rows.append(("(4,16,16,8) * (3,3,8,16) pad 1: default (auto)", c, t, None))
    print(f"cnncli gradcheck vs torch.autograd.gradcheck, whole process, median of {args.runs} "
          f"({os.cpu_count()} CPUs, python {sys.version.split()[0]})")
    print(f"{'case':52s} {'cnncli s':>9s} {'torch s':>9s} {'ratio':>7s} {'target':>7s}")
    for name, c, t, target in rows:
        ratio = f"{c / t:.3f}" if t else "-"
        verdict = "" if target is None or t is None else ("ok" if c / t <= target else "MISSED")
        print(f"{name:52s} {c:9.3f} {t if t else float('nan'):9.3f} {ratio:>7s} "
              f"{('<= ' + str(target)) if target else '':>7s} {verdict}")
    print("large case target: default method under 10 s:", "ok" if rows[-1][1] < 10 else "MISSED")
    if args.hdf5:
        with tempfile.TemporaryDirectory() as tmp:
            _hdf5_case(Path(tmp), args.hdf5_m, env, py)
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            _full_case(Path(tmp), args.full_m, env, py)
    if args.huge:
        with tempfile.TemporaryDirectory() as tmp:
            _huge_case(Path(tmp), args.huge_n, env, py)


if __name__ == "__main__":
    main()
