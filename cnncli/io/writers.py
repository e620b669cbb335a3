"""Atomic writing of results to ``.npy``, ``.npz``, ``.h5`` or standard output.

Every output is first written to a temporary file next to its destination and
renamed into place only when everything succeeded, so an error or Ctrl-C never
leaves a partial file and never touches an existing one. The file gets the mode
any file the user creates gets (0666 less the umask), or, with ``--force``, the
mode of the file it replaces. A symbolic link as output is replaced, never written
through; a dangling one is refused (it names a file that was meant to exist). Arrays can be written
whole (:meth:`ResultWriter.put`) or streamed batch slice by batch slice
(:meth:`ResultWriter.create` then ``.write(chunk)``), which keeps memory bounded.
Knows nothing of terminals.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from typing import Dict, Optional

import numpy as np

from ..errors import OutputError, first_fitting
from .coverage import Coverage, block_selection, record_block

FORMATS = {".npy": "npy", ".npz": "npz", ".h5": "h5", ".hdf5": "h5"}
#: What creating a file in an existing, writable-looking folder fails with where the folder takes none
#: (/proc says ENOENT, /sys EACCES, a read-only mount EROFS).
_NO_NEW_FILES = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS)
#: Characters a temporary name adds to the output's name: "." + name + "." + 8 random + ".parts".
_TEMP_EXTRA = 16


def output_kind(path: str) -> str:
    """"npy", "npz", "h5" or "stdout" for an ``-o`` value.

    Raises
    ------
    OutputError
        Unknown extension.
    """
    if path == "-":
        return "stdout"
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise OutputError.worded(f"-o {path!r}: unknown type {ext or '(no extension)'!r}; expected .npy, .npz, .h5 or -",
                                 f"-o {path!r}: unknown type {ext!r}; give .npy, .npz, .h5 or -" if ext else
                                 f"-o {path!r} has no extension; expected .npy, .npz, .h5 or -",
                                 f"-o {path!r}: expected a name ending .npy, .npz or .h5, or -")
    return FORMATS[ext]


def _name_max(folder: str):
    """The longest file name the folder's filesystem takes, in bytes (None when it cannot be told)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return None


def check_destination(path: str, force: bool) -> str:
    """Validate an output path before any work is done; return its kind.

    Raises
    ------
    OutputError
        Unknown extension, missing folder, a folder in the way, a dangling symbolic link, or an
        existing file without ``force``.
    """
    if path != "-" and os.path.isdir(path):
        raise OutputError(f"-o {path!r} is a folder; give a file ending in .npy, .npz or .h5")
    kind = output_kind(path)
    if kind == "stdout":
        return kind
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        shown = os.path.dirname(path) or folder
        if os.path.exists(folder):  # x.npy/out.npy with x.npy a file
            raise OutputError(f"-o {path!r}: {shown!r} is a file, not a folder")
        raise OutputError(f"-o {path!r}: folder {shown!r} does not exist")
    # a name the filesystem refuses is told now, not at the rename after all the work
    limit = _name_max(folder)
    if limit is not None and len(os.fsencode(os.path.basename(path))) > limit:
        raise OutputError(f"-o {path!r}: the file name is over {limit} bytes, too long for its folder")
    if os.path.islink(path) and not os.path.exists(path):
        # NOTE: cnncli neither writes through a dangling link nor replaces it
        to = os.readlink(path)
        raise OutputError.worded(f"-o {path!r} is a broken link (to {to!r}); remove it or rename",
                                 f"-o {path!r} links to missing {to!r}; remove it or rename",
                                 f"-o {path!r} is a broken link; remove it or rename")
    if os.path.lexists(path) and not force:
        raise OutputError(f"-o {path!r} exists; use --force to overwrite it")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"-o {path!r}: folder {folder!r} is not writable")
    return kind


def _npy_header(shape, dtype) -> dict:
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(int(s) for s in shape)}


