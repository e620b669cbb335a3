"""format_bytes: the one spelling of a size for people, in tables and messages."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnncli.units import format_bytes

UNITS = (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def _float_oracle(n: int) -> str:
    # below 2**53 a size divided by a power of two is exact in a float, so '%.1f' rounds it as the code must;
    # the unit is the largest the size reaches, and the next one up when the rounding reaches 1024.0 of it
    # (1023.96 KiB is '1.0 MiB'; 972.8 GiB stays GiB, though 0.95 TiB would round to '1.0 TiB');
    # sizes under 1 KiB are exact, and EiB, the largest, does not roll
    if n < 1024:
        return f"{n} bytes"
    i, (unit, scale) = next((i, u) for i, u in enumerate(UNITS) if n >= u[1])
    text = f"{n / scale:.1f}"
    if text == "1024.0" and i > 0:
        unit, scale = UNITS[i - 1]
        text = f"{n / scale:.1f}"
    return f"{text} {unit}"


#: Sizes whose rounding reaches the next unit up: within 0.05 of a unit below 1024 of it (KiB to EiB).
_rolling = st.sampled_from(UNITS[1:]).flatmap(lambda u: st.integers(1024 * u[1] - u[1] // 20, 1024 * u[1] - 1))


#: Sizes just under a unit (PiB to MiB: exact in a float), whose one-decimal rounding in it would reach 1.0
#: but not 1024.0 in the unit below.
_almost = st.sampled_from(UNITS[1:-1]).flatmap(lambda u: st.integers(u[1] * 95 // 100, u[1] * 9995 // 10000))


@given(st.one_of(st.integers(0, 2**53), _rolling, _almost))
def test_one_decimal_in_the_largest_unit_reached_as_float_formatting_rounds_it(n):
    assert format_bytes(n, "bytes") == _float_oracle(n)


def test_a_size_just_under_a_unit_stays_in_the_unit_below():
    # 1,044,536,046,388 bytes = 972.8 GiB = 0.95 TiB: the old oracle said '1.0 TiB' (hypothesis found it in CI)
    assert format_bytes(1_044_536_046_388) == "972.8 GiB"


def test_a_rounding_that_reaches_the_next_unit_rolls_over_to_it():
    # 1023.95 KiB = 1,048,524.8 bytes: 1,048,525 bytes rounds to 1024.0 KiB, which is 1.0 MiB
    assert (format_bytes(1_048_524), format_bytes(1_048_525), format_bytes(2**20 - 1)) == (
        "1023.9 KiB", "1.0 MiB", "1.0 MiB")
    assert format_bytes(2**60 - 1) == "1.0 EiB"
    assert format_bytes(2**70 - 1) == "1024.0 EiB"  # EiB is the largest unit of a message: it does not roll


def test_sizes_past_a_float_are_still_written():
    # a pad of 10**200 asks for an output of ~10**400 bytes: no OverflowError, whole digits
    text = format_bytes(10**400)
    assert text.endswith(" EiB") and text[:-4].replace(".", "").isdigit() and len(text) > 300


def test_the_word_for_small_sizes():
    assert (format_bytes(0), format_bytes(1023), format_bytes(1023, "bytes")) == ("0 B", "1023 B", "1023 bytes")
    assert (format_bytes(1024), format_bytes(1280), format_bytes(1536)) == ("1.0 KiB", "1.2 KiB", "1.5 KiB")


@pytest.mark.parametrize("k", [13301, 26602, 3, 1000])
def test_power_of_ten_at_sizes_where_the_log_estimate_is_one_above(k):
    # 30103 / 100000 is a shade above log10(2): at 2**13301 the estimate's exponent is one too many
    import sys
    from fractions import Fraction

    from cnncli.units import power_of_ten

    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        digits = str(2**k)
    finally:
        sys.set_int_max_str_digits(limit)
    exp = len(digits) - 1
    tenths = round(Fraction(2**k, 10**exp) * 10)  # half to even, as format_bytes rounds
    if tenths >= 100:
        exp, tenths = exp + 1, round(Fraction(2**k, 10**(exp + 1)) * 10)
    assert power_of_ten(2**k) == f"{tenths // 10}.{tenths % 10}e{exp}"
