"""--impl: the correct classic solution passes, every one-bug variant is flagged, user errors are described."""

import sys
from pathlib import Path

import pytest

from cnncli.engine.geometry import window_geometry
from cnncli.errors import ImplError
from cnncli.gradcheck.battery import BATTERY, run_battery
from cnncli.gradcheck.impl import check_impl

IMPLS = Path(__file__).resolve().parents[1] / "impls"
make_bugs = sys.modules["cnncli_tests_make_bugs"]  # loaded once by tests/conftest.py
BUGS = make_bugs.BUGS


def test_correct_solution_passes():
    r = check_impl(IMPLS / "correct.py")
    assert r.passed, [(f.name, f.errors, [x for x in f.findings if not x.passed]) for f in r.functions]
    assert [f.name for f in r.functions] == ["zero_pad", "conv_single_step", "create_mask_from_window",
                                             "distribute_value", "conv_forward", "conv_backward", "pool_forward",
                                             "pool_backward"]
    backward = {f.name: f for f in r.functions}["conv_backward"]
    assert {x.against for x in backward.findings} == {"engine", "numerical"}


def test_at_least_ten_bug_files_each_one_snippet_of_correct():
    assert len(BUGS) >= 10
    correct = (IMPLS / "correct.py").read_text()
    for name, (_, old, new) in BUGS.items():
        assert correct.count(old) == 1 and old != new, name  # exactly one mistake, in one place
        text = make_bugs.bug_file(name).read_text()
        assert text.split('"""', 2)[2] == correct.split('"""', 2)[2].replace(old, new), name
    for name, (_, edits) in make_bugs.TWO_BUGS.items():
        body = correct.split('"""', 2)[2]
        for old, new in edits:
            assert correct.count(old) == 1 and old != new, name
            body = body.replace(old, new)
        assert make_bugs.bug_file(name).read_text().split('"""', 2)[2] == body, name


@pytest.mark.parametrize("name", sorted(BUGS) + sorted(make_bugs.TWO_BUGS))
def test_every_one_bug_variant_is_flagged(name):
    r = make_bugs.report(name)
    assert not r.passed


@pytest.mark.parametrize("name,function,hint", [
    ("db_assigned", "conv_backward", "only the bias gradient db"),
    ("crop_minus_pad", "conv_backward", "[pad:-pad] is empty when pad = 0"),
    ("forward_stride_ignored", "conv_forward", "row start ignores the stride (vert_start = h)"),
    ("pool_backward_stride", "pool_backward", "column start ignores the stride (horiz_start = w)"),
    ("dW_unpadded_slice", "conv_backward", "only with padding"),
    ("average_uses_max", "pool_forward", "only in average pooling"),
])
def test_likely_mistake_is_named(name, function, hint):
    r = make_bugs.report(name)
    report = {f.name: f for f in r.functions}[function]
    assert not report.passed and any(hint in d for d in report.diagnosis), report.diagnosis


def test_user_exception_reports_function_and_line_and_others_are_still_checked():
    r = make_bugs.report("crop_minus_pad")
    by = {f.name: f for f in r.functions}
    errors = by["conv_backward"].errors
    line = next(i for i, text in enumerate((make_bugs.bug_file("crop_minus_pad")).read_text().splitlines(), 1)
                if "[pad:-pad, pad:-pad, :]" in text)
    assert errors and all(e.line == line and e.exception.startswith("ValueError") for e in errors)
    assert {e.case for e in errors} == {c.name for c in BATTERY if c.classic and c.layer == "conv" and c.pad == 0}
    assert all(by[n].passed for n in by if n != "conv_backward")


def test_import_problems_are_impl_errors_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\n\ndef conv_forward(A_prev, W, b, hparameters)\n    pass\n")
    with pytest.raises(ImplError, match=r"bad\.py:3: syntax error"):
        check_impl(bad)
    boom = tmp_path / "boom.py"
    boom.write_text("x = 1\nraise RuntimeError('no GPU')\n")
    with pytest.raises(ImplError, match=r"boom\.py:2: importing the file raised RuntimeError: no GPU"):
        check_impl(boom)
    empty = tmp_path / "empty.py"
    empty.write_text("from cnncli import conv_forward  # imported, not the user's own\n")
    with pytest.raises(ImplError, match=r"empty.py' defines no classic function \(conv_forward...\)$"):
        check_impl(empty)
    with pytest.raises(ImplError, match="no such file"):
        check_impl(tmp_path / "missing.py")


