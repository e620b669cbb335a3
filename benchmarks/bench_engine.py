"""Time cnncli's conv/pool engine against PyTorch CPU and against the loop oracle.

Run from the repository root::

    python benchmarks/bench_engine.py            # full suite, float64 and float32
    python benchmarks/bench_engine.py --quick    # fewer repeats, smaller loop runs
    python benchmarks/bench_engine.py --no-loops --runs 3   # per target: met in how many of 3 runs

For every case and dtype it prints the median wall time of the forward pass and
of the backward pass (dA_prev, dW, db), the ratio to PyTorch
(``torch.nn.functional.conv2d`` / ``max_pool2d`` and their autograd backward,
same process, same thread count as numpy's BLAS) and the speed-up over the loop
implementation in ``cnncli/engine/reference.py``. The loops are timed on a
reduced batch and scaled linearly to the full batch (they do the same work for
every example); the loop oracle always computes in float64, so its time is
measured once per case and reused for the float32 rows.

Machines are shared and noisy: read the ratios (both sides run in the same
process, interleaved) and the medians, not single timings. torch is optional.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))  # load.py

from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward  # noqa: E402
from cnncli.engine.reference import (  # noqa: E402
    conv_backward_loops,
    conv_forward_loops,
    pool_backward_loops,
    pool_forward_loops,
)


@dataclass(frozen=True)
class Case:
    """One layer: NHWC input (m, H, W, C) -> n_C channels (conv) or pooled (pool)."""

    name: str
    m: int
    H: int
    W: int
    C: int
    n_C: int = 0
    f: int = 3
    stride: int = 1
    pad: int = 0
    groups: int = 1
    pool: str = ""  # "max" or "average" for a pooling case

    @property
    def label(self) -> str:
        if self.pool:
            return f"{self.name} {self.m}x{self.H}x{self.W}x{self.C} {self.pool}pool {self.f}x{self.f}/{self.stride}"
        g = f" g={self.groups}" if self.groups > 1 else ""
        return f"{self.name} {self.m}x{self.H}x{self.W}x{self.C}->{self.n_C} {self.f}x{self.f}/{self.stride}{g}"


SUITE = [
    Case("small", 64, 32, 32, 16, 32, 3, 1, 1),
    Case("resnet-3x3", 32, 56, 56, 64, 64, 3, 1, 1),
    Case("stem-7x7", 8, 112, 112, 3, 64, 7, 2, 3),
    Case("down-3x3/2", 16, 28, 28, 128, 128, 3, 2, 1),
    Case("pointwise", 32, 28, 28, 128, 256, 1, 1, 0),
    Case("depthwise", 32, 56, 56, 64, 64, 3, 1, 1, groups=64),
    Case("maxpool", 16, 112, 112, 64, f=3, stride=2, pad=1, pool="max"),
]


def median_time(fn, repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs, after one warm-up run."""
    return median_times([fn], repeat)[0]


#: Untimed calls before each timed one last at least this long (seconds): longer than the other
#: library's idle threads keep spinning on a core after its last call (libgomp's default spin
#: count is several milliseconds on this machine; one untimed call of a small layer is not enough).
SETTLE_SECONDS = 0.03


def median_times(fns, repeat: int) -> list:
    """Median wall time of each function over ``repeat`` rounds; in each round every function
    runs untimed for at least ``SETTLE_SECONDS`` (once at least), then once timed (a.. a, b.. b, ...).

    The rounds interleave the functions so that both sides of a ratio see the same machine
    noise; the untimed runs before each timed one keep one library's idle threads out of
    the other's timing (PyTorch's OpenMP threads spin for milliseconds after each call,
    on a core the next call needs; OpenBLAS's threads do the same)."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            while time.perf_counter() - start < SETTLE_SECONDS:
                fn()
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def blas_threads() -> int:
    """Threads numpy's BLAS uses (threadpoolctl when installed, else the core count up to 2)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return min(2, os.cpu_count() or 1)
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return counts[0] if counts else min(2, os.cpu_count() or 1)


