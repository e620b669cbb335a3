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
error, asking for other elements) is evaluated over the set as before.

Each value is the same sum of the same outputs' differences as the unfused
evaluation's, only accumulated in another order (other chunks, other products):
they agree to float64 rounding, as the in-memory and streamed checks do.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..engine import conv2d
from .context import Tracker
from .core import auto_samples, tensor_check, verdict
from .problems import ConvProblem, batch_chunks
from .results import GradientResult

#: Filter pairs foreseen at most (W's and b's requests together); requests beyond it are left to the
#: unfused evaluation (``--method full`` on a large W): the bank's filters stay small.
BANK_PAIRS = 4096
#: Output channels of one convolution of the bank (a wider bank is split into several).
BANK_COLUMNS = 512
#: Filter pairs contracted with G at a time (a segment of the bank's outputs).
SEGMENT_PAIRS = 128
#: Outputs whose differences are computed and contracted at a time: they stay in cache. (Small products
#: also stay on the calling thread: a threaded BLAS hands each product of thousands of rows to its threads.)
SLICE_OUTPUTS = 2048
#: Up to this many output channels, a segment's sums come from one product with the whole G
#: (pairs x channels, the off-diagonal ones unused) rather than from a gather of each pair's channel.
CONTRACT_CHANNELS = 64


