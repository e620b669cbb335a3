"""The ``--impl`` diagnosis: the likely mistake in one user function, from its
exceptions and from the pattern of failing configurations (hints about where in
one array the errors sit are :mod:`.spatial`'s).

- :func:`diagnose`: a rule fires when every failing case has a property and at
  least one checked case without it passed: "errors only with stride > 1" means
  exactly that the stride-1 cases were right. The battery varies pad, stride,
  shape and mode independently enough for these patterns to separate.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

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

# Exceptions whose message alone names the mistake: (text in the message, hint).
_EXCEPTION_HINTS: Tuple[Tuple[str, str], ...] = (
    # NOTE: recent numpy refuses float() of an array with ndim > 0 (deprecated since 1.25), which
    # the classic exercise's `float(b)` on a (1, 1, 1) bias does; the code was right on older numpy.
    ("only 0-dimensional arrays can be converted to Python scalars",
     f"numpy {np.__version__} refuses float() of a (1, 1, 1) array such as b: use b.item() or "
     "float(np.squeeze(b))"),
    ("could not be broadcast together",
     "array shapes disagree: compare the slice's shape with W's (f, f, n_C_prev) and the window bounds"),
)


def diagnose(findings, errors, cases: Dict[str, Configuration]) -> Tuple[str, ...]:
    """Likely mistakes for one function, from its findings and exceptions.

    Parameters
    ----------
    findings : sequence of Finding
    errors : sequence of UserException
    cases : dict
        Battery configurations by name (helper-function trials have no case and no pattern).

    Returns
    -------
    tuple of str
        Empty when nothing failed or no pattern is clear.
    """
    failed = [f for f in findings if not f.passed]
    if not failed and not errors:
        return ()
    hints: List[str] = []
    for text, hint in _EXCEPTION_HINTS:
        if any(text in e.exception for e in errors) and hint not in hints:
            hints.append(hint)
    # A TypeError before any line of the user's file ran: the call itself did not fit the signature.
    for e in errors:
        hint = f"expected {SIGNATURES[e.function]} (the classic exercise's signature)"
        if e.line is None and e.exception.startswith("TypeError") and e.function in SIGNATURES and hint not in hints:
            hints.append(hint)
    bad_q = {f.quantity for f in failed}
    all_q = {f.quantity for f in findings}
    if bad_q == {"db"} and len(all_q) > 1:
        hints.append("only the bias gradient db is wrong")
    elif bad_q and bad_q < all_q and not errors:
        hints.append(f"only {', '.join(sorted(bad_q))} wrong; {', '.join(sorted(all_q - bad_q))} right")
    grads = [f for f in failed if f.quantity == "dA_prev" and f.detail == ""]
    if grads and all(f.border_only for f in grads):
        hints.append("dA_prev is wrong only on the border rows/columns: padding handled wrongly")
    checked = {f.case for f in findings if f.case in cases} | {e.case for e in errors if e.case in cases}
    failing = {f.case for f in failed if f.case in cases} | {e.case for e in errors if e.case in cases}
    if failing and failing != checked:
        hints.extend(_case_patterns(failing, checked, cases))
    return tuple(hints[:3])


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
