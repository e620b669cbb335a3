"""What of a case file is in force: the hyperparameters it sets that no option overrides.

Each value is validated on its own, so that a bad one's error starts with the case
file's name, and an error of a combination lists the values the case set (SPEC
"Case files": options on the command line override the case).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

from ..engine.geometry import normalize_mode
from ..engine.params import ConvParams
from ..errors import HyperparameterError, ShapeError
from ..io import cases
from ..io.text import read_flag, read_int, read_pad, read_pair


def read_word(value, name: str, allowed) -> str:
    """``value`` as one of the ``allowed`` lower-case words; a HyperparameterError naming ``name`` otherwise."""
    word = str(value).strip().lower()
    if word not in allowed:
        raise HyperparameterError(f"{name} must be {' or '.join(repr(a) for a in allowed)}, got {value!r}")
    return word


_CASE_CHECKS = {
    "layer": lambda v: read_word(v, "layer", ("conv", "pool")),
    "layout": lambda v: read_word(v, "layout", ("nhwc", "nchw")),
    "f": lambda v: read_pair(v, "f"),
    "stride": lambda v: read_pair(v, "stride"),
    "dilation": lambda v: read_pair(v, "dilation"),
    "pad": read_pad,
    "groups": lambda v: ConvParams(groups=read_int(v, "groups")),
    "mode": normalize_mode,
    "ceil_mode": lambda v: read_flag(v, "ceil_mode"),
    "count_include_pad": lambda v: read_flag(v, "count_include_pad"),
}
CASE_KEYS_OF = {"conv": ("f", "stride", "pad", "dilation", "groups"),  # a conv f: checked against W too
                 "pool": ("f", "stride", "pad", "dilation", "mode", "ceil_mode", "count_include_pad")}


class CaseSettings:
    """The hyperparameters a case file sets that no option overrides (``used``), and where they come from.

    Not :class:`cnncli.io.cases.Case` (a case file's arrays and attributes): this is what of it is in force.
    """

    def __init__(self, path: Optional[str], attrs: dict, opts: dict):
        self.path = path
        self.used = {k: v for k, v in attrs.items() if k in cases.CASE_KEYS and opts[k] is None}

    def check(self, keys) -> None:
        """Validate each of ``keys`` on its own, so that a bad value's error starts with the file name."""
        for key in keys:
            if key in self.used:
                try:
                    _CASE_CHECKS[key](self.used[key])
                except HyperparameterError as exc:
                    raise exc.with_context(f"{self.path!r}: ")

    @contextmanager
    def blame(self, *keys):
        """Add the values the case set among ``keys`` to an error of their combination raised inside."""
        try:
            yield
        except (HyperparameterError, ShapeError) as exc:
            after = self.blamed(*keys)
            if not after:
                raise
            raise exc.with_context(after=after)

    def blamed(self, *keys) -> str:
        """What :meth:`blame` adds to an error (``" ('case.h5' sets groups=2)"``), or "" when the case set none."""
        set_here = [f"{k}={_text(self.used[k])}" for k in keys if k in self.used]
        return f" ({self.path!r} sets {', '.join(set_here)})" if set_here else ""


def _text(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
