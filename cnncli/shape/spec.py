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
        return geo.format_pads(self.pad, "list")

    @property
    def summary(self) -> str:
        """Short hyperparameter text, e.g. ``f=3 s=2 p=same c=8`` (pairs as ``3x2``)."""
        parts = [f"f={_hw(self.f)}", f"s={_hw(self.stride)}", f"p={self.pad_label}"]
        if self.dilation != (1, 1):
            parts.append(f"d={_hw(self.dilation)}")
        if self.kind == "conv":
            if self.filters is not None:
                parts.append(f"c={self.filters}")
            if self.groups != 1:
                parts.append(f"g={self.groups}")
        else:
            parts.append(self.mode)
            if self.ceil_mode:
                parts.append("ceil")
        return " ".join(parts)

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
    f = read_pair(f, "f")
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
        stride=read_pair(stride, "stride") if stride is not None else ((1, 1) if kind == "conv" else f),
        pad=read_pad(pad if pad is not None else 0),
        dilation=read_pair(dilation if dilation is not None else 1, "dilation"),
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
    ceil = read_flag(values.pop("ceil_mode"), "ceil") if "ceil_mode" in values else False
    try:
        return make_layer(kind, ceil_mode=ceil, text=raw, **values)
    except HyperparameterError as exc:
        msg = str(exc)
        raise HyperparameterError(msg if repr(raw) in msg else f"{msg} in layer spec {raw!r}") from None
