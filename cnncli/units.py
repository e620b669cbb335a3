"""Sizes written for people: the shape tables (render) and io's messages use the same words.

Like :mod:`cnncli.errors`, a leaf that imports nothing, so every layer may use it
(io must not import render, which is for cli only).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

#: Binary units of a size in bytes, largest first.
BINARY_UNITS = (("YiB", 2**80), ("ZiB", 2**70), ("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30),
                ("MiB", 2**20), ("KiB", 2**10))
#: The units of :func:`format_bytes` (messages): up to EiB, where a size past any real memory already is.
_MESSAGE_UNITS = BINARY_UNITS[2:]


def _round_tenths(n: int, scale: int) -> int:
    """``n / scale`` in tenths, from integers (``n / scale`` overflows a float for huge n), half to even as '%.1f'."""
    tenths, rest = divmod(10 * n, scale)
    return tenths + (2 * rest > scale or (2 * rest == scale and tenths % 2 == 1))


def scaled(n: int, units: Sequence[Tuple[str, int]], least: int = 1,
           most: Optional[int] = None) -> Optional[Tuple[str, str]]:
    """``n`` with one decimal in the largest unit it reaches (``least`` of that unit or more).

    A value whose rounding reaches the next unit up moves to it (``1023.96 KiB`` is
    ``1.0 MiB``, never ``1024.0 KiB``), so every mantissa stays below the next unit's threshold.

    Parameters
    ----------
    n : int
        A non-negative integer (any size: the arithmetic is in integers).
    units : sequence of (str, int)
        ``(name, scale)`` pairs, largest scale first; each scale divides the one before.
    least : int
        The smallest mantissa a unit is used for (1 for ``1.0 KiB``, 10 for ``10.0M``).
    most : int, optional
        The mantissa at which the largest unit stops (``None``: never).

    Returns
    -------
    (str, str) or None
        The mantissa (``"268.5"``) and the unit's name; ``None`` when ``n`` is below ``least``
        of the smallest unit, or rounds to ``most`` or more of the largest (the caller writes it whole).

    Raises
    ------
    Nothing.

    Examples
    --------
    >>> scaled(274_944, BINARY_UNITS), scaled(2**20 - 1, BINARY_UNITS), scaled(1023, BINARY_UNITS)
    (('268.5', 'KiB'), ('1.0', 'MiB'), None)
    """
    for i, (unit, scale) in enumerate(units):
        if n >= least * scale:
            tenths = _round_tenths(n, scale)
            if i == 0 and most is not None and tenths >= 10 * most:
                return None
            # NOTE: chosen from the exact n, the rounding may reach the next unit up; it then rolls over
            if i > 0 and tenths >= 10 * least * (units[i - 1][1] // scale):
                unit, scale = units[i - 1]
                tenths = _round_tenths(n, scale)
            return f"{tenths // 10}.{tenths % 10}", unit
    return None


def format_bytes(n: int, plain: str = "B") -> str:
    """``n`` bytes in the largest binary unit it reaches once rounded (EiB down to KiB), with one decimal.

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
    >>> format_bytes(274_944), format_bytes(3 * 2**30), format_bytes(512, "bytes"), format_bytes(2**30 - 1)
    ('268.5 KiB', '3.0 GiB', '512 bytes', '1.0 GiB')
    """
    parts = scaled(n, _MESSAGE_UNITS)
    return f"{n} {plain}" if parts is None else f"{parts[0]} {parts[1]}"


def power_of_ten(n: int) -> str:
    """``n`` (> 0) with one decimal times a power of ten, from integers (``n`` may be past a float's range).

    For sizes no binary unit writes short: 10**52 bytes are 8673617379884035472059622406959533.3 EiB.

    Parameters
    ----------
    n : int
        A positive integer of any size.

    Returns
    -------
    str
        ``"2.6e52"``: the mantissa rounded half to even, as :func:`format_bytes` rounds.

    Raises
    ------
    Nothing.

    Examples
    --------
    >>> power_of_ten(22204460492503130808472642243600603 * 2**60), power_of_ten(10**400), power_of_ten(99_960)
    ('2.6e52', '1.0e400', '1.0e5')
    """
    exp = max(0, (n.bit_length() - 1) * 30103 // 100_000)  # log10(2) ~ 0.30103: an estimate, off by one at most
    while exp > 0 and 10 ** exp > n:  # 0.30103 is a shade above log10(2): at huge sizes the estimate is one above
        exp -= 1
    while 10 ** (exp + 1) <= n:
        exp += 1
    tenths = _round_tenths(n, 10**exp)
    if tenths >= 100:  # 9.96e5 rounds to 10.0e5: it is 1.0e6
        exp += 1
        tenths = _round_tenths(n, 10**exp)
    return f"{tenths // 10}.{tenths % 10}e{exp}"


def two_sizes(need: int, limit: int):
    """``(need, limit)`` as :func:`format_bytes` words them, in exact bytes when those would read the same.

    Examples
    --------
    >>> two_sizes(3 * 2**20, 2**20), two_sizes(2**20, 2**20 - 1)
    (('3.0 MiB', '1.0 MiB'), ('1048576 bytes', '1048575 bytes'))
    """
    a, b = format_bytes(need, "bytes"), format_bytes(limit, "bytes")
    return (a, b) if a != b else (f"{need} bytes", f"{limit} bytes")
