"""Low-level readers behind :mod:`cnncli.io.arrays`: reference parsing, ``.npy``/``.npz``/HDF5 access.

Every failure becomes an :class:`~cnncli.errors.InputError` whose one-line message
names the reference and what would be valid. Nothing is ever unpickled.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import zipfile
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError, PickledDataError

_REF = re.compile(r"^(?P<path>.*?\.(?:npz|h5|hdf5))(?::(?P<name>.*))?$", re.IGNORECASE)
_H5_EXT = (".h5", ".hdf5")
_ACCEPTED_KINDS = "biuf"  # bool, signed and unsigned ints, floats
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip: what numpy.load takes as .npz
_H5_MAGIC = b"\x89HDF\r\n\x1a\n"
_FORMATS = {"npy": ".npy data", "npz": "an .npz archive", "h5": "an HDF5 file"}


@dataclass(frozen=True)
class ArrayRef:
    """A parsed array reference: ``kind`` is "npy", "npz", "h5", "stdin", or "pipe" (a FIFO or
    /dev/fd/N without extension, its format unknown until read).

    ``data`` holds the bytes of a source that can be read only once (stdin, pipes): see :func:`materialize`.
    """

    text: str
    path: str
    kind: str
    name: Optional[str] = None
    data: Optional[bytes] = field(default=None, repr=False, compare=False)


def parse_ref(ref: str) -> ArrayRef:
    """Split an array reference into file, kind and inner name.

    A file without a known extension is told by its first bytes; a pipe is not read here
    (it can be read only once) and gets kind "pipe".

    Raises
    ------
    InputError
        Empty reference, a ``:NAME`` on a ``.npy`` file, or a file in no known format.

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
    if ":" in ref and not os.path.exists(ref):
        # A file without a telling extension (the /dev/fd/63 of <(...)) can still name a dataset.
        path, name = ref.split(":", 1)
        if path and os.path.exists(path):
            named = ArrayRef(ref, path, "pipe", name or None)
            if not _regular(named):
                return named  # its kind is read from its bytes, once, by materialize()
            with _open(path, named) as fp:
                head, kind = _format(fp)
            if kind not in ("npz", "h5"):
                raise InputError(f"{ref!r}: only .npz and HDF5 files hold named arrays, and {path!r} is "
                                 f"{'a .npy file' if kind == 'npy' else 'neither'}")
            return ArrayRef(ref, path, kind, name or None)
    parsed = ArrayRef(ref, ref, "pipe")
    if not _regular(parsed):
        return parsed
    with _open(ref, parsed) as fp:
        head, kind = _format(fp)
    if kind is None:
        raise InputError(f"{ref!r} is not a .npy, .npz or HDF5 file ({_describe(head, None)})")
    return ArrayRef(ref, ref, kind)


def _open(path: str, ref: ArrayRef):
    """Open a file for reading, turning OS errors into one-line InputErrors."""
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise InputError(f"{ref.text!r}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{ref.text!r} is a folder, not an array file") from exc
    except OSError as exc:
        raise InputError(f"{ref.text!r}: cannot read ({exc.strerror or exc})") from exc


def _regular(ref: ArrayRef) -> bool:
    """Whether ``ref.path`` is a regular file (seekable, memory-mappable), not a FIFO, pipe or device."""
    try:
        return stat.S_ISREG(os.stat(ref.path).st_mode)
    except OSError:
        _open(ref.path, ref).close()  # raises the one-line error (no such file, not a directory...)
        return True


# --------------------------------------------------------------------- telling formats apart


def materialize(ref: ArrayRef) -> ArrayRef:
    """``ref`` ready to be parsed: a source that can be read only once is read into ``data``.

    Standard input, FIFOs and pipes such as the ``/dev/fd/63`` of ``<(...)`` cannot be read twice
    (to sniff, then load) nor memory-mapped, so their bytes are read once, here; a "pipe" gets the
    kind its first bytes show. Regular files are returned unchanged. Idempotent.

    Raises
    ------
    InputError
        Unreadable source, stdin a terminal or empty, a pipe in no known format.
    """
    if ref.data is not None:
        return ref
    if ref.kind == "stdin":
        return replace(ref, kind="npy", data=_stdin_bytes())
    if _regular(ref):
        return ref
    with _open(ref.path, ref) as fp:
        data = fp.read()
    if ref.kind != "pipe":
        return replace(ref, data=data)
    head, kind = _format(io.BytesIO(data))
    if kind is None:
        raise InputError(f"{ref.text!r} is not a .npy, .npz or HDF5 file ({_describe(head, None)})")
    if ref.name is not None and kind == "npy":
        raise InputError(f"{ref.text!r}: only .npz and HDF5 files hold named arrays, and {ref.path!r} is "
                         "a .npy file")
    return replace(ref, kind=kind, data=data)


