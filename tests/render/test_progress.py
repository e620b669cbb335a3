"""Long runs (issue 11 part 6): the estimate note and the progress bar's total and ETA."""

import io

from rich.console import Console

from cnncli.render import progress
from cnncli.render.progress import Estimate, duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_long_run_is_announced_once_with_its_estimate_and_the_advice():
    clock, said = Clock(), []
    est = Estimate("to shorten: --method fast", said.append, clock=clock)
    clock.now = 101.0
    est.update(10, 10_000)           # the first progress: the set-up before it is not the rate
    clock.now = 103.0
    est.update(30, 10_000)           # 20 evaluations in 2 s: 10/s, 9,970 to go -> 997 s; 3 s so far
    assert said == ["note: this run takes about 17 min in all (30 of 10,000 evaluations done after 3 s); "
                    "to shorten: --method fast"]
    clock.now = 200.0
    est.update(1000, 10_000)
    assert len(said) == 1


def test_a_short_run_or_an_unmeasured_rate_says_nothing():
    clock, said = Clock(), []
    est = Estimate(None, said.append, clock=clock)
    clock.now = 101.0
    est.update(10, 1000)
    clock.now = 102.0                # measured for 1 s only
    est.update(11, 1000)
    clock.now = 104.0
    est.update(500, 1000)            # 490 in 3 s: ~3 s to go, 7 s in all
    assert said == []


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (5, 89, 90, 3569, 3600, 7260)] == ["5 s", "89 s", "2 min", "59 min", "1 h 0 min",
                                                                    "2 h 1 min"]


def test_minutes_that_round_to_sixty_read_as_an_hour():
    # 3570-3599 s rounded to "60 min" (the hour was chosen from the exact seconds, then rounded)
    assert [duration(s) for s in (3570, 3599, 7170)] == ["1 h 0 min", "1 h 0 min", "2 h 0 min"]


def test_the_bar_shows_the_total_and_an_eta(monkeypatch):
    screen = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    monkeypatch.setattr(progress, "console", lambda stderr=False: screen)
    with progress.progress_bar("gradcheck", show=True) as update:
        update(0, 400)
        update(100, 400)
    text = screen.file.getvalue()
    assert "100/400" in text and "eta" in text
    assert "None" not in text


def test_the_seconds_to_minutes_edge_is_read_from_the_rounded_seconds():
    # 89.5-90 s read "90 s" ('%.0f') while 90 s read "2 min": 89.5 s rounds (half up) to 90 s, so it is 2 min
    edges = (89.4, 89.5, 89.99, 90, 149, 150, 3570, 3599)
    assert [duration(s) for s in edges] == ["89 s", "2 min", "2 min", "2 min", "2 min", "3 min", "1 h 0 min",
                                            "1 h 0 min"]
    # half up at every step, never to even: 42.5 s is 43 s, 2.5 min is 3 min and 3.5 min 4 min
    assert [duration(s) for s in (42.5, 44.5, 209, 210, 269, 270)] == ["43 s", "45 s", "3 min", "4 min", "4 min",
                                                                       "5 min"]


def test_the_long_run_note_off_a_terminal_is_wrapped_to_columns(capsys, monkeypatch):
    # written raw, "note: this run takes about 84 s in all (...); to shorten: ..." was one line of 155 columns
    from cnncli.render.progress import note_line

    monkeypatch.setenv("COLUMNS", "80")
    words = ("note: this run takes about 84 s in all (6 of 8 evaluations done after 60 s); to shorten: a smaller "
             "--samples N, or --only NAME[,NAME...] (fewer functions)")
    note_line(words)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert " ".join(line.strip() for line in lines) == words  # every word, none cut, no markup read


def test_the_long_run_note_is_dropped_when_stderr_is_closed(monkeypatch):
    import sys

    from cnncli.render.progress import note_line

    monkeypatch.setattr(sys, "stderr", None)
    note_line("note: this run takes about 2 min in all")  # nothing raised, nothing written elsewhere
