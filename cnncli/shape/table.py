"""The no-input view of ``cnncli shape``: output sizes over a range of square input sizes.

:func:`size_table_report` turns the layer(s) the user gave into columns (one
layer: its own padding, ``valid`` and ``same``; a stack: the stack), evaluates
them with :func:`cnncli.shape.stack.evaluate_stack` and returns a
:class:`SizeTable`, whose :meth:`SizeTable.to_dict` is the ``{"rows": ...}``
JSON document and whose :meth:`SizeTable.formulas` are the lines above the table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

from ..engine import geometry as geo
from ..errors import HyperparameterError
from .spec import Dims, LayerSpec
from .stack import StackResult, evaluate_stack

#: Input sizes every table shows besides ``f..32``: the usual image and feature-map sizes.
COMMON_SIZES = (28, 32, 56, 64, 96, 112, 128, 224, 227, 256, 299, 512)
TABLE_MAX_SMALL = 32

FORMULA = "n_out = floor((n_in + pad_before + pad_after - dilation*(f-1) - 1) / stride) + 1"
TCONV_FORMULA = "n_out = (n_in - 1)*stride - pad_before - pad_after + dilation*(f-1) + output_padding + 1"


def table_sizes(smallest: int) -> List[int]:
    """``smallest..32`` and the common sizes at or above ``smallest``, ascending."""
    return sorted(set(range(max(smallest, 1), TABLE_MAX_SMALL + 1)) | {n for n in COMMON_SIZES if n >= smallest})


@dataclass(frozen=True)
class SizeRow:
    """One row of the input-size table: the result for each column (None: does not fit)."""

    n_in: int
    cells: Dict[str, Optional[StackResult]]


def size_table(columns: Dict[str, Sequence[LayerSpec]], channels: int = 1,
               sizes: Optional[Sequence[int]] = None) -> List[SizeRow]:
    """Evaluate each column's stack on square inputs ``n x n`` over ``sizes`` (default :func:`table_sizes`).

    The smallest default size is the dilated window of a single layer, else 1; rows where
    no column fits are left out.
    """
    if sizes is None:
        specs = [s for stack in columns.values() for s in stack]
        single = all(len(stack) == 1 and stack[0].kind in ("conv", "pool") for stack in columns.values())
        smallest = max(max(geo.effective_size(s.f[a], s.dilation[a]) for a in (0, 1)) for s in specs) if single else 1
        sizes = table_sizes(smallest)
    rows = []
    for n in sizes:
        cells = {label: _fits(stack, n, channels) for label, stack in columns.items()}
        if any(c is not None for c in cells.values()):
            rows.append(SizeRow(n, cells))
    return rows


def _fits(stack: Sequence[LayerSpec], n: int, channels: int) -> Optional[StackResult]:
    res = evaluate_stack(stack, Dims(1, n, n, channels, rank=2))
    return res if res.error is None else None


#: The largest input side the table looks for when none of its sizes fits: shape's numbers have up to
#: 1,000 digits.
_SEARCH_LIMIT = 10**1000


def smallest_fitting(columns: Dict[str, Sequence[LayerSpec]], channels: int = 1) -> Optional[int]:
    """The smallest square input side some column fits, or None up to ``10**1000``.

    A layer that fits an input fits every larger one, so this is a doubling search and then a
    bisection: a few thousand evaluations at most for 1,000-digit windows, never a walk over sizes.
    """
    def fits(n: int) -> bool:
        return any(_fits(stack, n, channels) is not None for stack in columns.values())

    hi = 1
    while not fits(hi):
        if hi > _SEARCH_LIMIT:
            return None
        hi *= 2
    lo = hi // 2  # does not fit (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class SizeTable:
    """The input-size table: ``columns`` (label -> the stack it evaluates) and its rows."""

    columns: Dict[str, Sequence[LayerSpec]]
    rows: List[SizeRow]

    @property
    def single(self) -> bool:
        """Whether every column is one layer (then cells show pads, the formulas have numbers)."""
        return all(len(stack) == 1 for stack in self.columns.values())

    def formulas(self) -> List[str]:
        """The formula lines above the table, with this layer's numbers (one layer only)."""
        specs = [s for stack in self.columns.values() for s in stack]
        lines = [TCONV_FORMULA if all(s.kind == "tconv" for s in specs) else FORMULA]
        for label, stack in self.columns.items():
            if len(stack) != 1:
                lines.append(f"{label}: " + " | ".join(f"{s.kind} {s.summary}" for s in stack))
                continue
            spec = stack[0]
            if spec.kind == "tconv":
                for a, axis in ((0, "height"), (1, "width")) if spec.f[0] != spec.f[1] or spec.stride[0] != \
                        spec.stride[1] or spec.output_padding[0] != spec.output_padding[1] else ((0, ""),):
                    total = spec.pad[2 * a] + spec.pad[2 * a + 1]
                    where = f" ({axis})" if axis else ""
                    lines.append(f"{label}{where}: n_out = (n_in - 1)*{spec.stride[a]} - {total} + "
                                 f"{spec.dilation[a]}*({spec.f[a]}-1) + {spec.output_padding[a]} + 1")
                continue
            for a, axis in ((0, "height"), (1, "width")) if (spec.f[0], spec.stride[0], spec.dilation[0]) != \
                    (spec.f[1], spec.stride[1], spec.dilation[1]) else ((0, ""),):
                eff, s = geo.effective_size(spec.f[a], spec.dilation[a]), spec.stride[a]
                where = f" ({axis})" if axis else ""
                if label == "same":
                    lines.append(f"same{where}: n_out = ceil(n_in / {s}); pad total = max((n_out-1)*{s} + {eff} "
                                 "- n_in, 0), before = total // 2, the extra pixel after (bottom/right)")
                else:
                    pads = spec.pad if spec.pad != "same" else (0, 0, 0, 0)
                    total = pads[2 * a] + pads[2 * a + 1]
                    rnd = "ceil" if spec.ceil_mode else "floor"
                    plus = f" + {total}" if total else ""
                    drop = "; a last window starting in the padding is dropped" if spec.ceil_mode and total else ""
                    lines.append(f"{label}{where}: n_out = {rnd}((n_in{plus} - {eff}) / {s}) + 1{drop}")
        return lines

    def to_dict(self) -> dict:
        """``{"formula", "columns", "layers", "rows"}``; a row is ``{"input": n, <column>: cell or null}``."""
        single = self.single

        def cell(res: Optional[StackResult]):
            if res is None:
                return None
            c = {"output": [res.output.c] if res.output.flat else [res.output.h, res.output.w]}
            if single:
                c.update(pads=list(res.layers[0].pads), unread=list(res.layers[0].unread))
            else:
                c["unread_layers"] = [layer.index for layer in res.layers if sum(layer.unread)]
            return c

        return {
            "formula": self.formulas(),
            "columns": list(self.columns),
            "layers": [s.text or None for s in next(iter(self.columns.values()))] if not single else None,
            "rows": [dict({"input": row.n_in}, **{label: cell(row.cells[label]) for label in self.columns})
                     for row in self.rows],
        }


