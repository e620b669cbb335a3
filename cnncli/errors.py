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

from typing import Sequence, Tuple, Union


class CnncliError(ValueError):
    """Base of every user-facing cnncli error; the message is one line."""

    #: The message in fewer words each, the whole first (set by :meth:`worded`): context re-fits them.
    wordings: Tuple[str, ...] = ()

    @classmethod
    def worded(cls, *wordings: str, **fields) -> "CnncliError":
        """The error in the first of ``wordings`` (the same message, fewer words each) that fits 80 columns.

        The wordings are kept, so that :meth:`with_context` chooses again once context makes the line longer;
        where none fits the first, whole, is said (:func:`first_fitting`).

        Parameters
        ----------
        *wordings : str
            The whole message first, then fewer words each; every one names the bad value and what is valid.
        **fields
            Passed on to the class (``problem=`` of a ConvShapeError).

        Returns
        -------
        CnncliError
            Of this class; raise it.

        Raises
        ------
        Nothing: the caller raises the result.

        Examples
        --------
        >>> err = ShapeError.worded("stride 0 is not a stride; give 1 or more" + "!" * 40, "stride 0; give 1 or more")
        >>> str(err), str(err.with_context("conv: "))
        ('stride 0; give 1 or more', 'conv: stride 0; give 1 or more')
        """
        err = cls(first_fitting(*wordings), **fields)
        err.wordings = tuple(wordings)
        return err

    @property
    def whole(self) -> str:
        """The message in its whole words, whatever 80 columns held (for JSON documents, which have no width)."""
        return self.wordings[0] if self.wordings else str(self)

    def with_context(self, before: Union[str, Sequence[str]] = "",
                     after: Union[str, Sequence[str]] = "") -> "CnncliError":
        """The same error with ``before`` and ``after`` around its message, caused by this one.

        The message is chosen again to fit 80 columns: each of its :attr:`wordings` (whole first), and for
        each the context's wordings in turn; where nothing fits, the whole of each.

        Parameters
        ----------
        before : str or sequence of str
            Put in front of the message, as given (include the separator: ``"'case.h5': "``); a sequence
            holds the same context in fewer words each (``("layer 2 (conv:f=3) on 8x8x3: ", "layer 2
            (conv:f=3): ")``).
        after : str or sequence of str
            Put after the message, as given (``" (the case 'c.h5' sets stride=2)"``); a sequence as for
            ``before``.

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
        befores = (before,) if isinstance(before, str) else tuple(before)
        afters = (after,) if isinstance(after, str) else tuple(after)
        new = type(self).worded(*(f"{b}{w}{a}" for w in self.wordings or (str(self),) for b in befores
                                  for a in afters))
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
        self._around = None  # (before, after) when the message is :meth:`several`'s, re-fitted with more context

    @classmethod
    def several(cls, path: str, names, what: str, before: str = "", after: str = "") -> "ArrayChoiceError":
        """``'x.h5' holds 2 datasets (/A, /W); name one, e.g. x.h5:/A``, the list cut by :func:`fit_names`.

        Parameters
        ----------
        path : str
            The file, as the user gave it.
        names : sequence of str
            Two or more names it holds.
        what : str
            ``"array"`` or ``"dataset"``.
        before, after : str
            Context around the message (``"--weights "``); :meth:`with_context` adds more and re-fits.

        Returns
        -------
        ArrayChoiceError

        Raises
        ------
        Nothing: the caller raises it.

        Examples
        --------
        >>> str(ArrayChoiceError.several("x.h5", ["/A", "/W"], "dataset"))
        "'x.h5' holds 2 datasets (/A, /W); name one, e.g. x.h5:/A"
        """
        names = tuple(names)
        head, example = f"{before}{path!r} holds {len(names)} {what}s", f"name one, e.g. {path}:{names[0]}{after}"
        new = cls(fit_names(f"{head} (", names, (f"); {example}", f"); add :NAME{after}"), f"{head}; add :NAME{after}",
                            named=f"{head}; {example}"), path, names, what)
        new._around = (before, after)
        return new

    def with_context(self, before: Union[str, Sequence[str]] = "",
                     after: Union[str, Sequence[str]] = "") -> "ArrayChoiceError":
        """:meth:`CnncliError.with_context`, keeping the file, its names and their kind (the list re-fitted)."""
        before, after = (c if isinstance(c, str) else c[0] for c in (before, after))  # the list gives way instead
        if self._around is not None:
            new = ArrayChoiceError.several(self.path, self.names, self.what, before + self._around[0],
                                           self._around[1] + after)
        else:
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



#: The columns an error line is written to fit, the CLI's :data:`ERROR_PREFIX` included (the repo's rule: what a
#: person sees fits an 80-column terminal; a long value the user gave may still push a line over).
ERROR_WIDTH = 80
#: What the CLI writes in front of every error message.
ERROR_PREFIX = "cnncli: error: "


#: Format characters a terminal draws (Arabic number signs, the Syriac abbreviation mark, Kaithi's number
#: sign): Unicode's Prepended_Concatenation_Mark, one column each.
_PREPENDED_MARKS = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2"
                             "\U000110bd\U000110cd")

#: Drawn joined to the character before them: the Hangul fillers and the emoji skin-tone modifiers.
_JOINED = frozenset("\u3164\uffa0\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")


def columns(text: str) -> int:
    r"""The terminal columns ``text`` takes once :func:`printable`: East Asian wide/full-width two, marks none.

    From Python's own Unicode tables (nothing below cli imports rich); for the names a file may hold (CJK,
    accents, most emoji) the same count as rich's ``cell_len``.

    Examples
    --------
    >>> columns("abc"), columns("\u8a13\u7df4"), columns("e\u0301"), columns("a\nb")
    (3, 4, 1, 4)
    """
    import unicodedata  # NOTE: lazy: errors stays free of imports on the start-up path

    def width(c: str) -> int:
        if c < "\u0300":  # ASCII and Latin-1: one column each, the common case without a table look-up
            return 1
        category = unicodedata.category(c)
        if category == "Cn":  # unassigned: one column, but in the CJK planes (their default width is wide)
            return 2 if "\U00020000" <= c <= "\U0003ffff" and ord(c) & 0xFFFE != 0xFFFE else 1
        if (category in ("Mn", "Me", "Mc", "Cf", "Zl", "Zp") and c not in _PREPENDED_MARKS) or c in _JOINED \
                or "\u1160" <= c <= "\u11ff" or "\ud7b0" <= c <= "\ud7ff":  # Hangul vowels, finals: joined
            return 0
        return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1

    return sum(map(width, printable(text)))


def fits(message: str) -> bool:
    """Whether ``message``'s error line (:data:`ERROR_PREFIX` included) fits :data:`ERROR_WIDTH` columns."""
    return len(ERROR_PREFIX) + columns(message) <= ERROR_WIDTH


