"""`cnncli gradcheck` verdicts at the edges, through the real app: magnitudes, overflow, kinks, bad settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((2, 5, 7, 4))
    arrays = {"A": A, "W": rng.standard_normal((3, 3, 4, 8)), "b": rng.standard_normal(8),
              "A1e8": 1e8 * A, "A1e300": 1e300 * A, "A1e307": 1e307 * A, "Asmall": 1e-6 * A}
    out = {}
    for name, x in arrays.items():
        np.save(tmp_path / f"{name}.npy", x)
        out[name] = str(tmp_path / f"{name}.npy")
    return out


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cnncli", "gradcheck", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("source", ["A1e8", "A1e300"])
def test_large_inputs_pass_on_the_engine_with_a_clean_stderr(files, source):
    r = _run(files[source], "--weights", files["W"], "--bias", files["b"], "--json")
    assert r.returncode == 0 and r.stderr == ""
    doc = json.loads(r.stdout)
    assert doc["passed"] is True and doc["verdict"] == "pass"
    assert all(g["rounding_floor"] <= g["tolerance"] and g["verdict"] == "pass" for g in doc["gradients"])


def test_overflow_exits_1_with_a_clear_message_and_no_numpy_warning(files):
    r = _run(files["A1e307"], "--weights", files["W"], "--bias", files["b"])
    assert r.returncode == 1 and "RuntimeWarning" not in r.stderr and "Warning" not in r.stdout
    assert "dA_prev: the loss overflows float64 at this scale" in r.stdout and "rescale the input" in r.stdout
    assert "gradient check: INCONCLUSIVE" in r.stdout


def test_tiny_inputs_check_every_element(files):
    r = runner.invoke(app, ["gradcheck", files["Asmall"], "--f", "2", "--json"])
    assert r.exit_code == 0, r.stdout
    g = json.loads(r.stdout)["gradients"][0]
    assert (g["kinks"], g["checked"], g["verdict"]) == (0, 2 * 5 * 7 * 4, "pass")


def test_an_eps_larger_than_the_gaps_checks_nothing_and_exits_1(files):
    r = runner.invoke(app, ["gradcheck", files["A"], "--f", "2", "--eps", "1", "--method", "full", "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    g = doc["gradients"][0]
    assert doc["passed"] is False and doc["verdict"] == "inconclusive"
    assert (g["verdict"], g["checked"], g["kinks"], g["passed"]) == ("inconclusive", 0, 192, False)
    assert g["reason"].startswith("dA_prev: 192 of 192 elements are at kinks: the step")
    assert g["reason"].endswith("nothing was checked: use a smaller --eps")
    table = runner.invoke(app, ["gradcheck", files["A"], "--f", "2", "--eps", "1"])
    assert table.exit_code == 1 and "INCONCLUSIVE" in table.stdout and "use a smaller --eps" in table.stdout


@pytest.mark.parametrize("args,line", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--eps", "0"], "--eps must be a positive number, got 0.0"),
    (["--eps", "nan"], "--eps must be a positive number, got nan"),
    (["--tol", "-1e-7"], "--tol must be a positive number, got -1e-07"),
    (["--tol", "inf"], "--tol must be a positive number, got inf"),
    (["--samples", "0"], "--samples must be >= 1, got 0"),
])
@pytest.mark.parametrize("mode", ["source", "battery", "impl"])
def test_bad_settings_are_one_line_exit_2_naming_the_flag(files, args, line, mode):
    where = {"source": [files["A"], "--f", "2"], "battery": [],
             "impl": ["--impl", str(ROOT / "tests" / "impls" / "correct.py")]}[mode]
    r = runner.invoke(app, ["gradcheck", *where, *args])
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"cnncli: error: {line}\n")


def test_library_refuses_a_negative_seed_by_name():
    from cnncli.errors import HyperparameterError
    from cnncli.gradcheck import gradcheck_pool
    from cnncli.engine import PoolParams

    with pytest.raises(HyperparameterError, match=r"^seed must be >= 0, got -1$"):
        gradcheck_pool(np.ones((1, 2, 2, 1)), PoolParams(f=2), seed=-1)


def test_a_binary_image_with_only_tied_windows_passes_with_a_note(tmp_path):
    # 0/255 image made of 2x2 constant blocks: every f=2 window is an exact tie, at any eps
    blocks = np.random.default_rng(2).integers(0, 2, size=(3, 4, 4, 1)).astype(np.uint8) * 255
    path = tmp_path / "digits.npy"
    np.save(path, np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2))
    for eps in ("1e-6", "1e-14"):
        r = runner.invoke(app, ["gradcheck", str(path), "--f", "2", "--eps", eps, "--json"])
        assert r.exit_code == 0, r.stdout
        g = json.loads(r.stdout)["gradients"][0]
        assert (g["verdict"], g["checked"], g["kinks"], g["reason"]) == ("pass", 0, 3 * 8 * 8, None)
        assert any("every pooling window of this input has tied maxima" in n for n in json.loads(r.stdout)["notes"])
    table = runner.invoke(app, ["gradcheck", str(path), "--f", "2"])
    assert table.exit_code == 0 and "nothing to check" in table.stdout and "PASS" in table.stdout


def test_an_all_zero_upstream_gradient_is_inconclusive(files, tmp_path):
    np.save(tmp_path / "zeros.npy", np.zeros((2, 3, 5, 8)))  # conv output of A (2,5,7,4) with W 3x3, pad 0
    r = runner.invoke(app, ["gradcheck", files["A"], "--weights", files["W"], "--bias", files["b"],
                            "--grad", str(tmp_path / "zeros.npy"), "--json"])
    assert r.exit_code == 1, r.stdout
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "inconclusive" and doc["passed"] is False
    for g in doc["gradients"]:
        assert g["verdict"] == "inconclusive" and g["checked"] == 0
        assert g["reason"].startswith(f"{g['name']}: --grad is all zeros: every gradient is zero whatever "
                                      "the layer does")
    np.save(tmp_path / "zeros_pool.npy", np.zeros((2, 2, 3, 4)))
    r = runner.invoke(app, ["gradcheck", files["A"], "--f", "2", "--grad", str(tmp_path / "zeros_pool.npy")])
    assert r.exit_code == 1 and "--grad is all zeros" in r.stdout and "INCONCLUSIVE" in r.stdout


def test_the_battery_says_inconclusive_when_no_case_fails_and_some_cannot_be_checked():
    # --eps 1 leaves max pooling nothing to compare: inconclusive cases, none failing
    from typer.testing import CliRunner

    from cnncli.cli import app

    r = CliRunner().invoke(app, ["gradcheck", "--eps", "1"], env={"COLUMNS": "80"})
    assert r.exit_code == 1
    assert r.stdout.splitlines()[-1].startswith("gradient check: INCONCLUSIVE (")
    assert "failing:" not in r.stdout and "inconclusive: pool max f2 s2" in r.stdout
    doc = json.loads(CliRunner().invoke(app, ["gradcheck", "--eps", "1", "--json"]).stdout)
    verdicts = {c["verdict"] for c in doc["cases"]}
    assert verdicts == {"pass", "inconclusive"} and doc["verdict"] == "inconclusive" and doc["passed"] is False
