"""Layer arithmetic for ``cnncli shape``: stacks of layers evaluated on an input, size tables.

A library that knows nothing of terminals: it evaluates a stack of layers (parsed
by :mod:`cnncli.shape.spec`, whose names are re-exported here) on an input and
returns report objects that the renderer shows and whose ``to_dict()`` is the JSON
document. Output sizes and pads come from :mod:`cnncli.engine.geometry`, receptive
fields, coverage and costs from :mod:`cnncli.shape.design`; the input-size table is
:mod:`cnncli.shape.table`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

from ..errors import CnncliError, ShapeError, fits
from .limits import too_long
from .layers import FieldState, LayerResult, evaluate_layer  # noqa: F401
from .spec import Dims, LayerSpec, dims_from_shape, make_layer, parse_dims, parse_layer_spec  # noqa: F401


@dataclass
class StackResult:
    """A stack evaluated on one input; ``error`` says which layer did not fit (the rest is skipped)."""

    input: Dims
    layers: List[LayerResult] = field(default_factory=list)
    error: Optional[CnncliError] = None
    notes: Tuple[str, ...] = ()

    @property
    def output(self) -> Optional[Dims]:
        """Shape after the last layer, or None when a layer did not fit."""
        return None if self.error is not None or not self.layers else self.layers[-1].output

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def flops(self) -> int:
        """Floating-point operations of every layer (2 per multiply-accumulate)."""
        return sum(r.flops for r in self.layers)

    def memory(self, itemsize: int) -> int:
        """Bytes of every layer's output activations (what a training step keeps for backward)."""
        return sum(r.memory(itemsize) for r in self.layers)

    def to_dict(self) -> dict:
        """``{"input", "layout", "layers", "output", "totals", "error"}``: the ``shape --json`` document.

        ``output`` and ``totals`` are None when a layer did not fit; ``error`` then says which.
        ``notes`` (about the input, e.g. a layout that looks like NCHW) only when there are some.
        """
        out = self.output
        last = self.layers[-1] if self.layers else None
        return {
            "input": self.input.as_list(),
            "layout": self.input.layout,
            "layers": [layer.to_dict() for layer in self.layers],
            "output": None if out is None else out.as_list(),
            "totals": None if out is None else {
                "params": self.params, "macs": self.macs, "flops": self.flops,
                "memory_bytes": {"float32": self.memory(4), "float64": self.memory(8)},
                "receptive_field": None if last.rf is None else list(last.rf),
                "jump": None if last.jump is None else list(last.jump),
            },
            # a document has no width: its error keeps the whole words where the line on stderr gave way
            "error": None if self.error is None else getattr(self.error, "whole", str(self.error)),
        } | ({"notes": list(self.notes)} if self.notes else {})


def _derived(layer: LayerResult):
    """What a layer's report prints, as (what, number): each must stay printable (see :mod:`.limits`)."""
    out = layer.output
    yield from (("output size", out.h), ("output size", out.w), ("channel count", out.c), ("batch", out.m))
    yield from (("parameter count", layer.params), ("FLOPs", layer.flops), ("float64 bytes", out.elements * 8))
    for a in (0, 1):
        yield "receptive field", None if layer.rf is None else layer.rf[a]
        yield "jump", None if layer.jump is None else layer.jump[a]
        yield "field start", None if layer.start is None else 2 * abs(layer.start[a]) + 1


def _layer_named(index: int, spec: LayerSpec, dims: Dims) -> Tuple[str, ...]:
    """``layer 3 (conv:f=5) on 3x3x4: `` in fewer words each: the input dims go, then a printed line's text."""
    labels = [spec.text or f"{spec.kind} f={spec.f[0]}"]
    if spec.line is not None:
        module = re.match(r"(?:[^(]*?: )?(\w+)\(", spec.text)  # '0: Conv2d(3, 6, ...)': the line names the rest
        labels = [f"{labels[0]}, line {spec.line}"] + ([f"line {spec.line}: {module.group(1)}"] if module else [])
    return tuple(f"layer {index} ({label}){on}: " for label in labels for on in (f" on {dims.text()}", ""))


def evaluate_stack(specs: Sequence[LayerSpec], dims: Dims, notes: Sequence[str] = ()) -> StackResult:
    """Run ``dims`` through every layer; stop at the first that does not fit.

    Never raises for a layer that does not fit: the result's ``error`` names the
    layer (``layer 3 (conv:f=5) on 3x3x4: no 5x5 window fits ...``; just the reason
    for a single layer built from options) and ``layers`` holds those before it. A layer
    whose numbers would pass :data:`cnncli.shape.limits.MAX_DERIVED_DIGITS` stops it the same way.
    """
    result = StackResult(dims, notes=tuple(notes))
    current, reach = dims, FieldState()
    flatten_noted = False
    for i, spec in enumerate(specs, start=1):
        try:
            layer = evaluate_layer(spec, current, i, reach)
            why = too_long(_derived(layer))
            if why:
                raise ShapeError(why)
        except CnncliError as exc:
            if len(specs) == 1 and not spec.text:  # one layer from options: nothing to point at
                result.error = exc
            else:
                named = _layer_named(i, spec, current)
                result.error = exc.with_context(named)
                if spec.line is not None and not fits(str(result.error)):
                    # a long module name (ConvTranspose2d) leaves no room for the reason: the line number names it
                    # (none of ``named`` fits, so they only keep the whole words first, for --json)
                    result.error = exc.with_context(named + (f"layer {i} (line {spec.line}) on {current.text()}: ",
                                                             f"layer {i} (line {spec.line}): "))
            return result
        if any(note.startswith("flatten order:") for note in layer.notes):
            if flatten_noted:  # said once per stack
                layer = replace(layer, notes=tuple(n for n in layer.notes if not n.startswith("flatten order:")))
            flatten_noted = True
        result.layers.append(layer)
        current, reach = layer.output, layer.field
    return result