def machine_info(torch) -> list:
    """Lines describing the CPU, numpy and its BLAS, torch, and BLAS-related environment."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [f"cpu: {cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}",
             f"python {platform.python_version()}, numpy {np.__version__}"]
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            lines.append(f"  {p['user_api']}: {p['internal_api']} {p.get('version')} "
                         f"kernel={p.get('architecture')} threads={p['num_threads']}")
    except ImportError:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        lines.append(f"  blas: {blas.get('name')} {blas.get('version')} (threadpoolctl not installed)")
    try:
        import numba
        jit = f"numba {numba.__version__}, CNNCLI_JIT={os.environ.get('CNNCLI_JIT', 'auto')} (off: the numpy path)"
    except ImportError:
        jit = "numba not installed: the numpy path"
    lines.append(f"  compiled kernels (max-pool backward, float32 3x3 Winograd): {jit}")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS") if k in os.environ}
    lines.append(f"  env: {env or 'no BLAS/OpenMP variables set'}")
    try:
        lines.append(f"  load average at start: {os.getloadavg()[0]:.2f} (shared machine: other jobs skew timings)")
    except OSError:
        pass
    if torch is not None:
        lines.append(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    else:
        lines.append("torch: not importable, PyTorch ratios skipped")
    return lines


def make_inputs(case: Case, dtype, rng):
    """Random NHWC input, HWIO weights, bias and upstream gradient for ``case``."""
    A = rng.standard_normal((case.m, case.H, case.W, case.C)).astype(dtype)
    if case.pool:
        params = PoolParams(f=case.f, stride=case.stride, pad=case.pad, mode=case.pool)
        dOut = rng.standard_normal((case.m,) + params.geometry((case.H, case.W)).out_hw + (case.C,)).astype(dtype)
        return params, A, None, None, dOut
    params = ConvParams(stride=case.stride, pad=case.pad, groups=case.groups)
    W = (rng.standard_normal((case.f, case.f, case.C // case.groups, case.n_C)) * 0.1).astype(dtype)
    b = rng.standard_normal(case.n_C).astype(dtype)
    dOut = rng.standard_normal((case.m,) + params.geometry((case.H, case.W), (case.f, case.f)).out_hw
                               + (case.n_C,)).astype(dtype)
    return params, A, W, b, dOut


def ours(case: Case, params, A, W, b, dOut):
    """(forward, backward) closures of the engine."""
    if case.pool:
        return (lambda: pool2d(A, params)), (lambda: pool2d_backward(dOut, A, params))
    return (lambda: conv2d(A, W, b, params)), (lambda: conv2d_backward(dOut, A, W, params))


def torch_fns(torch, case: Case, A, W, b, dOut):
    """(forward, backward, forward output as NHWC ndarray) of PyTorch on the same data."""
    F = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).requires_grad_(True)
    g = torch.from_numpy(np.ascontiguousarray(dOut.transpose(0, 3, 1, 2)))
    if case.pool:
        def run():
            return F.max_pool2d(x, case.f, case.stride, case.pad) if case.pool == "max" else \
                F.avg_pool2d(x, case.f, case.stride, case.pad)
        inputs = (x,)
    else:
        w = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1))).requires_grad_(True)
        bt = torch.from_numpy(b).requires_grad_(True)

        def run():
            return F.conv2d(x, w, bt, case.stride, case.pad, 1, case.groups)
        inputs = (x, w, bt)

    def forward():
        with torch.no_grad():
            return run()

    out = run()

    def backward():
        return torch.autograd.grad(out, inputs, g, retain_graph=True)

    return forward, backward, forward().numpy().transpose(0, 2, 3, 1)


def blas_limit(case: Case, params, A, W):
    """Seconds of the bare BLAS product of the unrolled problem, (m*n_H*n_W, f*f*C) @ (f*f*C, n_C), or None.

    That product is the work no im2col convolution can avoid; the patches are random (BLAS time does
    not depend on the values) and already contiguous, so nothing but the product is timed. Grouped
    layers have no single product and are skipped.
    """
    if case.pool or case.groups != 1:
        return None
    n_H, n_W = params.geometry((case.H, case.W), (case.f, case.f)).out_hw
    M, K = case.m * n_H * n_W, case.f * case.f * case.C
    rng = np.random.default_rng(1)
    P = rng.standard_normal((M, K)).astype(A.dtype)
    Wm = np.ascontiguousarray(W.reshape(K, case.n_C))
    Z = np.empty((M, case.n_C), dtype=A.dtype)
    return median_time(lambda: np.matmul(P, Wm, out=Z), 3)


def loop_times(case: Case, params, A, W, b, dOut, m_loop: int):
    """Loop oracle's (forward, backward) seconds on ``m_loop`` examples, scaled to the batch."""
    A, dOut = A[:m_loop].astype(np.float64), dOut[:m_loop].astype(np.float64)
    scale = case.m / m_loop
    if case.pool:
        fwd = median_time(lambda: pool_forward_loops(A, params), 1)
        bwd = median_time(lambda: pool_backward_loops(dOut, A, params), 1)
    else:
        fwd = median_time(lambda: conv_forward_loops(A, W, b, params), 1)
        bwd = median_time(lambda: conv_backward_loops(dOut, A, W, params), 1)
    return fwd * scale, bwd * scale


