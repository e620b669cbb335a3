"""Known mistakes, replayed: the classic functions as students get them wrong.

A pattern over configurations ("errors only on non-square inputs") is a guess;
a user's output that equals, on every configuration that ran, what the classic
loop code gives with one typical mistake is a match. These replays are that
loop code (NHWC, square ``f``, int stride and pad, numpy slicing as the
exercise writes it), with the window start of output ``(h, w)`` as a
parameter; a replay that would raise (a window leaving the input) says so by
returning None, as the user's code would have raised there.

Only the window starts and the bias are replayed: they are the mistakes whose
symptoms other hints misname (a stride bug seen as "height and width swapped"
because only non-square configurations happened to have stride > 1).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .battery import Configuration

Start = Callable[[int, int, int], Tuple[int, int]]

#: Wrong window starts: name -> ((h, w, stride) -> (vert_start, horiz_start), what the user should read).
WINDOW_STARTS: Dict[str, Tuple[Start, str]] = {
    "rows_ignore_stride": (lambda h, w, s: (h, w * s),
                           "the window's row start ignores the stride (vert_start = h): use vert_start = h * stride"),
    "columns_ignore_stride": (lambda h, w, s: (h * s, w),
                              "the window's column start ignores the stride (horiz_start = w): "
                              "use horiz_start = w * stride"),
    "both_ignore_stride": (lambda h, w, s: (h, w),
                           "the window starts ignore the stride (vert_start = h, horiz_start = w): "
                           "use h * stride and w * stride"),
    "columns_use_h": (lambda h, w, s: (h * s, h * s),
                      "the window's column start uses h (horiz_start = h * stride): it should use w "
                      "(horiz_start = w * stride)"),
    "rows_use_w": (lambda h, w, s: (w * s, w * s),
                   "the window's row start uses w (vert_start = w * stride): it should use h "
                   "(vert_start = h * stride)"),
    "starts_swapped": (lambda h, w, s: (w * s, h * s),
                       "the window's row and column starts are swapped: vert_start = h * stride, "
                       "horiz_start = w * stride"),
}


def _padded(X: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv_forward_replay(A, W, b, stride: int, pad: int, start: Start, out_hw) -> Optional[np.ndarray]:
    """Z (m, n_H, n_W, n_C) of the classic loops with window starts ``start``; None where they would raise."""
    f, n_C = W.shape[0], W.shape[3]
    Ap = _padded(A, pad)
    Z = np.zeros((A.shape[0],) + tuple(out_hw) + (n_C,))
    try:
        for h in range(out_hw[0]):
            for w in range(out_hw[1]):
                vs, hs = start(h, w, stride)
                win = Ap[:, vs:vs + f, hs:hs + f, :]
                if win.shape[1:3] != (f, f):
                    return None
                Z[:, h, w, :] = np.einsum("mijc,ijcn->mn", win, W) + np.reshape(b, -1)
    except ValueError:
        return None
    return Z


def conv_backward_replay(dZ, A, W, stride: int, pad: int, start: Start):
    """(dA_prev, dW, db) of the classic loops with window starts ``start``; None where they would raise."""
    f = W.shape[0]
    H, Wd = A.shape[1:3]
    Ap = _padded(A, pad)
    dAp = np.zeros(Ap.shape)
    dW = np.zeros(W.shape)
    for h in range(dZ.shape[1]):
        for w in range(dZ.shape[2]):
            vs, hs = start(h, w, stride)
            win = Ap[:, vs:vs + f, hs:hs + f, :]
            if win.shape[1:3] != (f, f):
                return None
            dAp[:, vs:vs + f, hs:hs + f, :] += np.einsum("ijcn,mn->mijc", W, dZ[:, h, w, :])
            dW += np.einsum("mijc,mn->ijcn", win, dZ[:, h, w, :])
    db = dZ.sum(axis=(0, 1, 2)).reshape(1, 1, 1, -1)
    return dAp[:, pad:pad + H, pad:pad + Wd, :], dW, db


def pool_forward_replay(A, f: int, stride: int, mode: str, start: Start, out_hw) -> Optional[np.ndarray]:
    """The pooled output of the classic loops with window starts ``start``; None where they would raise.

    NOTE: numpy slicing cuts a window that leaves the input short rather than raising, and the classic
    forward pools whatever the slice holds: so does this replay (an empty window raises: None).
    """
    out = np.zeros((A.shape[0],) + tuple(out_hw) + (A.shape[3],))
    reduce = np.max if mode == "max" else np.mean
    for h in range(out_hw[0]):
        for w in range(out_hw[1]):
            vs, hs = start(h, w, stride)
            win = A[:, vs:vs + f, hs:hs + f, :]
            if win.shape[1] == 0 or win.shape[2] == 0:
                return None
            out[:, h, w, :] = reduce(win, axis=(1, 2))
    return out


def pool_backward_replay(dA, A, f: int, stride: int, mode: str, start: Start,
                         spread: Optional[Callable] = None) -> Optional[np.ndarray]:
    """dA_prev of the classic loops (mask of the max; average spread) with window starts ``start``, or None.

    ``spread(g, n_H, n_W)`` is what distribute_value gives each element of an average window from its
    gradient ``g`` (default the average, ``g / (n_H * n_W)``)."""
    dA_prev = np.zeros(A.shape)
    for h in range(dA.shape[1]):
        for w in range(dA.shape[2]):
            vs, hs = start(h, w, stride)
            win = A[:, vs:vs + f, hs:hs + f, :]
            if win.shape[1:3] != (f, f):  # the classic average spread is (f, f): a short window raises
                if mode != "max" or win.shape[1] == 0 or win.shape[2] == 0:
                    return None
            g = dA[:, h, w, :][:, None, None, :]
            if mode == "max":
                dA_prev[:, vs:vs + f, hs:hs + f, :] += (win == win.max(axis=(1, 2), keepdims=True)) * g
            else:
                dA_prev[:, vs:vs + f, hs:hs + f, :] += g / (f * f) if spread is None else spread(g, f, f)
    return dA_prev


def same(got, expected) -> bool:
    """Whether the user's array equals a replay up to float64 rounding of a different summation order."""
    if got is None or expected is None:
        return False
    try:
        g = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    e = np.asarray(expected, dtype=np.float64)
    if g.size != e.size:
        return False
    g = g.reshape(e.shape)
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    return bool(np.all(np.isfinite(g)) and np.allclose(g, e, rtol=1e-9, atol=1e-12 * max(scale, 1.0)))


