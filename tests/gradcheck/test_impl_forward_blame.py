"""--impl: a backward that matches the engine passes even when the user's own forward is wrong;
the report then points at the forward (its numerical gradients disagree with the true ones)."""

from pathlib import Path

from cnncli.gradcheck.impl import check_impl

IMPLS = Path(__file__).resolve().parents[1] / "impls"
CORRECT = (IMPLS / "correct.py").read_text()
CONV_RETURN = "    cache = (A_prev, W, b, hparameters)\n    return Z, cache\n"
POOL_RETURN = "    cache = (A_prev, hparameters)\n    return A, cache\n"


def blame(layer):
    return (f"{layer}_backward matches cnncli's gradients but not the numerical gradients of your "
            f"{layer}_forward: your {layer}_forward is likely wrong")


def variant(tmp_path, name, *replacements):
    text = CORRECT
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return check_impl(path)


def test_a_scaled_conv_forward_is_blamed_not_the_correct_backward(tmp_path):
    r = variant(tmp_path, "fwdbug.py", (CONV_RETURN, "    Z = Z * 1.001\n" + CONV_RETURN))
    by = {f.name: f for f in r.functions}
    assert not by["conv_forward"].passed and by["conv_forward"].diagnosis[0] == blame("conv")
    backward = by["conv_backward"]
    assert backward.passed and backward.diagnosis == ()
    assert {x.against for x in backward.findings} >= {"engine"}
    assert all(x.passed for x in backward.findings)
    assert [f.name for f in r.functions if not f.passed] == ["conv_forward"]
    assert blame("conv") not in r.notes


def test_a_scaled_pool_forward_is_blamed_not_the_correct_backward(tmp_path):
    r = variant(tmp_path, "pfwdbug.py", (POOL_RETURN, "    A = A * 1.001\n" + POOL_RETURN))
    by = {f.name: f for f in r.functions}
    assert by["pool_backward"].passed
    assert not by["pool_forward"].passed and by["pool_forward"].diagnosis[0] == blame("pool")
    assert [f.name for f in r.functions if not f.passed] == ["pool_forward"]


def test_a_wrong_backward_still_fails_when_the_forward_is_wrong_too(tmp_path):
    r = variant(tmp_path, "both.py", (CONV_RETURN, "    Z = Z * 1.001\n" + CONV_RETURN),
                ("db[:, :, :, c] += dZ[i, h, w, c]", "db[:, :, :, c] = dZ[i, h, w, c]"))
    by = {f.name: f for f in r.functions}
    backward = by["conv_backward"]
    assert not backward.passed
    assert {x.quantity for x in backward.findings if not x.passed} == {"db"}
    assert "only the bias gradient db is wrong" in backward.diagnosis
    # the forward's row says what matched and that the backward fails elsewhere: the two rows agree
    assert by["conv_forward"].diagnosis[0] == (
        "conv_backward's dA_prev, dW match cnncli's gradients but not the numerical gradients of your "
        "conv_forward: your conv_forward is likely wrong (conv_backward fails elsewhere: see its row)")


def test_a_forward_right_on_its_inputs_but_blind_to_perturbations_gets_a_note(tmp_path):
    """Outputs remembered per configuration: right against the engine, numerical gradients all 0."""
    r = variant(tmp_path, "memo.py",
                ("def conv_forward(A_prev, W, b, hparameters):", "def _conv_forward(A_prev, W, b, hparameters):"),
                ("def conv_backward(", "_SEEN = {}\n\n\ndef conv_forward(A_prev, W, b, hparameters):\n"
                 "    key = (A_prev.shape, W.shape, hparameters['stride'], hparameters['pad'])\n"
                 "    if key not in _SEEN:\n        _SEEN[key] = _conv_forward(A_prev, W, b, hparameters)[0]\n"
                 "    return _SEEN[key].copy(), (A_prev, W, b, hparameters)\n\n\ndef conv_backward("))
    by = {f.name: f for f in r.functions}
    assert by["conv_forward"].passed and by["conv_backward"].passed
    assert blame("conv") in r.notes and by["conv_forward"].diagnosis == ()


def test_only_a_backward_defined_is_checked_against_the_engine_alone(tmp_path):
    start = CORRECT.index("def conv_backward(")
    end = CORRECT.index("def pool_forward(")
    path = tmp_path / "bwonly.py"
    path.write_text("import numpy as np\n\n" + CORRECT[CORRECT.index("def zero_pad("):CORRECT.index("def conv_single_step(")]
                    + CORRECT[start:end])
    r = check_impl(path)
    by = {f.name: f for f in r.functions}
    assert by["conv_backward"].passed and {x.against for x in by["conv_backward"].findings} == {"engine"}
    assert not any("likely wrong" in n for n in r.notes)
