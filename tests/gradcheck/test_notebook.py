"""--impl on notebooks and nbconvert exports: definitions run, tests/prints/plots/magics are skipped,
missing modules are noted, a cell that does not parse is reported, the last definition wins."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import ImplError
from cnncli.gradcheck.impl import check_impl
from cnncli.gradcheck.userfile import CLASSIC

ROOT = Path(__file__).resolve().parents[2]
CORRECT = (ROOT / "tests" / "impls" / "correct.py").read_text()
runner = CliRunner()


def functions_of_correct():
    """name -> source of each function of correct.py, in order."""
    body = CORRECT.split('"""', 2)[2]
    chunks = body.split("\ndef ")[1:]
    return {c.split("(", 1)[0]: "def " + c.rstrip() + "\n" for c in chunks}


SETUP = ("import numpy as np\nimport h5py\nimport matplotlib.pyplot as plt\nfrom public_tests import *\n"
         "from test_utils import comparator, summary\n\n%matplotlib inline\n%load_ext autoreload\n"
         "plt.rcParams['figure.figsize'] = (5.0, 4.0)\nnp.random.seed(1)\n")


def student_cells():
    """A notebook as students have it: markdown, setup with test harness imports and magics,
    then each function in its own cell followed by a cell that tests it and prints."""
    cells = [("markdown", "# Convolutional Neural Networks: Step by Step"), ("code", SETUP)]
    for name, source in functions_of_correct().items():
        cells.append(("markdown", f"### {name}"))
        cells.append(("code", source))
        cells.append(("code", f"np.random.seed(1)\nx = np.random.randn(4, 3, 3, 2)\nprint('{name} ok')\n"
                              f"{name}_test({name})\n!echo done\nplt.imshow(x[0, :, :, 0])\n"))
    return cells


def notebook(tmp_path, cells, name="student.ipynb", version=4):
    """Write an nbformat ``version`` notebook of ``(cell_type, source)`` pairs (sources as lists of lines)."""
    if version == 4:
        doc = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}},
               "cells": [{"cell_type": t, "metadata": {}, "source": s.splitlines(keepends=True),
                          **({"outputs": [], "execution_count": None} if t == "code" else {})} for t, s in cells]}
    else:
        doc = {"nbformat": 3, "nbformat_minor": 0, "metadata": {},
               "worksheets": [{"cells": [{"cell_type": t, "input" if t == "code" else "source": s,
                                          "language": "python", "outputs": []} for t, s in cells]}]}
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=1))
    return str(path)


def cell_number(cells, needle):
    """1-based number of the first cell (counting every cell, markdown too) containing ``needle``."""
    return next(i for i, (_, s) in enumerate(cells, 1) if needle in s)


@pytest.mark.parametrize("version", [4, 3])
def test_a_students_notebook_is_checked_as_it_runs(tmp_path, version):
    cells = student_cells()
    r = runner.invoke(app, ["gradcheck", "--impl", notebook(tmp_path, cells, version=version), "--json"])
    assert r.exit_code == 0, r.stdout
    doc = json.loads(r.stdout)
    assert [f["name"] for f in doc["functions"]] == list(CLASSIC) and doc["passed"] and doc["not_defined"] == []
    notes = doc["notes"]
    # skipped: the setup's rcParams and seed; per test cell the seed, the print, the test call and the plot
    # (x = np.random.randn(...) is a simple assignment: it runs)
    with_skips = [i for i, (_, s) in enumerate(cells, 1) if "np.random.seed(1)" in s]
    assert notes[0] == (f"ran the definitions of the notebook; skipped {2 + 8 * 4} statement(s) that are not "
                        f"definitions (test calls, prints, plots; cells {', '.join(map(str, with_skips[:8]))}, ...)")
    assert "skipped 10 IPython line(s) (%magics, !shell, ?help)" in notes  # 2 in the setup, one per test cell
    for module in ("matplotlib", "public_tests", "test_utils"):
        assert (f"{module} is not installed here: its import was let through, and a function that uses it "
                "fails when called") in notes
    assert doc["printed_lines"] == 0  # the prints were not run


