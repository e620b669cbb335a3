"""The numbers of ``cnncli shape``: how they are written, and how large they may be (every one must print).

Written with ASCII digits only: Python's ``int()`` would also read ``2_0`` as 20 (a typo
more likely than a thousands separator), so :func:`number_text` refuses an underscore; a
pair may be written as PyTorch prints it, ``(3, 3)``.

Python refuses to turn an integer of more than 4,300 digits into text (``sys.int_info``'s
default ``str_digits_check_threshold``; a guard against quadratic conversions), so a number
past that could be computed but not shown. ``shape`` therefore reads numbers of up to
:data:`MAX_DIGITS` digits (sizes, windows, strides, pads, channels, targets) and refuses a
layer whose derived numbers (output sizes, parameters, MACs, bytes, receptive field) would pass
:data:`MAX_DERIVED_DIGITS`; both are refused with one line naming the value and the limit.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

#: Digits of a number given to ``shape`` (--input, --f, --stride, ..., LAYER_SPEC values, --target).
MAX_DIGITS = 1000
#: Digits of a number ``shape`` derives (MACs multiply up to seven given numbers: 7 x 1000 would not print).
MAX_DERIVED_DIGITS = 4000

_RUN = re.compile(r"\d+")


def abbreviate(text: str, width: int = 40) -> str:
    """``text`` cut in its middle to about ``width`` characters (a value too long to quote whole)."""
    return text if len(text) <= width else f"{text[:width - 12]}...{text[-9:]}"


def longest_number(text: str) -> int:
    """Digits of the longest run of digits in ``text`` (0 without one)."""
    return max((m.end() - m.start() for m in _RUN.finditer(text)), default=0)


def number_text(value, name: str, error=ValueError):
    """``value`` unchanged, or its text without one pair of enclosing brackets (``(3, 3)`` -> ``3, 3``).

    Raises
    ------
    error
        Text with an underscore between digits (``2_0``), which ``int()`` would read as 20.
    """
    if not isinstance(value, str):
        return value
    if re.search(r"\d_|_\d", value):
        words = (f"{name} {value!r}: write numbers with digits only (no '_')",
                 f"{name} {value!r}: write digits only (no '_')")
        raise error.worded(*words) if hasattr(error, "worded") else error(words[0])
    inner = re.fullmatch(r"\s*[(\[](.*)[)\]]\s*", value)
    return inner.group(1) if inner else value


def check_digits(value, name: str, error=ValueError) -> None:
    """Refuse ``value`` (text or int) holding a number of more than :data:`MAX_DIGITS` digits.

    Raises
    ------
    error
        ``"{name} has a number of N digits; cnncli shape reads numbers of up to 1,000 digits"``, or
        ``"...; shape reads up to 1,000"`` where that does not fit 80 columns.
    """
    def refuse(digits: str):
        words = (f"{name} has a number of {digits} digits; cnncli shape reads numbers of up to {MAX_DIGITS:,} digits",
                 f"{name} has a number of {digits} digits; shape reads up to {MAX_DIGITS:,}")
        raise error.worded(*words) if hasattr(error, "worded") else error(words[0])

    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10 ** MAX_DIGITS:
            refuse(f"over {MAX_DIGITS:,}")
        return
    if isinstance(value, str):
        n = longest_number(value)
        if n > MAX_DIGITS:
            refuse(f"{n:,}")


def too_long(values: Iterable[tuple]) -> Optional[str]:
    """The first ``(what, number)`` whose number has more than :data:`MAX_DERIVED_DIGITS` digits, said in words."""
    bound = 10 ** MAX_DERIVED_DIGITS
    for what, number in values:
        if number is not None and abs(number) >= bound:
            return (f"its {what} would have over {MAX_DERIVED_DIGITS:,} digits (cnncli shape's limit for a "
                    "derived number)")
    return None
