"""Layer arithmetic for ``cnncli shape``: dims and layer specs, stacks, size tables.

A library that knows nothing of terminals: it parses the text forms of SPEC
(``DIMS`` such as ``64x64x3``, ``LAYER_SPEC`` such as ``conv:f=4,p=same,c=8``),
evaluates a stack of layers on an input and returns dataclasses that the
renderer shows and the JSON serializes. Every size, padding and receptive-field
formula it uses lives in :mod:`cnncli.engine.geometry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .engine import geometry as geo
from .engine.geometry import Pads, Pair
from .errors import CnncliError, HyperparameterError, ShapeError

#: Input sizes every table shows besides ``f..32``: the usual image and feature-map sizes.
COMMON_SIZES = (28, 32, 56, 64, 96, 112, 128, 224, 227, 256, 299, 512)
TABLE_MAX_SMALL = 32

_KEYS = {"f": "f", "s": "stride", "stride": "stride", "p": "pad", "pad": "pad", "d": "dilation",
         "dilation": "dilation", "c": "filters", "filters": "filters", "g": "groups", "groups": "groups",
         "mode": "mode", "ceil": "ceil_mode"}
_CONV_ONLY, _POOL_ONLY = ("filters", "groups"), ("mode", "ceil_mode")


@dataclass(frozen=True)
class Dims:
    """An input or output shape: ``m`` examples of ``h x w`` with ``c`` channels.

    ``rank`` is how many numbers the user gave (1: ``H``, 2: ``HxW``, 3: ``HxWxC``,
    4: ``MxHxWxC``); :meth:`as_list` answers with the same rank, in ``layout``.
    """

    m: int
    h: int
    w: int
    c: int
    rank: int = 4
    layout: str = "nhwc"

    @property
    def channels_known(self) -> bool:
        """Whether the channel count was given (not assumed to be 1)."""
        return self.rank >= 3

    @property
    def elements(self) -> int:
        """Number of values in the whole batch."""
        return self.m * self.h * self.w * self.c

    def as_list(self) -> List[int]:
        """The shape as the user gave it: ``[H, W]``, ``[H, W, C]`` or ``[M, H, W, C]`` (NCHW: C first)."""
        if self.rank <= 2:
            return [self.h, self.w]
        hwc = [self.c, self.h, self.w] if self.layout == "nchw" else [self.h, self.w, self.c]
        return hwc if self.rank == 3 else [self.m] + hwc

    def text(self) -> str:
        """``64x64x3``: :meth:`as_list` joined by ``x`` (so NCHW arrays read in their own order)."""
        return "x".join(map(str, self.as_list()))


def parse_dims(text: str, name: str = "--input") -> Dims:
    """Parse ``H``, ``HxW``, ``HxWxC`` or ``MxHxWxC`` (NHWC order).

    Raises
    ------
    ShapeError
        Not 1 to 4 positive integers separated by ``x``.

    Examples
    --------
    >>> parse_dims("64x64x3").as_list()
    [64, 64, 3]
    >>> parse_dims("28")
    Dims(m=1, h=28, w=28, c=1, rank=1, layout='nhwc')
    """
    parts = re.split(r"\s*[x×X,]\s*", str(text).strip())
    if not 1 <= len(parts) <= 4 or not all(re.fullmatch(r"\d+", p) for p in parts) or min(map(int, parts)) < 1:
        raise ShapeError(f"{name} must be H, HxW, HxWxC or MxHxWxC with positive integers, got {text!r}")
    v = [int(p) for p in parts]
    if len(v) == 1:
        return Dims(1, v[0], v[0], 1, rank=1)
    if len(v) == 2:
        return Dims(1, v[0], v[1], 1, rank=2)
    if len(v) == 3:
        return Dims(1, v[0], v[1], v[2], rank=3)
    return Dims(v[0], v[1], v[2], v[3], rank=4)


def dims_from_shape(shape: Sequence[int], layout: str = "nhwc", name: str = "--like") -> Dims:
    """Dims of an array: 2-D ``HxW``, 3-D one image ``HxWxC``, 4-D ``MxHxWxC`` (``layout`` order).

    Raises
    ------
    ShapeError
        Another number of axes, or an empty axis.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3, 4) or min(shape) < 1:
        expected = "(m, C, H, W) or (C, H, W)" if layout == "nchw" else "(m, H, W, C) or (H, W, C)"
        raise ShapeError(f"{name} array must be 2-D, 3-D or 4-D {expected} with no empty axis, got shape {shape}")
    if len(shape) == 2:
        return Dims(1, shape[0], shape[1], 1, rank=2, layout=layout)
    m, rest = (1, shape) if len(shape) == 3 else (shape[0], shape[1:])
    c, h, w = rest if layout == "nchw" else (rest[2], rest[0], rest[1])
    return Dims(m, h, w, c, rank=len(shape), layout=layout)


