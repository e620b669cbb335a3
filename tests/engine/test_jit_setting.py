"""CNNCLI_JIT, and the numpy path where numba does not import (no numba needed to run these)."""

import os
import subprocess
import sys

import pytest

from cnncli.engine import _jit
from cnncli.errors import SettingError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A process in which `import numba` fails (a None in sys.modules makes it raise ImportError), as on an
# install without the [fast] extra, runs a max-pool backward and prints its gradient's bytes' digest.
SCRIPT = """
import sys, hashlib
sys.modules["numba"] = None
import numpy as np
from cnncli.engine import PoolParams, pool2d_backward, _jit
_jit.AUTO_AFTER_ELEMENTS = 0  # auto would load the kernel now, if numba imported
A = np.random.default_rng(2).standard_normal((2, 9, 9, 8))
dA = np.random.default_rng(3).standard_normal((2, 4, 4, 8))
out = pool2d_backward(dA, A, PoolParams(f=3, stride=2, mode="max"))
print(hashlib.sha256(out.tobytes()).hexdigest())
"""


def _run(mode):
    env = dict(os.environ, PYTHONPATH=ROOT, CNNCLI_JIT=mode)
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def test_without_numba_auto_takes_the_numpy_path_silently_and_on_is_refused():
    auto, off = _run("auto"), _run("off")
    assert (auto.returncode, auto.stderr) == (0, "") and auto.stdout == off.stdout
    on = _run("on")
    assert on.returncode == 1
    assert on.stderr.strip().splitlines()[-1] == (
        "cnncli.errors.SettingError: CNNCLI_JIT=on needs numba: pip install 'cnncli[fast]'")


@pytest.mark.parametrize("value", ["maybe", "", "1", "yes"])
def test_a_bad_setting_is_refused_naming_it_and_the_valid_words(monkeypatch, value):
    monkeypatch.setenv("CNNCLI_JIT", value)
    with pytest.raises(SettingError) as err:
        _jit.jit_mode()
    assert str(err.value) == f"CNNCLI_JIT must be auto, on or off, got {value!r}"


