"""cnncli: a CNN layer calculator and gradient checker.

``import cnncli`` gives the classic "convolution step by step" functions with
their exact signatures, backed by the fast engine in :mod:`cnncli.engine`::

    from cnncli import *
    Z, cache = conv_forward(A_prev, W, b, {"stride": 2, "pad": 1})
"""

# NOTE: the names are resolved on first use (PEP 562), not imported here: every command
# line tool starts by importing this package, and `cnncli --version` or `cnncli shape`
# must not pay for numpy and the engine (issue 11: start-up within 1.5x `import numpy`).
__all__ = [  # exactly the classic exercise's functions; cnncli.api takes its __all__ from here
    "conv_backward",
    "conv_forward",
    "conv_single_step",
    "create_mask_from_window",
    "distribute_value",
    "pool_backward",
    "pool_forward",
    "zero_pad",
]


def _read_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8 is not supported anyway
        return "0.0.0+unknown"
    try:
        return version("cnncli")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    if name == "__version__":
        global __version__
        __version__ = _read_version()
        return __version__
    raise AttributeError(f"module 'cnncli' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__ + ["__version__"])
