"""The memory budget: how many bytes one array, stream or pipe may take when read whole.

Sizes are checked against :func:`memory_budget` before anything is allocated, so a small
compressed file that declares a huge array (a decompression bomb), or an endless pipe, is
refused in one line instead of exhausting the machine. Readers: :mod:`cnncli.io.readers`.
"""

from __future__ import annotations

from ..engine.shapes import physical_memory
from ..errors import InputError
from ..settings import positive_int_setting
from ..units import format_bytes, two_sizes


#: The environment variable that sets the memory budget.
BUDGET_SETTING = "CNNCLI_MEMORY_BYTES"


def memory_setting() -> dict:
    """The limit a layer call's arrays must fit, when ``CNNCLI_MEMORY_BYTES`` sets one, as keyword arguments
    of :func:`cnncli.engine.shapes.check_layer_fits` (``{}`` when it is not set: the machine's memory).

    Raises
    ------
    SettingError
        ``CNNCLI_MEMORY_BYTES`` is set but not a positive integer.
    """
    value = positive_int_setting(BUDGET_SETTING, 0)
    return {"limit": value, "setting": BUDGET_SETTING} if value else {}


def memory_budget() -> int:
    """Bytes one array may take when it is read whole (env ``CNNCLI_MEMORY_BYTES``).

    Default: half of the machine's physical memory (4 GiB when it cannot be told). Sizes are
    checked against it before anything is allocated, so a small compressed file that declares
    a huge array (a decompression bomb) is refused instead of exhausting the machine.

    Returns
    -------
    int

    Raises
    ------
    SettingError
        ``CNNCLI_MEMORY_BYTES`` is set but not a positive integer.
    """
    physical = physical_memory()
    return positive_int_setting(BUDGET_SETTING, physical // 2 if physical else 4 * 2**30)


def check_budget(nbytes: int, text: str) -> None:
    """Refuse to read ``nbytes`` into memory at once when they exceed :func:`memory_budget`.

    Parameters
    ----------
    nbytes : int
        Declared size of the data (from a header, before reading any of it).
    text : str
        The reference, for the message.

    Raises
    ------
    InputError
        ``nbytes`` is over the budget; the message names both sizes and how to raise the budget.
    """
    budget = memory_budget()
    if nbytes > budget:
        need, allowed = two_sizes(nbytes, budget)  # 1048576 against 1048575: not "1.0 MiB; ... allows 1.0 MiB"
        raise over_budget(f"{text!r} declares {need}", allowed, f"{text!r}: {need}")


def over_budget(said: str, allowed: str, short: str = "") -> InputError:
    """``"<said>; CNNCLI_MEMORY_BYTES allows <allowed>"`` when the user set it (else "..., over" it, which they
    know), or ``"<said>; the budget is <allowed> (CNNCLI_MEMORY_BYTES)"`` when it is the default: a message
    naming only the variable would send the user to look for a setting they never made.

    Parameters
    ----------
    said : str
        What is too large: ``"'x.npz:A' declares 2.0 MiB"``.
    allowed : str
        The budget, formatted (:func:`cnncli.units.two_sizes`).
    short : str, optional
        ``said`` in fewer words (``"'x.npz:A': 2.0 MiB"``), for the last wordings.

    Returns
    -------
    InputError
        Worded to fit 80 columns (:meth:`CnncliError.worded`); raise it.

    Raises
    ------
    SettingError
        ``CNNCLI_MEMORY_BYTES`` is set but not a positive integer.
    """
    saids = (said, short) if short else (said,)
    if memory_setting():
        return InputError.worded(f"{said}; {BUDGET_SETTING} allows {allowed}",
                                 *(f"{s}, over {BUDGET_SETTING}" for s in saids))
    half = "half the memory; " if physical_memory() else ""
    return InputError.worded(f"{said}; the budget is {allowed} ({half}{BUDGET_SETTING} sets it)",
                             f"{said}; the budget is {allowed} ({BUDGET_SETTING})",
                             f"{said}; budget {allowed} ({BUDGET_SETTING})",
                             f"{said}; the default budget is {allowed}", f"{said}; default budget {allowed}",
                             *(f"{s}, over the {allowed} budget" for s in saids))


#: Bytes read from a pipe at a time: memory grows with what the pipe holds, not with the budget.
READ_STEP = 1 << 20


def read_bounded(stream, text: str, sniff=None, first: int = 1 << 16) -> bytes:
    """All the bytes of a pipe or stdin, refusing more than :func:`memory_budget` (``cat /dev/zero |``).

    Read step by step (a read of the whole budget at once would reserve it: half the machine's memory).

    Parameters
    ----------
    stream : binary file
    text : str
        The source, for the message.
    sniff : callable(bytes), optional
        Called with the first bytes (up to ``first``) as soon as they are in; may raise to refuse
        the stream before the rest of it is read (``yes |`` is not .npy data).
    first : int
        Bytes of the first read (the head ``sniff`` sees), 64 KiB unless given.

    Raises
    ------
    InputError
        The stream holds more than the budget, or ``sniff`` refused its first bytes.
    """
    budget = memory_budget()
    chunks, total = [], 0
    step = first  # the head sniff looks at as soon as it is in, then steps of READ_STEP
    while total <= budget:
        chunk = stream.read(min(step, budget + 1 - total))
        if not chunk:
            break
        if sniff is not None and not chunks:
            sniff(chunk)
        chunks.append(chunk)
        total += len(chunk)
        step = READ_STEP
    if total > budget:
        allowed = format_bytes(budget, "bytes")
        if memory_setting():
            raise InputError.worded(f"{text} holds over the {allowed} CNNCLI_MEMORY_BYTES allows",
                                    f"{text} holds over CNNCLI_MEMORY_BYTES ({allowed})")
        raise InputError.worded(f"{text} holds over the {allowed} budget ({BUDGET_SETTING})",
                                f"{text}: over the {allowed} budget ({BUDGET_SETTING})",
                                f"{text} holds over the {allowed} budget")
    return b"".join(chunks)
