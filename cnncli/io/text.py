"""Hyperparameters written as text: command-line options, case-file attributes, layer specs.

The engine takes numbers (:mod:`cnncli.engine.geometry`); this module is the edge
that reads what users type (``"3x2"``, ``"1,2"``, ``"0,1,0,1"``, ``"on"``,
``"false"``) into them. Each reader accepts text or a value the engine already
takes, and returns the engine's normalized value, so the engine's checks (range,
count) run on both::

    read_pair("3x2", "f") == (3, 2)        read_pad("1,2") == (1, 1, 2, 2)
    read_flag("off", "ceil_mode") is False  read_pad("same") == "same"

Only ``str`` is text (``bytes`` too for flags, which HDF5 attributes can be).
"""

from __future__ import annotations

import re
from typing import Union

from ..engine import geometry as geo
from ..errors import HyperparameterError

#: The forms a pad takes, for messages: an int, a pair, (top, bottom, left, right), or a word.
PAD_FORMS = "an int, 'h,w', 't,b,l,r', valid or same"


def read_int(value, name: str) -> int:
    """An integer from text (``" 3 "``) or a number.

    Raises
    ------
    HyperparameterError
        Text that is not an integer, or what :func:`cnncli.engine.geometry.as_int` refuses.
    """
    if isinstance(value, str):
        text = value.strip()
        if "_" in text:  # int() reads 2_0 as 20: a typo more likely than a thousands separator
            raise HyperparameterError.worded(f"{name} {value!r}: write numbers with digits only (no '_')",
                                             f"{name} {value!r}: write digits only (no '_')")
        if not text.isascii():  # int() reads full-width and other scripts' digits too: not what is shown back
            raise HyperparameterError(f"{name} {value!r}: write numbers with the digits 0-9")
        digits = len(text.lstrip("+-"))
        if digits > _MAX_INT_DIGITS and text.lstrip("+-").isdigit():  # int() would say "Exceeds the limit"
            raise HyperparameterError(f"{name} has a number of {digits} digits; at most {_MAX_INT_DIGITS} are read")
        try:
            return int(text)
        except ValueError:
            raise HyperparameterError(f"{name} must be an integer, got {value!r}") from None
    return geo.as_int(value, name)


#: Python's int() refuses text of more digits (``sys.int_info.default_max_str_digits``).
_MAX_INT_DIGITS = 4300
#: Text made as a number is (digits, underscores): what :func:`read_int` words its refusals for.
_NUMBER_LIKE = re.compile(r"\s*[+-]?[\d_]+\s*")


def _ints(items, name: str) -> list:
    """Text items of a sequence read as integers; other items left to the engine."""
    return [read_int(v, name) if isinstance(v, str) else v for v in items]


def read_pair(value, name: str, minimum: int = 1) -> geo.Pair:
    """An ``(h, w)`` pair from ``"3"``, ``"3,2"``, ``"3x2"`` or anything :func:`~cnncli.engine.geometry.as_pair` takes.

    Raises
    ------
    HyperparameterError
        A number missing (``"2x"``), not one or two integers, or a value below ``minimum``.

    Examples
    --------
    >>> read_pair("2x1", "stride"), read_pair(3, "f")
    ((2, 1), (3, 3))
    """
    if not isinstance(value, str):
        if isinstance(value, (list, tuple)):
            value = tuple(_ints(value, name))
        return geo.as_pair(value, name, minimum)
    items = value.lower().replace("x", ",").split(",")
    if not any(p.strip() for p in items):  # no number at all: "x", ""
        items = [value]
    elif any(not p.strip() for p in items):  # "2x", ",3": a number is missing
        raise HyperparameterError.worded(f"{name} must be an int or a pair like 3 or 3x2, got {value!r}",
                                         f"{name} must be like 3 or 3x2, got {value!r}")
    if len(items) not in (1, 2):
        raise HyperparameterError.worded(f"{name} must be an int or a pair (h, w), got {value!r}",
                                         f"{name} must be like 3 or 3x2, got {value!r}")
    return geo.as_pair(tuple(read_int(v, name) for v in items), name, minimum)


