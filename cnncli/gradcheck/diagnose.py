"""The ``--impl`` diagnosis: the likely mistake in one user function, from its
exceptions and from the pattern of failing configurations (hints about where in
one array the errors sit are :mod:`.spatial`'s).

- :func:`diagnose`: a rule fires when every failing case has a property and at
  least one checked case without it passed: "errors only with stride > 1" means
  exactly that the stride-1 cases were right. The battery varies pad, stride,
  shape and mode independently enough for these patterns to separate.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from .battery import Configuration
from .userfile import SIGNATURES

_RULES: Tuple[Tuple[str, Callable[[Configuration], bool], str], ...] = (
    ("conv", lambda c: c.pad == 0,
     "errors only at pad = 0: a slice like [pad:-pad] is empty when pad is 0"),
    ("conv", lambda c: c.pad != 0,
     "errors only with padding (pad > 0): check zero_pad and where the padding is removed"),
    ("any", lambda c: c.stride > 1,
     "errors only with stride > 1: check the window start (vert_start = h * stride) and the output size"),
    ("any", lambda c: c.A_shape[1] != c.A_shape[2],
     "errors only on non-square inputs: are height and width swapped somewhere?"),
    ("pool", lambda c: c.stride < c.f,
     "errors only where pooling windows overlap (stride < f): check the output size, and accumulate "
     "the gradient with +=, not ="),
    ("pool", lambda c: c.mode == "average", "errors only in average pooling"),
    ("pool", lambda c: c.mode == "max", "errors only in max pooling"),
    ("conv", lambda c: c.W_shape is not None and c.W_shape[3] != c.A_shape[3],
     "errors only when n_C != n_C_prev: input and output channel axes mixed up?"),
    ("conv", lambda c: c.kernel > 1, "errors only with f > 1"),
)

#: numpy's words when code written for numpy 1.x meets numpy 2: float() of an array of ndim > 0, and
#: assigning one to a single element. Both were deprecated in numpy 1.25 and still ran under numpy < 2.
FLOAT_OF_ARRAY = "only 0-dimensional arrays can be converted to Python scalars"
ARRAY_INTO_ELEMENT = "setting an array element with a sequence"
#: A slice emptied by a negative end of 0 (``[pad:-pad]`` at pad 0) shows in the broadcast message as a 0 axis.
EMPTY_SLICE = re.compile(r"could not broadcast input array from shape \((0,|\d+,0)")


def diagnose(findings, errors, cases: Dict[str, Configuration], *, function: str = "",
             recognised: Sequence[str] = ()) -> Tuple[str, ...]:
    """Likely mistakes for one function, from its findings and exceptions.

    Each configuration is judged on its own: an exception is named from its own
    message, line and configurations (:func:`_exception_hints`); the patterns over
    configurations (:data:`_RULES`) rest only on the configurations that ran, so a
    crash at pad 0 cannot make a stride bug look like a property of the others.
    A mistake ``recognised`` by replaying it (:mod:`.mistakes`) explains every
    configuration that ran and replaces the patterns.

    Parameters
    ----------
    findings : sequence of Finding
    errors : sequence of UserException
    cases : dict
        Battery configurations by name (helper-function trials have no case and no pattern).
    function : str
        The classic function (its layer decides which words apply: no W for pooling).
    recognised : sequence of str
        Mistakes whose replay equals the function's outputs.

    Returns
    -------
    tuple of str
        Empty when nothing failed or no pattern is clear.
    """
    failed = [f for f in findings if not f.passed]
    if not failed and not errors:
        return ()
    layer = "pool" if function.startswith(("pool", "create_mask", "distribute")) else "conv"
    hints: List[str] = list(recognised)
    raised, explained = _exception_hints(errors, cases, layer)
    hints.extend(h for h in raised if h not in hints)
    bad_q = {f.quantity for f in failed}
    all_q = {f.quantity for f in findings}
    if recognised:
        return tuple(hints[:3])
    if bad_q == {"db"} and len(all_q) > 1:
        hints.append("only the bias gradient db is wrong")
    elif bad_q and bad_q < all_q and not errors:
        hints.append(f"only {', '.join(sorted(bad_q))} wrong; {', '.join(sorted(all_q - bad_q))} right")
    grads = [f for f in failed if f.quantity == "dA_prev" and f.detail == ""]
    if grads and all(f.border_only for f in grads):
        hints.append("dA_prev is wrong only on the border rows/columns: padding handled wrongly" if layer == "conv"
                     else "dA_prev is wrong only on the border rows/columns: check the window bounds")
    ran = {f.case for f in findings if f.case in cases}
    failing = {f.case for f in failed if f.case in cases}
    if failing and failing != ran:
        hints.extend(_case_patterns(failing, ran, cases))
    # where it raised, for exceptions their own words did not explain: a pattern of its own
    crashed = {e.case for e in errors if e.case in cases and e.case not in ran} - explained
    called = ran | crashed
    if crashed and crashed != called:
        # a process that died (a segfault, abort) or hung did not raise: say "it fails"
        all_raised = all(e.kind == "exception" for e in errors if e.case in crashed)
        verb = "it raises only" if all_raised else "it fails only"
        hints.extend(m.replace("errors only", verb, 1) for m in _case_patterns(crashed, called, cases))
    return tuple(hints[:3])


def _exception_hints(errors, cases: Dict[str, Configuration], layer: str) -> Tuple[List[str], set]:
    """What each exception says on its own (numpy 2's refusals, the empty ``[pad:-pad]``, a call that did not
    fit), and the configurations whose exception that explains."""
    hints: List[str] = []
    explained = set()

    def add(hint: str) -> None:
        if hint not in hints:
            hints.append(hint)

    for e in errors:
        at = f"line {e.line} `{e.source}`" if e.source else (f"line {e.line}" if e.line else "the call")
        if FLOAT_OF_ARRAY in e.exception:
            add(f"{at}: float() of an array such as b (shape (1, 1, 1)) ran under numpy < 2 but numpy "
                f"{np.__version__} refuses it: use float(np.squeeze(b)) or b.item(); the maths after it could "
                "not be checked")
        elif ARRAY_INTO_ELEMENT in e.exception:
            add(f"{at}: assigning an array of shape (1, 1, 1) to one element ran under numpy < 2 but numpy "
                f"{np.__version__} refuses it: make the value a scalar (np.squeeze(value) or value.item(); "
                "conv_single_step should return a number)")
        elif EMPTY_SLICE.search(e.exception) and _only_at_pad_0(e, errors, cases):
            add(f"{at}: [pad:-pad] is empty when pad = 0 (the end -0 is 0): crop with "
                "[pad:pad + n_H_prev, pad:pad + n_W_prev]")
            explained.add(e.case)
        elif "could not be broadcast together" in e.exception:
            add("array shapes disagree: compare the slice's shape with W's (f, f, n_C_prev) and the window bounds"
                if layer == "conv" else
                "array shapes disagree: compare the window's shape (f, f) with what is added to it, and the "
                "window bounds")
        elif e.line is None and e.exception.startswith("TypeError") and e.function in SIGNATURES:
            # before any line of the user's file ran: the call itself did not fit the signature
            add(f"expected {SIGNATURES[e.function]} (the classic exercise's signature)")
    return hints, explained


def _only_at_pad_0(e, errors, cases: Dict[str, Configuration]) -> bool:
    """Whether the exception at ``e``'s line was raised on pad-0 configurations only (all of them among those seen)."""
    at = {x.case for x in errors if x.line == e.line and x.case in cases}
    return bool(at) and all(cases[c].pad == 0 for c in at)


def _case_patterns(failing, checked, cases) -> List[str]:
    """Rule messages whose property covers every failing case, the most specific first.

    A property held by exactly the failing cases is strong evidence and always
    reported; otherwise only the narrowest property, and only when it holds for
    at most half of the checked cases (a property most cases share says little).
    """
    layers = {cases[c].layer for c in checked}
    exact, loose = [], []
    for scope, has, message in _RULES:
        if scope != "any" and scope not in layers:
            continue
        with_p = {c for c in checked if has(cases[c])}
        if failing <= with_p and with_p != checked:
            (exact if with_p == failing else loose).append((len(with_p), message))
    if exact:
        return [m for _, m in sorted(exact)][:2]
    loose.sort()
    return [loose[0][1]] if loose and 2 * loose[0][0] <= len(checked) else []
