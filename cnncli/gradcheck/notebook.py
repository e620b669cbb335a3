"""Reading the user's file into what the child should run: a ``.py`` file, an nbconvert export, a notebook.

- A plain ``.py`` file runs whole, as ``import`` would run it.
- A notebook (``.ipynb``, nbformat 4 or 3) or an nbconvert ``.py`` export (cells
  marked ``# In[ ]:``) runs as the notebook would, top to bottom, but only what
  defines the functions: imports, function and class definitions, and simple
  assignments (values that call nothing but numpy and math). Test calls, prints,
  plots, ``%magics``, ``!shell`` lines and ``get_ipython()`` calls are skipped
  (a note counts them). A cell that does not parse is skipped; the functions it
  defines are reported "not checked: cell N has a syntax error at line L".

Notebooks are read with the standard library's json: a notebook is a JSON
document whose code cells carry their source, which is all the checker needs.
nbformat would add validation against the schema (and jsonschema, traitlets and
jupyter_core as dependencies) without telling us anything more about the code.
Nothing here runs the user's code; it only parses it (:mod:`ast`).
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..errors import ImplError
from .userfile import CLASSIC

#: A notebook larger than this is refused (embedded images make big notebooks, but not this big).
MAX_NOTEBOOK_BYTES = 100 << 20
_EXPORT_CELL = re.compile(r"^# In\[[\s\d]*\]:\s*$", re.MULTILINE)
_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)", re.MULTILINE)
#: What changes the bracket and string state of a line (see :func:`_scan`), outside and inside a triple quote.
_SPECIAL = re.compile(r"[#()\[\]{}\"'\\]")
_IN_QUOTE = re.compile(r"[\"'\\]")
_MAGIC = re.compile(r"^(\s*)(?:[%!?]|[\w.]+\?\??\s*$|[\w.,\s()\[\]]+=\s*[%!])")
#: Cell magics whose body is Python (the body is read; others skip the cell).
_PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")
#: Names an assignment's value may call (besides attributes of numpy and math).
_SAFE_CALLS = {"int", "float", "bool", "str", "tuple", "list", "dict", "set", "frozenset", "range", "len",
               "abs", "min", "max", "round", "slice", "sum", "sorted", "zip", "enumerate"}
_NUMERIC_MODULES = ("numpy", "math")


@dataclass(frozen=True)
class Plan:
    """What the child should run, and what the checker already knows about the file.

    Attributes
    ----------
    request : dict
        The worker's ``load`` request: ``path``, and ``cells`` (None for a plain ``.py``).
    notes : tuple of str
        Skipped statements and magics, duplicate definitions, cells that do not parse.
    unchecked : dict
        Function name -> ``(cell, line, message)`` for functions whose last
        definition is in a cell that does not parse.
    """

    request: dict
    notes: Tuple[str, ...] = ()
    unchecked: Dict[str, Tuple[int, int, str]] = field(default_factory=dict)


@dataclass
class _Cell:
    number: int  # as the user counts: the notebook's cells from the top, markdown included; an export's In[] blocks
    text: str
    offset: int = 0  # lines before the cell in the file (an export: the line numbers are the file's)


def plan_impl(path) -> Plan:
    """Read ``path`` and decide what of it the child runs.

    Raises
    ------
    ImplError
        Missing file, a folder, neither ``.py`` nor ``.ipynb``; a notebook that is
        not JSON, not a notebook, or has no code cells; a plain ``.py`` file that
        does not parse (with its line).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith((".py", ".ipynb")))[:3]
        example = ", ".join(os.path.join(path, f) for f in found) if found else os.path.join(path, "my_conv.py")
        raise ImplError(f"--impl {path!r} is a folder; give a .py file, e.g. {example}")
    if not os.path.isfile(path):
        raise ImplError(f"--impl {path!r}: no such file (give a .py or .ipynb file)")
    if path.endswith(".ipynb"):
        return _plan_cells(path, _read_notebook(path), export=False)
    if not path.endswith(".py"):
        raise ImplError(f"--impl {path!r} is not a .py file or a notebook (.ipynb)")
    try:
        text = _read_source(path)
    except OSError as exc:
        raise ImplError(f"--impl {path!r}: cannot read it ({exc.strerror})") from None
    if _EXPORT_CELL.search(text):
        return _plan_cells(path, _export_cells(text), export=True)
    return _plan_module(path, text)


