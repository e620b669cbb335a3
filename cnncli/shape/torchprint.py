"""``shape --from``: the layers of a model from the text of PyTorch's ``print(model)``, without torch.

PyTorch prints a module as ``Name(args)``, and a container as ``Name(`` then one
line per child, ``(child): ...``, indented, then ``)``. :func:`parse_printed_model`
reads that text into :class:`~cnncli.shape.spec.LayerSpec` rows, one per module,
each remembering its line (for errors) and its dotted name (``features.0``).

Only a plain chain is read: ``nn.Sequential`` (nested too) and other containers'
children in the order printed (a note says that this is an assumption about
``forward()``). Modules cnncli does not know, containers that are evidently not
chains (a ``downsample`` or ``shortcut`` branch, a ``ModuleDict``) and text that
is not a printed model are refused with one line naming the module and its line.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from ..errors import CnncliError, InputError
from .spec import LayerSpec, make_layer

_LINE = re.compile(r"^(?P<indent>\s*)(?:\((?P<name>[^()]*)\):\s*)?(?:(?P<times>\d+)\s+x\s+)?"
                   r"(?P<type>[A-Za-z_][\w.]*)\((?P<rest>.*)$")
#: Control characters (C0 but tab, DEL, C1): print(model) never writes them, and a terminal would obey them.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
#: Parameter-free element-wise modules: shape and cost unchanged (one row each, as in the model).
NO_OPS = {"ReLU": "relu", "ReLU6": "relu", "LeakyReLU": "act", "GELU": "act", "SiLU": "act", "Sigmoid": "act",
          "Tanh": "act", "ELU": "act", "Hardswish": "act", "Hardsigmoid": "act", "Mish": "act", "Softplus": "act",
          "Softmax": "act", "LogSoftmax": "act", "Identity": "act", "Dropout": "dropout", "Dropout2d": "dropout"}
LAYERS = ("Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d", "Flatten",
          "Linear")
#: Children whose presence says the container adds a branch to its chain (ResNet's blocks).
_BRANCHES = ("downsample", "shortcut", "skip", "residual", "proj_shortcut")
_POSITIONAL = {
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
    "ConvTranspose2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
                        "groups", "bias", "dilation"),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "AdaptiveAvgPool2d": ("output_size",),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats", "bias"),
    "Flatten": ("start_dim", "end_dim"),
    "Linear": ("in_features", "out_features", "bias"),
}
#: Modules a printed model may expand to (repeats and containers counted): real models have a few
#: thousand at most; the limit keeps a forged '(0-9): 10000000000 x ReLU()' from filling memory.
MAX_MODULES = 10_000  # a 100,000-module model took 15 s and 1 GB to lay out
#: Containers nested in one another (real models: under 10).
MAX_DEPTH = 100
_IGNORED = {"padding_mode", "eps", "momentum", "track_running_stats", "return_indices", "inplace",
            "negative_slope", "approximate", "p", "dim", "alpha", "beta", "threshold", "min_val", "max_val"}


@dataclass
class _Node:
    """One printed module: its type, dotted name, arguments text, line, and children."""

    type: str
    path: str
    args: str
    line: int
    text: str
    children: List["_Node"] = field(default_factory=list)
    container: bool = False
    times: int = 1  # PyTorch's '(0-2): 3 x Module': the module stands for 3, expanded only once the size is checked


def _error(line: int, text: str, why: str, *fewer: str) -> InputError:
    """``--from line 2 '(0): Frob(3)': why``, the line's text, then ``fewer`` words, giving way to 80 columns."""
    return InputError.worded(f"--from line {line} '{text.strip()}': {why}",
                             *(f"--from line {line}: {w}" for w in (why, *fewer)))


