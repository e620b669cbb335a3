"""How cnncli's commands parse and show their parameters, on top of Typer's classes.

Typer 0.29 shows every flag with a type (``--json <bool>``, as if it took a value), writes
required arguments as ``{SOURCE}`` in usage lines, and converts every value through a
pydantic ``TypeAdapter`` (importing pydantic costs more than the rest of a ``shape`` run).
cnncli's parameters are only ``str``, ``int``, ``float``, ``bool`` and lists of ``str``, so
:class:`CnncliCommand` gives them the shell's conventions (``SOURCE``, ``[SOURCE]``, flags
without a value) and converts them with the built-ins; any other annotation keeps Typer's
own behaviour. Unknown options get the nearest real ones suggested (:func:`suggest_options`).
"""

from __future__ import annotations

import difflib
import math
from typing import List, Sequence

from typer import BadParameter
from typer.core import TyperArgument, TyperCommand, TyperOption

from ..errors import fits

_SCALARS = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


class _Builtin:
    """Typer's runtime coercion contract (``coerce(value, param, ctx)``) with int()/float()/str()."""

    def __init__(self, kind: type, many: bool):
        self.kind, self.many = kind, many

    def coerce(self, value, param, ctx):
        if value is None:
            return () if self.many else None
        if self.many:
            return [self._one(v, param, ctx) for v in value]
        return self._one(value, param, ctx)

    def _one(self, value, param, ctx):
        if isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool)):
            return value
        if self.kind is bool or not isinstance(value, str):
            raise BadParameter(f"{value!r} is not {_SCALARS[self.kind]}", ctx=ctx, param=param)
        if self.kind in (int, float) and "_" in value:  # int() reads 2_0 as 20: a typo, more likely than not
            raise _bad(param, ctx, f"{value!r}: write numbers with digits only (no '_')",
                       f"{value!r}: digits only (no '_')")
        if self.kind in (int, float) and not value.isascii():  # int()/float() read '\uff13', '\u0663' too
            raise _bad(param, ctx, f"{value!r}: write numbers with the digits 0-9", f"{value!r}: use the digits 0-9")
        try:
            number = self.kind(value.strip())
        except ValueError:
            raise BadParameter(f"{value!r} is not {_SCALARS[self.kind]}", ctx=ctx, param=param) from None
        if self.kind is float:
            _representable(number, value, param, ctx)
        return number


def _representable(number: float, text: str, param, ctx) -> None:
    """Refuse a number float64 cannot hold: float() reads 1e-400 as 0.0 and 1e400 as inf, and a refusal
    of the range would then name a value that was never written (``--timeout 0``)."""
    mantissa = text.strip().lower().partition("e")[0]
    if number == 0 and any(c in "123456789" for c in mantissa):
        raise _bad(param, ctx, f"{text!r} reads as 0 in float64 (its smallest is about 5e-324)",
                   f"{text!r} reads as 0 in float64")
    if math.isinf(number) and "inf" not in text.lower():
        raise _bad(param, ctx, f"{text!r} is beyond float64 (its largest is about 1.8e308)",
                   f"{text!r} is beyond float64")


def _bad(param, ctx, *wordings: str) -> BadParameter:
    """A BadParameter in the first of ``wordings`` whose line fits 80 columns with click's
    ``Invalid value for '--eps': `` before it (else the first, whole: see :func:`cnncli.errors.first_fitting`)."""
    hint = f"Invalid value for {param.get_error_hint()}: " if param is not None else ""
    return BadParameter(next((w for w in wordings if fits(hint + w)), wordings[0]), ctx=ctx, param=param)


def _builtin_for(param) -> _Builtin | None:
    """A built-in conversion for this parameter's annotation, or None (then Typer's own is used)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None or desc.file_annotation is not None or desc.is_choice or getattr(param, "min", None) is not None \
            or getattr(param, "max", None) is not None:
        return None
    annotation = desc.annotation
    if annotation in _SCALARS:
        return _Builtin(annotation, many=False)
    if desc.is_list and getattr(annotation, "__args__", None) == (str,):
        return _Builtin(str, many=True)
    return None


def _runtime_param(param, typers_own):
    """The parameter's converter, built once: a :class:`_Builtin` where one applies, else ``typers_own()``."""
    if param._runtime_param is None:
        param._runtime_param = _builtin_for(param) or typers_own()
    return param._runtime_param


