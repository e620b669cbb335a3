"""Output to a pipe or file has no line ending in spaces: rich pads a table's title and caption to the
table's width, which a terminal does not show but diff, grep 'x$' and logs keep."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.table import Table

from cnncli.render import common

ROOT = Path(__file__).resolve().parents[2]


class _Pipe(io.StringIO):
    def isatty(self):
        return False


def _printed(monkeypatch, *objects, columns="80"):
    out = _Pipe()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", columns)
    con = common.console()
    for obj in objects:
        con.print(obj)
    return out.getvalue()


def _table(title, caption=None):
    t = Table(title=title, caption=caption, title_justify="left")
    t.add_column("a")
    t.add_column("bbbbbbbbbbbbbbbbbbbb")
    t.add_row("1", "2")
    return t


def test_a_title_and_a_caption_shorter_than_the_table_end_at_their_last_word(monkeypatch):
    text = _printed(monkeypatch, _table("short title", caption="cap"))
    lines = text.split("\n")
    assert lines[0] == "short title"
    assert all(line == line.rstrip(" ") for line in lines)
    # everything but the padding is kept: the table's own lines are as rich draws them
    assert lines[1].startswith("┏") and lines[1].endswith("┓") and lines[-1] == ""
    assert [line.strip() for line in lines if "cap" in line] == ["cap"]


def test_spaces_inside_a_line_and_leading_spaces_are_kept(monkeypatch):
    text = _printed(monkeypatch, "  two  spaces  inside", "x")
    assert text == "  two  spaces  inside\nx\n"


@pytest.mark.parametrize("chunks, expected", [
    (["title   ", "   \n", "next"], "title\nnext"),       # a line's padding split over writes
    (["a  ", "b\n"], "a  b\n"),                          # spaces a later write continues are kept
    (["x \n \n", "  y"], "x\n\n  y"),
    (["", "z   ", ""], "z"),                             # pending spaces at the very end: dropped
])
def test_the_trimming_is_the_same_however_the_text_is_split_into_writes(chunks, expected):
    out = _Pipe()
    trimmed = common._Trimmed(out)
    for c in chunks:
        assert trimmed.write(c) == len(c)
    assert out.getvalue() == expected


@pytest.mark.parametrize("args", [
    ["gradcheck"],
    ["shape", "--f", "3", "--stride", "2"],
    ["shape", "--input", "32x32x3", "conv:f=3,c=8,p=same", "pool:f=2,s=2"],
    ["gradcheck", "--impl", "tests/impls/correct.py", "--only", "conv_forward"],
])
def test_real_commands_piped_write_no_trailing_spaces(args):
    r = subprocess.run([sys.executable, "-m", "cnncli", *args], cwd=ROOT, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "80"}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) > 3 and [line for line in lines if line != line.rstrip(" ")] == []


def test_forward_s_report_on_stderr_has_no_trailing_spaces(tmp_path):
    np.save(tmp_path / "A.npy", np.random.default_rng(0).normal(size=(2, 6, 6, 3)))
    np.save(tmp_path / "W.npy", np.random.default_rng(1).normal(size=(3, 3, 3, 4)))
    r = subprocess.run([sys.executable, "-m", "cnncli", "forward", str(tmp_path / "A.npy"), "--weights",
                        str(tmp_path / "W.npy"), "-o", str(tmp_path / "Z.npy")], cwd=ROOT, capture_output=True,
                       text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "80"}, timeout=60)
    assert r.returncode == 0, r.stderr
    report = r.stdout + r.stderr
    assert report.strip() and [line for line in report.splitlines() if line != line.rstrip(" ")] == []