def _split_args(text: str) -> List[str]:
    """Top-level comma-separated items of an argument list."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        items.append(text[start:].strip())
    return items


def _value(text: str):
    """A printed argument value: numbers, tuples, booleans, None, quoted or bare words."""
    if re.search(r"\d_\d", text):  # literal_eval reads 1_0 as 10; print(model) never writes it
        return text.strip()  # read as a word: the layer then says it cannot read the value
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip()  # bare words PyTorch prints unquoted: same, valid, zeros, reflect


def _arguments(node: _Node) -> Dict[str, object]:
    names = _POSITIONAL.get(node.type, ())
    values: Dict[str, object] = {}
    for i, item in enumerate(_split_args(node.args)):
        key, eq, value = item.partition("=")
        if eq and re.fullmatch(r"\s*\w+\s*", key):
            values[key.strip()] = _value(value)
        elif i < len(names):
            values[names[i]] = _value(item)
        else:
            raise _error(node.line, node.text, f"cannot read the argument {item!r} of {node.type}")
    return values


def _count(digits: str) -> Optional[int]:
    """A count as printed, or None past 4,000 digits (where int() refuses text; no model is near)."""
    return int(digits) if len(digits) <= 4000 else None


def _repeat(number: int, line: str, name: str, times_text: Optional[str]) -> int:
    """The ``N`` of ``(a-b): N x Module``, checked against the range it names (PyTorch prints ``N = b-a+1``)."""
    if times_text is None:
        return 1
    span = re.fullmatch(r"(\d+)-(\d+)", name)
    if span is None:
        raise _error(number, line, f"'{times_text} x' repeats a module, but '({name})' is not a range a-b")
    times, first, last = _count(times_text), _count(span.group(1)), _count(span.group(2))
    if times is None or first is None or last is None:
        raise _error(number, line, f"the model has over {MAX_MODULES:,} modules (cnncli's limit)")
    if times != last - first + 1:
        names = f"{last - first + 1}" if last >= first else "no"
        raise _error(number, line, f"'({name})' names {names} modules but the line repeats {times}")
    return times


def _read_tree(text: str) -> _Node:
    """The printed text as a tree of modules; refuses anything else.

    The model's size is checked as it is read, before anything is expanded: every
    module counts once per repeat of it and of its containers (MAX_MODULES at most),
    and containers nest MAX_DEPTH deep at most.
    """
    root: Optional[_Node] = None
    stack: List[Tuple[_Node, int]] = []  # open containers and the repeats of each (its own times its parents')
    modules = 0  # modules of the expanded model so far
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        control = _CONTROL.search(line)
        if control:  # never echoed: an escape sequence would act on the user's terminal
            raise InputError(f"--from line {number}: control character {control.group()!r} (print(model) has none)")
        if line.strip() == ")":
            if not stack:
                raise _error(number, line, "a closing ')' with no module open")
            node, _ = stack.pop()
            if stack:
                stack[-1][0].children.append(node)
            else:
                root = node
            continue
        match = _LINE.match(line)
        if match is None or (root is not None and not stack):
            raise _error(number, line, "not a line of PyTorch's print(model) output")
        parent = stack[-1][0] if stack else None
        name = (match.group("name") or "").strip()
        if parent is not None and not name:
            raise _error(number, line, "a child module without its '(name):' prefix")
        path = name if parent is None or not parent.path else f"{parent.path}.{name}"
        rest, times = match.group("rest"), _repeat(number, line, name, match.group("times"))
        if parent is None and times != 1:
            raise _error(number, line, "a repeated module at the top level")
        repeats = times * (stack[-1][1] if stack else 1)
        modules += repeats
        if modules > MAX_MODULES:
            raise _error(number, line, f"the model has over {MAX_MODULES:,} modules (cnncli's limit)")
        node = _Node(match.group("type"), path, "", number, line.strip(), times=times)
        if rest == "":  # Name( ... children ... )
            if len(stack) >= MAX_DEPTH:
                raise _error(number, line, f"containers nest over {MAX_DEPTH} deep (cnncli's limit)")
            node.container = True
            stack.append((node, repeats))
            continue
        if not rest.endswith(")"):
            raise _error(number, line, "an unbalanced line (PyTorch prints each module on one line)")
        node.args = rest[:-1]
        if parent is None:
            root = node
            continue
        parent.children.append(node)
    if stack:
        raise _error(stack[-1][0].line, stack[-1][0].text, "the module is never closed with ')'")
    if root is None:
        raise InputError("--from: no module found (expected the text of print(model))")
    return root


def _copies(node: _Node) -> List[_Node]:
    """A module and its repeats (``(0-2): 3 x ReLU()``), the repeats named ``0-2#2``, ``0-2#3``."""
    return [node] + [replace(node, path=f"{node.path}#{k + 2}") for k in range(node.times - 1)]


