"""The text forms of ``cnncli shape``: input dims and layer specs, parsed and validated.

``DIMS`` such as ``64x64x3`` become :class:`Dims`; ``LAYER_SPEC`` such as
``conv:f=4,p=same,c=8`` (or the equivalent options) become :class:`LayerSpec`.
Evaluating them on an input is :mod:`cnncli.shape.stack`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

from ..engine import geometry as geo
from ..engine.geometry import Pads, Pair
from ..io.text import read_flag, read_int, read_pad, read_pair
from ..errors import HyperparameterError, ShapeError
from .limits import abbreviate, check_digits, number_text

_KEYS = {"f": "f", "s": "stride", "stride": "stride", "p": "pad", "pad": "pad", "d": "dilation",
         "dilation": "dilation", "c": "filters", "filters": "filters", "g": "groups", "groups": "groups",
         "mode": "mode", "ceil": "ceil_mode", "op": "output_padding", "output_padding": "output_padding",
         "bias": "bias"}


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
    flat: bool = False

    @classmethod
    def features(cls, like: "Dims", n: int) -> "Dims":
        """``n`` features per example (after flatten or fc), with ``like``'s batch."""
        return cls(like.m, 1, 1, n, rank=like.rank, layout=like.layout, flat=True)

    @property
    def channels_known(self) -> bool:
        """Whether the channel count was given (not assumed to be 1)."""
        return self.rank >= 3

    @property
    def elements(self) -> int:
        """Number of values in the whole batch."""
        return self.m * self.h * self.w * self.c

    def as_list(self) -> List[int]:
        """The shape as the user gave it: ``[H, W]``, ``[H, W, C]`` or ``[M, H, W, C]`` (NCHW: C first).

        Flat features are ``[N]``, or ``[M, N]`` when the batch was given.
        """
        if self.flat:
            return [self.m, self.c] if self.rank == 4 else [self.c]
        if self.rank <= 2:
            return [self.h, self.w]
        hwc = [self.c, self.h, self.w] if self.layout == "nchw" else [self.h, self.w, self.c]
        return hwc if self.rank == 3 else [self.m] + hwc

    def text(self) -> str:
        """``64x64x3``: :meth:`as_list` joined by ``x`` (so NCHW arrays read in their own order)."""
        return "x".join(map(str, self.as_list()))


def parse_dims(text: str, name: str = "--input", layout: str = "nhwc") -> Dims:
    """Parse ``H``, ``HxW``, ``HxWxC`` or ``MxHxWxC`` (NHWC order; NCHW: ``CxHxW`` or ``MxCxHxW``).

    Raises
    ------
    ShapeError
        Not 1 to 4 positive integers separated by ``x``.

    Examples
    --------
    >>> parse_dims("64x64x3").as_list()
    [64, 64, 3]
    >>> parse_dims("28")
    Dims(m=1, h=28, w=28, c=1, rank=1, layout='nhwc', flat=False)
    >>> parse_dims("1x3x224x224", layout="nchw").h
    224
    """
    check_digits(str(text), name, ShapeError)  # before int(): Python refuses text past 4,300 digits
    parts = re.split(r"\s*[x×X,]\s*", str(text).strip())
    if not 1 <= len(parts) <= 4 or not all(re.fullmatch(r"[0-9]+", p) for p in parts) or min(map(int, parts)) < 1:
        order = "H, HxW, CxHxW or MxCxHxW" if layout == "nchw" else "H, HxW, HxWxC or MxHxWxC"
        raise ShapeError.worded(f"{name} {text!r}: expected {order} (positive ints)",
                                f"{name} {text!r}: expected {order}")
    v = [int(p) for p in parts]
    if len(v) == 1:
        return Dims(1, v[0], v[0], 1, rank=1, layout=layout)
    if len(v) == 2:
        return Dims(1, v[0], v[1], 1, rank=2, layout=layout)
    return dims_from_shape(v, layout, name)


