"""Checking the engine's gradients on a layer call resolved as ``forward`` resolves it.

``cnncli gradcheck SOURCE`` starts here: the call is checked in memory, or chunk by
chunk when its input was left on disk (:mod:`cnncli.gradcheck.streamed`); the result
comes back in the user's layout, with the call's own notes first.
"""

from __future__ import annotations

from dataclasses import replace

from ..passes.layer import Batches, LayerCall
from .context import Progress
from .layers import NCHW_PERMS, gradcheck_conv, gradcheck_pool
from .results import CheckResult, relayout
from .streamed import gradcheck_streamed


def check_layer_call(call: LayerCall, *, progress: Progress = None, **settings) -> CheckResult:
    """Check the engine's gradients on ``call``.

    Parameters
    ----------
    call : LayerCall
        From :func:`cnncli.passes.call.resolve_layer`; its ``A_prev`` (m, n_H_prev, n_W_prev,
        n_C_prev) is an in-memory array, or :class:`~cnncli.passes.layer.Batches` read chunk by
        chunk; ``W`` (f, f, n_C_prev/groups, n_C) and ``b`` (n_C,) for conv; ``grad`` the
        upstream gradient or None (drawn from ``seed``).
    progress : callable(done, total) or None
        Told how far the check is.
    **settings
        ``method``, ``samples``, ``eps``, ``tol``, ``seed``: as :func:`gradcheck_conv`.

    Returns
    -------
    CheckResult
        Worst indices in the call's layout (NCHW when the call came in NCHW); the call's notes
        first, then the check's own.

    Raises
    ------
    CnncliError
        As :func:`gradcheck_conv` / :func:`gradcheck_pool` (bad settings, shapes).
    """
    kw = dict(settings, grad=call.grad)
    if isinstance(call.A_prev, Batches):
        result = gradcheck_streamed(call.A_prev, call.W, call.b, call.params, kind=call.kind,
                                    progress=progress, **kw)
    elif call.kind == "conv":
        result = gradcheck_conv(call.A_prev, call.W, call.b, call.params, progress=progress, **kw)
    else:
        result = gradcheck_pool(call.A_prev, call.params, progress=progress, **kw)
    if call.layout == "nchw":
        result = relayout(result, NCHW_PERMS)
    notes = tuple(call.notes) + tuple(n for n in result.notes if n not in call.notes)
    return replace(result, notes=notes)
