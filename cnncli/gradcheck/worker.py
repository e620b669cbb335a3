"""The child process of ``--impl``: loads the user's code and runs calls into it.

Started by :mod:`.sandbox` as a script (``python worker.py RFD WFD LIMITS``), so it
imports the standard library, numpy and :mod:`.wire` only, never cnncli: whatever
the user's code patches, exits or breaks here, the checker in the parent process
compares what arrives and decides. It reads requests on RFD and writes one reply
per request on WFD (frames of :mod:`.wire`). What the user's code writes on file
descriptors 1 and 2 goes to a temporary file (size-limited), returned in bytes
bounded per call with the count of lines; stdin is ``/dev/null``.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import json
import os
import signal
import sys
import tempfile
import tokenize
import types

if __name__ == "__main__":  # the folder of this script must not shadow the user's imports
    sys.path.pop(0)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import missing  # noqa: E402
    import wire  # noqa: E402
    sys.path.pop(0)
    del sys.modules["wire"], sys.modules["missing"]
else:  # imported by the tests
    from . import missing, wire

import numpy as np  # noqa: E402

#: Name of the user's module in the child (dataclasses and the like look themselves up in sys.modules).
MODULE = "cnncli_user_impl"
CLASSIC = ("zero_pad", "conv_single_step", "create_mask_from_window", "distribute_value",
           "conv_forward", "conv_backward", "pool_forward", "pool_backward")
_NUMERIC = "biuf"


class _State:
    pid = os.getpid()
    store: dict = {}
    next_id = 0
    module = None
    files: dict = {}  # the user's code filenames -> cell number (None for a .py file)
    sources: dict = {}  # cell number (None: the file) -> its lines, for the text of a failing line
    missing: list = []
    recursion = sys.getrecursionlimit()
    cwd = os.getcwd()
    out_bytes = 16384
    cap = -1
    stdout = stderr = None


# ---------------------------------------------------------------- output capture

def _point_output() -> None:
    """Point fds 1 and 2 and sys.stdout/stderr at the capture file again (the user may have moved them)."""
    os.dup2(_State.cap, 1)
    os.dup2(_State.cap, 2)
    if _State.stdout is None or _State.stdout.closed or _State.stderr.closed:  # the user's code closed one
        _State.stdout, _State.stderr = (io.TextIOWrapper(io.FileIO(fd, "wb", closefd=False), encoding="utf-8",
                                                         errors="replace", write_through=True) for fd in (1, 2))
    sys.stdout, sys.stderr = _State.stdout, _State.stderr


def _take_output():
    """``(text, lines)``: the first bytes written since the last call, and how many lines in all."""
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, _State.stdout, _State.stderr):
        try:
            s.flush()
        except BaseException:  # closed or replaced by the user's code: nothing of ours is pending there
            pass
    fd = _State.cap
    size = os.fstat(fd).st_size
    if not size:
        return "", 0
    os.lseek(fd, 0, os.SEEK_SET)
    head = os.read(fd, _State.out_bytes) if size else b""
    lines, last = head.count(b"\n"), head[-1:]
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    if size and last != b"\n":
        lines += 1
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return head.decode("utf-8", errors="replace"), lines


# ---------------------------------------------------------------- results

def _what(value) -> str:
    try:
        name = type(value).__name__
        return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"
    except BaseException:
        return "an object"


def _numeric(value):
    """An ndarray of a plain numeric dtype for ``value``, or None."""
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        arr = arr.astype(np.float64)
    return arr if arr.dtype.kind in _NUMERIC else None


def _keep(value, keep: bool, what: str) -> dict:
    if not keep:
        return {"t": "opaque", "what": what, "id": None}
    _State.next_id += 1
    _State.store[_State.next_id] = value
    return {"t": "opaque", "what": what, "id": _State.next_id}


def encode_result(value, blobs: list, keep: bool, depth: int = 0):
    """Encode a user's return value; what cannot be sent stays here (``keep``) or is described."""
    t = type(value)
    if value is None or t is bool:
        return value
    if t is int:
        if -(1 << 63) <= value < (1 << 63):
            return {"t": "int", "v": value}
        return {"t": "opaque", "what": f"an int of about {int(value.bit_length() * 0.30103) + 1} digits", "id": None}
    if t is float:
        return {"t": "float", "v": value.hex()}
    if isinstance(value, np.generic) and value.dtype.kind in _NUMERIC:
        return wire._array(value, blobs)
    if t is np.ndarray and value.dtype.kind in _NUMERIC:
        return wire._array(value, blobs)
    if t is tuple and depth == 0 and len(value) <= wire.MAX_ITEMS:
        return {"t": "tuple", "v": [encode_result(v, blobs, keep, 1) for v in value]}
    if keep and depth > 0:  # the cache of a forward: it goes back to the user's backward as it is
        return _keep(value, True, _what(value))
    if t is str:
        return {"t": "opaque", "what": "a str", "id": None}
    if t is list and depth == 0 and len(value) <= wire.MAX_ITEMS:
        try:
            arr = _numeric(value)
        except BaseException:
            arr = None
        if arr is None or arr.ndim == 0:
            return {"t": "list", "v": [encode_result(v, blobs, keep, 1) for v in value]}
        return wire._array(arr, blobs)
    if t in (tuple, dict, set, list) or isinstance(value, (types.FunctionType, types.ModuleType)):
        return {"t": "opaque", "what": _what(value), "id": None}
    try:  # what np.asarray(x, float) makes of it: __array__, __float__, nested sequences
        arr = _numeric(value)
    except BaseException:
        arr = None
    if arr is None:
        what = f"an array of {value.dtype}" if isinstance(value, np.ndarray) else _what(value)
        return {"t": "opaque", "what": what, "id": None}
    return wire._array(arr, blobs)


