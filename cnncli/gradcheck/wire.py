"""The frames that the ``--impl`` checker and its child process exchange, and their values.

Imports only the standard library and numpy: the child (:mod:`.worker`) runs it as a
plain module next to itself, without importing cnncli.

A frame is an 8-byte big-endian body length, then the body: a 4-byte header length,
the header (UTF-8 JSON), and the binary blobs the header's values refer to by index.
Values are a small tree: ``None``, bool, int, float (hex, so NaN and inf survive),
str, tuple, list, dict with str keys, ndarray / numpy scalar of a plain numeric
dtype (raw bytes + dtype + shape), ``handle`` (an object kept in the child), and
``opaque`` (what the child could not send, described). Nothing is ever pickled:
the checker decodes what the child sends with :func:`decode_untrusted`, which
accepts only those forms and checks every size.
"""

from __future__ import annotations

import json
import os
import re
import struct

import numpy as np

#: dtypes an array may arrive in: bool, (unsigned) integers, floats; little-endian or single-byte.
_DTYPE = re.compile(r"^(\|b1|\|[iu]1|[<=][iu][248]|[<=]f(2|4|8|16))$")
#: Nesting of tuples/lists the checker accepts from the child (results are (Z, cache) and the like).
MAX_DEPTH = 4
#: Items in one tuple/list the checker accepts from the child.
MAX_ITEMS = 64


class WireError(Exception):
    """A frame or value that does not have the agreed form."""


class Kept:
    """The checker's stand-in for a value of the user's that stayed in the child.

    ``what`` describes it (``"dict"``, ``"an int of 401 digits"``); ``id`` names it in the
    child's store when it was kept (to pass it back, e.g. a cache), else None;
    ``generation`` is the child process it lives in.
    """

    __slots__ = ("what", "id", "generation")

    def __init__(self, what: str, id=None, generation: int = 0):
        self.what, self.id, self.generation = what, id, generation

    def __repr__(self) -> str:
        return f"<{self.what} kept in the child>"


def frame(header: dict, blobs=()) -> bytes:
    """The bytes of one frame; ``header["blobs"]`` is set to the blobs' sizes."""
    header = dict(header, blobs=[len(b) for b in blobs])
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [struct.pack(">I", len(head)), head, *blobs]
    return struct.pack(">Q", sum(len(p) for p in parts)) + b"".join(parts)


