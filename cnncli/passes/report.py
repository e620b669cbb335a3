"""The report of one ``forward`` or ``backward`` pass, and its JSON document (built here only).

The CLI renders a :class:`PassReport` as a table or prints ``report.to_dict()`` as JSON;
both views read the same record. Knows nothing of terminals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from .stream import Result


@dataclass(frozen=True)
class PassReport:
    """What a pass ran on and what it produced.

    Attributes
    ----------
    command : {"forward", "backward"}
    layer : {"conv", "pool"}
    hyperparameters : dict
        As :meth:`cnncli.passes.call.LayerCall.hyperparameters` (plain Python values).
    pad_spec : str or None
        ``"same"`` when the padding was asked as "same".
    output_size : dict
        Per axis ``"height"``, ``"width"``: ``n_in``, ``f``, ``stride``, ``dilation``, ``pad_before``,
        ``pad_after``, ``n_out``.
    dtype : str
        The compute dtype.
    inputs : dict
        Per input name: ``source``, ``shape`` (as stored), ``dtype``, ``nan_count``, ``inf_count``.
    outputs : dict of str to Result
        Per result (``Z``/``A``, or ``dA_prev``, ``dW``, ``db``): shape in the user's layout, dtype, statistics.
    output_file : str or None
        The ``-o`` value (``"-"`` for stdout), None when nothing is written.
    written : tuple of str
        The results that went to ``output_file`` (a ``.npy`` holds only the main one).
    notes : tuple of str
        One-line notes for the user (dtype conversions, non-finite values, unused case attributes).
    seconds : float or None
        Wall-clock time of the run.
    """

    command: str
    layer: str
    hyperparameters: dict
    pad_spec: Optional[str]
    output_size: dict
    dtype: str
    inputs: dict
    outputs: Dict[str, Result]
    output_file: Optional[str] = None
    written: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()
    seconds: Optional[float] = field(default=None, compare=False)

    @classmethod
    def of(cls, command: str, call, results: Dict[str, Result], *, writer=None,
           seconds: Optional[float] = None) -> "PassReport":
        """The report of a pass of ``call`` (a LayerCall) that gave ``results``.

        Parameters
        ----------
        command : {"forward", "backward"}
        call : LayerCall
            After the pass (which recorded its input counts and notes in it).
        results : dict of str to Result
            As returned by :func:`cnncli.passes.stream.forward` / :func:`~cnncli.passes.stream.backward`.
        writer : ResultWriter, optional
            Where the results went; its ``path`` and ``wants(name)`` give ``output_file`` and ``written``.
        seconds : float, optional

        Returns
        -------
        PassReport

        Raises
        ------
        Nothing: every value was validated when ``call`` was resolved.
        """
        return cls(command=command, layer=call.kind, hyperparameters=call.hyperparameters(),
                   pad_spec=call.pad_spec, output_size=output_size(call.geometry), dtype=str(call.dtype),
                   inputs={name: dict(info) for name, info in call.inputs.items()}, outputs=dict(results),
                   output_file=writer.path if writer is not None else None,
                   written=tuple(n for n in results if writer is not None and writer.wants(n)),
                   notes=tuple(call.notes), seconds=seconds)

    def to_dict(self) -> dict:
        """The JSON document of ``--json`` (NaN statistics are left to the JSON encoder to make null).

        Returns
        -------
        dict
            ``{"command", "layer", "hyperparameters", "pad_spec", "output_size", "dtype", "inputs",
            "outputs", "output_file", "written", "notes", "seconds"}``; each output is
            ``{"shape", "dtype", "min", "max", "mean", "std", "nan_count", "inf_count"}``.

        Raises
        ------
        Nothing.
        """
        return {
            "command": self.command,
            "layer": self.layer,
            "hyperparameters": self.hyperparameters,
            "pad_spec": self.pad_spec,
            "output_size": self.output_size,
            "dtype": self.dtype,
            "inputs": self.inputs,
            "outputs": {name: r.as_dict() for name, r in self.outputs.items()},
            "output_file": self.output_file,
            "written": list(self.written),
            "notes": list(self.notes),
            "seconds": None if self.seconds is None else round(self.seconds, 4),
        }


def output_size(geometry) -> dict:
    """How each output axis came about, from a resolved :class:`~cnncli.engine.geometry.WindowGeometry`.

    Returns
    -------
    dict
        ``{"height": {...}, "width": {...}}``, each with ``n_in``, ``f``, ``stride``, ``dilation``,
        ``pad_before``, ``pad_after`` and ``n_out`` as Python ints.

    Raises
    ------
    Nothing.
    """
    g = geometry
    return {name: {"n_in": g.in_hw[i], "f": g.kernel[i], "stride": g.stride[i], "dilation": g.dilation[i],
                   "pad_before": g.pads[2 * i], "pad_after": g.pads[2 * i + 1], "n_out": g.out_hw[i]}
            for i, name in enumerate(("height", "width"))}
