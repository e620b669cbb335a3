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
from .readers import (ArrayRef, check_dtype, expect_format, h5_dataset, h5py_module, load_npz_member, materialize,
                      open_h5, parse_ref, read_h5, source_of)

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
            return "A_prev" in f and isinstance(f["A_prev"], h5py_module().Dataset)
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
    h5py = h5py_module()
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
                if isinstance(f[name], h5py_module().Dataset):
                    case.arrays[name] = read_h5(h5_dataset(f, ArrayRef(path, parsed.path, "h5", name)),
                                                f"{parsed.path}:{name}")
    elif parsed.kind == "npz":
        parsed = materialize(parsed)
        expect_format(parsed, "npz")
        try:
            with np.load(source_of(parsed), allow_pickle=False) as archive:
                for name in archive.files:
                    arr = load_npz_member(archive, name, parsed, check=False)
                    if name not in CASE_ARRAYS and (arr.ndim == 0 or name in CASE_KEYS):
                        case.attrs[name] = to_python(arr)  # words like layer='conv' are 0-d str arrays
                    else:
                        check_dtype(arr.dtype, repr(f"{parsed.path}:{name}"))
                        case.arrays[name] = arr
        except InputError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{parsed.path!r} is not a readable .npz archive (truncated or corrupt: {exc})") from exc
    else:
        raise InputError(f"{path!r}: a case file is an .h5/.hdf5 or .npz file holding A_prev")
    if "A_prev" not in case.arrays:
        raise InputError(f"{path!r} is not a case file: no A_prev in it (it has: "
                         f"{', '.join(case.arrays) or 'no arrays'})")
    return case
