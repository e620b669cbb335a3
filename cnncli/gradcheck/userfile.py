"""What the checker knows of a user's implementation: its functions, its prints, its failures.

The user's code itself runs in a child process (:mod:`.sandbox`); this module holds
the checker's side of it: the classic functions and their signatures, what the code
printed (:class:`UserOutput`, bounded in lines and bytes), and how a call failed
(:class:`UserException`: raised, timed out, ended the process, not checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

#: The classic exercise's functions, in the order they are checked.
CLASSIC = ("zero_pad", "conv_single_step", "create_mask_from_window", "distribute_value",
           "conv_forward", "conv_backward", "pool_forward", "pool_backward")
#: Their signatures (SPEC "Python API"), for hints when a call does not even enter the user's function.
SIGNATURES = {
    "zero_pad": "zero_pad(X, pad)", "conv_single_step": "conv_single_step(a_slice_prev, W, b)",
    "create_mask_from_window": "create_mask_from_window(x)", "distribute_value": "distribute_value(dz, shape)",
    "conv_forward": "conv_forward(A_prev, W, b, hparameters)", "conv_backward": "conv_backward(dZ, cache)",
    "pool_forward": 'pool_forward(A_prev, hparameters, mode="max")',
    "pool_backward": 'pool_backward(dA, cache, mode="max")',
}
#: Lines of the user's prints passed on at most (a print in a loop runs per perturbed element).
ECHO_LIMIT = 200
#: Bytes of the user's prints passed on at most, and characters of one line.
ECHO_BYTES, LINE_CHARS = 65536, 1000


class UserOutput:
    """What the user's code printed: every line counted, the first ``limit`` lines (and ``ECHO_BYTES``) passed to ``echo``."""

    def __init__(self, echo: Optional[Callable[[str], None]] = None, limit: int = ECHO_LIMIT):
        self.echo, self.limit = echo, limit
        self.lines = self.shown = self.bytes = 0

    def add(self, text: str, lines: int) -> None:
        """Count ``lines`` printed; pass on those of ``text`` (their first bytes) within the limits."""
        self.lines += max(int(lines), 0)
        if self.echo is None:
            return
        for line in text.split("\n")[:lines]:
            if self.shown >= self.limit or self.bytes >= ECHO_BYTES:
                return
            if len(line) > LINE_CHARS:
                line = line[:LINE_CHARS] + " [...]"
            self.shown += 1
            self.bytes += len(line) + 1
            self.echo(line)


@dataclass(frozen=True)
class UserException:
    """A call into the user's code that did not return a result.

    Attributes
    ----------
    function : str
        The classic function that was called.
    exception : str
        ``"TypeError: message"``; for other kinds, what happened
        (``"did not return within 10 s on configuration X (an infinite loop?)"``).
    line : int or None
        The line in the user's file (or notebook cell) where it was raised.
    case : str
        The configuration being checked.
    source : str or None
        The text of that line, stripped (quoted in reports).
    kind : str
        ``"exception"``; ``"timeout"``, ``"crash"`` (the process ended), ``"result"``
        (something that is not a result came back), ``"stopped"`` (not called: time is up),
        ``"syntax"`` (its notebook cell does not parse).
    cell : int or None
        The notebook cell of ``line``.
    """

    function: str
    exception: str
    line: Optional[int]
    case: str
    source: Optional[str] = None
    kind: str = "exception"
    cell: Optional[int] = None

    @property
    def where(self) -> str:
        """``"at line N: `its text`"`` (``"in cell C at line N: ..."``), or where the call failed when no line
        of the user's code ran."""
        if not self.line:
            return "before entering your function"
        at = f"in cell {self.cell} at line {self.line}" if self.cell is not None else f"at line {self.line}"
        return f"{at}: `{self.source}`" if self.source else at

    @property
    def message(self) -> str:
        """One sentence for the report."""
        if self.kind == "exception":
            return f"{self.function} raised {self.exception} {self.where} (configuration: {self.case})"
        return f"{self.function} {self.exception}"

    def to_dict(self) -> dict:
        return {"function": self.function, "exception": self.exception, "line": self.line, "case": self.case,
                "source": self.source, "kind": self.kind, "cell": self.cell}


class UserCallFailed(Exception):
    """Raised by a call into the user's code after recording what happened."""

    def __init__(self, info: UserException):
        super().__init__(info.exception)
        self.info = info
