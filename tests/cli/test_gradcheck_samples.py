"""``--samples N`` with a method that checks no sample (full, fast, auto on a small input) is said in a
note, in the table and the JSON, for the battery, a layer, a streamed set and ``--impl``; never silently."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import cnncli.cli.gradcheck as cli_gradcheck
from cnncli.cli.app import load_app
from cnncli.gradcheck.battery import BATTERY

app = load_app()
runner = CliRunner()
IMPLS = Path(__file__).resolve().parents[1] / "impls"

FULL = "--samples 5 not used: --method full checks every element"
FAST = "--samples 5 not used: --method fast checks random directions, not elements"
AUTO = "--samples 5 not used: auto checks every element of an input this small"


def _json(args):
    r = runner.invoke(app, ["gradcheck", *args, "--json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _unused(notes):
    return [n for n in notes if "not used" in n]


@pytest.mark.parametrize("method, note", [("full", FULL), ("fast", FAST), ("auto", AUTO), ("sample", None)])
def test_the_battery_says_when_samples_is_not_used(method, note):
    doc = _json(["--method", method, "--samples", "5"])
    assert _unused(doc["notes"]) == ([note] if note else [])
    if method in ("full", "auto"):  # every element of every case, whatever --samples said
        for case, config in zip(doc["cases"], BATTERY):
            sizes = {"dA_prev": int(np.prod(config.A_shape))}
            if config.layer == "conv":
                sizes.update(dW=int(np.prod(config.W_shape)), db=config.W_shape[3])
            for g in case["gradients"]:
                assert g["checked"] + g["kinks"] == sizes[g["name"]]
    if method == "sample":  # used: 5 per tensor, or the whole tensor where it holds fewer
        for case in doc["cases"]:
            assert all(g["checked"] + g["kinks"] <= 5 for g in case["gradients"])
    table = runner.invoke(app, ["gradcheck", "--method", method, "--samples", "5"]).stdout
    assert (f"note: {note}" in table) if note else ("not used" not in table)


def test_no_note_without_samples_and_the_battery_json_has_empty_notes():
    for method in ("full", "fast", "auto", "sample"):
        assert _json(["--method", method])["notes"] == []


@pytest.fixture
def layer(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "A.npy", rng.normal(size=(2, 5, 5, 2)))
    np.save(tmp_path / "W.npy", rng.normal(size=(3, 3, 2, 3)))
    return [str(tmp_path / "A.npy"), "--weights", str(tmp_path / "W.npy")]


@pytest.mark.parametrize("method, note", [("full", FULL), ("fast", FAST), ("auto", AUTO), ("sample", None)])
def test_a_layer_check_says_when_samples_is_not_used(layer, method, note):
    doc = _json([*layer, "--method", method, "--samples", "5"])
    assert _unused(doc["notes"]) == ([note] if note else [])
    checked = {g["name"]: g["checked"] + g["kinks"] for g in doc["gradients"]}
    if method in ("full", "auto"):
        assert checked == {"dA_prev": 2 * 5 * 5 * 2, "dW": 3 * 3 * 2 * 3, "db": 3}
    elif method == "sample":
        assert checked == {"dA_prev": 5, "dW": 5, "db": 3}


def test_auto_on_a_large_input_uses_samples_and_says_nothing(tmp_path):
    np.save(tmp_path / "A.npy", np.random.default_rng(1).normal(size=(4, 20, 20, 3)))  # 4800 > auto's full limit
    doc = _json([str(tmp_path / "A.npy"), "--f", "2", "--stride", "2", "--samples", "5"])
    assert _unused(doc["notes"]) == [] and doc["gradients"][0]["method"] == "fast+sample"
    assert doc["gradients"][0]["checked"] + doc["gradients"][0]["kinks"] == 5


def test_a_streamed_check_says_it_as_the_in_memory_one(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = rng.integers(0, 256, size=(6, 6, 6, 2), dtype=np.uint8)
    np.save(tmp_path / "W.npy", rng.normal(size=(3, 3, 2, 2)) * 0.1)
    args = [str(tmp_path / "x.h5") + ":/x", "--weights", str(tmp_path / "W.npy"), "--method", "full",
            "--samples", "5"]
    whole = _json(args)
    monkeypatch.setattr(cli_gradcheck, "STREAM_VALUES", 0)  # stream this small set
    streamed = _json(args)
    assert _unused(whole["notes"]) == _unused(streamed["notes"]) == [FULL]
    assert whole["notes"] == streamed["notes"]


@pytest.mark.parametrize("method, note", [("full", "--samples 3 not used: --method full checks every element"),
                                          ("sample", None)])
def test_impl_says_when_samples_is_not_used(method, note):
    doc = _json(["--impl", str(IMPLS / "correct.py"), "--only", "conv_forward", "--method", method,
                 "--samples", "3"])
    assert doc["passed"] is True
    assert _unused(doc["notes"]) == ([note] if note else [])

