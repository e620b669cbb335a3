"""A convolution backward made wrong at one input value, for the tests that must see the checker find it."""

import numpy as np


def backward_off_at(real, value: float, by: float, calls=None):
    """``real`` (the engine's conv2d_backward) with ``dA_prev`` off by ``by`` wherever the input equals ``value``,
    in whichever call (a tile) holds that element; the rounding estimate's calls (filters of ones) left alone.
    ``calls``, a list, gets each call's input width."""
    def broken(dZ, X, W_, p, **options):
        g = real(dZ, X, W_, p, **options)
        if calls is not None:
            calls.append(X.shape[2])
        if g.dA_prev is None or np.all(W_ == 1.0):  # the rounding estimate's stand-in filters
            return g
        dA = g.dA_prev.copy()
        dA[X == value] += by
        return type(g)(dA, g.dW, g.db)
    return broken
