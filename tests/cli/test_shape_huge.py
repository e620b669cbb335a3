"""``shape`` tables with huge numbers: every digit from integer arithmetic, every number whole at 80 columns."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state

runner = CliRunner()
B = 10**18


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


def _run(*args, columns="80"):
    result = runner.invoke(app, ["shape", *args], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _one_decimal(n: int, scale: int) -> str:
    q = round(Fraction(n, scale) * 10)  # Fraction rounds half to even
    return f"{q // 10}.{q % 10}"


@pytest.mark.parametrize("n, text", [
    (9_999_999, "9,999,999"),
    (10**7, "10.0M"),
    (33_554_432, "33.6M"),
    (10**10, "10.0G"),
    (49 * B, "49.0E"),
    (178_608 * B, "178.6Z"),
    (10**25, "10.0Y"),
    (10**28, "10.0R"),
    (10**31, "10.0Q"),
    (9_999_949_999, "9999.9M"),
    (9_999_950_000, "10.0G"),  # 9999.95M rounds to 10000.0M: that is the next unit's 10.0G
    (9_999_949_999 * 10**24, "9999.9Q"),
    (10**34 - 1, f"{10**34 - 1:,}"),  # rounds up past the last unit's 9999.9Q: whole
    (10**34, f"{10**34:,}"),  # past 9999.9Q: whole
])
def test_counts_use_exact_units_then_whole_numbers(n, text):
    from cnncli.render.shape import _count

    assert _count(n) == text


def test_the_reported_stack_shows_exact_units():
    # conv f=4 with 10**18 filters on 64x64x3: 4*4*3*B weights + B biases = 49 * B; 61x61 outputs of
    # 48 taps each per filter: 61*61*48*B MACs; output 61*61*B float32 values.
    doc = json.loads(_run("--input", "64x64x3", f"conv:f=4,c={B}", "pool:f=8,s=8", "--json"))
    assert doc["layers"][0]["params"] == 49 * B and doc["layers"][0]["macs"] == 61 * 61 * 48 * B
    out = _run("--input", "64x64x3", f"conv:f=4,c={B}", "pool:f=8,s=8")
    mem = 61 * 61 * B * 4
    assert "49.0E" in out and "178.6Z" in out and f"{_one_decimal(mem, 2**70)} ZiB" in out
    assert "12.6 ZiB" in out  # 14,884 * 10**18 / 2**70 = 12.607...
    assert "G " not in out and ".0G" not in out
    total64 = (61 * 61 + 7 * 7) * B * 8
    assert f"FLOPs = 2 x MACs = {2 * 61 * 61 * 48 * B:,}" in out
    assert f"{_one_decimal(total64, 2**70)} ZiB" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_numbers_wider_than_the_terminal_are_printed_whole():
    dims = "x".join([str(B)] * 4)
    doc = json.loads(_run("--input", dims, f"conv:f=3,c={B}", "pool:f=2", "--json"))
    macs = B * (B - 2) ** 2 * B * 9 * B  # every output value (M x H' x W' x C_out) times 3*3*C_in taps
    assert doc["totals"]["macs"] == macs
    out = _run("--input", dims, f"conv:f=3,c={B}", "pool:f=2")
    lines = out.splitlines()
    # The 90-digit count is on a line of its own, whole (the terminal wraps it; nothing cuts it).
    assert f"{macs:,}" in [line.strip() for line in lines]
    assert any(line.strip().startswith(f"{2 * macs:,}") for line in lines)  # the footer's FLOPs, whole
    f64 = B * ((B - 2) ** 2 + ((B - 2) // 2) ** 2) * B * 8  # past 9999.9 YiB: whole bytes
    assert any(f"{f64:,} B" in line for line in lines)
    for line in lines:  # only a single value (a number and its unit, a shape "a -> b") may be wider than 80
        assert len(line) <= 80 or len(line.strip().split(" ")) <= 2 or " -> " in line, line


def test_the_one_layer_report_has_every_number_whole():
    dims = "x".join([str(B)] * 4)
    out = _run("--input", dims, "--f", "3")
    macs = B * (B - 2) ** 2 * B * 9 * B  # filters default to the input's channels
    assert f"{macs:,}" in out
    values = B * (B - 2) ** 2 * B
    words = out.split()
    assert f"{values:,}" in words and f"{values * 4:,}" in words and f"{values * 8:,}" in words


def _refused(*args):
    result = runner.invoke(app, ["shape", *args], env={"COLUMNS": "80"})
    assert result.exit_code == 2 and result.stdout == "", (result.exit_code, result.stdout[:200])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


@pytest.mark.parametrize("args, what, digits", [
    (["--input", "1" + "0" * 4400, "--f", "3"], "--input", 4401),  # past int()'s 4300 digits: was exit 3
    (["--input", "x".join(["1" + "0" * 1500] * 3), "--f", "3"], "--input", 1501),  # crashed drawing MACs
    (["--input", "28", "--f", "1" + "0" * 4400], "f", 4401),  # was "f must be an integer"
    (["--input", "28", "--f", "3", "--stride", "2" * 1001], "stride", 1001),
    (["--input", "28", "--f", "3", "--target", "1" + "0" * 1000], "--target", 1001),
])
def test_numbers_past_the_digit_limit_are_refused_naming_their_digits(args, what, digits):
    # the whole "...; cnncli shape reads numbers of up to 1,000 digits" takes 84 to 89 columns here
    assert _refused(*args) == f"cnncli: error: {what} has a number of {digits:,} digits; shape reads up to 1,000\n"


def test_a_spec_past_the_digit_limit_is_named_in_short():
    err = _refused("--input", "28", "conv:f=1" + "0" * 4400)
    assert err == ("cnncli: error: layer spec 'conv:f=100000000000000000000...000000000' has a number of 4,401 "
                   "digits; cnncli shape reads numbers of up to 1,000 digits\n")


def test_numbers_at_the_digit_limit_are_shown_whole():
    h = 10**999  # 1000 digits
    out = _run("--input", f"{h}x{h}x{h}", "--f", "3")
    macs = (h - 2) * (h - 2) * h * 9 * h  # every output value (h-2 x h-2 x h filters) times 3*3*h taps: 3997 digits
    assert f"{macs:,}" in out.split() and f"{2 * macs:,})" in out.split()


def test_a_derived_number_past_its_limit_stops_the_stack_at_that_layer():
    s = 10**900
    specs = [f"conv:f=1,s={s}"] * 5  # the jump multiplies the strides: 10**3600 after four, 10**4500 after five
    result = runner.invoke(app, ["shape", "--input", "10", *specs, "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert len(doc["layers"]) == 4 and doc["layers"][3]["jump"] == [s**4, s**4]
    assert doc["error"] == (f"layer 5 (conv:f=1,s={s}) on 1x1: its jump would have over 4,000 digits (cnncli "
                            "shape's limit for a derived number)")
    assert result.stderr == f"cnncli: error: {doc['error']}\n"


def test_a_field_start_past_the_double_range_is_exact():
    # Stride 10**200 twice, then a pad of 1 with f=3: start = 0 + (1 - 0)*1 + (1-0)*10**200... computed by hand:
    # layer 1: (3-1)/2 - 0 = 1 (jump 1); layer 2: 1 + 1*10**200; layer 3 (pad 1): + (1 - 1)*10**400 = same.
    s = 10**200
    doc = json.loads(_run("--input", "1" + "0" * 999, f"conv:f=3,s={s}", f"conv:f=3,s={s}", "conv:f=3,p=1",
                          "--json"))
    assert [layer["start"] for layer in doc["layers"]] == [[1.0, 1.0], [1 + s, 1 + s], [1 + s, 1 + s]]
    assert doc["layers"][2]["jump"] == [s * s, s * s]


def test_a_table_cell_that_rounds_up_to_the_next_unit_shows_that_unit():
    # fc on one feature: N MACs, 2N params, 4N bytes of float32 output. N = 9,999,960,000 is 9999.96M MACs,
    # which one decimal rounds to 10000.0M: the next unit's 10.0G. N = 2**28 - 1: 2**30 - 4 bytes is
    # 1023.99998 MiB, rounded 1024.0 MiB: 1.0 GiB.
    out = _run("--input", "1x1x1", "fc:c=9999960000")
    assert " 10.0G " in out and "10000.0M" not in out and " 20.0G " in out
    out = _run("--input", "1x1x1", f"fc:c={2**28 - 1}")
    assert " 1.0 GiB " in out and "1024.0 MiB" not in out and "activations in float64: 2.0 GiB" in out