#: Issue 13's per-layer targets: (label, cases, dtype, passes, most x torch).
LAYER_TARGETS = [
    ("float64 7x7 stem", ("stem-7x7",), "float64", ("fwd", "bwd"), 1.0),
    ("float32 3x3 layers", ("small", "resnet-3x3", "down-3x3/2"), "float32", ("fwd", "bwd"), 1.2),
    ("max-pool backward", ("maxpool",), "float64", ("bwd",), 1.2),
    ("max-pool backward", ("maxpool",), "float32", ("bwd",), 1.2),
]


def _target_keys(names, dtype: str, passes, runs: list) -> list:
    """The (case, dtype, pass) cells of a target that every run in ``runs`` (cells dicts) measured."""
    return [(n, dtype, p) for n in names for p in passes if all((n, dtype, p) in c for c in runs)]


def _meets(cells: dict, keys: list, most: float) -> bool:
    """Whether one run's cells ``keys`` all meet a target of ``most`` x torch."""
    return all(cells[k] <= most for k in keys)


def target_lines(cells: dict, cases) -> list:
    """One line per per-layer target of issue 13 whose cells were measured: each ratio and whether all meet it."""
    lines = []
    for label, names, dtype, passes, most in LAYER_TARGETS:
        keys = _target_keys(names, dtype, passes, [cells])
        if keys:
            lines.append(f"target {label} ({dtype}) <= {most:.1f}x torch: "
                         + ", ".join(f"{n} {p} {cells[(n, d, p)]:.2f}x" for n, d, p in keys)
                         + f": {'met' if _meets(cells, keys, most) else 'NOT met'}")
    return lines


def runs_lines(runs: list) -> list:
    """Issue 13's per-layer targets over several runs of the suite: each cell's range and the runs meeting it.

    ``runs``: one ``cells`` dict per run, as :func:`_run` returns. A run meets a target when every one
    of its cells does (as :func:`target_lines` says); the target holds when every run meets it.
    """
    lines = [f"over {len(runs)} runs:"]
    for label, names, dtype, passes, most in LAYER_TARGETS:
        keys = _target_keys(names, dtype, passes, runs)
        if not keys:
            continue
        met = sum(_meets(c, keys, most) for c in runs)
        ranges = ", ".join(f"{k[0]} {k[2]} {min(c[k] for c in runs):.2f}-{max(c[k] for c in runs):.2f}x"
                           for k in keys)
        lines.append(f"target {label} ({dtype}) <= {most:.1f}x torch: {ranges}: met in {met} of {len(runs)} runs: "
                     f"{'met' if met == len(runs) else 'NOT met'}")
    return lines


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 7, quick 3)")
    ap.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    ap.add_argument("--case", action="append", default=None, help="only cases whose name contains this")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even when importable")
    ap.add_argument("--no-loops", action="store_true", help="skip the loop oracle")
    ap.add_argument("--no-blas", action="store_true", help="skip the bare BLAS product (x blas column)")
    ap.add_argument("--runs", type=_positive, default=1, metavar="N",
                    help="run the suite N times and say, per target, in how many runs it was met")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="run N busy processes in the background during the run (benchmarks/load.py)")
    args = ap.parse_args(argv)
    # NOTE: auto would switch max-pool paths part way through the repeats (after 2**28 elements): a
    # benchmark times one path, the compiled one when numba imports, unless CNNCLI_JIT=off is given
    if importlib.util.find_spec("numba") is not None:
        os.environ.setdefault("CNNCLI_JIT", "on")
    repeat = args.repeat or (3 if args.quick else 7)
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    cases = [c for c in SUITE if not args.case or any(s in c.name for s in args.case)]

    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811  (optional, benchmark only)
            torch.set_num_threads(blas_threads())
        except ImportError:
            torch = None
    background = []
    if args.load:
        from load import start  # benchmarks/load.py, next to this file

        background = start(args.load)
        print(f"background load: {args.load} busy process(es); waiting 60 s for the load average to follow")
        time.sleep(60)
    try:
        runs = []
        for k in range(args.runs):
            if args.runs > 1:
                print(f"\n=== run {k + 1} of {args.runs}")
            runs.append(_run(args, cases, dtypes, repeat, torch))
        if args.runs > 1:
            print()
            print("\n".join(runs_lines(runs)) if torch is not None else
                  f"over {args.runs} runs: no PyTorch, so no ratios and no targets to count")
        return 0
    finally:
        if background:
            from load import stop

            stop(background)


