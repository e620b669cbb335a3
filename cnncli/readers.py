"""Low-level readers behind :mod:`cnncli.arrays`: reference parsing, ``.npy``/``.npz``/HDF5 access.

Every failure becomes an :class:`~cnncli.errors.InputError` whose one-line message
names the reference and what would be valid. Nothing is ever unpickled.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import InputError

_REF = re.compile(r"^(?P<path>.*?\.(?:npz|h5|hdf5))(?::(?P<name>.*))?$", re.IGNORECASE)
_H5_EXT = (".h5", ".hdf5")
_ACCEPTED_KINDS = "biuf"  # bool, signed and unsigned ints, floats
_MAGIC = {b"\x93NUMPY": "npy", b"PK\x03\x04": "npz", b"\x89HDF\r\n\x1a\n": "h5"}


@dataclass(frozen=True)
class ArrayRef:
    """A parsed array reference: ``kind`` is "npy", "npz", "h5" or "stdin"."""

    text: str
    path: str
    kind: str
    name: Optional[str] = None


def parse_ref(ref: str) -> ArrayRef:
    """Split an array reference into file, kind and inner name.

    Raises
    ------
    InputError
        Empty reference, or a ``:NAME`` on a ``.npy`` file.

    Examples
    --------
    >>> parse_ref("x.h5:/train/A_prev")
    ArrayRef(text='x.h5:/train/A_prev', path='x.h5', kind='h5', name='/train/A_prev')
    """
    ref = str(ref)
    if ref == "-":
        return ArrayRef(ref, "-", "stdin")
    if not ref:
        raise InputError("empty array reference; expected x.npy, x.npz[:NAME], x.h5[:PATH] or -")
    m = _REF.match(ref)
    if m:
        path, name = m.group("path"), m.group("name")
        kind = "h5" if path.lower().endswith(_H5_EXT) else "npz"
        return ArrayRef(ref, path, kind, name or None)
    if ref.lower().endswith(".npy"):
        return ArrayRef(ref, ref, "npy")
    if ":" in ref and ref.split(":", 1)[0].lower().endswith(".npy"):
        raise InputError(f"{ref!r}: a .npy file holds one array; drop the ':{ref.split(':', 1)[1]}'")
    return ArrayRef(ref, ref, _sniff(ref))


def _sniff(path: str) -> str:
    """Kind of a file without a known extension, from its first bytes."""
    head = _open(path, ArrayRef(path, path, "?")).read(8)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    raise InputError(f"{path!r} is not a .npy, .npz or HDF5 file (use one of those extensions, or - for stdin)")


def _open(path: str, ref: ArrayRef):
    """Open a file for reading, turning OS errors into one-line InputErrors."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{ref.text!r}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{ref.text!r} is a folder, not an array file") from None
    except OSError as exc:
        raise InputError(f"{ref.text!r}: cannot read ({exc.strerror or exc})") from None