def looks_nchw(dims: Dims) -> bool:
    """Whether an NHWC ``HxWxC`` or ``MxHxWxC`` input looks like PyTorch's NCHW read as NHWC (``3x32x32``,
    ``1x1x28x28``): its height 1 or 3 and smaller than both the width and the channels."""
    return dims.rank >= 3 and dims.layout == "nhwc" and dims.h in (1, 3) and dims.w > dims.h and dims.c > dims.h


def layout_note(dims: Dims, layout_given: bool) -> Optional[str]:
    """A note when a 4-D NHWC input looks like PyTorch's NCHW (``1x3x224x224``), else None."""
    if layout_given or dims.rank != 4:
        return None
    second, third, fourth = dims.h, dims.w, dims.c
    if looks_nchw(dims):
        return (f"input {dims.text()} is read as NHWC (height {dims.h}, width {dims.w}, {dims.c} channels); "
                f"if it is PyTorch's NCHW ({second} channels of {third}x{fourth}), add --layout nchw")
    return None


def dims_from_shape(shape: Sequence[int], layout: str = "nhwc", name: str = "--like") -> Dims:
    """Dims of an array: 2-D ``HxW``, 3-D one image ``HxWxC``, 4-D ``MxHxWxC`` (``layout`` order).

    Raises
    ------
    ShapeError
        Another number of axes, or an empty axis.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3, 4):
        expected = "(m, C, H, W), (C, H, W)" if layout == "nchw" else "(m, H, W, C), (H, W, C)"
        dims = "x".join(map(str, shape)) if len(shape) > 1 else shape
        raise ShapeError.worded(f"{name} is {shape}; expected {expected} or (H, W)",
                                f"{name} is {dims}; expected {expected} or (H, W)",
                                f"{name} is {dims}; expected 2-D, 3-D or 4-D")
    if min(shape) < 1:
        raise ShapeError(f"{name} is {shape}: an axis is empty")
    if len(shape) == 2:
        return Dims(1, shape[0], shape[1], 1, rank=2, layout=layout)
    m, rest = (1, shape) if len(shape) == 3 else (shape[0], shape[1:])
    c, h, w = rest if layout == "nchw" else (rest[2], rest[0], rest[1])
    return Dims(m, h, w, c, rank=len(shape), layout=layout)


#: Kinds with a sliding window (f, stride, pad, dilation) and those without.
WINDOW_KINDS = ("conv", "pool", "tconv")
NOOP_KINDS = ("relu", "act", "dropout")
KINDS = WINDOW_KINDS + ("bn", "gap", "flatten", "fc") + NOOP_KINDS
_ALIASES = {"linear": "fc", "dense": "fc"}
#: The spec keys each kind takes (by their long names).
_KIND_KEYS = {
    "conv": ("f", "stride", "pad", "dilation", "filters", "groups", "bias"),
    "pool": ("f", "stride", "pad", "dilation", "mode", "ceil_mode"),
    "tconv": ("f", "stride", "pad", "output_padding", "dilation", "filters", "groups", "bias"),
    "fc": ("filters", "bias"),
}
_SHORT = {"f": "f", "stride": "s", "pad": "p", "dilation": "d", "filters": "c", "groups": "g", "mode": "mode",
          "ceil_mode": "ceil", "output_padding": "op", "bias": "bias"}


@dataclass(frozen=True)
class LayerSpec:
    """One layer, validated and normalized; ``text`` is how the user wrote it.

    ``filters`` is None when the layer keeps its input's channel count (for
    ``fc`` it is the number of outputs). Kinds without a window keep ``f``,
    ``stride`` and ``dilation`` at 1 and ``pad`` at 0. ``in_channels`` (from a
    printed PyTorch model) is checked against the input; ``line`` is where the
    layer was read, for errors.
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
    output_padding: Pair = (0, 0)
    bias: bool = True
    affine: bool = True
    count_include_pad: bool = True
    in_channels: Optional[int] = None
    line: Optional[int] = None

    @property
    def windowed(self) -> bool:
        """Whether the layer slides a window (conv, pool, tconv)."""
        return self.kind in WINDOW_KINDS

    @property
    def pad_label(self) -> str:
        """``same``, ``valid``, ``1`` or ``top,bottom,left,right``."""
        if self.pad == "same":
            return "same"
        if self.pad == (0, 0, 0, 0):
            return "valid"
        return geo.format_pads(self.pad, "list")

    @property
    def summary(self) -> str:
        """Short hyperparameter text, e.g. ``f=3 s=2 p=same c=8`` (pairs as ``3x2``); empty without any."""
        if self.kind == "fc":
            return f"c={self.filters}" + ("" if self.bias else " bias=0")
        if not self.windowed:
            return "" if self.affine else "affine=0"
        parts = [f"f={_hw(self.f)}", f"s={_hw(self.stride)}", f"p={self.pad_label}"]
        if self.output_padding != (0, 0):
            parts.append(f"op={_hw(self.output_padding)}")
        if self.dilation != (1, 1):
            parts.append(f"d={_hw(self.dilation)}")
        if self.kind in ("conv", "tconv"):
            if self.filters is not None:
                parts.append(f"c={self.filters}")
            if self.groups != 1:
                parts.append(f"g={self.groups}")
            if not self.bias:
                parts.append("bias=0")
        else:
            parts.append(self.mode)
            if self.ceil_mode:
                parts.append("ceil")
        return " ".join(parts)

    @property
    def title(self) -> str:
        """Kind and summary, e.g. ``conv f=3 s=1 p=valid`` or ``flatten``."""
        return f"{self.kind} {self.summary}".rstrip()

    def pad_json(self):
        """``"same"``, ``"valid"`` or ``[top, bottom, left, right]``, as the JSON documents write it."""
        return self.pad if self.pad == "same" else ("valid" if not any(self.pad) else list(self.pad))