def _leaves(root: _Node, notes: List[str]) -> List[_Node]:
    """The modules of a chain, in order; refuses containers that are not one."""
    out: List[_Node] = []
    todo = [root]  # modules still to visit, the next one last (no recursion: nesting is bounded, not small)
    while todo:
        node = todo.pop()
        if not node.container:
            out.append(node)
            continue
        if node.type == "ModuleDict":
            raise _error(node.line, node.text, "a ModuleDict is not a chain (forward() picks its modules by name)")
        branches = [c for c in node.children if c.path.rsplit(".", 1)[-1].lower() in _BRANCHES]
        if branches:
            child = branches[0]
            # NOTE: the line quoted names the branch ('(downsample): Sequential('); the words stay few to fit 80 columns
            raise _error(child.line, child.text, "a branch off the main path: not a plain chain")
        if node.type != "Sequential" and node.children:
            notes.append(f"{node.type}{' ' + node.path if node.path else ''} (line {node.line}): its children are "
                         "taken in the order printed; print(model) does not show forward(), so a module used twice, "
                         "or a reshape done there, is not seen")
        todo.extend(reversed([copy for child in node.children for copy in _copies(child)]))
    return out


def _flag(args: Dict[str, object], name: str, default: bool, node: _Node) -> bool:
    """A boolean argument as PyTorch prints it (True or False); anything else is refused, not guessed."""
    value = args.get(name, default)
    if isinstance(value, bool):
        return value
    raise _error(node.line, node.text, f"cannot read {name}={value!r} (PyTorch prints True or False)")


def _pair_or_int(value, what: str, node: _Node):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value
    raise _error(node.line, node.text, f"cannot read {what}={value!r}")


