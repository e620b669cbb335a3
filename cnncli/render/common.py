"""What every command's rendering shares: the console, the one JSON writer, the size formula with numbers."""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys

from rich.console import Console
from rich.text import Text

from ..errors import printable

# An indented list holding only numbers (or nulls). A real newline never occurs inside a
# JSON string (it is written \n), so this matches lists of numbers and nothing in strings.
_NUMBER_LIST = re.compile(r"\[\n(?:[-+\deE.,\s]|null)*\]")


def literal(text: str, style: str = "") -> Text:
    r"""Text the user chose (a module name, a path) as a table cell or line that draws exactly as written.

    A rich ``Text`` is drawn as it is: rich reads markup (``[red]``) and emoji codes (``:smile:``) only in a
    ``str``. Control characters are written as :func:`cnncli.errors.printable` writes them in error lines
    (a tab as ``\t``): a cell then measures as it draws, and no escape sequence reaches the terminal.

    Parameters
    ----------
    text : str
        The name, as the user gave it.
    style : str, optional
        A rich style for the whole text.

    Returns
    -------
    rich.text.Text
        Its ``plain`` is ``printable(text)``.

    Raises
    ------
    Nothing.

    Examples
    --------
    >>> literal("a\t[red]:smile:").plain
    'a\\t[red]:smile:'
    """
    return Text(printable(text), style=style)


class _Console(Console):
    """A rich Console for cnncli's output.

    - A closed pipe (``| head``) reaches the app as BrokenPipeError (rich's default exits
      with status 1, which cnncli reserves for a failed check).
    - A table is printed whole or not at all: as it is when it fits the width, else one
      block per row (:mod:`cnncli.render.fit`); no cell is ever cut.
    - ``plain``: tables as tab-separated values, every other line starting with ``#``.
    """

    plain = False

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError

    def print(self, *objects, **kwargs) -> None:
        from rich.table import Table

        from . import fit

        base = super().print
        if len(objects) == 1 and isinstance(objects[0], Table):
            if self.plain:  # written as they are: rich would expand the tabs to spaces
                fit.print_plain(objects[0], lambda line: self.file.write(line + "\n"))
            else:
                fit.print_fitted(self, objects[0], lambda renderable, **kw: base(renderable, **{**kwargs, **kw}))
            return
        if not self.plain:
            base(*objects, **kwargs)
            return
        markup = kwargs.get("markup", True) is not False
        for obj in objects:
            text = fit.cell_text(obj) if markup or not isinstance(obj, str) else obj
            for line in text.splitlines():
                if line.strip():
                    self.file.write("# " + line + "\n")


class _Discard(io.TextIOBase):
    """Where a console on a stream closed at start (``2>&-``) writes: nowhere (rich itself would pick stdout)."""

    def write(self, text: str) -> int:
        return len(text)


class _Trimmed:
    """A pipe or file for a console: lines without the spaces rich pads them with to the table's width
    (a title, a caption), which a terminal does not show but ``diff``, ``grep 'x$'`` and a log keep."""

    def __init__(self, stream):
        self._stream, self._spaces = stream, ""

    def write(self, text: str) -> int:
        # a write may end inside a line's padding: its spaces wait for what follows them
        lines = (self._spaces + text).split("\n")
        last = lines.pop()
        kept = last.rstrip(" ")
        self._spaces = last[len(kept):]
        self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines) + kept)
        return len(text)

    def __getattr__(self, name):  # flush, isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


class _Notes:
    """stderr for a console of notes: a note that cannot be written (``2>/dev/full``) is dropped, not an error
    of the run, whose result went to stdout or a file whole."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):  # isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


def stderr_line(text: str) -> None:
    """Write one line on stderr; nothing when stderr is closed (``2>&-``) or full (``2>/dev/full``).

    A note or the user's echoed output must not end a run whose result still goes to stdout.
    """
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def console(stderr: bool = False, soft_wrap: bool = False, plain: bool = False) -> Console:
    """A console on the current stdout (or stderr).

    On a terminal, its width; elsewhere (a pipe, a CI log) ``$COLUMNS`` if set, else
    wide enough that tables are never squeezed or numbers cut. ``soft_wrap=True``
    leaves long lines whole (for formulas that must not break). ``plain``: tab-separated
    tables, other lines as ``# ...``, no styles (``--plain``).
    """
    stream = sys.stderr if stderr else sys.stdout
    stream = _Discard() if stream is None else (_Notes(stream) if stderr else stream)
    width = None
    if not stream.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 240
        stream = _Trimmed(stream)
    if plain:
        out = _Console(file=stream, width=width, highlight=False, soft_wrap=True, color_system=None)
        out.plain = True
        return out
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
