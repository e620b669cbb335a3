"""The memory tests' measure counts what a call holds, not the interpreter's own tables."""

import itertools
import sys
import tracemalloc

from tests.traced import _TABLE_REBUILT_BYTES, traced_peak


def _interns_until_rebuilt(tag):
    """How many throwaway strings were interned before CPython rebuilt its interned-string table."""
    tracemalloc.start()
    try:
        for k in itertools.count():
            before = tracemalloc.get_traced_memory()[0]
            sys.intern(f"test-traced-{tag}-{k}")
            if tracemalloc.get_traced_memory()[0] - before > _TABLE_REBUILT_BYTES:
                return k
    finally:
        tracemalloc.stop()


def test_a_rebuild_of_the_interned_strings_due_during_the_call_is_not_counted():
    # the table is rebuilt, its room measured to the next rebuild, then all but 10 of that room used up: the
    # call's 100 interned keys would rebuild it (~1.9 MB in a test worker) inside the measured call
    _interns_until_rebuilt("a")
    room = _interns_until_rebuilt("b")
    for k in range(room - 10):
        sys.intern(f"test-traced-c-{k}")
    _, peak = traced_peak(lambda: [sys.intern(f"test-traced-d-{k}") for k in range(100)])
    assert peak < _TABLE_REBUILT_BYTES
