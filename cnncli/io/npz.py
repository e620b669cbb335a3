""".npz archives read member by member: headers first, data only within the memory budget, never unpickled.

A 1 MB archive can inflate to gigabytes (zeros compress about a thousandfold), so a
member's data is read only after its ``.npy`` header has declared a size that fits
:func:`~cnncli.io.budget.memory_budget`, and exactly that many bytes are inflated.
A member can also be streamed by rows (:meth:`NpzArchive.stream`): a pass over a
large compressed input then holds one chunk at a time, and ``shape --like`` reads
only the header. One example's rectangles are read without inflating the member from
its start each time (:class:`MemberBytes`: the inflater's state is kept along the way).
"""

from __future__ import annotations

import bisect
import math
import struct
import zipfile
import zlib
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import InputError
from .budget import check_budget
from .npy import NpyHeader, example_cut_short, read_npy_data, read_npy_header
from .readers import (NPY_MAGIC, ArrayRef, check_dtype, damaged, describe, expect_format, materialize, pick_name,
                      source_of)

#: What reading a zip member raises on bad data (InputError, a ValueError too, is re-raised before these).
_MEMBER_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, KeyError,
                  zlib.error)
#: Inflated bytes between the inflater states :class:`MemberBytes` keeps (at least: a member of more than
#: ``MAX_MARKS`` times this keeps ``MAX_MARKS`` states, about 40 KiB each, further apart).
MARK_BYTES = 8 * 2**20
#: States kept per member at most.
MAX_MARKS = 512
#: Compressed bytes read from the file at a time.
FEED_BYTES = 2**16


def _member_error(text: str, exc: Exception) -> InputError:
    # Bad CRC, zlib errors, encrypted members (RuntimeError), unsupported compression (NotImplementedError).
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return damaged(text, reason)


