"""Loading a user's implementation file and calling into it safely.

Import problems become :class:`~cnncli.errors.ImplError` naming the file and
line; exceptions raised later by the user's functions are caught and described
(function, exception, the user's line) so the other functions can still be
checked. What the user's code prints is captured, never shown on our stdout
(it would corrupt ``--json``): a :class:`UserOutput` counts the lines and may
pass them on (the CLI echoes them to stderr, prefixed, without ``--json``).
The capture is at the file-descriptor level too, so ``os.write(1, ...)``,
``os.system`` and ``sys.stdout.buffer.write`` are caught like ``print``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Optional, Tuple

from ..errors import ImplError

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


class UserOutput:
    """What the user's code printed on stdout: every line counted, the first ``limit`` passed to ``echo``."""

    def __init__(self, echo: Optional[Callable[[str], None]] = None, limit: int = ECHO_LIMIT):
        self.echo, self.limit, self.lines = echo, limit, 0
        self._file = None  # one temporary file for every capture (the user's code is called per element)

    @contextlib.contextmanager
    def capture(self):
        """Capture standard output while user code runs, then :meth:`feed` what was written.

        Python's ``sys.stdout`` is replaced by a text stream with a ``.buffer`` and file
        descriptor 1 is pointed at the same temporary file (``os.dup2``), so bytes from
        ``os.write(1, ...)``, child processes and ``sys.__stdout__`` are caught in order with
        the prints. Both are restored afterwards, also when the user's code raises.
        """
        _flush(sys.stdout, sys.__stdout__)  # our own pending output must not land in the capture
        if self._file is None:
            self._file = tempfile.TemporaryFile(buffering=0)
        fd = self._file.fileno()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        try:
            saved = os.dup(1)
        except OSError:  # no fd 1 at all (closed by the caller): Python-level capture only
            saved = None
        if saved is not None:
            os.dup2(fd, 1)
        # NOTE: unbuffered raw file under the text layer, so buffer.write and os.write stay in order;
        # not closed afterwards: user code may keep a reference to sys.stdout and write later.
        stream = io.TextIOWrapper(io.FileIO(fd, "wb", closefd=False), encoding="utf-8", errors="replace",
                                  write_through=True)
        try:
            with contextlib.redirect_stdout(stream):
                yield
        finally:
            _flush(stream, sys.__stdout__)  # the user's writes to sys.__stdout__ belong to the capture
            if saved is not None:
                os.dup2(saved, 1)
                os.close(saved)
            os.lseek(fd, 0, os.SEEK_SET)
            data = self._file.readall()
            self.feed(data.decode("utf-8", errors="replace"))

    def close(self) -> None:
        """Delete the temporary file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def feed(self, text: str) -> None:
        for line in text.splitlines():
            self.lines += 1
            if self.echo is not None and self.lines <= self.limit:
                self.echo(line)


def _flush(*streams) -> None:
    for stream in streams:
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing of ours is pending there
            pass


@dataclass(frozen=True)
class UserException:
    """An exception raised by the user's code.

    Attributes
    ----------
    function : str
        The classic function that was called.
    exception : str
        ``"TypeError: message"``.
    line : int or None
        The line in the user's file where it was raised (innermost frame of that file).
    case : str
        The configuration being checked.
    source : str or None
        The text of that line, stripped (quoted in reports).
    """

    function: str
    exception: str
    line: Optional[int]
    case: str
    source: Optional[str] = None

    @property
    def where(self) -> str:
        """``"at line N: `its text`"``, or where the call failed when no line of the user's file ran."""
        if not self.line:
            return "before entering your function"
        return f"at line {self.line}: `{self.source}`" if self.source else f"at line {self.line}"

    def to_dict(self) -> dict:
        return {"function": self.function, "exception": self.exception, "line": self.line, "case": self.case,
                "source": self.source}


class UserCallFailed(Exception):
    """Raised by :func:`call_user` after recording the user's exception."""

    def __init__(self, info: UserException):
        super().__init__(info.exception)
        self.info = info


def load_impl(path, output: Optional[UserOutput] = None) -> Tuple[ModuleType, Tuple[str, ...]]:
    """Import the user's file; return the module and the classic functions it defines itself.

    ``output`` receives what the file and later calls into it print (default: counted only).

    Raises
    ------
    ImplError
        Missing file, a folder, not ``.py``, a syntax or import error (with file and line),
        or none of the classic functions defined.
    """
    path = os.fspath(path)
    output = output or UserOutput()
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(".py"))[:3]
        example = ", ".join(os.path.join(path, f) for f in found) if found else os.path.join(path, "my_conv.py")
        raise ImplError(f"--impl {path!r} is a folder; give the .py file that defines your functions "
                        f"(e.g. {example})")
    if not os.path.isfile(path):
        raise ImplError(f"--impl {path!r}: no such file (expected a Python file defining e.g. conv_forward)")
    if not path.endswith(".py"):
        raise ImplError(f"--impl {path!r} is not a .py file")
    name = f"cnncli_user_impl_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling in the user's file look themselves up here
    try:
        with output.capture():
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ImplError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except BaseException as exc:  # the user's module-level code: anything can happen
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = user_line(exc, path)
        where = f"{path}:{line}" if line else path
        raise ImplError(f"{where}: importing the file raised {type(exc).__name__}: {_one_line(exc)}") from None
    defined = tuple(n for n in CLASSIC
                    if callable(getattr(module, n, None)) and getattr(getattr(module, n), "__module__", None) == name)
    if not defined:
        raise ImplError(f"--impl {path!r} defines none of the classic functions ({', '.join(CLASSIC)})")
    module.__cnncli_path__ = path
    module.__cnncli_output__ = output
    return module, defined


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def user_line(exc: BaseException, path: str) -> Optional[int]:
    """The innermost line of ``path`` in the traceback of ``exc`` (None if the file is not on it)."""
    target = os.path.abspath(path)
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == target:
            line = frame.lineno
    if line is None and isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == target:
        line = exc.lineno
    return line


def call_user(module: ModuleType, function: str, case: str, *args, **kwargs):
    """Call the user's ``function``; on an exception raise :class:`UserCallFailed` describing it."""
    fn = getattr(module, function)
    output = getattr(module, "__cnncli_output__", None) or UserOutput()
    try:
        with output.capture():
            return fn(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as exc:  # a sys.exit() in the user's code must not end the check
        info = UserException(function, f"{type(exc).__name__}: {_one_line(exc)}",
                             user_line(exc, module.__cnncli_path__), case)
        raise UserCallFailed(info) from None
