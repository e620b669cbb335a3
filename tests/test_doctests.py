"""The numpydoc examples of the public modules run as tests (on the installed package)."""

import doctest
import importlib
import pkgutil

import pytest

import cnncli

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(cnncli.__path__, "cnncli.")
    if not name.startswith("cnncli.cli") and name != "cnncli.__main__"
)


#: Modules that need an optional extra's package to import at all: (module, package).
OPTIONAL = {"cnncli.engine._jit_kernels": "numba"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
                             extraglobs={"np": importlib.import_module("numpy")})
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
