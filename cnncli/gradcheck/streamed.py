"""The gradient check of one layer call on a data set read in batch chunks (HDF5, ``.npy``).

The same check as :func:`.layers.gradcheck_conv` / :func:`.layers.gradcheck_pool`,
with the same seed giving the same upstream gradient, directions and samples,
but nothing as large as the data set is ever held in float64:

- the upstream gradient G is drawn from the seed chunk by chunk: the very values
  of the whole draw, drawn again when needed (:class:`DrawnUpstream`);
- one pass over the batch computes, per chunk, A_prev's gradient (for a conv only
  on the examples sampled or moved, kept only at the sampled elements), its
  rounding floor and its directional sums (per example); dW, db and their
  rounding estimates accumulate over the chunks;
- A_prev's sampled elements are checked from the examples that hold them, and a
  failing directional check is localized in the examples that disagree;
- W and b are checked by :mod:`.core` as in memory, their evaluations made in
  that same pass (foreseen from the seed: see :mod:`.fused`); only the count of what
  cannot be checked and the largest output magnitude (b's step) take a pass of their own,
  without G.

The pass over the batch and the elementwise differences are in :mod:`.streamed_evals`.

On a large set (more than ``SAMPLE_WHOLE_LIMIT`` elements) A_prev's sample is
stratified over examples first: one example from each of ``SAMPLED_EXAMPLES``
equal parts of the set, then its elements (corners, edges, interior) as usual;
a note says so.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..engine import ConvParams, PoolParams
from ..engine.layout import window_of
from ..errors import ShapeError
from .context import Progress, Tracker
from .core import (AUTO_FULL_LIMIT, DEFAULT_EPS, DEFAULT_TOL, Coverage, auto_samples, inconclusive, input_sizes,
                   merge, settle, step_size, tensor_check, underflow_reason, unused_samples, validate_settings,
                   verdict)
from .directional import block_verdict
from .fused import StreamedConv
from .layers import as_params, describe_params, refuse_non_finite
from .lazy import DirectionChunks, DrawnUpstream, Examples, ReadExample, copy_generator
from .metrics import gradient_name
from .perturbed import batch_chunks
from .pool_problem import PoolProblem
from .problems import ConvProblem
from .results import CheckResult, GradientResult
from .sampling import stratified_blocks, stratified_indices
from .streamed_evals import (Batch, ExcludedRect, chunk_of, elementwise, every_element, example_bytes,
                             excluded_mask, localized, pass_over_batch, read, stuck_mask, unread, unread_coverage)

#: A_prev of at most this many elements is sampled as in memory (one mask over the whole set);
#: a larger one by examples first (see the module docstring).
SAMPLE_WHOLE_LIMIT = 2**22
#: Examples a large set's A_prev sample is drawn from.
SAMPLED_EXAMPLES = 64
#: Examples a large set's directional check of A_prev moves (each costs six forward evaluations).
DIRECTED_EXAMPLES = 256


def gradcheck_streamed(A_prev, W=None, b=None, params: Union[ConvParams, PoolParams, dict, None] = None, *,
                       kind: str = "conv", grad=None, method: str = "auto", samples: Optional[int] = None,
                       eps: float = DEFAULT_EPS, tol: float = DEFAULT_TOL, seed: Optional[int] = 0,
                       progress: Optional[Progress] = None, label: str = "") -> CheckResult:
    """Check the engine's gradients of a conv or pool layer on a batch read chunk by chunk.

    Parameters
    ----------
    A_prev : object with ``shape`` (m, n_H_prev, n_W_prev, n_C_prev) and ``[lo:hi]`` slices
        E.g. a :class:`cnncli.passes.layer.Batches`; chunks are read as float64 (NHWC).
    W : ndarray, shape (f_h, f_w, n_C_prev // groups, n_C), optional
        The filters (conv).
    b : ndarray, shape (n_C,), optional
        Zeros when omitted (conv).
    params : ConvParams, PoolParams or dict, optional
    kind : {"conv", "pool"}
    grad : object like ``A_prev``, shape (m, n_H, n_W, n_C), optional
        The upstream gradient; when omitted, the standard normal draw of ``seed`` that
        the in-memory check makes (:class:`DrawnUpstream`).
    method, samples, eps, tol, seed, progress, label
        As :func:`cnncli.gradcheck.core.check_problem`. ``"full"`` compares A_prev's elements chunk by chunk
        (:func:`.streamed_evals.every_element`), an example too large for the workspace piece by piece.

    Returns
    -------
    CheckResult
        As the in-memory check's; ``errors`` of a gradient larger than ``streamed_evals.DENSE_VALUES``
        elements is None, as is its ``error_map`` where its height x width exceed that (the failing
        positions, which the hints read, are kept).

    Raises
    ------
    ShapeError, HyperparameterError
        As :func:`cnncli.gradcheck.gradcheck_conv`.
    InputError
        NaN or inf in A_prev, W, b or the given upstream gradient (as in memory; A_prev's are
        counted in the first pass over it).
    """
    sample_size_free = samples is None
    method, samples = validate_settings(method, samples, eps, tol, seed)
    params = as_params(params, kind, window_of(W, "nhwc") if kind == "conv" else None)
    A = Examples(A_prev)
    if kind == "conv":
        W = np.ascontiguousarray(W, dtype=np.float64)
        n_C = W.shape[3]
        b = np.zeros(n_C) if b is None else np.asarray(b, dtype=np.float64).reshape(n_C)
        out_hw = params.geometry(A.shape[1:3], W.shape[:2]).out_hw
    else:
        n_C = A.shape[3]
        out_hw = params.geometry(A.shape[1:3]).out_hw
    out_shape = (A.shape[0],) + tuple(out_hw) + (n_C,)
    G = DrawnUpstream(seed, out_shape) if grad is None else Examples(grad)
    if G.shape != out_shape:
        raise ShapeError(f"the upstream gradient must have the output's shape {out_shape}, got {G.shape}")
    total = A.size + (W.size + b.size if kind == "conv" else 0)
    method_used = ("full" if total <= AUTO_FULL_LIMIT else "fast+sample") if method == "auto" else method

    def blank(A_c):  # no upstream gradient: what cannot be checked depends on the input only
        return np.broadcast_to(0.0, (A_c.shape[0],) + out_shape[1:])
    if kind == "conv":
        whole = StreamedConv(A, W, b, params, G, checks=(eps, tol, method_used, samples, sample_size_free))

        def make(A_c, G_c=None):
            return ConvProblem(A_c, W, b, params, blank(A_c) if G_c is None else G_c)
    else:
        whole = None

        def make(A_c, G_c=None):
            return PoolProblem(A_c, params, blank(A_c) if G_c is None else G_c)
    rng = np.random.default_rng(seed)
    unused = unused_samples(method, method_used, None if sample_size_free else samples)
    notes: list = [unused] if unused else []
    batch = Batch(make, A, G, batch_chunks(A.shape[0], example_bytes(whole, A, G)), whole, Tracker(progress))
    if whole is not None:
        whole.reader = lambda sl: chunk_of(batch, sl)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        # as the in-memory check: non-finite input is refused (A_prev first, then W, b, the given G)
        finite_params = kind != "conv" or bool(np.all(np.isfinite(W)) and np.all(np.isfinite(b)))
        top, top_out = _first_pass(batch, outputs=finite_params)
        if kind == "conv":
            refuse_non_finite("W", W)
            refuse_non_finite("b", b)
        if grad is not None:
            bad, nonzero = 0, False
            for sl in batch.chunks:
                # one huge example's, block by block, as its A_prev (read() gives it unread)
                for g in ((v for _, _, _, v in G.example(sl.start).blocks()) if unread(batch, sl) else [G[sl]]):
                    bad += int(np.count_nonzero(~np.isfinite(g)))
                    nonzero = nonzero or bool(np.any(g))
            refuse_non_finite("--grad", None, bad)
            if not nonzero:  # W and b are None for pooling: their shapes only for conv
                shapes = [("A_prev", A.shape)] + ([("W", W.shape), ("b", b.shape)] if kind == "conv" else [])
                results = [_all_zero(name, shape) for name, shape in shapes]
                return CheckResult(kind, method, eps, tol, seed, tuple(results), tuple(notes), label,
                                   describe_params(params))
        n = samples
        if sample_size_free and method_used == "fast+sample" and whole is not None:
            n = auto_samples(whole, "A_prev", samples, notes)
        results = [_check_A_prev(batch, eps, tol, rng, notes, method_used, n,
                                 linear=kind == "conv" or params.mode != "max", top=top, top_out=top_out)]
        if kind == "conv":
            for name in ("W", "b"):
                n = auto_samples(whole, name, samples, notes) if sample_size_free and method_used == "fast+sample" \
                    else samples
                t = tensor_check(whole, name, whole.analytical()[name], eps, tol, rng, batch.tracker, notes,
                                 known={"A_prev": top})  # the cause, as in memory: the set's largest value
                results.append(t if isinstance(t, GradientResult) else verdict(t, eps, method_used, n))
    return CheckResult(kind, method, eps, tol, seed, tuple(results), tuple(notes), label, describe_params(params))


def _all_zero(name: str, shape) -> GradientResult:
    gname = gradient_name(name)
    return inconclusive(gname, name, np.broadcast_to(0.0, shape), (
        f"{gname}: --grad is all zeros: every gradient is zero whatever the layer does; "
        "nothing is tested (give a nonzero upstream gradient, or omit --grad for a random one)"))


def _first_pass(batch: Batch, outputs: bool):
    """max |A_prev| and, for a conv with ``outputs`` (finite W and b), the largest ``conv(|A_prev|, |W|) + |b|``
    (b's step follows it).

    Raises
    ------
    InputError
        A_prev holds NaN or inf (as in memory).
    """
    make = batch.make
    whole = batch.whole if outputs else None
    top, top_out, bad = 0.0, 0.0, 0
    for sl in batch.chunks:
        x = read(batch, sl)
        # one huge example unread: block by block, as it is read
        for v in ((v for _, _, _, v in x.blocks()) if isinstance(x, ReadExample) else [x]):
            bad += int(np.count_nonzero(~np.isfinite(v)))
            if not bad:
                # max |x| as max(max x, -min x): the same value, with no |x| of the chunk's size
                top = max(top, float(max(np.max(v), -np.min(v))) if v.size else 0.0)
        if bad:
            continue  # refused below: nothing more to compute
        if whole is not None:
            top_out = max(top_out, make(x).floor_top())
    refuse_non_finite("A_prev", None, bad)
    return top, top_out


def _check_A_prev(batch: Batch, eps: float, tol: float, rng, notes: list, method: str, samples: int, linear: bool,
                  top: float, top_out: float) -> GradientResult:
    """A_prev's check, as :func:`.core.tensor_check` then :func:`.core.verdict` do it in memory, chunk by chunk;
    ``top`` and ``top_out`` from :func:`_first_pass`."""
    A, make, whole = batch.A, batch.make, batch.whole
    name, shape = "A_prev", A.shape
    gname = gradient_name(name)
    mark = len(notes)
    h = step_size(np.array([top]), eps, linear=linear)
    n_stuck, cover, n_excluded = 0, Coverage(), 0
    barren = []  # per chunk, its examples without a checkable element (one bool per example is kept)
    for sl in batch.chunks:  # what cannot be checked, counted chunk by chunk
        x = read(batch, sl)
        if isinstance(x, ReadExample):  # one huge example, block by block (a max pool's kinks from the windows around)
            p = make(x)
            stuck_n, out_n, part = unread_coverage(p, x, h, batch.mask_memo(sl.start, p, h))
            n_stuck += stuck_n
            n_excluded += out_n
            if out_n:
                cover = cover + part
                if out_n == x.size:
                    barren.append((sl.start, np.zeros(1, dtype=np.int64)))
            continue
        p = make(x)
        kinks = p.kinks(name, h)
        stuck = stuck_mask(x, h)
        n_stuck += int(stuck.sum())
        excluded = stuck if kinks is None else (stuck | kinks)
        n_excluded += int(excluded.sum())
        if excluded.any():
            ties = p.kinks(name, 0.0) if kinks is not None else None
            cover = cover + Coverage.of(excluded, kinks, ties, p.reads(name))
            barren.append((sl.start, np.flatnonzero(excluded.reshape(len(x), -1).all(axis=1))))
    x = p = kinks = stuck = excluded = None  # not held through what follows: a chunk may be one huge example
    if n_stuck:
        notes.append(f"{n_stuck} element(s) of {name} do not change under eps={eps:g} "
                     f"(x + eps == x); they are skipped: use a larger --eps")
    reason = cover.reason(name, eps, h, notes) if n_excluded else None
    if reason is not None:
        return inconclusive(gname, name, np.broadcast_to(0.0, shape), reason, kinks=n_excluded)
    if n_excluded == A.size or (cover.n_read and cover.n_read == cover.n_out):
        return GradientResult(gname, shape, "mhwc", "none", np.nan, np.nan, 0, 0, n_excluded, 0, True)
    D = DirectionChunks(rng, shape) if method not in ("full", "sample") else None
    # the sample is drawn now, from the generator where the in-memory check draws it (after the directions),
    # so that the one pass below can keep A_prev's gradient at the sampled elements; "fast" draws it only
    # when a failing check needs it: on a copy, replayed on the generator itself if so
    fertile = _fertile(A.shape[0], barren)
    # NOTE: a full check compares every element after the pass, chunk by chunk (a huge example's piece by
    # piece), and keeps none of them (nor their indices)
    every = method == "full"
    if every:
        idx = np.zeros(0, dtype=np.int64)
    else:
        draw = rng if method != "fast" else copy_generator(rng)
        idx = _sample(batch, h, samples, draw, notes, fertile)
    directed = None
    if D is not None and A.size > SAMPLE_WHOLE_LIMIT:
        directed = _directed_examples(A.shape[0], notes, conv=whole is not None, fertile=fertile)
    if whole is not None:  # W's and b's checks draw next: what they will evaluate is known now
        whole.foresee(rng, top_out)
    sums = pass_over_batch(batch, h, D, idx, directed, top_out, every=every)
    # the magnitudes the in-memory verdicts name: every input's, A_prev's from the first pass
    maxima = [(name, top)] + ([(k, _max_abs(whole.inputs[k])) for k in ("W", "b")] if whole is not None else [])
    if not sums["finite"]:
        return inconclusive(gname, name, np.broadcast_to(0.0, shape),
                            f"{gname}: the loss overflows float64 at this scale ({input_sizes(maxima)}); "
                            "rescale the input")
    # NOTE: the in-memory check's rule, on the largest |dA_prev| of the examples the pass computed it for
    # (a conv's: those compared; the others' differences are never looked at)
    reason = underflow_reason(gname, sums["grad_max"], h, lambda: input_sizes(maxima))
    if reason is not None:
        del notes[mark:]  # as in memory, where the verdict comes before any element is counted or drawn
        return inconclusive(gname, name, np.broadcast_to(0.0, shape), reason)
    local = None
    if every:
        local = every_element(batch, h, n_excluded, tol)
    elif method == "sample" or method == "fast+sample":
        local = elementwise(batch, h, idx, sums["grad_at"], sums["floor_at"], n_excluded, tol,
                            "fast+sample" if method == "fast+sample" else method)
    if method in ("full", "sample"):
        return settle(local, name, tol, notes, top)
    fast, bad = block_verdict(sums["per_block"], sums["a_blk"], sums["l1_blk"], sums["f_blk"], name=name,
                              shape=shape, n_excluded=n_excluded, tol=tol)
    if fast.passed:
        r = merge(fast, local, "fast+sample", passed=local.passed) if local is not None else fast
        return settle(r, name, tol, notes, top)
    if method == "fast":  # the context sample, drawn on the generator itself as the in-memory check does
        idx = _sample(batch, h, samples, rng, [], fertile)
    r = localized(batch, h, D, bad, sums, idx, n_excluded, tol, rng, notes)
    return settle(r, name, tol, notes, top)


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def _directed_examples(m: int, notes: list, conv: bool = True,
                       fertile: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """On a large set, the examples the directions move (a mask): evenly spread, first and last included,
    over those that hold a checkable element (``fertile``; None: all); a direction moves nothing in the others."""
    fertile = np.arange(m) if fertile is None else fertile
    pool = fertile.size
    if m <= DIRECTED_EXAMPLES or pool == 0:
        return None
    mask = np.zeros(m, dtype=bool)
    mask[fertile[np.unique(np.linspace(0, pool - 1, min(pool, DIRECTED_EXAMPLES)).round().astype(np.int64))]] = True
    rest = "; every example's part of dW and db is checked" if conv else ""  # pooling has no dW nor db
    spread = "evenly spread, first and last included" if pool == m else (
        f"of the {pool} with checkable elements" if pool <= DIRECTED_EXAMPLES else
        f"evenly spread over the {pool} with checkable elements")
    notes.append(f"dA_prev: the directional check moves {int(mask.sum())} of the {m} examples ({spread}), "
                 f"each compared on its own{rest}")
    return mask


def _fertile(m: int, barren: list) -> np.ndarray:
    """The examples that hold a checkable element, from the first loop's ``(start, barren examples)`` per chunk."""
    keep = np.ones(m, dtype=bool)
    for start, rows in barren:
        keep[start + rows] = False
    return np.flatnonzero(keep)


def _sample(batch: Batch, h: float, n: int, rng, notes: list, fertile: np.ndarray) -> np.ndarray:
    """Flat indices of A_prev's sample: as in memory on a small set, stratified by examples first on a large one.

    On a large set the examples are drawn from ``fertile`` (those holding a checkable element): drawn from
    all, a set of mostly blank examples under max pooling (every window tied) could yield no element to check
    and a PASS on nothing, where the in-memory check finds the few there are. Where every example is fertile
    the draw is the one over all examples."""
    A, make, chunks = batch.A, batch.make, batch.chunks
    m, per = A.shape[0], batch.per_example
    if A.size <= SAMPLE_WHOLE_LIMIT:
        excluded = np.concatenate([excluded_mask(make(A[sl]), A[sl], h) for sl in chunks])
        return stratified_indices(A.shape, "A_prev", n, rng, excluded)
    pool = fertile.size
    if pool == 0:  # unreachable: the caller returns first when nothing is checkable; kept for safety
        return np.zeros(0, dtype=np.int64)
    k = min(pool, SAMPLED_EXAMPLES, n)
    edges = np.linspace(0, pool, k + 1).astype(np.int64)
    examples = fertile[edges[:-1] + (rng.random(k) * (edges[1:] - edges[:-1])).astype(np.int64)]
    if unread(batch, slice(int(examples[0]), int(examples[0]) + 1)):
        local = stratified_blocks((k,) + tuple(A.shape[1:]), n, rng, lambda: _unread_blocks(batch, examples, h))
        return _sampled(examples, local, per, pool, m, k, n, A.size, notes)
    parts = [A[e:e + 1] for e in examples]
    x = parts[0] if len(parts) == 1 else np.concatenate(parts)  # one example (as large as a chunk): no copy
    excluded = excluded_mask(make(x), x, h)
    local = stratified_indices(x.shape, "A_prev", n, rng, excluded)
    return _sampled(examples, local, per, pool, m, k, n, A.size, notes)


def _sampled(examples, local, per: int, pool: int, m: int, k: int, n: int, size: int, notes: list) -> np.ndarray:
    """:func:`_sample`'s flat indices into the set of the sample ``local`` drawn over its ``k`` examples, with
    its notes."""
    if pool < m:
        notes.append(f"dA_prev: {m - pool} of the {m} examples hold no checkable element; the sample is drawn "
                     f"from the other {pool}")
    notes.append(_sample_note(local.size, n, k, pool, size, whole=pool == m))
    return np.sort(examples[local // per] * per + local % per)


def _unread_blocks(batch: Batch, examples, h: float):
    """:func:`.sampling.stratified_blocks`' blocks of the huge ``examples``, unread, one after another: each block
    read from the file and its excluded elements computed there (:class:`.streamed_evals.ExcludedRect`)."""
    per = batch.per_example
    for a, e in enumerate(examples):
        x = read(batch, slice(int(e), int(e) + 1))
        p = batch.make(x)
        excluded = ExcludedRect(p, x, h, batch.mask_memo(e, p, h))
        for lo, rows, cols in x.rects():  # each block read once, with the windows around it under max pooling
            yield a * per + lo, 1, rows, cols, excluded.rect((rows.start, rows.stop), (cols.start, cols.stop))


def _sample_note(drawn: int, asked: int, k: int, m: int, size: int, whole: bool = True) -> str:
    """The note on a large set's A_prev sample: ``drawn`` of ``asked`` elements from ``k`` of ``m`` examples
    (the set's, or with ``whole`` false those holding checkable elements)."""
    them, part = (f"the {m} examples", "the set") if whole else (
        f"the {m} {'examples' if m > 1 else 'example'} with checkable elements", "those")
    if drawn == asked and k == m == 1 and whole:  # a set of one example (a huge one): no parts, no "1 of the 1"
        return (f"dA_prev: {drawn} elements sampled from the set's one example (corners, edges and interior); "
                f"--samples N checks more")
    if drawn == asked and k == m and not whole:  # every one of them drawn from: no parts to name
        return (f"dA_prev: {drawn} elements sampled from {them} (corners, edges and interior within each); "
                f"--samples N checks more")
    if drawn == asked:
        return (f"dA_prev: {drawn} elements sampled from {k} of {them} (one from each "
                f"1/{k} of {part}; corners, edges and interior within each); --samples N checks more")
    # NOTE: --samples asked more than the sampled examples hold; saying "--samples N checks more" then
    # would be false: the examples, not N, bound the sample.
    if k == m:
        return f"dA_prev: all {drawn} checkable elements are checked (--samples {asked} asks more than there are)"
    if k < SAMPLED_EXAMPLES:  # as many examples as --samples asked elements: those held fewer checkable ones
        return (f"dA_prev: {drawn} elements checked, every checkable one of {k} of {them} (one from "
                f"each 1/{k} of {part}): a larger --samples draws from more examples (up to {SAMPLED_EXAMPLES}); "
                f"--method full checks all {size}")
    return (f"dA_prev: {drawn} elements checked, every checkable one of {k} of {them} (one from each "
            f"1/{k} of {part}): --samples {asked} asks more, but a streamed sample is drawn from at most "
            f"{SAMPLED_EXAMPLES} examples; --method full checks all {size}")
