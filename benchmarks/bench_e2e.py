"""End to end: ``cnncli forward`` over an HDF5 data set against a plain h5py + PyTorch script.

Run from the repository root (needs torch for the second side; /usr/bin/time for peak memory)::

    python benchmarks/bench_e2e.py                  # 3000x64x64x3 uint8 images, W 4x4x3x8, pad same
    python benchmarks/bench_e2e.py --m 1000 --repeat 3

Both sides do the same work, whole process included (interpreter start, imports):
read the images in chunks, convert uint8 to float64, convolve (stride 1, TensorFlow's
"same" padding, which for an even kernel puts the extra row and column after, as
torch's ``padding="same"`` does), and write the float64 output to a new HDF5 file.
Each run is a fresh process; the sides alternate so both see the same machine
noise. Reported: median wall time and the median peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TORCH_SCRIPT = r"""
import sys, h5py, numpy as np, torch
src, w_path, b_path, out_path, chunk = sys.argv[1:6]
torch.set_num_threads(2)
W = torch.from_numpy(np.load(w_path).transpose(3, 2, 0, 1).copy())   # HWIO -> OIHW
b = torch.from_numpy(np.load(b_path))
with h5py.File(src, "r") as f, h5py.File(out_path, "w") as g:
    x = f["x"]
    m, H, Wd, C = x.shape
    out = g.create_dataset("Z", (m, H, Wd, W.shape[0]), dtype="float64")
    step = int(chunk)
    for lo in range(0, m, step):
        a = torch.from_numpy(x[lo:lo + step].astype(np.float64)).permute(0, 3, 1, 2)
        with torch.no_grad():
            z = torch.nn.functional.conv2d(a, W, b, padding="same")
        out[lo:lo + step] = z.permute(0, 2, 3, 1).numpy()
"""


def timed(cmd, env=None):
    """(wall seconds, peak RSS MiB) of one process, from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd, check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall, rss = t.read().split()[-2:]
    return float(wall), int(rss) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=3000, help="images (default 3000)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--torch-python", default=sys.executable, help="a Python with torch and h5py")
    args = ap.parse_args(argv)
    import h5py

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rng = np.random.default_rng(0)
        with h5py.File(d / "set.h5", "w") as f:
            f["x"] = rng.integers(0, 256, (args.m, 64, 64, 3), dtype=np.uint8)
        np.save(d / "W.npy", rng.standard_normal((4, 4, 3, 8)))
        np.save(d / "b.npy", rng.standard_normal(8))
        (d / "plain.py").write_text(TORCH_SCRIPT)
        # The same chunk as cnncli's default: 32 MiB of input plus output per chunk.
        chunk = max(1, 32 * 2**20 // ((64 * 64 * 3 + 64 * 64 * 8) * 8))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        ours = [sys.executable, "-m", "cnncli", "forward", f"{d}/set.h5:/x", "--weights", f"{d}/W.npy",
                "--bias", f"{d}/b.npy", "--pad", "same", "-o", f"{d}/ours.h5", "--force"]
        plain = [args.torch_python, f"{d}/plain.py", f"{d}/set.h5", f"{d}/W.npy", f"{d}/b.npy",
                 f"{d}/plain.h5", str(chunk)]
        runs = {"cnncli forward": [], "h5py + torch": []}
        for _ in range(args.repeat):
            runs["cnncli forward"].append(timed(ours, env))
            runs["h5py + torch"].append(timed(plain))
        with h5py.File(d / "ours.h5", "r") as a, h5py.File(d / "plain.h5", "r") as b:
            za, zb = a["Z"][:64], b["Z"][:64]
        err = float(np.max(np.abs(za - zb)))
    print(f"{args.m}x64x64x3 uint8 -> conv 4x4x3x8 pad same -> float64 HDF5; median of {args.repeat}, "
          f"load average {os.getloadavg()[0]:.1f}; max |difference| on the first 64 images {err:.1e}")
    base = statistics.median(w for w, _ in runs["h5py + torch"])
    for name, rs in runs.items():
        wall, rss = statistics.median(w for w, _ in rs), statistics.median(r for _, r in rs)
        print(f"  {name:<16} {wall:7.2f} s ({wall / base:.2f}x)   peak RSS {rss:7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
