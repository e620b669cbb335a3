"""Layer arithmetic for ``cnncli shape``: stacks of layers evaluated on an input, size tables.

A library that knows nothing of terminals: it evaluates a stack of layers (parsed
by :mod:`cnncli.shape.spec`, whose names are re-exported here) on an input and
returns report objects that the renderer shows and whose ``to_dict()`` is the JSON
document. Output sizes and pads come from :mod:`cnncli.engine.geometry`, receptive
fields, coverage and costs from :mod:`cnncli.shape.design`; the input-size table is
:mod:`cnncli.shape.table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

from ..engine import geometry as geo
from . import design
from ..engine.geometry import Pads, Pair
from ..errors import CnncliError
from .spec import Dims, LayerSpec, dims_from_shape, make_layer, parse_dims, parse_layer_spec  # noqa: F401

@dataclass(frozen=True)
class LayerResult:
    """One evaluated layer: shapes, resolved pads, coverage, receptive field, cost.

    Per-axis values are ``(height, width)`` pairs. ``rf``, ``jump`` and ``start`` are
    cumulative from the network input (see
    :func:`cnncli.shape.design.receptive_field_step`); ``trailing``/``skipped`` count
    input rows/columns of *this layer's* input no window reads, and ``cover_pad`` the
    extra bottom/right padding that would read the trailing ones.
    """

    index: int
    spec: LayerSpec
    input: Dims
    output: Dims
    pads: Pads
    rf: Pair
    jump: Pair
    start: Tuple[float, float]
    trailing: Pair
    skipped: Pair
    cover_pad: Pair
    params: int
    macs: int
    notes: Tuple[str, ...] = ()

    @property
    def flops(self) -> int:
        """Floating-point operations, counted as 2 per multiply-accumulate."""
        return 2 * self.macs

    @property
    def rf_edges(self) -> Tuple[Tuple[float, float], Tuple[float, float]]:
        """First and last input row, and first and last column, in output (0, 0)'s receptive field.

        ``start`` is the field's centre, so the edges lie ``(rf - 1) / 2`` either side;
        negative or past the input's end means the field reaches into padding.
        """
        first = [self.start[a] - (self.rf[a] - 1) / 2 for a in (0, 1)]
        return (first[0], first[0] + self.rf[0] - 1), (first[1], first[1] + self.rf[1] - 1)

    @property
    def weight_shape(self) -> Optional[Tuple[int, int, int, int]]:
        """Conv weights ``(f_h, f_w, n_C_prev // groups, n_C)``; None for pooling."""
        if self.spec.kind != "conv":
            return None
        return self.spec.f[0], self.spec.f[1], self.input.c // self.spec.groups, self.output.c

    @property
    def unread(self) -> Pair:
        """Input rows and columns that no window reads."""
        return self.trailing[0] + self.skipped[0], self.trailing[1] + self.skipped[1]

    def memory(self, itemsize: int) -> int:
        """Bytes of this layer's output activations for the whole batch."""
        return self.output.elements * itemsize

    def to_dict(self) -> dict:
        """This layer as the JSON document writes it (pairs are ``[height, width]``)."""
        spec = self.spec
        d = {
            "index": self.index, "kind": spec.kind, "spec": spec.text or None,
            "input": self.input.as_list(), "output": self.output.as_list(),
            "f": list(spec.f), "stride": list(spec.stride), "dilation": list(spec.dilation),
            "pad": spec.pad_json(), "pads": list(self.pads),
        }
        if spec.kind == "conv":
            d.update(filters=self.output.c, groups=spec.groups)
        else:
            d.update(mode=spec.mode, ceil_mode=spec.ceil_mode)
        d.update(
            receptive_field=list(self.rf), jump=list(self.jump), start=[float(v) for v in self.start],
            unread={"trailing": list(self.trailing), "skipped": list(self.skipped),
                    "cover_pad": list(self.cover_pad)},
            params=self.params, macs=self.macs, flops=self.flops,
            memory_bytes={"float32": self.memory(4), "float64": self.memory(8)},
            notes=list(self.notes),
        )
        return d


@dataclass
class StackResult:
    """A stack evaluated on one input; ``error`` says which layer did not fit (the rest is skipped)."""

    input: Dims
    layers: List[LayerResult] = field(default_factory=list)
    error: Optional[CnncliError] = None

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
        """
        out = self.output
        return {
            "input": self.input.as_list(),
            "layout": self.input.layout,
            "layers": [layer.to_dict() for layer in self.layers],
            "output": None if out is None else out.as_list(),
            "totals": None if out is None else {
                "params": self.params, "macs": self.macs, "flops": self.flops,
                "memory_bytes": {"float32": self.memory(4), "float64": self.memory(8)},
                "receptive_field": list(self.layers[-1].rf), "jump": list(self.layers[-1].jump),
            },
            "error": None if self.error is None else str(self.error),
        }


def _layer_notes(spec: LayerSpec, pads: Pads) -> Tuple[str, ...]:
    """Advice that the numbers alone do not give (coverage is in the result's fields)."""
    if spec.pad == "same" and max(spec.stride) > 1:
        return (f"pad=same with stride {spec.stride[0]}x{spec.stride[1]}: PyTorch refuses padding='same' for "
                f"stride > 1; TensorFlow/Keras pad (top, bottom, left, right) = {pads}, the extra pixel at the "
                f"bottom/right (in PyTorch: F.pad(x, ({pads[2]}, {pads[3]}, {pads[0]}, {pads[1]})), then padding=0)",)
    return ()


def evaluate_layer(spec: LayerSpec, dims: Dims, index: int = 1,
                   rf: Tuple[Pair, Pair, Tuple[float, float]] = ((1, 1), (1, 1), (0.0, 0.0))) -> LayerResult:
    """Apply one layer to ``dims``; ``rf`` is the (rf, jump, start) reached so far.

    Raises
    ------
    HyperparameterError
        The window does not fit, padding swallows a pooling window, or groups do not
        divide the channels.
    """
    hw = (dims.h, dims.w)
    if spec.kind == "conv":
        c_out = spec.filters if spec.filters is not None else dims.c
        geo.check_groups(dims.c, c_out, spec.groups)
        g = geo.window_geometry(hw, spec.f, spec.stride, spec.dilation, spec.pad)
        params = design.conv_param_count(g.kernel, dims.c, c_out, spec.groups)
        macs = design.conv_macs(g.out_hw, g.kernel, dims.c, c_out, spec.groups, dims.m)
    else:
        c_out = dims.c
        g = geo.pool_geometry(hw, spec.f, spec.stride, spec.dilation, spec.pad, spec.ceil_mode)
        params = macs = 0  # NOTE: pooling has no multiply-accumulates (torchinfo/fvcore count 0 too)
    befores, afters = (g.pads[0], g.pads[2]), (g.pads[1], g.pads[3])
    steps = [design.receptive_field_step(rf[0][a], rf[1][a], rf[2][a], g.kernel[a], g.stride[a], g.dilation[a],
                                      befores[a]) for a in (0, 1)]
    coverage = [design.input_coverage(hw[a], g.kernel[a], g.stride[a], g.dilation[a], befores[a], g.out_hw[a])
                for a in (0, 1)]
    trailing = (coverage[0][0], coverage[1][0])
    skipped = (coverage[0][1], coverage[1][1])
    cover = tuple(design.cover_padding(hw[a], g.kernel[a], g.stride[a], g.dilation[a], befores[a], afters[a],
                                    g.ceil_mode) if trailing[a] else 0 for a in (0, 1))
    return LayerResult(
        index=index, spec=spec, input=dims, output=replace(dims, h=g.out_hw[0], w=g.out_hw[1], c=c_out,
                                                           rank=max(dims.rank, 3) if spec.filters else dims.rank),
        pads=g.pads, rf=(steps[0][0], steps[1][0]), jump=(steps[0][1], steps[1][1]),
        start=(steps[0][2], steps[1][2]), trailing=trailing, skipped=skipped, cover_pad=cover,
        params=params, macs=macs, notes=_layer_notes(spec, g.pads),
    )


def evaluate_stack(specs: Sequence[LayerSpec], dims: Dims) -> StackResult:
    """Run ``dims`` through every layer; stop at the first that does not fit.

    Never raises for a layer that does not fit: the result's ``error`` names the
    layer (``layer 3 (conv:f=5) on 3x3x4: no 5x5 window fits ...``; just the reason
    for a single layer built from options) and ``layers`` holds those before it.
    """
    result = StackResult(dims)
    current, rf = dims, ((1, 1), (1, 1), (0.0, 0.0))
    for i, spec in enumerate(specs, start=1):
        try:
            layer = evaluate_layer(spec, current, i, rf)
        except CnncliError as exc:
            if len(specs) == 1 and not spec.text:  # one layer from options: nothing to point at
                result.error = exc
            else:
                label = spec.text or f"{spec.kind} f={spec.f[0]}"
                result.error = type(exc)(f"layer {i} ({label}) on {current.text()}: {exc}")
            return result
        result.layers.append(layer)
        current, rf = layer.output, (layer.rf, layer.jump, layer.start)
    return result
