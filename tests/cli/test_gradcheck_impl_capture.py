"""--impl captures what the user's code writes on stdout at the file-descriptor level:
os.write(1, ...), child processes, sys.stdout.buffer and sys.__stdout__ never reach our stdout."""

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cnncli.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

WRITERS = '''import os
import sys

import numpy as np

os.write(1, b"loaded\\n")


def zero_pad(X, pad):
    os.write(1, b"raw fd1 %d\\n" % pad)
    sys.stdout.buffer.write(b"buffer %d\\n" % pad)
    os.system("echo child")
    sys.__stdout__.write("dunder\\n")
    print("print", pad)
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
'''


def cnncli(*args):
    return subprocess.run([sys.executable, "-m", "cnncli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)


def test_fd_level_writes_do_not_corrupt_the_json(tmp_path):
    path = tmp_path / "writers.py"
    path.write_text(WRITERS)
    r = cnncli("gradcheck", "--impl", str(path), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the document only
    assert doc["passed"] is True and [f["name"] for f in doc["functions"]] == ["zero_pad"]
    assert doc["printed_lines"] == 1 + 3 * 5  # the import, then 5 lines per call (pads 0, 1, 2)
    assert r.stderr == ""


def test_fd_level_writes_go_to_stderr_prefixed_in_order(tmp_path):
    path = tmp_path / "writers.py"
    path.write_text(WRITERS)
    r = cnncli("gradcheck", "--impl", str(path))
    assert r.returncode == 0, r.stderr
    expected = ["loaded"]
    for pad in (0, 1, 2):
        expected += [f"raw fd1 {pad}", f"buffer {pad}", "child", "dunder", f"print {pad}"]
    assert r.stderr.splitlines() == [f"[your code] {line}" for line in expected]
    assert "[your code]" not in r.stdout and "raw fd1" not in r.stdout and "child" not in r.stdout
    assert "gradient check: PASS" in r.stdout


def test_writing_to_sys_stdout_buffer_is_not_an_error(tmp_path):
    path = tmp_path / "bufw.py"
    path.write_text("import sys\n\nimport numpy as np\n\n\ndef distribute_value(dz, shape):\n"
                    "    sys.stdout.buffer.write(b'dz ' + str(dz).encode() + b'\\n')\n"
                    "    sys.stdout.buffer.flush()\n"
                    "    return np.full(shape, dz / (shape[0] * shape[1]))\n")
    r = runner.invoke(app, ["gradcheck", "--impl", str(path), "--json"])
    assert r.exit_code == 0, r.stdout
    doc = json.loads(r.stdout)
    (fn,) = doc["functions"]
    assert fn["passed"] and fn["errors"] == [] and doc["printed_lines"] == 3
