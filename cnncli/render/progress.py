"""Progress of long checks: a bar with a total and an ETA, and a note when the run will be long.

The library reports ``progress(done, total)`` (:mod:`cnncli.gradcheck`); this module turns
it into a transient rich bar on stderr (on a terminal) and, on a terminal or not, into one
note as soon as the measured rate says the whole run takes longer than ``LONG_SECONDS``:
how long, and how to make it shorter.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from .common import console

#: A run expected to take longer than this (seconds) gets a note with the estimate.
LONG_SECONDS = 60.0
#: The rate is measured over at least this long before an estimate is trusted.
MEASURE_SECONDS = 2.0


def duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1 h 20 min``: what a person reads an estimate as.

    Examples
    --------
    >>> duration(42.3), duration(185), duration(4800)
    ('42 s', '3 min', '1 h 20 min')
    """
    # NOTE: one rounding, half up, to whole seconds, and every unit is read from it: 89.5 s is 90 s, which is
    # "2 min" as 90 is ('%.0f' wrote "90 s" for 89.5 while 90 read "2 min"); minutes round half up too (150 s
    # is 3 min), in integers, so 2.5 min never rounds to even
    whole = math.floor(seconds + 0.5)
    if whole < 90:
        return f"{whole} s"
    minutes = (whole + 30) // 60
    if minutes < 60:  # from the rounded minutes: 3590 s is 1 h 0 min, not 60 min
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Estimate:
    """Watches ``(done, total)`` and says once when the run will take longer than ``LONG_SECONDS``."""

    def __init__(self, advice: Optional[str], say: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 unit: str = "evaluations"):
        self.advice, self.say, self.clock, self.unit = advice, say, clock, unit
        self.started = clock()
        self.first: Optional[tuple] = None  # (time, done) of the first progress: set-up is not the rate
        self.told = False

    def update(self, done: int, total: int) -> None:
        """Take the latest counts; the first time the projected run is long, tell."""
        if self.told or done <= 0 or total <= done:
            return
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
            return
        measured, progressed = now - self.first[0], done - self.first[1]
        if measured < MEASURE_SECONDS or progressed <= 0:
            return
        elapsed = now - self.started
        whole = elapsed + (total - done) * measured / progressed
        if whole <= LONG_SECONDS:
            return
        self.told = True
        how = f"; {self.advice}" if self.advice else ""
        self.say(f"note: this run takes about {duration(whole)} in all ({done:,} of {total:,} "
                 f"{self.unit} done after {duration(elapsed)}){how}")


def note_line(text: str) -> None:
    """Write a note on stderr wrapped as every other note is (``$COLUMNS``, or a terminal's width); dropped when
    stderr is closed or full. Written raw, the long-run note was one line of 155-160 columns."""
    console(stderr=True).print(text, markup=False, emoji=False, highlight=False)


@contextmanager
def progress_bar(description: str, show: bool, advice: Optional[str] = None,
                 unit: str = "evaluations") -> Iterator[Callable[[int, int], None]]:
    """Yield a ``progress(done, total)`` callback: a bar on stderr when ``show``, and the long-run note.

    The bar shows ``done/total`` (``?`` until the total is known), the elapsed time and
    the time remaining; it disappears when the run ends.

    Parameters
    ----------
    description : str
        The bar's label, e.g. ``"gradcheck"``.
    show : bool
        Draw the bar (on a terminal); the long-run note is printed either way (stderr).
    advice : str, optional
        How to make the run shorter, appended to the note.
    unit : str
        What ``done`` and ``total`` count, in the note ("evaluations", "examples").

    Yields
    ------
    callable(int, int)
        ``progress(done, total)``, to pass to the library.
    """
    if not show:
        estimate = Estimate(advice, note_line, unit=unit)
        yield estimate.update
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    err = console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(description, total=None)
        estimate = Estimate(advice, lambda line: bar.console.print(line, markup=False, style="yellow"), unit=unit)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))
            estimate.update(done, total)

        yield update