def _stdin_bytes() -> bytes:
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    if hasattr(stream, "isatty") and stream.isatty():
        raise InputError("'-' reads .npy bytes from standard input, but it is a terminal; pipe an array in "
                         "(e.g. cnncli forward ... -o - | cnncli forward - ...)")
    data = stream.read()
    if not data:
        raise InputError("standard input is empty; '-' expects .npy bytes (did the command before the pipe fail?)")
    return data


def source_of(ref: ArrayRef):
    """What numpy or h5py should open for ``ref``.

    Parameters
    ----------
    ref : ArrayRef
        Materialized (see :func:`materialize`).

    Returns
    -------
    str or io.BytesIO
        The path of a regular file, or a BytesIO over the bytes read from a pipe or stdin.

    Raises
    ------
    Nothing; opening the path is the caller's business.
    """
    return io.BytesIO(ref.data) if ref.data is not None else ref.path


def _reader(ref: ArrayRef):
    return io.BytesIO(ref.data) if ref.data is not None else _open(ref.path, ref)


def _format(fp) -> Tuple[bytes, Optional[str]]:
    """The first bytes of an open binary file and the format they show: "npy", "npz", "h5" or None."""
    head = fp.read(64)
    for kind, magic in (("npy", (_NPY_MAGIC,)), ("npz", _ZIP_MAGIC), ("h5", (_H5_MAGIC,))):
        if head.startswith(magic):
            return head, kind
    # NOTE: an HDF5 file may start with a user block: its signature is then at byte 512, 1024, 2048...
    offset = 512
    while True:
        fp.seek(offset)
        block = fp.read(len(_H5_MAGIC))
        if len(block) < len(_H5_MAGIC):
            return head, None
        if block == _H5_MAGIC:
            return head, "h5"
        offset *= 2


def _describe(head: bytes, kind: Optional[str]) -> str:
    """What a file holds, for messages: 'it is an HDF5 file', "it starts with 'hello'"..."""
    if kind is not None:
        return f"it is {_FORMATS[kind]}"
    if not head:
        return "it is empty"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it is a Python pickle"
    line = head.split(b"\n", 1)[0][:24].decode("ascii", "replace").rstrip()
    if line and line.isprintable() and "\ufffd" not in line:
        return f"it starts with {line!r}"
    return f"it starts with the bytes {head[:8]!r}"


def expect_format(ref: ArrayRef, kind: str) -> None:
    """Check by its magic bytes that ``ref`` holds ``kind`` data.

    Checked before numpy parses anything: numpy takes whatever is neither .npy nor zip for a pickle
    and suggests ``allow_pickle=True``, an unsafe load, for a plain text file.

    Parameters
    ----------
    ref : ArrayRef
        Materialized (see :func:`materialize`).
    kind : {"npy", "npz", "h5"}

    Raises
    ------
    PickledDataError
        ``kind`` is "npy" and the bytes are a Python pickle.
    InputError
        The bytes are of another format; the message says which (or how they start).
    """
    with _reader(ref) as fp:
        head, found = _format(fp)
    if found == kind:
        return
    what = _describe(head, found)
    if kind == "npy":
        if what == "it is a Python pickle":
            raise _pickled(ref.text)
        if ref.text == "-":
            hint = "; pipe in the output of numpy.save or of cnncli forward/backward -o -"
        else:
            hint = "; expected a file written by numpy.save" if found is None else ""
        raise InputError(f"{ref.text!r} is not .npy data ({what}){hint}")
    if kind == "npz":
        raise InputError(f"{ref.path!r} is not an .npz archive (not a zip file: {what})")
    raise InputError(f"{ref.path!r} is not an HDF5 file ({what})")


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


def _pickled(text: str) -> PickledDataError:
    return PickledDataError(f"{text!r} holds pickled Python objects; cnncli never unpickles "
                      "(save a numeric array with numpy.save)")


def _npy_error(ref: ArrayRef, exc: Exception) -> InputError:
    # The magic bytes were checked first, so a pickle message from numpy here is an object array.
    text = str(exc)
    if "pickle" in text.lower():
        return _pickled(ref.text)
    reason = text.splitlines()[0] if text else type(exc).__name__
    return InputError(f"{ref.text!r} is not a readable .npy array (truncated or corrupt: {reason})")


