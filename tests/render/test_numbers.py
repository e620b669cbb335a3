"""Counts and sizes in the shape tables: a rounding that reaches the next unit rolls over to it.

The oracle parses the printed text back: a mantissa of one decimal in a unit below the
threshold of the next unit up, within half a tenth of a unit of the exact integer.
"""

import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnncli.render.shape import _bytes, _count

SI = {"M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "Z": 10**21, "Y": 10**24, "R": 10**27,
      "Q": 10**30}
BINARY = {f"{p}iB": 2 ** (10 * i) for i, p in enumerate("KMGTPEZY", start=1)}

#: Where a unit's mantissa reaches the next unit (10000.0M, 1024.0 KiB, 10000.0Q, 10000.0 YiB), and a sixteenth
#: of that unit below it (a twentieth rounds up) and a hundredth above.
_BOUNDARIES = [(10_000 * s, s) for s in SI.values()] + [(1024 * s, s) for s in BINARY.values()] + [(10_000 * 2**80,
                                                                                                 2**80)]
_near_boundary = st.sampled_from(_BOUNDARIES).flatmap(lambda b: st.integers(b[0] - b[1] // 16, b[0] + b[1] // 100))
integers = st.one_of(st.integers(0, 10**36), _near_boundary,
                     st.integers(0, 120).flatmap(lambda d: st.integers(10**d, 10 ** (d + 1))))


def _parse(text: str, units: dict):
    """(mantissa as a Fraction, unit scale), or (the whole number, None)."""
    m = re.fullmatch(r"(\d+)\.(\d) ?([A-Za-z]+)", text)
    if m:
        return Fraction(int(m.group(1) + m.group(2)), 10), units[m.group(3)]
    return int(text.removesuffix(" B").replace(",", "")), None


@given(integers)
def test_a_count_is_below_the_next_unit_and_parses_back_within_its_rounding(n):
    mantissa, scale = _parse(_count(n), SI)
    if scale is None:  # whole: below ten million, or past the largest unit's 9999.9Q
        assert mantissa == n and (n < 10**7 or n >= Fraction("9999.95") * 10**30)
        return
    assert 10 <= mantissa < 10_000  # 10.0M .. 9999.9M, then 10.0G: never 10000.0M
    assert abs(mantissa * scale - n) <= Fraction(scale, 20)  # '%.1f' is off by half a tenth at most


@given(integers)
def test_a_size_is_below_the_next_unit_and_parses_back_within_its_rounding(n):
    text = _bytes(n)
    mantissa, scale = _parse(text, BINARY)
    if scale is None:  # whole: under 1 KiB, or past the largest unit's 9999.9 YiB
        assert mantissa == n and (n < 1024 or n >= Fraction("9999.95") * 2**80)
        assert (n >= 1024) == ("," in text)
        return
    largest = scale == BINARY["YiB"]
    assert 1 <= mantissa < (10_000 if largest else 1024)  # never 1024.0 KiB: that is 1.0 MiB
    assert abs(mantissa * scale - n) <= Fraction(scale, 20)


def _first_rounding_to(value: Fraction, scale: int) -> int:
    """The least integer n with n / scale >= value - 1/20: the first that one decimal rounds up to value."""
    lo = (value - Fraction(1, 20)) * scale
    return -(-lo.numerator // lo.denominator)


@pytest.mark.parametrize("lower, upper", list(zip(list(SI)[:-1], list(SI)[1:])))
def test_every_count_unit_rolls_over_where_its_rounding_reaches_10000(lower, upper):
    first = _first_rounding_to(Fraction(10_000), SI[lower])
    assert _count(first - 1) == f"9999.9{lower}"
    assert _count(first) == f"10.0{upper}" and _count(SI[upper] * 10 - 1) == f"10.0{upper}"


@pytest.mark.parametrize("lower, upper", list(zip(list(BINARY)[:-1], list(BINARY)[1:])))
def test_every_size_unit_rolls_over_where_its_rounding_reaches_1024(lower, upper):
    first = _first_rounding_to(Fraction(1024), BINARY[lower])
    assert _bytes(first - 1) == f"1023.9 {lower}"
    assert _bytes(first) == f"1.0 {upper}" and _bytes(BINARY[upper] - 1) == f"1.0 {upper}"


def test_the_largest_units_roll_over_to_whole_numbers():
    q, y = _first_rounding_to(Fraction(10_000), 10**30), _first_rounding_to(Fraction(10_000), 2**80)
    assert (_count(q - 1), _count(q), _count(10**34 - 1)) == ("9999.9Q", f"{q:,}", f"{10**34 - 1:,}")
    assert (_bytes(y - 1), _bytes(y), _bytes(10_000 * 2**80 - 1)) == ("9999.9 YiB", f"{y:,} B",
                                                                      f"{10_000 * 2**80 - 1:,} B")
    assert q == 9_999_950 * 10**27 and _count(10**7) == "10.0M" and _bytes(1023) == "1023 B"
