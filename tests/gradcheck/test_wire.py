"""What the checker accepts from the --impl child: only plain numeric arrays and numbers, every size checked;
and the sandbox's limits (the whole check's, not only per call)."""

import json
import struct
import time

import numpy as np
import pytest

from cnncli.gradcheck import wire
from cnncli.gradcheck.sandbox import Cutoff, Sandbox
from cnncli.gradcheck.userfile import UserCallFailed, UserOutput
from cnncli.gradcheck.worker import encode_result


def roundtrip(value, keep=False):
    """What the checker decodes of a user's return value (child-side encoding, framing, strict decoding)."""
    blobs = []
    tree = encode_result(value, blobs, keep)
    header, got = wire.split_body(wire.frame({"value": tree}, blobs)[8:])
    return wire.decode_untrusted(header["value"], got, generation=1)


@pytest.mark.parametrize("value", [
    np.arange(12.0).reshape(3, 4), np.arange(6, dtype=np.int32), np.array([True, False]),
    np.float32(1.5), np.ones((2, 0, 3)), np.array(2.5), np.arange(6.0).reshape(2, 3)[:, ::2],
    np.arange(4, dtype=">f8"),
])
def test_numeric_arrays_and_scalars_arrive_equal_with_their_dtype(value):
    got = roundtrip(value)
    assert type(got) is type(np.asarray(value)[()] if np.ndim(value) == 0 and isinstance(value, np.generic)
                                else np.asarray(value))
    assert np.array_equal(got, value) and got.shape == np.shape(value)
    assert got.dtype == np.asarray(value).dtype.newbyteorder("=")


def test_python_values_tuples_and_lists_keep_their_form():
    got = roundtrip((np.zeros(2), 3, 2.5, None, True, float("nan")))
    assert type(got) is tuple and got[1:5] == (3, 2.5, None, True) and np.isnan(got[5])
    assert np.array_equal(roundtrip([[1, 0], [0, 1]]), np.eye(2))  # a numeric list is an array, as np.asarray makes it
    mixed = roundtrip([np.zeros(2), np.zeros(3)])
    assert type(mixed) is list and [m.shape for m in mixed] == [(2,), (3,)]


def test_what_cannot_be_an_array_arrives_described_and_a_cache_stays_behind():
    class Boom:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no")

    for value, what in ((10 ** 400, "an int of about 401 digits"), ("abc", "a str"), (Boom(), "a Boom"),
                        ({"a": 1}, "a dict"), (np.array(["x"]), "an array of <U1"), (1 + 2j, "a complex")):
        got = roundtrip(value)
        assert isinstance(got, wire.Kept) and got.what == what and got.id is None
    Z, cache = roundtrip((np.ones(2), (np.ones(2), {"pad": 1})), keep=True)
    assert isinstance(cache, wire.Kept) and cache.id is not None and cache.what == "a tuple"


@pytest.mark.parametrize("tree,blob,problem", [
    ({"t": "array", "dtype": "|O", "shape": [1], "b": 0}, b"\0" * 8, "not a plain numeric dtype"),
    ({"t": "array", "dtype": "<U1", "shape": [1], "b": 0}, b"\0" * 4, "not a plain numeric dtype"),
    ({"t": "array", "dtype": "|V8", "shape": [1], "b": 0}, b"\0" * 8, "not a plain numeric dtype"),
    ({"t": "array", "dtype": "<f8", "shape": [2], "b": 0}, b"\0" * 8, "do not match"),
    ({"t": "array", "dtype": "<f8", "shape": [-1], "b": 0}, b"\0" * 8, "bad shape"),
    ({"t": "array", "dtype": "<f8", "shape": [1], "b": 3}, b"\0" * 8, "bad blob index"),
    ({"t": "int", "v": 10 ** 30}, b"", "int out of range"),
    ({"t": "str", "v": "forged"}, b"", "unknown value type"),
    ({"t": "pickle", "v": "gASVAAAA"}, b"", "unknown value type"),
    ("PASS", b"", "not a tagged object"),
])
def test_anything_else_is_refused(tree, blob, problem):
    with pytest.raises(wire.WireError, match=problem):
        wire.decode_untrusted(tree, [blob], generation=1)


def test_nesting_and_framing_are_bounded():
    deep = None
    for _ in range(wire.MAX_DEPTH + 1):
        deep = {"t": "tuple", "v": [deep]}
    with pytest.raises(wire.WireError, match="too deep"):
        wire.decode_untrusted(deep, [], generation=1)
    head = json.dumps({"blobs": [5]}).encode()
    with pytest.raises(wire.WireError, match="do not add up"):
        wire.split_body(struct.pack(">I", len(head)) + head + b"abc")


def test_the_whole_check_has_a_time_limit_too(tmp_path):
    path = tmp_path / "slow.py"
    path.write_text("import time\n\ndef zero_pad(X, pad):\n    time.sleep(0.4)\n    return X\n")
    with Sandbox({"path": str(path), "cells": None}, UserOutput(), timeout=5, overall=1.0) as box:
        box.start()
        started = time.monotonic()
        results = []
        with pytest.raises(UserCallFailed) as failed:
            for _ in range(10):
                results.append(box.call("zero_pad", "pad 0", (np.zeros(1), 0)))
        # at most 3 of the 10 calls (0.4 s each) fit in 1 s; none may, when the child's start-up
        # (numpy's import, counted in the limit) is slow on a busy machine: seen once
        assert len(results) <= 3 and time.monotonic() - started < 2.5
    info = failed.value.info
    assert info.kind == "stopped" and info.exception == "not checked: the whole check took longer than 1 s"


def test_the_whole_checks_limit_names_the_call_it_cut_or_none(tmp_path):
    path = tmp_path / "slow.py"
    path.write_text("import time\n\ndef zero_pad(X, pad):\n    time.sleep(pad)\n    return X\n")
    # cut while zero_pad runs: the limit comes before the per-call one (5 s)
    with Sandbox({"path": str(path), "cells": None}, UserOutput(), timeout=5, overall=1.0) as box:
        box.start()
        with pytest.raises(UserCallFailed):
            box.call("zero_pad", "pad 30", (np.zeros(1), 30))
        assert box.cutoff == Cutoff("pad 30", "zero_pad")
        with pytest.raises(UserCallFailed):  # later calls are not made, and do not move the cutoff
            box.call("zero_pad", "pad 0", (np.zeros(1), 0))
        assert box.cutoff == Cutoff("pad 30", "zero_pad")
    # the time ran out between two calls: no call of the user's code is named
    with Sandbox({"path": str(path), "cells": None}, UserOutput(), timeout=5, overall=1.0) as box:
        box.start()
        box.call("zero_pad", "pad 0", (np.zeros(1), 0))
        time.sleep(max(0.0, box.deadline - time.monotonic()) + 0.01)
        with pytest.raises(UserCallFailed) as failed:
            box.call("zero_pad", "pad 0 again", (np.zeros(1), 0))
        assert box.cutoff == Cutoff("pad 0 again", None) and failed.value.info.kind == "stopped"


def test_a_system_without_posix_processes_is_told_so(tmp_path, monkeypatch):
    from cnncli.errors import ImplError
    from cnncli.gradcheck import sandbox

    path = tmp_path / "f.py"
    path.write_text("def zero_pad(X, pad):\n    return X\n")
    monkeypatch.setattr(sandbox.os, "name", "nt")
    with pytest.raises(ImplError, match=r"^--impl runs your code in a separate process, which cnncli supports on "
                                        r"Linux and macOS only \(on Windows, use WSL\)$"):
        Sandbox({"path": str(path), "cells": None}, UserOutput()).start()
