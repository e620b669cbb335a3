"""The resolved layer call that the passes and gradcheck take, and its lazily read inputs.

:func:`cnncli.passes.call.resolve_layer` builds a :class:`LayerCall` from a source and options;
this module holds what it builds: every array NHWC in the compute dtype, an input too large to
hold read by batch slices or by an example's rows (:class:`Batches`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..engine import layout as layouts
from ..engine.geometry import WindowGeometry
from ..engine.params import ConvParams, PoolParams
from ..io.arrays import ArrayStream


class Batches:
    """An input read lazily by batch slices, converted to NHWC and the compute dtype.

    ``shape`` is NHWC; ``batches[lo:hi]`` returns an ndarray. Used for streaming.
    """

    def __init__(self, stream: ArrayStream, layout: str, dtype: np.dtype):
        self.stream, self.layout, self.dtype = stream, layout, np.dtype(dtype)
        self.shape = layouts.shape_to_nhwc(stream.shape, layout)
        self.ndim = 4
        self._example: Optional[Tuple[int, np.ndarray]] = None  # the one example held, where rows cannot be read

    def rows(self, example: int, lo: int, hi: int, cols: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """Rows ``lo:hi`` of one example, shape ``(1, hi - lo, n_W, n_C)`` (NHWC, compute dtype); only columns
        ``cols[0]:cols[1]`` of them when given.

        Read by rows (or that rectangle) from HDF5, ``.npy`` and ``.npz``; a Fortran-ordered ``.npz`` member's example
        is read once and held."""
        part = self.stream.read_rows(example, lo, hi, axis=1 if self.layout == "nhwc" else 2, cols=cols)
        if part is not None:
            return compute(layouts.to_nhwc(part, self.layout), self.dtype)
        if self._example is None or self._example[0] != example:
            self._example = None  # the previous example's memory released before the next is read
            self._example = (example, self[example:example + 1])
        return self._example[1][:, lo:hi, slice(*cols) if cols is not None else slice(None)]

    def release(self) -> None:
        """Let go of the example :meth:`rows` held whole, if any."""
        self._example = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel) -> np.ndarray:
        if not isinstance(sel, slice) or sel.step not in (None, 1):
            raise TypeError("Batches supports [lo:hi] only")
        lo, hi, _ = sel.indices(self.shape[0])
        return compute(layouts.to_nhwc(self.stream.read(lo, hi), self.layout), self.dtype)


def compute(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` contiguous in the compute dtype."""
    # NOTE: float64 values beyond float32's range become inf, as IEEE says; the passes count and report
    # them, so numpy's overflow warning is silenced.
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=dtype)


@dataclass
class LayerCall:
    """A fully resolved layer call, every array NHWC in the compute dtype.

    Attributes
    ----------
    kind : {"conv", "pool"}
    A_prev : ndarray (m, n_H_prev, n_W_prev, n_C_prev), or Batches when streaming
    W : ndarray (f_h, f_w, n_C_prev // groups, n_C) or None (pool)
    b : ndarray (n_C,) or None (no bias given, or pool)
    params : ConvParams or PoolParams
    grad : ndarray (m, n_H, n_W, n_C), Batches when streaming, or None
    layout : {"nhwc", "nchw"}
        The user's layout: inputs were converted from it, results go back to it.
    notes : list of str
    dtype : numpy.dtype
        The compute dtype.
    inputs : dict
        Per input name: ``{"source": ref, "shape": stored shape, "dtype": stored dtype}``.
    bias_shape : tuple
        The bias's shape as given (``db`` is returned in it); ``(n_C,)`` when no bias was given.
    """

    kind: str
    A_prev: object
    W: Optional[np.ndarray]
    b: Optional[np.ndarray]
    params: Union[ConvParams, PoolParams]
    grad: object
    layout: str
    notes: List[str] = field(default_factory=list)
    dtype: np.dtype = np.dtype(np.float64)
    inputs: Dict[str, dict] = field(default_factory=dict)
    bias_shape: Optional[tuple] = None
    _streams: list = field(default_factory=list, repr=False)
    #: The refusal for arrays that disagree under a --layout the case file contradicts, else None.
    _misread: Optional[str] = field(default=None, repr=False)

    @property
    def geometry(self) -> WindowGeometry:
        """Output size and resolved pads, from ``params`` and the sizes of ``A_prev`` (and ``W``)."""
        if self.kind == "conv":
            return self.params.geometry(self.A_prev.shape[1:3], self.W.shape[:2])
        return self.params.geometry(self.A_prev.shape[1:3])

    @property
    def pad_spec(self) -> Optional[str]:
        """``"same"`` when the padding was asked as "same" (its pads depend on the input size), else None."""
        return "same" if self.params.pad == "same" else None

    @property
    def out_shape(self) -> tuple:
        """NHWC shape of the forward output."""
        m, _, _, c = self.A_prev.shape
        n_C = self.W.shape[3] if self.kind == "conv" else c
        return (m,) + tuple(self.geometry.out_hw) + (n_C,)

    def to_user(self, name: str, arr: np.ndarray) -> np.ndarray:
        """A result (NHWC / engine layout) in the user's layout: ``name`` is Z, A, dA_prev, dW or db."""
        if name == "db":
            return arr.reshape(self.bias_shape or arr.shape)
        return layouts.from_nhwc(arr, self.layout, weights=name == "dW")

    def hyperparameters(self) -> dict:
        """Resolved hyperparameters as plain Python values (for JSON and HDF5 attributes)."""
        p, g = self.params, self.geometry
        hp = {"layer": self.kind, "layout": self.layout}
        if self.kind == "pool":
            hp.update(f=list(p.f), mode=p.mode)
        else:
            hp["f"] = list(g.kernel)
        hp.update(stride=list(p.stride), pad=list(g.pads), dilation=list(p.dilation))
        if self.kind == "conv":
            hp["groups"] = p.groups
        else:
            hp.update(ceil_mode=p.ceil_mode, count_include_pad=p.count_include_pad)
        return hp

    def close(self) -> None:
        """Close files kept open for streaming."""
        for s in self._streams:
            s.close()
        self._streams.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
