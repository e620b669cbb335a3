"""cnncli: a CNN layer calculator and gradient checker.

``import cnncli`` gives the classic "convolution step by step" functions with
their exact signatures, backed by the fast engine in :mod:`cnncli.engine`::

    from cnncli import *
    Z, cache = conv_forward(A_prev, W, b, {"stride": 2, "pad": 1})
"""

from . import api as _api
from .api import (
    conv_backward,
    conv_forward,
    conv_single_step,
    create_mask_from_window,
    distribute_value,
    pool_backward,
    pool_forward,
    zero_pad,
)

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("cnncli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = list(_api.__all__)  # exactly the classic exercise's functions
