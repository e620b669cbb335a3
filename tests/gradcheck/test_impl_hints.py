"""--impl hints that name the real mistake, each on a small realistic file (tests/impls/make_bugs.py)."""

import re
import sys

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams, conv2d, conv2d_backward, pool2d, pool2d_backward
from cnncli.gradcheck import mistakes
from cnncli.gradcheck.impl import check_impl

make_bugs = sys.modules["cnncli_tests_make_bugs"]  # loaded once by tests/conftest.py


def _numpy_refuses_size_1_arrays() -> bool:
    try:
        float(np.ones((1, 1, 1)))
    except TypeError:
        return True
    return False


numpy2 = pytest.mark.skipif(not _numpy_refuses_size_1_arrays(), reason="this numpy still converts size-1 arrays")


def _report(name):
    return {f.name: f for f in make_bugs.report(name).functions}


def _line_of(name, text):
    lines = make_bugs.bug_file(name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_a_backward_that_ignores_the_stride_and_crops_with_minus_pad_gets_both_named():
    by = _report("backward_stride_ignored_and_crop")
    hints = by["conv_backward"].diagnosis
    assert any("row start ignores the stride (vert_start = h)" in h for h in hints), hints
    assert any("[pad:-pad] is empty when pad = 0" in h for h in hints), hints
    assert not any("non-square" in h or "swapped" in h for h in hints), hints
    line = _line_of("backward_stride_ignored_and_crop", "da_prev_pad[pad:-pad, pad:-pad, :]")
    assert any(h.startswith(f"line {line} `dA_prev[i, :, :, :] = da_prev_pad[pad:-pad, pad:-pad, :]`") for h in hints)
    assert all(by[n].passed for n in by if n != "conv_backward")


def test_a_backward_that_ignores_the_stride_alone_is_named():
    hints = _report("backward_stride_ignored")["conv_backward"].diagnosis
    assert hints[0] == "the window's row start ignores the stride (vert_start = h): use vert_start = h * stride"


def test_a_column_start_that_uses_h_is_named_with_the_fix():
    by = _report("forward_columns_use_h")
    assert not by["conv_forward"].passed
    assert by["conv_forward"].diagnosis[0] == ("the window's column start uses h (horiz_start = h * stride): "
                                               "it should use w (horiz_start = w * stride)")


def test_a_missing_bias_is_named_in_conv_single_step_and_conv_forward():
    by = _report("bias_missing")
    assert by["conv_single_step"].diagnosis[0].startswith("the bias is not added: expected - got equals b exactly")
    assert by["conv_forward"].diagnosis[0] == "the bias is not added: Z equals the convolution without b exactly"


@pytest.mark.parametrize("name", ["pool_average_shape_stride", "pool_backward_assign", "pool_backward_stride",
                                  "mask_min", "distribute_sum", "pool_max_mean_and_average_assigned"])
def test_pool_backward_hints_never_mention_W(name):
    report = _report(name)["pool_backward"]
    assert not report.passed
    assert report.diagnosis and not any(re.search(r"\bW\b|n_C_prev|filter", h) for h in report.diagnosis), \
        report.diagnosis


def test_a_forward_blamed_while_its_backward_fails_says_so_and_names_where():
    by = _report("pool_max_mean_and_average_assigned")
    assert not by["pool_backward"].passed
    blame = next(h for h in by["pool_forward"].diagnosis if "pool_backward" in h)
    assert "pool_backward matches cnncli's gradients" not in blame  # it does not, on average pooling
    assert blame.startswith("pool_backward's dA_prev match cnncli's gradients on pool max f2 s2, pool max f3 s2, "
                            "pool max f2 s1 but not")
    assert blame.endswith("(pool_backward fails elsewhere: see its row)")


@numpy2
def test_float_of_a_1_1_1_bias_says_numpy_2_refuses_what_numpy_1_ran():
    by = _report("float_of_b")
    line = _line_of("float_of_b", "Z = Z + float(b)")
    for name in ("conv_single_step", "conv_forward"):
        hint = by[name].diagnosis[0]
        assert hint.startswith(f"line {line} `Z = Z + float(b)`: float() of an array such as b (shape (1, 1, 1)) "
                               f"ran under numpy < 2 but numpy {np.__version__} refuses it: "
                               "use float(np.squeeze(b)) or b.item()"), hint
    assert by["conv_backward"].passed  # checked with cnncli's forward cache: its maths is right


@numpy2
def test_a_1_1_1_array_assigned_to_one_element_says_numpy_2_refuses_and_that_the_values_are_right():
    by = _report("array_into_element")
    line = _line_of("array_into_element", "Z[i, h, w, c] = conv_single_step(")
    hints = by["conv_forward"].diagnosis
    assert hints[0].startswith(f"line {line} `Z[i, h, w, c] = conv_single_step(a_slice_prev, weights, biases)`: "
                               "assigning an array of shape (1, 1, 1) to one element ran under numpy < 2 but "
                               f"numpy {np.__version__} refuses it"), hints
    assert "your conv_single_step's values are right, returned as arrays of shape (1, 1, 1) instead of numbers" \
        in hints
    assert by["conv_single_step"].passed  # its value is right: (1, 1, 1) and () compare equal


def test_an_exception_quotes_its_source_line():
    by = _report("crop_minus_pad")
    line = _line_of("crop_minus_pad", "[pad:-pad, pad:-pad, :]")
    e = by["conv_backward"].errors[0]
    assert e.source == "dA_prev[i, :, :, :] = da_prev_pad[pad:-pad, pad:-pad, :]"
    assert e.where == f"at line {line}: `{e.source}`" and e.to_dict()["source"] == e.source


def test_a_crash_on_padded_configurations_only_is_named_as_such():
    hints = _report("dW_unpadded_slice")["conv_backward"].diagnosis
    assert any(h.startswith("it raises only with padding (pad > 0)") for h in hints), hints


# The replays are the classic loops: with the right window starts they are the engine (an independent oracle).

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (3, 2)])
def test_conv_replays_with_the_right_starts_are_the_engine(stride, pad):
    A, W, b = RNG.normal(size=(2, 7, 8, 3)), RNG.normal(size=(3, 3, 3, 4)), RNG.normal(size=(1, 1, 1, 4))
    p = ConvParams(stride=stride, pad=pad)
    Z = conv2d(A, W, b, p)
    np.testing.assert_allclose(mistakes.conv_forward_replay(A, W, b, stride, pad, mistakes._RIGHT, Z.shape[1:3]), Z,
                               rtol=1e-12, atol=1e-12)
    G = RNG.normal(size=Z.shape)
    g = conv2d_backward(G, A, W, p)
    dA, dW, db = mistakes.conv_backward_replay(G, A, W, stride, pad, mistakes._RIGHT)
    for got, want in ((dA, g.dA_prev), (dW, g.dW), (db.reshape(-1), g.db.reshape(-1))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("f,stride", [(2, 2), (3, 2), (2, 1)])
def test_pool_replays_with_the_right_starts_are_the_engine(mode, f, stride):
    A = RNG.normal(size=(2, 7, 6, 3))
    p = PoolParams(f=f, stride=stride, mode=mode)
    out = pool2d(A, p)
    np.testing.assert_allclose(mistakes.pool_forward_replay(A, f, stride, mode, mistakes._RIGHT, out.shape[1:3]), out,
                               rtol=1e-12)
    G = RNG.normal(size=out.shape)
    np.testing.assert_allclose(mistakes.pool_backward_replay(G, A, f, stride, mode, mistakes._RIGHT),
                               pool2d_backward(G, A, p), rtol=1e-12, atol=1e-12)


def test_a_replay_whose_windows_leave_the_input_is_none():
    A, W, b = RNG.normal(size=(1, 5, 7, 2)), RNG.normal(size=(3, 3, 2, 1)), RNG.normal(size=(1, 1, 1, 1))
    uses_h = mistakes.WINDOW_STARTS["columns_use_h"][0]
    assert mistakes.conv_forward_replay(A, W, b, 2, 0, uses_h, (2, 3)) is not None  # h*2 + 3 <= 7: fits
    rows_use_w = mistakes.WINDOW_STARTS["rows_use_w"][0]
    assert mistakes.conv_forward_replay(A, W, b, 2, 0, rows_use_w, (2, 3)) is None  # w*2 + 3 > 5 at w = 2


def test_no_mistake_is_named_when_two_replays_explain_the_outputs_equally():
    runs = [(False, lambda start: np.zeros(2), np.zeros(2))]  # every replay gives the same: no single mistake
    assert mistakes.recognise(runs) is None
    assert mistakes.recognise([(True, lambda start: np.zeros(2), np.zeros(2))]) is None  # nothing failed


def test_distribute_value_giving_every_element_dz_is_named():
    # the classic bug, in a whole file: a = np.ones(shape) * dz, the average never taken
    by = _report("distribute_no_average")
    assert "    a = np.ones(shape) * dz\n" in make_bugs.bug_file("distribute_no_average").read_text()
    assert by["distribute_value"].diagnosis == ("every element is dz, not the average: divide by the window's "
                                                "size, average = dz / (n_H * n_W)",)


@pytest.mark.parametrize("value,hint", [
    ("dz * shape[0] * shape[1]", "dz is multiplied by n_H * n_W: divide instead"),
    ("dz / shape[0]", "dz is divided by n_H only: "),
    ("dz / shape[1]", "dz is divided by n_W only: "),
    ("dz / shape[0] * shape[1]", "dz / n_H * n_W is (dz / n_H) * n_W: "),
    ("dz / shape[1] * shape[0]", "dz / n_W * n_H is (dz / n_W) * n_H: "),
    ("dz / (shape[0] + shape[1])", "dz is divided by n_H + n_W: "),
])
def test_each_classic_distribute_value_mistake_is_told_from_the_others(tmp_path, value, hint):
    path = tmp_path / "dv.py"
    path.write_text(f"import numpy as np\n\n\ndef distribute_value(dz, shape):\n    return np.ones(shape) * ({value})\n")
    (fn,) = check_impl(path).functions
    assert not fn.passed and len(fn.diagnosis) == 1 and fn.diagnosis[0].startswith(hint), fn.diagnosis
    assert fn.diagnosis[0].endswith("average = dz / (n_H * n_W)")


def test_a_distribute_value_wrong_otherwise_gets_no_named_mistake(tmp_path):
    # one element off: no classic mistake's formula gives that, so none is named
    path = tmp_path / "dv.py"
    path.write_text("import numpy as np\n\n\ndef distribute_value(dz, shape):\n"
                    "    a = np.ones(shape) * dz / (shape[0] * shape[1])\n    a[0, 0] = 0\n    return a\n")
    (fn,) = check_impl(path).functions
    assert not fn.passed and fn.diagnosis == ()


@pytest.mark.parametrize("name", ["distribute_no_average", "distribute_precedence", "distribute_sum"])
def test_a_pool_backward_wrong_only_through_distribute_value_is_told_to_fix_that_first(name):
    # the classic pool_backward calls distribute_value for average pooling: its failures there are that
    # mistake, and the student should fix distribute_value, not hunt in pool_backward
    by = _report(name)
    assert not by["distribute_value"].passed and not by["pool_backward"].passed
    assert by["pool_backward"].diagnosis[0] == ("its average-pooling errors are exactly your distribute_value's "
                                                "mistake (see its row): fix distribute_value first")
    assert all(f.passed for f in by["pool_backward"].findings if "max" in f.case)


def test_a_pool_backward_with_a_mistake_of_its_own_is_not_blamed_on_distribute_value(tmp_path):
    # distribute_value gives every element dz, and pool_backward starts its windows at w (not w * stride):
    # the replay with distribute_value's mistake alone does not give its outputs
    text = make_bugs.bug_file("pool_backward_stride").read_text()
    path = tmp_path / "two.py"
    assert "    a = np.ones(shape) * average\n" in text
    path.write_text(text.replace("    a = np.ones(shape) * average\n", "    a = np.ones(shape) * dz\n"))
    by = {f.name: f for f in check_impl(path).functions}
    assert not by["distribute_value"].passed and not by["pool_backward"].passed
    assert not any("distribute_value's mistake" in h for h in by["pool_backward"].diagnosis)
    # a right distribute_value with pool_backward's own average bug: nothing to blame on it either
    by = _report("pool_average_shape_stride")
    assert by["distribute_value"].passed
    assert not any("distribute_value's mistake" in h for h in by["pool_backward"].diagnosis)
