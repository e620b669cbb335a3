"""One layer call: resolved from a source and options, then run forward or backward in batch chunks.

Knows nothing of terminals. Modules:

- :mod:`.call` -- a layer call resolved from a case file or arrays and the options;
- :mod:`.settings` -- what of a case file is in force, each value checked on its own;
- :mod:`.stream` -- forward and backward passes over it, chunk by chunk, with statistics.
"""
