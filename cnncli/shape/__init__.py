"""The layer calculator behind ``cnncli shape``: specs, stacks, design arithmetic, the ``--target`` solver.

Knows nothing of terminals. Modules:

- :mod:`.spec` -- the text forms: input dims and layer specs;
- :mod:`.stack` -- a stack of layers evaluated on an input;
- :mod:`.table` -- the input-size table (no input given);
- :mod:`.design` -- receptive field, input coverage, parameters and MACs, pad solving;
- :mod:`.solve` -- which stride and padding reach a wanted output size.

Results are report objects (``StackResult``, ``SizeTable``, ``TargetResult``)
whose ``to_dict()`` is the ``--json`` document; the CLI only renders them.
"""
