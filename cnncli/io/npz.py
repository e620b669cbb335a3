""".npz archives read member by member: headers first, data only within the memory budget, never unpickled.

A 1 MB archive can inflate to gigabytes (zeros compress about a thousandfold), so a
member's data is read only after its ``.npy`` header has declared a size that fits
:func:`~cnncli.io.budget.memory_budget`, and exactly that many bytes are inflated.
A member can also be streamed by rows (:meth:`NpzArchive.stream`): a pass over a
large compressed input then holds one chunk at a time, and ``shape --like`` reads
only the header.
"""

from __future__ import annotations

import math
import zipfile
from typing import Dict, List, Optional

import numpy as np

from ..errors import InputError
from .npy import NpyHeader, read_npy_data, read_npy_header
from .readers import (NPY_MAGIC, ArrayRef, check_dtype, damaged, describe, expect_format, materialize, pick_name,
                      source_of)

#: What reading a zip member raises on bad data (InputError, a ValueError too, is re-raised before these).
_MEMBER_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, KeyError)


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

    def close(self) -> None:
        """Close the member (not the archive)."""
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