class _Option(TyperOption):
    def get_runtime_param(self):
        return _runtime_param(self, super().get_runtime_param)

    def display_type_rich(self, ctx):
        # A flag takes no value: show none (`--json`, not `--json <bool>`).
        return None if self.is_flag else super().display_type_rich(ctx)


class _Argument(TyperArgument):
    def get_runtime_param(self):
        return _runtime_param(self, super().get_runtime_param)

    def display_type_rich(self, ctx):
        return None if self.metavar is not None else super().display_type_rich(ctx)  # SOURCE says what it is

    def _usage_display_name(self) -> str:
        # The shell's convention (click's, POSIX usage): SOURCE required, [SOURCE] optional, NAME... repeated.
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


def adopt(params) -> list:
    """Give Typer's parameter objects cnncli's display and conversion (in place); returns them."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


class CnncliCommand(TyperCommand):
    """A Typer command whose parameters follow :func:`adopt`."""

    def get_params(self, ctx):
        return adopt(super().get_params(ctx))


# PyTorch's names for cnncli's options: suggested, not accepted (README, "Options and PyTorch's names").
TORCH_NAMES = {
    "--kernel-size": "--f", "--kernel_size": "--f", "--kernel": "--f", "-k": "--f", "--window": "--f",
    "--padding": "--pad", "--in-channels": None, "--out-channels": "--filters", "--out_channels": "--filters",
    "--ceil_mode": "--ceil-mode", "--count_include_pad": "--count-include-pad", "--weight": "--weights",
    "--pool": "--layer", "--conv": "--layer", "--kind": "--layer",
    # the keys of a LAYER_SPEC (conv:f=3,s=2,p=1,d=1,c=8,g=1)
    "-s": "--stride", "-p": "--pad", "-d": "--dilation", "-c": "--filters", "-g": "--groups",
}


def suggest_options(name: str, known: Sequence[str]) -> List[str]:
    """The options of ``known`` a person who typed ``name`` most likely meant, best first.

    Parameters
    ----------
    name : str
        What was typed (``-f``, ``--kernel-size``, ``--strid=2``).
    known : sequence of str
        The command's option names.

    Returns
    -------
    list of str
        At most three of ``known``: PyTorch's name or a LAYER_SPEC key mapped to cnncli's,
        ``-x`` for ``--x``, ``_`` for ``-``, a prefix, then close spellings; empty if none.

    Examples
    --------
    >>> suggest_options("-f", ["--f", "--stride", "--filters"])
    ['--f']
    >>> suggest_options("--kernel-size", ["--f", "--stride"])
    ['--f']
    >>> suggest_options("--strid", ["--f", "--stride", "--pad"])
    ['--stride']
    """
    known = list(dict.fromkeys(known))
    found: List[str] = []
    bare = name.split("=", 1)[0]
    if bare in TORCH_NAMES and TORCH_NAMES[bare] in known:
        found.append(TORCH_NAMES[bare])
    if bare.startswith("-") and not bare.startswith("--") and "-" + bare in known:
        found.append("-" + bare)  # -f for --f
    spelled = "--" + bare.lstrip("-").replace("_", "-")
    if spelled in known and spelled != bare:
        return list(dict.fromkeys(found + [spelled]))  # --ceil_mode for --ceil-mode: nothing else is meant
    if len(spelled) > 3:
        found += [k for k in known if k.startswith(spelled)]  # --str for --stride
        found += [k for k in known if spelled.startswith(k) and len(k) > 4]  # --padding for --pad
    # Compared without the dashes, which would make any two long options look alike.
    words = {k[2:]: k for k in known if k.startswith("--")}
    found += [words[w] for w in difflib.get_close_matches(bare.lstrip("-"), list(words), n=3, cutoff=0.7)]
    return list(dict.fromkeys(found))[:3]


def choices(*values: str):
    """A shell-completion callback offering ``values`` (Typer's ``autocompletion=``)."""

    def complete(incomplete: str) -> List[str]:
        return [v for v in values if v.startswith(incomplete.lower())]

    return complete


def examples(*pairs: str) -> str:
    """A help epilog from (what it does, command line) pairs: each command on its own line, whole.

    Typer's rich help rewraps a paragraph to the terminal; a blank line between lines keeps each
    one a paragraph of its own, and a command short enough for 80 columns is never cut.
    """
    lines = ["Examples:"]
    for what, command in zip(pairs[::2], pairs[1::2]):
        lines += [f"  {what}", f"    {command}"]
    return "\n\n".join(lines) + "\n"