# ---------------------------------------------------------------- loading and calling

def _where(exc: BaseException):
    """``(line, cell)`` of the innermost frame of the user's code in the traceback of ``exc``."""
    steps, tb = [], exc.__traceback__
    while tb is not None:
        steps.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return _innermost(steps)


def _innermost(steps):
    """``(line, cell)`` of the last of ``(file name, line)`` steps (outermost first) in the user's code."""
    for name, line in reversed(steps):
        if name in _State.files:
            return line, _State.files[name]
    return None, None


def _one_line(exc: BaseException) -> str:
    try:
        text = str(exc).strip().splitlines()
    except BaseException:
        return "(no message)"
    return text[0][:300] if text else "(no message)"


def _failure(exc: BaseException) -> dict:
    line, cell = _where(exc)
    try:
        name = type(exc).__name__[:80]
    except BaseException:
        name = "BaseException"
    return {"ok": False, "type": name, "message": _one_line(exc), "line": line, "cell": cell,
            "source": _source_line(cell, line)}


def _source_line(cell, line):
    """The text of the user's ``line`` (of notebook ``cell``), stripped; None when unknown."""
    lines = _State.sources.get(cell)
    if line is None or lines is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1].strip()[:200] or None


def _load(req: dict) -> dict:
    # Absolute, as the code objects' file names are: Python 3.11's spec_from_file_location makes a relative
    # location absolute, and _where and MissingFinder look frames up by that name
    path = os.path.abspath(req["path"])
    _State.progress = req.get("progress")  # see _where_now
    directory = os.path.dirname(path)
    if directory not in sys.path:  # helpers next to the notebook (cnn_utils.py, ...) import as they would there
        sys.path.append(directory)
    module = types.ModuleType(MODULE)
    module.__file__ = path
    sys.modules[MODULE] = module
    notes = []
    try:  # a .py file or an export: lines are the file's, decoded as Python decodes them (a BOM, a coding line)
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            encoding = tokenize.detect_encoding(io.BytesIO(raw).readline)[0]
        except SyntaxError:
            encoding = "utf-8"
        _State.sources[None] = raw.decode(encoding, errors="replace").split("\n")
    except OSError:
        pass
    if req.get("cells") is None:
        _State.files[path] = None
        spec = importlib.util.spec_from_file_location(MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # the user's module-level code: anything can happen
            return _failure(exc)
    else:
        for cell in req["cells"]:
            _State.files[cell["filename"]] = cell["number"]
            if cell["number"] is not None:
                _State.sources[cell["number"]] = cell["text"].split("\n")
        for cell in req["cells"]:
            tree = ast.parse(cell["text"], cell["filename"])
            ast.increment_lineno(tree, cell["offset"])
            for i in cell["keep"]:
                stmt = tree.body[i]
                try:
                    exec(compile(ast.Module([stmt], []), cell["filename"], "exec"), module.__dict__)
                except BaseException as exc:
                    f = _failure(exc)
                    notes.append(f"{_cell_line(cell, stmt.lineno)} raised {f['type']}: {f['message']}; "
                                 "the check goes on without it")
    _State.module = module
    names = module.__dict__
    defined = [n for n in CLASSIC
               if n in names and callable(names[n]) and getattr(names[n], "__module__", None) == MODULE]
    return {"ok": True, "defined": defined, "notes": notes, "missing": list(_State.missing)}


def _cell_line(cell: dict, line: int) -> str:
    return f"line {line}" if cell["number"] is None else f"cell {cell['number']}, line {line}"


def _call(req: dict, blobs) -> tuple:
    fn = _State.module.__dict__[req["fn"]]
    args = wire.decode_trusted(req["args"], blobs, _State.store)
    try:
        value = fn(*args)
    except BaseException as exc:  # sys.exit, KeyboardInterrupt, GeneratorExit, custom BaseException: all reported
        return _failure(exc), []
    finally:
        _guard_fork()
    return _result(value, bool(req.get("keep")))


def _map(req: dict, blobs, wfd: int) -> None:
    """Call ``fn`` once per change of one element of one argument; one reply per call, stop at a failure.

    The numerical gradients call the user's forward twice per perturbed element: streaming
    the replies lets this process run the next call while the checker reads the last one.
    """
    fn = _State.module.__dict__[req["fn"]]
    base = wire.decode_trusted(req["args"], blobs, _State.store)
    which = req["index"]
    for flat, value in req["changes"]:
        args = copy.deepcopy(base)  # the user's code may write into its inputs
        args[which].reshape(-1)[flat] = float.fromhex(value)
        try:
            reply, out = _result(fn(*args), False)
        except BaseException as exc:
            _guard_fork()
            reply, out = _failure(exc), []
        _guard_fork()
        _send(wfd, reply, out, req.get("seq"))
        if not reply["ok"]:
            return
        sys.setrecursionlimit(_State.recursion)
        _point_output()


def _result(value, keep: bool):
    out = []
    try:
        return {"ok": True, "value": encode_result(value, out, keep)}, out
    except BaseException as exc:  # after the function returned: its value could not be sent (800 MB, say)
        return dict(_failure(exc), stage="result"), []


def _send(wfd: int, reply: dict, out, seq) -> None:
    sys.setrecursionlimit(_State.recursion)
    text, lines = _take_output()
    reply["out"], reply["lines"], reply["seq"] = text, lines, seq
    try:
        data = wire.frame(reply, out)
    except BaseException as exc:  # e.g. a header the user's json patch broke, or a value too large to frame
        failed = dict(_failure(exc), out="", lines=lines, seq=seq)
        data = wire.frame(dict(failed, stage="result") if reply.get("ok") else failed)  # a value, not an error
    view = memoryview(data)
    while view:
        view = view[os.write(wfd, view):]


def _guard_fork() -> None:
    """A process forked by the user's code must never answer for us."""
    if os.getpid() != _State.pid:
        os._exit(0)


def _serve(rfd: int, wfd: int) -> None:
    while True:
        try:
            n = int.from_bytes(wire.read_exact(rfd, 8), "big")
            header, blobs = wire.split_body(wire.read_exact(rfd, n))
        except EOFError:
            os._exit(0)
        op = header.get("op")
        sys.setrecursionlimit(_State.recursion)  # the user may have lowered it: our own code needs some depth
        try:
            os.chdir(_State.cwd)
        except OSError:
            pass
        _point_output()
        out = []
        if op == "load":
            reply = _load(header)
            _guard_fork()
        elif op == "call":
            reply, out = _call(header, blobs)
        elif op == "map":
            _map(header, blobs, wfd)
            continue
        elif op == "forget":
            _State.store.clear()
            reply = {"ok": True}
        else:
            os._exit(0)
        _send(wfd, reply, out, header.get("seq"))


def _limit(limits: dict) -> None:
    try:
        import resource
    except ImportError:  # not on this OS: the wall-time limit still holds
        return
    for name, value in (("RLIMIT_AS", limits.get("memory")), ("RLIMIT_FSIZE", limits.get("file")),
                        ("RLIMIT_CORE", 0)):
        if value is not None and hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (value, value))
            except (ValueError, OSError):
                pass


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _where_now(signum, frame) -> None:
    """Write where the user's code is running now (``{"line", "cell"}``) to the load's progress file."""
    steps = []
    while frame is not None:  # innermost first: reversed for _innermost
        steps.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    line, cell = _innermost(steps[::-1])
    path = getattr(_State, "progress", None)
    if path and line is not None:
        try:
            with open(path, "w") as fh:
                fh.write(json.dumps({"line": line, "cell": cell}))
        except OSError:
            pass


def main(argv) -> None:
    rfd, wfd, limits = int(argv[1]), int(argv[2]), json.loads(argv[3])
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends this process
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the output limit a write fails instead
    _limit(limits)
    _State.out_bytes = int(limits.get("out", _State.out_bytes))
    cap = tempfile.TemporaryFile(buffering=0)
    _State.cap = cap.fileno()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdin = open(os.devnull)
    _point_output()
    sys.meta_path.append(missing.MissingFinder(_State.files, _State.missing))
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _where_now)  # the checker asks where a load that took too long is
    os.write(wfd, wire.frame({"ok": True, "out": "", "lines": 0, "seq": 0}))  # ready: the checker's startup wait ends
    _serve(rfd, wfd)


if __name__ == "__main__":
    main(sys.argv)
