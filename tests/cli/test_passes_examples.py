"""The files of examples/: the exercise cases reproduce the exercise's published numbers, the
regeneration script reproduces the committed cases, and the digits pipeline script runs."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.io.arrays import load_array
from cnncli.io.cases import load_case
from cnncli.cli import app

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="examples/ is not shipped with the tests")


def means(args):
    res = runner.invoke(app, args + ["--json"])
    assert res.exit_code == 0, res.stderr
    return {name: out["mean"] for name, out in json.loads(res.stdout)["outputs"].items()}


def test_exercise_forward_case_gives_the_published_mean():
    assert means(["forward", f"{EXAMPLES}/exercise_conv.h5"]) == {"Z": pytest.approx(0.5511276474566768)}


def test_exercise_backward_case_gives_the_published_means():
    got = means(["backward", f"{EXAMPLES}/exercise_conv_backward.h5"])
    assert got == {"dA_prev": pytest.approx(1.45243777754), "dW": pytest.approx(1.72699145831),
                   "db": pytest.approx(7.83923256462)}


def test_digits_file_is_the_scikit_learn_set():
    with h5py.File(f"{EXAMPLES}/digits.h5") as f:
        images, labels = f["images"][()], f["labels"][()]
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8
    assert images.max() == 16 and images.min() == 0
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # The first image of load_digits() is a zero: its top row is [0, 0, 5, 13, 9, 1, 0, 0].
    assert images[0, 0, :, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and labels[0] == 0


def test_make_cases_reproduces_the_committed_cases(tmp_path):
    proc = subprocess.run([sys.executable, f"{EXAMPLES}/make_cases.py", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("exercise_conv.h5", "exercise_conv_backward.h5", "conv_case.h5", "pool_case.npz"):
        fresh, committed = load_case(str(tmp_path / name)), load_case(f"{EXAMPLES}/{name}")
        assert fresh.attrs == committed.attrs
        assert sorted(fresh.arrays) == sorted(committed.arrays)
        for key in fresh.arrays:
            np.testing.assert_array_equal(fresh.arrays[key], committed.arrays[key])
    np.testing.assert_array_equal(np.load(tmp_path / "edge_filters.npy"), np.load(f"{EXAMPLES}/edge_filters.npy"))


def _conv_same_3x3(x, w):
    """'same' 3x3 correlation by shifted slices: independent of the engine."""
    m, H, W, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(xp[:, i:i + H, j:j + W, :] @ w[i, j] for i in range(3) for j in range(3))


def test_pipeline_script(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, CNNCLI=f"{sys.executable} -m cnncli",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(["bash", f"{EXAMPLES}/pipeline.sh", str(tmp_path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    digits = load_array(f"{EXAMPLES}/digits.h5:/images").astype(np.float64)
    edges = _conv_same_3x3(digits, np.load(f"{EXAMPLES}/edge_filters.npy"))
    pooled = edges.reshape(1797, 4, 2, 4, 2, 4).max(axis=(2, 4))
    np.testing.assert_allclose(np.load(tmp_path / "pooled_edges.npy"), pooled, atol=1e-12)
    np.testing.assert_allclose(load_array(f"{tmp_path}/edges.h5:/Z"), edges, atol=1e-12)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["outputs"]["A"]["shape"] == [1797, 2, 2, 4]
    assert summary["outputs"]["A"]["mean"] == pytest.approx(edges.mean(), rel=1e-9)  # 4x4 averages tile 8x8
    grad = np.load(tmp_path / "pool_grad.npy")
    assert grad.shape == (1797, 8, 8, 4) and grad.sum() == 1797 * 4 * 4 * 4  # one max per window


def test_pipeline_script_with_cnncli_named_as_itself(tmp_path):
    # CNNCLI=cnncli made the script's cnncli() function call itself until bash died (exit 139)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cnncli"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cnncli "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=ROOT, CNNCLI="cnncli", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", f"{EXAMPLES}/pipeline.sh", str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert np.load(out / "pooled_edges.npy").shape == (1797, 4, 4, 4)
