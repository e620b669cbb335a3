"""What every step of checking one input tensor shares: :class:`TensorCheck` (frozen), and progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from .metrics import axes_of, gradient_name
from .protocol import Problem

Progress = Callable[[int, int], None]


class Tracker:
    """Cumulative progress over a total that may grow (a failing fast check localizes)."""

    def __init__(self, callback: Optional[Progress]):
        self.callback, self.done, self.total = callback, 0, 0

    def plan(self, n: int) -> None:
        self.total += n
        if self.callback:
            self.callback(self.done, self.total)

    def tick(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(self.done, self.total)


@dataclass(frozen=True)
class TensorCheck:
    """One input of a problem being checked, with everything its comparisons need.

    Attributes
    ----------
    problem : Problem
    name : str
        The input (``"A_prev"``, ``"W"``, ``"b"``).
    x : ndarray
        Its values (``problem.inputs[name]``).
    grad : ndarray, shape of ``x``
        Its analytical gradient.
    h : float
        The central-difference step.
    excluded : ndarray of bool, shape of ``x``
        Elements not checked (kinks, or unchanged by the step).
    tol : float
        Pass threshold of the relative error.
    rng : numpy.random.Generator
        Draws the samples and directions (shared by the problem's inputs, in order).
    tracker : Tracker
    floor : ndarray, shape of ``x``, or None
        The rounding floor of each element's numerical derivative.
    notes : list of str
        Notes of the whole check (appended to).
    """

    problem: Problem
    name: str
    x: np.ndarray
    grad: np.ndarray
    h: float
    excluded: np.ndarray
    tol: float
    rng: np.random.Generator
    tracker: Tracker
    floor: Optional[np.ndarray]
    notes: List[str]

    @property
    def gname(self) -> str:
        """The gradient's name (``"dA_prev"``, ...)."""
        return gradient_name(self.name)

    @property
    def axes(self) -> str:
        return axes_of(self.name, self.grad.ndim)

    @property
    def n_excluded(self) -> int:
        return int(self.excluded.sum())