def split_body(body: bytes):
    """``(header, blobs)`` of a frame body; :class:`WireError` when the framing is off."""
    if len(body) < 4:
        raise WireError("short frame")
    (n,) = struct.unpack(">I", body[:4])
    if 4 + n > len(body):
        raise WireError("header runs past the frame")
    try:
        header = json.loads(body[4:4 + n].decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("header is not an object")
    sizes = header.get("blobs", [])
    if not isinstance(sizes, list) or not all(type(s) is int and s >= 0 for s in sizes):
        raise WireError("bad blob sizes")
    if 4 + n + sum(sizes) != len(body):
        raise WireError("blob sizes do not add up to the frame")
    blobs, at = [], 4 + n
    for s in sizes:
        blobs.append(memoryview(body)[at:at + s])
        at += s
    return header, blobs


def read_exact(fd: int, n: int, wait=None) -> bytes:
    """Read ``n`` bytes; :class:`EOFError` when the other side closed first; ``wait()`` (may raise) before each read."""
    chunks, got = [], 0
    while got < n:
        if wait is not None:
            wait()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def encode(value, blobs: list):
    """Encode the checker's own argument values (arrays, numbers, str, tuples, lists, dicts, :class:`Kept`)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, float):
        return {"t": "float", "v": value.hex()}
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return _array(value, blobs)
    if isinstance(value, (tuple, list)):
        return {"t": type(value).__name__, "v": [encode(v, blobs) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": [[k, encode(v, blobs)] for k, v in value.items()]}
    if isinstance(value, Kept):
        if value.id is None:
            raise WireError(f"{value.what} was not kept in the child and cannot be passed back")
        return {"t": "handle", "v": value.id}
    raise WireError(f"cannot send a {type(value).__name__}")


def _array(value, blobs: list) -> dict:
    arr = np.asarray(value)
    if not arr.flags.c_contiguous:  # (ascontiguousarray would make a 0-d array 1-d)
        arr = arr.copy(order="C")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    blobs.append(arr.tobytes())
    return {"t": "scalar" if isinstance(value, np.generic) else "array", "dtype": arr.dtype.str,
            "shape": list(arr.shape), "b": len(blobs) - 1}


def decode_trusted(tree, blobs, store: dict):
    """Decode what the checker sent (in the child: handles resolve to the kept objects)."""
    if not isinstance(tree, dict):
        return tree
    t, v = tree["t"], tree.get("v")
    if t == "int":
        return int(v)
    if t == "float":
        return float.fromhex(v)
    if t in ("array", "scalar"):
        arr = np.frombuffer(blobs[tree["b"]], dtype=np.dtype(tree["dtype"])).reshape(tree["shape"]).copy()
        return arr[()] if t == "scalar" else arr
    if t == "tuple":
        return tuple(decode_trusted(x, blobs, store) for x in v)
    if t == "list":
        return [decode_trusted(x, blobs, store) for x in v]
    if t == "dict":
        return {k: decode_trusted(x, blobs, store) for k, x in v}
    if t == "handle":
        return store[v]
    raise WireError(f"unknown value type {t!r}")


def decode_untrusted(tree, blobs, generation: int, *, depth: int = 0, budget=None):
    """Decode what the child sent: only the agreed forms, every size checked.

    Returns arrays (writable copies), numpy scalars, Python ints and floats, bools,
    None, tuples, lists and :class:`Kept`. Strings are never decoded (the child sends
    a user's str as opaque). ``budget`` (a one-item list of bytes left) bounds the
    total array bytes.

    Raises
    ------
    WireError
        Anything else: unknown types, bad dtypes or shapes, sizes that disagree, nesting too deep.
    """
    if tree is None or isinstance(tree, bool):
        return tree
    if not isinstance(tree, dict) or not isinstance(tree.get("t"), str):
        raise WireError("value is not a tagged object")
    t, v = tree["t"], tree.get("v")
    if t == "int":
        if type(v) is not int or not -(1 << 63) <= v < (1 << 63):
            raise WireError("int out of range")
        return v
    if t == "float":
        if not isinstance(v, str) or len(v) > 40:
            raise WireError("bad float")
        try:
            return float.fromhex(v)
        except (ValueError, OverflowError):
            raise WireError("bad float") from None
    if t in ("array", "scalar"):
        return _untrusted_array(tree, t, blobs)
    if t in ("tuple", "list"):
        if depth >= MAX_DEPTH or not isinstance(v, list) or len(v) > MAX_ITEMS:
            raise WireError("sequence too deep or too long")
        items = [decode_untrusted(x, blobs, generation, depth=depth + 1) for x in v]
        return tuple(items) if t == "tuple" else items
    if t == "opaque":
        what, handle = tree.get("what"), tree.get("id")
        if not isinstance(what, str) or not (handle is None or type(handle) is int):
            raise WireError("bad opaque value")
        return Kept(what[:80], handle, generation)
    raise WireError(f"unknown value type {t[:20]!r}")


def _untrusted_array(tree: dict, t: str, blobs):
    dtype, shape, b = tree.get("dtype"), tree.get("shape"), tree.get("b")
    if not isinstance(dtype, str) or not _DTYPE.match(dtype):
        raise WireError(f"dtype {str(dtype)[:20]!r} is not a plain numeric dtype")
    if not isinstance(shape, list) or len(shape) > 32 or not all(type(s) is int and s >= 0 for s in shape):
        raise WireError("bad shape")
    if type(b) is not int or not 0 <= b < len(blobs):
        raise WireError("bad blob index")
    dt = np.dtype(dtype)
    count = 1
    for s in shape:
        count *= s
    if count * dt.itemsize != len(blobs[b]) or (t == "scalar" and shape):
        raise WireError("array bytes do not match its dtype and shape")
    arr = np.frombuffer(blobs[b], dtype=dt).reshape(shape).copy()
    return arr[()] if t == "scalar" else arr
