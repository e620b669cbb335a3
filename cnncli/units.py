"""Sizes written for people: the shape tables (render) and io's messages use the same words.

Like :mod:`cnncli.errors`, a leaf that imports nothing, so every layer may use it
(io must not import render, which is for cli only).
"""

from __future__ import annotations


def format_bytes(n: int, plain: str = "B") -> str:
    """``n`` bytes in the largest binary unit it reaches (EiB down to KiB), with one decimal.

    Parameters
    ----------
    n : int
        A number of bytes, >= 0.
    plain : str
        The word after a size under 1 KiB (``"B"`` in tables, ``"bytes"`` in messages).

    Returns
    -------
    str

    Raises
    ------
    Nothing.

    Examples
    --------
    >>> format_bytes(274_944), format_bytes(3 * 2**30), format_bytes(512, "bytes")
    ('268.5 KiB', '3.0 GiB', '512 bytes')
    """
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                        ("KiB", 2**10)):
        if n >= scale:
            # In integers (n / scale overflows a float for huge n), rounded half to even as '%.1f' does
            tenths, rest = divmod(10 * n, scale)
            tenths += 2 * rest > scale or (2 * rest == scale and tenths % 2 == 1)
            return f"{tenths // 10}.{tenths % 10} {unit}"
    return f"{n} {plain}"
