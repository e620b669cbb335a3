"""Text files (``shape --from FILE|-``): read whole, bounded in size, decoded as UTF-8."""

from __future__ import annotations

import os
import sys

from ..errors import InputError

#: A printed model is a few KB; anything far larger is not one (and is not read into memory).
MAX_TEXT_BYTES = 16 * 2**20


def read_text(path: str, *, role: str = "text", limit: int = MAX_TEXT_BYTES) -> str:
    """The text of ``path`` (``-``: standard input), at most ``limit`` bytes.

    Raises
    ------
    InputError
        Missing, unreadable, larger than ``limit``, or not UTF-8 text; the message names ``role`` and the path.
    """
    where = "standard input" if path == "-" else repr(path)
    try:
        if path == "-":
            if sys.stdin is None or getattr(type(sys.stdin), "closed_at_start", False):  # <&-
                raise InputError(f"{role}: standard input is closed ('<&-'); pipe the text into '-' or give a file")
            data = sys.stdin.buffer.read(limit + 1)
        else:
            if os.path.isdir(path):
                raise InputError(f"{role} {where} is a folder, not a file")
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{role}: no such file {where}") from None
    except OSError as exc:
        raise InputError(f"{role}: cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputError(f"{role} {where} is larger than {limit // 2**20} MiB: not a printed model")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{role} {where} is not UTF-8 text (byte {exc.start})") from None