def _spec(node: _Node, notes: List[str]) -> LayerSpec:
    """One printed module as a layer spec."""
    label = f"{node.path}: " if node.path else ""
    text = f"{label}{node.type}({node.args})"
    if node.type in NO_OPS:
        return replace(make_layer(NO_OPS[node.type], text=text), line=node.line)
    if node.type not in LAYERS:
        # NOTE: the 25 modules it reads do not fit one line; README's "shape --from" section lists them
        raise _error(node.line, node.text, f"unknown module {node.type!r} (README lists the known ones)",
                     f"unknown module {node.type!r} (README lists them)")
    a = _arguments(node)
    unknown = [k for k in a if k not in _POSITIONAL[node.type] and k not in _IGNORED]
    if unknown:
        # NOTE: the line is not quoted: with it the message cannot fit 80 columns (its line number finds it)
        raise InputError(f"--from line {node.line}: {node.type} argument {unknown[0]!r} is not one cnncli reads")
    kind, extra = None, {}
    if node.type in ("Conv2d", "ConvTranspose2d"):
        pad = a.get("padding", 0)
        if not isinstance(pad, str):
            pad = _pair_or_int(pad, "padding", node)
            pad = pad if isinstance(pad, int) else f"{pad[0]},{pad[1]}"
        kind = "conv" if node.type == "Conv2d" else "tconv"
        spec = make_layer(kind, f=_pair_or_int(a.get("kernel_size"), "kernel_size", node),
                          stride=_pair_or_int(a.get("stride", 1), "stride", node), pad=pad,
                          dilation=_pair_or_int(a.get("dilation", 1), "dilation", node),
                          filters=a.get("out_channels"), groups=a.get("groups", 1),
                          bias=_flag(a, "bias", True, node),
                          output_padding=(_pair_or_int(a.get("output_padding", 0), "output_padding", node)
                                          if kind == "tconv" else None))
        extra = {"in_channels": a.get("in_channels")}
    elif node.type in ("MaxPool2d", "AvgPool2d"):
        f = _pair_or_int(a.get("kernel_size"), "kernel_size", node)
        stride = a.get("stride")
        pad = _pair_or_int(a.get("padding", 0), "padding", node)
        spec = make_layer("pool", f=f, stride=f if stride is None else _pair_or_int(stride, "stride", node),
                          pad=pad if isinstance(pad, int) else f"{pad[0]},{pad[1]}",
                          dilation=_pair_or_int(a.get("dilation", 1), "dilation", node),
                          mode="max" if node.type == "MaxPool2d" else "average",
                          ceil_mode=_flag(a, "ceil_mode", False, node))
        extra = {"count_include_pad": _flag(a, "count_include_pad", True, node)}
        if node.type == "AvgPool2d" and "ceil_mode" not in a:
            note = ("AvgPool2d prints no ceil_mode (nor count_include_pad): PyTorch's default ceil_mode=False is "
                    "assumed")
            if note not in notes:
                notes.append(note)
    elif node.type == "AdaptiveAvgPool2d":
        if a.get("output_size") not in (1, (1, 1)):
            raise _error(node.line, node.text, "only AdaptiveAvgPool2d(1) (global average pooling) is read; "
                                               f"output_size={a.get('output_size')!r} depends on the input size")
        spec = make_layer("gap")
    elif node.type == "BatchNorm2d":
        spec = make_layer("bn")
        extra = {"in_channels": a.get("num_features"), "affine": _flag(a, "affine", True, node),
                 "bias": _flag(a, "bias", True, node)}
    elif node.type == "Flatten":
        if (a.get("start_dim", 1), a.get("end_dim", -1)) != (1, -1):
            raise _error(node.line, node.text, "only Flatten(start_dim=1, end_dim=-1) is read (it keeps the batch)")
        spec = make_layer("flatten")
    else:  # Linear
        spec = make_layer("fc", filters=a.get("out_features"), bias=_flag(a, "bias", True, node))
        extra = {"in_channels": a.get("in_features")}
    for key in ("in_channels",):
        if key in extra and not (isinstance(extra[key], int) and extra[key] >= 1):
            raise _error(node.line, node.text, f"cannot read the input size {extra[key]!r} of {node.type}")
    # NOTE: the text is set after make_layer: its refusals would quote it again (" in '0: Conv2d(...)'")
    return replace(spec, line=node.line, text=text, **extra)


def parse_printed_model(text: str, source: str = "--from") -> Tuple[List[LayerSpec], List[str]]:
    """Layer specs (one per module, in order) and notes from the text of PyTorch's ``print(model)``.

    Parameters
    ----------
    text : str
        What ``print(model)`` printed, e.g. ``Sequential(\\n  (0): Conv2d(1, 6, kernel_size=(5, 5), ...)\\n)``.
    source : str
        Where the text came from, for notes.

    Returns
    -------
    specs : list of LayerSpec
        Each with ``line`` and ``text`` (``features.0: Conv2d(...)``); ``in_channels``
        carries the channels the module was built for, checked when the stack is evaluated.
    notes : list of str
        Assumptions made (children of custom containers taken in print order, AvgPool2d's unprinted ceil_mode).

    Raises
    ------
    InputError
        Text that is not a printed model, a module cnncli does not know, a container that is
        not a plain chain, or an argument it cannot read; the message names the line and the module.
    HyperparameterError
        Values a layer refuses (e.g. an output padding not below the stride or the dilation).

    Examples
    --------
    >>> specs, notes = parse_printed_model('''Sequential(
    ...   (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))
    ...   (1): ReLU()
    ... )''')
    >>> [(s.kind, s.filters, s.in_channels, s.line) for s in specs]
    [('conv', 6, 1, 2), ('relu', None, None, 3)]
    """
    notes: List[str] = []
    leaves = _leaves(_read_tree(text), notes)
    if not leaves:
        raise InputError(f"{source}: the model has no modules")
    specs = []
    for node in leaves:
        try:
            specs.append(_spec(node, notes))
        except InputError:
            raise
        except CnncliError as exc:  # a value make_layer refuses: name the line
            raise exc.with_context((f"--from line {node.line} '{node.text}': ", f"--from line {node.line}: "))
    return specs, notes
