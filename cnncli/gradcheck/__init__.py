"""Gradient checking: numerical (central differences) vs analytical gradients.

A library that returns result objects and knows nothing of terminals; the CLI
renders them (``cnncli/render/gradcheck.py``).

- :func:`gradcheck_conv`, :func:`gradcheck_pool`: check the engine on one layer call;
- :func:`gradcheck_streamed`: the same on a data set read chunk by chunk (HDF5, ``.npy``);
- :func:`run_battery`: the built-in battery of configurations (``cnncli gradcheck``);
- :func:`check_impl`: check a user's own classic functions (``--impl FILE.py``).
"""

from .battery import BatteryResult, run_battery
from .core import METHODS, check_problem
from .findings import ImplResult
from .impl import check_impl
from .layers import gradcheck_conv, gradcheck_pool
from .results import CheckResult, GradientResult, Offender
from .streamed import gradcheck_streamed

__all__ = [
    "METHODS",
    "BatteryResult",
    "CheckResult",
    "GradientResult",
    "ImplResult",
    "Offender",
    "check_impl",
    "check_problem",
    "gradcheck_conv",
    "gradcheck_pool",
    "gradcheck_streamed",
    "run_battery",
]
