"""Time the convolution engine of two source trees against each other in one process.

Run from the repository root::

    git archive 6b217e0 cnncli | tar -x -C /tmp/before
    python benchmarks/bench_ab.py /tmp/before .                # one thread, CPU time
    python benchmarks/bench_ab.py /tmp/before . --threads 2    # two threads, wall time

Each tree's ``cnncli`` package is copied under a name of its own (the engine
imports only relatively) and both are timed on the same arrays, interleaved
(a, a, b, b per round: the first call of each pair untimed), median of the
rounds. With ``--threads 1`` BLAS and the engine run on one thread and the
clock is the process's CPU time, which other jobs on a shared machine disturb
far less than wall time; ``--threads 2`` is what a user sees, on a quiet
machine only. Prints new / old per layer and pass. Both trees share one
OpenBLAS: when they differ in whether a product runs on OpenBLAS's own threads,
the idle one's spinning after such a product slows the other tree's next call,
so compare those changes in separate processes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {  # name: (A_prev NHWC, W HWIO (an int: a max pool's window), stride, pad)
    "small": ((64, 32, 32, 16), (3, 3, 16, 32), 1, 1),
    "resnet-3x3": ((32, 56, 56, 64), (3, 3, 64, 64), 1, 1),
    "stem-7x7": ((8, 112, 112, 3), (7, 7, 3, 64), 2, 3),
    "down-3x3/2": ((16, 28, 28, 128), (3, 3, 128, 128), 2, 1),
    "pointwise": ((32, 28, 28, 128), (1, 1, 128, 256), 1, 0),
    "maxpool-3x3/2": ((16, 112, 112, 64), 3, 2, 1),
}


def pool_pair(old, new, a_shape, f, s, p, dtype, rng):
    """((old forward, new forward), (old backward, new backward)) of a max pool on the same arrays."""
    A = rng.standard_normal(a_shape).astype(dtype)
    po, pn = (e.PoolParams(f=f, stride=s, pad=p, mode="max") for e in (old, new))
    dA = rng.standard_normal((a_shape[0],) + tuple(pn.geometry(a_shape[1:3]).out_hw) + (a_shape[3],)).astype(dtype)
    return ((lambda: old.pool2d(A, po)), (lambda: new.pool2d(A, pn))), \
        ((lambda: old.pool2d_backward(dA, A, po)), (lambda: new.pool2d_backward(dA, A, pn)))


def load(tree: Path, name: str, folder: Path):
    """The engine of ``tree`` imported as package ``name``."""
    shutil.copytree(tree / "cnncli", folder / name)
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"{name}.engine"), importlib.import_module(f"{name}.engine._common")


def medians(fns, rounds: int, clock) -> list:
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            fn()
            t0 = clock()
            fn()
            ts.append(clock() - t0)
    return [statistics.median(ts) for ts in times]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="source tree timed first (holds cnncli/)")
    ap.add_argument("new", type=Path, help="source tree compared with it")
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--case", action="append", default=None, help="only cases whose name contains this")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (old, old_common), (new, new_common) = (load(args.old, "cnncli_old", Path(tmp)),
                                                 load(args.new, "cnncli_new", Path(tmp)))
        old_common._THREADS = new_common._THREADS = args.threads
        blas = importlib.import_module("cnncli_new.engine._blas")
        one = blas.single_blas_thread() if args.threads == 1 else contextlib.nullcontext()
        clock = time.process_time if args.threads == 1 else time.perf_counter
        print(f"{'case':<12} {'dtype':<8} {'fwd old ms':>10} {'new':>8} {'new/old':>8} "
              f"{'bwd old ms':>11} {'new':>8} {'new/old':>8}   ({args.threads} thread(s), "
              f"{'CPU' if args.threads == 1 else 'wall'} time)")
        rng = np.random.default_rng(0)
        with one:
            for name, (a_shape, w_shape, s, p) in CASES.items():
                if args.case and not any(c in name for c in args.case):
                    continue
                for dtype in (np.float64, np.float32):
                    if isinstance(w_shape, int):
                        fwd, bwd = pool_pair(old, new, a_shape, w_shape, s, p, dtype, rng)
                        fo, fn = medians(fwd, args.rounds, clock)
                        bo, bn = medians(bwd, args.rounds, clock)
                        print(f"{name:<12} {np.dtype(dtype).name:<8} {fo * 1e3:>10.1f} {fn * 1e3:>8.1f} "
                              f"{fn / fo:>7.2f}x {bo * 1e3:>11.1f} {bn * 1e3:>8.1f} {bn / bo:>7.2f}x", flush=True)
                        continue
                    A = rng.standard_normal(a_shape).astype(dtype)
                    W = (rng.standard_normal(w_shape) * 0.1).astype(dtype)
                    po, pn = old.ConvParams(stride=s, pad=p), new.ConvParams(stride=s, pad=p)
                    out = pn.geometry(a_shape[1:3], w_shape[:2]).out_hw
                    dZ = rng.standard_normal((a_shape[0],) + tuple(out) + (w_shape[3],)).astype(dtype)
                    fo, fn = medians([lambda: old.conv2d(A, W, None, po), lambda: new.conv2d(A, W, None, pn)],
                                     args.rounds, clock)
                    bo, bn = medians([lambda: old.conv2d_backward(dZ, A, W, po),
                                      lambda: new.conv2d_backward(dZ, A, W, pn)], max(3, args.rounds // 2), clock)
                    print(f"{name:<12} {np.dtype(dtype).name:<8} {fo * 1e3:>10.1f} {fn * 1e3:>8.1f} {fn / fo:>7.2f}x "
                          f"{bo * 1e3:>11.1f} {bn * 1e3:>8.1f} {bn / bo:>7.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
