"""Placeholders for modules the user's code imports but that are not installed (run in the ``--impl`` child).

A notebook imports its course's test harness (``public_tests``, ``test_utils``) and
plotting (``matplotlib``); none of that is needed to check its functions. The import
succeeds with a placeholder, the child notes the module's name, and a function that
really uses it fails when called, saying which module it needs. Only imports made by
the user's own code are served: a library's optional import still fails as the
library expects. Standard library only (the child imports no cnncli).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class MissingName:
    """A name imported from a module that is not installed: calling it says so."""

    def __init__(self, name: str, root: str):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_root", root)

    def _fail(self, *args, **kwargs):
        raise ModuleNotFoundError(f"{self._name} needs the module {self._root!r}, which is not installed here "
                                  "(cnncli let its import pass so that the rest could be checked)", name=self._root)

    __call__ = __getitem__ = __iter__ = __enter__ = __float__ = __array__ = _fail

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingName(f"{self._name}.{attr}", self._root)

    def __repr__(self) -> str:
        return f"<{self._name}: {self._root} is not installed>"


class MissingModule(types.ModuleType):
    def __init__(self, name: str):
        super().__init__(name)
        self.__all__, self.__path__ = [], []  # `from m import *` imports nothing; submodules resolve here too

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingName(f"{self.__name__}.{attr}", self.__name__.split(".")[0])


class MissingFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: a module no finder knows, imported by the user's own code, becomes a placeholder.

    ``files`` holds the filenames of the user's code (the importing frame must be one of
    them); ``missing`` collects the top-level names of the modules replaced.
    """

    def __init__(self, files: dict, missing: list):
        self.files, self.missing = files, missing

    def find_spec(self, fullname, path=None, target=None):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back
        if frame is None or frame.f_code.co_filename not in self.files:
            return None  # a library's optional import: let it fail as it expects
        root = fullname.split(".")[0]
        if root not in self.missing:
            self.missing.append(root)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return MissingModule(spec.name)

    def exec_module(self, module):
        pass
