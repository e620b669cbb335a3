"""Peak memory of ``cnncli forward`` / ``backward`` streaming a large HDF5 dataset.

Builds a 12,000 x 64 x 64 x 3 uint8 dataset (147 MB on disk, 1.2 GB as float64)
in a temporary folder, then runs real ``python -m cnncli`` processes on it —
pooling and convolution, forward and backward — and reports each one's peak
resident set size as the kernel counts it (``ru_maxrss`` of the finished child,
read by a small wrapper process so each run is measured alone). The target is
under 400 MB per run. Nothing is kept: the temporary folder is removed.

Usage::

    python benchmarks/bench_stream.py [--m 12000] [--target-mb 400] [--keep DIR]

Exit code 1 when a run exceeds the target or fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs argv[1:] as a child and prints the child's peak RSS in KiB (Linux ru_maxrss unit).
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)

# Writes the dataset slab by slab so the generator itself stays small.
_MAKE = (
    "import sys, h5py, numpy as np\n"
    "path, m = sys.argv[1], int(sys.argv[2])\n"
    "rng = np.random.default_rng(0)\n"
    "with h5py.File(path, 'w') as f:\n"
    "    ds = f.create_dataset('train_set_x', (m, 64, 64, 3), dtype='uint8', chunks=(64, 64, 64, 3))\n"
    "    for lo in range(0, m, 1000):\n"
    "        ds[lo:lo + 1000] = rng.integers(0, 256, (min(1000, m - lo), 64, 64, 3), dtype=np.uint8)\n"
    "np.save(sys.argv[3], rng.standard_normal((3, 3, 3, 4)))\n"
)


def measure(args, env) -> tuple:
    """(exit code, peak RSS in MB, seconds) of ``python -m cnncli *args``."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "cnncli", *args],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1]) / 1024, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=12000, help="number of 64x64x3 images (default 12000)")
    parser.add_argument("--target-mb", type=float, default=400.0, help="peak RSS target per run (MB)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    opts = parser.parse_args()

    work = opts.keep or tempfile.mkdtemp(prefix="cnncli-bench-")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    data, weights = os.path.join(work, "images.h5"), os.path.join(work, "W.npy")
    try:
        subprocess.run([sys.executable, "-c", _MAKE, data, str(opts.m), weights], check=True)
        src = f"{data}:/train_set_x"
        pool_out, conv_out = os.path.join(work, "pooled.h5"), os.path.join(work, "conv.h5")
        runs = [
            ("forward  max pool f=2", ["forward", src, "--f", "2", "-o", pool_out, "--force"]),
            ("backward max pool f=2", ["backward", src, "--f", "2", "--grad", f"{pool_out}:/A",
                                       "-o", os.path.join(work, "pool_grads.h5"), "--force"]),
            ("forward  conv 3x3x3->4 s=2 same", ["forward", src, "--weights", weights, "--stride", "2",
                                                 "--pad", "same", "-o", conv_out, "--force"]),
            ("backward conv 3x3x3->4 s=2 same", ["backward", src, "--weights", weights, "--stride", "2",
                                                 "--pad", "same", "--grad", f"{conv_out}:/Z",
                                                 "-o", os.path.join(work, "conv_grads.h5"), "--force"]),
        ]
        size_gb = opts.m * 64 * 64 * 3 * 8 / 1e9
        print(f"input: {opts.m} x 64 x 64 x 3 uint8 ({os.path.getsize(data) / 1e6:.0f} MB on disk, "
              f"{size_gb:.2f} GB as float64); target peak RSS < {opts.target_mb:.0f} MB")
        print(f"{'run':34} {'peak RSS':>10} {'time':>8}  verdict")
        failed = False
        for label, args in runs:
            rc, peak, seconds = measure(args, env)
            ok = rc == 0 and peak < opts.target_mb
            failed |= not ok
            verdict = "ok" if ok else (f"FAILED (exit {rc})" if rc else "OVER TARGET")
            print(f"{label:34} {peak:7.0f} MB {seconds:7.1f}s  {verdict}")
        return 1 if failed else 0
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