def _read_source(path: str) -> str:
    """A ``.py`` file's text decoded as Python decodes it (a UTF-8 BOM, a PEP 263 coding line), bad bytes replaced."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:  # a coding line naming no codec: Python refuses the file; read what UTF-8 can
        encoding = "utf-8"
    return raw.decode(encoding, errors="replace")


def _plan_module(path: str, text: str) -> Plan:
    try:
        tree = ast.parse(text, path)
    except SyntaxError as exc:
        where = f":{exc.lineno}" if exc.lineno else ""  # none for a NUL byte ("cannot contain null bytes")
        raise ImplError(f"{path}{where}: syntax error: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ImplError(f"{path}: cannot be parsed ({type(exc).__name__})") from None
    defs: Dict[str, List[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in CLASSIC:
            defs.setdefault(node.name, []).append(f"line {node.lineno}")
    return Plan({"path": path, "cells": None}, tuple(_duplicate_notes(defs, "lines")))


def _read_notebook(path: str) -> List[_Cell]:
    size = os.path.getsize(path)
    if size > MAX_NOTEBOOK_BYTES:
        raise ImplError(f"--impl {path!r} is {size} bytes; a notebook may have {MAX_NOTEBOOK_BYTES >> 20} MiB")
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except UnicodeDecodeError:
        raise ImplError(f"--impl {path!r} is not a notebook: not UTF-8 text") from None
    except ValueError as exc:
        # json's own words ("Expecting property name enclosed in double quotes") would not fit the line
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise ImplError.worded(f"--impl {path!r} is not a notebook: not JSON{where}",
                               f"--impl {path!r} is not notebook JSON{where}") from None
    except (OSError, RecursionError) as exc:
        raise ImplError(f"--impl {path!r}: cannot read it ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise ImplError(f"--impl {path!r} is not a notebook: its JSON has no cells")
    version = doc.get("nbformat")
    if version == 3:  # nbformat 3: cells inside worksheets, source under "input"
        sheets = doc.get("worksheets")
        raw = [c for s in sheets if isinstance(s, dict) and isinstance(s.get("cells", []), list)
               for c in s.get("cells", [])] if isinstance(sheets, list) else None
        key = "input"
    else:
        raw, key = doc.get("cells"), "source"
    if version in (3, 4) and not isinstance(raw, list):
        raise ImplError(f"--impl {path!r} is not a notebook: its JSON has no cells")
    if version not in (3, 4):
        raise ImplError.worded(f"--impl {path!r} is not an nbformat 3 or 4 notebook (nbformat: {version!r})",
                               f"--impl {path!r} has nbformat {version!r}; expected 3 or 4")
    cells = []
    for number, c in enumerate(raw, 1):
        if not isinstance(c, dict) or c.get("cell_type") != "code":
            continue
        source = c.get(key, "")
        text = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else source
        if isinstance(text, str) and text.strip():
            cells.append(_Cell(number, text))
    if not cells:
        raise ImplError(f"--impl {path!r} has no code cells, so no classic function")
    return cells


def _export_cells(text: str) -> List[_Cell]:
    """The ``# In[ ]:`` blocks of an nbconvert export, numbered in order, with their line offsets."""
    marks = [m.start() for m in _EXPORT_CELL.finditer(text)]
    bounds = [0] + marks + [len(text)]
    cells = []
    for start, end in zip(bounds, bounds[1:]):
        chunk = text[start:end]
        if chunk.strip():
            cells.append(_Cell(len(cells) + 1 if start else 0, chunk, text.count("\n", 0, start)))
    return cells


