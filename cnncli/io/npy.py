""".npy data read without numpy's loader: the header parsed as a literal, the data read within the memory budget.

numpy's ``np.load`` refuses headers over 10000 bytes with a message that suggests
``allow_pickle=True``; here a header is parsed with :func:`ast.literal_eval` (no code
runs) up to :data:`MAX_NPY_HEADER` bytes, an object dtype is refused as pickled data
before anything else is read, and exactly the declared number of data bytes is read
(a compressed stream is inflated only that far) once it fits
:func:`~cnncli.io.budget.memory_budget`.
"""

from __future__ import annotations

import ast
import math
import os
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError
from ..units import format_bytes
from .budget import check_budget
from .readers import NPY_MAGIC, ArrayRef, check_dtype, damaged, describe, expect_format, pickled, reader

#: Longest .npy header parsed (numpy.save writes a few hundred bytes).
MAX_NPY_HEADER = 2**20


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares: ``shape``, ``dtype``, ``fortran_order``; data starts at ``offset``."""

    shape: Tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        """Size of the declared data in bytes (a Python int: no overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


def _exact(fp, n: int, text: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise damaged(text, "the header is cut short")
    return data


def read_npy_header(fp, text: str) -> NpyHeader:
    """Parse the ``.npy`` header at the start of ``fp`` (format versions 1, 2 and 3), reading nothing more.

    The header is a Python literal, parsed with :func:`ast.literal_eval` (no code runs) up to
    :data:`MAX_NPY_HEADER` bytes; numpy's own loader refuses headers over 10000 bytes and then
    suggests ``allow_pickle=True``, which a valid array with a long header does not need.

    Parameters
    ----------
    fp : binary file
        Positioned at the magic string; left just after the header.
    text : str
        The reference, for messages.

    Returns
    -------
    NpyHeader

    Raises
    ------
    PickledDataError
        The dtype holds Python objects.
    InputError
        Not .npy data, an unknown version, a header over the limit, cut short or malformed.
    """
    magic = _exact(fp, 8, text)
    if magic[:6] != NPY_MAGIC:
        raise InputError(f"{text!r} is not .npy data ({describe(magic, None)})")
    major = magic[6]
    if major not in (1, 2, 3):
        version = f"{major}.{magic[7]}"
        raise InputError.worded(f"{text!r} is .npy format version {version}, which cnncli cannot read "
                                "(versions 1 to 3 are)", f"{text!r} is .npy version {version}; cnncli reads 1 to 3")
    width = 2 if major == 1 else 4
    length = struct.unpack("<H" if width == 2 else "<I", _exact(fp, width, text))[0]
    if length > MAX_NPY_HEADER:
        raise InputError(f"{text!r} has a {length}-byte header; at most {MAX_NPY_HEADER} is read")
    raw = _exact(fp, length, text)
    try:
        try:
            header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin1"))
        except ValueError as exc:  # "malformed node or string ...: <ast.BinOp object at 0x...>": an address
            raise ValueError("the header is not a literal dict of descr, fortran_order and shape; "
                             "expressions are never evaluated") from exc
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            raise ValueError("the header is not a dict of descr, fortran_order and shape")
        shape, fortran = header["shape"], header["fortran_order"]
        if (not isinstance(shape, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                      for n in shape) or not isinstance(fortran, bool)):
            raise ValueError(f"bad shape {shape!r} or fortran_order {fortran!r}")
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except Exception as exc:  # SyntaxError, ValueError, TypeError, MemoryError, RecursionError: all the file's fault
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise damaged(text, reason) from exc
    if dtype.hasobject:
        raise pickled(text)
    return NpyHeader(shape, dtype, fortran, 6 + 2 + width + length)


def read_npy_data(fp, header: NpyHeader, text: str, first: Optional[int] = None) -> np.ndarray:
    """Read the data a header declared from ``fp`` (just after the header), within :func:`memory_budget`.

    Reads exactly ``header.nbytes``: a compressed stream is inflated only that far.

    Parameters
    ----------
    fp : binary file
        With ``readinto`` (files, BytesIO, zip members).
    header : NpyHeader
    text : str
        The reference, for messages.
    first : int, optional
        When the header is that of examples ``first:`` of a larger array (a stream's rows): data cut short
        is told as the example it ends in and that example's bytes, not this read's.

    Returns
    -------
    ndarray of ``header.shape`` and ``header.dtype``

    Raises
    ------
    InputError
        Over the memory budget (checked before allocating), or the data is cut short.
    """
    check_budget(header.nbytes, text)
    flat = np.empty(math.prod(header.shape), dtype=header.dtype)
    view, done = memoryview(flat.view(np.uint8)), 0
    while done < header.nbytes:
        n = fp.readinto(view[done:])
        if not n:
            if first is None:
                raise damaged(text, f"cut short: {done} of {header.nbytes} data bytes")
            each = header.nbytes // header.shape[0]  # bytes per example: the read holds whole examples
            raise example_cut_short(text, first + done // each, done % each, each)
        done += n
    return flat.reshape(header.shape, order="F" if header.fortran_order else "C")


def example_cut_short(text: str, at: int, have: int, each: int) -> InputError:
    """The error for data that ends in example ``at``, ``have`` of its ``each`` bytes there (returned, to be
    raised)."""
    return InputError.worded(
        f"{text!r} is damaged (cut short: example {at} has {have} of its {each} bytes)",
        f"{text!r}: example {at} cut short ({have} of {each} bytes)",
        f"{text!r}: example {at} cut short ({format_bytes(have, 'bytes')} of {format_bytes(each, 'bytes')})",
        f"{text!r}: example {at} cut short")


def _map_npy(path: str, header: NpyHeader, text: str) -> Optional[np.ndarray]:
    """The data of a regular .npy file memory-mapped read-only; None when it cannot be mapped (empty arrays)."""
    if os.path.getsize(path) < header.offset + header.nbytes:
        raise damaged(text, f"cut short: {os.path.getsize(path)} of {header.offset + header.nbytes} bytes")
    if header.nbytes == 0 or not header.shape:
        return None
    return np.memmap(path, dtype=header.dtype, mode="r", offset=header.offset, shape=header.shape,
                     order="F" if header.fortran_order else "C")


def load_npy(ref: ArrayRef, *, mmap: bool = False) -> np.ndarray:
    """The array of a materialized ``.npy`` reference (stdin included).

    Parameters
    ----------
    ref : ArrayRef
        From :func:`materialize`.
    mmap : bool
        Memory-map a regular file (read lazily); bytes read from a pipe are never mapped.

    Returns
    -------
    ndarray (a read-only numpy.memmap when mapped), any shape

    Raises
    ------
    PickledDataError
        An object dtype.
    InputError
        Not .npy data (the message says what it is), truncated, over the memory budget, or a refused dtype.
    """
    expect_format(ref, "npy")
    with reader(ref) as fp:
        header = read_npy_header(fp, ref.text)
        check_dtype(header.dtype, repr(ref.text))
        if mmap and ref.data is None:
            mapped = _map_npy(ref.path, header, ref.text)
            if mapped is not None:
                return mapped
        return read_npy_data(fp, header, ref.text)