def read_pad(value) -> Union[str, geo.Pads]:
    """A pad spec from ``"1"``, ``"1,2"``, ``"0,1,0,1"``, ``"valid"``, ``"same"`` or what the engine takes.

    Raises
    ------
    HyperparameterError
        Negative values, a wrong count, a number missing (``"1,,2"``) or an unknown word.

    Examples
    --------
    >>> read_pad("0,1,0,1"), read_pad("same")
    ((0, 1, 0, 1), 'same')
    """
    if not isinstance(value, str):
        if isinstance(value, (list, tuple)):
            value = tuple(_ints(value, "pad"))
        return geo.normalize_pad(value)
    word = value.strip().lower()
    if word in geo.PAD_WORDS:
        return geo.normalize_pad(word)
    parts = word.replace("x", ",").split(",")
    for p in parts:  # a number int() misreads (1_0) or refuses (4,400 digits): read_int says which;
        if _NUMBER_LIKE.fullmatch(p):  # a word with an underscore ('va_lid') is a bad word, below
            read_int(p, "pad")
    try:
        values = [int(p) for p in parts]  # int("") fails too: "1x" or "1,,2"
    except ValueError:
        raise HyperparameterError.worded(f"pad {value!r}: expected {PAD_FORMS}",
                                         f"pad {value!r}: give 1, 2 or 4 ints, valid or same") from None
    for v in values:
        geo.normalize_pad(v)  # each side on its own first: a negative one is named before a wrong count
    if len(values) not in (1, 2, 4):
        raise HyperparameterError.worded(f"pad {value!r} has {len(values)} values; expected 1, 2 or 4",
                                         f"pad {value!r}: give 1, 2 or 4 values")
    return geo.normalize_pad(tuple(values))


def read_flag(value, name: str) -> bool:
    """A yes/no value from the words true/false, yes/no, on/off, 1/0 (any case), or a bool / 0 / 1.

    Raises
    ------
    HyperparameterError
        Anything else, e.g. ``2`` or ``"maybe"``.

    Examples
    --------
    >>> read_flag("false", "ceil_mode"), read_flag(b"ON", "ceil_mode"), read_flag(1, "ceil_mode")
    (False, True, True)
    """
    value = geo.plain_scalar(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return geo.as_flag(value, name)
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise HyperparameterError(f"{name} must be true or false, got {value!r}")


_READERS = {
    "f": lambda v: read_pair(v, "f"),
    "stride": lambda v: read_pair(v, "stride"),
    "dilation": lambda v: read_pair(v, "dilation"),
    "pad": read_pad,
    "groups": lambda v: read_int(v, "groups"),
    "ceil_mode": lambda v: read_flag(v, "ceil_mode"),
    "count_include_pad": lambda v: read_flag(v, "count_include_pad"),
}


def read_hyperparameters(hparameters):
    """A copy of an exercise-style ``hparameters`` dict with its text values read.

    Keys it does not know (``mode``, ``layout``, unknown ones) and None values are
    copied unchanged, for :meth:`cnncli.engine.ConvParams.from_hparameters` to judge;
    anything but a dict is returned as it is, for the same reason.

    Raises
    ------
    HyperparameterError
        A value of a known key that the reader refuses (see :func:`read_pair` ...).

    Examples
    --------
    >>> read_hyperparameters({"stride": "2x1", "pad": "1,2", "layout": "nhwc"})
    {'stride': (2, 1), 'pad': (1, 1, 2, 2), 'layout': 'nhwc'}
    """
    if not isinstance(hparameters, dict):
        return hparameters
    return {k: _READERS[k](v) if k in _READERS and v is not None else v for k, v in hparameters.items()}
