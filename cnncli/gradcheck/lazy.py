"""Arrays as large as a data set, never held whole: read or drawn by example slices ``[lo:hi]``.

- :class:`Examples`: a batch read by slices as float64 (an HDF5 dataset, a ``Batches``);
- :class:`DrawnUpstream`: the seeded standard-normal upstream gradient, drawn by slices;
- :class:`DirectionChunks`: the fast check's random directions, by direction and slices.

Each gives, slice by slice, the very values of the whole array (see each class).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .directional import FAST_DIRECTIONS

#: Normal draws skipped at a time when G is drawn again from an earlier point (bounded temporaries).
SKIP_DRAWS = 2**16


def copy_generator(rng: np.random.Generator) -> np.random.Generator:
    """A generator that draws what ``rng`` would draw next, leaving ``rng`` where it is."""
    bits = type(rng.bit_generator)()
    bits.state = rng.bit_generator.state
    return np.random.Generator(bits)


class Examples:
    """A batch read by example slices as float64: ``shape``, ``size`` and ``[lo:hi]`` (any such source)."""

    def __init__(self, source):
        self.source, self.shape, self.ndim = source, tuple(source.shape), 4
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel) -> np.ndarray:
        if not isinstance(sel, slice):
            raise TypeError("a streamed batch is read by [lo:hi] slices only")
        return np.ascontiguousarray(self.source[sel], dtype=np.float64)


class DrawnUpstream:
    """``np.random.default_rng(seed).standard_normal(shape)``, drawn by example slices ``[lo:hi]``.

    The generator's state is kept at every slice boundary drawn so far, so a slice
    drawn again starts from the nearest earlier boundary: the same values each time,
    equal to the whole draw's (numpy draws normals one after another: a draw of n
    values then k gives the draw of n + k).
    """

    def __init__(self, seed: Optional[int], shape):
        self.shape, self.ndim = tuple(int(s) for s in shape), 4
        self.size = int(np.prod(self.shape))
        self._per = int(np.prod(self.shape[1:]))
        bits = np.random.default_rng(seed).bit_generator
        self._kind, self._marks = type(bits), {0: bits.state}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel) -> np.ndarray:
        if not isinstance(sel, slice):
            raise TypeError("the upstream gradient is drawn by [lo:hi] slices only")
        lo, hi, _ = sel.indices(self.shape[0])
        hi = max(lo, hi)
        start = max(k for k in self._marks if k <= lo)
        bits = self._kind()
        bits.state = self._marks[start]
        gen = np.random.Generator(bits)
        skip = (lo - start) * self._per
        while skip:
            n = min(skip, SKIP_DRAWS)
            gen.standard_normal(n)
            skip -= n
        self._marks.setdefault(lo, bits.state)
        out = gen.standard_normal((hi - lo) * self._per).reshape((hi - lo,) + self.shape[1:])
        self._marks.setdefault(hi, bits.state)
        return out


class DirectionChunks:
    """The fast check's directions of a streamed input, by (direction, examples): the values of
    :func:`.directional.directions` (uniform draws are one generator step each, so any slice is reached
    by jumping ahead), zero where excluded."""

    def __init__(self, rng: np.random.Generator, shape):
        self.kind, self.state = type(rng.bit_generator), rng.bit_generator.state
        self.n, self.per = int(np.prod(shape)), int(np.prod(shape[1:]))
        self.shape = tuple(shape)
        rng.bit_generator.advance(FAST_DIRECTIONS * self.n)  # as if all were drawn

    def chunk(self, p: int, lo: int, hi: int, excluded: np.ndarray) -> np.ndarray:
        bits = self.kind()
        bits.state = self.state
        bits.advance(p * self.n + lo * self.per)
        d = np.random.Generator(bits).uniform(-1.0, 1.0, size=(hi - lo,) + self.shape[1:])
        d[excluded] = 0.0
        return d

    def rows(self, p: int, examples: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        """Direction ``p`` at the ``examples`` (sorted, unique; ``excluded``: theirs), drawn by runs of consecutive ones."""
        parts, start = [], 0
        for i in range(1, len(examples) + 1):
            if i == len(examples) or examples[i] != examples[i - 1] + 1:
                lo, hi = int(examples[start]), int(examples[i - 1]) + 1
                parts.append(self.chunk(p, lo, hi, excluded[start:i]))
                start = i
        if len(parts) == 1:  # one run (one example may be as large as a chunk): no copy
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros((0,) + self.shape[1:])
