"""The layer engine: pure functions over NHWC arrays plus frozen hyperparameter records.

Nothing here reads files or prints; it imports nothing of cnncli but its
geometry and errors.
"""

from ._common import DEFAULT_WORKSPACE_BYTES
from .conv import ConvGrads, conv2d, conv2d_backward
from .geometry import WindowGeometry, pool_geometry, window_geometry
from .params import ConvParams, PoolParams
from .pool import pool2d, pool2d_backward

__all__ = [
    "ConvGrads",
    "ConvParams",
    "DEFAULT_WORKSPACE_BYTES",
    "PoolParams",
    "WindowGeometry",
    "conv2d",
    "conv2d_backward",
    "pool2d",
    "pool2d_backward",
    "pool_geometry",
    "window_geometry",
]