def _load_npy_bytes(fp, ref: ArrayRef, mmap: bool = False) -> np.ndarray:
    try:
        if mmap:
            arr = np.load(fp, mmap_mode="r", allow_pickle=False)
        else:
            arr = np.load(fp, allow_pickle=False)
    except Exception as exc:  # ValueError, EOFError, OSError, unpickling refusals...: all the file's fault
        raise _npy_error(ref, exc) from exc
    if not isinstance(arr, np.ndarray):  # cannot happen after _expect; kept as a guard
        raise InputError(f"{ref.text!r} is not .npy data")
    check_dtype(arr.dtype, repr(ref.text))
    return arr


def load_npy(ref: ArrayRef, *, mmap: bool = False) -> np.ndarray:
    """The array of a materialized ``.npy`` reference (stdin included).

    Parameters
    ----------
    ref : ArrayRef
        From :func:`materialize`.
    mmap : bool
        Memory-map a regular file (read lazily); bytes read from a pipe are never mapped.

    Raises
    ------
    InputError
        Not .npy data (the message says what it is), truncated, pickled or a refused dtype.
    """
    expect_format(ref, "npy")
    if mmap and ref.data is None:
        try:
            return _load_npy_bytes(ref.path, ref, mmap=True)
        except PickledDataError:
            raise
        except InputError:
            pass  # mmap refuses some valid files (zero-size arrays...): read plainly below
    with _reader(ref) as fp:
        return _load_npy_bytes(fp, ref)


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
        a member that is not .npy data, or a refused dtype.
    """
    ref = materialize(ref)
    expect_format(ref, "npz")
    try:
        with np.load(source_of(ref), allow_pickle=False) as archive:
            names = list(archive.files)
            name = _pick_name(ref, names, "array")
            return load_npz_member(archive, name, ref)
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{ref.text!r} is not a readable .npz archive (truncated or corrupt: {exc})") from exc


def load_npz_member(archive, name: str, ref: ArrayRef, check: bool = True) -> np.ndarray:
    """Member ``name`` of an open archive, read without unpickling.

    Parameters
    ----------
    archive : numpy.lib.npyio.NpzFile
        Opened with ``allow_pickle=False``.
    name : str
        A name in ``archive.files``.
    ref : ArrayRef
        The archive's reference, for messages (``'x.npz:NAME'``).
    check : bool
        Refuse dtypes cnncli cannot compute with (case files check their attributes' members later).

    Returns
    -------
    ndarray, any shape

    Raises
    ------
    PickledDataError
        The member holds pickled objects.
    InputError
        Corrupt or not .npy data; a refused dtype when ``check``.
    """
    member = ArrayRef(f"{ref.path}:{name}", ref.path, "npz", name)
    try:
        arr = archive[name]
    except Exception as exc:  # ValueError, BadZipFile, unpickling refusals...
        raise _npy_error(member, exc) from exc
    if not isinstance(arr, np.ndarray):  # numpy returns a member that is not .npy as raw bytes
        raise InputError(f"{member.text!r} is not .npy data ({_describe(bytes(arr[:64]), None)})")
    if check:
        check_dtype(arr.dtype, repr(member.text))
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


def h5py_module():
    """The ``h5py`` module, imported on first use.

    Returns
    -------
    module

    Raises
    ------
    ImportError
        h5py is not installed (it is a dependency: a broken installation).
    """
    import h5py  # imported lazily: start-up time of the commands that never touch HDF5

    return h5py


def open_h5(ref: ArrayRef):
    """Open an HDF5 file read-only.

    Raises
    ------
    InputError
        Missing, unreadable or not an HDF5 file.
    """
    ref = materialize(ref)
    expect_format(ref, "h5")
    try:
        return h5py_module().File(source_of(ref), "r")
    except OSError as exc:
        reason = str(exc).split("(")[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise InputError(f"{ref.path!r} is not a readable HDF5 file (truncated or corrupt: {reason})") from exc


def h5_datasets(group) -> list:
    """Paths of every dataset under ``group``, absolute, sorted."""
    found = []
    h5py = h5py_module()

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
    h5py = h5py_module()
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
    except Exception as exc:  # h5py cannot even map the type (opaque, references...)
        raise InputError(f"'{ref.path}:{path}' has a data type cnncli cannot read") from exc
    check_dtype(dtype, repr(f"{ref.path}:{path}"))
    return ds


def read_h5(ds, ref_text: str, sel=()) -> np.ndarray:
    """Read ``ds[sel]``, turning HDF5 read errors (truncated files) into InputError."""
    try:
        return np.asarray(ds[sel])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{ref_text!r} could not be read (truncated or corrupt: {str(exc).splitlines()[0]})") from exc
