"""What the checker asks of a layer *problem* (:class:`Problem`), and defaults for the optional parts.

A problem is named float64 inputs, their analytical gradients, and loss
differences ``L(x+) - L(x-)`` from forward evaluations under perturbations
(:mod:`.problems` and :mod:`.pool_problem` have the convolution and pooling ones). The checker
(:mod:`.core`) relies on nothing else: no attribute probes.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

Tick = Optional[Callable[[int], None]]


@runtime_checkable
class Problem(Protocol):
    """A layer call under ``L = sum(G * layer(inputs))``, as the checker sees it.

    Attributes
    ----------
    layer : str
        ``"conv"`` or ``"pool"`` (for reports).
    names : tuple of str
        The inputs checked, in order (``"A_prev"``, ``"W"``, ``"b"``).
    inputs : mapping str -> ndarray (float64)
    G : ndarray or None
        The upstream gradient, when the loss has one (an all-zero G tests nothing).
    geom : WindowGeometry or None
        The layer's resolved geometry (pads and stride decide which pattern hints apply).
    linear : bool
        Whether the layer is linear in each input (see :func:`.core.step_size`).
    """

    layer: str
    names: Tuple[str, ...]
    inputs: Mapping[str, np.ndarray]
    G: Optional[np.ndarray]
    geom: object
    linear: bool

    def analytical(self) -> Dict[str, np.ndarray]:
        """The analytical gradients, keyed by input name (each in its input's shape)."""

    def kinks(self, name: str, h: float) -> Optional[np.ndarray]:
        """Elements of input ``name`` where a step ``h`` crosses a kink (bool mask), or None."""

    def differences(self, name: str, idx: np.ndarray, plus: np.ndarray, minus: np.ndarray,
                    tick: Tick = None) -> np.ndarray:
        """``L(x+) - L(x-)`` for the flat elements ``idx`` of input ``name`` set to plus / minus: shape (K,)."""

    def directional(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """``L(x + h D[p]) - L(x - h D[p])`` per direction p (D: (P,) + input shape): shape (P,)."""

    def directional_blocks(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """:meth:`directional` per block of :meth:`block_ids`: shape (P, blocks)."""

    def block_ids(self, name: str) -> np.ndarray:
        """Per element of input ``name``: its block (int, from 0), whose loss part it alone changes."""

    def reads(self, name: str) -> np.ndarray:
        """Elements of input ``name`` that some window reads (bool mask)."""

    def rounding_floor(self, name: str, h: float) -> Optional[np.ndarray]:
        """Per element: the error float64 rounding may leave in its numerical derivative, or None."""

    def step_scale(self, name: str) -> Optional[float]:
        """The magnitude the step of input ``name`` follows, when not ``max |x|``; else None."""

    def element_cost(self, name: str) -> int:
        """Output values one elementwise evaluation of input ``name`` computes (0: unknown, cheap)."""


class ProblemDefaults:
    """The optional parts of :class:`Problem`: one block, every element read, no rounding floor, unknown cost.

    A problem inherits these and overrides what it knows; it must still define
    ``layer``, ``names``, ``inputs``, :meth:`analytical`, :meth:`kinks`,
    :meth:`differences` and :meth:`directional`.
    """

    G: Optional[np.ndarray] = None
    geom: object = None
    linear: bool = False

    def directional_blocks(self, name: str, D: np.ndarray, h: float, tick: Tick = None) -> np.ndarray:
        """The whole directional difference as one block: shape (P, 1)."""
        return self.directional(name, D, h, tick)[:, None]

    def block_ids(self, name: str) -> np.ndarray:
        """Every element in block 0."""
        return np.zeros(self.inputs[name].shape, dtype=np.int64)

    def reads(self, name: str) -> np.ndarray:
        """Every element counts for coverage."""
        return np.ones(self.inputs[name].shape, dtype=bool)

    def kinks_at(self, name: str, h: float, rows: tuple, cols: tuple) -> Optional[np.ndarray]:
        """:meth:`kinks` of rows ``rows[0]:rows[1]`` by columns ``cols[0]:cols[1]`` of a one-example input
        (1, r, c, C), computed there only: None (no kinks)."""
        return None

    def masks_at(self, name: str, rows: tuple, cols: tuple, thresholds: tuple):
        """That rectangle of a one-example input (1, r, c, C) and its kinks within each of ``thresholds``:
        (values, None), no kinks."""
        return np.ascontiguousarray(self.inputs[name][:, rows[0]:rows[1], cols[0]:cols[1]]), None

    def reads_at(self, name: str, rows: tuple, cols: tuple) -> np.ndarray:
        """:meth:`reads` of that rectangle of a one-example input, (1, r, c, C): every element."""
        C = self.inputs[name].shape[3]
        return np.broadcast_to(True, (1, max(0, rows[1] - rows[0]), max(0, cols[1] - cols[0]), C))

    def rounding_floor(self, name: str, h: float) -> Optional[np.ndarray]:
        """No rounding estimate."""
        return None

    def step_scale(self, name: str) -> Optional[float]:
        """The step follows ``max |x|``."""
        return None

    def element_cost(self, name: str) -> int:
        """Unknown: ``auto`` keeps its sample size."""
        return 0