def test_partial_file_checks_what_it_defines_and_user_prints_are_swallowed(tmp_path, capsys):
    src = (IMPLS / "correct.py").read_text()
    part = tmp_path / "part.py"
    part.write_text("import numpy as np\nprint('hello from the user')\n\n" + src.split("def conv_forward")[0]
                    .split("import numpy as np", 1)[1].replace("    return X_pad", "    print('padding!')\n    return X_pad"))
    r = check_impl(part)
    assert [f.name for f in r.functions] == ["zero_pad", "conv_single_step"] and r.passed
    assert "pool_backward" in r.missing
    assert capsys.readouterr().out == ""


def test_battery_covers_the_mistake_prone_configurations():
    classic_conv = [c for c in BATTERY if c.classic and c.layer == "conv"]
    pools = [c for c in BATTERY if c.layer == "pool"]
    assert {c.pad for c in classic_conv} >= {0, 1}
    assert {c.stride for c in classic_conv} >= {1, 2}
    assert {c.W_shape[0] % 2 for c in classic_conv} == {0, 1}
    assert any(c.A_shape[1] != c.A_shape[2] for c in classic_conv)
    assert any(c.W_shape[3] != c.A_shape[3] for c in classic_conv)
    assert all(c.A_shape[0] >= 2 for c in BATTERY)
    assert {c.mode for c in pools} == {"max", "average"}
    assert any(c.stride < c.f for c in pools)
    # a stride that leaves input rows unread: (n + 2p - f) not a multiple of the stride
    assert any((c.A_shape[1] + 2 * c.pad - c.kernel) % c.stride for c in classic_conv if c.stride > 1)
    for c in classic_conv:
        window_geometry(c.A_shape[1:3], c.kernel, c.stride, 1, c.pad)  # every case fits


def test_battery_passes_on_the_engine():
    r = run_battery()
    assert r.passed and len(r.cases) == len(BATTERY)
    assert all(g.checked > 0 for c in r.cases for g in c.gradients)


def test_odd_user_code_is_reported_not_fatal(tmp_path):
    src = (IMPLS / "correct.py").read_text()
    odd = tmp_path / "odd.py"
    odd.write_text(src + "\n\ndef zero_pad(X, pad):\n    import sys\n    sys.exit(3)\n"
                   "\n\ndef distribute_value(dz, shape):\n    return None\n")
    r = check_impl(odd)
    by = {f.name: f for f in r.functions}
    assert by["zero_pad"].errors[0].exception.startswith("SystemExit")
    assert by["zero_pad"].errors[0].line == len(src.splitlines()) + 5
    assert not by["distribute_value"].passed
    assert by["distribute_value"].findings[0].detail == "returned None (a missing return?)"
    assert not r.passed


def test_classic_float_of_bias_gets_a_numpy_hint(tmp_path):
    """The exercise's `float(b)` on a (1, 1, 1) bias fails on recent numpy; the report says why."""
    import numpy as np

    try:
        float(np.ones((1, 1, 1)))
        pytest.skip("this numpy still converts 1-element arrays with float()")
    except TypeError:
        pass
    text = (IMPLS / "correct.py").read_text()
    assert "Z = Z + np.squeeze(b)" in text
    path = tmp_path / "floatb.py"
    path.write_text(text.replace("Z = Z + np.squeeze(b)", "Z = Z + float(b)"))
    step = {f.name: f for f in check_impl(path).functions}["conv_single_step"]
    assert not step.passed
    assert any("use float(np.squeeze(b)) or b.item()" in h for h in step.diagnosis)


def test_findings_carry_where_the_errors_sit():
    """A backward that ignores the stride gets its window positions wrong in stripes of the input."""
    r = make_bugs.report("pool_backward_stride")
    report = {f.name: f for f in r.functions}["pool_backward"]
    hints = {x.hint for x in report.findings if not x.passed and x.against == "engine"}
    assert any(h and h.endswith("(a stripe): look at the stride") for h in hints), hints
    assert all("hint" in x.to_dict() and "error_map" not in x.to_dict() for x in report.findings)
