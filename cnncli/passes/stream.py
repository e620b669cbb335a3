"""Forward and backward passes over a resolved layer call, batch chunk by batch chunk.

The engine functions are pure and per-example in the batch axis, so a pass over
the whole batch equals the passes over consecutive slices of it (``dW`` and
``db`` being sums over the batch, they are accumulated). Reading the input and
writing the results one slice at a time keeps memory bounded by the slice size,
whatever the size of an HDF5 dataset; an example larger than a chunk is passed a
block of its rows at a time (:mod:`.rows`), and one whose single output row is
larger still a tile of rows by columns at a time (:mod:`.tiles`). Knows nothing of
terminals: progress is reported through a callback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..engine import conv2d, conv2d_backward, pool2d, pool2d_backward
from ..engine.layout import shape_from_nhwc
from ..settings import positive_int_setting
from .rows import backward_blocks, block_rows, forward_blocks
from .tiles import backward_tiles, block_cols, forward_tiles, row_bytes

#: Input + output bytes (compute dtype) of one batch chunk read and written by a pass; None reads
#: :func:`io_chunk_bytes` (not the engine's own workspace chunking). And the engine's workspace cap per call.
IO_CHUNK_BYTES: Optional[int] = None
WORKSPACE_BYTES = 64 * 2**20


def io_chunk_bytes() -> int:
    """Bytes of one batch chunk: :data:`IO_CHUNK_BYTES` when set, else env ``CNNCLI_CHUNK_BYTES`` (32 MiB).

    Raises
    ------
    SettingError
        ``CNNCLI_CHUNK_BYTES`` is set but not a positive integer.
    """
    if IO_CHUNK_BYTES is not None:
        return IO_CHUNK_BYTES
    return positive_int_setting("CNNCLI_CHUNK_BYTES", 32 * 2**20)

Progress = Optional[Callable[[int, int], None]]


#: Values of a chunk folded into :class:`Stats` at a time (32 MiB of float64): bounds its temporaries.
STATS_SLICE = 2**22


@dataclass
class Stats:
    """Running counts of NaN and infinite values, and min, max, mean and (population) standard
    deviation of the finite ones, over streamed chunks.

    Chunks are merged with Chan et al.'s pairwise update, which stays accurate where a running
    sum of squares would cancel. Values beyond 2**+-400 are held divided by ``scale``, a power of
    two (exact) near the largest magnitude seen, raised as bigger values arrive, so squares of
    values near the float64 limit never overflow and squares of values near 1e-300 never underflow.
    """

    count: int = 0  # finite values
    nan_count: int = 0
    inf_count: int = 0
    mean: float = 0.0  # of the finite values / scale
    m2: float = 0.0  # sum of squared deviations / scale**2
    min: float = math.inf
    max: float = -math.inf
    scale: float = 0.0  # set by the first finite chunk

    def add(self, chunk: np.ndarray) -> None:
        """Fold ``chunk`` (any shape) into the statistics, :data:`STATS_SLICE` values at a time."""
        x = np.asarray(chunk)
        # NOTE: the deviations, their squares and a float64 copy are temporaries of a slice's size, not the
        # chunk's: one example's 488 MiB output (a huge pad) took 1.5 GB of RSS with them whole
        if x.size > STATS_SLICE:
            flat = x.reshape(-1)
            for start in range(0, flat.size, STATS_SLICE):
                self._add(flat[start:start + STATS_SLICE])
            return
        self._add(x)

    def _add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        with np.errstate(invalid="ignore"):
            lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):  # min and max see any NaN or inf: else no mask pass
            nan, inf = nonfinite_counts(x)
            self.nan_count += nan
            self.inf_count += inf
            x = x[np.isfinite(x)]
            if x.size == 0:
                return
            lo, hi = float(x.min()), float(x.max())
        x = x.astype(np.float64, copy=False)
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        # NOTE: 2**(e-1) <= peak < 2**e, so the scaled values stay in (-2, 2) and 2**(e-1) itself is finite.
        # Magnitudes within 2**+-400 square safely as they are: no division pass for everyday data.
        exponent = math.frexp(max(-lo, hi))[1] - 1
        scale = math.ldexp(1.0, exponent) if abs(exponent) > 400 else 1.0
        if scale > self.scale:
            ratio = self.scale / scale
            self.mean *= ratio
            self.m2 *= ratio * ratio
            self.scale = scale
        if self.scale != 1.0:
            x = x / self.scale
        n = x.size
        c_mean = float(x.mean())
        deviations = x - c_mean
        c_m2 = float(np.square(deviations, out=deviations).sum())  # squared in place: one temporary, not two
        total = self.count + n
        delta = c_mean - self.mean
        self.mean += delta * n / total
        self.m2 += c_m2 + delta * delta * self.count * n / total
        self.count = total

    def as_dict(self) -> dict:
        """``{"min", "max", "mean", "std"}`` of the finite values as Python floats (NaN when there is
        none), and ``"nan_count"``, ``"inf_count"`` (+inf and -inf) as ints."""
        if self.count:
            finite = {"min": self.min, "max": self.max, "mean": self.mean * self.scale,
                      "std": math.sqrt(self.m2 / self.count) * self.scale}
        else:
            finite = dict.fromkeys(("min", "max", "mean", "std"), math.nan)
        return {**finite, "nan_count": self.nan_count, "inf_count": self.inf_count}


def nonfinite_counts(x: np.ndarray) -> Tuple[int, int]:
    """``(NaN count, +-inf count)`` of an array of any shape and numeric dtype."""
    if x.dtype.kind not in "fc":
        return 0, 0  # integers and bools are always finite
    with np.errstate(invalid="ignore", over="ignore"):
        if math.isfinite(np.add.reduce(x, axis=None)):  # one pass, no mask: a NaN or inf makes the sum one
            return 0, 0
    finite = int(np.count_nonzero(np.isfinite(x)))
    if finite == x.size:
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(x)))
    return nan, x.size - finite - nan


def _counted(x: Tuple[int, int], n: int = 0) -> str:
    """'1 NaN', '3 NaN and 2 inf' ... for a (NaN, inf) pair ``x``; ``n`` > 0 adds 'value(s)'."""
    text = " and ".join(f"{c} {what}" for c, what in zip(x, ("NaN", "inf")) if c)
    return f"{text} value{'s' if n > 1 else ''}" if n else text


def nonfinite_notes(call, inputs: Dict[str, Tuple[int, int]], results: Dict[str, "Result"]) -> List[str]:
    """One-line notes on the NaN and infinite values of a pass: per output that has some, where they
    came from and what its statistics cover; else per input that has some, that no output has any."""
    def source(name):
        counted = _counted(inputs[name])
        stored = np.dtype(call.inputs[name]["dtype"])
        if stored.kind == "f" and stored.itemsize > call.dtype.itemsize and inputs[name][1]:
            counted += f" after conversion to {call.dtype}"
        return f"{name} has {counted}"

    dirty = [name for name, c in inputs.items() if any(c)]
    cause = "; ".join(source(n) for n in dirty) or f"every input is finite: the {call.dtype} arithmetic overflowed"
    notes = []
    for name, result in results.items():
        s = result.stats
        bad = s.nan_count + s.inf_count
        if not bad:
            continue
        head = f"{name} has {_counted((s.nan_count, s.inf_count), bad)} ({cause})"
        notes.append(f"{head}: min, max, mean and std are of its {s.count} finite value{'s' if s.count > 1 else ''}"
                     if s.count else f"{head} and no finite value")
    if not notes:
        notes = [f"{name} has {_counted(inputs[name], sum(inputs[name]))}; every output is finite" for name in dirty]
    return notes


@dataclass
class Result:
    """One result array: its shape and dtype as written (user layout) and its statistics."""

    shape: Tuple[int, ...]
    dtype: str
    stats: Stats

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, **self.stats.as_dict()}


def _example_bytes(call, backward: bool) -> int:
    """One example's input and output bytes in the compute dtype (backward: the gradient in, dA_prev out too)."""
    _, H, W, C = call.A_prev.shape
    _, oh, ow, n_C = call.out_shape
    return (H * W * C + oh * ow * n_C) * (2 if backward else 1) * call.dtype.itemsize


