"""The memory tests' one measure: the most bytes a call held at once, by tracemalloc."""

import tracemalloc


def traced_peak(check):
    """``(check(), the most bytes it held at once beyond what was held before)``, by tracemalloc."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = check()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
