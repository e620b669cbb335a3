"""A background CPU load for benchmarks: N busy processes, so the load average sits near N.

Run from the repository root::

    python benchmarks/load.py 2 --seconds 600 &     # load ~2 for ten minutes (or until killed)
    python benchmarks/bench_engine.py --load 2       # the same, started and stopped by the benchmark

Each process spins on integer arithmetic: it takes a core whenever the scheduler
gives it one and touches almost no memory, which is what another user's
compute job looks like to cnncli. The load average follows with the kernel's
one-minute time constant, so start it a minute before reading figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time


def spin(seconds: float) -> None:
    """Busy-loop for ``seconds`` (forever when <= 0)."""
    end = time.monotonic() + seconds if seconds > 0 else float("inf")
    x = 0
    while time.monotonic() < end:
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def start(n: int, seconds: float = 0) -> list:
    """Start ``n`` busy processes; return them (stop with :func:`stop`)."""
    procs = [multiprocessing.Process(target=spin, args=(seconds,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def stop(procs: list) -> None:
    """Stop processes from :func:`start`."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=2, help="busy processes (default 2)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until killed)")
    args = ap.parse_args(argv)
    procs = start(args.n, args.seconds)
    signal.signal(signal.SIGTERM, lambda *_: (stop(procs), sys.exit(0)))
    print(f"load: {args.n} busy process(es), pid {os.getpid()}", file=sys.stderr)
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        stop(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
