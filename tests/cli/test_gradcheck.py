"""`cnncli gradcheck` through the real app: battery, SOURCE, --impl, JSON, reports, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.gradcheck import problems
from cnncli.gradcheck.battery import BATTERY

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
IMPLS = ROOT / "tests" / "impls"
make_bugs = sys.modules["cnncli_tests_make_bugs"]  # loaded once by tests/conftest.py
GRADIENT_KEYS = {"name", "shape", "method", "relative_error", "max_abs_error", "worst_index", "worst_analytical",
                 "worst_numerical", "checked", "directions", "kinks", "failing", "passed", "verdict", "reason",
                 "rounding_floor", "tolerance", "hint", "top"}


@pytest.fixture
def conv_files(tmp_path):
    rng = np.random.default_rng(3)
    paths = {"A": tmp_path / "A.npy", "W": tmp_path / "W.npy", "b": tmp_path / "b.npy", "img": tmp_path / "img.npy"}
    np.save(paths["A"], rng.normal(size=(2, 6, 5, 3)))
    np.save(paths["W"], rng.normal(size=(3, 3, 3, 4)))
    np.save(paths["b"], rng.normal(size=4))
    np.save(paths["img"], rng.integers(0, 4, size=(2, 6, 6, 2)).astype(np.uint8))
    return {k: str(v) for k, v in paths.items()}


def _json(result):
    return json.loads(result.stdout)


def test_no_input_runs_the_battery_and_passes():
    r = runner.invoke(app, ["gradcheck", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = _json(r)
    assert doc["passed"] is True and doc["battery"] is True and doc["method"] == "auto"
    assert [c["label"] for c in doc["cases"]] == [c.name for c in BATTERY]
    for case in doc["cases"]:
        names = [g["name"] for g in case["gradients"]]
        assert names == (["dA_prev", "dW", "db"] if case["layer"] == "conv" else ["dA_prev"])
        assert all(set(g) == GRADIENT_KEYS and g["passed"] for g in case["gradients"])


def test_battery_table_on_a_person_s_terminal():
    r = runner.invoke(app, ["gradcheck"])
    assert r.exit_code == 0
    assert "built-in battery: 18 configurations" in r.stdout and "gradient check: PASS" in r.stdout


def test_source_full_check_json(conv_files):
    r = runner.invoke(app, ["gradcheck", conv_files["A"], "--weights", conv_files["W"], "--bias", conv_files["b"],
                            "--pad", "1", "--stride", "2", "--method", "full", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = _json(r)
    assert doc["passed"] is True and doc["layer"] == "conv" and doc["method"] == "full"
    assert doc["source"] == conv_files["A"]
    got = {g["name"]: (g["shape"], g["checked"], g["failing"], g["kinks"]) for g in doc["gradients"]}
    assert got == {"dA_prev": ([2, 6, 5, 3], 180, 0, 0), "dW": ([3, 3, 3, 4], 108, 0, 0), "db": ([4], 4, 0, 0)}
    assert all(g["relative_error"] <= 1e-7 for g in doc["gradients"])


def test_integer_image_with_ties_passes_max_pool_and_counts_kinks(conv_files):
    r = runner.invoke(app, ["gradcheck", conv_files["img"], "--f", "2", "--stride", "1", "--json"])
    assert r.exit_code == 0, r.stderr
    g = _json(r)["gradients"][0]
    assert g["kinks"] > 0 and g["checked"] == 2 * 6 * 6 * 2 - g["kinks"]
    assert any("uint8" in n for n in _json(r)["notes"])


def test_nchw_indices_come_back_in_nchw(conv_files, tmp_path):
    A = np.load(conv_files["A"]).transpose(0, 3, 1, 2)
    W = np.load(conv_files["W"]).transpose(3, 2, 0, 1)
    np.save(tmp_path / "An.npy", A)
    np.save(tmp_path / "Wn.npy", W)
    r = runner.invoke(app, ["gradcheck", str(tmp_path / "An.npy"), "--weights", str(tmp_path / "Wn.npy"),
                            "--layout", "nchw", "--method", "fast", "--json"])
    assert r.exit_code == 0, r.stderr
    assert [g["shape"] for g in _json(r)["gradients"]] == [list(A.shape), list(W.shape), [4]]


def test_a_wrong_gradient_fails_with_heatmap_and_offenders(conv_files, monkeypatch):
    right = problems.ConvProblem.analytical

    def border_bug(self):
        g = right(self)
        g["A_prev"][:, 0, :, :] += 0.5  # the first row: a padding mistake
        return g

    monkeypatch.setattr(problems.ConvProblem, "analytical", border_bug)
    args = ["gradcheck", conv_files["A"], "--weights", conv_files["W"], "--pad", "1", "--method", "full"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    assert "top offenders of dA_prev" in r.stdout and "gradient check: FAIL" in r.stdout
    assert "errors only along the border" in r.stdout
    doc = _json(runner.invoke(app, args + ["--json"]))
    g = {x["name"]: x for x in doc["gradients"]}
    assert doc["passed"] is False and g["dA_prev"]["passed"] is False and g["dW"]["passed"] is True
    assert g["dA_prev"]["worst_index"][1] == 0 and g["dA_prev"]["failing"] == 2 * 5 * 3
    assert g["dA_prev"]["hint"] == "errors only along the border: look at the padding" and g["dW"]["hint"] is None


def test_impl_correct_passes_and_bug_fails_json():
    ok = runner.invoke(app, ["gradcheck", "--impl", str(IMPLS / "correct.py"), "--json"])
    assert ok.exit_code == 0, ok.stdout
    doc = _json(ok)
    assert doc["passed"] is True and doc["not_defined"] == [] and len(doc["functions"]) == 8
    bad = runner.invoke(app, ["gradcheck", "--impl", str(make_bugs.bug_file("db_assigned")), "--json"])
    assert bad.exit_code == 1
    fn = {f["name"]: f for f in _json(bad)["functions"]}
    assert fn["conv_backward"]["passed"] is False
    assert "only the bias gradient db is wrong" in fn["conv_backward"]["diagnosis"]
    failing = {x["quantity"] for x in fn["conv_backward"]["findings"] if not x["passed"]}
    assert failing == {"db"}


def test_impl_report_names_the_exception_and_line():
    r = runner.invoke(app, ["gradcheck", "--impl", str(make_bugs.bug_file("crop_minus_pad"))])
    assert r.exit_code == 1
    assert "conv_backward raised ValueError" in r.stdout and "line 70" in r.stdout
    assert "[pad:-pad]" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--pad", "1"], "--pad needs a SOURCE (the battery sets its own)"),
    (["--method", "exact"], "--method must be one of auto, full, fast, sample, got 'exact'"),
    (["--eps", "-1"], "--eps must be a positive number"),
    (["x.npy", "--impl", "y.py"], "--impl takes no SOURCE (it runs its own battery); drop 'x.npy'"),
    (["--impl", "nowhere.py"], "no such file"),
    (["missing.npy", "--f", "2"], "no such file"),
])
def test_bad_usage_is_one_line_exit_2(args, message):
    r = runner.invoke(app, ["gradcheck", *args])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("cnncli: error: ") and r.stderr.count("\n") == 1 and message in r.stderr


def test_grad_of_the_wrong_shape_is_exit_2(conv_files, tmp_path):
    np.save(tmp_path / "g.npy", np.ones((2, 6, 5, 4)))
    r = runner.invoke(app, ["gradcheck", conv_files["A"], "--weights", conv_files["W"], "--grad",
                            str(tmp_path / "g.npy")])
    assert r.exit_code == 2 and "(2, 4, 3, 4)" in r.stderr


def test_impl_syntax_error_is_exit_2_with_file_and_line(tmp_path):
    bad = tmp_path / "student.py"
    bad.write_text("def pool_forward(A_prev, hparameters, mode='max'):\n    return A_prev +\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(bad)])
    assert r.exit_code == 2 and r.stderr == f"cnncli: error: {bad}:2: syntax error: invalid syntax\n"


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cnncli", "gradcheck", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_real_process_exit_codes_and_clean_json_stdout():
    ok = _run("--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["passed"] is True and ok.stderr == ""
    bad = _run("--impl", str(make_bugs.bug_file("mask_min")), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["passed"] is False
    usage = _run("--samples", "0")
    assert usage.returncode == 2 and usage.stderr == "cnncli: error: --samples must be >= 1, got 0\n"


def test_json_writes_nan_as_null(tmp_path):
    """JSON has no NaN: a user function returning NaN gives null errors in a strictly valid document."""
    path = tmp_path / "nan.py"
    path.write_text("import numpy as np\n\ndef distribute_value(dz, shape):\n    return np.full(shape, np.nan)\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--json"])
    assert r.exit_code == 1 and ": NaN" not in r.stdout and "Infinity" not in r.stdout  # "returned NaN" is text

    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    doc = json.loads(r.stdout, parse_constant=refuse)
    finding = doc["functions"][0]["findings"][0]
    assert finding["passed"] is False and finding["relative_error"] is None and finding["max_abs_error"] is None
    assert finding["got"] is None and finding["expected"] == 2.0 / 4
