"""W's and b's evaluations of a streamed convolution, made in the one pass over the set.

:mod:`.core` checks W and b after the pass that gives their analytical gradients,
and each evaluation it asks for (``L(W + h d) - L(W - h d)`` per direction, per
sampled element; the same for b) is a sum over the whole set: on its own, each
would be one more pass over it (a read, a redraw of G, an unroll of every chunk's
patches). But which evaluations the check asks for is known beforehand: its
steps, directions and samples come from the seeded generator in a fixed order,
and a check that passes asks for the same ones whatever the values. So
:meth:`StreamedConv.foresee` runs W's and b's checks beforehand on a copy of the
generator, on a stand-in problem whose gradients and evaluations are zeros
(the path a passing check takes), and records each request. The pass then
evaluates every recorded request chunk by chunk (:class:`Bank`): the filters of
all of them stacked along the output channels of one convolution per group and
chunk (one unroll of the chunk's patches, one wider product), the bias
perturbations added to the unperturbed filters' outputs. The check is then
served from these sums; a request not foreseen (a failing check localizing its
error, asking for other elements) is evaluated over the set as before. The same
convolutions give the rounding estimates' magnitudes ``conv(|A_prev|, |W|)`` on
input without negative values (|W|'s columns join the bank), and each
convolution's outputs are summed in two halves on the engine's worker threads (idle then).

Each value is the same sum of the same outputs' differences as the unfused
evaluation's, only accumulated in another order (other chunks, other products):
they agree to float64 rounding, as the in-memory and streamed checks do.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..engine import conv2d, run_parallel
from . import tiled
from .context import Tracker
from .core import auto_samples, tensor_check, verdict
from .lazy import copy_generator
from .perturbed import batch_chunks
from .problems import ConvProblem
from .results import GradientResult

#: Bytes of the foreseen requests' filters at most (W's and b's together); a request beyond it is left
#: to the unfused evaluation (``--method full`` on a large W): the bank's filters stay small.
BANK_BYTES = 16 * 2**20
#: Output channels of one convolution of the bank (a wider bank is split into several).
BANK_COLUMNS = 512
#: Filter pairs contracted with G at a time (a segment of the bank's outputs).
SEGMENT_PAIRS = 128
#: Bytes of one convolution's outputs in the bank. Measured on 64x64x3 images, 88 filters: a call on 2 or
#: 3 examples (6-9 MiB of outputs) took 4.2 s of CPU per 3000 images, on 5 or 8 examples 7 s (the products
#: leave the cache), on 26 (75 MiB, mapped afresh each time) 1.8 s more of page faults.
OUTPUT_BYTES = 8 * 2**20
#: Outputs whose differences are computed and contracted at a time: they stay in cache.
SLICE_OUTPUTS = 2048


class StreamedConv(ConvProblem):
    """The convolution over a streamed batch, as :mod:`.core` checks W and b on it.

    Its analytical dW, db and rounding estimates come from the one pass over the
    batch (:func:`.streamed_evals.pass_over_batch`); the evaluations of W and b are served from the
    sums that pass made (see the module docstring), others run over the batch chunk by chunk.
    """

    names = ("W", "b")

    def __init__(self, *args, checks=None):
        super().__init__(*args)
        self.checks = checks  # (eps, tol, method, samples, sample size free): how W and b will be checked
        self._served: list = []
        self.bank: Optional[Bank] = None
        # (A_prev, G) of a chunk as the pass reads them (set by the streamed check): one huge example unread and
        # its G undrawn, so that an evaluation not foreseen goes by tiles, each reading its rectangle
        self.reader: Optional[Callable] = None

    def set_pass(self, grads: dict, floor_terms: dict) -> None:
        """The pass's gradients and rounding estimates; its sums serve the foreseen evaluations."""
        self._grads, self._floor_cache = grads, floor_terms
        if self.bank is not None:
            self._served = list(zip(self.bank.requests, self.bank.values()))
            self.bank = None

    def analytical(self):
        return self._grads

    def foresee(self, rng: np.random.Generator, top: float) -> None:
        """Record the evaluations W's and b's checks will ask for, their generator being ``rng`` now.

        ``top`` is the largest ``conv(|A_prev|, |W|) + |b|`` over the set (b's step follows it).
        """
        if self.checks is None:
            return
        eps, tol, method, samples, free = self.checks
        stand_in = _Recorder(self, top)
        replay, notes, tracker = copy_generator(rng), [], Tracker(None)
        for name in self.names:
            n = auto_samples(stand_in, name, samples, notes) if free and method == "fast+sample" else samples
            t = tensor_check(stand_in, name, np.zeros(self.inputs[name].shape), eps, tol, replay, tracker, notes)
            if not isinstance(t, GradientResult):
                verdict(t, eps, method, n)
        self.bank = Bank(self, stand_in.requests) if stand_in.requests else None

    def pass_weight(self) -> int:
        """What one example of the pass costs, in evaluations of two forwards of one example (progress)."""
        width = sum(bank[1].shape[3] for bank in self.bank.banks) if self.bank is not None else 0
        return max(1, round((3 + width / self.n_C) / 2))  # backward ~2 forwards, magnitudes 1, the bank

    def _filter_differences(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        """As :meth:`ConvProblem._filter_differences`: from the pass's sums when foreseen, else over the batch."""
        for i, (request, values) in enumerate(self._served):
            if _same_request(request, (F, bias, k_of)):
                del self._served[i]
                return values.copy()
        return self._unfused(F, bias, k_of)

    def _chunk(self, sl: slice) -> tuple:
        return super()._chunk(sl) if self.reader is None else self.reader(sl)

    def _unfused(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        """Over the batch chunk by chunk (one huge example by tiles); a bias's pairs share their filter
        (``F[0] is F[1]``), so each distinct filter is evaluated once and the two biases added to it."""
        if F[0] is not F[1] or self.groups != 1:
            return super()._filter_differences(F, bias, k_of)
        A = self.inputs["A_prev"]
        ks, first = np.unique(k_of, return_index=True)
        which = np.searchsorted(ks, k_of)
        filters = F[0][..., first]
        out = np.zeros(len(k_of))
        for sl in batch_chunks(A.shape[0], self._example_bytes(3 * len(k_of))):
            xs, gs = self._chunk(sl)
            for t, x in tiled.each(self.geom, self._single, xs, len(ks), tiled.WORKSPACE_BYTES):
                base = conv2d(x, filters, None, t.params)[..., which]
                Gk = gs[:, t.rows, t.cols][..., k_of]
                # NOTE: (base + b+) - (base + b-) as the layer computes each output: the bias added to the product
                out += np.einsum("mhwq,mhwq->q", (base + bias[0]) - (base + bias[1]), Gk)
        return out


class _Recorder(StreamedConv):
    """A stand-in of ``problem`` for the replayed checks: zero gradients, rounding estimates and
    evaluations (a passing check's path), each evaluation recorded."""

    def __init__(self, problem: StreamedConv, top: float):
        self.__dict__.update(problem.__dict__)
        W, b = problem.inputs["W"], problem.inputs["b"]
        self._grads = {"W": np.zeros(W.shape), "b": np.zeros(b.shape)}
        self._floor_cache = {"W": np.zeros(self.n_C), "b": np.zeros(self.n_C), "max": top}
        self.requests: list = []
        self._bytes = 0

    def _filter_differences(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        size = F[0].nbytes + F[1].nbytes
        if self._bytes + size <= BANK_BYTES:
            self.requests.append((tuple(F), tuple(bias), np.array(k_of)))
            self._bytes += size
        return np.zeros(len(k_of))


def _same_request(a, b) -> bool:
    """The same filters, biases and channels, to the bit."""
    (Fa, ba, ka), (Fb, bb, kb) = a, b
    return (np.array_equal(ka, kb) and all(_bits(x) == _bits(y) for x, y in zip(Fa + ba, tuple(Fb) + tuple(bb))))


def _bits(x) -> tuple:
    x = np.asarray(x, dtype=np.float64)
    return x.shape, np.ascontiguousarray(x).tobytes()


class Bank:
    """Every foreseen request's filter pairs, evaluated together chunk by chunk.

    Each pair j stands for output channel ``k[j]``: its loss difference is
    ``sum(G[..., k] * ((conv(A, F+) + b+) - (conv(A, F-) + b-)))`` over the batch. The pairs
    of a group fill banks of at most ``BANK_COLUMNS`` filters, in this order: W's own
    columns that bias pairs need (both their filters are W's column k, only the biases
    differ: one column for all of them), then the plus filters of the perturbed pairs, then
    their minus filters. :meth:`add` convolves a chunk with each bank once and adds every
    pair's part of the sum.
    """

    def __init__(self, problem: StreamedConv, requests: list):
        self.problem, self.requests, self.spans = problem, requests, []
        W = problem.inputs["W"]
        n_g = problem.n_C // problem.groups
        filling, open_bank = [], {}  # per bank: [group, {k: base column}, [(pair, k)], [(pair, F+, F-)]]
        plus_bias, minus_bias, ks = [], [], []
        for (Fp, Fm), (bp, bm), k_of in requests:
            self.spans.append((len(ks), len(ks) + len(k_of)))
            shared = _bits(Fp) == _bits(Fm) == _bits(W[..., np.asarray(k_of)])  # a bias request
            for q, k in enumerate(int(k) for k in k_of):
                bank = open_bank.get(k // n_g)
                need = (k not in bank[1]) if shared and bank is not None else (1 if shared else 2)
                if bank is None or len(bank[1]) + 2 * len(bank[3]) + need > BANK_COLUMNS:
                    bank = open_bank[k // n_g] = [k // n_g, {}, [], []]
                    filling.append(bank)
                if shared:
                    bank[1].setdefault(k, len(bank[1]))
                    bank[2].append((len(ks), k))
                else:
                    bank[3].append((len(ks), Fp[..., q], Fm[..., q]))
                plus_bias.append(float(bp[q]))
                minus_bias.append(float(bm[q]))
                ks.append(k)
        self.plus_bias, self.minus_bias = np.array(plus_bias), np.array(minus_bias)
        self.k = np.array(ks, dtype=np.int64)
        # the first bank of each group also holds |W|'s columns of the group: on input without negative values
        # conv(|A_prev|, |W|) (the rounding estimates' magnitudes) comes with the bank's outputs
        first = {bank[0]: i for i, bank in reversed(list(enumerate(filling)))}
        self.banks = [self._bank(W, *bank, magnitudes=first[bank[0]] == i) for i, bank in enumerate(filling)]
        self.magnitudes = len(first) == problem.groups
        self.out = np.zeros(len(ks))

    def _bank(self, W, group: int, base: dict, shared: list, perturbed: list, magnitudes: bool):
        """(group, filters (kh, kw, c_g, columns), segments, first column of |W| or None): the bank's columns
        and how its pairs read them."""
        nb, n_p = len(base), len(perturbed)
        filters = [W[..., k] for k in sorted(base, key=base.get)]
        filters += [f for _, f, _ in perturbed] + [f for _, _, f in perturbed]
        at = len(filters) if magnitudes else None
        n_g = self.problem.n_C // self.problem.groups
        if magnitudes:
            filters += [np.abs(W[..., k]) for k in range(group * n_g, (group + 1) * n_g)]
        segments = []
        for lo in range(0, len(shared), SEGMENT_PAIRS):
            pairs = np.array([j for j, _ in shared[lo:lo + SEGMENT_PAIRS]], dtype=np.int64)
            cols = np.array([base[k] for _, k in shared[lo:lo + SEGMENT_PAIRS]], dtype=np.int64)
            segments.append((pairs, cols, None))
        for lo in range(0, n_p, SEGMENT_PAIRS):
            pairs = np.array([j for j, _, _ in perturbed[lo:lo + SEGMENT_PAIRS]], dtype=np.int64)
            zero = not (self.plus_bias[pairs].any() or self.minus_bias[pairs].any())
            segments.append((pairs, nb + lo, (nb + n_p + lo, zero)))
        return group, np.stack(filters, axis=-1), [
            (pairs, where, minus, self.plus_bias[pairs], self.minus_bias[pairs], self.k[pairs])
            for pairs, where, minus in segments], at

    def add(self, x: np.ndarray, G: np.ndarray, magnitudes: bool = True) -> Optional[np.ndarray]:
        """Add the examples ``x`` (m, H, W, C), upstream gradient ``G`` (m, oh, ow, n_C), to every pair's sum.

        Returns ``conv(|x|, |W|)`` (m, oh, ow, n_C) when ``x`` has no negative values (it is then
        ``conv(x, |W|)``, from the same convolutions) and ``magnitudes`` asks for it, else None.
        """
        pr = self.problem
        oh, ow = pr.geom.out_hw
        n_g = pr.n_C // pr.groups
        mag = np.empty((x.shape[0], oh, ow, pr.n_C)) if magnitudes and self.magnitudes and _non_negative(x) else None
        for g, F, segments, at in self.banks:
            xs = x if pr.groups == 1 else x[..., g * pr.c_g:(g + 1) * pr.c_g]
            for sl in batch_chunks(x.shape[0], 8 * oh * ow * F.shape[3], OUTPUT_BYTES):  # a few examples at a time
                # an example whose outputs exceed OUTPUT_BYTES alone: by tiles of them (see .tiled)
                for t, xt in tiled.each(pr.geom, pr._single, xs[sl], F.shape[3], OUTPUT_BYTES):
                    Z = conv2d(xt, F, None, t.params)
                    if mag is not None and at is not None:
                        mag[sl, t.rows, t.cols, g * n_g:(g + 1) * n_g] = Z[..., at:at + n_g]
                    self._sums(Z.reshape(-1, F.shape[3]), G[sl][:, t.rows, t.cols].reshape(-1, pr.n_C), segments)
        return mag

    def _sums(self, Z: np.ndarray, G: np.ndarray, segments) -> None:
        """Add one convolution's outputs ``Z`` (outputs, columns) to its pairs' sums (G: outputs, channels).

        NOTE: the engine's threads are idle meanwhile: the second half of the outputs is summed on
        another core (numpy leaves the interpreter lock in these loops), into sums of its own.
        """
        half = Z.shape[0] // (2 * SLICE_OUTPUTS) * SLICE_OUTPUTS
        if half == 0:
            _sum_rows(Z, G, segments, self.out)
            return
        other = np.zeros_like(self.out)
        # the engine's worker threads: this thread takes the first half, a worker the second
        run_parallel(lambda z, g, out: _sum_rows(z, g, segments, out),
                     [(Z[:half], G[:half], self.out), (Z[half:], G[half:], other)])
        self.out += other

    def values(self) -> list:
        """Per request, its loss differences (one per filter pair)."""
        return [self.out[a:b].copy() for a, b in self.spans]


def _non_negative(x: np.ndarray) -> bool:
    """Whether ``x`` has no negative value (NaN counts as not), a piece at a time: no mask of its size."""
    flat = x.reshape(-1)
    return all(bool(np.all(flat[lo:lo + 2**20] >= 0)) for lo in range(0, flat.size, 2**20))


def _sum_rows(Z: np.ndarray, G: np.ndarray, segments, out: np.ndarray) -> None:
    """Add the outputs ``Z`` to the pairs' sums ``out``, a few thousand outputs at a time (they stay in cache)."""
    for lo in range(0, Z.shape[0], SLICE_OUTPUTS):
        z, gs = Z[lo:lo + SLICE_OUTPUTS], G[lo:lo + SLICE_OUTPUTS]
        for pairs, where, minus, bp, bm, k in segments:
            out[pairs] += _contract(_differences(z, where, minus, bp, bm), gs, k)


def _differences(z: np.ndarray, where, minus, bp: np.ndarray, bm: np.ndarray) -> np.ndarray:
    """Per output (row of ``z``) and pair: ``(z+ + b+) - (z- + b-)``, as the layer computes each output.

    Bias pairs (``minus`` None): ``where`` holds each pair's column, both sides sharing it.
    Perturbed pairs: their plus filters' columns start at ``where``, their minus filters' at
    ``minus[0]``; ``minus[1]`` says both biases are zero (``z + 0.0`` changes no difference).
    NOTE: the two sides are subtracted before the contraction (see ConvProblem._filter_differences).
    """
    if minus is None:
        base = z[:, where]
        return (base + bp) - (base + bm)
    q = bp.size
    plus, other = z[:, where:where + q], z[:, minus[0]:minus[0] + q]
    return plus - other if minus[1] else (plus + bp) - (other + bm)


def _contract(D: np.ndarray, G: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per column q of ``D`` (outputs, pairs): ``sum(D[:, q] * G[:, k[q]])`` (G: outputs, channels)."""
    # NOTE: not a matrix product: numpy's BLAS hands each of these small products to its own threads and
    # waits for them (measured 5x slower at 4096 outputs, and erratic)
    return np.einsum("pq,pq->q", D, G[:, k])