def chunk_rows(call, *, backward: bool = False, chunk_bytes: Optional[int] = None) -> int:
    """Examples per chunk so that the chunk's inputs and outputs stay near ``chunk_bytes``."""
    budget = io_chunk_bytes() if chunk_bytes is None else chunk_bytes
    return max(1, budget // max(1, _example_bytes(call, backward)))


def _row_blocks(call, budget: int, *, backward: bool = False) -> Optional[int]:
    """Output rows per block when one example's input and output exceed the chunk's bytes (see
    :mod:`.rows`), else None: whole examples are the chunks (or tiles, :func:`_tile_cols`)."""
    # NOTE: one output row is a block too: its windows may read few of the example's rows (a stride or window
    # of 1 row over thousands), and as a block it is passed on those alone instead of the example held whole
    if _example_bytes(call, backward) <= budget:
        return None
    return block_rows(call, budget, backward=backward)


def _tile_cols(call, rows: Optional[int], budget: int, *, backward: bool = False) -> Optional[int]:
    """Output columns per tile of one output row when blocks of rows cannot fit the chunk's bytes (``rows``
    of :func:`_row_blocks` is 1) and one row with the input rows it reads exceeds them (see :mod:`.tiles`),
    else None."""
    if rows != 1 or row_bytes(call, backward=backward) <= budget:
        return None
    return block_cols(call, budget, backward=backward)


def _example_parts(call, *, backward: bool = False, chunk_bytes: Optional[int] = None):
    """How an example larger than a chunk is passed: a function of ``(i, seen[, seen_grad])`` yielding example
    ``i``'s blocks of rows (:mod:`.rows`) or tiles (:mod:`.tiles`) as ``(r0, c0, ...)``, ``c0`` None for whole
    rows; None when whole examples are the chunks."""
    budget = io_chunk_bytes() if chunk_bytes is None else chunk_bytes  # also what no window reads: pieces of it
    rows = _row_blocks(call, budget, backward=backward)
    cols = _tile_cols(call, rows, budget, backward=backward)
    if cols is not None:  # one output row larger than a chunk: tiles of one row by ``cols`` columns
        tiled = backward_tiles if backward else forward_tiles
        return lambda i, *seen: tiled(call, i, 1, cols, *seen, workspace_bytes=WORKSPACE_BYTES, piece_bytes=budget)
    if rows is None:
        return None
    blocks = backward_blocks if backward else forward_blocks
    return lambda i, *seen: ((r0, None, *rest) for r0, *rest in
                             blocks(call, i, rows, *seen, workspace_bytes=WORKSPACE_BYTES, piece_bytes=budget))


def _forward_by_parts(call, name: str, parts, sink, stats: "Stats", census: "_Census", progress) -> None:
    """:func:`forward`'s loop for examples larger than a chunk, over the ``(r0, c0, out)`` of
    :func:`_example_parts`."""
    m, axis = call.A_prev.shape[0], 1 if call.layout == "nhwc" else 2
    for i in range(m):
        with _quiet():
            for r0, c0, out in parts(i, lambda x: census.add("A_prev", x)):
                stats.add(out)
                if sink is not None:
                    sink.write_rows(i, axis, r0, call.to_user(name, out), col=c0)
                if progress is not None:  # the same count: the caller's signal checks run at every block or tile
                    progress(i, m)
        if progress is not None:
            progress(i + 1, m)


def _backward_by_parts(call, grad_name: str, parts, sink, stats: "Stats", census: "_Census", progress,
                       dW, db) -> None:
    """:func:`backward`'s loop for examples larger than a chunk, over the ``(y0, x0, dA, grads)`` of final
    ``dA_prev`` of :func:`_example_parts`; sums their gradients into ``dW``, ``db``."""
    m, axis = call.A_prev.shape[0], 1 if call.layout == "nhwc" else 2
    for i in range(m):
        with _quiet():
            for y0, x0, dA, grads in parts(i, lambda x: census.add("A_prev", x), lambda x: census.add(grad_name, x)):
                if grads is not None:
                    dW += grads.dW
                    db += grads.db
                if dA.size:
                    stats.add(dA)
                    if sink is not None:
                        sink.write_rows(i, axis, y0, call.to_user("dA_prev", dA), col=x0)
                if progress is not None:  # as in _forward_by_parts
                    progress(i, m)
        if progress is not None:
            progress(i + 1, m)


def _chunks(m: int, rows: int) -> Iterator[slice]:
    for lo in range(0, m, rows):
        yield slice(lo, min(m, lo + rows))


class _Census:
    """NaN / inf counts per input of a pass, gathered as the pass reads them.

    Only the counts are kept (no statistics), so the inputs cost one extra read of each chunk.
    """

    def __init__(self, call):
        self.call = call
        self.counts = {name: (0, 0) for name in call.inputs}

    def add(self, name: str, x) -> None:
        if x is None or name not in self.counts:
            return
        nan, inf = nonfinite_counts(np.asarray(x))
        seen = self.counts[name]
        self.counts[name] = (seen[0] + nan, seen[1] + inf)

    def report(self, results: Dict[str, Result]) -> None:
        """Record the counts in ``call.inputs`` and the notes in ``call.notes``."""
        for name, (nan, inf) in self.counts.items():
            self.call.inputs[name].update(nan_count=nan, inf_count=inf)
        self.call.notes.extend(nonfinite_notes(self.call, self.counts, results))


def _quiet():
    # NOTE: NaN and inf in the data propagate through the layer as IEEE arithmetic says (inf - inf is NaN,
    # float32 overflows to inf): intended, and counted in the report, so numpy's warnings are silenced here.
    return np.errstate(invalid="ignore", over="ignore", divide="ignore")


def forward(call, writer=None, *, progress: Progress = None, chunk_bytes: Optional[int] = None) -> Dict[str, Result]:
    """Run the forward pass of ``call`` (a LayerCall), writing the output as it goes.

    Parameters
    ----------
    call : LayerCall
        From :func:`cnncli.passes.call.resolve_layer`; ``A_prev`` an ndarray or Batches.
    writer : ResultWriter, optional
        Receives ``Z`` (conv) or ``A`` (pool) in the user's layout, slice by slice.
    progress : callable(done, total), optional
        Called after each chunk with the number of examples done (and after each block of an example
        passed by rows, with the count so far).
    chunk_bytes : int, optional
        Bound on each chunk's input plus output bytes; default :func:`io_chunk_bytes`.

    Returns
    -------
    dict
        ``{"Z" or "A": Result}``. Also records each input's ``nan_count`` and ``inf_count`` in
        ``call.inputs`` and appends notes on non-finite values to ``call.notes``.

    Raises
    ------
    CnncliError
        As the engine (shape/hyperparameter errors) and the array readers.
    """
    name = "Z" if call.kind == "conv" else "A"
    m = call.A_prev.shape[0]
    shape = shape_from_nhwc(call.out_shape, call.layout)
    sink = writer.create(name, shape, call.dtype) if writer is not None else None
    stats, census = Stats(), _Census(call)
    census.add("W", call.W)
    census.add("b", call.b)
    parts = _example_parts(call, chunk_bytes=chunk_bytes)
    if parts is not None:  # examples larger than a chunk: a block of one example's rows (or a tile) at a time
        _forward_by_parts(call, name, parts, sink, stats, census, progress)
    else:
        for sl in _chunks(m, chunk_rows(call, chunk_bytes=chunk_bytes)):
            with _quiet():
                A = call.A_prev[sl]
                census.add("A_prev", A)
                if call.kind == "conv":
                    out = conv2d(A, call.W, call.b, call.params, workspace_bytes=WORKSPACE_BYTES)
                else:
                    out = pool2d(A, call.params, workspace_bytes=WORKSPACE_BYTES)
            stats.add(out)
            if sink is not None:
                sink.write(call.to_user(name, out))
            if progress is not None:
                progress(sl.stop, m)
    results = {name: Result(shape, str(call.dtype), stats)}
    census.report(results)
    return results


def backward(call, writer=None, *, progress: Progress = None, chunk_bytes: Optional[int] = None) -> Dict[str, Result]:
    """Run the backward pass of ``call`` with its upstream gradient ``call.grad``.

    ``dA_prev`` is written slice by slice; conv's ``dW`` and ``db`` are accumulated
    over the chunks and written at the end. Parameters and errors as :func:`forward`.

    Returns
    -------
    dict
        ``{"dA_prev": Result}`` for pool; plus ``"dW"`` and ``"db"`` for conv. Input counts and
        notes on non-finite values are recorded in ``call`` as by :func:`forward`.
    """
    m = call.A_prev.shape[0]
    shape = shape_from_nhwc(call.A_prev.shape, call.layout)
    sink = writer.create("dA_prev", shape, call.dtype) if writer is not None else None
    stats, census = Stats(), _Census(call)
    census.add("W", call.W)
    census.add("b", call.b)
    grad_name = "dZ" if call.kind == "conv" else "dA"
    dW = np.zeros(call.W.shape, dtype=call.dtype) if call.kind == "conv" else None
    db = np.zeros(call.W.shape[3], dtype=call.dtype) if call.kind == "conv" else None
    parts = _example_parts(call, backward=True, chunk_bytes=chunk_bytes)
    if parts is not None:  # examples larger than a chunk: a block of one example's rows (or a tile) at a time
        _backward_by_parts(call, grad_name, parts, sink, stats, census, progress, dW, db)
    else:
        for sl in _chunks(m, chunk_rows(call, backward=True, chunk_bytes=chunk_bytes)):
            with _quiet():
                A, g = call.A_prev[sl], call.grad[sl]
                census.add("A_prev", A)
                census.add(grad_name, g)
                if call.kind == "conv":
                    grads = conv2d_backward(g, A, call.W, call.params, workspace_bytes=WORKSPACE_BYTES)
                    dA = grads.dA_prev
                    dW += grads.dW
                    db += grads.db
                else:
                    dA = pool2d_backward(g, A, call.params, workspace_bytes=WORKSPACE_BYTES)
            stats.add(dA)
            if sink is not None:
                sink.write(call.to_user("dA_prev", dA))
            if progress is not None:
                progress(sl.stop, m)
    results = {"dA_prev": Result(shape, str(call.dtype), stats)}
    for name, value in (("dW", dW), ("db", db)):
        if value is None:
            continue
        value = call.to_user(name, value)
        s = Stats()
        s.add(value)
        results[name] = Result(value.shape, str(call.dtype), s)
        if writer is not None:
            writer.put(name, value)
    census.report(results)
    return results
