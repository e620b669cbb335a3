"""Gradient checking: numerical (central differences) vs analytical gradients.

A library that returns result objects and knows nothing of terminals; the CLI
renders them (``cnncli/render/gradcheck.py``).

- :func:`gradcheck_conv`, :func:`gradcheck_pool`: check the engine on one layer call;
- :func:`run_battery`: the built-in battery of configurations (``cnncli gradcheck``);
- :func:`check_impl`: check a user's own classic functions (``--impl FILE.py``).
"""

from .core import METHODS, CheckResult, GradientResult, Offender, check_problem
from .layers import gradcheck_conv, gradcheck_pool

__all__ = [
    "METHODS",
    "CheckResult",
    "GradientResult",
    "Offender",
    "check_problem",
    "gradcheck_conv",
    "gradcheck_pool",
]