def _hw(pair) -> str:
    """``3`` when both axes agree, else ``3x2``."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _positive_int(value, name: str) -> int:
    v = read_int(value, name)
    if v < 1:
        raise HyperparameterError(f"{name} must be >= 1, got {v}")
    return v


def _same_for_tconv(f: Pair, stride: Pair, dilation: Pair, where: str) -> HyperparameterError:
    """The refusal of ``p=same`` on a tconv: the pads for n_out = n_in*stride; past 80 columns the why goes first."""
    fixes = []
    for a in (0, 1):
        # n_out = n_in*s needs 2p - op = d*(f-1) + 1 - s with 0 <= op < max(s, d).
        need = dilation[a] * (f[a] - 1) + 1 - stride[a]
        p = max(0, -(-need // 2))
        fixes.append((p, 2 * p - need))
    if any(op >= max(stride[a], dilation[a]) for a, (_, op) in enumerate(fixes)):
        hints = ("no pad and output padding give n_out = n_in*stride with this f",
                 "no p and op give n_out = n_in*stride with this f")
    else:
        (ph, oh), (pw, ow) = fixes
        pad, op = (str(ph), str(oh)) if (ph, oh) == (pw, ow) else (f"{ph},{ph},{pw},{pw}", f"{oh}x{ow}")
        hints = (f"for n_out = n_in*stride use p={pad},op={op}", f"use p={pad},op={op}")
    return HyperparameterError.worded(
        "p=same is not defined for tconv (PyTorch's ConvTranspose2d refuses padding='same'): a transposed "
        f"convolution's padding crops its output; {hints[0]}{where}",
        f"p=same is not defined for tconv; {hints[0]}{where}",
        f"tconv takes no p=same; {hints[0]}{where}",
        f"tconv takes no p=same; {hints[1]}{where}")


def make_layer(kind: str = "conv", f=None, stride=None, pad=None, dilation=None, filters=None, groups=None,
               mode=None, ceil_mode: bool = False, text: str = "", output_padding=None, bias=None) -> LayerSpec:
    """Validate one layer's hyperparameters (None: not given) into a :class:`LayerSpec`.

    Conv and tconv stride defaults to 1, pool stride to ``f``; pad defaults to ``valid``.
    ``fc`` needs ``filters`` (its outputs); ``bn``, ``gap``, ``flatten`` and the
    no-ops take nothing.

    Raises
    ------
    HyperparameterError
        Unknown kind, missing ``f`` (or ``c`` for fc), invalid values, an option of
        another kind (``mode``/``ceil`` on conv, ``filters``/``groups`` on pool),
        ``p=same`` on tconv, or an output padding not below the stride or the dilation.
    """
    kind = str(kind).strip().lower()
    kind = _ALIASES.get(kind, kind)
    where = f" in {text!r}" if text else ""
    if kind not in KINDS:
        raise HyperparameterError(f"layer kind must be one of {', '.join(KINDS)} (or linear, dense), "
                                  f"got {kind!r}{where}")
    given = {"f": f, "stride": stride, "pad": pad, "dilation": dilation, "filters": filters, "groups": groups,
             "mode": mode, "ceil_mode": ceil_mode or None, "output_padding": output_padding, "bias": bias}
    allowed = _KIND_KEYS.get(kind, ())
    wrong = [k for k, v in given.items() if v is not None and k not in allowed]
    if wrong:
        owners = [k for k in ("conv", "pool") if wrong[0] in _KIND_KEYS[k]]
        if kind in ("conv", "pool") and owners and owners[0] != kind:
            raise HyperparameterError.worded(
                f"{wrong[0].replace('_', '-')} applies to {owners[0]} layers only, not {kind}{where}",
                f"{_SHORT[wrong[0]]} is for {owners[0]} layers only, not {kind}{where}")
        valid = ", ".join(_SHORT[k] for k in allowed) or "none"
        raise HyperparameterError(f"{kind} takes no {_SHORT[wrong[0]]!r} (keys for {kind}: {valid}){where}")
    for key, value in given.items():
        given[key] = value = number_text(value, key.replace("_", " "), HyperparameterError)
        for item in value if isinstance(value, (tuple, list)) else (value,):
            check_digits(item, key.replace("_", " "), HyperparameterError)
    f, stride, pad, dilation, filters, groups, output_padding = (
        given[k] for k in ("f", "stride", "pad", "dilation", "filters", "groups", "output_padding"))
    use_bias = True if bias is None else read_flag(bias, "bias")
    if kind == "fc":
        if filters is None:
            raise HyperparameterError(f"an fc layer needs its number of outputs c (e.g. fc:c=10){where}")
        return LayerSpec(kind, (1, 1), (1, 1), (0, 0, 0, 0), filters=_positive_int(filters, "filters"),
                         bias=use_bias, text=text)
    if kind not in WINDOW_KINDS:
        return LayerSpec(kind, (1, 1), (1, 1), (0, 0, 0, 0), text=text)
    if f is None:
        raise HyperparameterError(f"a {kind} layer needs a window size f (e.g. f=3){where}")
    f = read_pair(f, "f")
    # The input channels are unknown until the layer meets an input (evaluate_layer checks them);
    # the output channels can be checked now.
    if filters is not None and groups is not None:
        n_groups, n_filters = _positive_int(groups, "groups"), _positive_int(filters, "filters")
        if n_filters % n_groups:
            raise HyperparameterError(f"groups={n_groups} must divide filters={n_filters}")
    stride = read_pair(stride, "stride") if stride is not None else (f if kind == "pool" else (1, 1))
    dilation = read_pair(dilation if dilation is not None else 1, "dilation")
    pad = read_pad(pad if pad is not None else 0)
    op = (0, 0)
    if kind == "tconv":
        if pad == "same":
            raise _same_for_tconv(f, stride, dilation, where)
        op = read_pair(output_padding, "output padding", minimum=0) if output_padding is not None else (0, 0)
        for a in (0, 1):
            if op[a] >= max(stride[a], dilation[a]):
                raise HyperparameterError(  # PyTorch's rule; the words stay few to fit 80 columns
                    f"op={op[a]} must be < stride {stride[a]} or dilation {dilation[a]}{where}")
    return LayerSpec(
        kind=kind,
        f=f,
        stride=stride,
        pad=pad,
        dilation=dilation,
        filters=None if filters is None else _positive_int(filters, "filters"),
        groups=1 if groups is None else _positive_int(groups, "groups"),
        mode=geo.normalize_mode(mode) if mode is not None else "max",
        ceil_mode=bool(ceil_mode),
        text=text,
        output_padding=op,
        bias=use_bias,
    )


def parse_layer_spec(text: str) -> LayerSpec:
    """Parse ``KIND:key=value,...``, e.g. ``conv:f=4,s=1,p=same,c=8``, ``pool:f=2,ceil`` or ``fc:c=10``.

    Keys: ``f``, ``s``/``stride``, ``p``/``pad``, ``d``/``dilation``, ``c``/``filters``,
    ``g``/``groups``, ``mode``, ``ceil``, ``op`` (tconv's output padding), ``bias``
    (0 for none). A bare item continues the previous value, so ``p=0,1,0,1`` is a
    4-sided pad; pairs may also be written ``f=3x2``. Kinds without keys (``bn``,
    ``gap``, ``flatten``, ``relu``, ``act``, ``dropout``) are written bare.

    Raises
    ------
    HyperparameterError
        Unknown kind or key, a repeated key, or an invalid value; the message quotes the spec.

    Examples
    --------
    >>> spec = parse_layer_spec("conv:f=4,p=0,1,0,1,c=8")
    >>> spec.f, spec.pad, spec.filters
    ((4, 4), (0, 1, 0, 1), 8)
    >>> parse_layer_spec("tconv:f=4,s=2,p=1,c=3").output_padding
    (0, 0)
    """
    raw = str(text).strip()
    check_digits(raw, f"layer spec {abbreviate(raw)!r}", HyperparameterError)
    kind, sep, body = raw.partition(":")
    kind = kind.strip().lower()
    if _ALIASES.get(kind, kind) not in KINDS:
        # NOTE: the ten kinds do not fit an 80-column line beside the spec; --help lists them
        raise HyperparameterError(f"{raw!r} must start with a kind (conv, pool, tconv...; --help)")
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
            raise _unknown_key(raw, kind, key)
        name = _KEYS[key]
        if name in values:
            raise HyperparameterError(f"{key!r} given twice in layer spec {raw!r}")
        if not value.strip():
            raise HyperparameterError(f"{key!r} has no value in layer spec {raw!r}")
        values[name], last = value.strip(), name
    ceil = read_flag(values.pop("ceil_mode"), "ceil") if "ceil_mode" in values else False
    try:
        return make_layer(kind, ceil_mode=ceil, text=raw, **values)
    except HyperparameterError as exc:
        if repr(raw) in str(exc):
            raise
        raise exc.with_context(after=(f" in layer spec {raw!r}", f" in {raw!r}")) from None


def _unknown_key(raw: str, kind: str, key: str) -> HyperparameterError:
    """``'conv:q=1': unknown key 'q' (f s p d c g mode ceil op bias)``, else the keys of this kind alone."""
    own = " ".join(_SHORT[k] for k in _KIND_KEYS.get(_ALIASES.get(kind, kind), ()))
    kinds = f"({own})" if own else f"({kind} takes none)"
    return HyperparameterError.worded(f"{raw!r}: unknown key {key!r} (f s p d c g mode ceil op bias)",
                                      f"{raw!r}: unknown key {key!r} {kinds}", f"{raw!r}: no key {key!r} {kinds}")


def spec_gives(text: str, name: str) -> bool:
    """Whether the LAYER_SPEC ``text`` sets ``name`` (a long key name such as ``stride``) itself.

    >>> spec_gives("conv:f=3,s=2", "stride"), spec_gives("tconv:f=4", "stride")
    (True, False)
    """
    body = str(text).partition(":")[2]
    return any(_KEYS.get(item.partition("=")[0].strip().lower()) == name
               for item in body.split(",") if "=" in item)
