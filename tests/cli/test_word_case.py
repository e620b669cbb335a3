"""Every word an option chooses (methods, modes, layer kinds, layouts, dtypes, pad words, flags) is read
in any case, on the command line and in the Python API; JSON echoes the canonical lowercase word, and an
unknown word is refused listing the lowercase valid ones."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import cnncli
from cnncli.cli import app
from cnncli.gradcheck.layers import gradcheck_conv, gradcheck_pool

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def doc_of(res):
    assert res.exit_code in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    doc.pop("seconds", None)
    for layer in doc.get("layers", []):  # a LAYER_SPEC is echoed as the user wrote it
        layer.pop("spec")
    return doc


@pytest.fixture
def d(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "A.npy", rng.standard_normal((2, 5, 5, 3)))
    np.save(tmp_path / "W.npy", rng.standard_normal((3, 3, 3, 4)))
    return tmp_path


# (lowercase argv, the same with the words in other cases)
SAME = [
    (["gradcheck", "{A}", "--f", "2", "--method", "full"], ["gradcheck", "{A}", "--f", "2", "--method", "FULL"]),
    (["gradcheck", "{A}", "--f", "2", "--method", "sample", "--samples", "5"],
     ["gradcheck", "{A}", "--f", "2", "--method", " Sample", "--samples", "5"]),
    (["gradcheck", "{A}", "--f", "2", "--dtype", "float64"], ["gradcheck", "{A}", "--f", "2", "--dtype", "FLOAT64"]),
    (["forward", "{A}", "--layer", "pool", "--f", "2", "--mode", "average", "--pad", "same", "--layout", "nhwc",
      "--dtype", "float32"],
     ["forward", "{A}", "--layer", "POOL", "--f", "2", "--mode", "AVG", "--pad", "Same", "--layout", "NHWC",
      "--dtype", "Float32"]),
    (["forward", "{A}", "--weights", "{W}", "--layer", "conv", "--pad", "valid"],
     ["forward", "{A}", "--weights", "{W}", "--layer", "Conv", "--pad", "VALID"]),
    (["shape", "--input", "9x9x3", "--layout", "nchw", "conv:f=3,p=same,c=4", "pool:f=2,mode=max,ceil=true"],
     ["shape", "--input", "9x9x3", "--layout", "NCHW", "CONV:F=3,P=SAME,C=4", "Pool:f=2,MODE=MAX,ceil=TRUE"]),
    (["shape", "--input", "8", "--layer", "tconv", "--f", "3"], ["shape", "--input", "8", "--layer", "TConv", "--f", "3"]),
    (["gradcheck", "--method", "fast"], ["gradcheck", "--method", "Fast"]),
]


@pytest.mark.parametrize("lower, other", SAME)
def test_a_word_in_any_case_gives_the_lowercase_words_document(d, lower, other):
    fill = {"{A}": d / "A.npy", "{W}": d / "W.npy"}
    want = doc_of(run(*[fill.get(a, a) for a in lower], "--json"))
    got = doc_of(run(*[fill.get(a, a) for a in other], "--json"))
    assert got == want


def test_the_json_echoes_the_canonical_words(d):
    doc = doc_of(run("gradcheck", d / "A.npy", "--f", "2", "--method", "FULL", "--json"))
    assert doc["method"] == "full" and doc["gradients"][0]["method"] == "full"
    doc = doc_of(run("forward", d / "A.npy", "--f", "2", "--mode", "AVG", "--layout", "NHWC", "--dtype", "FLOAT32",
                     "--json"))
    assert (doc["hyperparameters"]["mode"], doc["hyperparameters"]["layout"], doc["dtype"]) == ("average", "nhwc",
                                                                                                "float32")


@pytest.mark.parametrize("args, line", [
    (["gradcheck", "--method", "Fulll"], "--method must be one of auto, full, fast, sample, got 'Fulll'"),
    (["forward", "{A}", "--f", "2", "--mode", "MEDIAN"], "mode must be 'max' or 'average' (or 'avg'), got 'MEDIAN'"),
    (["forward", "{A}", "--f", "2", "--layout", "NHW"], "--layout must be 'nhwc' or 'nchw', got 'NHW'"),
    (["forward", "{A}", "--f", "2", "--dtype", "FLOAT16"], "--dtype must be 'float64' or 'float32', got 'FLOAT16'"),
])
def test_an_unknown_word_is_refused_listing_the_lowercase_words(d, args, line):
    res = run(*[d / "A.npy" if a == "{A}" else a for a in args])
    assert (res.exit_code, res.stderr) == (2, f"cnncli: error: {line}\n")


def test_the_python_api_reads_layout_and_method_in_any_case():
    rng = np.random.default_rng(2)
    A, W, b = rng.standard_normal((1, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    want, _ = cnncli.conv_forward(A, W, b, {"stride": 1, "pad": 1, "layout": "nchw"})
    for hp, kw in (({"stride": 1, "pad": 1, "layout": "NCHW"}, {}), ({"stride": 1, "pad": 1}, {"layout": "Nchw"})):
        Z, cache = cnncli.conv_forward(A, W, b, hp, **kw)
        np.testing.assert_array_equal(Z, want)  # the same computation, bit for bit
        dA, dW, db = cnncli.conv_backward(np.ones_like(Z), cache)
        assert dA.shape == A.shape and dW.shape == W.shape
    P, _ = cnncli.pool_forward(A, {"f": 5, "stride": 1, "layout": "NCHW"}, mode="MAX")
    np.testing.assert_array_equal(P.reshape(3), A.max(axis=(2, 3)).reshape(3))  # one 5x5 window per channel
    r = gradcheck_conv(A, W, b, {"stride": 1, "pad": 1, "layout": "NCHW"}, layout="nchw", method="FULL")
    assert r.passed and r.method == "full"
    assert gradcheck_pool(A, {"f": 2, "stride": 2}, layout="NCHW", method="Fast").method == "fast"
    with pytest.raises(ValueError, match="layout given twice"):
        gradcheck_pool(A, {"f": 2, "layout": "nhwc"}, layout="NCHW")
