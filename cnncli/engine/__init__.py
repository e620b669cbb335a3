"""The layer engine: pure functions over NHWC arrays plus frozen hyperparameter records.

Nothing here reads files or prints; it imports nothing of cnncli but its
geometry, its errors and, for the optional compiled kernel's switch (``CNNCLI_JIT``),
the settings reader.
"""

# NOTE: resolved on first use (PEP 562): `cnncli shape` needs only .geometry, and importing
# a submodule runs this file first; the fast paths (numpy) load when a name below is used.
_HOME = {
    "DEFAULT_WORKSPACE_BYTES": "._common", "run_parallel": "._common",
    "ConvGrads": ".conv", "conv2d": ".conv", "conv2d_backward": ".conv",
    "WindowGeometry": ".geometry", "pool_geometry": ".geometry", "window_geometry": ".geometry",
    "ConvParams": ".params", "PoolParams": ".params",
    "pool2d": ".pool", "pool2d_backward": ".pool", "jit_mode": "._jit",
}


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        value = getattr(importlib.import_module(_HOME[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConvGrads",
    "ConvParams",
    "DEFAULT_WORKSPACE_BYTES",
    "PoolParams",
    "WindowGeometry",
    "conv2d",
    "conv2d_backward",
    "jit_mode",
    "pool2d",
    "pool2d_backward",
    "pool_geometry",
    "run_parallel",
    "window_geometry",
]