def recognise(runs: Sequence[Tuple[bool, Callable[[Start], object], object]]) -> Optional[str]:
    """The one window-start mistake that explains every configuration that ran, else None.

    ``runs`` holds, per configuration the user's function returned on, whether it
    passed, a ``replay(start)`` giving the expected output(s) with that mistake
    (None where it would raise), and what the user returned. A mistake is named
    when its replay equals the user's output on every one of them (a passing
    configuration included: there the mistake must be harmless, as stride 1 is
    for a forgotten stride) and at least one failed.
    """
    if not any(not passed for passed, _, _ in runs):
        return None
    found = []
    for name, (start, message) in WINDOW_STARTS.items():
        if all(_matches(replay(start), got) for _, replay, got in runs):
            found.append(message)
    return found[0] if len(found) == 1 else None


def _matches(replayed, got) -> bool:
    if replayed is None:
        return False
    if isinstance(replayed, tuple):
        return isinstance(got, (tuple, list)) and len(got) == len(replayed) and \
            all(same(g, r) for g, r in zip(got, replayed))
    return same(got, replayed)


# --- the --impl glue: which replay each classic function gets -------------------------------------------

#: What a user function returned on one battery configuration: (configuration, its seed, passed, returned).
Returned = Tuple[Configuration, int, bool, object]

BIAS_NOT_ADDED = ("the bias is not added: expected - got equals b exactly; add it as a number: "
                  "Z = Z + b.item() (b is a (1, 1, 1) array)")


def single_step_without_bias(trials: Sequence[Tuple[bool, object, float, np.ndarray]]) -> bool:
    """Whether conv_single_step's trials (passed, got, expected, b) failed by exactly the bias, every one."""
    return any(not passed for passed, _, _, _ in trials) and all(
        same(got, expected - float(np.reshape(b, -1)[0])) for _, got, expected, b in trials)


