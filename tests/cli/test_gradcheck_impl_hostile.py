"""--impl against code that misbehaves only on some calls, and against extreme --eps: the verdict stays the
maths' own, the exit code ours, the JSON whole."""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cnncli.cli import app
from tests.impls.make_bugs import bug_file

runner = CliRunner()
CORRECT = Path(__file__).resolve().parents[1] / "impls" / "correct.py"

# right on the first call per configuration (the engine comparison), flat on the perturbed calls
FLAT_ON_PERTURBED = '''
_cf = conv_forward
_calls = {}


def conv_forward(A_prev, W, b, hparameters):
    Z, cache = _cf(A_prev, W, b, hparameters)
    key = (A_prev.shape, W.shape, str(hparameters))
    _calls[key] = _calls.get(key, 0) + 1
    return (Z if _calls[key] == 1 else Z.ravel()), cache
'''


def _run(*args):
    r = runner.invoke(app, ["gradcheck", "--impl", *map(str, args), "--json"])
    return r, (json.loads(r.stdout) if r.stdout else None)


def test_a_forward_that_returns_another_shape_when_perturbed_fails_its_backward_not_us(tmp_path):
    path = tmp_path / "flat.py"
    path.write_text(CORRECT.read_text() + FLAT_ON_PERTURBED)
    r, doc = _run(path, "--only", "conv_backward")
    assert r.exit_code == 1, r.output  # a FAIL, not an internal error
    (fn,) = doc["functions"]
    assert fn["name"] == "conv_backward" and not fn["passed"]
    messages = {e["exception"] for e in fn["errors"]}
    assert "returned an output of shape (96,) on perturbed inputs, not (2, 3, 4, 4)" in messages


def test_a_large_eps_does_not_let_a_wrong_max_pool_backward_pass():
    # the assigning bug is caught by the engine comparison, which takes no step: --eps must not shrink it
    for eps in ("1e-6", "1", "1e6"):
        r, doc = _run(bug_file("pool_backward_assign"), "--only", "pool_backward", "--eps", eps)
        assert r.exit_code == 1 and doc["passed"] is False, eps
    r, doc = _run(CORRECT, "--only", "pool_backward", "--eps", "1")
    assert r.exit_code == 0 and doc["passed"] is True
    (fn,) = doc["functions"]
    engine = [f for f in fn["findings"] if f["against"] == "engine" and f["case"].startswith("pool max")]
    # random normal inputs have no exact ties: every element is compared with the engine
    assert engine and all(f["kinks"] == 0 and f["checked"] > 0 for f in engine)
    numerical_max = [f for f in fn["findings"] if f["against"] == "numerical" and f["case"].startswith("pool max")]
    # where nothing is left to compare (f2: every window within the step of a tie) no vacuous pass, a note
    assert all(f["checked"] > 0 for f in numerical_max)
    assert any(n.startswith("pool_backward's dA_prev was not compared with central differences of your "
                            "pool_forward on ") and n.endswith(": at --eps 1 every element lies within the step "
                                                             "of a tie (the default --eps compares them)")
               for n in doc["notes"])


def test_extreme_eps_leaves_the_numerical_comparison_out_with_a_note_and_blames_nothing():
    for eps, why in (("1e308", "the differences overflow"), ("1e-300", "the step is lost in rounding")):
        r, doc = _run(CORRECT, "--eps", eps)
        assert r.exit_code == 0 and doc["passed"] is True, (eps, r.output)
        assert not any("likely wrong" in n for n in doc["notes"]), doc["notes"]
        assert any(f"at --eps {float(eps):g} {why}" in n for n in doc["notes"]), doc["notes"]
        # the user's own warnings are echoed as theirs; none of ours reaches the terminal
        assert all(line.startswith("[your code]") for line in r.stderr.splitlines()), r.stderr


def test_only_with_a_name_the_file_does_not_define_is_refused(tmp_path):
    path = tmp_path / "pad_only.py"
    path.write_text("import numpy as np\n\n\ndef zero_pad(X, pad):\n"
                    "    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--only", "zero_pad,conv_backward", "--json"])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"cnncli: error: {str(path)!r} defines zero_pad, not conv_backward (--only)\n"
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--only", "zero_pad", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["passed"] is True


def test_the_numerical_check_against_the_users_forward_still_catches_a_wrong_backward():
    # the wrong-stride pool backward disagrees with central differences of the (correct) forward too
    r, doc = _run(bug_file("pool_backward_stride"), "--only", "pool_backward")
    assert r.exit_code == 1
    (fn,) = doc["functions"]
    assert any(f["against"] == "numerical" and not f["passed"] for f in fn["findings"])
    assert np.isfinite([f["max_abs_error"] for f in fn["findings"] if f["max_abs_error"] is not None]).all()


def test_a_reply_refused_mid_stream_leaves_no_reply_out_of_turn(tmp_path):
    # 33 dimensions cannot cross the wire: the first perturbed reply is refused while the rest are on their way
    path = tmp_path / "dims33.py"
    path.write_text(CORRECT.read_text() + FLAT_ON_PERTURBED.replace("Z.ravel()", "np.zeros((1,) * 33)"))
    r, doc = _run(path, "--only", "conv_backward")
    assert r.exit_code == 1, r.output
    (fn,) = doc["functions"]
    messages = {e["exception"] for e in fn["errors"]}
    assert messages == {"returned something that is not a result (bad shape)"}
    assert all(e["function"] == "conv_forward" for e in fn["errors"])


def test_lists_in_place_of_the_exercises_tuples_are_read_as_those_tuples(tmp_path):
    path = tmp_path / "lists.py"
    path.write_text(CORRECT.read_text() + '''
_forward, _backward = conv_forward, conv_backward


def conv_forward(A_prev, W, b, hparameters):
    return list(_forward(A_prev, W, b, hparameters))


def conv_backward(dZ, cache):
    return list(_backward(dZ, cache))
''')
    r, doc = _run(path, "--only", "conv_forward,conv_backward")
    assert r.exit_code == 0 and doc["passed"] is True, r.output
    assert all(f["checked"] > 0 for fn in doc["functions"] for f in fn["findings"])
    wrong = tmp_path / "three.py"
    wrong.write_text(path.read_text().replace("return list(_forward(A_prev, W, b, hparameters))",
                                              "return list(_forward(A_prev, W, b, hparameters)) + [0]"))
    r, doc = _run(wrong, "--only", "conv_forward")
    assert r.exit_code == 1
    assert {f["detail"] for f in doc["functions"][0]["findings"]} == {"did not return a pair (output, cache)"}


def test_a_process_that_dies_in_one_mode_is_said_to_fail_there_not_to_raise(tmp_path):
    path = tmp_path / "segv.py"
    path.write_text(CORRECT.read_text() + '''
import os as _os
import signal as _signal

_pool_backward = pool_backward


def pool_backward(dA, cache, mode="max"):
    if mode == "average":
        _os.kill(_os.getpid(), _signal.SIGSEGV)
    return _pool_backward(dA, cache, mode)
''')
    r, doc = _run(path, "--only", "pool_backward")
    assert r.exit_code == 1
    (fn,) = doc["functions"]
    assert fn["diagnosis"] == ["it fails only in average pooling"]
    assert {e["kind"] for e in fn["errors"]} == {"crash"}