@dataclass(frozen=True)
class LayerSpec:
    """One conv or pool layer, validated and normalized; ``text`` is how the user wrote it.

    ``filters`` is None when the layer keeps its input's channel count.
    """

    kind: str
    f: Pair
    stride: Pair
    pad: Union[str, Pads]
    dilation: Pair = (1, 1)
    filters: Optional[int] = None
    groups: int = 1
    mode: str = "max"
    ceil_mode: bool = False
    text: str = ""

    @property
    def pad_label(self) -> str:
        """``same``, ``valid``, ``1`` or ``top,bottom,left,right``."""
        if self.pad == "same":
            return "same"
        if self.pad == (0, 0, 0, 0):
            return "valid"
        return str(self.pad[0]) if len(set(self.pad)) == 1 else ",".join(map(str, self.pad))


def _positive_int(value, name: str) -> int:
    v = geo._as_int(value, name)
    if v < 1:
        raise HyperparameterError(f"{name} must be >= 1, got {v}")
    return v


def make_layer(kind: str = "conv", f=None, stride=None, pad=None, dilation=None, filters=None, groups=None,
               mode=None, ceil_mode: bool = False, text: str = "") -> LayerSpec:
    """Validate one layer's hyperparameters (None: not given) into a :class:`LayerSpec`.

    Conv stride defaults to 1, pool stride to ``f``; pad defaults to ``valid``.

    Raises
    ------
    HyperparameterError
        Unknown kind, missing ``f``, invalid values, or an option of the other kind
        (``mode``/``ceil`` on conv, ``filters``/``groups`` on pool).
    """
    kind = str(kind).strip().lower()
    where = f" in {text!r}" if text else ""
    if kind not in ("conv", "pool"):
        raise HyperparameterError(f"layer kind must be 'conv' or 'pool', got {kind!r}{where}")
    if f is None:
        raise HyperparameterError(f"a {kind} layer needs a window size f (e.g. f=3){where}")
    given = {"filters": filters, "groups": groups, "mode": mode, "ceil_mode": ceil_mode or None}
    wrong = [k for k in (_POOL_ONLY if kind == "conv" else _CONV_ONLY) if given[k] is not None]
    if wrong:
        other = "pool" if kind == "conv" else "conv"
        raise HyperparameterError(f"{wrong[0].replace('_', '-')} applies to {other} layers only, not {kind}{where}")
    f = geo.as_pair(f, "f")
    # The input channels are unknown until the layer meets an input (evaluate_layer checks them);
    # the output channels can be checked now.
    if filters is not None and groups is not None:
        n_groups, n_filters = _positive_int(groups, "groups"), _positive_int(filters, "filters")
        if n_filters % n_groups:
            raise HyperparameterError(f"groups={n_groups} must divide the output channels n_C={n_filters} "
                                      "(filters)")
    return LayerSpec(
        kind=kind,
        f=f,
        stride=geo.as_pair(stride, "stride") if stride is not None else ((1, 1) if kind == "conv" else f),
        pad=geo.normalize_pad(pad if pad is not None else 0),
        dilation=geo.as_pair(dilation if dilation is not None else 1, "dilation"),
        filters=None if filters is None else _positive_int(filters, "filters"),
        groups=1 if groups is None else _positive_int(groups, "groups"),
        mode=geo.normalize_mode(mode) if mode is not None else "max",
        ceil_mode=bool(ceil_mode),
        text=text,
    )