def _input_channels(specs: Sequence[LayerSpec]) -> int:
    """The channels the table's inputs get: what the first layer that names them was built for (a printed
    model's Conv2d or BatchNorm2d), else the first layer's groups (1 for most)."""
    for spec in specs:
        if spec.in_channels is not None and spec.kind in ("conv", "tconv", "bn"):
            return spec.in_channels
        if spec.kind in ("conv", "tconv", "fc", "flatten", "gap"):  # these change or read the channels first
            break
    return specs[0].groups


def size_table_report(specs: Sequence[LayerSpec]) -> SizeTable:
    """The table ``cnncli shape`` prints without an input size.

    One layer gets a column for its own padding (unless it is ``valid`` or
    ``same``), then ``valid`` and ``same``; several layers one ``stack`` column.

    Raises
    ------
    HyperparameterError
        The layers fit none of the table's input sizes.
    """
    if len(specs) == 1 and not specs[0].windowed:
        kind = specs[0].kind
        raise HyperparameterError.worded(f"a {kind} layer has no window: the size table needs a conv, pool or "
                                         "tconv layer (or a stack); give --input DIMS for this one",
                                         f"a {kind} layer has no window for the size table; give --input DIMS")
    if len(specs) == 1 and specs[0].kind == "tconv":  # no 'same' for a transposed convolution
        spec = specs[0]
        columns = {"valid" if spec.pad_label == "valid" else f"pad {spec.pad_label}": [spec]}
    elif len(specs) == 1:
        spec = specs[0]
        columns: Dict[str, Sequence[LayerSpec]] = {}
        if spec.pad_label not in ("valid", "same"):
            columns[f"pad {spec.pad_label}"] = [spec]
        for word in ("valid", "same"):
            columns[word] = [replace(spec, pad=geo.normalize_pad(word), text="")]
    else:
        columns = {"stack": list(specs)}
    channels = _input_channels(specs)
    rows = size_table(columns, channels=channels)
    if not rows:
        # Windows larger than every size of the table (`--f 600`): the table starts where they fit.
        # Each column's first eight sizes, twice and four times its first, and the common sizes above.
        firsts = [n for n in (smallest_fitting({label: stack}, channels) for label, stack in columns.items())
                  if n is not None]
        if not firsts:
            raise HyperparameterError("the layers fit no input size up to 10**1000; check f, dilation and the pads")
        sizes = {n for n in COMMON_SIZES if n > min(firsts)}
        for first in firsts:
            sizes |= {first + k for k in range(8)} | {2 * first, 4 * first}
        rows = size_table(columns, channels, sorted(sizes))
    return SizeTable(columns, rows)
