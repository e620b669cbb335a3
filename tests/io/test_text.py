"""Hyperparameters written as text (options, case attributes, specs) read into the engine's numbers."""

import json

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams
from cnncli.errors import HyperparameterError
from cnncli.io.text import read_flag, read_hyperparameters, read_int, read_pad, read_pair


def test_pad_forms():
    assert read_pad("1,2") == (1, 1, 2, 2)
    assert read_pad(" 0,1,0,1 ") == (0, 1, 0, 1)
    assert read_pad("2") == (2, 2, 2, 2)
    assert read_pad("1x2") == (1, 1, 2, 2)
    assert read_pad("SAME") == "same"
    assert read_pad("valid") == (0, 0, 0, 0)
    assert read_pad((1, 2)) == (1, 1, 2, 2)          # numbers go straight to the engine
    assert read_pad(["1", 2]) == (1, 1, 2, 2)         # text items of a sequence are read too
    assert read_pad(np.array([0, 1, 2, 3])) == (0, 1, 2, 3)


def test_pair_forms():
    assert read_pair("3x2", "f") == (3, 2)
    assert read_pair("3,2", "f") == (3, 2)
    assert read_pair(" 4 ", "f") == (4, 4)
    assert read_pair(3, "f") == (3, 3)
    assert read_pair(("2", "1"), "stride") == (2, 1)
    assert read_int("7", "groups") == 7 and read_int(7.0, "groups") == 7


@pytest.mark.parametrize("text, message", [
    ("2x", "stride must be an int or a pair like 3 or 3x2, got '2x'"),
    ("2xx3", "stride must be an int or a pair like 3 or 3x2"),
    (",3", "stride must be an int or a pair like 3 or 3x2"),
    ("3,", "stride must be an int or a pair like 3 or 3x2"),
    ("1,2,3", "stride must be an int or a pair (h, w), got '1,2,3'"),
    ("a", "stride must be an integer, got 'a'"),
    ("x", "stride must be an integer, got 'x'"),
    ("0", "stride must be >= 1, got 0"),
    ("2.5", "stride must be an integer, got '2.5'"),
])
def test_bad_pairs(text, message):
    with pytest.raises(HyperparameterError) as info:
        read_pair(text, "stride")
    assert message in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("1x", "pad '1x': expected an int, 'h,w'"), ("1,,2", "pad '1,,2': expected an int, 'h,w'"),
    ("1,2,", "pad '1,2,': expected an int, 'h,w'"), ("", "pad '': expected an int, 'h,w'"),
    ("half", "pad 'half': expected an int, 'h,w', 't,b,l,r', valid or same"),
    ("-1", "pad must be >= 0, got -1"),
    ("1,-2,3", "pad must be >= 0, got -2"),  # a negative side is named before the wrong count
    ("1,2,3", "pad '1,2,3' has 3 values; expected 1, 2 or 4"),
])
def test_bad_pads(text, message):
    with pytest.raises(HyperparameterError) as info:
        read_pad(text)
    assert message in str(info.value)


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (0, False), (1, True), ("false", False), ("No", False), ("off", False),
    ("0", False), ("TRUE", True), ("yes", True), (b"false", False), (np.bytes_(b"on"), True), (np.int64(1), True),
])
def test_flags_read_words_not_truthiness(value, expected):
    assert read_flag(value, "ceil_mode") is expected


@pytest.mark.parametrize("value", [2, -1, "maybe", "", None, 0.5])
def test_bad_flags_are_refused(value):
    with pytest.raises(HyperparameterError, match="ceil_mode must be true or false"):
        read_flag(value, "ceil_mode")


def test_hyperparameters_dict_is_read_then_judged_by_the_record():
    hp = {"stride": "2x1", "pad": "0,1,0,1", "dilation": 1, "groups": "2", "layout": "nchw"}
    read = read_hyperparameters(hp)
    assert hp["stride"] == "2x1"  # the caller's dict is not modified
    assert ConvParams.from_hparameters(read) == ConvParams(stride=(2, 1), pad=(0, 1, 0, 1), groups=2)
    pool = PoolParams.from_hparameters(read_hyperparameters({"f": "3", "ceil_mode": "on", "stride": None}), "avg")
    assert pool == PoolParams(f=3, stride=3, ceil_mode=True, mode="average")
    with pytest.raises(HyperparameterError, match="unknown conv hyperparameter"):
        ConvParams.from_hparameters(read_hyperparameters({"strides": 1}))
    assert read_hyperparameters([1]) == [1]  # not a dict: left for the record to refuse
    with pytest.raises(HyperparameterError, match="hparameters must be a dict, got list"):
        ConvParams.from_hparameters([1])


@pytest.mark.parametrize("text, message", [
    ("2_0", "stride '2_0': write numbers with digits only (no '_')"),
    ("1" * 4400, "stride has a number of 4400 digits; at most 4300 are read"),
    ("x", "stride must be an integer, got 'x'"),
])
def test_read_int_refuses_underscores_and_numbers_int_cannot_read(text, message):
    with pytest.raises(HyperparameterError) as err:
        read_int(text, "stride")
    assert str(err.value) == message
    assert read_int(" 20 ", "stride") == 20


@pytest.mark.parametrize("text", ["1_0", "1,1_0", "1x1_0"])
def test_read_pad_refuses_underscores_too(text):
    with pytest.raises(HyperparameterError, match=r"^pad '1_0': write numbers with digits only \(no '_'\)$"):
        read_pad(text)


def test_groups_and_filters_are_read_as_the_other_numbers(tmp_path):
    from typer.testing import CliRunner

    from cnncli.cli import app

    np.save(tmp_path / "A.npy", np.ones((1, 4, 4, 4)))
    np.save(tmp_path / "W.npy", np.ones((3, 3, 4, 8)))
    r = CliRunner().invoke(app, ["forward", str(tmp_path / "A.npy"), "--weights", str(tmp_path / "W.npy"),
                                 "--groups", "0_1"])
    assert r.exit_code == 2 and "'--groups': '0_1': digits only (no '_')" in r.stderr  # the whole words: 92 columns
    r = CliRunner().invoke(app, ["shape", "--input", "8x8x4", "--f", "3", "--filters", "1_6"])
    assert r.exit_code == 2 and "'--filters': '1_6': digits only (no '_')" in r.stderr
    r = CliRunner().invoke(app, ["shape", "--input", "8x8x4", "--f", "3", "--filters", "16", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["layers"][0]["output"] == [6, 6, 16]


@pytest.mark.parametrize("word", ["va_lid", "same_"])
def test_a_pad_word_with_an_underscore_is_a_bad_word_not_a_bad_number(word):
    with pytest.raises(HyperparameterError, match=rf"^pad '{word}': expected "):
        read_pad(word)
