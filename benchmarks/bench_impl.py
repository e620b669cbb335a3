"""Whole-process time of ``cnncli gradcheck --impl tests/impls/correct.py``, for one or more source trees.

A benchmark, not a test. Each tree runs as ``python -m cnncli`` with PYTHONPATH at
that tree, the runs of the trees interleaved so that they see the same machine
noise; prints per tree the median and minimum wall time and the median CPU time
(cnncli and the processes it waited for: the --impl child), each median over the
first tree's. To compare with an older commit::

    git archive COMMIT | tar -x -C /tmp/before
    python benchmarks/bench_impl.py /tmp/before .
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(tree: Path, impl: Path):
    """``(wall seconds, CPU seconds)`` of one run; CPU counts cnncli and every process it waited for."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnncli", "gradcheck", "--impl", str(impl)], cwd=tree, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: exit {done.returncode}: {done.stderr.strip()[:300]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[ROOT], help="source trees (default: this one)")
    parser.add_argument("--repeat", type=int, default=11, help="runs per tree (default 11)")
    parser.add_argument("--impl", type=Path, default=ROOT / "tests" / "impls" / "correct.py")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    times = {t: [] for t in trees}
    for tree in trees:  # warm the page cache and the .pyc files
        run_once(tree, args.impl)
    for _ in range(args.repeat):
        for tree in trees:
            times[tree].append(run_once(tree, args.impl))
    base = statistics.median(w for w, _ in times[trees[0]])
    base_cpu = statistics.median(c for _, c in times[trees[0]])
    for tree in trees:
        wall, cpu = [w for w, _ in times[tree]], [c for _, c in times[tree]]
        print(f"{str(tree):40s} wall median {statistics.median(wall):6.3f} s (min {min(wall):6.3f}, "
              f"x{statistics.median(wall) / base:4.2f})  CPU median {statistics.median(cpu):6.3f} s "
              f"(x{statistics.median(cpu) / base_cpu:4.2f})")


if __name__ == "__main__":
    main()
