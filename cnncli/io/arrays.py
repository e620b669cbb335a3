"""Array references resolved to arrays: whole (:func:`load_array`) or streamed (:func:`open_array`).

Knows nothing of terminals: functions return arrays and raise
:class:`~cnncli.errors.InputError` with one-line messages that name the
reference and what would be valid. The file-format details live in
:mod:`cnncli.io.readers` (references, .npy), :mod:`cnncli.io.npz` and :mod:`cnncli.io.hdf5`; case files in :mod:`cnncli.io.cases`; the dtype
policy in :mod:`cnncli.io.dtypes`; writing results in :mod:`cnncli.io.writers`.

Array references (SPEC "Array references")::

    x.npy              the array in that file
    x.npz:NAME         array NAME; x.npz alone when it holds one array
    x.h5:PATH          dataset PATH (also .hdf5); x.h5 alone when it holds one dataset
    -                  .npy bytes on standard input

Nothing is ever unpickled, and object, string, structured and complex
dtypes are refused. An array is read whole only when its declared size fits the
memory budget (:func:`~cnncli.io.budget.memory_budget`); HDF5 inputs that read
other files are refused unless ``allow_external``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import InputError, SettingError
from .budget import check_budget
from .hdf5 import chunk_cache_needed, corrupt_as_damaged, h5_dataset, open_h5, read_h5, with_chunk_cache
from .npz import NpzArchive, NpzMemberStream, load_npz
from .npy import load_npy
from .readers import check_readable, materialize, parse_ref, pick_name

# --------------------------------------------------------------------- public loading


def load_array(ref: str, *, role: str = "array", allow_external: bool = False) -> np.ndarray:
    """Load the array an array reference names.

    Parameters
    ----------
    ref : str
        ``x.npy``, ``x.npz[:NAME]``, ``x.h5[:PATH]`` / ``.hdf5``, or ``-`` (stdin).
    role : str
        What the array is for; a flag such as ``"--weights"`` prefixes error messages
        (``--weights 'w.npy': no such file``).
    allow_external : bool
        Let HDF5 external links, external storage and virtual datasets read other files.

    Returns
    -------
    ndarray
        In its stored dtype (bool, integer or float); see :func:`apply_dtype_policy`.

    Raises
    ------
    PickledDataError
        Pickled data.
    ExternalDataError
        HDF5 data in another file, without ``allow_external``.
    InputError
        Missing, unreadable, truncated or corrupt file; unknown name (the message
        lists those that exist); over the memory budget; refused dtype.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.arange(3))
    >>> load_array(path)
    array([0, 1, 2])
    """
    with _blame(role):
        return _load_array(ref, allow_external)


class _blame:
    """Prefix InputErrors raised inside with the flag the array came from."""

    def __init__(self, role: str):
        self.role = role

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if (exc_type is not None and issubclass(exc_type, InputError) and not issubclass(exc_type, SettingError)
                and self.role.startswith("-") and not str(exc).startswith(self.role)):
            raise exc.with_context(f"{self.role} ")
        return False


def _load_array(ref: str, allow_external: bool) -> np.ndarray:
    parsed = materialize(parse_ref(ref))  # stdin and pipes: read once, here
    if parsed.kind == "npy":
        return load_npy(parsed)
    if parsed.kind == "npz":
        return load_npz(parsed)
    with open_h5(parsed) as f:
        with corrupt_as_damaged(parsed.path):  # the file's metadata only: errors of cnncli's own stay errors
            ds = h5_dataset(f, parsed, allow_external=allow_external)
            nbytes, where = ds.size * ds.dtype.itemsize, f"{parsed.path}:{ds.name}"
            chunk_cache_needed(ds, where)  # one read inflates each chunk once: only a bomb matters
        check_budget(nbytes, parsed.text)
        return read_h5(ds, parsed.text)


class ArrayStream:
    """A lazily read array: ``shape``, ``dtype`` and ``read(lo, hi)`` along axis 0.

    HDF5 datasets, ``.npy`` files (memory-mapped) and ``.npz`` members (inflated
    as read) are read slice by slice; only a ``.npy`` read from a pipe is loaded
    once. Opening reads headers only. Use as a context manager, or ``close()``.

    Parameters
    ----------
    ref : str
        An array reference.
    allow_external : bool
        As for :func:`load_array`.
    """

    def __init__(self, ref: str, allow_external: bool = False):
        self.ref = ref
        self._file = None  # the open h5py.File or NpzArchive
        self._data = None
        self._unread = False  # an HDF5 dataset whose chunks are checked at its first read
        parsed = materialize(parse_ref(ref))
        try:
            if parsed.kind == "h5":
                self._file = open_h5(parsed)
                with corrupt_as_damaged(parsed.path):
                    self._data = h5_dataset(self._file, parsed, allow_external=allow_external)
                    tuple(self._data.shape), self._data.dtype  # metadata a damaged file fails on
                self._unread = True  # the chunks are checked at the first read (the shape alone needs nothing)
                # the name asked for (the path through a link, not the target's), else the only dataset's
                self._where = parsed.text if parsed.name is not None else f"{parsed.path}:{self._data.name}"
            elif parsed.kind == "npy":
                self._data = load_npy(parsed, mmap=True)
            else:
                self._file = NpzArchive(parsed)
                self._data = self._file.stream(pick_name(self._file.ref, self._file.names, "array"))
        except Exception:
            self.close()
            raise
        self.shape: Tuple[int, ...] = tuple(self._data.shape)
        self.dtype = np.dtype(self._data.dtype)
        self.ndim = len(self.shape)

    @property
    def lazy(self) -> bool:
        """Whether data stays on disk until read."""
        return self._file is not None or isinstance(self._data, np.memmap)

    def read(self, lo: int = 0, hi: Optional[int] = None) -> np.ndarray:
        """Rows ``lo:hi`` (all when ``hi`` is None) as an in-memory ndarray."""
        sel = slice(lo, hi) if self.ndim else ()
        if isinstance(self._file, NpzArchive):
            return self._data.read(lo, hi)
        if self._file is not None:
            if self._unread:
                with corrupt_as_damaged(self.ref):
                    cache = chunk_cache_needed(self._data, self._where)
                self._unread = False  # checked: a refusal is told again at the next read
                if cache is not None:
                    fid, name = self._data.file.id, self._data.name
                    self._data = None  # the open handle dropped, or HDF5 would hand it back with its old cache
                    self._data = with_chunk_cache(fid, name, cache)
            return read_h5(self._data, self.ref, sel)
        try:
            return np.array(self._data[sel])
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.ref!r} could not be read ({exc})") from exc

    def read_rows(self, example: int, lo: int, hi: int, axis: int = 1,
                  cols: Optional[Tuple[int, int]] = None) -> Optional[np.ndarray]:
        """Rows ``lo:hi`` along ``axis`` (1 or 2) of one example, shape kept (a leading axis of 1), only
        ``cols[0]:cols[1]`` along ``axis + 1`` when given (an ``.npz`` member's from the states its inflater kept
        along the way: see :class:`cnncli.io.npz.MemberBytes`); None for a Fortran-ordered ``.npz`` member.

        Raises
        ------
        InputError
            As :meth:`read`.
        """
        if isinstance(self._file, NpzArchive):
            return self._data.read_rows(example, lo, hi, axis, cols)
        sel = (slice(example, example + 1),) + (slice(None),) * (axis - 1) + (slice(lo, hi),)
        if cols is not None:
            sel += (slice(*cols),)
        if self._file is not None:
            if self._unread:
                self.read(0, 0)  # the first read checks the chunks (and sets the chunk cache)
            return read_h5(self._data, self.ref, sel)
        try:
            return np.array(self._data[sel])
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.ref!r} could not be read ({exc})") from exc

    def close(self) -> None:
        """Release the file."""
        if isinstance(self._data, NpzMemberStream):
            self._data.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_array_file(ref: str, *, role: str = "array") -> None:
    """Check that the file of an array reference exists and can be read, before anything else is done.

    Raises
    ------
    InputError
        As :func:`load_array` for a missing or unreadable file (``role`` as there).
    """
    with _blame(role):
        check_readable(parse_ref(ref))


def open_array(ref: str, *, role: str = "array", allow_external: bool = False) -> ArrayStream:
    """Open ``ref`` for streaming by batch slices; see :class:`ArrayStream`.

    Raises
    ------
    InputError
        As :func:`load_array` (``role`` and ``allow_external`` as there).
    """
    with _blame(role):
        return ArrayStream(ref, allow_external)
