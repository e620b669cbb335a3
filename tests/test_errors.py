"""The error hierarchy: context is added without losing the cause; pickles have their own class."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncli.errors import CnncliError, HyperparameterError, InputError, PickledDataError
from cnncli.io.arrays import load_array
from cnncli.passes.call import resolve_layer


def test_with_context_keeps_class_and_cause():
    err = HyperparameterError("stride must be positive, got 0")
    wrapped = err.with_context("'case.h5': ", " (set by the case)")
    assert type(wrapped) is HyperparameterError and isinstance(wrapped, CnncliError)
    assert str(wrapped) == "'case.h5': stride must be positive, got 0 (set by the case)"
    assert wrapped.__cause__ is err


def test_a_flag_prefix_keeps_the_reader_error_as_cause(tmp_path):
    with pytest.raises(InputError) as info:
        load_array(str(tmp_path / "w.npy"), role="--weights")
    assert str(info.value) == f"--weights {str(tmp_path / 'w.npy')!r}: no such file"
    assert isinstance(info.value.__cause__, InputError)
    assert isinstance(info.value.__cause__.__cause__, FileNotFoundError)  # the OS error at the bottom


def test_a_case_attribute_error_names_the_file_and_keeps_the_cause(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, A_prev=np.ones((1, 4, 4, 1)), layer=np.array("pool"), f=np.array(2), mode=np.array("median"))
    with pytest.raises(HyperparameterError) as info:
        resolve_layer(str(path))
    assert str(info.value).startswith(f"{str(path)!r}: ")
    assert isinstance(info.value.__cause__, HyperparameterError)
    assert str(info.value) == f"{str(path)!r}: {info.value.__cause__}"


def test_pickled_data_has_its_own_class(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PickledDataError, match="holds pickled objects; cnncli never unpickles"):
        load_array(str(path))
    with pytest.raises(PickledDataError):  # memory-mapped streaming refuses it the same way
        resolve_layer(str(path), f="2", stream=True)


def test_debug_shows_the_chain(tmp_path):
    from typer.testing import CliRunner

    from cnncli.cli import app

    path = tmp_path / "c.npz"
    np.savez(path, A_prev=np.ones((1, 4, 4, 1)), layer=np.array("pool"), f=np.array(2), mode=np.array("median"))
    plain = CliRunner().invoke(app, ["forward", str(path)])
    assert plain.exit_code == 2 and "Traceback" not in plain.stderr and len(plain.stderr.splitlines()) == 1
    debug = CliRunner().invoke(app, ["--debug", "forward", str(path)])
    assert debug.exit_code == 2
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[0]


def test_control_characters_in_an_error_are_escaped_and_it_stays_one_line(tmp_path):
    # a dataset named "a\nb" split the error over two lines, and an ESC in a name reached the terminal
    with h5py.File(tmp_path / "nl.h5", "w") as f:
        f["a\nb"] = np.zeros((1, 4, 4, 1))
        f["c\x1b[31m"] = np.zeros((1, 4, 4, 1))
    root = str(Path(__file__).resolve().parents[1])
    res = subprocess.run([sys.executable, "-m", "cnncli", "forward", "nl.h5", "--f", "2"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": root})
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "\x1b" not in res.stderr
    assert "(/a\\nb, /c\\x1b[31m)" in res.stderr


@pytest.mark.parametrize("text", ["A_prev", "/train/A_prev", "\u8a13\u7df4\u30c7\u30fc\u30bf", "caf\u00e9", "cafe\u0301",
                                  "\uff21\uff22", "\U0001f600 data", "\u0394W_\u03b1", "\ud55c\uad6d\uc5b4"])
def test_columns_counts_terminal_cells_as_rich_does(text):
    # io may not import rich, so errors counts cells itself: it must agree with the terminal's count
    from rich.cells import cell_len

    from cnncli.errors import columns
    assert columns(text) == cell_len(text)


def test_columns_counts_a_control_character_as_its_escape():
    from cnncli.errors import columns, printable
    assert columns("a\nb\x1b") == len(printable("a\nb\x1b")) == len("a\\nb\\x1b")


def test_context_is_fitted_with_each_wording_in_turn_whole_first():
    # each wording of the message (whole first) with each wording of the context; where none fits, the whole words
    from cnncli.errors import ShapeError

    err = ShapeError.worded("w" * 50 + " whole", "w" * 30 + " fewer")
    before = ("layer 1 (conv:f=3) on 8x8x3: ", "layer 1 (conv:f=3): ")
    assert str(err) == "w" * 50 + " whole" and err.whole == str(err)
    assert str(err.with_context(before)) == "layer 1 (conv:f=3) on 8x8x3: " + "w" * 30 + " fewer"
    assert str(err.with_context("x" * 9 + ": ")) == "x" * 9 + ": " + "w" * 30 + " fewer"  # 82 columns whole
    assert str(err.with_context(("x" * 40 + ": ", "x" * 20 + ": "))) == "x" * 20 + ": " + "w" * 30 + " fewer"
    # nothing fits: the whole words of both, and the whole is what a JSON document says
    late = err.with_context("y" * 60, (" in 'z'", ""))
    assert str(late) == late.whole == "y" * 60 + "w" * 50 + " whole in 'z'"
    assert late.__cause__ is err and type(late) is ShapeError


def test_an_error_raised_plainly_keeps_its_one_wording_through_context():
    from cnncli.errors import InputError

    err = InputError("a" * 70).with_context(("--like ", ""))
    assert str(err) == "--like " + "a" * 70  # the whole, though the context has fewer words: the message has none
    assert str(InputError("a" * 60).with_context(("b" * 10, ""))) == "a" * 60


def test_columns_agrees_with_rich_on_every_code_point_python_s_tables_know():
    # The only disagreements allowed come from Unicode versions (rich's tables may be newer than this Python's
    # unicodedata): characters assigned later (unassigned here) and characters later made wide (N or A here).
    import unicodedata

    from rich.cells import cell_len

    from cnncli.errors import columns, printable
    off = []
    # every code point of the planes in use (BMP to the CJK planes, the tags), a stride through the rest
    # (unassigned and private use all through: time, not coverage)
    for cp in [*range(0x300, 0x40000), *range(0xE0000, 0xE1000), *range(0x40000, 0xE0000, 257),
               *range(0xE1000, 0x110000, 257)]:
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or printable(c) != c:
            continue
        if columns(c) != cell_len(c):
            drift = unicodedata.category(c) == "Cn" and cell_len(c) != 1 or \
                cell_len(c) == 2 and unicodedata.east_asian_width(c) in ("N", "A")
            if not drift:
                off.append(hex(cp))
    assert off == [], (len(off), off[:20])
