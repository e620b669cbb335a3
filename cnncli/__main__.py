"""``python -m cnncli`` runs the command-line app."""

from . import _startup

_startup.guard()  # before the imports below: a Ctrl-C during them exits 130 in one line

from .cli import main  # noqa: E402

if __name__ == "__main__":
    main()