class NpzArchive:
    """An open ``.npz`` archive.

    Parameters
    ----------
    ref : ArrayRef
        Of kind "npz"; materialized here when it comes from a pipe.

    Attributes
    ----------
    names : list of str
        Member names as numpy gives them (``A_prev`` for ``A_prev.npy``).

    Raises
    ------
    InputError
        Not a zip archive, truncated or corrupt.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npz"); np.savez_compressed(path, A=np.arange(6).reshape(2, 3))
    >>> with NpzArchive(ArrayRef(path, path, "npz")) as archive:
    ...     archive.names, archive.header("A").shape, archive.read("A").sum()
    (['A'], (2, 3), np.int64(15))
    """

    def __init__(self, ref: ArrayRef):
        self.ref = materialize(ref)
        expect_format(self.ref, "npz")
        try:
            self._zip = zipfile.ZipFile(source_of(self.ref))
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise damaged(self.ref.text, str(exc)) from exc
        self._members: Dict[str, zipfile.ZipInfo] = {}
        self._twins: Dict[str, List[str]] = {}  # names more than one member answers to: their file names
        for info in infos:
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in self._members:
                self._twins.setdefault(name, [self._members[name].filename]).append(info.filename)
            self._members.setdefault(name, info)
        self.names: List[str] = list(self._members)

    def text(self, name: str) -> str:
        """The reference of member ``name`` for messages: ``'x.npz:NAME'``."""
        return f"{self.ref.path}:{name}"

    def _open(self, name: str):
        """Member ``name`` opened for reading, positioned after its .npy header, and that header."""
        text = self.text(name)
        if name in self._twins:
            # NOTE: numpy's load reads the last of them, zipfile's listing starts with the first: refuse to guess
            twins = self._twins[name]
            raise InputError.worded(f"{text!r} names {len(twins)} members ({', '.join(twins)}); keep one",
                                    f"{text!r} names {len(twins)} members of the zip; keep one")
        try:
            fp = self._zip.open(self._members[name])
        except _MEMBER_ERRORS as exc:
            raise _member_error(text, exc) from exc
        try:
            head = fp.read(6)
            if head != NPY_MAGIC:
                raise InputError(f"{text!r} is not .npy data ({describe(head + fp.read(58), None)})")
            fp.seek(0)
            return fp, read_npy_header(fp, text)
        except InputError:
            fp.close()
            raise
        except _MEMBER_ERRORS as exc:
            fp.close()
            raise _member_error(text, exc) from exc

    def header(self, name: str) -> NpyHeader:
        """The ``.npy`` header of member ``name``, reading none of its data.

        Raises
        ------
        PickledDataError
            An object dtype.
        InputError
            A member that is not .npy data, corrupt or encrypted.
        """
        fp, header = self._open(name)
        fp.close()
        return header

    def read(self, name: str, *, check: bool = True) -> np.ndarray:
        """Member ``name`` read whole, once its declared size has been checked against the memory budget.

        Parameters
        ----------
        name : str
            One of :attr:`names`.
        check : bool
            Refuse dtypes cnncli cannot compute with (case files read words such as ``layer='conv'``).

        Returns
        -------
        ndarray, any shape

        Raises
        ------
        PickledDataError
            An object dtype.
        InputError
            Over the budget, corrupt, cut short, not .npy data, or a refused dtype when ``check``.
        """
        fp, header = self._open(name)
        with fp:
            if check:
                check_dtype(header.dtype, repr(self.text(name)))
            try:
                return read_npy_data(fp, header, self.text(name))
            except InputError:
                raise
            except _MEMBER_ERRORS as exc:
                raise _member_error(self.text(name), exc) from exc

    def stream(self, name: str) -> "NpzMemberStream":
        """Member ``name`` opened for reading rows (axis 0) one slice at a time; see :class:`NpzMemberStream`.

        Raises
        ------
        PickledDataError, InputError
            As :meth:`read` (with ``check``), from the header alone.
        """
        return NpzMemberStream(self, name)

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NpzMemberStream:
    """One member of an open archive read by rows: ``shape``, ``dtype``, ``read(lo, hi)``.

    Only the rows asked for are inflated and held; reading forward is sequential (the usual
    case); a backward read re-inflates from the start. A Fortran-ordered or 0-d member is read
    whole on first use (within the budget).
    """

    def __init__(self, archive: NpzArchive, name: str):
        self.archive, self.name, self.text = archive, name, archive.text(name)
        self._fp, self.header = archive._open(name)
        check_dtype(self.header.dtype, repr(self.text))
        self.shape, self.dtype = self.header.shape, self.header.dtype
        self._whole: Optional[np.ndarray] = None
        self._bytes: Optional[MemberBytes] = None  # its rectangles' bytes, opened at the first read_rows

    def read(self, lo: int = 0, hi: Optional[int] = None) -> np.ndarray:
        """Rows ``lo:hi`` (every row when ``hi`` is None) as an in-memory ndarray.

        Raises
        ------
        InputError
            The member is corrupt or cut short, or the rows exceed the memory budget.
        """
        if not self.shape or self.header.fortran_order:
            if self._whole is None:
                self._whole = self.archive.read(self.name)
            return np.array(self._whole[slice(lo, hi)] if self.shape else self._whole)
        lo, hi, _ = slice(lo, hi).indices(self.shape[0])
        hi = max(lo, hi)
        row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        part = NpyHeader((hi - lo,) + tuple(self.shape[1:]), self.dtype, False, 0)
        try:
            self._fp.seek(self.header.offset + lo * row_bytes)  # zip members seek by inflating (or rewinding)
            return read_npy_data(self._fp, part, self.text, first=lo)
        except InputError:
            raise
        except _MEMBER_ERRORS as exc:
            raise _member_error(self.text, exc) from exc

    def read_rows(self, example: int, lo: int, hi: int, axis: int = 1,
                  cols: Optional[Tuple[int, int]] = None) -> Optional[np.ndarray]:
        """Rows ``lo:hi`` along ``axis`` (1 or 2) of one example, shape kept (a leading axis of 1), only
        ``cols[0]:cols[1]`` along ``axis + 1`` when given, from the member's bytes (:class:`MemberBytes`): a span
        per index of the axes before ``axis``; None for a Fortran-ordered or 0-d member (read whole instead).

        Raises
        ------
        InputError
            The member is damaged, or the rows exceed the memory budget.
        """
        shape = self.shape
        if len(shape) < axis + 1 or self.header.fortran_order:
            return None
        if self._bytes is None:
            self._bytes = MemberBytes(self.archive, self.archive._members[self.name], self.text)
        item = self.dtype.itemsize
        lead = math.prod(shape[1:axis])  # the axes between the example and the rows: rows of each index of them
        n_cols = shape[axis + 1] if len(shape) > axis + 1 else 1
        inner = math.prod(shape[axis + 2:])  # values per column
        c0, c1 = (0, n_cols) if cols is None or len(shape) < axis + 2 else cols
        lo, hi = max(0, lo), min(shape[axis], hi)
        n_rows, width = max(0, hi - lo), max(0, c1 - c0)
        out_shape = (1,) + tuple(shape[1:axis]) + (n_rows,) + ((width,) + tuple(shape[axis + 2:])
                                                               if len(shape) > axis + 1 else ())
        check_budget(math.prod(out_shape) * item, self.text)
        base = self.header.offset + example * math.prod(shape[1:]) * item
        spans: list = []  # each row's columns c0:c1, adjacent ones merged (whole rows: one span)
        for k in range(lead if n_rows and width else 0):
            for i in range(lo, hi):
                a = base + ((k * shape[axis] + i) * n_cols + c0) * inner * item
                b = a + width * inner * item
                if spans and spans[-1][1] == a:
                    spans[-1] = (spans[-1][0], b)
                else:
                    spans.append((a, b))
        if spans and spans[-1][1] > self._bytes.size:  # the member ends before the rectangle: told as read whole
            each, have = math.prod(shape[1:]) * item, max(0, self._bytes.size - self.header.offset)
            raise example_cut_short(self.text, have // each, have % each, each)
        data = bytearray().join(self._bytes.read_ranges(spans))  # a bytearray: the array over it is writable
        return np.frombuffer(data, dtype=self.dtype).reshape(out_shape)

    def close(self) -> None:
        """Close the member (not the archive)."""
        self._fp.close()
        if self._bytes is not None:
            self._bytes.close()


class MemberBytes:
    """Random access to the bytes of one zip member: ``read(lo, hi)`` gives its inflated bytes ``[lo, hi)``.

    A stored member is read where it lies. A deflated one is inflated from where the last read ended, when that is
    at or before ``lo`` (reads in order go on from there), else from the nearest state at or before ``lo`` that an
    earlier read kept (zlib's inflater copied every ``MARK_BYTES`` of output, with the input position it had
    reached), so a read behind the last one inflates at most ``MARK_BYTES`` more than it asks, not the member from
    its start; and never beyond ``hi`` (what is asked bounds what is inflated). The CRC is checked as the bytes
    from the start are first inflated in order (a pass over the member), when that reaches the end.

    Parameters
    ----------
    archive : NpzArchive
    info : zipfile.ZipInfo
    text : str
        The member's reference, for messages.

    Raises
    ------
    InputError
        An encrypted member, a compression other than deflate, a damaged local header.
    """

    def __init__(self, archive: "NpzArchive", info: zipfile.ZipInfo, text: str):
        self.text, self.info, self.size = text, info, info.file_size
        if info.flag_bits & 0x1:
            raise damaged(text, "encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise damaged(text, f"compression method {info.compress_type} is not deflate")
        src = source_of(archive.ref)
        self._fp = open(src, "rb") if isinstance(src, str) else src
        try:
            self._fp.seek(info.header_offset)
            head = self._fp.read(30)
            if len(head) != 30 or head[:4] != b"PK\x03\x04":
                raise damaged(text, "bad local file header")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
        except OSError as exc:
            raise damaged(text, str(exc)) from exc
        self._start = info.header_offset + 30 + name_len + extra_len
        self._every = max(MARK_BYTES, -(-self.size // MAX_MARKS))
        self._marks: List[Tuple[int, int, object]] = [(0, 0, zlib.decompressobj(-15))]  # (out, in, inflater)
        self._crc, self._crc_at = 0, 0
        self._cursor: Optional[Tuple[int, int, object]] = None  # (out, in, inflater) where the last read ended

    def read(self, lo: int, hi: int) -> bytearray:
        """Inflated bytes ``[lo, hi)`` (``0 <= lo <= hi <= size``).

        Raises
        ------
        InputError
            The member is damaged: cut short, not deflate data, or a bad CRC.
        """
        return self.read_ranges([(lo, hi)])[0]

    def read_ranges(self, ranges: list) -> list:
        """Inflated bytes of each of ``ranges`` (``(lo, hi)``, in order, not overlapping), in one pass from the
        state kept nearest before the first: what lies between them is inflated, not kept.

        Raises
        ------
        InputError
            As :meth:`read`.
        """
        outs = [bytearray(max(0, hi - lo)) for lo, hi in ranges]
        ranges = [(lo, hi, out) for (lo, hi), out in zip(ranges, outs) if hi > lo]
        try:
            if not ranges:
                pass
            elif self.info.compress_type == zipfile.ZIP_STORED:
                for lo, hi, out in ranges:
                    if self._crc_at < lo <= self._crc_at + self._every:  # the gap from the checked bytes, for the CRC
                        self._fp.seek(self._start + self._crc_at)
                        self._check(self._crc_at, self._fp.read(lo - self._crc_at))
                    self._fp.seek(self._start + lo)
                    got = self._fp.read(hi - lo)
                    out[:len(got)] = got
                    if len(got) < hi - lo:
                        raise damaged(self.text, f"cut short: {lo + len(got)} of {self.size} bytes")
                    self._check(lo, got)
            else:
                self._inflate(ranges)
        except zlib.error as exc:
            raise damaged(self.text, str(exc)) from exc
        return outs

    def _inflate(self, ranges: list) -> None:
        lo, end = ranges[0][0], ranges[-1][1]
        k = bisect.bisect_right([m[0] for m in self._marks], lo) - 1
        at, fed, state = self._marks[k]
        if self._cursor is not None and at <= self._cursor[0] <= lo:  # where the last read ended: reads in order
            (at, fed, d), self._cursor = self._cursor, None
        else:
            d = state.copy()
        pending, r = b"", 0
        while at < end:
            if not pending and fed < self.info.compress_size:
                self._fp.seek(self._start + fed)
                pending = self._fp.read(min(FEED_BYTES, self.info.compress_size - fed))
                if not pending:
                    raise damaged(self.text, f"cut short: {at} of {self.size} bytes")
                fed += len(pending)
            # NOTE: output stops at the next mark (its state is kept there) and at the end: nothing past it is
            # inflated. With all the input fed, pending is empty and the inflater may still owe output (a match
            # it had decoded but not all copied when the output limit was reached): decompress(b"") gives it
            chunk = d.decompress(pending, min(end, (at // self._every + 1) * self._every) - at)
            pending = d.unconsumed_tail
            if chunk:
                top = at + len(chunk)
                while r < len(ranges) and ranges[r][0] < top:  # the ranges this chunk reaches
                    a_lo, a_hi, out = ranges[r]
                    a, b = max(at, a_lo), min(top, a_hi)
                    if b > a:
                        out[a - a_lo:b - a_lo] = chunk[a - at:b - at]
                    if a_hi > top:
                        break
                    r += 1
                self._check(at, chunk)
                at = top
                if at % self._every == 0 and at > self._marks[-1][0]:
                    self._marks.append((at, fed - len(pending), d.copy()))
            elif d.eof or not pending and fed >= self.info.compress_size:  # no input left, and none owed
                raise damaged(self.text, f"cut short: {at} of {self.size} bytes")
        self._cursor = (at, fed - len(pending), d)

    def _check(self, at: int, chunk: bytes) -> None:
        """The CRC of the bytes inflated in order from the start (``chunk`` starts at ``at``), compared at the end."""
        if not at <= self._crc_at < at + len(chunk):
            return
        self._crc = zlib.crc32(memoryview(chunk)[self._crc_at - at:], self._crc)
        self._crc_at = at + len(chunk)
        if self._crc_at == self.size and self._crc != self.info.CRC:
            raise damaged(self.text, "bad CRC-32")

    def close(self) -> None:
        self._fp.close()


def load_npz(ref: ArrayRef) -> np.ndarray:
    """The array an ``.npz`` reference names (``x.npz:NAME``, or ``x.npz`` holding one array).

    Parameters
    ----------
    ref : ArrayRef
        Of kind "npz"; materialized here when it comes from a pipe.

    Returns
    -------
    ndarray, any shape
        In its stored dtype (bool, integer or float).

    Raises
    ------
    PickledDataError
        The member holds pickled objects.
    InputError
        Not a zip, truncated or corrupt, unknown or ambiguous name (the message lists the names),
        a member that is not .npy data, over the memory budget, or a refused dtype.
    """
    with NpzArchive(ref) as archive:
        return archive.read(pick_name(archive.ref, archive.names, "array"))
