"""``shape``'s refusals of short input fit an 80-column terminal (the README's rule; tests/cli/test_error_width.py
holds the other commands'): one line, at most 80 characters with the "cnncli: error: " prefix, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state

runner = CliRunner()
WIDTH = 80


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


@pytest.mark.parametrize("args, stdin, words", [
    (["--input", "8", ":f=3"], None, "':f=3' must start with a kind (conv, pool, tconv"),  # was 145 characters
    (["--input", "8", "blah:f=3"], None, "'blah:f=3' must start with a kind"),
    (["--input", "8", "tconv:f=3,s=2,op=5"], None, "op=5 must be < stride 2 or dilation 1 in 'tconv:f=3,s=2,op=5'"),
    (["--input", "8", "conv:f=3,g=2,c=3"], None, "groups=2 must divide filters=3 in layer spec 'conv:f=3,g=2,c=3'"),
    (["--input", "8", "--f", "3", "--groups", "2", "--filters", "3"], None, "groups=2 must divide filters=3"),
    (["--from", "-", "--input", "8"],
     "Sequential(\n  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), weird=2)\n)\n",
     "--from line 2: Conv2d argument 'weird' is not one cnncli reads"),  # was 155 with the line quoted
])
def test_short_bad_input_is_one_line_within_80_columns(args, stdin, words):
    result = runner.invoke(app, ["shape", *args], input=stdin)
    assert result.exit_code == 2 and result.stdout == ""
    line = result.stderr
    assert line.startswith("cnncli: error: ") and line.count("\n") == 1 and words in line
    assert len(line.rstrip("\n")) <= WIDTH, (len(line), line)


def _h5(path, names):
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        for name in names:
            f[name] = np.zeros((1, 6, 6, 2))


@pytest.mark.parametrize("file, names, line", [
    # was "--like 'x.h5' holds 2 datasets (/A_prev, /W); name one, e.g. x.h5:/A_prev", the path twice
    ("x.h5", ["A_prev", "W"], "--like 'x.h5' has 2 datasets (/A_prev, /W); add :NAME"),
    ("case.h5", ["A_prev", "W", "b", "dZ"], "--like 'case.h5' has 4 datasets (/A_prev, /W, /b, /dZ); add :NAME"),
    # HDF5 lists names sorted as text: d0, d1, d10, d11, d2, ...
    ("many.h5", [f"grp/d{i}" for i in range(12)], "--like 'many.h5' has 12 datasets (/grp/d0, +11 more); add :NAME"),
    # 76 columns; a third name would make 82
    ("m.h5", [f"d{i}" for i in range(30)], "--like 'm.h5' has 30 datasets (/d0, /d1, +28 more); add :NAME"),
    ("two.npz", ["a", "b"], "--like 'two.npz' has 2 arrays (a, b); add :NAME"),
])
def test_like_on_a_file_of_several_arrays_names_them_in_one_line_within_80_columns(tmp_path, monkeypatch, file,
                                                                                   names, line):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    if file.endswith(".npz"):
        np.savez(file, **{name: np.zeros((1, 6, 6, 2)) for name in names})
    else:
        _h5(file, names)
    result = runner.invoke(app, ["shape", "--like", file, "--f", "3"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"cnncli: error: {line}\n"
    assert len(result.stderr.rstrip("\n")) <= WIDTH and result.stderr.count(file) == 1
    # the advice works: the file and ':NAME' (with or without HDF5's leading slash)
    for ref in (f"{file}:{names[0]}", f"{file}:/{names[0]}" if file.endswith(".h5") else f"{file}:{names[0]}"):
        ok = runner.invoke(app, ["shape", "--like", ref, "--f", "3", "--json"])
        assert ok.exit_code == 0 and '"input": [1, 6, 6, 2]' in ok.stdout, ok.stderr


def test_like_on_a_long_path_names_it_once_and_keeps_one_name_at_least(tmp_path):
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    _h5(deep / "signs.h5", ["list_classes", "train_set_x", "train_set_y"])
    result = runner.invoke(app, ["shape", "--like", str(deep / "signs.h5"), "--f", "3"])
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr == (f"cnncli: error: --like {str(deep / 'signs.h5')!r} has 3 datasets "
                             "(/list_classes, +2 more); add :NAME\n")


def test_like_on_many_long_names_gives_the_count_alone_within_80_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _h5("x.h5", [f"dataset_number_{i:02d}" for i in range(30)])
    result = runner.invoke(app, ["shape", "--like", "x.h5", "--f", "3"])
    # "(/dataset_number_00, +29 more)" would run to 89 columns
    assert (result.exit_code, result.stderr) == (2, "cnncli: error: --like 'x.h5' has 30 datasets; add :NAME\n")


def test_other_commands_keep_their_words_for_a_file_of_several_arrays_where_they_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _h5("s.h5", ["A", "W"])
    result = runner.invoke(app, ["forward", "s.h5", "--f", "2"])
    assert (result.exit_code, result.stderr) == (2, "cnncli: error: 's.h5' holds 2 datasets (/A, /W); name one, e.g. s.h5:/A\n")


def test_like_counts_wide_names_in_terminal_cells(tmp_path, monkeypatch):
    # CJK names take two columns each: counted as characters, the list ran past 80 columns
    monkeypatch.chdir(tmp_path)
    _h5("w.h5", ["\u8a13\u7df4\u30c7\u30fc\u30bf\u306e\u5165\u529b", "\u91cd\u307f\u306e\u884c\u5217\u3067\u3059",
                 "\u30d0\u30a4\u30a2\u30b9\u306e\u5024\u3067\u3059"])
    result = runner.invoke(app, ["shape", "--like", "w.h5", "--f", "3"])
    from rich.cells import cell_len
    assert result.exit_code == 2 and cell_len(result.stderr.rstrip("\n")) <= 80, result.stderr


def test_like_on_the_examples_two_dataset_file_fits_80_columns(monkeypatch):
    # the whole list was kept because a cut would not shorten it, and the line ran to 87 columns
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    result = runner.invoke(app, ["shape", "--like", "examples/digits.h5", "--f", "3"])
    assert (result.exit_code, result.stderr) == (
        2, "cnncli: error: --like 'examples/digits.h5' has 2 datasets; add :NAME\n")
