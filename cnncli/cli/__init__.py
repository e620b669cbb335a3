"""Command-line interface: parse, call the library, render. Each command lives in its own module.

This file stays light: the console script imports it before anything can catch a Ctrl-C,
so :func:`main` first makes an interrupt during start-up a one-line exit 130, then imports
Typer and the commands. ``app`` is resolved on first use (``from cnncli.cli import app``).
"""

from .. import _startup


def main() -> None:
    """Console-script entry point: ``cnncli ...`` and ``python -m cnncli ...``."""
    _startup.guard()
    from .app import run

    run()  # releases the guard once the app can turn a Ctrl-C into exit 130 itself


def __getattr__(name: str):
    if name == "app":
        from .app import load_app

        return load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
