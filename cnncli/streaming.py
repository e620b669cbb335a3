"""Forward and backward passes over a resolved layer call, batch chunk by batch chunk.

The engine functions are pure and per-example in the batch axis, so a pass over
the whole batch equals the passes over consecutive slices of it (``dW`` and
``db`` being sums over the batch, they are accumulated). Reading the input and
writing the results one slice at a time keeps memory bounded by the slice size,
whatever the size of an HDF5 dataset. Knows nothing of terminals: progress is
reported through a callback.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from .engine import conv2d, conv2d_backward, pool2d, pool2d_backward
from .engine.layout import shape_from_nhwc

#: Input + output bytes (compute dtype) per I/O chunk (env CNNCLI_CHUNK_BYTES), and the
#: engine's workspace cap per call.
CHUNK_BYTES = int(os.environ.get("CNNCLI_CHUNK_BYTES", 32 * 2**20))
WORKSPACE_BYTES = 64 * 2**20

Progress = Optional[Callable[[int, int], None]]


@dataclass
class Stats:
    """Running min, max, mean and (population) standard deviation of streamed chunks.

    Chunks are merged with Chan et al.'s pairwise update, which stays accurate where
    a running sum of squares would cancel.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, chunk: np.ndarray) -> None:
        """Fold ``chunk`` (any shape) into the statistics."""
        n = chunk.size
        if n == 0:
            return
        x = chunk.astype(np.float64, copy=False)
        c_mean = float(x.mean())
        c_m2 = float(np.square(x - c_mean).sum())
        total = self.count + n
        delta = c_mean - self.mean
        self.mean += delta * n / total
        self.m2 += c_m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def as_dict(self) -> dict:
        """``{"min", "max", "mean", "std"}`` as Python floats."""
        std = math.sqrt(self.m2 / self.count) if self.count else float("nan")
        return {"min": self.min, "max": self.max, "mean": self.mean, "std": std}


@dataclass
class Result:
    """One result array: its shape and dtype as written (user layout) and its statistics."""

    shape: Tuple[int, ...]
    dtype: str
    stats: Stats

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, **self.stats.as_dict()}


def chunk_rows(call, *, backward: bool = False, chunk_bytes: Optional[int] = None) -> int:
    """Examples per chunk so that the chunk's inputs and outputs stay near ``chunk_bytes``."""
    _, H, W, C = call.A_prev.shape
    _, oh, ow, n_C = call.out_shape
    per_example = H * W * C + oh * ow * n_C
    if backward:
        per_example *= 2  # the gradient in, dA_prev out
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return max(1, budget // max(1, per_example * call.dtype.itemsize))


def _chunks(m: int, rows: int) -> Iterator[slice]:
    for lo in range(0, m, rows):
        yield slice(lo, min(m, lo + rows))


def forward(call, writer=None, *, progress: Progress = None, chunk_bytes: Optional[int] = None) -> Dict[str, Result]:
    """Run the forward pass of ``call`` (a LayerCall), writing the output as it goes.

    Parameters
    ----------
    call : LayerCall
        From :func:`cnncli.calls.resolve_layer`; ``A_prev`` an ndarray or Batches.
    writer : ResultWriter, optional
        Receives ``Z`` (conv) or ``A`` (pool) in the user's layout, slice by slice.
    progress : callable(done, total), optional
        Called after each chunk with the number of examples done.
    chunk_bytes : int, optional
        Bound on each chunk's input plus output bytes; default :data:`CHUNK_BYTES`.

    Returns
    -------
    dict
        ``{"Z" or "A": Result}``.

    Raises
    ------
    CnncliError
        As the engine (shape/hyperparameter errors) and the array readers.
    """
    name = "Z" if call.kind == "conv" else "A"
    m = call.A_prev.shape[0]
    shape = shape_from_nhwc(call.out_shape, call.layout)
    sink = writer.create(name, shape, call.dtype) if writer is not None else None
    stats = Stats()
    for sl in _chunks(m, chunk_rows(call, chunk_bytes=chunk_bytes)):
        A = call.A_prev[sl]
        if call.kind == "conv":
            out = conv2d(A, call.W, call.b, call.params, workspace_bytes=WORKSPACE_BYTES)
        else:
            out = pool2d(A, call.params, workspace_bytes=WORKSPACE_BYTES)
        stats.add(out)
        if sink is not None:
            sink.write(call.to_user(name, out))
        if progress is not None:
            progress(sl.stop, m)
    return {name: Result(shape, str(call.dtype), stats)}


def backward(call, writer=None, *, progress: Progress = None, chunk_bytes: Optional[int] = None) -> Dict[str, Result]:
    """Run the backward pass of ``call`` with its upstream gradient ``call.grad``.

    ``dA_prev`` is written slice by slice; conv's ``dW`` and ``db`` are accumulated
    over the chunks and written at the end. Parameters and errors as :func:`forward`.

    Returns
    -------
    dict
        ``{"dA_prev": Result}`` for pool; plus ``"dW"`` and ``"db"`` for conv.
    """
    m = call.A_prev.shape[0]
    shape = shape_from_nhwc(call.A_prev.shape, call.layout)
    sink = writer.create("dA_prev", shape, call.dtype) if writer is not None else None
    stats = Stats()
    dW = np.zeros(call.W.shape, dtype=call.dtype) if call.kind == "conv" else None
    db = np.zeros(call.W.shape[3], dtype=call.dtype) if call.kind == "conv" else None
    for sl in _chunks(m, chunk_rows(call, backward=True, chunk_bytes=chunk_bytes)):
        A, g = call.A_prev[sl], call.grad[sl]
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
    return results
