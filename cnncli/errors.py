"""The exception hierarchy of cnncli.

Every error a user can cause derives from :class:`CnncliError`; the CLI maps the
whole family to exit code 2 in one place. Each also derives from ``ValueError``
so that Python callers of the classic API can catch what they would expect.

Context learnt higher up (the case file a value came from, the flag an array was
given with) is added with :meth:`CnncliError.with_context`, which keeps the
original error as ``__cause__``: the message stays one line, and ``--debug``'s
traceback shows the whole chain.
"""

from __future__ import annotations


class CnncliError(ValueError):
    """Base of every user-facing cnncli error; the message is one line."""

    def with_context(self, before: str = "", after: str = "") -> "CnncliError":
        """The same error with ``before`` and ``after`` around its message, caused by this one.

        Parameters
        ----------
        before : str
            Put in front of the message, as given (include the separator: ``"'case.h5': "``).
        after : str
            Put after the message, as given (``" (the case 'c.h5' sets stride=2)"``).

        Returns
        -------
        CnncliError
            Of this error's own class, with ``__cause__`` set to this error; raise it.

        Raises
        ------
        Nothing: the caller raises the result.

        Examples
        --------
        >>> err = InputError("no such file").with_context("--weights 'w.npy': ")
        >>> str(err), type(err.__cause__).__name__
        ("--weights 'w.npy': no such file", 'InputError')
        """
        new = type(self)(f"{before}{self}{after}")
        new.__cause__ = self
        return new


class HyperparameterError(CnncliError):
    """A stride, pad, kernel size, dilation, groups or mode value is invalid."""


class ShapeError(CnncliError):
    """Array shapes disagree with each other or with the hyperparameters."""


class InputError(CnncliError):
    """An input could not be read: missing, corrupt, refused dtype, unknown name."""


class ArrayChoiceError(InputError):
    """A file holds several arrays and its reference names none; ``path``, ``names``, ``what`` let a flag word it."""

    def __init__(self, message: str, path: str = "", names: tuple = (), what: str = "array"):
        super().__init__(message)
        self.path, self.names, self.what = path, tuple(names), what

    def with_context(self, before: str = "", after: str = "") -> "ArrayChoiceError":
        """:meth:`CnncliError.with_context`, keeping the file, its names and their kind."""
        new = ArrayChoiceError(f"{before}{self}{after}", self.path, self.names, self.what)
        new.__cause__ = self
        return new


class SettingError(InputError):
    """A ``CNNCLI_*`` environment variable holds no valid value (named as it is, never as a flag's)."""


class PickledDataError(InputError):
    """An input holds pickled Python objects, which cnncli never loads."""


class ExternalDataError(InputError):
    """An HDF5 input reads data outside its own file (external storage, external link, virtual dataset)."""


class OutputError(CnncliError):
    """An output could not be written: it exists (without --force), bad folder."""


class ImplError(CnncliError):
    """A user's implementation file could not be imported."""


#: Control characters (C0, DEL, C1) as the escapes Python writes them in: a name from a file may hold any.
_CONTROLS = {c: repr(chr(c))[1:-1] for c in [*range(0x20), *range(0x7F, 0xA0)]}


def printable(text: str) -> str:
    r"""``text`` with its control characters escaped (a newline as ``\n``): a message or note stays one line,
    and the terminal takes no escape sequence from a file's contents.

    Examples
    --------
    >>> print(printable("a\nb\x1b[31m"))
    a\nb\x1b[31m
    """
    return text.translate(_CONTROLS)

