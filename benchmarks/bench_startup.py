"""Start-up time of ``cnncli`` commands against the floor ``python -c "import numpy"``.

Runs real processes: the floor and each command are interleaved round by round
(floor, cmd 1, cmd 2, ..., floor, cmd 1, ...) so that the load of a shared machine
falls on all of them alike, and reports each one's median wall time and its ratio
to the floor's median measured in the same run. Target (issue 11): ``--version``,
``--help`` and ``shape ...`` within 1.5x the floor.

Usage::

    python benchmarks/bench_startup.py [--rounds 21] [--target 1.5] [--importtime]

Bytecode is cached as for an installed package (pip writes the .pyc files at install
time): the runs use a temporary ``PYTHONPYCACHEPREFIX`` (the floor too, so both start
from the same warm cache) even where ``PYTHONDONTWRITEBYTECODE`` is set, which would
otherwise recompile every cnncli module on every run. Nothing is written in the repository.

``--importtime`` also prints the ten slowest imports of each command
(``python -X importtime``), to see what a command pulls in. Exit code 1 when a
command misses the target. A benchmark, not a test: nothing in CI runs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLOOR = ["-c", "import numpy"]
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "shape --help": ["shape", "--help"],
    "shape --f 3 --stride 2": ["shape", "--f", "3", "--stride", "2"],
    "shape --input 28x28x1 --f 5": ["shape", "--input", "28x28x1", "--f", "5"],
    "shape stack (4 layers)": ["shape", "--input", "64x64x3", "conv:f=4,p=same,c=8", "pool:f=8,s=8",
                               "conv:f=2,p=same,c=16", "pool:f=4,s=4"],
}
TARGETED = ("--version", "--help", "shape --f 3 --stride 2", "shape --input 28x28x1 --f 5",
            "shape stack (4 layers)")


def _env(pycache: str) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), COLUMNS="80",
               PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _time(argv, env) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}")
    return elapsed


def _slowest_imports(argv, env, n: int = 10):
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    top = [r for r in rows if len(r[1]) - len(r[1].lstrip()) <= 3]  # direct imports of the program
    return sorted(top, reverse=True)[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnncli-pycache-") as pycache:
        return _bench(args, _env(pycache))


def _bench(args, env) -> int:
    runs = {"floor": FLOOR, **{name: ["-m", "cnncli", *argv] for name, argv in COMMANDS.items()}}
    for argv in runs.values():  # warm the file cache and the .pyc files
        _time(argv, env)
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, argv in runs.items():
            times[name].append(_time(argv, env))
    floor = statistics.median(times["floor"])
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = ""
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {load}; {args.rounds} interleaved rounds")
    print(f"floor  python -c 'import numpy'  median {floor * 1000:6.1f} ms")
    missed = []
    for name in COMMANDS:
        med = statistics.median(times[name])
        ratio = med / floor
        mark = ""
        if name in TARGETED:
            mark = "ok" if ratio <= args.target else f"MISSES {args.target}x"
            if ratio > args.target:
                missed.append(name)
        print(f"cnncli {name:<28} median {med * 1000:6.1f} ms  {ratio:4.2f}x floor  {mark}")
        if args.importtime:
            for us, mod in _slowest_imports(["-m", "cnncli", *COMMANDS[name]], env):
                print(f"         {us / 1000:6.1f} ms {mod.strip()}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
