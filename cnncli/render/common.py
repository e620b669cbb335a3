"""What every command's rendering shares: the console, the one JSON writer, the size formula with numbers."""

from __future__ import annotations

import json
import math
import os
import re
import sys

from rich.console import Console

# An indented list holding only numbers (or nulls). A real newline never occurs inside a
# JSON string (it is written \n), so this matches lists of numbers and nothing in strings.
_NUMBER_LIST = re.compile(r"\[\n(?:[-+\deE.,\s]|null)*\]")


class _Console(Console):
    """A rich Console that lets a closed pipe (``| head``) reach the app as BrokenPipeError.

    Rich's default exits with status 1, which cnncli reserves for a failed check.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def console(stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console on the current stdout (or stderr).

    On a terminal, its width; elsewhere (a pipe, a CI log) ``$COLUMNS`` if set, else
    wide enough that tables are never squeezed or numbers cut. ``soft_wrap=True``
    leaves long lines whole (for formulas that must not break).
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 240
    return _Console(file=stream, width=width, highlight=False, soft_wrap=soft_wrap)


def _finite(obj):
    """A copy of ``obj`` with NaN and +-inf floats replaced by None (tuples become lists)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(doc) -> str:
    """The one ``--json`` writer of every command: indent 2, lists of numbers on one line.

    JSON has no NaN or infinity: such values are written as ``null``
    (``allow_nan=False`` guarantees no invalid document can slip out).

    Examples
    --------
    >>> print(to_json({"shape": [2, 3], "max": float("nan"), "range": (-1.5, float("inf"))}))
    {
      "shape": [2, 3],
      "max": null,
      "range": [-1.5, null]
    }
    """
    text = json.dumps(_finite(doc), indent=2, allow_nan=False)
    return _NUMBER_LIST.sub(lambda m: " ".join(m.group(0).split()).replace("[ ", "[").replace(" ]", "]"), text)


def size_formula(n_in: int, f: int, stride: int, dilation: int, pad_before: int, pad_after: int, n_out: int,
                 ceil_mode: bool = False) -> str:
    """The output-size formula with one axis's numbers in it.

    Examples
    --------
    >>> size_formula(28, 3, 2, 1, 0, 0, 13)
    'floor((28 + 0 + 0 - (3-1) - 1) / 2) + 1 = 13'
    """
    reach = f"{dilation}*({f}-1)" if dilation != 1 else f"({f}-1)"
    rnd = "ceil" if ceil_mode else "floor"
    return f"{rnd}(({n_in} + {pad_before} + {pad_after} - {reach} - 1) / {stride}) + 1 = {n_out}"