def test_a_cell_with_a_syntax_error_is_reported_and_the_rest_checked(tmp_path):
    cells = student_cells()
    n = cell_number(cells, "def conv_backward(")
    kind, source = cells[n - 1]
    lines = source.splitlines()
    bad = next(i for i, line in enumerate(lines) if "for h in range" in line)
    lines[bad] = lines[bad].rstrip(":")  # a missing colon
    cells[n - 1] = (kind, "\n".join(lines) + "\n")
    r = runner.invoke(app, ["gradcheck", "--impl", notebook(tmp_path, cells), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    fns = {f["name"]: f for f in doc["functions"]}
    assert [k for k, f in fns.items() if not f["passed"]] == ["conv_backward"]
    message = f"not checked: cell {n} has a syntax error at line {bad + 1}: expected ':'"
    assert fns["conv_backward"]["diagnosis"] == [message] and fns["conv_backward"]["findings"] == []
    (error,) = fns["conv_backward"]["errors"]
    assert error["kind"] == "syntax" and error["cell"] == n and error["line"] == bad + 1
    assert not any("syntax error" in note for note in doc["notes"])  # its row says it
    table = runner.invoke(app, ["gradcheck", "--impl", notebook(tmp_path, cells)])
    assert f"conv_backward {message}" in " ".join(table.stdout.split())


def test_the_last_definition_wins_and_a_note_says_so(tmp_path):
    wrong = "def zero_pad(X, pad):\n    return np.pad(X, ((0, 0), (pad, pad), (0, 0), (0, 0)))\n"
    correct = functions_of_correct()["zero_pad"]
    first_wrong = [("code", "import numpy as np\n"), ("code", wrong), ("markdown", "fixed:"), ("code", correct)]
    r = check_impl(notebook(tmp_path, first_wrong, "a.ipynb"))
    assert r.passed and "zero_pad is defined 2 times (cells 2 and 4): the last one (cell 4) is checked" in r.notes
    broken_first = [("code", "import numpy as np\n"), ("code", correct.replace("):", ")", 1)), ("code", correct)]
    r = check_impl(notebook(tmp_path, broken_first, "c.ipynb"))
    assert r.passed and ("cell 2 has a syntax error at line 1: expected ':'; the cell was skipped (zero_pad "
                         "checked from a later cell)") in r.notes
    last_wrong = [("code", "import numpy as np\n"), ("code", correct), ("code", wrong)]
    r = check_impl(notebook(tmp_path, last_wrong, "b.ipynb"))
    assert not r.passed and "zero_pad is defined 2 times (cells 2 and 3): the last one (cell 3) is checked" in r.notes


def test_a_function_that_needs_a_missing_module_fails_clearly_when_called(tmp_path):
    cells = [("code", "import numpy as np\nfrom test_utils import comparator\n"),
             ("code", "def distribute_value(dz, shape):\n    comparator(dz, shape)\n"
                      "    return np.full(shape, dz / (shape[0] * shape[1]))\n"),
             ("code", functions_of_correct()["zero_pad"])]
    r = check_impl(notebook(tmp_path, cells))
    by = {f.name: f for f in r.functions}
    assert by["zero_pad"].passed and not by["distribute_value"].passed
    e = by["distribute_value"].errors[0]
    assert e.exception == ("ModuleNotFoundError: test_utils.comparator needs the module 'test_utils', which is not "
                           "installed here (cnncli let its import pass so that the rest could be checked)")
    assert (e.cell, e.line, e.where) == (2, 2, "in cell 2 at line 2: `comparator(dz, shape)`")


def test_an_nbconvert_export_runs_its_cells_and_keeps_file_lines(tmp_path):
    fns = functions_of_correct()
    text = ("#!/usr/bin/env python\n# coding: utf-8\n\n# # Step by step\n\n# In[1]:\n\n\nimport numpy as np\n"
            "from public_tests import *\nget_ipython().run_line_magic('matplotlib', 'inline')\n\n\n")
    for i, name in enumerate(CLASSIC, 2):
        source = fns[name]
        if name == "distribute_value":
            source = source.replace("    (n_H, n_W) = shape", "    (n_H, n_W) = shape\n    assert n_H < 0, 'mine'")
        text += f"# In[{i}]:\n\n\n{source}\n\n# In[ ]:\n\n\n{name}_test({name})\nprint('done')\n\n\n"
    path = tmp_path / "export.py"
    path.write_text(text)
    r = check_impl(path)
    by = {f.name: f for f in r.functions}
    assert [n for n, f in by.items() if not f.passed] == ["distribute_value", "pool_backward"]
    e = by["distribute_value"].errors[0]
    line = text.splitlines().index("    assert n_H < 0, 'mine'") + 1
    assert (e.exception, e.line, e.cell) == ("AssertionError: mine", line, None)
    assert any(n.startswith("ran the definitions of the notebook; skipped 17 statement(s)") for n in r.notes)


ZERO_PAD = ("import numpy as np\n\n\ndef zero_pad(X, pad):\n    assert NAME == 'caf\\u00e9', NAME\n"
            "    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))\n")


@pytest.mark.parametrize("export", [False, True], ids=["module", "export"])
@pytest.mark.parametrize("encoded", [
    lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),  # a UTF-8 BOM, as Windows editors save
    lambda text: b"# -*- coding: latin-1 -*-\n" + text.encode("latin-1"),  # PEP 263
], ids=["bom", "latin-1 cookie"])
def test_a_py_file_is_decoded_as_python_decodes_it(tmp_path, encoded, export):
    # Python imports both files; a BOM read as text was U+FEFF, "invalid non-printable character" (exit 2 for a
    # module, a skipped cell 0 for an export), and a latin-1 literal came to the user's code garbled
    body = "NAME = 'caf\u00e9'\n" + ZERO_PAD
    text = f"#!/usr/bin/env python\n\n# In[1]:\n\n\n{body}\n# In[2]:\n\n\nprint(1)\n" if export else body
    path = tmp_path / "mine.py"
    path.write_bytes(encoded(text))
    r = check_impl(path, only=["zero_pad"])
    assert [(f.name, f.passed) for f in r.functions] == [("zero_pad", True)], [f.errors for f in r.functions]
    assert not any("syntax error" in n for n in r.notes), r.notes


@pytest.mark.parametrize("content,message", [
    ("{not json", "is not a notebook: not JSON (line 1, column 2)"),
    ('{"nbformat": 4, "cells": [{"cell_type": "markdown", "source": "hi"}]}',
     "has no code cells, so no classic function"),
    ('{"nbformat": 4, "cells": [{"cell_type": "code", "source": "x = 1\\n"}]}',
     "defines no classic function (conv_forward...)"),
    ('[1, 2]', "is not a notebook: its JSON has no cells"),
    ('{"nbformat": 3, "worksheets": [{"cells": null}]}', "has no code cells, so no classic function"),
    ('{"nbformat": 3, "worksheets": [{"cells": 7}, "x"]}', "has no code cells, so no classic function"),
    # a known nbformat without its cells is told so, not "has nbformat 4; expected 3 or 4"
    ('{"nbformat": 4, "cells": null}', "is not a notebook: its JSON has no cells"),
    ('{"nbformat": 4, "cells": {"0": "def zero_pad(X, pad): pass"}}', "is not a notebook: its JSON has no cells"),
    ('{"nbformat": 4}', "is not a notebook: its JSON has no cells"),
    ('{"nbformat": 3, "worksheets": null}', "is not a notebook: its JSON has no cells"),
])
def test_bad_notebooks_exit_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    r = runner.invoke(app, ["gradcheck", "--impl", str(path)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == f"cnncli: error: --impl {str(path)!r} {message}\n"


def test_only_checks_the_named_functions(tmp_path):
    path = str(ROOT / "tests" / "impls" / "correct.py")
    r = runner.invoke(app, ["gradcheck", "--impl", path, "--only", "pool_backward,conv_backward", "--json"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert [f["name"] for f in doc["functions"]] == ["conv_backward", "pool_backward"]
    conv = doc["functions"][0]
    assert {x["against"] for x in conv["findings"]} == {"engine", "numerical"}  # its own forward ran, unreported
    assert "checked only conv_backward, pool_backward (--only)" in doc["notes"]


def test_only_given_twice_checks_both_lists(tmp_path):
    # the last list alone was checked: zero_pad went unchecked under a PASS that named one function
    path = str(ROOT / "tests" / "impls" / "correct.py")
    broken = tmp_path / "pad.py"
    broken.write_text(Path(path).read_text() + "\n\ndef zero_pad(X, pad):\n    return X\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(broken), "--only", "zero_pad",
                            "--only", "pool_backward", "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [(f["name"], f["passed"]) for f in doc["functions"]] == [("zero_pad", False), ("pool_backward", True)]
    assert "checked only zero_pad, pool_backward (--only)" in doc["notes"]
    r = runner.invoke(app, ["gradcheck", "--impl", path, "--only", "pool_backward", "--only", "backprop"])
    assert r.exit_code == 2 and r.stderr == "cnncli: error: --only 'backprop' is unknown (the eight: cnncli gradcheck --help)\n"


@pytest.mark.parametrize("only,message", [
    ("conv_backwards", "--only 'conv_backwards' is unknown; did you mean conv_backward?"),
    ("backprop", "--only 'backprop' is unknown (the eight: cnncli gradcheck --help)"),
    (",", "--only needs a function name (see cnncli gradcheck --help)"),
])
def test_only_with_an_unknown_name_exits_2_naming_the_nearest(only, message):
    r = runner.invoke(app, ["gradcheck", "--impl", str(ROOT / "tests" / "impls" / "correct.py"), "--only", only])
    assert r.exit_code == 2 and r.stdout == "" and r.stderr == f"cnncli: error: {message}\n"


def test_gradcheck_help_lists_the_eight_names_only_takes():
    text = " ".join(runner.invoke(app, ["gradcheck", "--help"], env={"COLUMNS": "200"}).stdout.split())
    for name in ("zero_pad", "conv_single_step", "create_mask_from_window", "distribute_value", "conv_forward",
                 "conv_backward", "pool_forward", "pool_backward"):
        assert name in text


def test_only_a_function_the_file_does_not_define_is_bad_input(tmp_path):
    path = tmp_path / "part.py"
    path.write_text(functions_of_correct()["zero_pad"].replace("def", "import numpy as np\n\n\ndef", 1))
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--only", "pool_backward"])
    assert r.exit_code == 2
    assert r.stderr == f"cnncli: error: {str(path)!r} defines zero_pad, not pool_backward (--only)\n"
    with pytest.raises(ImplError):
        check_impl(path, only=["conv_forward"])


def test_a_definition_statement_that_raises_is_noted_and_the_rest_checked(tmp_path):
    cells = [("code", "import numpy as np\nSCALE = 1 / 0\n"), ("code", functions_of_correct()["zero_pad"])]
    r = check_impl(notebook(tmp_path, cells))
    assert r.passed and [f.name for f in r.functions] == ["zero_pad"]
    assert "cell 1, line 2 raised ZeroDivisionError: division by zero; the check goes on without it" in r.notes


@pytest.mark.parametrize("source, expected", [
    # IPython syntax where a statement starts is skipped ...
    ("%matplotlib inline\n!pip install h5py\nx = !ls\nnp.zeros?\ny = 1\n",
     "pass\npass\npass\npass\ny = 1\n"),
    ("def f():\n    %timeit g()\n    return 1\n", "def f():\n    pass\n    return 1\n"),
    ('!echo "it\'s"\n%time z = 2\n', "pass\npass\n"),  # a magic's own quotes open no string
    ("f(1,\n  2)\n%who\n", "f(1,\n  2)\npass\n"),
    # ... but never inside brackets, a string or after a backslash, where it is Python
    ("if (n_H * n_W\n        != 0):\n    pass\n", "if (n_H * n_W\n        != 0):\n    pass\n"),
    ("ok = n_H \\\n    != 0\n", "ok = n_H \\\n    != 0\n"),
    ('def f():\n    """Fill.\n    %d items\n    !not a command\n    """\n',
     'def f():\n    """Fill.\n    %d items\n    !not a command\n    """\n'),
    ("s = 'a(' # )\n!ls\n", "s = 'a(' # )\npass\n"),  # brackets in strings and comments count for nothing
    ("t = ('\\'', [\n%x\n])\n", "t = ('\\'', [\n%x\n])\n"),
])
def test_ipython_syntax_is_skipped_only_where_a_statement_starts(source, expected):
    from cnncli.gradcheck.notebook import _unmagic

    assert _unmagic(source)[0] == expected


def test_a_comparison_continued_on_a_line_of_its_own_is_checked_as_python(tmp_path):
    cell = ("import numpy as np\n\n\ndef distribute_value(dz, shape):\n    (n_H, n_W) = shape\n"
            "    if (n_H * n_W\n            != 0):\n        return np.ones(shape) * dz / (n_H * n_W)\n")
    r = check_impl(notebook(tmp_path, [("code", cell)]))
    (fn,) = r.functions
    assert fn.name == "distribute_value" and fn.passed


def test_a_docstring_is_not_counted_as_a_skipped_test_call(tmp_path):
    cell = '"""My solutions."""\nimport numpy as np\n\n' + functions_of_correct()["zero_pad"]
    r = check_impl(notebook(tmp_path, [("code", cell)]))
    assert r.passed and not any("skipped" in n for n in r.notes), r.notes
    r = check_impl(notebook(tmp_path, [("code", cell + "\nprint(zero_pad(np.ones((1, 2, 2, 1)), 1).shape)\n")],
                            name="with_print.ipynb"))
    assert any("skipped 1 statement(s)" in n for n in r.notes)
