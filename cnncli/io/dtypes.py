"""The dtype policy: which dtype a layer is computed in, and the note that says so.

Integer, boolean, float16 and float32 data is computed in float64 unless
``--dtype float32`` is asked for (SPEC "Array references").
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from .readers import check_dtype

DTYPES = ("float64", "float32")


def float64_unless_float32_asked(dtype: Optional[str]) -> np.dtype:
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
    # the type, not its byte order: a big-endian float64 is computed as it is (swapped to the machine's, exactly)
    native = {name: np.dtype(dt).newbyteorder("=") for name, dt in stored.items()}
    changed = {name: dt for name, dt in native.items() if dt != target}
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
    target = float64_unless_float32_asked(dtype)
    return arr.astype(target, copy=False), dtype_note({name: arr.dtype}, target, dtype)