#: distribute_value's classic mistakes: (the value it gives each of the n_H x n_W elements, from dz, n_H and n_W;
#: what the user should read). The trials' shapes (2, 2), (3, 3), (2, 3) tell every one from the others.
DISTRIBUTE_MISTAKES: Tuple[Tuple[Callable[[float, int, int], float], str], ...] = (
    (lambda dz, h, w: dz, "every element is dz, not the average: divide by the window's size, "
                          "average = dz / (n_H * n_W)"),
    (lambda dz, h, w: dz * h * w, "dz is multiplied by n_H * n_W: divide instead, average = dz / (n_H * n_W)"),
    (lambda dz, h, w: dz / h, "dz is divided by n_H only: average = dz / (n_H * n_W)"),
    (lambda dz, h, w: dz / w, "dz is divided by n_W only: average = dz / (n_H * n_W)"),
    (lambda dz, h, w: dz / h * w, "dz / n_H * n_W is (dz / n_H) * n_W: write average = dz / (n_H * n_W)"),
    (lambda dz, h, w: dz / w * h, "dz / n_W * n_H is (dz / n_W) * n_H: write average = dz / (n_H * n_W)"),
    (lambda dz, h, w: dz / (h + w), "dz is divided by n_H + n_W: average = dz / (n_H * n_W)"),
)


def distribute_mistake(trials: Sequence[Tuple[bool, object, float, Tuple[int, int]]]):
    """The one ``(value, message)`` of :data:`DISTRIBUTE_MISTAKES` equal to distribute_value's trials (passed,
    got, dz, shape), or None."""
    if not any(not passed for passed, _, _, _ in trials):
        return None
    found = [(value, message) for value, message in DISTRIBUTE_MISTAKES
             if all(same(got, np.full(shape, value(dz, *shape))) for _, got, dz, shape in trials)]
    return found[0] if len(found) == 1 else None


def recognise_distribute(trials: Sequence[Tuple[bool, object, float, Tuple[int, int]]]) -> Tuple[str, ...]:
    """The one mistake of :data:`DISTRIBUTE_MISTAKES` equal to distribute_value's trials (passed, got, dz, shape)."""
    found = distribute_mistake(trials)
    return (found[1],) if found else ()


#: pool_backward's hint when its outputs are the classic loops' with distribute_value's recognised mistake.
DISTRIBUTED_MISTAKE = ("its average-pooling errors are exactly your distribute_value's mistake (see its row): "
                       "fix distribute_value first")


def pool_backward_by_distribute(returned: Sequence["Returned"], value: Callable[[float, int, int], float]) -> bool:
    """Whether every configuration pool_backward ran on returned the classic loops' dA_prev with ``value``
    (a distribute_value mistake of :data:`DISTRIBUTE_MISTAKES`) as the average spread, and one failed."""
    if not returned or all(passed for _, _, passed, _ in returned):
        return False
    for case, seed, _, got in returned:
        A, _, _, G = case.arrays(seed)
        if not same(got, pool_backward_replay(G, A, case.f, case.stride, case.mode, _right, spread=value)):
            return False
    return True


def recognise_function(function: str, returned: Sequence[Returned]) -> Tuple[str, ...]:
    """Mistakes of ``function`` (a classic forward or backward) that its outputs match exactly."""
    if not returned or all(passed for _, _, passed, _ in returned):
        return ()
    runs = []
    without_bias = True
    for case, seed, passed, got in returned:
        A, W, b, G = case.arrays(seed)
        s, p = case.stride, case.pad
        if function == "conv_forward":
            out_hw = case.conv_params().geometry(A.shape[1:3], W.shape[:2]).out_hw
            replay = (lambda start, A=A, W=W, b=b, out_hw=out_hw, s=s, p=p:
                      conv_forward_replay(A, W, b, s, p, start, out_hw))
            without_bias = without_bias and same(got, conv_forward_replay(A, W, 0 * b, s, p, _RIGHT, out_hw))
        elif function == "conv_backward":
            replay = lambda start, A=A, W=W, G=G, s=s, p=p: conv_backward_replay(G, A, W, s, p, start)  # noqa: E731
        elif function == "pool_forward":
            out_hw = case.pool_params().geometry(A.shape[1:3]).out_hw
            replay = (lambda start, A=A, out_hw=out_hw, case=case:
                      pool_forward_replay(A, case.f, case.stride, case.mode, start, out_hw))
        elif function == "pool_backward":
            replay = (lambda start, A=A, G=G, case=case:
                      pool_backward_replay(G, A, case.f, case.stride, case.mode, start))
        else:
            return ()
        runs.append((passed, replay, got))
    if function == "conv_forward" and without_bias:
        return ("the bias is not added: Z equals the convolution without b exactly",)
    found = recognise(runs)
    return (found,) if found else ()


def _right(h: int, w: int, s: int) -> Tuple[int, int]:
    return h * s, w * s


_RIGHT: Start = _right
