"""The layer calculator behind ``cnncli shape``: specs, stacks, design arithmetic, the ``--target`` solver.

Knows nothing of terminals. Modules:

- :mod:`.spec` -- the text forms: input dims (NHWC or NCHW) and layer specs of every kind;
- :mod:`.layers` -- one layer of each kind applied to an input (conv, pool, tconv, bn, gap, flatten, fc, no-ops);
- :mod:`.stack` -- a stack of layers evaluated on an input;
- :mod:`.torchprint` -- the layers of a model from the text of PyTorch's ``print(model)``;
- :mod:`.table` -- the input-size table (no input given);
- :mod:`.design` -- receptive field, input coverage, parameters and MACs, pad solving;
- :mod:`.solve` -- which stride and padding reach a wanted output size.

Results are report objects (``StackResult``, ``SizeTable``, ``TargetResult``)
whose ``to_dict()`` is the ``--json`` document; the CLI only renders them.
"""
