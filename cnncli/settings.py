"""Settings from the environment (``CNNCLI_*``), read where they are used and refused in one line."""

from __future__ import annotations

import os

from .errors import SettingError


def positive_int_setting(name: str, default: int) -> int:
    """The positive integer in environment variable ``name``, or ``default`` when it is not set.

    Raises
    ------
    SettingError
        Set but not a positive integer ("abc", "1e3", "", "0"); the message names the variable and its value.
    """
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingError(f"{name} must be a positive number of bytes, got {text!r}")
    return value
