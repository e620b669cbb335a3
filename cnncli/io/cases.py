"""Case files: one ``.h5`` or ``.npz`` file describing a layer call (SPEC "Case files").

Datasets ``A_prev`` and, for conv, ``W`` and ``b``; optionally the upstream
gradient ``dZ`` (conv) or ``dA`` (pool). Hyperparameters are HDF5 root
attributes, or 0-d entries of an ``.npz``. Nothing is ever unpickled.
"""

from __future__ import annotations

import difflib
import os
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from ..errors import InputError
from .budget import check_budget
from .hdf5 import chunk_cache_needed, corrupt_as_damaged, h5_dataset, h5py_module, link_kind, open_h5, read_attrs, read_h5
from .npz import NpzArchive
from .readers import ArrayRef, parse_ref

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
        with h5py_module().File(parsed.path, "r") as f:
            # an external link counts (loading A_prev then refuses it, or follows it with --allow-external)
            return link_kind(f, "/A_prev") in ("dataset", "external")
    except Exception:
        return False


#: Largest npz entry read as a hyperparameter or description (a pad 4-tuple takes 32 bytes).
MAX_ATTRIBUTE_BYTES = 2**20


def _npz_attr(archive: NpzArchive, name: str, header) -> object:
    """A hyperparameter stored as a small npz entry, as a Python value."""
    if header.nbytes > MAX_ATTRIBUTE_BYTES:
        raise InputError(f"{archive.text(name)!r} is a {header.nbytes}-byte entry; a case's {name!r} is a number, "
                         "a word or a few numbers")
    return to_python(archive.read(name, check=False))


def _is_attr(name: str, header) -> bool:
    """Whether an npz entry is a hyperparameter (0-d, or a known key) rather than an array."""
    return name not in CASE_ARRAYS and (not header.shape or name in CASE_KEYS)


def _h5_attrs(f, path: str) -> Dict[str, object]:
    return {k: to_python(v) for k, v in read_attrs(f, path).items()}


def _h5_arrays(f) -> List[str]:
    """Root names of a case file that lead to datasets (external links included, to be refused or followed)."""
    return [name for name in f if isinstance(name, str) and link_kind(f, "/" + name) in ("dataset", "external")]


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
    if parsed.kind == "npz":
        attrs, refs = {}, {}
        with NpzArchive(parsed) as archive:
            for name in archive.names:
                header = archive.header(name)
                if _is_attr(name, header):
                    attrs[name] = _npz_attr(archive, name, header)
                else:
                    refs[name] = f"{parsed.path}:{name}"
        if "A_prev" not in refs:
            raise InputError(f"{path!r} is not a case file: no A_prev in it (it has: {', '.join(refs) or 'no arrays'})")
        return attrs, refs
    if parsed.kind != "h5":
        raise InputError(f"{path!r}: a case file is an .h5/.hdf5 or .npz file holding A_prev")
    with open_h5(parsed) as f, corrupt_as_damaged(parsed.path):
        attrs = _h5_attrs(f, parsed.path)
        refs = {name: f"{parsed.path}:/{name}" for name in _h5_arrays(f)}
    if "A_prev" not in refs:
        raise InputError(f"{path!r} is not a case file: no A_prev in it (it has: {', '.join(refs) or 'no datasets'})")
    return attrs, refs


def load_case(path: str, *, allow_external: bool = False) -> Case:
    """Read a case file.

    Parameters
    ----------
    path : str
        A ``.h5``/``.hdf5`` file (root datasets, root attributes) or an ``.npz``
        (arrays; hyperparameters as 0-d entries, pairs/4-tuples as small 1-d entries).
    allow_external : bool
        Let HDF5 datasets read other files (see :func:`cnncli.io.hdf5.h5_dataset`).

    Returns
    -------
    Case

    Raises
    ------
    ExternalDataError
        A dataset reads another file, without ``allow_external``.
    InputError
        Unreadable file or attribute, an array over the memory budget, or no ``A_prev`` in it.
    """
    parsed = parse_ref(path)
    case = Case(path=parsed.path)
    if parsed.kind == "h5":
        with open_h5(parsed) as f, corrupt_as_damaged(parsed.path):
            case.attrs = _h5_attrs(f, parsed.path)
            for name in _h5_arrays(f):
                ds = h5_dataset(f, ArrayRef(path, parsed.path, "h5", name), allow_external=allow_external)
                text = f"{parsed.path}:{name}"
                check_budget(ds.size * ds.dtype.itemsize, text)
                chunk_cache_needed(ds, text)
                case.arrays[name] = read_h5(ds, text)
    elif parsed.kind == "npz":
        with NpzArchive(parsed) as archive:
            for name in archive.names:
                header = archive.header(name)
                if _is_attr(name, header):
                    case.attrs[name] = _npz_attr(archive, name, header)  # words like layer='conv' are 0-d str arrays
                else:
                    case.arrays[name] = archive.read(name)
    else:
        raise InputError(f"{path!r}: a case file is an .h5/.hdf5 or .npz file holding A_prev")
    if "A_prev" not in case.arrays:
        raise InputError(f"{path!r} is not a case file: no A_prev in it (it has: "
                         f"{', '.join(case.arrays) or 'no arrays'})")
    return case