def _unmagic(text: str) -> Tuple[Optional[str], int]:
    """The cell's Python text with IPython syntax turned into ``pass`` (same lines); None if the cell is not Python."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    skipped = 0
    if lines[first].lstrip().startswith("%%"):
        if not lines[first].lstrip().startswith(_PYTHON_CELL_MAGICS):
            return None, 1
        lines[first], skipped = "", 1
    state = (0, None, False)  # open brackets, open triple quote, a final backslash
    for i, line in enumerate(lines):
        # IPython reads a magic only where a statement starts: a line inside brackets or a string, or after a
        # backslash, is Python (`!= 0):` continuing a condition, `%d` in a docstring)
        m = _MAGIC.match(line) if state == (0, None, False) else None
        if m and not line.lstrip().startswith("#"):
            lines[i] = m.group(1) + "pass"
            skipped += 1
            continue
        state = _scan(line, state[:2])
    return "\n".join(lines), skipped


def _scan(line: str, state: tuple) -> tuple:
    """``(depth, quote, continued)`` after ``line`` from ``(depth, quote)`` before it: the brackets still
    open, the triple quote still open (or None), and whether a backslash outside strings ends it."""
    depth, quote = state
    i, n = 0, len(line)
    while i < n:
        found = (_IN_QUOTE if quote is not None else _SPECIAL).search(line, i)  # jump over plain text
        if found is None:
            break
        i = found.start()
        c = line[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i, quote = i + 3, None
                continue
        elif c == "#":
            break
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c in "\"'":
            if line.startswith(c * 3, i):
                i, quote = i + 3, c * 3
                continue
            i += 1
            while i < n and line[i] != c:  # a one-line string
                i += 2 if line[i] == "\\" else 1
        elif c == "\\" and i == n - 1:
            return depth, quote, True
        i += 1
    return depth, quote, False


def _plan_cells(path: str, cells: List[_Cell], export: bool) -> Plan:
    numeric: set = set()  # names bound to numpy, math or their attributes: assignments may call them
    run, notes, magics, skipped_in, broken = [], [], 0, [], []
    last: Dict[str, Tuple[str, object]] = {}  # function -> ("ok", where) | ("syntax", (cell, line, message))
    defs: Dict[str, List[str]] = {}
    skipped = 0
    for cell in cells:
        text, n_magic = _unmagic(cell.text)
        magics += n_magic
        if text is None:
            continue
        try:
            tree = ast.parse(text, path)
        except SyntaxError as exc:
            line = (exc.lineno or 1) + cell.offset
            message = f"cell {cell.number} has a syntax error at line {line}: {exc.msg}"
            names = [n for n in _DEF.findall(text) if n in CLASSIC]
            for name in names:
                last[name] = ("syntax", (cell.number, line, message))
            broken.append((cell.number, message, names))
            continue
        except (ValueError, RecursionError, MemoryError) as exc:
            notes.append(f"cell {cell.number} cannot be parsed ({type(exc).__name__}); the cell was skipped")
            continue
        keep = []
        for i, node in enumerate(tree.body):
            if _keeps(node, numeric):
                keep.append(i)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in CLASSIC:
                    where = f"cell {cell.number}"
                    last[node.name] = ("ok", where)
                    defs.setdefault(node.name, []).append(where)
            elif not isinstance(node, (ast.Pass, ast.Global, ast.Nonlocal)):
                skipped += 1
                if cell.number not in skipped_in:
                    skipped_in.append(cell.number)
        if keep:
            run.append({"number": None if export else cell.number, "text": text, "offset": cell.offset,
                        "filename": path if export else f"<cell {cell.number}>", "keep": keep})
    if skipped:
        where = ", ".join(map(str, skipped_in[:8])) + (", ..." if len(skipped_in) > 8 else "")
        notes.insert(0, f"ran the definitions of the notebook; skipped {skipped} statement(s) that are not "
                        f"definitions (test calls, prints, plots; cells {where})")
    if magics:
        notes.insert(1 if skipped else 0, f"skipped {magics} IPython line(s) (%magics, !shell, ?help)")
    notes.extend(_duplicate_notes(defs, "cells"))
    unchecked = {name: info for name, (state, info) in last.items() if state == "syntax"}
    # a broken cell whose functions are all reported "not checked" needs no note besides their rows
    for number, message, names in broken:
        later = [n for n in names if unchecked.get(n, (None,))[0] != number]
        if not names or later:
            notes.append(f"{message}; the cell was skipped" +
                         (f" ({', '.join(later)} checked from a later cell)" if later else ""))
    return Plan({"path": path, "cells": run}, tuple(notes), unchecked)


def _duplicate_notes(defs: Dict[str, List[str]], unit: str) -> List[str]:
    notes = []
    for name in CLASSIC:
        where = defs.get(name, [])
        if len(where) > 1:
            places = ", ".join(w.split(" ", 1)[1] for w in where[:-1]) + " and " + where[-1].split(" ", 1)[1]
            notes.append(f"{name} is defined {len(where)} times ({unit} {places}): the last one ({where[-1]}) "
                         "is checked")
    return notes


def _keeps(node: ast.stmt, numeric: set) -> bool:
    """Whether a top-level statement defines something (and records the names bound to numpy/math)."""
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name.split(".")[0] in _NUMERIC_MODULES:
                numeric.add(a.asname or a.name.split(".")[0])
        return True
    if isinstance(node, ast.ImportFrom):
        if (node.module or "").split(".")[0] in _NUMERIC_MODULES:
            numeric.update(a.asname or a.name for a in node.names)
        return True
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return True  # a docstring or a string left as a comment: runs nothing, so it is not a skipped test call
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        # NOTE: only names are bound: `plt.rcParams[...] = ...` or `obj.x = ...` configure, they define nothing
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.Store))
                    for t in targets for n in ast.walk(t))
        return names and (node.value is None or _simple(node.value, numeric))
    if isinstance(node, ast.Try):  # try: import x / except ImportError: x = None
        body = node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        return all(isinstance(s, ast.Pass) or _keeps(s, numeric) for s in body)
    return False


def _simple(value: ast.expr, numeric: set) -> bool:
    """A value that calls nothing but numpy, math and a few builtins (no test call, no plot); lambdas don't run."""
    todo = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        if isinstance(node, ast.Call):
            root = node.func
            while isinstance(root, ast.Attribute):
                root = root.value
            if not isinstance(root, ast.Name):
                return False
            if not (root.id in numeric or (root.id in _SAFE_CALLS and isinstance(node.func, ast.Name))):
                return False
        todo.extend(ast.iter_child_nodes(node))
    return True
