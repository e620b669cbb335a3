"""Command-line interface: parse, call the library, render. Each command lives in its own module."""

from .app import app, main
from . import shape, passes, gradcheck  # noqa: F401  (registers the commands on app)

__all__ = ["app", "main"]
