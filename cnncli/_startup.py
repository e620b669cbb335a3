"""The first thing ``cnncli`` runs: a Ctrl-C while modules import exits 130 with one line.

Nothing to import but what the interpreter has loaded already, so that as little as
possible runs before the handler is in place: ``os``, and ``_signal`` (the C module; the
``signal`` module around it imports ``enum``, which takes long enough to be interrupted).
"""

import os

try:
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without CPython's _signal
    import signal


def _interrupted(signum, frame) -> None:
    # Nothing is open or written while modules import: leave at once, without a traceback
    # (a KeyboardInterrupt raised inside an import or a finalizer would print one).
    os.write(2, b"cnncli: error: interrupted\n")  # the line the app prints for a later Ctrl-C
    os._exit(130)


def guard() -> None:
    """Make SIGINT exit 130 at once, until :func:`release` (the app then catches KeyboardInterrupt)."""
    # Only over Python's own handler: a SIGINT ignored by the parent (a background job) stays ignored.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _interrupted)
        except ValueError:  # not the main thread (an embedding host): its handlers are its business
            pass


def release() -> None:
    """From here on a Ctrl-C is a KeyboardInterrupt again: writers clean up, the app exits 130."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