def parse_layer_spec(text: str) -> LayerSpec:
    """Parse ``KIND:key=value,...``, e.g. ``conv:f=4,s=1,p=same,c=8`` or ``pool:f=2,ceil``.

    Keys: ``f``, ``s``/``stride``, ``p``/``pad``, ``d``/``dilation``, ``c``/``filters``,
    ``g``/``groups``, ``mode``, ``ceil``. A bare item continues the previous value, so
    ``p=0,1,0,1`` is a 4-sided pad; pairs may also be written ``f=3x2``.

    Raises
    ------
    HyperparameterError
        Unknown kind or key, a repeated key, or an invalid value; the message quotes the spec.

    Examples
    --------
    >>> spec = parse_layer_spec("conv:f=4,p=0,1,0,1,c=8")
    >>> spec.f, spec.pad, spec.filters
    ((4, 4), (0, 1, 0, 1), 8)
    """
    raw = str(text).strip()
    kind, sep, body = raw.partition(":")
    if kind.strip().lower() not in ("conv", "pool"):
        raise HyperparameterError(f"layer spec must start with 'conv:' or 'pool:' (KIND:key=value,...), got {raw!r}")
    values: Dict[str, str] = {}
    last = None
    for item in [i.strip() for i in body.split(",")] if body.strip() else []:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq and key == "ceil":
            key, value = "ceil", "1"
        elif not eq:
            if last is None or not item:
                raise HyperparameterError(f"expected key=value in layer spec {raw!r}, got {item!r}")
            values[last] += "," + item
            continue
        if key not in _KEYS:
            raise HyperparameterError(
                f"unknown key {key!r} in layer spec {raw!r}; valid: f, s, p, d, c, g, mode, ceil")
        name = _KEYS[key]
        if name in values:
            raise HyperparameterError(f"{key!r} given twice in layer spec {raw!r}")
        if not value.strip():
            raise HyperparameterError(f"{key!r} has no value in layer spec {raw!r}")
        values[name], last = value.strip(), name
    ceil = geo.as_flag(values.pop("ceil_mode"), "ceil") if "ceil_mode" in values else False
    try:
        return make_layer(kind, ceil_mode=ceil, text=raw, **values)
    except HyperparameterError as exc:
        msg = str(exc)
        raise HyperparameterError(msg if repr(raw) in msg else f"{msg} in layer spec {raw!r}") from None


@dataclass(frozen=True)
class LayerResult:
    """One evaluated layer: shapes, resolved pads, coverage, receptive field, cost.

    Per-axis values are ``(height, width)`` pairs. ``rf``, ``jump`` and ``start`` are
    cumulative from the network input (see
    :func:`cnncli.engine.geometry.receptive_field_step`); ``trailing``/``skipped`` count
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
        params = geo.conv_param_count(g.kernel, dims.c, c_out, spec.groups)
        macs = geo.conv_macs(g.out_hw, g.kernel, dims.c, c_out, spec.groups, dims.m)
    else:
        c_out = dims.c
        g = geo.pool_geometry(hw, spec.f, spec.stride, spec.dilation, spec.pad, spec.ceil_mode)
        params = macs = 0  # NOTE: pooling has no multiply-accumulates (torchinfo/fvcore count 0 too)
    befores, afters = (g.pads[0], g.pads[2]), (g.pads[1], g.pads[3])
    steps = [geo.receptive_field_step(rf[0][a], rf[1][a], rf[2][a], g.kernel[a], g.stride[a], g.dilation[a],
                                      befores[a]) for a in (0, 1)]
    coverage = [geo.input_coverage(hw[a], g.kernel[a], g.stride[a], g.dilation[a], befores[a], g.out_hw[a])
                for a in (0, 1)]
    trailing = (coverage[0][0], coverage[1][0])
    skipped = (coverage[0][1], coverage[1][1])
    cover = tuple(geo.cover_padding(hw[a], g.kernel[a], g.stride[a], g.dilation[a], befores[a], afters[a],
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


def table_sizes(smallest: int) -> List[int]:
    """``smallest..32`` and the common sizes at or above ``smallest``, ascending."""
    return sorted(set(range(max(smallest, 1), TABLE_MAX_SMALL + 1)) | {n for n in COMMON_SIZES if n >= smallest})


@dataclass(frozen=True)
class SizeRow:
    """One row of the input-size table: the result for each column (None: does not fit)."""

    n_in: int
    cells: Dict[str, Optional[StackResult]]


def size_table(columns: Dict[str, Sequence[LayerSpec]], channels: int = 1) -> List[SizeRow]:
    """Evaluate each column's stack on square inputs ``n x n`` over :func:`table_sizes`.

    The smallest size is the dilated window of a single layer, else 1; rows where
    no column fits are left out.
    """
    specs = [s for stack in columns.values() for s in stack]
    single = all(len(stack) == 1 for stack in columns.values())
    smallest = max(max(geo.effective_size(s.f[a], s.dilation[a]) for a in (0, 1)) for s in specs) if single else 1
    rows = []
    for n in table_sizes(smallest):
        cells = {}
        for label, stack in columns.items():
            res = evaluate_stack(stack, Dims(1, n, n, channels, rank=2))
            cells[label] = res if res.error is None else None
        if any(c is not None for c in cells.values()):
            rows.append(SizeRow(n, cells))
    return rows

