"""The real CLI under random option values and small random arrays and files.

Whatever the input: an exit code in {0, 1, 2}; never a traceback or an internal error; a usage or
input error is one line on stderr; after an error no output (or temporary) file is left behind.
Sizes: the "fuzz" hypothesis profile of tests/conftest.py (200 examples in CI; 3000 with
``HYPOTHESIS_PROFILE=thorough``; ``CNNCLI_FUZZ_EXAMPLES=N`` for any other number).
"""

import os
import tempfile

import h5py
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()

DTYPES = ["float64", "float32", "float16", "int8", "uint8", "int64", "bool", "complex64", "<U2", ">f8"]
WORDS = ["", " ", "0", "1", "2", "3", "-1", "2x1", "1,2", "0,1,1,0", "same", "valid", "max", "avg", "average",
         "median", "conv", "pool", "nhwc", "nchw", "float32", "float64", "x", "1e3", "99999999999", "nan", "2x",
         "1,2,3", "on", "off", "true"]

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple)


@st.composite
def arrays(draw):
    """A small array of a random dtype (refused ones included) and shape (empty axes included)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "U":
        return np.full(shape, "ab", dtype=dtype)
    values = rng.normal(scale=draw(st.sampled_from([1.0, 1e30, 1e-30])), size=shape)
    if draw(st.booleans()) and values.size:
        values.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    with np.errstate(all="ignore"):
        return values.astype(dtype) if dtype.kind != "b" else values > 0


def save(folder, name, array, kind):
    """Write ``array`` as .npy, .npz or .h5 in ``folder``; return its array reference."""
    if kind == "npy":
        np.save(os.path.join(folder, f"{name}.npy"), array)
        return os.path.join(folder, f"{name}.npy")
    if kind == "npz":
        np.savez_compressed(os.path.join(folder, f"{name}.npz"), x=array)
        return os.path.join(folder, f"{name}.npz") + ":x"
    with h5py.File(os.path.join(folder, f"{name}.h5"), "w") as f:
        f["x"] = array.astype("S2") if array.dtype.kind == "U" else array  # HDF5 keeps text as bytes
    return os.path.join(folder, f"{name}.h5") + ":/x"


def _case(folder, draw):
    """A case file with random arrays and random (often wrong) attributes."""
    path = os.path.join(folder, "case.h5")
    with h5py.File(path, "w") as f:
        for name in ["A_prev"] + draw(st.lists(st.sampled_from(["W", "b", "dZ", "dA"]), unique=True)):
            array = draw(arrays())
            f[name] = array.astype("S2") if array.dtype.kind == "U" else array
        for key in draw(st.lists(st.sampled_from(["layer", "f", "stride", "pad", "mode", "layout", "groups",
                                                  "dilation", "strid"]), unique=True)):
            f.attrs[key] = draw(st.sampled_from(WORDS[2:] + [2, 0, -1, 3]))
    return path


def _out_size(n, f, s, p, d):
    return (n + 2 * p - d * (f - 1) - 1) // s + 1


@st.composite
def command_lines(draw, folder):
    """A command line that is often valid (so the passes run) and often wrong in one or several ways."""
    command = draw(st.sampled_from(["forward", "backward", "gradcheck"]))
    kind = draw(st.sampled_from(["conv", "pool"]))
    good = st.integers(0, 19).map(lambda n: n < 18)  # most parts right, so that the passes run
    m, H, W, C = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    f, s, p, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 2)), draw(st.integers(1, 2))
    n_C = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A = rng.normal(size=(m, H, W, C)) if draw(good) else draw(arrays())
    fmt = st.sampled_from(["npy", "npz", "h5"])
    refs = {"A": save(folder, "A", A, draw(fmt)), "missing": os.path.join(folder, "missing.npy")}
    args = [command, refs["A"] if draw(good) else draw(st.sampled_from([refs["missing"], _case(folder, draw), ""]))]
    if kind == "conv":
        Wt = rng.normal(size=(f, f, C, n_C)) if draw(good) else draw(arrays())
        args += ["--weights", save(folder, "W", Wt, draw(fmt))]
        if draw(st.booleans()):
            b = rng.normal(size=n_C) if draw(good) else draw(arrays())
            args += ["--bias", save(folder, "b", b, draw(fmt))]
        out_c = n_C
    else:
        args += ["--f", str(f) if draw(good) else draw(st.sampled_from(WORDS))]
        out_c = C
        if draw(st.booleans()):
            args += ["--mode", draw(st.sampled_from(["max", "average", "avg"])) if draw(good) else
                     draw(st.sampled_from(WORDS))]
    pool_stride = s if kind == "conv" or draw(st.booleans()) else f
    if pool_stride != f or kind == "conv":
        args += ["--stride", str(s) if draw(good) else draw(st.sampled_from(WORDS))]
    if draw(st.booleans()):
        args += ["--pad", str(p) if draw(good) else draw(st.sampled_from(WORDS))]
    else:
        p = 0
    if draw(st.booleans()):
        args += ["--dilation", str(d) if draw(good) else draw(st.sampled_from(WORDS))]
    else:
        d = 1
    if command == "backward" and draw(good) or command == "gradcheck" and draw(st.booleans()):
        oh, ow = _out_size(H, f, pool_stride, p, d), _out_size(W, f, pool_stride, p, d)
        g = rng.normal(size=(m, max(oh, 1), max(ow, 1), out_c)) if draw(good) else draw(arrays())
        args += ["--grad", save(folder, "g", g, draw(fmt))]
    options = [("--layout", ["nhwc", "nchw"]), ("--layer", [kind])]
    options += [("--dtype", ["float32", "float64"])] if command != "gradcheck" else []
    options += [("--groups", ["1", str(C)])] if kind == "conv" else []
    for flag, values in options:
        if draw(st.integers(0, 4)) == 0:
            args += [flag, draw(st.sampled_from(values)) if draw(good) else draw(st.sampled_from(WORDS))]
    flags = ["--allow-external"] + (["--ceil-mode", "--no-count-include-pad"] if kind == "pool" else [])
    for flag in flags:
        if draw(st.integers(0, 4)) == 0:
            args.append(flag)
    out = None
    if command == "gradcheck":
        args += ["--method", draw(st.sampled_from(["fast", "sample", "auto", "full"])) if draw(good) else "x"]
        if draw(st.booleans()):
            args += ["--samples", draw(st.sampled_from(["1", "3"])) if draw(good) else "0"]
    elif draw(st.booleans()):
        out = draw(st.sampled_from(["out.npy", "out.npz", "out.h5", "out.txt", "sub/out.npy"]))
        args += ["-o", os.path.join(folder, out)]
    if draw(st.booleans()):
        args.append("--json")
    return args, out


@settings(settings.get_profile("fuzz"))
@given(st.data())
def test_random_command_lines_exit_cleanly(data):
    with tempfile.TemporaryDirectory() as folder:
        args, out = data.draw(command_lines(folder))
        before = set(os.listdir(folder))
        res = runner.invoke(app, args)
        shown = f"cnncli {' '.join(repr(a) for a in args)}\n{res.stderr}"
        assert res.exit_code in (0, 1, 2), shown
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, shown
        if res.exit_code == 2:
            assert res.stderr.startswith("cnncli: error: ") and res.stderr.count("\n") == 1, shown
            assert res.stdout == "", shown
        left = set(os.listdir(folder)) - before
        if res.exit_code == 2 or out is None:
            assert not left, (shown, left)
        else:
            assert left == {out}, (shown, left)  # the output, and no temporary file beside it
