"""Pooling as a layer problem (see :mod:`.problems`), and where max pooling has kinks.

Only ``A_prev`` is an input; its perturbed copies are evaluated as in
:mod:`.perturbed`. Max pooling is not differentiable where a window's two largest
values are within the step of each other (:func:`max_pool_kinks`); the checker
leaves those elements out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional

import numpy as np

from ..engine import PoolParams, pool2d, pool2d_backward
from ..engine.geometry import outputs_reading, rows_read
from ..errors import ShapeError
from ..passes.tiles import tile_params
from . import tiled
from .perturbed import MACHINE_EPS, _tick, batch_chunks, differences_by, example_differences, example_directional
from .protocol import ProblemDefaults, Tick


class PoolProblem(ProblemDefaults):
    """Pooling ``A = pool2d(A_prev)`` under ``L = sum(G * A)`` (NHWC, float64)."""

    layer = "pool"
    names = ("A_prev",)

    def __init__(self, A_prev, params: PoolParams, G):
        self.params = params
        self.inputs = {"A_prev": A_prev}
        self.G = G
        self.linear = params.mode != "max"
        self.geom = params.geometry(A_prev.shape[1:3])
        expected = (A_prev.shape[0],) + self.geom.out_hw + (A_prev.shape[3],)
        if G.shape != expected:
            raise ShapeError(f"the upstream gradient must have the output's shape {expected}, got {G.shape}")

    def output(self) -> np.ndarray:
        """The forward output (m, n_H, n_W, n_C)."""
        return pool2d(self.inputs["A_prev"], self.params)

    def analytical(self) -> Dict[str, np.ndarray]:
        """Gradient of L from the engine's backward pass."""
        # by tiles where one example's output row is too wide for the engine's workspace (see .tiled)
        return {"A_prev": tiled.pool_backward(self.G, self.inputs["A_prev"], self.params, self.geom,
                                              tiled.ENGINE_BYTES, pool2d_backward)}

    def kinks(self, name: str, h: float) -> Optional[np.ndarray]:
        """Elements where the max is not differentiable at step ``h`` (None for average)."""
        if self.params.mode != "max":
            return None
        return max_pool_kinks(self.inputs["A_prev"], self.params, 2 * h)

    def kinks_at(self, name: str, h: float, rows: tuple, cols: tuple) -> Optional[np.ndarray]:
        """:meth:`kinks` of rows ``rows[0]:rows[1]`` by columns ``cols[0]:cols[1]`` of a one-example input, (1, r, c,
        C): the same mask there, from the windows that reach the rectangle only (:meth:`masks_at`)."""
        return self.masks_at(name, rows, cols, (2 * h,))[1][0] if self.params.mode == "max" else None

    def masks_at(self, name: str, rows: tuple, cols: tuple, thresholds: tuple):
        """The rectangle ``rows`` by ``cols`` of a one-example input (1, r, c, C) and, under max pooling, its kinks
        within each of ``thresholds`` (a list of masks; None for average), from one read of the input
        (:func:`rect_masks`: the windows that reach the rectangle, their input read with the rows and columns
        around it). For an example read by rectangles (:class:`.lazy.ReadExample`)."""
        A = self.inputs[name]
        if self.params.mode != "max":
            return np.ascontiguousarray(A[:, rows[0]:rows[1], cols[0]:cols[1]]), None
        return rect_masks(A, self.params, self.geom, rows, cols, thresholds)

    def reads_at(self, name: str, rows: tuple, cols: tuple) -> np.ndarray:
        """:meth:`reads` of the rectangle ``rows`` by ``cols`` of a one-example input, (1, r, c, C): closed form per
        axis (an element is read when some window tap lands on its row and one on its column), reading nothing."""
        r = rows_read(self.geom, rows[0], rows[1], axis=0)
        c = rows_read(self.geom, cols[0], cols[1], axis=1)
        C = self.inputs[name].shape[3]
        return np.broadcast_to((r[:, None] & c[None, :])[None, :, :, None], (1, r.size, c.size, C))

    def _forward(self, X):
        return pool2d(X, self.params)

    def _spread(self, Q: np.ndarray) -> np.ndarray:
        """Per input element: at least the sum of ``Q`` over the outputs whose window reads it."""
        kh, kw = self.geom.kernel
        averaging = replace(self.params, mode="average", count_include_pad=True)
        # average backward gives sum(Q / window size); times the window size bounds the sum from above
        return tiled.pool_backward(Q, self.inputs["A_prev"], averaging, self.geom, tiled.ENGINE_BYTES,
                                   pool2d_backward) * (kh * kw)

    def rounding_floor(self, name: str, h: float) -> Optional[np.ndarray]:
        """Average pooling: each output is off by about ``eps * mean|window|`` (see ConvProblem).

        Max pooling returns input values exactly and the differences of the two
        outputs are taken before the contraction: no floor (None).
        """
        if self.params.mode == "max":
            return None
        A = self.inputs["A_prev"]
        if not self.by_tiles():
            Q = np.abs(self.G) * pool2d(np.abs(A), self.params)
            return MACHINE_EPS * self._spread(Q) / h
        # one example too wide for the engine's workspace: the same terms tile by tile (see .tiled)
        out = np.zeros(A.shape)
        for t, part, _, _, _ in self.floor_tiles(slice(None), True, None):
            if part is not None:
                out[t.rect] += part
        for factor in self.floor_scale():
            out *= factor
        out /= h
        return out

    def by_tiles(self, sl: slice = slice(None)) -> bool:
        """Whether the examples ``sl`` are evaluated by tiles (:func:`.tiled.plan`: one output row's windows
        exceed the engine's bound, or their input is huge)."""
        k = len(range(*sl.indices(self.inputs["A_prev"].shape[0])))
        return tiled.plan(self.geom, self.inputs["A_prev"].shape[3], k, 0, tiled.ENGINE_BYTES) is not None

    def _local(self) -> bool:
        """Whether A_prev's elements are evaluated locally (:meth:`differences`): as a convolution's, an example
        has at least ``tiled.LOCAL_OUTPUTS`` output values (a window's are a few of them), or it and its copy are
        too large for the workspace."""
        C = self.inputs["A_prev"].shape[3]
        oh, ow = self.geom.out_hw
        # NOTE: on its example's copies, each element cost a pooling of the whole example: a full check of a
        # 1 x 1 x 250000 x 4 signal was quadratic (2 h foreseen), and a sample of a large image was cut short
        return oh * ow * C >= tiled.LOCAL_OUTPUTS or tiled.plan(self.geom, C, 2, C, tiled.WORKSPACE_BYTES,
                                                                least=2) is not None

    def floor_scale(self) -> Optional[tuple]:
        """The factors that turn the rounding spread (:meth:`floor_tiles`' parts summed) into the floor times
        ``h``, applied in order; None where there is no floor (max pooling)."""
        if self.params.mode == "max":
            return None
        kh, kw = self.geom.kernel
        return (kh * kw, MACHINE_EPS)

    def floor_tiles(self, sl: slice, spread: bool, mag=None):
        """The rounding spread of an example by tiles, tile by tile (those of :meth:`backward_tiles`): ``(tile,
        its input rectangle's part or None, None, None, None)`` (as ConvProblem's; a pool has no W nor b); no
        parts under max pooling. ``sl`` and ``mag``: as ConvProblem's, unused (one chunk, no magnitudes)."""
        A = self.inputs["A_prev"]
        for t in tiled.each_tile(self.geom, self.params, A.shape, 0, tiled.ENGINE_BYTES):
            part = None
            if t.real and spread and self.params.mode != "max":  # else no parts: the tile's input is not read
                x = A if t.rb is None else t.input(A)
                Q = np.abs(self.G[:, t.rows, t.cols]) * pool2d(np.abs(x), t.params)
                averaging = replace(t.params, mode="average", count_include_pad=True)
                part = pool2d_backward(Q, x, averaging)
            yield t, part, None, None, None

    def backward_tiles(self, G):
        """The engine's backward by tiles, reading ``G`` (``G[:, rows, cols]``) by tiles: ``(tile, its input
        rectangle's gradient or None, None, None)`` (as ConvProblem's; no dW nor db)."""
        for t, part in tiled.pool_backward_tiles(G, self.inputs["A_prev"], self.params, self.geom,
                                                 tiled.ENGINE_BYTES, pool2d_backward):
            yield t, part, None, None

    def reads(self, name: str) -> np.ndarray:
        """Elements some window reads (the others have a zero gradient whatever the layer does)."""
        return self._spread(np.ones(self.G.shape)) > 0

    def differences(self, name: str, idx, plus, minus, tick: Tick = None) -> np.ndarray:
        """``L(x+) - L(x-)`` for the elements ``idx`` (flat) of A_prev set to plus/minus."""
        A = self.inputs["A_prev"]
        oh, ow = self.geom.out_hw
        if self._local():
            # an example of many outputs, or too large for the workspace: each element on the outputs it reaches
            # (see .tiled)
            out = tiled.local_differences(pool2d, A, self.G, self.geom, self.params, idx, plus, minus)
            _tick(tick, len(out))
            return out
        out_bytes = 8 * 4 * oh * ow * A.shape[3]
        return example_differences(differences_by(self._forward), A, self.G, idx, plus, minus, out_bytes, tick)

    def _directed_difference(self, x: np.ndarray, G, steps, count: int) -> np.ndarray:
        """``sum(G * (pool(x + s) - pool(x - s)))`` of one example ``x`` (1, H, W, C) for each of ``count`` steps
        ``s`` given by rectangles of it (``steps(rows, cols)``, an iterable), tile by tile
        (:func:`.tiled.directed_difference`): the outputs are the pool's, their sum in another order than the whole
        example's. Returns shape (count,)."""
        return tiled.directed_difference(pool2d, x, G, self.geom, self.params, x.shape[3], steps, count)

    def directional(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """``L(x + h D[p]) - L(x - h D[p])`` for each direction p."""
        return self.directional_blocks(name, D, h, tick).sum(axis=1)

    def block_ids(self, name: str) -> np.ndarray:
        """Per element of A_prev: its example (the block whose loss part it alone changes)."""
        shape = self.inputs[name].shape
        return np.broadcast_to(np.arange(shape[0]).reshape(-1, 1, 1, 1), shape)

    def directional_blocks(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """The directional differences per example: shape (P, m)."""
        A = self.inputs["A_prev"]
        return example_directional(differences_by(self._forward), A, self.G, D, h, tick,
                                   8 * (2 * A[0].size + 3 * self.G[0].size))


def max_pool_kinks(A_prev: np.ndarray, params: PoolParams, threshold: float) -> np.ndarray:
    """Boolean mask (shape of A_prev) of max-pool kinks.

    A window is a kink when its two largest values lie within ``threshold``
    (ties included); in such a window every element within ``threshold`` of the
    maximum can take over the max under a perturbation, so the one-sided
    derivatives differ there and the central difference means nothing.

    NOTE: the checker passes ``threshold = 2*h``: a perturbation moves each of two
    competing elements by at most ``h`` (directions of the fast method are scaled
    to ``max|d| <= 1``), so a window whose gap exceeds ``2h`` keeps its argmax.
    """
    return max_pool_kinks_all(A_prev, params, (threshold,))[0]


def max_pool_kinks_all(A_prev: np.ndarray, params: PoolParams, thresholds: tuple) -> list:
    """:func:`max_pool_kinks` at each of ``thresholds`` (a list of masks), the windows searched once for all."""
    geom = params.geometry(A_prev.shape[1:3])
    if A_prev.shape[0] > 1:  # per chunk of examples: the windows' copies are several times the input
        per = 8 * A_prev[0].size * 4 * geom.kernel[0] * geom.kernel[1]
        chunks = batch_chunks(A_prev.shape[0], per)
        if len(chunks) > 1:
            parts = [max_pool_kinks_all(A_prev[sl], params, thresholds) for sl in chunks]
            return [np.concatenate([part[k] for part in parts]) for k in range(len(thresholds))]
    t = tiled.plan(geom, A_prev.shape[3], A_prev.shape[0], 0, tiled.WORKSPACE_BYTES // 4)
    if t is not None and geom.kernel[0] * geom.kernel[1] > 1:
        # one example whose windows' copies exceed the workspace: by tiles of its outputs, each tile's windows
        # on its own input rectangle (the same windows: .tiled); an element is a kink if any window makes it one
        masks = [np.zeros(A_prev.shape, dtype=bool) for _ in thresholds]
        for tile in tiled.tiles(geom, params, *t):
            if tile.real:  # a pool's windows always reach the input; kept for the shape of the loop
                for mask, part in zip(masks, _window_kinks(A_prev[tile.rect], tile.params, thresholds)):
                    mask[tile.rect] |= part
        return masks
    return _window_kinks(A_prev, params, thresholds)


def rect_masks(A, params: PoolParams, geom, rows: tuple, cols: tuple, thresholds: tuple):
    """Rows ``rows[0]:rows[1]`` by columns ``cols[0]:cols[1]`` of one example ``A`` (1, H, W, C; anything read by
    ``A[:, rows, cols]``) and their :func:`max_pool_kinks` at each of ``thresholds``, from one read of ``A``.

    An element's kink status depends on the windows that read it alone: those are the outputs whose windows reach
    the rectangle (:func:`outputs_reading` of its first and last row and column), evaluated on the input they read,
    with the pads they reach (the tiles of :func:`.tiled.tiles` do the same), so the mask is the whole example's
    there. Rows or columns no window reaches are no kinks. The rectangle and the input of those windows are read
    as one rectangle that holds both.

    Returns
    -------
    (ndarray, list of ndarray of bool)
        The values (1, r, c, C) and one mask of that shape per threshold.
    """
    (r0, r1), (c0, c1) = rows, cols
    out = [np.zeros((1, max(0, r1 - r0), max(0, c1 - c0), A.shape[3]), dtype=bool) for _ in thresholds]
    reach = None
    if r1 > r0 and c1 > c0:
        lo_r, hi_r = outputs_reading(geom, r0)[0], outputs_reading(geom, r1 - 1)[1]
        lo_c, hi_c = outputs_reading(geom, c0, axis=1)[0], outputs_reading(geom, c1 - 1, axis=1)[1]
        if lo_r < hi_r and lo_c < hi_c:
            reach = tiled._block(geom, lo_r, hi_r, 0), tiled._block(geom, lo_c, hi_c, 1)
    if reach is None:
        return np.ascontiguousarray(A[:, r0:r1, c0:c1]), out
    rb, cb = reach
    u0, u1, w0, w1 = min(r0, rb.in_lo), max(r1, rb.in_hi), min(c0, cb.in_lo), max(c1, cb.in_hi)
    U = np.ascontiguousarray(A[:, u0:u1, w0:w1])
    halo = U[:, rb.in_lo - u0:rb.in_hi - u0, cb.in_lo - w0:cb.in_hi - w0]
    masks = max_pool_kinks_all(halo, tile_params(params, rb, cb), thresholds)
    a0, a1, b0, b1 = max(r0, rb.in_lo), min(r1, rb.in_hi), max(c0, cb.in_lo), min(c1, cb.in_hi)
    if a1 > a0 and b1 > b0:
        for o, mask in zip(out, masks):
            o[:, a0 - r0:a1 - r0, b0 - c0:b1 - c0] = mask[:, a0 - rb.in_lo:a1 - rb.in_lo, b0 - cb.in_lo:b1 - cb.in_lo]
    return U[:, r0 - u0:r1 - u0, c0 - w0:c1 - w0], out


def _window_kinks(A_prev: np.ndarray, params: PoolParams, thresholds: tuple) -> list:
    """:func:`max_pool_kinks_all` of examples evaluated at once, every window on the tap views of the padded input."""
    # NOTE: built from the public geometry only (pads, stride, dilation, ceil-mode overflow), not the
    # engine's private helpers, so that the checker stays an independent witness of the engine.
    geom = params.geometry(A_prev.shape[1:3])
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = geom.kernel, geom.stride, geom.dilation, geom.out_hw
    if kh * kw < 2:
        return [np.zeros(A_prev.shape, dtype=bool) for _ in thresholds]
    t, b, l, r = geom.pads
    m, H, W, C = A_prev.shape
    Hp, Wp = t + H + b + geom.overflow[0], l + W + r + geom.overflow[1]
    if (Hp, Wp) == (H, W):  # no padding nor overflow: the taps are views of the input itself
        A_pad = A_prev
    else:
        A_pad = np.empty((m, Hp, Wp, C))
        A_pad[:, t:t + H, l:l + W] = A_prev
        for border in ((slice(None), slice(0, t)), (slice(None), slice(t + H, Hp)),
                       (slice(None), slice(t, t + H), slice(0, l)), (slice(None), slice(t, t + H), slice(l + W, Wp))):
            A_pad[border] = -np.inf
    taps = [(slice(i * dh, i * dh + (oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))
            for i in range(kh) for j in range(kw)]  # each tap of every window: a strided view (m, oh, ow, C)
    # NOTE: every window's two largest values (with multiplicity) by a running pair over the taps, on strided views
    # of the padded input: the values np.partition of each window's copied taps gave, exactly (max and min round
    # nothing), in output-sized arrays rather than a copy of every window (kh * kw values per output) and its sort
    v0, v1 = A_pad[(slice(None),) + taps[0]], A_pad[(slice(None),) + taps[1]]
    first, second = np.maximum(v0, v1), np.minimum(v0, v1)
    low = np.empty(first.shape)
    for rows, cols in taps[2:]:
        v = A_pad[:, rows, cols]
        np.minimum(first, v, out=low)
        np.maximum(second, low, out=second)
        np.maximum(first, v, out=first)
    gap = first - second
    return [_near_maxima(A_pad, first, gap <= threshold, threshold, taps, geom)[:, t:t + H, l:l + W].copy()
            for threshold in thresholds]


def _near_maxima(A_pad, first, kink_window, threshold: float, taps: list, geom) -> np.ndarray:
    """The elements of ``A_pad`` within ``threshold`` of their window's maximum ``first`` in the windows
    ``kink_window`` (bool, the outputs' shape), over the windows' ``taps`` (strided views of ``A_pad``)."""
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel, geom.stride, geom.dilation
    mask_pad = np.zeros(A_pad.shape, dtype=bool)
    if 8 * np.count_nonzero(kink_window) < kink_window.size:
        # few kink windows (data without ties): each tap of those windows only, by their indices; the same mask
        e, i, j, c = np.nonzero(kink_window)
        top = first[e, i, j, c]
        for a in range(kh):
            for bb in range(kw):
                rr, cc = i * sh + a * dh, j * sw + bb * dw
                near = (top - A_pad[e, rr, cc, c]) <= threshold
                mask_pad[e[near], rr[near], cc[near], c[near]] = True
    else:
        for rows, cols in taps:
            mask_pad[:, rows, cols] |= kink_window & ((first - A_pad[:, rows, cols]) <= threshold)
    return mask_pad
