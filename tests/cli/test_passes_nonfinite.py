"""NaN and infinity through forward/backward: statistics of the finite values, counts of the others,
a note naming where they came from, and never a raw numpy RuntimeWarning."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.passes import stream as streaming
from cnncli.cli import app
from cnncli.engine import ConvParams, PoolParams
from cnncli.engine.reference import conv_backward_loops, conv_forward_loops, pool_forward_loops

runner = CliRunner()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(args):
    # RuntimeWarnings become errors (exit 3): a raw warning reaching the user fails the test
    # whatever pytest's own warning capture does.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return runner.invoke(app, [str(a) for a in args])


def finite_stats(x, nan, inf):
    f = x[np.isfinite(x)]
    return {"min": pytest.approx(float(f.min()), rel=1e-12), "max": pytest.approx(float(f.max()), rel=1e-12),
            "mean": pytest.approx(float(f.mean()), rel=1e-9), "std": pytest.approx(float(f.std()), rel=1e-9),
            "nan_count": nan, "inf_count": inf}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # Several chunks per run: counts and statistics must merge across them.
    monkeypatch.setattr(streaming, "IO_CHUNK_BYTES", 3000)


@pytest.fixture
def d(tmp_path):
    rng = np.random.default_rng(7)
    A = rng.standard_normal((3, 6, 6, 4))
    A_nan = A.copy()
    A_nan[0, 2, 2, 1] = np.nan
    A_inf = A.copy()
    A_inf[1, 4, 1, 3] = np.inf
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "Anan.npy", A_nan)
    np.save(tmp_path / "Ainf.npy", A_inf)
    np.save(tmp_path / "W.npy", rng.standard_normal((3, 3, 4, 8)))
    return tmp_path


def test_conv_forward_with_one_nan_reports_finite_stats_and_counts(d):
    A, W = np.load(d / "Anan.npy"), np.load(d / "W.npy")
    Z = conv_forward_loops(A, W, np.zeros(8), ConvParams())
    # The NaN at row 2, column 2 of example 0 reaches every 3x3 window over it: 3x3 positions x 8 filters.
    assert np.isnan(Z).sum() == 72
    res = run(["forward", d / "Anan.npy", "--weights", d / "W.npy", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outputs"]["Z"] == {"shape": [3, 4, 4, 8], "dtype": "float64", **finite_stats(Z, 72, 0)}
    assert doc["inputs"]["A_prev"]["nan_count"] == 1 and doc["inputs"]["A_prev"]["inf_count"] == 0
    assert doc["inputs"]["W"]["nan_count"] == 0
    assert doc["notes"] == ["no bias given: b = 0",
                            "Z has 72 NaN values (A_prev has 1 NaN): min, max, mean and std are of its "
                            "312 finite values"]


def test_human_report_shows_finite_stats_and_the_note(d):
    res = run(["forward", d / "Anan.npy", "--weights", d / "W.npy"])
    assert res.exit_code == 0, res.stderr
    assert "note: Z has 72 NaN values (A_prev has 1 NaN): min, max, mean and std are of its 312 finite values" \
        in res.stdout
    row = next(line for line in res.stdout.splitlines() if "out Z" in line)
    assert "nan" not in row and "inf" not in row


def test_max_pool_of_an_inf_counts_it_and_warns_nothing(d):
    A = np.load(d / "Ainf.npy")
    out = pool_forward_loops(A, PoolParams(f=2))
    res = run(["forward", d / "Ainf.npy", "--f", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outputs"]["A"] == {"shape": [3, 3, 3, 4], "dtype": "float64", **finite_stats(out, 0, 1)}
    assert doc["notes"][-1] == ("A has 1 inf value (A_prev has 1 inf): min, max, mean and std are of its "
                                "107 finite values")


def test_no_raw_warning_reaches_stderr_in_a_real_process(d):
    # -W default: the interpreter shows every RuntimeWarning, as a user's shell would.
    for args in (["--f", "2"], ["--f", "2", "--mode", "average", "--pad", "1", "--stride", "1"],
                 ["--weights", str(d / "W.npy")]):
        proc = subprocess.run([sys.executable, "-W", "default", "-m", "cnncli", "forward", str(d / "Ainf.npy"),
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr


def test_no_finite_value_gives_null_stats(d):
    np.save(d / "allnan.npy", np.full((1, 2, 2, 1), np.nan))
    res = run(["forward", d / "allnan.npy", "--f", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outputs"]["A"] == {"shape": [1, 1, 1, 1], "dtype": "float64", "min": None, "max": None,
                                   "mean": None, "std": None, "nan_count": 1, "inf_count": 0}
    assert doc["notes"] == ["A has 1 NaN value (A_prev has 4 NaN) and no finite value"]
    human = run(["forward", d / "allnan.npy", "--f", "2"])
    row = next(line for line in human.stdout.splitlines() if "out A" in line)
    assert row.count("n/a") == 4 and "nan" not in row


def test_input_nan_that_reaches_no_output_is_noted(d):
    # A 5x5 input pooled 2x2 with stride 2 never reads row 4: its NaN reaches no output.
    A = np.ones((1, 5, 5, 1))
    A[0, 4, 0, 0] = np.nan
    np.save(d / "edge.npy", A)
    res = run(["forward", d / "edge.npy", "--f", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["outputs"]["A"]["nan_count"] == 0
    assert doc["notes"] == ["A_prev has 1 NaN value; every output is finite"]


def test_huge_finite_values_keep_finite_statistics(d):
    # Squares of 1e300 overflow float64: the spread must still come out finite and right.
    A, W = np.load(d / "A.npy") * 1e300, np.load(d / "W.npy")
    np.save(d / "big.npy", A)
    Z = conv_forward_loops(A / 1e300, W, np.zeros(8), ConvParams()) * 1e300
    res = run(["forward", d / "big.npy", "--weights", d / "W.npy", "--json"])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)["outputs"]["Z"]
    assert out["nan_count"] == 0 and out["inf_count"] == 0
    assert out["std"] == pytest.approx(float((Z / 1e300).std()) * 1e300, rel=1e-9)
    assert out["mean"] == pytest.approx(float((Z / 1e300).mean()) * 1e300, rel=1e-9)


def test_float32_overflow_is_counted_and_explained(d):
    np.save(d / "big.npy", np.load(d / "A.npy") * 1e300)
    res = run(["forward", d / "big.npy", "--f", "2", "--dtype", "float32", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    # Every value is beyond float32's range: +-inf after the conversion, and so is every max.
    assert doc["inputs"]["A_prev"]["inf_count"] == 3 * 6 * 6 * 4
    assert doc["outputs"]["A"]["inf_count"] == 3 * 3 * 3 * 4
    assert doc["notes"][-1] == ("A has 108 inf values (A_prev has 432 inf after conversion to float32) "
                                "and no finite value")


def test_conv_backward_counts_every_gradient(d):
    rng = np.random.default_rng(8)
    A, W = np.load(d / "A.npy"), np.load(d / "W.npy")
    dZ = rng.standard_normal((3, 4, 4, 8))
    dZ[2, 1, 3, 5] = np.nan
    np.save(d / "dZ.npy", dZ)
    dA, dW, db = conv_backward_loops(dZ, A, W, ConvParams())
    res = run(["backward", d / "A.npy", "--weights", d / "W.npy", "--grad", d / "dZ.npy", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    # dZ[2, 1, 3, 5] reaches a 3x3 patch of example 2 in every channel, every dW[..., 5], and db[5].
    assert (np.isnan(dA).sum(), np.isnan(dW).sum(), np.isnan(db).sum()) == (36, 36, 1)
    outs = doc["outputs"]
    assert outs["dA_prev"] == {"shape": [3, 6, 6, 4], "dtype": "float64", **finite_stats(dA, 36, 0)}
    assert outs["dW"] == {"shape": [3, 3, 4, 8], "dtype": "float64", **finite_stats(dW, 36, 0)}
    assert outs["db"] == {"shape": [8], "dtype": "float64", **finite_stats(db, 1, 0)}
    assert doc["inputs"]["dZ"]["nan_count"] == 1
    assert "dW has 36 NaN values (dZ has 1 NaN): min, max, mean and std are of its 252 finite values" \
        in doc["notes"]
