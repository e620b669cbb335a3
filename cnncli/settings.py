"""Settings from the environment (``CNNCLI_*``), read where they are used and refused in one line."""

from __future__ import annotations

import os

from .errors import SettingError


def positive_int_setting(name: str, default: int, what: str = "number of bytes") -> int:
    """The positive integer in environment variable ``name``, or ``default`` when it is not set.

    Raises
    ------
    SettingError
        Set but not a positive integer in digits ("abc", "1e3", "", "0", "1_000"); the message names the
        variable, its value and ``what`` it must be.
    """
    text = os.environ.get(name)
    if text is None:
        return default
    value = int(text) if text.strip().isdigit() and text.strip().isascii() else 0  # int() reads 1_000 too
    if value < 1:
        raise SettingError.worded(f"{name} must be a positive {what}, got {text!r}",
                                  f"{name} must be a positive integer, got {text!r}")
    return value


def word_setting(name: str, words, default: str) -> str:
    """The word in environment variable ``name`` (any case, spaces around it ignored), or ``default``.

    Raises
    ------
    SettingError
        Set to anything but one of ``words``; the message names the variable, its value and the words.
    """
    text = os.environ.get(name)
    if text is None:
        return default
    word = text.strip().lower()
    if word not in words:
        valid = ", ".join(words[:-1]) + f" or {words[-1]}"
        raise SettingError(f"{name} must be {valid}, got {text!r}")
    return word