def check_dtype(dtype: np.dtype, what: str) -> None:
    """Refuse dtypes cnncli cannot compute with (object, string, structured, complex, dates).

    Raises
    ------
    InputError
        ``dtype`` is not bool, integer or floating point.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in _ACCEPTED_KINDS or dtype.fields is not None:
        raise InputError(
            f"{what} has dtype {dtype} which cnncli refuses; expected bool, integer or float data"
        )


# --------------------------------------------------------------------- npy / npz


def _npy_error(ref: ArrayRef, exc: Exception) -> InputError:
    text = str(exc)
    if "allow_pickle" in text or "pickle" in text.lower():
        return InputError(f"{ref.text!r} holds pickled Python objects; cnncli never unpickles "
                          "(save a numeric array with numpy.save)")
    return InputError(f"{ref.text!r} is not a readable .npy array (truncated or corrupt: {text.splitlines()[0] if text else type(exc).__name__})")


def _load_npy_bytes(fp, ref: ArrayRef, mmap: bool = False) -> np.ndarray:
    try:
        if mmap:
            arr = np.load(fp, mmap_mode="r", allow_pickle=False)
        else:
            arr = np.load(fp, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _npy_error(ref, exc) from None
    except Exception as exc:  # unpickling errors and the like: still the file's fault
        raise _npy_error(ref, exc) from None
    if not isinstance(arr, np.ndarray):  # an .npz read where .npy was expected
        raise InputError(f"{ref.text!r} is an .npz archive, expected .npy bytes")
    check_dtype(arr.dtype, repr(ref.text))
    return arr


def _read_stdin(ref: ArrayRef) -> np.ndarray:
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    if hasattr(stream, "isatty") and stream.isatty():
        raise InputError("'-' reads .npy bytes from standard input, but it is a terminal; pipe an array in "
                         "(e.g. cnncli forward ... -o - | cnncli forward - ...)")
    data = stream.read()
    if not data:
        raise InputError("standard input is empty; '-' expects .npy bytes (did the command before the pipe fail?)")
    return _load_npy_bytes(io.BytesIO(data), ref)


def _load_npz(ref: ArrayRef) -> np.ndarray:
    _open(ref.path, ref).close()
    try:
        with np.load(ref.path, allow_pickle=False) as archive:
            names = list(archive.files)
            name = _pick_name(ref, names, "array")
            return _load_npy_bytes_from(archive, name, ref)
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{ref.text!r} is not a readable .npz archive (truncated or corrupt: {exc})") from None


def _load_npy_bytes_from(archive, name: str, ref: ArrayRef, check: bool = True) -> np.ndarray:
    try:
        arr = archive[name]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _npy_error(ArrayRef(f"{ref.path}:{name}", ref.path, "npz", name), exc) from None
    if check:
        check_dtype(arr.dtype, repr(f"{ref.path}:{name}"))
    return arr


def _pick_name(ref: ArrayRef, names, what: str) -> str:
    """The requested name, or the only one; else an InputError listing what exists."""
    listing = ", ".join(names) if names else "none"
    if ref.name is None:
        if len(names) == 1:
            return names[0]
        raise InputError(f"{ref.path!r} holds {len(names)} {what}s ({listing}); "
                         f"name one, e.g. {ref.path}:{names[0] if names else 'NAME'}")
    if ref.name in names:
        return ref.name
    raise InputError(f"{ref.path!r} has no {what} {ref.name!r}; it has: {listing}")


# --------------------------------------------------------------------- HDF5


def _h5py():
    import h5py  # imported lazily: start-up time of the commands that never touch HDF5

    return h5py


def open_h5(ref: ArrayRef):
    """Open an HDF5 file read-only.

    Raises
    ------
    InputError
        Missing, unreadable or not an HDF5 file.
    """
    _open(ref.path, ref).close()
    try:
        return _h5py().File(ref.path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise InputError(f"{ref.path!r} is not a readable HDF5 file (truncated or corrupt: {reason})") from None


def h5_datasets(group) -> list:
    """Paths of every dataset under ``group``, absolute, sorted."""
    found = []
    h5py = _h5py()

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append("/" + name if not name.startswith("/") else name)

    group.visititems(visit)
    prefix = group.name.rstrip("/")
    return sorted(prefix + p if prefix and not p.startswith(prefix + "/") else p for p in found)


def h5_dataset(f, ref: ArrayRef):
    """The dataset ``ref`` names in the open file ``f`` (checked dtype, at least 0-d).

    Raises
    ------
    InputError
        Unknown path (the message lists the datasets that exist), a group, or a refused dtype.
    """
    h5py = _h5py()
    names = h5_datasets(f)
    if ref.name is None:
        path = _pick_name(ref, names, "dataset")
    else:
        path = ref.name if ref.name.startswith("/") else "/" + ref.name
        obj = f.get(path)
        if obj is None or not isinstance(obj, h5py.Dataset):
            inside = h5_datasets(obj) if isinstance(obj, h5py.Group) else names
            kind = "is a group, not a dataset" if isinstance(obj, h5py.Group) else "has no dataset"
            listing = ", ".join(inside) if inside else "none"
            if isinstance(obj, h5py.Group):
                raise InputError(f"{ref.text!r} {kind}; datasets in it: {listing}")
            raise InputError(f"{ref.path!r} {kind} {path!r}; it has: {listing}")
    ds = f[path]
    try:
        dtype = ds.dtype
    except Exception:  # h5py cannot even map the type (opaque, references...)
        raise InputError(f"'{ref.path}:{path}' has a data type cnncli cannot read") from None
    check_dtype(dtype, repr(f"{ref.path}:{path}"))
    return ds


def read_h5(ds, ref_text: str, sel=()) -> np.ndarray:
    """Read ``ds[sel]``, turning HDF5 read errors (truncated files) into InputError."""
    try:
        return np.asarray(ds[sel])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{ref_text!r} could not be read (truncated or corrupt: {str(exc).splitlines()[0]})") from None
