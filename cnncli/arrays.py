"""Array references, case files and the dtype policy: how cnncli reads arrays.

Knows nothing of terminals: functions return arrays and raise
:class:`~cnncli.errors.InputError` with one-line messages that name the
reference and what would be valid. The file-format details live in
:mod:`cnncli.readers`; writing results lives in :mod:`cnncli.results`
(re-exported here as :func:`write_results`).

Array references (SPEC "Array references")::

    x.npy              the array in that file
    x.npz:NAME         array NAME; x.npz alone when it holds one array
    x.h5:PATH          dataset PATH (also .hdf5); x.h5 alone when it holds one dataset
    -                  .npy bytes on standard input

Nothing is ever unpickled, and object, string, structured and complex
dtypes are refused.
"""

from __future__ import annotations

import difflib
import os
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import InputError
from .readers import (ArrayRef, _expect, _h5py, _load_npy_bytes_from, _load_npz, _source,  # noqa: F401
                      check_dtype, h5_dataset, h5_datasets, load_npy, materialize, open_h5, parse_ref, read_h5)
from .results import ResultWriter, write_results  # noqa: F401  (re-exported)

#: Hyperparameter names a case file may carry (HDF5 root attributes / npz entries).
CASE_KEYS = ("layer", "stride", "pad", "f", "mode", "dilation", "groups", "layout",
             "ceil_mode", "count_include_pad")
#: Datasets a case file may carry.
CASE_ARRAYS = ("A_prev", "W", "b", "dZ", "dA")
#: Case attributes that describe the file, not the layer: ignored without a note.
DESCRIPTIVE_ATTRS = ("note", "notes", "description", "comment", "source", "license", "author", "title", "name",
                     "created", "version", "command")
#: Names other tools give hyperparameters, for the "did you mean" of an unused case attribute.
_ALIASES = {"padding": "pad", "strides": "stride", "kernel": "f", "kernel_size": "f", "filter_size": "f",
            "pool_size": "f", "dilation_rate": "dilation", "pool_mode": "mode", "data_format": "layout"}

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
        if exc_type is InputError and self.role.startswith("-") and not str(exc).startswith(self.role):
            raise InputError(f"{self.role} {exc}") from None
        return False


def _load_array(ref: str) -> np.ndarray:
    parsed = materialize(parse_ref(ref))  # stdin and pipes: read once, here
    if parsed.kind == "npy":
        return load_npy(parsed)
    if parsed.kind == "npz":
        return _load_npz(parsed)
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
            self._data = _load_npz(parsed)
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
            raise InputError(f"{self.ref!r} could not be read ({exc})") from None

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


# --------------------------------------------------------------------- case files


@dataclass
class Case:
    """A layer call stored in one file.

    Attributes
    ----------
    arrays : dict of str to ndarray
        ``A_prev`` and, when present, ``W``, ``b``, ``dZ``, ``dA``.
    attrs : dict of str to object
        Hyperparameters as Python scalars, tuples or str.
    path : str
        Where it came from.
    """

    arrays: Dict[str, np.ndarray] = field(default_factory=dict)
    attrs: Dict[str, object] = field(default_factory=dict)
    path: str = ""


