"""Array references resolved to arrays: whole (:func:`load_array`) or streamed (:func:`open_array`).

Knows nothing of terminals: functions return arrays and raise
:class:`~cnncli.errors.InputError` with one-line messages that name the
reference and what would be valid. The file-format details live in
:mod:`cnncli.io.readers`; case files in :mod:`cnncli.io.cases`; the dtype
policy in :mod:`cnncli.io.dtypes`; writing results in :mod:`cnncli.io.writers`.

Array references (SPEC "Array references")::

    x.npy              the array in that file
    x.npz:NAME         array NAME; x.npz alone when it holds one array
    x.h5:PATH          dataset PATH (also .hdf5); x.h5 alone when it holds one dataset
    -                  .npy bytes on standard input

Nothing is ever unpickled, and object, string, structured and complex
dtypes are refused.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import InputError
from .readers import h5_dataset, load_npy, load_npz, materialize, open_h5, parse_ref, read_h5

# --------------------------------------------------------------------- public loading


def load_array(ref: str, *, role: str = "array") -> np.ndarray:
    """Load the array an array reference names.

    Parameters
    ----------
    ref : str
        ``x.npy``, ``x.npz[:NAME]``, ``x.h5[:PATH]`` / ``.hdf5``, or ``-`` (stdin).
    role : str
        What the array is for; a flag such as ``"--weights"`` prefixes error messages
        (``--weights 'w.npy': no such file``).

    Returns
    -------
    ndarray
        In its stored dtype (bool, integer or float); see :func:`apply_dtype_policy`.

    Raises
    ------
    InputError
        Missing, unreadable, truncated or corrupt file; unknown name (the message
        lists those that exist); pickled or refused dtype.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.arange(3))
    >>> load_array(path)
    array([0, 1, 2])
    """
    with _blame(role):
        return _load_array(ref)


class _blame:
    """Prefix InputErrors raised inside with the flag the array came from."""

    def __init__(self, role: str):
        self.role = role

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if (exc_type is not None and issubclass(exc_type, InputError) and self.role.startswith("-")
                and not str(exc).startswith(self.role)):
            raise exc.with_context(f"{self.role} ")
        return False


def _load_array(ref: str) -> np.ndarray:
    parsed = materialize(parse_ref(ref))  # stdin and pipes: read once, here
    if parsed.kind == "npy":
        return load_npy(parsed)
    if parsed.kind == "npz":
        return load_npz(parsed)
    with open_h5(parsed) as f:
        ds = h5_dataset(f, parsed)
        return read_h5(ds, parsed.text)


class ArrayStream:
    """A lazily read array: ``shape``, ``dtype`` and ``read(lo, hi)`` along axis 0.

    HDF5 datasets and ``.npy`` files (memory-mapped) are read slice by slice;
    other references, and anything read from a pipe, are loaded once. Use as a
    context manager, or ``close()``.
    """

    def __init__(self, ref: str):
        self.ref = ref
        self._file = None
        parsed = materialize(parse_ref(ref))
        if parsed.kind == "h5":
            self._file = open_h5(parsed)
            try:
                self._data = h5_dataset(self._file, parsed)
            except Exception:
                self.close()
                raise
        elif parsed.kind == "npy":
            self._data = load_npy(parsed, mmap=True)
        else:
            self._data = load_npz(parsed)
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
        if self._file is not None:
            return read_h5(self._data, self.ref, sel)
        try:
            return np.array(self._data[sel])
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.ref!r} could not be read ({exc})") from exc

    def close(self) -> None:
        """Release the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_array(ref: str, *, role: str = "array") -> ArrayStream:
    """Open ``ref`` for streaming by batch slices; see :class:`ArrayStream`.

    Raises
    ------
    InputError
        As :func:`load_array` (``role`` as there).
    """
    with _blame(role):
        return ArrayStream(ref)
