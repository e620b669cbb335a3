"""The memory tests' one measure: the most bytes a call held at once, by tracemalloc."""

import gc
import tracemalloc


def traced_peak(check):
    """``(check(), the most bytes it held at once beyond what was held before)``, by tracemalloc."""
    # NOTE: the earlier tests' cyclic garbage collected first: left to a collection that may or may not come
    # during ``check``, it made the same check's peak vary with the tests its worker ran before (2.0x-2.6x)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = check()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