def to_python(value):
    """HDF5 attribute / 0-d npz entry -> Python scalar, tuple or str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return to_python(value[()])
        return tuple(to_python(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return to_python(value.item())
    if isinstance(value, (list, tuple)):
        return tuple(to_python(v) for v in value)
    return value


def unused_attribute_notes(attrs: dict) -> List[str]:
    """Notes on the attributes of a case file that cnncli does not read.

    A typo such as ``strid`` would otherwise leave the default in force without a word, so an
    unknown name gets the closest known one; descriptive metadata (:data:`DESCRIPTIVE_ATTRS`) passes quietly.

    Parameters
    ----------
    attrs : dict of str to object
        The case's attributes (HDF5 root attributes, 0-d ``.npz`` entries).

    Returns
    -------
    list of str
        A note per name with a likely meaning, one for all the others; empty when all are known.

    Examples
    --------
    >>> unused_attribute_notes({"strid": 2, "pad": 1, "note": "from the exercise"})
    ["case attribute 'strid' is not used (did you mean 'stride'?)"]
    """
    notes, unrelated = [], []
    for key in attrs:
        if key in CASE_KEYS or key.lower() in DESCRIPTIVE_ATTRS:
            continue
        close = difflib.get_close_matches(key.lower(), CASE_KEYS, n=1, cutoff=0.75)
        guess = _ALIASES.get(key.lower()) or (close[0] if close else None)
        if guess:
            notes.append(f"case attribute {key!r} is not used (did you mean {guess!r}?)")
        else:
            unrelated.append(key)
    if unrelated:
        names = ", ".join(repr(k) for k in sorted(unrelated))
        what = f"attribute {names} is" if len(unrelated) == 1 else f"attributes {names} are"
        notes.append(f"case {what} not used; cnncli reads: {', '.join(CASE_KEYS)}")
    return notes


def is_case(ref: str) -> bool:
    """Whether ``ref`` is a case file: a bare ``.h5``/``.hdf5``/``.npz`` holding ``A_prev``.

    Never raises: an unreadable file is simply not a case (loading it reports the error).
    """
    try:
        parsed = parse_ref(ref)
    except InputError:
        return False
    if parsed.kind not in ("h5", "npz") or parsed.name is not None or not os.path.isfile(parsed.path):
        return False
    try:
        if parsed.kind == "npz":
            with zipfile.ZipFile(parsed.path) as z:
                return "A_prev.npy" in z.namelist()
        with _h5py().File(parsed.path, "r") as f:
            return "A_prev" in f and isinstance(f["A_prev"], _h5py().Dataset)
    except Exception:
        return False


def case_refs(path: str) -> Tuple[Dict[str, object], Dict[str, str]]:
    """A case file's hyperparameters and an array reference per array, reading no HDF5 data.

    Returns
    -------
    attrs : dict of str to object
        As :attr:`Case.attrs`.
    refs : dict of str to str
        E.g. ``{"A_prev": "case.h5:/A_prev", "W": "case.h5:/W"}``, loadable with
        :func:`load_array` or :func:`open_array`.

    Raises
    ------
    InputError
        As :func:`load_case`.
    """
    parsed = parse_ref(path)
    if parsed.kind != "h5":
        case = load_case(path)
        return case.attrs, {name: f"{parsed.path}:{name}" for name in case.arrays}
    h5py = _h5py()
    with open_h5(parsed) as f:
        attrs = {k: to_python(v) for k, v in f.attrs.items()}
        refs = {name: f"{parsed.path}:/{name}" for name in f if isinstance(f[name], h5py.Dataset)}
    if "A_prev" not in refs:
        raise InputError(f"{path!r} is not a case file: no A_prev in it (it has: {', '.join(refs) or 'no datasets'})")
    return attrs, refs


def load_case(path: str) -> Case:
    """Read a case file.

    Parameters
    ----------
    path : str
        A ``.h5``/``.hdf5`` file (root datasets, root attributes) or an ``.npz``
        (arrays; hyperparameters as 0-d entries, pairs/4-tuples as small 1-d entries).

    Returns
    -------
    Case

    Raises
    ------
    InputError
        Unreadable file, or no ``A_prev`` in it.
    """
    parsed = parse_ref(path)
    case = Case(path=parsed.path)
    if parsed.kind == "h5":
        with open_h5(parsed) as f:
            case.attrs = {k: to_python(v) for k, v in f.attrs.items()}
            for name in f:
                if isinstance(f[name], _h5py().Dataset):
                    case.arrays[name] = read_h5(h5_dataset(f, ArrayRef(path, parsed.path, "h5", name)),
                                                f"{parsed.path}:{name}")
    elif parsed.kind == "npz":
        parsed = materialize(parsed)
        _expect(parsed, "npz")
        try:
            with np.load(_source(parsed), allow_pickle=False) as archive:
                for name in archive.files:
                    arr = _load_npy_bytes_from(archive, name, parsed, check=False)
                    if name not in CASE_ARRAYS and (arr.ndim == 0 or name in CASE_KEYS):
                        case.attrs[name] = to_python(arr)  # words like layer='conv' are 0-d str arrays
                    else:
                        check_dtype(arr.dtype, repr(f"{parsed.path}:{name}"))
                        case.arrays[name] = arr
        except InputError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{parsed.path!r} is not a readable .npz archive (truncated or corrupt: {exc})") from None
    else:
        raise InputError(f"{path!r}: a case file is an .h5/.hdf5 or .npz file holding A_prev")
    if "A_prev" not in case.arrays:
        raise InputError(f"{path!r} is not a case file: no A_prev in it (it has: "
                         f"{', '.join(case.arrays) or 'no arrays'})")
    return case


# --------------------------------------------------------------------- dtype policy

DTYPES = ("float64", "float32")


def compute_dtype_for(dtype: Optional[str]) -> np.dtype:
    """The compute dtype: float32 only when asked; float64 otherwise.

    Raises
    ------
    InputError
        ``dtype`` is neither "float64" nor "float32".
    """
    if dtype is None:
        return np.dtype(np.float64)
    if str(dtype).lower() not in DTYPES:
        raise InputError(f"--dtype must be 'float64' or 'float32', got {dtype!r}")
    return np.dtype(str(dtype).lower())


def dtype_note(stored: Dict[str, np.dtype], target: np.dtype, asked: Optional[str]) -> Optional[str]:
    """One line saying which arrays were converted to ``target``, or None."""
    changed = {name: np.dtype(dt) for name, dt in stored.items() if np.dtype(dt) != target}
    if not changed:
        return None
    what = ", ".join(f"{name} is {dt}" for name, dt in changed.items())
    hint = "" if asked is not None or target != np.float64 else " (--dtype float32 to compute in float32)"
    return f"{what}: computed in {target}{hint}"


def apply_dtype_policy(arr, dtype: Optional[str], *, name: str = "array") -> Tuple[np.ndarray, Optional[str]]:
    """Convert an array to the compute dtype of SPEC's policy.

    Integer, bool, float16 and float32 data is computed in float64 unless
    ``dtype="float32"`` is asked for.

    Parameters
    ----------
    arr : ndarray, any shape
    dtype : {"float64", "float32"} or None
        None means float64.
    name : str
        Used in the note.

    Returns
    -------
    array : ndarray, same shape, float64 or float32
    note : str or None
        Set when the dtype changed, e.g. ``"A_prev is uint8: computed in float64 (...)"``.

    Raises
    ------
    InputError
        A refused dtype (object, string, structured, complex) or an unknown ``dtype``.

    Examples
    --------
    >>> a, note = apply_dtype_policy(np.arange(3, dtype=np.uint8), None, name="A_prev")
    >>> a.dtype, note
    (dtype('float64'), 'A_prev is uint8: computed in float64 (--dtype float32 to compute in float32)')
    """
    arr = np.asarray(arr)
    check_dtype(arr.dtype, name)
    target = compute_dtype_for(dtype)
    return arr.astype(target, copy=False), dtype_note({name: arr.dtype}, target, dtype)
