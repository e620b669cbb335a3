"""Layer "problems" the checker works on: inputs, the analytical gradients, and
batched forward evaluations of the loss under perturbations.

The loss is ``L = sum(G * layer(inputs))`` for a fixed upstream gradient ``G``.
Every numerical derivative comes from actual forward evaluations of the layer:

- a perturbation of ``A_prev`` changes only its own example, so perturbed copies
  of that one example are stacked along the batch axis and evaluated in one
  forward call (per memory-bounded chunk; see :mod:`.perturbed`);
- a perturbation of ``W[..., k]`` or ``b[k]`` changes only output channel ``k``,
  so perturbed copies of filter ``k`` are stacked along the *output-channel*
  axis of one convolution call: each output channel is an ordinary forward
  evaluation of that perturbed filter on the whole batch, run chunk by chunk
  (``BATCH_BYTES``) with the loss differences summed over the chunks.

A problem returns loss differences ``L(x+) - L(x-)``; the checker divides.
This module has the convolution's (:class:`ConvProblem`); :mod:`.pool_problem` has
pooling's, re-exported here with the helpers the problems share.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ..engine import ConvParams, conv2d, conv2d_backward
from ..errors import ShapeError
from . import perturbed, tiled
from .perturbed import MACHINE_EPS, _contract, _tick, batch_chunks, example_differences, example_directional
from .pool_problem import PoolProblem, max_pool_kinks  # noqa: F401  (re-exported: imported from here before)
from .protocol import ProblemDefaults, Tick

class ConvProblem(ProblemDefaults):
    """A convolution ``Z = conv2d(A_prev, W, b)`` under ``L = sum(G * Z)`` (all NHWC, float64)."""

    layer = "conv"
    names = ("A_prev", "W", "b")
    linear = True  # affine in each input separately: central differences are exact

    def __init__(self, A_prev, W, b, params: ConvParams, G):
        self.params = params
        self.inputs = {"A_prev": A_prev, "W": W, "b": b}
        self.G = G
        m, H, Wd, C = A_prev.shape
        kh, kw, self.c_g, self.n_C = W.shape
        self.groups = C // self.c_g
        self.geom = params.geometry((H, Wd), (kh, kw))
        self._single = ConvParams(stride=params.stride, pad=params.pad, dilation=params.dilation)
        expected = (m,) + self.geom.out_hw + (self.n_C,)
        if G.shape != expected:
            raise ShapeError(f"the upstream gradient must have the output's shape {expected}, got {G.shape}")

    def output(self) -> np.ndarray:
        """The forward output Z (m, n_H, n_W, n_C)."""
        A, W, b = (self.inputs[k] for k in self.names)
        return conv2d(A, W, b, self.params)

    def analytical(self) -> Dict[str, np.ndarray]:
        """Gradients of L from the engine's backward pass, keyed by input name."""
        A, W = self.inputs["A_prev"], self.inputs["W"]
        chunks = batch_chunks(A.shape[0], self._example_bytes())
        if len(chunks) == 1:  # one chunk (one example may be as large as it): its gradient as it comes
            dA, w, b = self._backward(self.G, A, W)
            return {"A_prev": dA, "W": np.zeros(W.shape) + w, "b": np.zeros(self.n_C) + b}
        dA, dW, db = np.empty(A.shape), np.zeros(W.shape), np.zeros(self.n_C)
        # per chunk of examples: dA_prev is per example, dW and db are sums over examples
        for sl in chunks:
            dA[sl], w, b = self._backward(self.G[sl], A[sl], W)
            dW += w
            db += b
        return {"A_prev": dA, "W": dW, "b": db}

    def analytical_at(self, keep: np.ndarray) -> Dict[str, np.ndarray]:
        """As :meth:`analytical` with ``A_prev``'s gradient on the examples ``keep`` only (a mask; zeros
        elsewhere): the engine's backward skips it for the others (about half its work), and says whether
        it would have been finite there (``"finite"``).

        NOTE: ``|dA_prev| <= max|G| * max_c sum|W[..., c, :]|`` everywhere; when that bound is far from
        overflowing the skipped part would have been finite, else it is computed after all.
        """
        A, W, G = self.inputs["A_prev"], self.inputs["W"], self.G
        # NOTE: no zeros where the engine's gradient is taken as it comes (a chunk may be one example as large as
        # the workspace: a second array of its size)
        dA = None if keep.all() else np.zeros(A.shape)
        dW, db = np.zeros(W.shape), np.zeros(self.n_C)
        rest = ~keep
        finite = True

        def part(mask):  # the examples of a mask; all of them as they are (no copy of a chunk of one huge example)
            return (G, A) if mask.all() else (G[mask], A[mask])
        if rest.any():
            g_rest, a_rest = part(rest)
            top = float(np.maximum(np.max(g_rest), -np.min(g_rest)))  # max|G| (NaN too), with no |G| array
            bound = top * float(np.max(np.abs(W).sum(axis=(0, 1, 3))))
            if bound < 1e300:
                _, w, b = self._backward(g_rest, a_rest, W, input_grad=False)
            else:
                d, w, b = self._backward(g_rest, a_rest, W)
                finite = bool(np.all(np.isfinite(d)))
            dW += w
            db += b
        if keep.all():
            dA, w, b = self._backward(G, A, W)
            dW += w
            db += b
        elif keep.any():
            dA[keep], w, b = self._backward(G[keep], A[keep], W)
            dW += w
            db += b
        return {"A_prev": dA, "W": dW, "b": db, "finite": finite}

    def _example_bytes(self, channels: Optional[int] = None) -> int:
        """Bytes one example takes in an evaluation: its input, outputs (``channels`` of them) and patches."""
        oh, ow = self.geom.out_hw
        kh, kw = self.geom.kernel
        C = self.inputs["A_prev"].shape[3]
        n = self.n_C if channels is None else channels
        per_example = int(np.prod(self.inputs["A_prev"].shape[1:]))  # A_prev may be streamed: no A_prev[0]
        return 8 * (per_example * 2 + oh * ow * (3 * n + kh * kw * C))

    def kinks(self, name: str, h: float) -> Optional[np.ndarray]:
        """A convolution is bilinear: no kinks."""
        return None

    def _forward(self, X):
        # NOTE: without the bias: it is the same on both sides of Z(+) - Z(-) and cancels exactly, but
        # added first it would round away an A*W part far smaller than it (A, W ~1e-8 with b ~1).
        return tiled.forward(X, self.inputs["W"], None, self.params, self.geom, tiled.ENGINE_BYTES, conv2d)

    def _backward(self, dZ, X, W, input_grad: bool = True):
        """``(dA_prev or None, dW, db)`` of examples ``X`` (k, ...) with filters ``W`` (the layer's, or |W|'s
        stand-in of ones): by tiles where one example's output row is too wide for the workspace."""
        return tiled.backward(dZ, X, W, self.params, self.geom, tiled.ENGINE_BYTES, input_grad, conv2d_backward)

    def _differences_of(self, X, G) -> np.ndarray:
        """Per pair k: ``sum(G[k] * (conv(X[k]) - conv(X[k + K])))`` for ``X`` (2K, ...) of plus then minus
        copies; the outputs by tiles within the workspace (of an example too large for it), each tile's
        two sides subtracted before the contraction."""
        K = X.shape[0] // 2
        out = np.zeros(K)
        W = self.inputs["W"]
        for t, x in tiled.each(self.geom, self.params, X, self.n_C, tiled.WORKSPACE_BYTES, least=2):
            # NOTE: each side in a call of its own, of the same shape, so that an output the perturbation does
            # not reach is rounded alike on both (see tiled.local_differences): else an element no window reads
            # has a numerical derivative of ~1e-13, and a sample of such elements fails a correct engine
            d = conv2d(x[:K], W, None, t.params) - conv2d(x[K:], W, None, t.params)
            out += _contract(d, G[:, t.rows, t.cols])
        return out

    def _directed_difference(self, x: np.ndarray, G, steps, count: int) -> np.ndarray:
        """``sum(G * (conv(x + s) - conv(x - s)))`` of one example ``x`` (1, H, W, C) for each of ``count`` steps
        ``s`` given by rectangles of it (``steps(rows, cols)``, an iterable): :meth:`_differences_of` of its plus
        and minus copies, the same tiles and values, with no copy of the example (:func:`.tiled.directed_difference`).
        Returns shape (count,)."""
        W = self.inputs["W"]
        return tiled.directed_difference(lambda X, params: conv2d(X, W, None, params), x, G, self.geom, self.params,
                                         self.n_C, steps, count)

    def _pairs_per_call(self) -> int:
        """Filter pairs one convolution call of :meth:`_filter_differences` stacks: up to 256, fewer where one
        example's evaluation of them would exceed the workspace (a chunk holds at least one example, so a
        wide one is bounded by fewer pairs instead). Closed form of ``_example_bytes(3 * k) <= BATCH_BYTES``."""
        oh, ow = self.geom.out_hw
        kh, kw = self.geom.kernel
        fixed = self._example_bytes(0)  # the example's input, copies and patches: any number of pairs
        per_pair = self._example_bytes(3) - fixed
        return int(min(256, max(1, (perturbed.BATCH_BYTES - fixed) // max(1, per_pair))))

    def _filter_differences(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        """Per filter pair q: sum(G[..., k_of[q]] * (conv(A_prev, F[0][..., q]) - conv(A_prev, F[1][..., q]))).

        ``F`` = (plus, minus) filter stacks (kh, kw, c_g, Q) and ``bias`` = (plus, minus)
        biases (Q,). Each filter sees the input channels of its own group (the group of
        the output channel it stands in for), exactly as in the grouped forward pass.

        NOTE: the two outputs are subtracted *before* the contraction with G: the
        large equal parts of the two losses never meet in a sum, so only the
        outputs' own rounding is left (see :meth:`rounding_floor`).
        """
        A = self.inputs["A_prev"]
        m = A.shape[0]
        n_g = self.n_C // self.groups
        Q = F[0].shape[3]
        out = np.zeros(Q)
        group_of = k_of // n_g
        # NOTE: every filter pair is evaluated on the whole batch, chunk by chunk: the plus and minus
        # filters of many pairs share one convolution call (one im2col of the chunk), and the loss
        # difference of each pair accumulates over the chunks (it is a sum over examples).
        step = self._pairs_per_call()
        for g in np.unique(group_of):
            qs = np.nonzero(group_of == g)[0]
            for lo in range(0, qs.size, step):
                q = qs[lo:lo + step]
                k = len(q)
                F2 = np.concatenate([F[0][..., q], F[1][..., q]], axis=3)
                b2 = np.concatenate([bias[0][q], bias[1][q]])
                for sl in batch_chunks(m, self._example_bytes(3 * k)):
                    xs, gs = self._chunk(sl)
                    xs = xs[..., g * self.c_g:(g + 1) * self.c_g]
                    for t, x in tiled.each(self.geom, self._single, xs, 2 * k, tiled.WORKSPACE_BYTES):
                        Z = conv2d(x, F2, b2, t.params)
                        g_t = gs[:, t.rows, t.cols][..., k_of[q]]
                        out[q] += np.einsum("mhwq,mhwq->q", Z[..., :k] - Z[..., k:], g_t)
        return out

    def _chunk(self, sl: slice) -> tuple:
        """A_prev and G of the examples ``sl``, as :meth:`_filter_differences` evaluates them chunk by chunk."""
        return self.inputs["A_prev"][sl], self.G[sl]

    def _magnitude(self, sl: slice = slice(None), bias: bool = True) -> np.ndarray:
        """``conv(|A_prev|, |W|) (+ |b|)`` of the examples ``sl``: the size of each output's terms."""
        A, W = self.inputs["A_prev"], self.inputs["W"]
        mag = tiled.forward(np.abs(A[sl]), np.abs(W), None, self.params, self.geom, tiled.ENGINE_BYTES,
                            conv2d)
        return mag + np.abs(self.inputs["b"]) if bias else mag

    def _floor_terms(self) -> dict:
        """One chunked pass over the batch for every rounding estimate (cached).

        With ``S = conv(|A_prev|, |W|)``: ``"A_prev"`` the per-element spread of ``|G| S``
        back to A_prev, ``"W"`` and ``"b"`` per output channel ``sum |G| S`` and
        ``sum |G| (S + |b|)``, ``"max"`` the largest ``S + |b|``.
        """
        if getattr(self, "_floor_cache", None) is None:
            A = self.inputs["A_prev"]
            chunks = batch_chunks(A.shape[0], self._example_bytes())
            spread = None if len(chunks) == 1 else np.empty(A.shape)  # one chunk: its spread as it comes
            per_w, per_b, top = np.zeros(self.n_C), np.zeros(self.n_C), 0.0
            for sl in chunks:
                s, w, b, t = self.floor_chunk(sl)
                if spread is None:
                    spread = s
                else:
                    spread[sl] = s
                per_w += w
                per_b += b
                top = max(top, t)
            self._floor_cache = {"A_prev": spread, "W": per_w, "b": per_b, "max": top}
        return self._floor_cache

    def by_tiles(self, sl: slice = slice(None)) -> bool:
        """Whether the examples ``sl`` are evaluated by tiles (:func:`.tiled.plan`: one output row's patches
        exceed the engine's bound, or their input is huge)."""
        k = len(range(*sl.indices(self.inputs["A_prev"].shape[0])))
        return tiled.plan(self.geom, self.inputs["A_prev"].shape[3], k, 0, tiled.ENGINE_BYTES) is not None

    def floor_chunk(self, sl: slice, spread: bool = True, mag: Optional[np.ndarray] = None):
        """The rounding estimates of :meth:`_floor_terms` over the examples ``sl``:
        (A_prev's spread or None, W's and b's per channel, the largest ``S + |b|``); ``mag``: their
        ``conv(|A_prev|, |W|)`` when already computed."""
        A, W, b = self.inputs["A_prev"], self.inputs["W"], self.inputs["b"]
        if self.by_tiles(sl):
            return self._floor_tiles(sl, spread, mag)
        mag = self._magnitude(sl, bias=False) if mag is None else mag
        absG = np.abs(self.G[sl])
        Q = absG * mag
        out = self._backward(Q, A[sl], np.ones_like(W))[0] if spread else None
        per_w = Q.sum(axis=(0, 1, 2))
        # NOTE: in place, as few arrays of the outputs' size at once as the values allow (a chunk may be one
        # example as large as the workspace): the same products and sums as (absG * (mag + |b|)).sum()
        del Q
        Q = mag + np.abs(b)
        top = float(np.max(Q)) if Q.size else 0.0
        Q *= absG
        return out, per_w, Q.sum(axis=(0, 1, 2)), top

    def _floor_tiles(self, sl: slice, spread: bool, mag: Optional[np.ndarray]):
        """:meth:`floor_chunk` tile by tile (:mod:`.tiled`): each tile's magnitudes (``mag``'s, or computed),
        its terms and its part of the spread; the same terms, summed in another order."""
        out = np.zeros(self.inputs["A_prev"][sl].shape) if spread else None
        per_w, per_b, top = np.zeros(self.n_C), np.zeros(self.n_C), 0.0
        for t, part, w, b, t_top in self.floor_tiles(sl, spread, mag):
            if part is not None:
                out[t.rect] += part
            per_w += w
            per_b += b
            top = max(top, t_top)
        return out, per_w, per_b, top

    def floor_tiles(self, sl: slice, spread: bool, mag: Optional[np.ndarray]):
        """:meth:`_floor_tiles`' tiles one by one (the tiles of :meth:`backward_tiles`): ``(tile, its input
        rectangle's part of the spread or None, W's and b's terms, its largest S + |b|)`` of each."""
        A, W, b = self.inputs["A_prev"][sl], self.inputs["W"], self.inputs["b"]
        G = self.G[sl]
        absW, ones = np.abs(W), np.ones_like(W)
        for t, x in tiled.each(self.geom, self.params, A, 0, tiled.ENGINE_BYTES):
            m = conv2d(np.abs(x), absW, None, t.params) if mag is None else mag[:, t.rows, t.cols]
            absG = np.abs(G[:, t.rows, t.cols])
            Q = absG * m
            # padding-only windows reach no input element
            part = conv2d_backward(Q, x, ones, t.params).dA_prev if spread and t.real else None
            w = Q.sum(axis=(0, 1, 2))
            Q = m + np.abs(b)
            top = float(np.max(Q)) if Q.size else 0.0
            Q *= absG
            yield t, part, w, Q.sum(axis=(0, 1, 2)), top

    def floor_scale(self) -> tuple:
        """The factors that turn the rounding spread (:meth:`floor_tiles`' parts summed) into the floor times
        ``h``, applied in order (as :meth:`rounding_floor`)."""
        return (MACHINE_EPS,)

    def backward_tiles(self, G):
        """The engine's backward of A_prev (one example too large for the workspace) tile by tile, reading ``G``
        (``G[:, rows, cols]``) by tiles: as :func:`.tiled.backward_tiles`, in the tiles of :meth:`floor_tiles`."""
        return tiled.backward_tiles(G, self.inputs["A_prev"], self.inputs["W"], self.params, self.geom,
                                    tiled.ENGINE_BYTES, True, conv2d_backward)

    def floor_top(self, sl: slice = slice(None)) -> float:
        """The largest ``conv(|A_prev|, |W|) + |b|`` over the examples ``sl`` (as :meth:`floor_chunk`'s; no G)."""
        if not self.by_tiles(sl):
            return _largest(self._magnitude(sl, bias=False), self.inputs["b"], scratch=True)
        # by tiles, the largest of each tile's: the same outputs as _magnitude's tiles, none held beyond its tile
        absW, top = np.abs(self.inputs["W"]), 0.0
        for t, x in tiled.each(self.geom, self.params, self.inputs["A_prev"][sl], 0, tiled.ENGINE_BYTES):
            top = max(top, _largest(conv2d(np.abs(x), absW, None, t.params), self.inputs["b"], scratch=True))
        return top

    def step_scale(self, name: str) -> Optional[float]:
        """The bias's step follows the outputs it is added to (max of |b| and |A*W| terms); others: None."""
        if name != "b":
            return None
        return max(self._floor_terms()["max"], float(np.max(np.abs(self.inputs["b"]))) if self.n_C else 0.0)

    def rounding_floor(self, name: str, h: float) -> np.ndarray:
        """Per element of input ``name``: the error float64 rounding may leave in its numerical derivative.

        Each output evaluated in float64 is off by up to about ``eps * S`` where
        ``S = conv(|A_prev|, |W|) + |b|`` is the sum of its terms' magnitudes (without
        ``|b|`` for A_prev and W, whose differences are evaluated without the bias); a
        central difference with step ``h`` sees ``sum |G| * S`` over the outputs the
        element feeds, divided by ``h``. An upper estimate (errors rarely align).
        """
        per = self._floor_terms()[name]
        if name == "W":
            per = np.broadcast_to(per, self.inputs["W"].shape)
        return MACHINE_EPS * per / h

    def element_cost(self, name: str) -> int:
        """Output values one elementwise evaluation of input ``name`` computes (W, b: the whole batch, twice;
        A_prev: its example's outputs, twice, or only those its windows reach where it is evaluated locally)."""
        oh, ow = self.geom.out_hw
        if name == "A_prev" and self._local():
            (sh, sw), (eh, ew) = self.geom.stride, self.geom.effective_kernel
            return 2 * min(oh, -(-eh // sh)) * min(ow, -(-ew // sw)) * self.n_C  # at most ceil(span / stride) per axis
        if name == "A_prev":
            return 2 * oh * ow * self.n_C
        return 2 * self.inputs["A_prev"].shape[0] * oh * ow

    def _local(self) -> bool:
        """Whether A_prev's elements are evaluated locally (:meth:`_local_differences`): an example has at least
        ``tiled.LOCAL_OUTPUTS`` output values (a window's are a few of them), or it and its copy are too large
        for the workspace."""
        oh, ow = self.geom.out_hw
        return oh * ow * self.n_C >= tiled.LOCAL_OUTPUTS or tiled.plan(
            self.geom, self.inputs["A_prev"].shape[3], 2, self.n_C, tiled.WORKSPACE_BYTES, least=2) is not None

    def reads(self, name: str) -> np.ndarray:
        """Every element counts for coverage (a convolution has no kinks)."""
        return np.ones(self.inputs[name].shape, dtype=bool)

    def differences(self, name: str, idx, plus, minus, tick: Tick = None) -> np.ndarray:
        """``L(x+) - L(x-)`` for the elements ``idx`` (flat) of input ``name`` set to plus/minus."""
        if name == "A_prev":
            oh, ow = self.geom.out_hw
            kh, kw = self.geom.kernel
            if self._local():  # one example's two copies exceed the workspace
                return self._local_differences(idx, plus, minus, tick)
            out_bytes = 8 * oh * ow * (self.n_C + kh * kw * self.inputs["A_prev"].shape[3])
            return example_differences(self._differences_of, self.inputs["A_prev"], self.G, idx, plus, minus,
                                       out_bytes, tick)
        W = self.inputs["W"]
        K = len(idx)
        if name == "W":
            i, j, c, k = np.unravel_index(idx, W.shape)
            Fp, Fm = W[..., k].copy(), W[..., k].copy()
            Fp[i, j, c, np.arange(K)] = plus
            Fm[i, j, c, np.arange(K)] = minus
            bias = (np.zeros(K), np.zeros(K))  # cancels in the difference; see _forward
        else:
            k = np.asarray(idx)
            Fp = Fm = W[..., k]
            bias = (np.asarray(plus, dtype=np.float64), np.asarray(minus, dtype=np.float64))
        out = self._filter_differences((Fp, Fm), bias, k)
        _tick(tick, K)
        return out

    def _local_differences(self, idx, plus, minus, tick: Tick = None) -> np.ndarray:
        """:meth:`differences` of A_prev's elements ``idx``, each on the outputs it reaches
        (:func:`.tiled.local_differences`)."""
        W = self.inputs["W"]
        out = tiled.local_differences(lambda X, params: conv2d(X, W, None, params), self.inputs["A_prev"], self.G,
                                      self.geom, self.params, idx, plus, minus)
        _tick(tick, len(out))
        return out

    def directional(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """``L(x + h D[p]) - L(x - h D[p])`` for each direction p of input ``name``."""
        return self.directional_blocks(name, D, h, tick).sum(axis=1)

    def block_ids(self, name: str) -> np.ndarray:
        """Per element of input ``name``: its block (A_prev: example; W, b: output channel)."""
        shape = self.inputs[name].shape
        if name == "A_prev":
            return np.broadcast_to(np.arange(shape[0]).reshape(-1, 1, 1, 1), shape)
        return np.broadcast_to(np.arange(self.n_C), shape)

    def directional_blocks(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """The directional differences per block (see :meth:`block_ids`): shape (P, blocks).

        A block's part of the loss changes only with its own elements (an example's
        outputs, an output channel's filter and bias), so one evaluation gives all
        blocks' differences; blocks where ``D[p]`` is zero are not evaluated.
        """
        if name == "A_prev":
            return example_directional(self._differences_of, self.inputs["A_prev"], self.G, D, h, tick,
                                       self._example_bytes())
        W, b = self.inputs["W"], self.inputs["b"]
        P = D.shape[0]
        out = np.zeros((P, self.n_C))
        nz = D.reshape(P, -1, self.n_C).any(axis=1)  # (P, n_C): channels each direction moves
        ps, ks = np.nonzero(nz)
        if ks.size:
            if name == "W":
                F = [W[..., ks] + s * h * D[ps, ..., ks].transpose(1, 2, 3, 0) for s in (1.0, -1.0)]
                zero = np.zeros(ks.size)  # the bias cancels; see _forward
                bias = (zero, zero)
            else:
                F = [W[..., ks]] * 2
                bias = tuple(b[ks] + s * h * D[ps, ks] for s in (1.0, -1.0))
            out[ps, ks] = self._filter_differences(F, bias, ks)
        _tick(tick, P)
        return out


def _largest(mag: np.ndarray, b: np.ndarray, scratch: bool = False) -> float:
    """``max(mag + |b|)``, 0 when there are no outputs (``scratch``: ``mag`` may be overwritten)."""
    if not mag.size:
        return 0.0
    return float(np.max(np.add(mag, np.abs(b), out=mag) if scratch else mag + np.abs(b)))
