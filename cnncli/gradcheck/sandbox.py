"""Running the user's code in a child process with time and memory limits (``--impl``).

The checker never runs a line of the user's code itself. :class:`Sandbox` starts
:mod:`.worker` as a separate Python process in a session of its own, sends it the
code to load and then one call at a time, and decodes what comes back with
:func:`.wire.decode_untrusted` (arrays as raw bytes with a checked dtype and shape,
never a pickle). Whatever the code does there — exit, fork, patch numpy or cnncli,
loop forever, exhaust memory — it can end or stall only the child: the verdict is
computed here, from the arrays that arrived.

Limits: a wall time per call (``timeout``), a wall time for the whole check
(``overall``), an address-space cap (``RLIMIT_AS``, Linux/macOS) and a file-size
cap on what the code prints. A call that times out or ends the child is reported,
the child is restarted (the code is loaded again, its prints not repeated) and the
function is not called again; the other functions are still checked.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import ImplError
from . import wire
from .userfile import UserCallFailed, UserException, UserOutput

#: Seconds one call into the user's code may take (``--timeout``).
DEFAULT_TIMEOUT = 10.0
#: The whole check may take this many times the per-call limit.
OVERALL_FACTOR = 30
#: The shortest per-call limit: below it a limit times cnncli's own work, not the user's code. Measured
#: (2-core machine, idle): a call's round trip through the child 1 ms, the slowest call of a correct classic
#: solution 8 ms, the child's start-up (Python and numpy) 0.13 s, a whole ``--method full`` check of a correct
#: solution 2.6 s. At 1 s a call has over 100 times what a correct one needs, and the whole check
#: (``OVERALL_FACTOR`` times it: 30 s) over 10 times a correct full check, room for a machine that is busy.
MIN_TIMEOUT = 1.0
#: Address space of the child, bytes (the battery's arrays are a few kB; numpy itself needs a few hundred MB).
MEMORY_LIMIT = 2 << 30
#: Bytes of output the child may hold between two calls, and send back per call.
FILE_LIMIT, OUTPUT_BYTES = 64 << 20, 16384
#: Bytes of one reply the checker reads at most.
MAX_REPLY = 64 << 20
#: Seconds the child may take to start (python + numpy), whatever ``timeout`` is.
STARTUP_LIMIT = 60.0
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


class _Timeout(Exception):
    pass


@dataclass(frozen=True)
class Cutoff:
    """Where the whole check's time limit ran out: the configuration, and the user's function whose call it
    cut (``running``; None when no call was running: between calls, or the child not reading)."""

    case: str
    running: Optional[str] = None


class _Died(Exception):
    pass


#: The longest single wait of :func:`_ready` (select() overflows near 1e10 s; --timeout may be anything).
_WAIT_STEP = 3600.0


def _ready(fd: int, deadline: float, write: bool = False) -> None:
    """Return when ``fd`` can be read (or written); :class:`_Timeout` once ``deadline`` has passed.

    Readiness is looked at before the clock: a reply that came in time while this process was
    stopped (Ctrl-Z, then fg) is not a timeout.
    """
    while True:
        left = min(max(0.0, deadline - time.monotonic()), _WAIT_STEP)
        readable, writable, _ = select.select([] if write else [fd], [fd] if write else [], [], left)
        if readable or writable:
            return
        if time.monotonic() >= deadline:
            raise _Timeout


class Sandbox:
    """One child process running the user's code; restarted after a timeout or a crash.

    Parameters
    ----------
    load : dict
        The worker's ``load`` request (path, and the cells to run for a notebook).
    output : UserOutput
        Receives what the code prints.
    timeout : float
        Seconds per call (and for loading the code).
    overall : float, optional
        Seconds for the whole check (default ``OVERALL_FACTOR * timeout``).

    Use as a context manager: leaving it (also by Ctrl-C) kills the child and
    whatever it started.
    """

    def __init__(self, load: dict, output: UserOutput, timeout: float = DEFAULT_TIMEOUT,
                 overall: Optional[float] = None):
        self.load_request, self.output, self.timeout = load, output, float(timeout)
        self.overall = float(overall) if overall is not None else OVERALL_FACTOR * self.timeout
        self.deadline = time.monotonic() + self.overall
        self.generation = 0
        self.proc = None
        #: function -> the UserException that stopped it (a timeout or a crash); later calls repeat it.
        self.stopped: dict = {}
        #: Why no call is made any more (time is up, no process), as the ``stopped`` calls say it.
        self.broken: Optional[str] = None
        #: Where the whole check's time ran out, once it has.
        self.cutoff: Optional[Cutoff] = None

    # ------------------------------------------------------------ process

    def _spawn(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        limits = {"memory": MEMORY_LIMIT, "file": FILE_LIMIT, "out": OUTPUT_BYTES}
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"  # the user's loops are Python; BLAS threads would only eat the address-space cap
        try:
            self.proc = subprocess.Popen([sys.executable, WORKER, str(req_r), str(rep_w), json.dumps(limits)],
                                         pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        finally:
            os.close(req_r)
            os.close(rep_w)
        os.set_blocking(req_w, False)  # a child that stopped reading must not block us past the deadline
        self.to_child, self.from_child = req_w, rep_r
        self.generation += 1
        self.seq = 0

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its session: also what the user's code forked
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except OSError:
            pass
        proc.wait()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill the child and everything in its session."""
        self._kill()

    # ------------------------------------------------------------ frames

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            _ready(self.to_child, deadline, write=True)
            try:
                view = view[os.write(self.to_child, view[:1 << 16]):]
            except BlockingIOError:
                continue
            except OSError:  # a broken pipe: the child is gone
                raise _Died from None

    def _read(self, n: int, deadline: float) -> bytes:
        try:  # the child has until the deadline to send each chunk
            return wire.read_exact(self.from_child, n, lambda: _ready(self.from_child, deadline))
        except EOFError:
            raise _Died from None

    def _receive(self, deadline: float):
        """One reply frame; it must answer the last request (a process the user's code forked must not)."""
        n = int.from_bytes(self._read(8, deadline), "big")
        if n > MAX_REPLY:
            raise wire.WireError(f"a reply of {n} bytes (more than {MAX_REPLY >> 20} MiB)")
        header, blobs = wire.split_body(self._read(n, deadline))
        _expect(header, "ok", bool)
        _expect(header, "out", str)
        _expect(header, "lines", int)
        if header.get("seq") != self.seq:
            raise wire.WireError("a reply out of turn")
        return header, blobs

    def _exchange(self, request: dict, blobs, deadline: float, quiet: bool = False):
        self.seq += 1
        self._send(wire.frame(dict(request, seq=self.seq), blobs), deadline)
        header, rblobs = self._receive(deadline)
        if not quiet:
            self.output.add(header["out"], header["lines"])
        return header, rblobs

    def _how_it_ended(self) -> Optional[str]:
        """How the child ended (a signal, an exit status); None if it lives on with the channel closed."""
        try:
            rc = self.proc.wait(timeout=2) if self.proc is not None else None
        except subprocess.TimeoutExpired:  # alive, but it closed its end of the channel
            return None
        if rc is not None and rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exit status {rc}: os._exit, or a crash"

    # ------------------------------------------------------------ loading and calls

    def start(self) -> dict:
        """Start the child and load the user's code; return the worker's answer (``defined``, ``notes``, ...).

        Raises
        ------
        ImplError
            The child did not start, or loading the code raised, timed out or ended the process;
            not a POSIX system.
        """
        path = self.load_request["path"]
        if os.name != "posix":  # pipes passed by number, select() on them, process groups
            raise ImplError("--impl runs your code in a separate process, which cnncli supports on Linux and "
                            "macOS only (on Windows, use WSL)")
        fd, progress = tempfile.mkstemp(prefix="cnncli-load-")
        os.close(fd)
        try:
            header = self._start(quiet=False, progress=progress)
        except _Timeout:
            at = self._stuck_at(progress)
            self._kill()
            took, still = f"{path}: loading took over {self.timeout:g} s", f", still at {at}" if at else ""
            passed = f"{path}: loading passed {self.timeout:g} s" + (f" at {at}" if at else "")
            raise ImplError.worded(f"{took}{still} (a loop at module level?)", f"{passed} (a module-level loop?)",
                                   passed) from None
        except _Died:
            how = self._how_it_ended() or "it closed its channel to the checker"
            self._kill()
            raise ImplError(f"{path}: loading the file ended the process it ran in ({how})") from None
        except wire.WireError as exc:
            self._kill()
            raise ImplError(f"{path}: loading the file broke the checker's channel ({exc})") from None
        finally:
            os.unlink(progress)
        if not header["ok"]:
            self._kill()
            line = header.get("line")
            where = f"{path}:{line}" if type(line) is int else path
            raise ImplError(f"{where}: importing the file raised {str(header.get('type'))[:80]}: "
                            f"{str(header.get('message'))[:300]}")
        return header

    def _start(self, quiet: bool, progress: Optional[str] = None):
        self._spawn()
        now = time.monotonic()
        self._receive(now + STARTUP_LIMIT)  # the worker's "ready", before any user code runs
        request = dict(self.load_request, op="load", progress=progress)
        header, _ = self._exchange(request, [], time.monotonic() + self.timeout, quiet)
        return header

    def _stuck_at(self, progress: str) -> str:
        """"cell C, line N" where a load that timed out is running (asked with SIGUSR1), or ""."""
        try:
            os.kill(self.proc.pid, signal.SIGUSR1)
        except (AttributeError, OSError):
            return ""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                with open(progress) as fh:
                    text = fh.read()
                if text:
                    at = json.loads(text)
                    line, cell = at.get("line"), at.get("cell")
                    if type(line) is int:
                        return f"{f'cell {cell}, ' if type(cell) is int else ''}line {line}"
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        return ""

    def _restart(self) -> None:
        self._kill()
        try:
            header = self._start(quiet=True)
            if not header["ok"]:
                raise _Died
        except (_Timeout, _Died, wire.WireError):
            self._kill()
            self.broken = "not checked: the process running your code could not be restarted"

    def live(self, value) -> bool:
        """Whether ``value`` (e.g. a forward's cache) can be passed back: not kept by a process since restarted."""
        if isinstance(value, wire.Kept):
            return value.id is not None and value.generation == self.generation
        if isinstance(value, (tuple, list)):
            return all(self.live(v) for v in value)
        return True

    def call(self, function: str, case: str, args: tuple, keep: bool = False):
        """Call the user's ``function(*args)`` in the child; return its decoded result.

        ``keep``: values that cannot be sent (a forward's cache) stay in the child as
        :class:`.wire.Kept` handles that can be passed back as arguments.

        Raises
        ------
        UserCallFailed
            The function raised, timed out, ended the process or returned something
            that is not a result; also when it was stopped earlier or time is up.
        """
        request = {"op": "call", "fn": function, "keep": keep}
        return self._calls(function, case, request, args, 1)[0]

    def call_perturbed(self, function: str, case: str, args: tuple, index: int, changes):
        """``function(*args)`` once per ``(flat_index, value)`` of ``changes`` set in ``args[index]``.

        The same limits and failures as :meth:`call`, per call; the calls run back to back
        in the child while their results stream back. Returns the decoded results in order.
        """
        changes = [[int(i), float(v).hex()] for i, v in changes]
        request = {"op": "map", "fn": function, "index": int(index), "changes": changes}
        return self._calls(function, case, request, args, len(changes))

    def _calls(self, function: str, case: str, request: dict, args: tuple, count: int) -> list:
        if function in self.stopped:
            raise UserCallFailed(self.stopped[function])
        if self.broken or self.proc is None or time.monotonic() >= self.deadline:
            self._out_of_time(function, case)
        blobs: list = []
        self.seq += 1
        request = dict(request, args=wire.encode(tuple(args), blobs), seq=self.seq)
        results = []
        try:
            limit = time.monotonic() + self.timeout
            try:
                self._send(wire.frame(request, blobs), min(limit, self.deadline))
            except _Timeout:
                if time.monotonic() < limit:  # the whole check's limit came first; the child was not reading
                    self._kill()
                    self._out_of_time(function, case)
                raise
            for k in range(count):
                limit = time.monotonic() + self.timeout
                try:
                    header, rblobs = self._receive(min(limit, self.deadline))
                except _Timeout:
                    if time.monotonic() < limit:  # the whole check's limit came first, while this call ran
                        self._kill()
                        self._out_of_time(function, case, running=function)
                    raise
                self.output.add(header["out"], header["lines"])
                if not header["ok"]:
                    self._raised(function, case, header)
                try:
                    results.append(self._decode(function, case, header, rblobs))
                except UserCallFailed:
                    if k < count - 1:  # the later replies are still on their way: a new process, not one
                        self._restart()  # whose next reply would answer this request instead of the next
                    raise
        except _Timeout:
            self._stop(function, case, "timeout",
                       f"did not return within {self.timeout:g} s on configuration {case} (an infinite loop?)")
        except _Died:
            how = self._how_it_ended()
            self._stop(function, case, "crash", f"closed its channel to the checker on configuration {case}"
                       if how is None else f"ended the process it ran in ({how}) on configuration {case}")
        except wire.WireError as exc:
            self._stop(function, case, "crash", f"broke the channel to the checker ({exc}) on configuration {case}")
        return results

    def _out_of_time(self, function: str, case: str, running: Optional[str] = None):
        """A call not made: the whole check's time is up (the first time: ``running`` was cut), or no process."""
        if self.broken is None:
            self.broken = f"not checked: the whole check took longer than {self.overall:g} s"
            self.cutoff = Cutoff(case, running)
        raise UserCallFailed(UserException(function, self.broken, None, case, kind="stopped")) from None

    def _raised(self, function: str, case: str, header: dict):
        kind, message = str(header.get("type"))[:80], str(header.get("message"))[:300]
        line, cell, source = header.get("line"), header.get("cell"), header.get("source")
        if header.get("stage") == "result" and type(line) is not int:  # it returned; sending the value failed
            raise UserCallFailed(UserException(function, f"returned a value that could not be sent back ({kind}: "
                                               f"{message})", None, case, kind="result"))
        raise UserCallFailed(UserException(function, f"{kind}: {message}", line if type(line) is int else None,
                                           case, source=source[:200] if isinstance(source, str) else None,
                                           cell=cell if type(cell) is int else None))

    def _decode(self, function: str, case: str, header: dict, blobs):
        try:
            return wire.decode_untrusted(header.get("value"), blobs, self.generation)
        except wire.WireError as exc:
            raise UserCallFailed(UserException(function, f"returned something that is not a result ({exc})",
                                               None, case, kind="result")) from None

    def _stop(self, function: str, case: str, kind: str, text: str):
        info = UserException(function, text, None, case, kind=kind)
        self.stopped[function] = info
        self._restart()
        raise UserCallFailed(info) from None


def _expect(header: dict, key: str, kind) -> None:
    if type(header.get(key)) is not kind:
        raise wire.WireError(f"reply field {key!r} is not a {kind.__name__}")


def call_user(box: Sandbox, function: str, case: str, *args, keep: bool = False):
    """``box.call(function, case, args, keep)``: the form the checks call the user's functions in."""
    return box.call(function, case, args, keep)


def call_perturbed(box: Sandbox, function: str, case: str, args: tuple, index: int, changes) -> list:
    """``box.call_perturbed(...)``: the user's forward on inputs that differ in one element each."""
    return box.call_perturbed(function, case, args, index, changes)
