"""Low-level readers behind :mod:`cnncli.io.arrays`: reference parsing, telling formats apart.

``.npy`` data is read by :mod:`cnncli.io.npy`, ``.npz`` archives by :mod:`cnncli.io.npz`,
HDF5 files by :mod:`cnncli.io.hdf5`.
Every failure becomes an :class:`~cnncli.errors.InputError` whose one-line message
names the reference and what would be valid. Nothing is ever unpickled. Whole arrays
are read only when their declared size fits :func:`cnncli.io.budget.memory_budget`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import sys
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

import numpy as np

from ..errors import ArrayChoiceError, InputError, PickledDataError, fit_names
from .budget import check_budget, memory_budget, read_bounded  # noqa: F401  (check_budget, memory_budget: re-exported)

_REF = re.compile(r"^(?P<path>.*?\.(?:npz|h5|hdf5))(?::(?P<name>.*))?$", re.IGNORECASE)
_H5_EXT = (".h5", ".hdf5")
#: The forms of an array reference, for messages.
REF_FORMS = "x.npy, x.npz[:NAME], x.h5[:PATH] or -"
_ACCEPTED_KINDS = "biuf"  # bool, signed and unsigned ints, floats
#: The first bytes of every .npy file.
NPY_MAGIC = b"\x93NUMPY"
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
        raise InputError(f"empty array reference: give {REF_FORMS}")
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
                raise _not_named(ref, path, kind, name)
            return ArrayRef(ref, path, kind, name or None)
    parsed = ArrayRef(ref, ref, "pipe")
    if not _regular(parsed):
        return parsed
    with _open(ref, parsed) as fp:
        head, kind = _format(fp)
    if kind is None:
        raise InputError(f"{ref!r} is not .npy, .npz or HDF5 ({describe(head, None)})")
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


def check_readable(ref: ArrayRef) -> None:
    """Check that the file ``ref`` names can be read, reading none of it (a pipe is not opened).

    Raises
    ------
    InputError
        No such file, a folder, or no permission to read it.
    """
    if ref.kind != "stdin" and _regular(ref):
        _open(ref.path, ref).close()


# --------------------------------------------------------------------- telling formats apart


#: While :func:`read_once` is active: the bytes of each source that can be read only once, by its identity.
_ONCE: Optional[dict] = None


@contextlib.contextmanager
def read_once():
    """Within this block, standard input and pipes are read at most once: :func:`materialize` keeps their bytes
    and gives them again to a second reference to the same source (a command that resolves its inputs twice,
    as gradcheck does when a set turns out small enough to check in memory, would find them empty).

    The bytes are let go at the end of the block; outside any block every reference reads its source.
    """
    global _ONCE
    outer, _ONCE = _ONCE, {} if _ONCE is None else _ONCE
    try:
        yield
    finally:
        _ONCE = outer


def _once(key, read):
    """``read()``, or the bytes it gave for ``key`` earlier in the :func:`read_once` block."""
    if _ONCE is None:
        return read()
    if key not in _ONCE:
        _ONCE[key] = read()
    return _ONCE[key]


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
        return replace(ref, kind="npy", data=_once(("stdin",), _stdin_bytes))
    if _regular(ref):
        return ref

    def read():
        with _open(ref.path, ref) as fp:
            return read_bounded(fp, ref.text, sniff=lambda head: _known_head(head, ref), first=PIPE_HEAD)

    data = _once(("pipe", os.path.abspath(ref.path)), read)
    if ref.kind != "pipe":
        return replace(ref, data=data)
    head, kind = _format(io.BytesIO(data))
    if kind is None:
        raise InputError(f"{ref.text!r} is not .npy, .npz or HDF5 ({describe(head, None)})")
    if ref.name is not None and kind == "npy":
        raise _not_named(ref.text, ref.path, kind, ref.name)
    return replace(ref, kind=kind, data=data)


#: The first bytes of a pipe read before it is told by them: an HDF5 signature after a user block of up to
#: 512 KiB is in them (a pipe of HDF5 with a larger block is refused; the file itself is read).
PIPE_HEAD = 1 << 20


def _known_head(head: bytes, ref: ArrayRef) -> None:
    """Refuse a pipe or device at its first bytes when they show no format it could hold (``<(yes)``,
    ``/dev/zero``), rather than read it to the memory budget first; a head the stream ends within is told later,
    whole, by :func:`_format`."""
    if len(head) < PIPE_HEAD:
        return
    _, found = _format(io.BytesIO(head))
    if ref.kind == "pipe" and found is None:
        raise InputError(f"{ref.text!r} is not .npy, .npz or HDF5 ({describe(head[:64], None)})")
    if ref.kind != "pipe" and found != ref.kind:  # a FIFO named x.npy: refused as the file would be
        _refuse_format(ref, ref.kind, head, found)


def _stdin_bytes() -> bytes:
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    if hasattr(stream, "isatty") and stream.isatty():
        raise InputError("'-' is standard input, a terminal here: pipe .npy bytes in")
    data = read_bounded(stream, "standard input", sniff=_npy_head)
    if not data:
        raise InputError("standard input is empty; '-' expects .npy bytes from a pipe")
    return data


def _npy_head(head: bytes) -> None:
    """Refuse standard input at its first bytes when they are not .npy's (``yes |`` is not read to the end)."""
    if len(head) >= len(NPY_MAGIC) and not head.startswith(NPY_MAGIC):
        what = describe(head[:64], None)
        raise pickled("-") if what == "it is a Python pickle" else InputError(f"'-' is not .npy data ({what})")


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


