"""One layer of every kind applied to an input: shapes, pads, coverage, receptive field, cost.

:func:`evaluate_layer` dispatches on the spec's kind; :class:`LayerResult` is the
report of one layer and its ``to_dict()`` the layer's entry in ``shape --json``.
Output sizes and pads come from :mod:`cnncli.engine.geometry` (tconv's from
:func:`cnncli.shape.design.tconv_output_length`), the rest from :mod:`cnncli.shape.design`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Optional, Tuple

from ..engine import geometry as geo
from ..engine.geometry import Pads, Pair
from ..errors import HyperparameterError, ShapeError
from . import design
from .spec import Dims, LayerSpec

FLATTEN_ORDER_NOTE = ("flatten order: PyTorch flattens C,H,W (channel-major), NHWC frameworks (Keras) H,W,C; the "
                      "same {n} features in a different order, so weights do not carry over unpermuted")


def _coordinate(v: Fraction):
    """A field centre for JSON: a float while that is exact (below 2**53, as always so far), beyond it an int
    when whole, else the nearest double (None past the double range; JSON has no bigger number)."""
    if abs(v) < 2 ** 53 or v.denominator != 1:
        try:
            return float(v)
        except OverflowError:
            return None
    return int(v)


@dataclass(frozen=True)
class FieldState:
    """The receptive field reached so far: (rf, jump, start) per axis, or None once a tconv made it n/a.

    ``map_hw`` is the feature map an ``fc`` combines (the one before ``flatten``).
    """

    rf: Optional[Pair] = (1, 1)
    jump: Optional[Pair] = (1, 1)
    start: Optional[Tuple[Fraction, Fraction]] = (Fraction(0), Fraction(0))
    map_hw: Optional[Pair] = None

    @property
    def known(self) -> bool:
        return self.rf is not None


@dataclass(frozen=True)
class LayerResult:
    """One evaluated layer: shapes, resolved pads, coverage, receptive field, cost.

    Per-axis values are ``(height, width)`` pairs. ``rf``, ``jump`` and ``start`` are
    cumulative from the network input (see
    :func:`cnncli.shape.design.receptive_field_step`), None from a transposed
    convolution on (its field is not one window: not applicable); ``trailing``/``skipped``
    count input rows/columns of *this layer's* input no window reads (None for tconv,
    which scatters every input pixel), and ``cover_pad`` the extra bottom/right
    padding that would read the trailing ones. Layers without a window have pads 0.
    """

    index: int
    spec: LayerSpec
    input: Dims
    output: Dims
    pads: Pads
    rf: Optional[Pair]
    jump: Optional[Pair]
    start: Optional[Tuple[Fraction, Fraction]]  # exact: multiples of 1/2
    trailing: Optional[Pair]
    skipped: Optional[Pair]
    cover_pad: Optional[Pair]
    params: int
    macs: int
    notes: Tuple[str, ...] = ()
    map_hw: Optional[Pair] = None

    @property
    def flops(self) -> int:
        """Floating-point operations, counted as 2 per multiply-accumulate."""
        return 2 * self.macs

    @property
    def field(self) -> FieldState:
        """The receptive-field state after this layer (what the next layer starts from)."""
        return FieldState(self.rf, self.jump, self.start, self.map_hw)

    @property
    def rf_edges(self) -> Tuple[Tuple[Fraction, Fraction], Tuple[Fraction, Fraction]]:
        """First and last input row, and first and last column, in output (0, 0)'s receptive field.

        ``start`` is the field's centre, so the edges lie ``(rf - 1) / 2`` either side;
        negative or past the input's end means the field reaches into padding.
        """
        first = [self.start[a] - Fraction(self.rf[a] - 1, 2) for a in (0, 1)]
        return (first[0], first[0] + self.rf[0] - 1), (first[1], first[1] + self.rf[1] - 1)

    @property
    def weight_shape(self) -> Optional[Tuple[int, ...]]:
        """Conv weights ``(f_h, f_w, n_C_prev // groups, n_C)``, tconv's ``(f_h, f_w, n_C // groups, n_C_prev)``
        (its weights map each input channel to outputs), fc's ``(in, out)``; None for the rest."""
        spec = self.spec
        if spec.kind == "conv":
            return spec.f[0], spec.f[1], self.input.c // spec.groups, self.output.c
        if spec.kind == "tconv":
            return spec.f[0], spec.f[1], self.output.c // spec.groups, self.input.c
        if spec.kind == "fc":
            return self.input.h * self.input.w * self.input.c, self.output.c
        return None

    @property
    def unread(self) -> Pair:
        """Input rows and columns that no window reads (0 where not applicable)."""
        if self.trailing is None:
            return 0, 0
        return self.trailing[0] + self.skipped[0], self.trailing[1] + self.skipped[1]

    def memory(self, itemsize: int) -> int:
        """Bytes of this layer's output activations for the whole batch."""
        return self.output.elements * itemsize

    def to_dict(self) -> dict:
        """This layer as the JSON document writes it (pairs are ``[height, width]``).

        Window kinds carry their hyperparameters and pads; ``receptive_field``,
        ``jump``, ``start`` and ``unread`` are null where not applicable.
        """
        spec = self.spec
        d = {"index": self.index, "kind": spec.kind, "spec": spec.text or None,
             "input": self.input.as_list(), "output": self.output.as_list()}
        if spec.windowed:
            d.update(f=list(spec.f), stride=list(spec.stride), dilation=list(spec.dilation),
                     pad=spec.pad_json(), pads=list(self.pads))
        if spec.kind == "conv":
            d.update(filters=self.output.c, groups=spec.groups)
        elif spec.kind == "pool":
            d.update(mode=spec.mode, ceil_mode=spec.ceil_mode)
        elif spec.kind == "tconv":
            d.update(output_padding=list(spec.output_padding), filters=self.output.c, groups=spec.groups)
        elif spec.kind == "fc":
            d.update(features_in=self.input.h * self.input.w * self.input.c, filters=self.output.c)
        elif spec.kind == "bn":
            d.update(affine=spec.affine)
        if spec.kind in ("conv", "tconv", "fc") and not spec.bias:
            d.update(bias=False)
        d.update(
            receptive_field=None if self.rf is None else list(self.rf),
            jump=None if self.jump is None else list(self.jump),
            start=None if self.start is None else [_coordinate(v) for v in self.start],
            unread=None if self.trailing is None else {
                "trailing": list(self.trailing), "skipped": list(self.skipped), "cover_pad": list(self.cover_pad)},
            params=self.params, macs=self.macs, flops=self.flops,
            memory_bytes={"float32": self.memory(4), "float64": self.memory(8)},
            notes=list(self.notes),
        )
        return d


def _same_notes(spec: LayerSpec, pads: Pads) -> Tuple[str, ...]:
    """Advice that the numbers alone do not give (coverage is in the result's fields)."""
    if spec.pad == "same" and max(spec.stride) > 1:
        return (f"pad=same with stride {spec.stride[0]}x{spec.stride[1]}: PyTorch refuses padding='same' for "
                f"stride > 1; TensorFlow/Keras pad (top, bottom, left, right) = {pads}, the extra pixel at the "
                f"bottom/right (in PyTorch: F.pad(x, ({pads[2]}, {pads[3]}, {pads[0]}, {pads[1]})), then padding=0)",)
    return ()


def _check_in_channels(spec: LayerSpec, dims: Dims, have: int, what: str = "input channels") -> None:
    if spec.in_channels is not None and spec.in_channels != have:
        hint = "" if dims.channels_known else " (1 assumed: give C in --input)"
        n, short = spec.in_channels, what.split(" (")[0]  # 'input features (in_features)': the name goes last
        fewer = ([f"expects {n} {short}, got {have}", f"expects {n} {short.split()[-1]}, got {have}"]
                 if dims.channels_known
                 else [f"expects {n} {short}: give C in --input", f"expects {n} {short.split()[-1]}: give C in --input"])
        raise ShapeError.worded(f"expects {n} {what}, but its input has {have}{hint}",
                                f"expects {n} {what}, got {have}{hint}", *fewer)


def _window_field(field: FieldState, kernel: Pair, stride: Pair, dilation: Pair, befores: Pair) -> FieldState:
    if not field.known:
        return field
    steps = [design.receptive_field_step(field.rf[a], field.jump[a], field.start[a], kernel[a], stride[a],
                                         dilation[a], befores[a]) for a in (0, 1)]
    return FieldState((steps[0][0], steps[1][0]), (steps[0][1], steps[1][1]), (steps[0][2], steps[1][2]))


def _window(spec: LayerSpec, dims: Dims, index: int, field: FieldState) -> LayerResult:
    """conv and pool: the window slides over the input."""
    hw = (dims.h, dims.w)
    if spec.kind == "conv":
        _check_in_channels(spec, dims, dims.c)
        c_out = spec.filters if spec.filters is not None else dims.c
        geo.check_groups(dims.c, c_out, spec.groups)
        g = geo.window_geometry(hw, spec.f, spec.stride, spec.dilation, spec.pad)
        params = design.conv_param_count(g.kernel, dims.c, c_out, spec.groups, spec.bias)
        macs = design.conv_macs(g.out_hw, g.kernel, dims.c, c_out, spec.groups, dims.m)
    else:
        c_out = dims.c
        g = geo.pool_geometry(hw, spec.f, spec.stride, spec.dilation, spec.pad, spec.ceil_mode)
        params = macs = 0  # NOTE: pooling has no multiply-accumulates (torchinfo/fvcore count 0 too)
    befores, afters = (g.pads[0], g.pads[2]), (g.pads[1], g.pads[3])
    after = _window_field(field, g.kernel, g.stride, g.dilation, befores)
    coverage = [design.input_coverage(hw[a], g.kernel[a], g.stride[a], g.dilation[a], befores[a], g.out_hw[a])
                for a in (0, 1)]
    trailing = (coverage[0][0], coverage[1][0])
    skipped = (coverage[0][1], coverage[1][1])
    cover = tuple(design.cover_padding(hw[a], g.kernel[a], g.stride[a], g.dilation[a], befores[a], afters[a],
                                       g.ceil_mode) if trailing[a] else 0 for a in (0, 1))
    return LayerResult(
        index=index, spec=spec, input=dims, output=replace(dims, h=g.out_hw[0], w=g.out_hw[1], c=c_out,
                                                           rank=max(dims.rank, 3) if spec.filters else dims.rank),
        pads=g.pads, rf=after.rf, jump=after.jump, start=after.start, trailing=trailing, skipped=skipped,
        cover_pad=cover, params=params, macs=macs, notes=_same_notes(spec, g.pads),
    )


def _tconv(spec: LayerSpec, dims: Dims, index: int) -> LayerResult:
    """Transposed convolution, as PyTorch's ConvTranspose2d computes it."""
    _check_in_channels(spec, dims, dims.c)
    c_out = spec.filters if spec.filters is not None else dims.c
    geo.check_groups(dims.c, c_out, spec.groups)
    pads = spec.pad
    out = [design.tconv_output_length((dims.h, dims.w)[a], spec.f[a], spec.stride[a], spec.dilation[a],
                                      pads[2 * a], pads[2 * a + 1], spec.output_padding[a]) for a in (0, 1)]
    if min(out) < 1:
        p = geo.format_pads(pads)
        raise HyperparameterError.worded(
            f"a {spec.f[0]}x{spec.f[1]} transposed convolution of a {dims.h}x{dims.w} input cropped by "
            f"{p} has no output ({out[0]}x{out[1]}); use a smaller pad", f"pad {p} leaves no output; use a smaller pad",
            f"pad {p} leaves no output; use less")
    params = design.conv_param_count(spec.f, dims.c, c_out, spec.groups, spec.bias)
    macs = design.tconv_macs((dims.h, dims.w), spec.f, dims.c, c_out, spec.groups, dims.m)
    return LayerResult(
        index=index, spec=spec, input=dims,
        output=replace(dims, h=out[0], w=out[1], c=c_out, rank=max(dims.rank, 3) if spec.filters else dims.rank),
        pads=pads, rf=None, jump=None, start=None, trailing=None, skipped=None, cover_pad=None,
        params=params, macs=macs,
    )


def _whole(spec: LayerSpec, dims: Dims, index: int, field: FieldState) -> LayerResult:
    """bn, gap, flatten, fc and the no-ops: no window, every input value read."""
    notes: Tuple[str, ...] = ()
    params = macs = 0
    output, map_hw = dims, field.map_hw
    after = field
    if spec.kind == "bn":
        _check_in_channels(spec, dims, dims.c, "channels (num_features)")
        # Scale and shift (PyTorch: weight if affine, bias if affine and bias); running statistics are buffers.
        params = dims.c * spec.affine + dims.c * (spec.affine and spec.bias)
    elif spec.kind == "gap":
        if dims.flat:
            raise ShapeError.worded("global average pooling needs a feature map, but its input is flat",
                                    "needs a feature map, not flat features")
        after = _window_field(field, (dims.h, dims.w), (1, 1), (1, 1), (0, 0))  # one window over the whole map
        output = replace(dims, h=1, w=1)
    elif spec.kind == "flatten":
        if not dims.flat:
            map_hw = (dims.h, dims.w)
            output = Dims.features(dims, dims.h * dims.w * dims.c)
            if dims.h * dims.w > 1 and dims.c > 1:
                notes = (FLATTEN_ORDER_NOTE.format(n=output.c),)
    elif spec.kind == "fc":
        n_in = dims.h * dims.w * dims.c
        _check_in_channels(spec, dims, n_in, "input features (in_features)")
        if not dims.flat:
            notes = (f"fc flattens its {dims.text()} input into {n_in} features first",)
            if dims.h * dims.w > 1 and dims.c > 1:
                notes += (FLATTEN_ORDER_NOTE.format(n=n_in),)
            map_hw = (dims.h, dims.w)
        # Every output reads every feature: the field spans the whole map the features came from.
        if map_hw is not None:
            after = _window_field(field, map_hw, (1, 1), (1, 1), (0, 0))
        map_hw = (1, 1)
        output = Dims.features(dims, spec.filters)
        params = n_in * spec.filters + (spec.filters if spec.bias else 0)
        macs = dims.m * n_in * spec.filters
    zero = (0, 0)
    return LayerResult(index=index, spec=spec, input=dims, output=output, pads=(0, 0, 0, 0), rf=after.rf,
                       jump=after.jump, start=after.start, trailing=zero, skipped=zero, cover_pad=zero,
                       params=params, macs=macs, notes=notes, map_hw=map_hw)


def evaluate_layer(spec: LayerSpec, dims: Dims, index: int = 1, field: FieldState = FieldState()) -> LayerResult:
    """Apply one layer to ``dims``; ``field`` is the receptive field reached so far.

    Raises
    ------
    HyperparameterError
        The window does not fit, padding swallows a pooling window, groups do not
        divide the channels, or a tconv's padding crops away its whole output.
    ShapeError
        A window layer on flat features, or channels that differ from the ones the
        layer was declared with (``in_channels``, from a printed PyTorch model).
    """
    if spec.windowed and dims.flat:
        raise ShapeError.worded(f"a {spec.kind} layer needs a feature map, but its input is {dims.c} flat features",
                                f"needs a feature map, not {dims.c} flat features")
    if spec.kind == "tconv":
        return _tconv(spec, dims, index)
    if spec.windowed:
        return _window(spec, dims, index, field)
    return _whole(spec, dims, index, field)
