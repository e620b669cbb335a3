"""A file of several arrays named without one: forward/backward/gradcheck word the choice by the same rule as
``shape --like`` (cnncli.errors.fit_names): the widest list that fits 80 columns, else the count alone, else
(a long path) the shortest line that still names one. One line on stderr, exit 2, nothing written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import ArrayChoiceError
from cnncli.io.arrays import load_array

runner = CliRunner()


def _h5(path, names):
    with h5py.File(path, "w") as f:
        for name in names:
            f[name] = np.ones((1, 4, 4, 1))


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _h5("x.h5", ["training_inputs_1", "training_inputs_2"])  # the whole list: an 87-column line
    _h5("s.h5", ["A", "W"])
    _h5("c.h5", ["A_prev"])
    return tmp_path


@pytest.mark.parametrize("args, line", [
    (["forward", "x.h5", "--f", "2", "-o", "out.npy"], "'x.h5' holds 2 datasets (/training_inputs_1, +1 more); add :NAME"),
    (["gradcheck", "x.h5", "--f", "2"], "'x.h5' holds 2 datasets (/training_inputs_1, +1 more); add :NAME"),
    (["forward", "s.h5", "--f", "2", "-o", "out.npy"], "'s.h5' holds 2 datasets (/A, /W); name one, e.g. s.h5:/A"),
    # the flag in front is counted: the list's words give way to fewer
    (["forward", "c.h5", "--weights", "s.h5", "-o", "out.npy"], "--weights 's.h5' holds 2 datasets (/A, /W); add :NAME"),
    (["backward", "c.h5", "--f", "2", "--grad", "x.h5", "-o", "out.npz"], "--grad 'x.h5' holds 2 datasets; add :NAME"),
])
def test_the_choice_fits_80_columns(here, args, line):
    result = runner.invoke(app, args)
    assert (result.exit_code, result.stderr) == (2, f"cnncli: error: {line}\n")
    assert len(result.stderr.rstrip("\n")) <= 80 and "Traceback" not in result.output
    assert not (here / "out.npy").exists() and not (here / "out.npz").exists()


def test_a_long_path_gets_the_shortest_line_that_names_one(here):
    path = "a_long_folder_name_for_training_data_of_this_layer.h5"
    _h5(path, ["training_inputs_1", "training_inputs_2", "training_inputs_3"])
    result = runner.invoke(app, ["forward", path, "--f", "2"])
    assert (result.exit_code, result.stderr) == (
        2, f"cnncli: error: {path!r} holds 3 datasets; name one, e.g. {path}:/training_inputs_1\n")


def test_the_error_keeps_its_file_and_names_for_python_callers(here):
    for kwargs, line in (({}, "'x.h5' holds 2 datasets (/training_inputs_1, +1 more); add :NAME"),
                         ({"role": "--weights"}, "--weights 'x.h5' holds 2 datasets; add :NAME")):
        with pytest.raises(ArrayChoiceError) as info:
            load_array("x.h5", **kwargs)
        err = info.value
        assert (str(err), err.path, err.names, err.what) == (
            line, "x.h5", ("/training_inputs_1", "/training_inputs_2"), "dataset")


def test_context_added_later_is_counted_too():
    err = ArrayChoiceError.several("s.h5", ["/A", "/W"], "dataset")
    assert str(err) == "'s.h5' holds 2 datasets (/A, /W); name one, e.g. s.h5:/A"
    wrapped = err.with_context("'case2.h5': ")
    assert str(wrapped) == "'case2.h5': 's.h5' holds 2 datasets (/A, /W); add :NAME"
    assert (wrapped.path, wrapped.names, wrapped.what, wrapped.__cause__) == ("s.h5", ("/A", "/W"), "dataset", err)