def reader(ref: ArrayRef):
    """A binary file over ``ref``'s bytes, to be closed by the caller.

    Parameters
    ----------
    ref : ArrayRef
        Materialized (see :func:`materialize`).

    Returns
    -------
    binary file
        A BytesIO over the bytes read by :func:`materialize`, or the file opened.

    Raises
    ------
    InputError
        The file cannot be opened (missing, a folder, no permission).
    """
    return io.BytesIO(ref.data) if ref.data is not None else _open(ref.path, ref)


def _format(fp) -> Tuple[bytes, Optional[str]]:
    """The first bytes of an open binary file and the format they show: "npy", "npz", "h5" or None."""
    head = fp.read(64)
    for kind, magic in (("npy", (NPY_MAGIC,)), ("npz", _ZIP_MAGIC), ("h5", (_H5_MAGIC,))):
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


def describe(head: bytes, kind: Optional[str]) -> str:
    """What a file holds, for messages: 'it is an HDF5 file', "it starts with 'hello'"...

    Parameters
    ----------
    head : bytes
        Its first bytes (64 are plenty).
    kind : {"npy", "npz", "h5"} or None
        The format its magic bytes show, if any.

    Returns
    -------
    str

    Raises
    ------
    Nothing.
    """
    if kind is not None:
        return f"it is {_FORMATS[kind]}"
    if not head:
        return "it is empty"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it is a Python pickle"
    line = head.split(b"\n", 1)[0][:24].decode("ascii", "replace").rstrip()
    if line and line.isprintable() and "\ufffd" not in line:
        return f"it starts with {line!r}"
    return f"it starts with {head[:8]!r}"


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
    with reader(ref) as fp:
        head, found = _format(fp)
    if found != kind:
        _refuse_format(ref, kind, head, found)


def _refuse_format(ref: ArrayRef, kind: str, head: bytes, found: Optional[str]):
    """Raise the refusal of ``ref`` as ``kind`` data when its first bytes ``head`` show ``found`` instead."""
    what = describe(head[:64], found)
    if kind == "npy":
        if what == "it is a Python pickle":
            raise pickled(ref.text)
        raise InputError(f"{ref.text!r} is not .npy data ({what})")
    if kind == "npz":
        raise InputError(f"{ref.path!r} is not .npz data ({what})")
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
        # NOTE: a structured dtype is written field by field: past 80 columns it is named by its kind
        raise InputError.worded(f"{what} has dtype {dtype}; expected bool, int or float data",
                                f"{what} has dtype {dtype}; expected bool, int or float",
                                *([f"{what} is a structured array; expected bool, int or float"]
                                  if dtype.fields is not None else []))


def pickled(text: str) -> PickledDataError:
    """The error for data that holds pickled Python objects (returned, to be raised).

    Returns
    -------
    PickledDataError

    Raises
    ------
    Nothing: the caller raises it.
    """
    return PickledDataError(f"{text!r} holds pickled objects; cnncli never unpickles")


def damaged(text: str, reason: str) -> InputError:
    """The error for a truncated or corrupt file (returned, to be raised).

    Parameters
    ----------
    text : str
        The reference, as the user gave it.
    reason : str
        What is wrong, in a few words ("cut short: 200 of 2432 bytes").

    Returns
    -------
    InputError

    Raises
    ------
    Nothing: the caller raises it.
    """
    return InputError(f"{text!r} is damaged ({reason})")


def _not_named(text: str, path: str, kind: Optional[str], name: str) -> InputError:
    """The error for ``FILE:NAME`` where FILE holds no named arrays (returned, to be raised)."""
    if kind == "npy":
        return InputError(f"{text!r}: {path!r} is .npy (one array); drop the ':{name}'")
    return InputError(f"{text!r}: {path!r} is not .npz or HDF5; only those name arrays")


def pick_name(ref: ArrayRef, names, what: str) -> str:
    """The name ``ref`` asks for among ``names``, or the only one.

    Parameters
    ----------
    ref : ArrayRef
        ``ref.name`` None asks for the only one.
    names : list of str
    what : str
        "array" or "dataset", for the message.

    Returns
    -------
    str

    Raises
    ------
    ArrayChoiceError
        Several (or none) and none asked for; the message lists those that exist.
    InputError
        No such name; the message lists those that exist.
    """
    if ref.name is None:
        if len(names) == 1:
            return names[0]
        if not names:  # nothing to name: "name one, e.g. x.h5:NAME" would send the user looking
            raise ArrayChoiceError(f"{ref.path!r} holds no {what}s", ref.path, names, what)
        raise ArrayChoiceError.several(ref.path, names, what)  # the list cut to fit 80 columns, as --like's
    if ref.name in names:
        return ref.name
    raise listed((f"{ref.path!r} has no {what} {ref.name!r}", f"{ref.path!r} has no {ref.name!r}"), "it has", names,
                 what)


def listed(said, has: str, names, what: str) -> InputError:
    """``"<said>; <has>: a, b, +3 more"``, the names cut to fit 80 columns as :meth:`ArrayChoiceError.several`'s
    are, ``said`` in fewer words where no name would fit otherwise (``said`` a str or a sequence, whole first);
    the whole list stays in ``err.whole``. ``"<has>: none"`` without names (returned)."""
    saids = (said,) if isinstance(said, str) else tuple(said)
    if not names:
        return InputError(f"{saids[0]}; {has}: none")
    fitted = [fit_names(f"{s}; {has}: ", names, ("",), "") for s in saids]  # "" when no name fits
    counted = [f"{s}; {has} {len(names)} {what}s" for s in saids]
    return InputError.worded(f"{saids[0]}; {has}: {', '.join(names)}", *(f for f in fitted if f), *counted)
