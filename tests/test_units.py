"""format_bytes: the one spelling of a size for people, in tables and messages."""

from hypothesis import given
from hypothesis import strategies as st

from cnncli.units import format_bytes

UNITS = (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


@given(st.integers(0, 2**53))
def test_one_decimal_in_the_largest_unit_reached_as_float_formatting_rounds_it(n):
    # below 2**53 a size divided by a power of two is exact in a float, so '%.1f' is the oracle
    want = next((f"{n / scale:.1f} {unit}" for unit, scale in UNITS if n >= scale), f"{n} bytes")
    assert format_bytes(n, "bytes") == want


def test_sizes_past_a_float_are_still_written():
    # a pad of 10**200 asks for an output of ~10**400 bytes: no OverflowError, whole digits
    text = format_bytes(10**400)
    assert text.endswith(" EiB") and text[:-4].replace(".", "").isdigit() and len(text) > 300


def test_the_word_for_small_sizes():
    assert (format_bytes(0), format_bytes(1023), format_bytes(1023, "bytes")) == ("0 B", "1023 B", "1023 bytes")
    assert (format_bytes(1024), format_bytes(1280), format_bytes(1536)) == ("1.0 KiB", "1.2 KiB", "1.5 KiB")
