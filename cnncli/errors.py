"""The exception hierarchy of cnncli.

Every error a user can cause derives from :class:`CnncliError`; the CLI maps the
whole family to exit code 2 in one place. Each also derives from ``ValueError``
so that Python callers of the classic API can catch what they would expect.
"""

from __future__ import annotations


class CnncliError(ValueError):
    """Base of every user-facing cnncli error; the message is one line."""


class HyperparameterError(CnncliError):
    """A stride, pad, kernel size, dilation, groups or mode value is invalid."""


class ShapeError(CnncliError):
    """Array shapes disagree with each other or with the hyperparameters."""


class InputError(CnncliError):
    """An input could not be read: missing, corrupt, refused dtype, unknown name."""


class OutputError(CnncliError):
    """An output could not be written: it exists (without --force), bad folder."""


class ImplError(CnncliError):
    """A user's implementation file could not be imported."""
