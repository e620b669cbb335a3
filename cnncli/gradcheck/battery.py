"""The built-in battery: conv and pool configurations chosen to expose common mistakes.

Pad 0 and > 0, stride 1, 2 and 3 with sizes the stride does not divide (a last
row/column no window reaches), non-square inputs, ``n_C != n_C_prev``, even and
odd ``f``, overlapping pooling windows (stride < f), ``m >= 2``, max and
average. Cases marked ``classic`` use only what the classic exercise's
functions accept (square ``f``, int stride and pad, hparameters
``{"stride", "pad"}`` / ``{"f", "stride"}``); the others exercise engine
features (dilation, groups, asymmetric and "same" padding, ceil mode,
``count_include_pad``) and are used for the engine only.

Inputs are standard normal (seeded), so max-pool ties have probability zero;
kinks are still detected and excluded if a draw comes close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import numpy as np

from ..engine import ConvParams, PoolParams
from .core import DEFAULT_EPS, DEFAULT_TOL, CheckResult, unused_samples, validate_settings
from .layers import gradcheck_conv, gradcheck_pool


@dataclass(frozen=True)
class Configuration:
    """One configuration of the battery (a layer call: shapes and hyperparameters).

    Attributes
    ----------
    name : str
        Short label, e.g. ``"conv f3 s2 p1"``.
    layer : {"conv", "pool"}
    A_shape : (m, n_H_prev, n_W_prev, n_C_prev)
    W_shape : (f, f, n_C_prev // groups, n_C) or None
    f, stride, pad : int
        ``f`` is the pool window (conv: from ``W_shape``).
    mode : {"max", "average"}
    classic : bool
        Expressible with the classic exercise's hparameters.
    extra : dict
        Engine-only hyperparameters (dilation, groups, asymmetric pad, ceil_mode, ...).
    """

    name: str
    layer: str
    A_shape: Tuple[int, int, int, int]
    W_shape: Optional[Tuple[int, int, int, int]] = None
    f: int = 2
    stride: int = 1
    pad: object = 0
    mode: str = "max"
    classic: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def kernel(self) -> int:
        return self.W_shape[0] if self.layer == "conv" else self.f

    def conv_params(self) -> ConvParams:
        return ConvParams.from_hparameters({"stride": self.stride, "pad": self.pad, **self.extra})

    def pool_params(self) -> PoolParams:
        return PoolParams.from_hparameters({"f": self.f, "stride": self.stride, "pad": self.pad, **self.extra},
                                           self.mode)

    def hparameters(self) -> dict:
        """The classic exercise's hparameters dict for this case."""
        if self.layer == "conv":
            return {"stride": self.stride, "pad": self.pad}
        return {"f": self.f, "stride": self.stride}

    def arrays(self, seed: int):
        """Seeded standard-normal ``(A_prev, W, b, G)`` (W, b None for pool); b is (1, 1, 1, n_C)."""
        rng = np.random.default_rng(seed)
        A = rng.standard_normal(self.A_shape)
        if self.layer == "conv":
            W = rng.standard_normal(self.W_shape)
            b = rng.standard_normal((1, 1, 1, self.W_shape[3]))
            out = self.conv_params().geometry(self.A_shape[1:3], self.W_shape[:2]).out_hw
            G = rng.standard_normal((self.A_shape[0],) + out + (self.W_shape[3],))
            return A, W, b, G
        out = self.pool_params().geometry(self.A_shape[1:3]).out_hw
        G = rng.standard_normal((self.A_shape[0],) + out + (self.A_shape[3],))
        return A, None, None, G


BATTERY: Tuple[Configuration, ...] = (
    Configuration("conv f3 s1 p0", "conv", (2, 5, 6, 3), (3, 3, 3, 4)),
    Configuration("conv f3 s1 p1", "conv", (2, 5, 5, 2), (3, 3, 2, 3), pad=1),
    Configuration("conv f2 s2 p0", "conv", (2, 5, 7, 3), (2, 2, 3, 2), stride=2),
    Configuration("conv f3 s2 p1", "conv", (2, 6, 5, 3), (3, 3, 3, 4), stride=2, pad=1),
    Configuration("conv f4 s3 p2", "conv", (3, 7, 8, 2), (4, 4, 2, 3), stride=3, pad=2),
    Configuration("conv f1 s1 p0", "conv", (2, 3, 4, 3), (1, 1, 3, 2)),
    Configuration("pool max f2 s2", "pool", (2, 4, 6, 3), f=2, stride=2),
    Configuration("pool max f3 s2", "pool", (2, 7, 6, 2), f=3, stride=2),
    Configuration("pool max f2 s1", "pool", (2, 5, 4, 2), f=2, stride=1),
    Configuration("pool average f2 s2", "pool", (2, 5, 6, 3), f=2, stride=2, mode="average"),
    Configuration("pool average f3 s2", "pool", (2, 7, 6, 2), f=3, stride=2, mode="average"),
    Configuration("pool average f2 s1", "pool", (2, 4, 5, 3), f=2, stride=1, mode="average"),
    # Engine-only features.
    Configuration("conv f3 dilation 2, pad (1,0,2,1)", "conv", (2, 7, 6, 2), (3, 3, 2, 3), pad=(1, 0, 2, 1),
         classic=False, extra={"dilation": 2}),
    Configuration("conv 3x2 groups 2 s2 same", "conv", (2, 6, 7, 4), (3, 2, 2, 4), stride=2, pad="same",
         classic=False, extra={"groups": 2}),
    Configuration("conv depthwise f3 p1", "conv", (2, 5, 5, 3), (3, 3, 1, 6), pad=1, classic=False, extra={"groups": 3}),
    Configuration("pool max f3 s2 p1 ceil", "pool", (2, 6, 7, 2), f=3, stride=2, pad=1, classic=False,
         extra={"ceil_mode": True}),
    Configuration("pool average f3 s2 p1 ceil, exclude pad", "pool", (2, 6, 7, 2), f=3, stride=2, pad=1,
         mode="average", classic=False, extra={"ceil_mode": True, "count_include_pad": False}),
    Configuration("pool max f2 dilation 2", "pool", (2, 6, 6, 2), f=2, stride=1, classic=False, extra={"dilation": 2}),
)


@dataclass(frozen=True)
class BatteryResult:
    """Results of every battery case, in order."""

    cases: Tuple[CheckResult, ...]
    method: str
    notes: Tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def verdict(self) -> str:
        """``"fail"`` when a case fails, else ``"inconclusive"`` when one could not be checked, else ``"pass"``."""
        verdicts = {c.verdict for c in self.cases}
        return "fail" if "fail" in verdicts else ("inconclusive" if "inconclusive" in verdicts else "pass")

    def to_dict(self) -> dict:
        """Plain Python types: ``{"passed", "verdict", "battery": True, "method", "cases": [...], "notes"}``."""
        return {"passed": self.passed, "verdict": self.verdict, "battery": True, "method": self.method,
                "cases": [c.to_dict() for c in self.cases], "notes": list(self.notes)}


def run_battery(*, method: str = "auto", samples: Optional[int] = None, eps: float = DEFAULT_EPS,
                tol: float = DEFAULT_TOL, seed: int = 0,
                progress: Optional[Callable[[int, int], None]] = None) -> BatteryResult:
    """Check the engine on every case of :data:`BATTERY`.

    Parameters
    ----------
    method, samples, eps, tol
        As :func:`cnncli.gradcheck.core.check_problem`.
    seed : int
        Base seed; case ``i`` draws its arrays from ``seed + i``.
    progress : callable(done, total), optional
        Called with the number of cases done.

    Returns
    -------
    BatteryResult

    Raises
    ------
    HyperparameterError
        Invalid method, samples, eps or tol.
    """
    method, _ = validate_settings(method, samples, eps, tol, seed)
    results = []
    for i, case in enumerate(BATTERY):
        if progress:
            progress(i, len(BATTERY))
        A, W, b, G = case.arrays(seed + i)
        kw = dict(grad=G, method=method, samples=samples, eps=eps, tol=tol, seed=seed + i, label=case.name)
        if case.layer == "conv":
            results.append(gradcheck_conv(A, W, b, case.conv_params(), **kw))
        else:
            results.append(gradcheck_pool(A, case.pool_params(), **kw))
    if progress:
        progress(len(BATTERY), len(BATTERY))
    # every case is small enough that auto checks it whole (see AUTO_FULL_LIMIT): one note for all
    unused = unused_samples(method, "full" if method == "auto" else method, samples)
    return BatteryResult(tuple(results), method, (unused,) if unused else ())