class _NpyStream:
    """An .npy file written front to back: header first, then rows in order; or by blocks of one
    example's rows (:meth:`write_rows`), each put at its place."""

    def __init__(self, path: str, shape, dtype):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self._fp = open(path, "wb")
        np.lib.format.write_array_header_2_0(self._fp, _npy_header(shape, dtype))
        self._data_at = self._fp.tell()
        self._written = Coverage(shape)

    @property
    def _rows(self) -> int:  # whole examples written (a 0-d result's bytes are written by ResultWriter.put)
        return self._written.done

    def write(self, chunk) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:]:
            raise ValueError(f"chunk {chunk.shape} does not fit {self.shape} at row {self._rows}")
        first = self._written.whole(chunk.shape[0])
        self._fp.seek(self._data_at + first * math.prod(self.shape[1:]) * self.dtype.itemsize)
        self._fp.write(memoryview(chunk.reshape(-1)).cast("B"))

    def write_rows(self, example: int, axis: int, start: int, block, col: Optional[int] = None) -> None:
        """Write ``block``, rows ``start:`` along ``axis`` (1 or 2, the other axes whole) of ``example``; with
        ``col``, a tile: columns ``col:`` along ``axis + 1`` of those rows.

        The example's blocks may come in any order but must cover it once before the next example."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        block_selection(self.shape, example, axis, start, block, col)
        record_block(self._written, self.shape, example, axis, start, block, col)
        strides = [self.dtype.itemsize * math.prod(self.shape[k + 1:]) for k in range(len(self.shape))]
        # one run per channel (NCHW) or in all (NHWC) for rows; per row too (and channel, NCHW) for a tile
        runs = axis + (col is not None)
        at = example * strides[0] + start * strides[axis] + (col or 0) * strides[axis + 1]
        for lead in np.ndindex(*block.shape[1:runs]):
            self._fp.seek(self._data_at + at + sum(i * strides[k + 1] for k, i in enumerate(lead)))
            self._fp.write(memoryview(block[(0,) + lead].reshape(-1)).cast("B"))

    def close(self) -> None:
        if not self._fp.closed:
            self._fp.close()
        self._written.check_complete(self.path)


@contextmanager
def _h5_write_errors():
    """HDF5's write errors as one-line OSErrors: h5py's text spans lines of details ("file write failed:
    time = ..., errno = 27, error message = 'File too large', buf = 0x..."); the error message is what counts."""
    try:
        yield
    except OSError as exc:
        found = re.search(r"error message = '([^']*)'", str(exc))
        if not found:
            raise
        raise OSError(exc.errno, found.group(1)) from exc


class _H5Stream:
    def __init__(self, ds, written: bool = False):
        self._ds = ds
        self._written = Coverage(ds.shape)
        if written and ds.shape:  # put's whole array
            self._written.whole(ds.shape[0])

    def write(self, chunk) -> None:
        first = self._written.whole(chunk.shape[0])
        with _h5_write_errors():
            self._ds[first:first + chunk.shape[0]] = chunk

    def write_rows(self, example: int, axis: int, start: int, block, col: Optional[int] = None) -> None:
        """As :meth:`_NpyStream.write_rows`: one hyperslab."""
        sel = block_selection(self._ds.shape, example, axis, start, block, col)
        record_block(self._written, self._ds.shape, example, axis, start, block, col)
        with _h5_write_errors():
            self._ds[sel] = np.asarray(block)[0]

    def close(self) -> None:
        self._written.check_complete(self._ds.name)


class ResultWriter:
    """Write named result arrays to ``path`` atomically.

    Parameters
    ----------
    path : str
        ``.npy`` (only ``main`` is written), ``.npz`` / ``.h5`` (every result by
        name), or ``-`` (``main`` as ``.npy`` bytes on standard output).
    main : str
        Name of the main result.
    attrs : dict, optional
        Written as HDF5 root attributes (``.h5`` only); None values are skipped.
    force : bool
        Replace an existing file.

    Raises
    ------
    OutputError
        On construction, as :func:`check_destination`.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "z.npy")
    >>> with ResultWriter(out, main="Z") as w:
    ...     s = w.create("Z", (2, 3), "float64")
    ...     s.write(np.zeros((1, 3))); s.write(np.ones((1, 3)))
    >>> np.load(out).tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, path: str, *, main: str, attrs: Optional[dict] = None, force: bool = False):
        self.path, self.main, self.force = path, main, force
        self.kind = check_destination(path, force)
        self.attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        self._streams: Dict[str, object] = {}
        self._tmp: Optional[str] = None
        self._tmpdir: Optional[str] = None
        self._h5 = None

    # -- lifecycle
    def __enter__(self):
        if self.kind == "stdout":
            self._tmpdir = _private_dir(tempfile.mkdtemp(prefix="cnncli-"))
        else:
            folder = os.path.dirname(os.path.abspath(self.path))
            base = _temp_base(folder, os.path.basename(self.path))
            try:
                fd, self._tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".part", dir=folder)
            except OSError as exc:
                if exc.errno not in _NO_NEW_FILES:  # a full disk, too many open files: the system's words say it
                    raise
                # /proc, /sys, a read-only mount: the system's words ("No such file") and our temporary name mislead
                shown = os.path.dirname(self.path) or "."
                raise OutputError(first_fitting(f"-o {self.path!r}: folder {shown!r} takes no new files; write elsewhere",
                                                f"-o {self.path!r}: folder {shown!r} takes no new files")) from None
            try:  # NOTE: 0600 while cnncli writes (mkstemp's, less a umask such as 0222: 0400); the result's in _commit
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            try:  # a full disk can refuse what follows: the temporary file must not stay behind
                if self.kind == "npz":
                    self._tmpdir = _private_dir(tempfile.mkdtemp(prefix=f".{base}.", suffix=".parts", dir=folder))
                elif self.kind == "h5":
                    import h5py

                    with _h5_write_errors():
                        self._h5 = h5py.File(self._tmp, "w")
                        for k, v in self.attrs.items():
                            self._h5.attrs[k] = np.asarray(v) if isinstance(v, (tuple, list)) else v
            except BaseException:
                self._cleanup()
                raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._commit()
        finally:
            self._cleanup()
        return False

    def _mode(self) -> int:
        """The result's permission bits: the replaced file's with --force, else 0666 less the umask."""
        if self.force:
            try:
                return stat.S_IMODE(os.stat(self.path).st_mode)
            except OSError:
                pass
        return 0o666 & ~_umask()

    def wants(self, name: str) -> bool:
        """Whether ``name`` is written at all (``.npy`` and stdout keep only ``main``)."""
        return name == self.main or self.kind in ("npz", "h5")

    def create(self, name: str, shape, dtype):
        """Start streaming result ``name``; returns an object with ``write(chunk)``
        taking consecutive slices along axis 0, or None when ``name`` is not written."""
        if not self.wants(name):
            return None
        if name in self._streams:
            raise ValueError(f"result {name!r} written twice")
        if self.kind == "h5":
            with _h5_write_errors():
                ds = self._h5.create_dataset(name, shape=tuple(shape), dtype=np.dtype(dtype))
            stream = _H5Stream(ds)
        else:
            target = self._tmp if self.kind == "npy" else os.path.join(self._tmpdir, f"{name}.npy")
            stream = _NpyStream(target, shape, dtype)
        self._streams[name] = stream
        return stream

    def put(self, name: str, array) -> None:
        """Write a whole result array (ignored when ``name`` is not written)."""
        array = np.asarray(array)
        if self.kind == "h5" and self.wants(name):
            with _h5_write_errors():  # the whole array is written here (dW, db)
                self._streams[name] = _H5Stream(self._h5.create_dataset(name, data=array), written=True)
            return
        stream = self.create(name, array.shape or (), array.dtype)
        if stream is None:
            return
        if array.ndim == 0:  # a 0-d array has no rows: its one value follows the header
            stream._fp.write(array.tobytes())
        else:
            stream.write(array)

    # -- commit / cleanup
    def _commit(self) -> None:
        for stream in self._streams.values():
            stream.close()
        if self.main not in self._streams:
            raise ValueError(f"main result {self.main!r} was never written")
        if self.kind == "h5":
            with _h5_write_errors():  # the last chunks reach the disk here
                self._h5.close()
            self._h5 = None
        elif self.kind == "npz":
            with zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                for name in self._streams:
                    z.write(os.path.join(self._tmpdir, f"{name}.npy"), arcname=f"{name}.npy")
        elif self.kind == "stdout":
            out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
            with open(os.path.join(self._tmpdir, f"{self.main}.npy"), "rb") as fp:
                shutil.copyfileobj(fp, out, 1 << 20)
            out.flush()
            return
        # the result's mode only now: a 0444 one (umask 0222, or --force over a read-only file) given to the
        # temporary file before it was written shut cnncli out of its own file
        os.chmod(self._tmp, self._mode())
        self._place()

    def _place(self) -> None:
        """Rename the finished temp file into place (never clobbering without force)."""
        if self.force:
            os.replace(self._tmp, self.path)
        else:
            try:
                os.link(self._tmp, self.path)  # fails if the path appeared meanwhile: no clobber
            except FileExistsError:
                raise OutputError(f"-o {self.path!r} exists; use --force to overwrite it") from None
            except OSError:  # filesystems without hard links
                if os.path.lexists(self.path):
                    raise OutputError(f"-o {self.path!r} exists; use --force to overwrite it") from None
                os.replace(self._tmp, self.path)
                self._tmp = None
                return
            os.unlink(self._tmp)
        self._tmp = None

    def _cleanup(self) -> None:
        for stream in self._streams.values():
            fp = getattr(stream, "_fp", None)
            if fp is not None and not fp.closed:
                fp.close()
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:
                pass
            self._h5 = None
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def _private_dir(path: str) -> str:
    """``path`` (a folder of cnncli's temporaries) made 0700: mkdtemp's 0700 less a umask such as 0222 is 0500."""
    os.chmod(path, 0o700)
    return path


def _umask() -> int:
    """The process's umask (read by setting it: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_base(folder: str, base: str) -> str:
    """``base`` cut so that a temporary name made of it stays within the folder's NAME_MAX."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    room = max(1, name_max - _TEMP_EXTRA)
    encoded = os.fsencode(base)
    return base if len(encoded) <= room else os.fsdecode(encoded[:room])


def write_results(path: str, results: Dict[str, np.ndarray], *, main: str,
                  attrs: Optional[dict] = None, force: bool = False) -> None:
    """Write results atomically: ``.npy`` gets ``main``, ``.npz``/``.h5`` all by name, ``-`` stdout.

    Parameters
    ----------
    path : str
        Output file or ``-``.
    results : dict of str to ndarray
        Named results, e.g. ``{"dA_prev": ..., "dW": ..., "db": ...}``.
    main : str
        The result written to ``.npy`` and stdout.
    attrs : dict, optional
        HDF5 root attributes (hyperparameters).
    force : bool
        Overwrite an existing file.

    Raises
    ------
    OutputError
        Bad extension, missing folder, or the file exists without ``force``.
    """
    with ResultWriter(path, main=main, attrs=attrs, force=force) as writer:
        for name, array in results.items():
            writer.put(name, array)