def first_fitting(*messages: str) -> str:
    """The first of ``messages`` (the same error, fewer words each) whose line fits; else the first, whole.

    Where none fits (a long path of the user's), fewer words would not make the line fit either.

    Examples
    --------
    >>> first_fitting("a" * 70, "b" * 60)[0], first_fitting("a" * 70, "b" * 68)[0], first_fitting("a" * 60)[0]
    ('b', 'a', 'a')
    """
    return next((m for m in messages if fits(m)), messages[0])


def fit_names(head: str, names, tails, bare: str, named: str = "") -> str:
    """``head + "a, b, +3 more" + tail`` within :data:`ERROR_WIDTH`: a choice among ``names`` worded to fit.

    The rule: the widest list of names that fits (as many as fit, and a count of the rest; the first of
    ``tails`` that shows the most), else ``bare`` (the count alone); where even that overflows (a long
    path), the shortest line that still names one.

    Parameters
    ----------
    head : str
        Before the list: ``"--like 'x.h5' has 2 datasets ("``.
    names : sequence of str
        Two or more names, in the order they are listed.
    tails : sequence of str
        After the list, fewer words each: ``("); add :NAME",)``.
    bare : str
        The line without a list: ``"--like 'x.h5' has 2 datasets; add :NAME"``.
    named : str, optional
        A line without a list that still names one (``"'x.h5' holds 2 datasets; name one, e.g. x.h5:/A"``),
        for the last resort.

    Returns
    -------
    str
        The message, without :data:`ERROR_PREFIX`.

    Raises
    ------
    Nothing.

    Examples
    --------
    >>> fit_names("'x.h5' holds 2 datasets (", ["/A", "/W"], (")",), "'x.h5' holds 2 datasets")
    "'x.h5' holds 2 datasets (/A, /W)"
    >>> fit_names("'x.h5' holds 3 datasets (", ["/" + "a" * 60, "/W", "/b"], (")",), "'x.h5' holds 3 datasets")
    "'x.h5' holds 3 datasets"
    """
    n = len(names)

    def listed(shown: int) -> str:
        return ", ".join(names[:shown]) + ("" if shown == n else f", +{n - shown} more")

    def widest(tail: str) -> int:
        # the most names that fit, from the widths of the names so far (closed form per count, one pass)
        room = ERROR_WIDTH - len(ERROR_PREFIX) - columns(head) - columns(tail)
        used, best = -2, 0
        for shown, name in enumerate(names, start=1):
            used += 2 + columns(name)
            if used + (0 if shown == n else len(f", +{n - shown} more")) <= room:
                best = shown
        return best

    shown, tail = max(((widest(t), t) for t in tails), key=lambda st: st[0])  # NOTE: max keeps the first of ties
    if shown:
        return head + listed(shown) + tail
    if fits(bare):
        return bare
    last = [head + listed(n) + tails[0], head + listed(1) + tails[0]] + ([named] if named else [])
    return min(last, key=columns)
