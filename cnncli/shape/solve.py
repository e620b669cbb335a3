"""Solving ``cnncli shape --target``: which stride and padding give a wanted output size.

The per-axis search lives in :func:`cnncli.shape.design.solve_pads`; this
module pairs the axes and ranks the answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from ..engine import geometry as geo
from . import design
from ..engine.geometry import Pads, Pair
from .stack import Dims, LayerSpec


@dataclass(frozen=True)
class Solution:
    """A stride and padding that give the target size; ``unread`` counts the input rows and cols it leaves unread."""

    stride: Pair
    pads: Pads
    output: Pair
    unread: Pair


@dataclass(frozen=True)
class TargetResult:
    """Answers to "which stride and pad turn this input into that size?" for one layer."""

    input: Dims
    target: Pair
    spec: LayerSpec
    stride_fixed: bool
    solutions: List[Solution]

    def to_dict(self) -> dict:
        """``{"input", "target", "kind", "f", "dilation", "stride_fixed", "solutions"}``: the ``--target`` document."""
        return {
            "input": self.input.as_list(), "target": list(self.target), "kind": self.spec.kind,
            "f": list(self.spec.f), "dilation": list(self.spec.dilation), "stride_fixed": self.stride_fixed,
            "solutions": [{"stride": list(s.stride), "pads": list(s.pads), "output": list(s.output),
                           "unread": list(s.unread)} for s in self.solutions],
        }


def _solution(spec: LayerSpec, dims: Dims, stride: Pair, h: Tuple[int, int], w: Tuple[int, int]) -> Solution:
    pads = (h[0], h[1], w[0], w[1])
    out, unread = [], []
    for a, (n, (before, _)) in enumerate(zip((dims.h, dims.w), (h, w))):
        n_out = geo.output_length(n, spec.f[a], stride[a], spec.dilation[a], pads[2 * a], pads[2 * a + 1],
                                  spec.ceil_mode)
        out.append(n_out)
        unread.append(sum(design.input_coverage(n, spec.f[a], stride[a], spec.dilation[a], before, n_out)))
    return Solution(stride, pads, (out[0], out[1]), (unread[0], unread[1]))


def solve_target(spec: LayerSpec, dims: Dims, target, stride_fixed: bool) -> TargetResult:
    """Strides and pads that make ``spec``'s window turn ``dims`` into ``target`` (``H`` or ``HxW``).

    With ``stride_fixed``, every padding for ``spec.stride`` (symmetric and
    asymmetric, each side below the dilated window); otherwise, for each stride
    from 1 to the dilated window, its smallest padding. Smallest total padding first.

    Raises
    ------
    HyperparameterError
        A target that is not one or two positive integers.
    """
    target = geo.as_pair(target, "--target")
    per_axis = lambda s: [design.solve_pads((dims.h, dims.w)[a], spec.f[a], s[a], spec.dilation[a], target[a],
                                         spec.ceil_mode) for a in (0, 1)]
    same_axes = dims.h == dims.w and target[0] == target[1] and spec.f[0] == spec.f[1] \
        and spec.dilation[0] == spec.dilation[1]
    found = []
    if stride_fixed:
        hs, ws = per_axis(spec.stride)
        if same_axes and spec.stride[0] == spec.stride[1]:
            found = [_solution(spec, dims, spec.stride, p, p) for p in hs]
        else:
            found = [_solution(spec, dims, spec.stride, h, w) for h in hs for w in ws]
    else:
        largest = max(geo.effective_size(spec.f[a], spec.dilation[a]) for a in (0, 1))
        for s in range(1, largest + 1):
            hs, ws = per_axis((s, s))
            if not (hs and ws):
                continue
            found.append(_solution(spec, dims, (s, s), hs[0], ws[0]))
            # PyTorch's Conv2d pads symmetrically: offer the smallest symmetric pad too.
            sym = [[p for p in axis if p[0] == p[1]] for axis in (hs, ws)]
            if sym[0] and sym[1] and (sym[0][0], sym[1][0]) != (hs[0], ws[0]):
                found.append(_solution(spec, dims, (s, s), sym[0][0], sym[1][0]))
    found.sort(key=lambda s: (sum(s.pads), abs(s.pads[1] - s.pads[0]) + abs(s.pads[3] - s.pads[2]), s.stride))
    return TargetResult(dims, target, spec, stride_fixed, found)