def _run(args, cases, dtypes, repeat, torch) -> dict:
    """One run of the suite, printed; returns its ratios to PyTorch by (case name, dtype, pass)."""
    print("\n".join(machine_info(torch)))
    print(f"median of {repeat} runs after a warm-up; loop oracle timed on 1 example "
          "and scaled to the batch (float64 only, reused for float32)")
    print()
    head = (f"{'case':<44} {'dtype':<7} {'pass':<4} {'ours ms':>9} {'torch ms':>9} {'x torch':>8} {'x blas':>7} "
            f"{'loops s':>8} {'x faster':>9}")
    print(head)
    print("-" * len(head))
    ratios = {(d, p): [] for d in dtypes for p in ("fwd", "bwd")}
    cells = {}  # (case name, dtype, pass) -> ratio to torch, for issue 13's per-layer targets
    speedups = []
    blas_ratios = {d: [] for d in dtypes}
    loops_cache = {}
    rng = np.random.default_rng(0)
    for case in cases:
        for dtype in dtypes:
            params, A, W, b, dOut = make_inputs(case, np.dtype(dtype), rng)
            fwd, bwd = ours(case, params, A, W, b, dOut)
            if torch is not None:
                tf, tb, Zt = torch_fns(torch, case, A, W, b, dOut)
                err = np.max(np.abs(fwd() - Zt)) / max(1.0, float(np.max(np.abs(Zt))))
                if err > (1e-3 if dtype == "float32" else 1e-9):
                    print(f"!! {case.name} {dtype}: engine and torch disagree (max rel err {err:.2e})")
                t_fwd, t_torch_fwd = median_times([fwd, tf], repeat)
                t_bwd, t_torch_bwd = median_times([bwd, tb], repeat)
                t_ours, t_torch = (t_fwd, t_bwd), (t_torch_fwd, t_torch_bwd)
            else:
                t_ours, t_torch = (median_time(fwd, repeat), median_time(bwd, repeat)), (None, None)
            if not args.no_loops and case.name not in loops_cache:
                loops_cache[case.name] = loop_times(case, params, A, W, b, dOut, 1)
            t_loop = loops_cache.get(case.name, (None, None))
            t_blas = None if args.no_blas else blas_limit(case, params, A, W)
            x_blas = t_blas and t_ours[0] / t_blas
            if x_blas and case.f == 3:
                blas_ratios[dtype].append(x_blas)
            for k, which in enumerate(("fwd", "bwd")):
                ratio = t_torch[k] and t_ours[k] / t_torch[k]
                xb = f"{x_blas:.2f}x" if (x_blas and k == 0) else "-"
                speed = t_loop[k] and t_loop[k] / t_ours[k]
                if ratio:
                    ratios[(dtype, which)].append(ratio)
                    cells[(case.name, dtype, which)] = ratio
                if speed:
                    speedups.append(speed)
                print(f"{case.label if k == 0 else '':<44} {dtype if k == 0 else '':<7} {which:<4} "
                      f"{t_ours[k] * 1e3:>9.1f} "
                      f"{(f'{t_torch[k] * 1e3:.1f}' if t_torch[k] else '-'):>9} "
                      f"{(f'{ratio:.2f}x' if ratio else '-'):>8} "
                      f"{xb:>7} "
                      f"{(f'{t_loop[k]:.1f}' if t_loop[k] else '-'):>8} "
                      f"{(f'{speed:.0f}x' if speed else '-'):>9}", flush=True)
    print()
    for (dtype, which), rs in ratios.items():
        if rs:
            target = 1.0 if dtype == "float64" else 2.0
            med = statistics.median(rs)
            print(f"summary {dtype} {which}: median {med:.2f}x torch time over {len(rs)} cases "
                  f"(target <= {target:.1f}x: {'met' if med <= target else 'NOT met'})")
    for dtype, rs in blas_ratios.items():
        if rs:
            med = statistics.median(rs)
            print(f"summary {dtype} fwd vs the bare BLAS product: median {med:.2f}x over the {len(rs)} 3x3 layers "
                  f"({', '.join(f'{r:.2f}x' for r in rs)}; target <= 1.3x: {'met' if med <= 1.3 else 'NOT met'})")
    for line in target_lines(cells, cases):
        print(line)
    try:
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    except OSError:
        pass
    if speedups:
        print(f"summary loops: {min(speedups):.0f}x to {max(speedups):.0f}x faster than the loop oracle, "
              f"median {statistics.median(speedups):.0f}x (target >= 100x)")
    return cells


if __name__ == "__main__":
    sys.exit(main())
