"""The layer calculator behind ``cnncli shape``: specs, stacks, design arithmetic, the ``--target`` solver.

Knows nothing of terminals. Modules:

- :mod:`.spec` -- the text forms: input dims and layer specs;
- :mod:`.stack` -- a stack of layers evaluated on an input, and the input-size table;
- :mod:`.design` -- receptive field, input coverage, parameters and MACs, pad solving;
- :mod:`.solve` -- which stride and padding reach a wanted output size.
"""
