"""The memory tests' one measure: the most bytes a call held at once, by tracemalloc."""

import gc
import sys
import tracemalloc

#: An allocation this large during one interning is the interpreter's table of interned strings being rebuilt
#: (~1.9 MB in a test worker); nothing else one interning does comes near it
_TABLE_REBUILT_BYTES = 2**16

#: Interned strings made at most to bring that rebuild about; more than the table can ever have room for
#: in a test process (its room after a rebuild is about the strings it holds, ~10**5)
_MOST_INTERNED = 2**21


def interns_until_rebuilt(tag: str = "traced"):
    """Intern throwaway strings until CPython rebuilds its table of interned strings; how many it took
    (None: no rebuild within :data:`_MOST_INTERNED`).

    Every ``PyDict_SetItemString`` (numpy's ``__array_interface__``, h5py, ...) interns its key; a key no one
    holds is dropped from the table again when it dies, but its slot is used up until the table is rebuilt
    (at the size of what it holds). When that rebuild fell inside a measured call, the new table was counted
    as the call's: the same check measured 1.9 MB more after some runs of tests than after others
    (4.85 MB against a bound of 4.8 MB, for a check that holds 2.9 MB). Just after a rebuild the table has
    as much room as it gets (at least the number of strings it holds), far more than one check uses.
    """
    tracemalloc.start()
    try:
        for k in range(_MOST_INTERNED):
            before = tracemalloc.get_traced_memory()[0]
            sys.intern(f"cnncli-{tag}-{k}")
            if tracemalloc.get_traced_memory()[0] - before > _TABLE_REBUILT_BYTES:
                return k
        return None
    finally:
        tracemalloc.stop()


def traced_peak(check):
    """``(check(), the most bytes it held at once beyond what was held before)``, by tracemalloc."""
    # NOTE: the earlier tests' cyclic garbage collected first: left to a collection that may or may not come
    # during ``check``, it made the same check's peak vary with the tests its worker ran before (2.0x-2.6x)
    gc.collect()
    interns_until_rebuilt()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = check()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