class StreamedConv(ConvProblem):
    """The convolution over a streamed batch, as :mod:`.core` checks W and b on it.

    Its analytical dW, db and rounding estimates come from the one pass over the
    batch (:func:`.streamed._pass`); the evaluations of W and b are served from the
    sums that pass made (see the module docstring), others run over the batch chunk by chunk.
    """

    names = ("W", "b")

    def __init__(self, *args, checks=None):
        super().__init__(*args)
        self.checks = checks  # (eps, tol, method, samples, sample size free): how W and b will be checked
        self._served: list = []
        self.bank: Optional[Bank] = None

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
        bits = type(rng.bit_generator)()
        bits.state = rng.bit_generator.state
        replay, notes, tracker = np.random.Generator(bits), [], Tracker(None)
        for name in self.names:
            n = auto_samples(stand_in, name, samples, notes) if free and method == "fast+sample" else samples
            t = tensor_check(stand_in, name, np.zeros(self.inputs[name].shape), eps, tol, replay, tracker, notes)
            if not isinstance(t, GradientResult):
                verdict(t, eps, method, n)
        self.bank = Bank(self, stand_in.requests) if stand_in.requests else None

    def pass_weight(self) -> int:
        """What one example of the pass costs, in evaluations of two forwards of one example (progress)."""
        width = sum(F.shape[3] for _, F, _ in self.bank.banks) if self.bank is not None else 0
        return max(1, round((3 + width / self.n_C) / 2))  # backward ~2 forwards, magnitudes 1, the bank

    def _filter_differences(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        """As :meth:`ConvProblem._filter_differences`: from the pass's sums when foreseen, else over the batch."""
        for i, (request, values) in enumerate(self._served):
            if _same_request(request, (F, bias, k_of)):
                del self._served[i]
                return values.copy()
        return self._unfused(F, bias, k_of)

    def _unfused(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        """Over the batch chunk by chunk; a bias's pairs share their filter (``F[0] is F[1]``),
        so each distinct filter is evaluated once and the two biases added to it."""
        if F[0] is not F[1] or self.groups != 1:
            return super()._filter_differences(F, bias, k_of)
        A = self.inputs["A_prev"]
        ks, first = np.unique(k_of, return_index=True)
        which = np.searchsorted(ks, k_of)
        filters = F[0][..., first]
        out = np.zeros(len(k_of))
        for sl in batch_chunks(A.shape[0], self._example_bytes(3 * len(k_of))):
            base = conv2d(A[sl], filters, None, self._single)[..., which]
            Gk = self.G[sl][..., k_of]
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
        self._pairs = 0

    def _filter_differences(self, F, bias, k_of: np.ndarray) -> np.ndarray:
        if self._pairs + len(k_of) <= BANK_PAIRS:
            self.requests.append((tuple(F), tuple(bias), np.array(k_of)))
            self._pairs += len(k_of)
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

    Each pair q stands for output channel ``k[q]``: its loss difference is
    ``sum(G[..., k] * ((conv(A, F+) + b+) - (conv(A, F-) + b-)))`` over the batch.
    A request's pairs are split by group into segments; each group's segments share
    banks of at most ``BANK_COLUMNS`` filters: a perturbed filter pair has two columns
    (its plus filters side by side, then its minus filters), a bias pair (both filters
    W's own column k, only the biases differ) shares W's column with the other bias pairs
    of the bank. :meth:`add` convolves a chunk with each bank once and adds every pair's
    part of the sum.
    """

    def __init__(self, problem: StreamedConv, requests: list):
        self.problem, self.requests, self.spans = problem, requests, []
        W = problem.inputs["W"]
        n_g = problem.n_C // problem.groups
        self.banks: list = []  # [group, filters, {W column k: bank column}, segments]
        open_bank: dict = {}
        n = 0
        for (Fp, Fm), (bp, bm), k_of in requests:
            k_of = np.asarray(k_of, dtype=np.int64)
            self.spans.append((n, n + k_of.size))
            shared = _bits(Fp) == _bits(Fm) == _bits(W[..., k_of])  # a bias request: W's own filters
            for g in np.unique(k_of // n_g):
                for lo in range(0, k_of.size, SEGMENT_PAIRS):
                    part = np.flatnonzero(k_of // n_g == g)[lo:lo + SEGMENT_PAIRS]
                    if not part.size:
                        break
                    need = np.setdiff1d(k_of[part], list(open_bank[g][2])).size if shared and g in open_bank \
                        else (np.unique(k_of[part]).size if shared else 2 * part.size)
                    bank = open_bank.get(g)
                    if bank is None or len(bank[1]) + need > BANK_COLUMNS:
                        bank = open_bank[g] = [int(g), [], {}, []]
                        self.banks.append(bank)
                    filters, base = bank[1], bank[2]
                    bias = (np.asarray(bp, dtype=np.float64)[part], np.asarray(bm, dtype=np.float64)[part])
                    if shared:
                        for k in k_of[part]:
                            if int(k) not in base:
                                base[int(k)] = len(filters)
                                filters.append(W[..., k])
                        where = np.array([base[int(k)] for k in k_of[part]], dtype=np.int64)
                    else:
                        where = len(filters)
                        filters.extend(Fp[..., q] for q in part)
                        filters.extend(Fm[..., q] for q in part)
                    zero = not (bias[0].any() or bias[1].any())
                    bank[3].append((n + part, where, bias, zero, k_of[part]))
            n += k_of.size
        self.banks = [(g, np.stack(f, axis=-1), segs) for g, f, _, segs in self.banks]
        self.out = np.zeros(n)

    def add(self, x: np.ndarray, G: np.ndarray) -> None:
        """Add the examples ``x`` (m, H, W, C), upstream gradient ``G`` (m, oh, ow, n_C), to every pair's sum."""
        pr = self.problem
        oh, ow = pr.geom.out_hw
        kh, kw = pr.geom.kernel
        per_input = int(np.prod(x.shape[1:]))
        for g, F, segments in self.banks:
            xs = x if pr.groups == 1 else x[..., g * pr.c_g:(g + 1) * pr.c_g]
            # the bank's outputs (and the engine's patches) of a few examples at a time
            for sl in batch_chunks(x.shape[0], 8 * (2 * per_input + oh * ow * (F.shape[3] + kh * kw * pr.c_g))):
                Z = conv2d(xs[sl], F, None, pr._single)
                Z, Gs = Z.reshape(-1, F.shape[3]), G[sl].reshape(-1, pr.n_C)
                # NOTE: a few thousand outputs at a time: their differences stay in cache until contracted
                for lo in range(0, Z.shape[0], SLICE_OUTPUTS):
                    z, gs = Z[lo:lo + SLICE_OUTPUTS], Gs[lo:lo + SLICE_OUTPUTS]
                    for pairs, where, (bp, bm), zero, k in segments:
                        self.out[pairs] += _contract(_differences(z, where, pairs.size, bp, bm, zero), gs, k)

    def values(self) -> list:
        """Per request, its loss differences (one per filter pair)."""
        return [self.out[a:b].copy() for a, b in self.spans]


def _differences(z: np.ndarray, where, q: int, bp: np.ndarray, bm: np.ndarray, zero: bool) -> np.ndarray:
    """Per output (row of ``z``) and pair: ``(z+ + b+) - (z- + b-)``, as the layer computes each output.

    ``where``: the pairs' columns of ``z``, plus filters at ``where:where+q`` and minus filters after
    them, or (bias pairs) one column per pair, both sides sharing it.
    NOTE: the two sides are subtracted before the contraction (see ConvProblem._filter_differences).
    """
    if isinstance(where, np.ndarray):
        base = z[:, where]
        return (base + bp) - (base + bm)
    plus, minus = z[:, where:where + q], z[:, where + q:where + 2 * q]
    return plus - minus if zero else (plus + bp) - (minus + bm)  # + 0.0 changes no difference


def _contract(D: np.ndarray, G: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per column q of ``D`` (outputs, pairs): ``sum(D[:, q] * G[:, k[q]])`` (G: outputs, channels)."""
    if G.shape[1] <= CONTRACT_CHANNELS:  # one product for all pairs and channels, then each pair's own
        return (D.T @ G)[np.arange(k.size), k]
    return np.einsum("pq,pq->q", D, G[:, k])
