"""Shared test configuration: hypothesis profiles sized for a 2-core CI machine."""

import importlib.util
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# tests/impls/make_bugs.py, loaded once for every test file (its bug files and cached --impl reports shared):
# --import-mode=importlib puts no test folder on sys.path, so test files take it from sys.modules
_spec = importlib.util.spec_from_file_location("cnncli_tests_make_bugs", Path(__file__).parent / "impls" / "make_bugs.py")
sys.modules["cnncli_tests_make_bugs"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["cnncli_tests_make_bugs"])

# NOTE: the suite's outputs are its own, whatever terminal runs it: a COLUMNS=80 exported by the user wrapped
# notes the tests read whole (7 failed). Tests that want a width give it (env={"COLUMNS": "80"}).
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The CLI fuzz test (tests/cli/test_fuzz.py) takes its own sizes: 200 examples in CI (well under a
# minute), 3000 with HYPOTHESIS_PROFILE=thorough; CNNCLI_FUZZ_EXAMPLES overrides both.
_FUZZ = {"default": 200, "thorough": 3000}.get(os.environ.get("HYPOTHESIS_PROFILE", "default"), 200)
settings.register_profile("fuzz", parent=settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "default")),
                          max_examples=int(os.environ.get("CNNCLI_FUZZ_EXAMPLES", _FUZZ)),
                          suppress_health_check=list(HealthCheck))
