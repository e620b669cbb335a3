"""A corpus of bad invocations whose own values are short: each is refused in one line of at most 80 columns
(the "cnncli: error: " prefix included, counted by errors.columns), naming the bad value, exit 2, no traceback.

The files have short names in the test's own folder, as typed at a prompt; tests/cli/test_error_width.py and
test_shape_error_width.py hold the exact wordings of earlier fits."""

from __future__ import annotations

import io
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.cli.app import state as app_state
from cnncli.errors import ERROR_WIDTH, columns
from tests.io.test_bombs import write_bomb

runner = CliRunner()

TORCH_LINE = "  (0): Conv2d(3, 6, kernel_size=(5, 5), stride=(1, 1))"
# one of the longer lines print(model) writes (torchvision's AlexNet's first layer, bias off)
TORCH_LONG = "  (features.0): Conv2d(3, 64, kernel_size=(11, 11), stride=(4, 4), padding=(2, 2), bias=False)"
TORCH_LINES = {  # one printed module each, refused as a line or as a layer
    "T.txt": "  (0): ConvTranspose2d(3, 6, kernel_size=(3, 3), stride=(1, 1), output_padding=(2, 2))",
    "U.txt": "  (0): Frob(3)",
    "P.txt": "  (0): MaxPool2d(kernel_size=2, stride=2, padding=2)",
    "F.txt": "  (0): Linear(in_features=400, out_features=120, bias=True)",
    "TT.txt": "  (0): ConvTranspose2d(8, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1))",
    "LL.txt": "  (0): Linear(in_features=400, out_features=120, bias=True)",
    "BN.txt": "  (0): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)",
    "MP.txt": "  (0): MaxPool2d(kernel_size=64, stride=2, padding=0, dilation=1, ceil_mode=False)",
    "AP.txt": "  (0): AvgPool2d(kernel_size=64, stride=2, padding=0)",
}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setattr(app_state, "debug", False)


@pytest.fixture
def here(tmp_path, monkeypatch):
    import h5py

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save("X.npy", rng.standard_normal((1, 6, 6, 2)))
    np.save("W.npy", rng.standard_normal((3, 3, 2, 8)))
    np.save("W3.npy", rng.standard_normal((3, 3, 3)))
    np.save("S.npy", np.zeros((1, 4, 4, 2), dtype=[("a", "f4"), ("b", "i4")]))
    np.save("C.npy", np.zeros((1, 4, 4, 2), dtype=complex))
    np.save("5.npy", np.zeros((1, 2, 3, 4, 5)))
    np.save("V.npy", np.zeros(7))
    np.save("E.npy", np.zeros((1, 0, 4, 2)))
    np.save("g.npy", np.zeros((1, 5, 5, 8)))
    np.save("M0.npy", np.zeros((0, 4, 4, 2)))
    header = bytearray((tmp_path / "X.npy").read_bytes())
    header[6] = 9  # a format version numpy has not written
    (tmp_path / "v9.npy").write_bytes(bytes(header))
    np.savez("Z.npz", A=np.zeros((1, 4, 4, 2)), B=np.zeros(3))
    (tmp_path / "T.npy").write_bytes(b"not an array at all")
    (tmp_path / "taken.npy").write_bytes(b"keep")
    (tmp_path / "nb.ipynb").write_text('{"cells": 3}')  # JSON, but no notebook
    (tmp_path / "nb4.ipynb").write_text('{"nbformat": 4, "cells": null}')  # nbformat 4, but no cells
    (tmp_path / "L.txt").write_text(f"Sequential(\n{TORCH_LINE}\n)\n")
    (tmp_path / "L2.txt").write_text(f"Sequential(\n{TORCH_LONG}\n)\n")
    for name, line in TORCH_LINES.items():
        (tmp_path / name).write_text(f"Sequential(\n{line}\n)\n")
    (tmp_path / "d.bin").write_bytes(np.zeros(32).tobytes())
    with h5py.File("h.h5", "w") as h5:
        h5["A_prev"] = np.zeros((1, 4, 4, 2))
    with h5py.File("e.h5", "w") as h5:  # external storage in a file of its own folder
        h5.create_dataset("A_prev", shape=(1, 4, 4, 2), dtype="f8", external=[("d.bin", 0, 256)])
    with h5py.File("case.h5", "w") as h5:  # the README's example: nothing of /etc/passwd is opened
        h5.create_dataset("A_prev", shape=(1, 2, 2, 1), dtype="u1", external=[("/etc/passwd", 0, 4)])
    with h5py.File("em.h5", "w") as h5:
        h5["A_prev"] = h5py.Empty("f8")
    with h5py.File("k.h5", "w") as h5:
        h5["A_prev"] = h5py.ExternalLink("h.h5", "/A_prev")
    (tmp_path / "examples").mkdir()  # the README's own files, under the names it gives them
    for name in ("pool_case.npz", "exercise_conv.h5"):
        shutil.copy(EXAMPLES / name, tmp_path / "examples" / name)
    (tmp_path / "sig.py").write_text("def zero_pad(X, pad):\n    return X\n\n\ndef distribute_value(dz, shape):\n"
                                     "    return dz\n")
    (tmp_path / "slowload.py").write_text("import time\ntime.sleep(5)\n")
    (tmp_path / "bad.ipynb").write_text('{"cells": ]')  # not JSON at column 11
    write_bomb(tmp_path / "bomb.npz", (1, 4096, 4096, 1), data_bytes=1000)
    with warnings.catch_warnings(), zipfile.ZipFile(tmp_path / "D.npz", "w") as z:  # one name, two members
        warnings.simplefilter("ignore")
        for value in (0.0, 1.0):
            z.writestr("A_prev.npy", _npy_bytes(np.full((1, 4, 4, 2), value)))
    os.symlink("nowhere.npy", tmp_path / "dang.npy")
    return tmp_path


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# (argv, the words that name the bad value, CNNCLI_* settings)
BAD = [
    # shape: options and layer specs
    (["shape", "--layer", "tconv", "--pad", "same", "--f", "3"], "p=same", {}),
    (["shape", "tconv:f=3,p=same", "--input", "8"], "p=same", {}),
    (["shape", "pool:f=3,mode=foo", "--input", "8x8x3"], "'foo'", {}),
    (["shape", "conv:f=3,d=5", "--input", "8x8x3"], "conv:f=3,d=5", {}),
    (["shape", "conv:f=9", "--input", "8x8x3"], "conv:f=9", {}),
    (["shape", "conv:f=3", "conv:f=3,d=4", "--input", "8x8x3"], "conv:f=3,d=4", {}),
    (["shape", "flatten", "fc:c=10", "conv:f=1", "--input", "8x8x3"], "conv:f=1", {}),
    (["shape", "flatten", "fc:c=10", "gap", "--input", "8x8x3"], "gap", {}),
    (["shape", "conv:f=3,c=4,g=2", "--input", "8x8x3"], "conv:f=3,c=4,g=2", {}),
    (["shape", "pool:f=2,p=2", "--input", "8x8x3"], "pool:f=2,p=2", {}),
    (["shape", "tconv:f=3,p=5", "--input", "8x8x3"], "tconv:f=3,p=5", {}),
    (["shape", "conv:f=3,p=foo", "--input", "8"], "'foo'", {}),
    (["shape", "conv:f=3,f=2", "--input", "8"], "'f' given twice", {}),
    (["shape", "conv:f=", "--input", "8"], "'f' has no value", {}),
    (["shape", "conv:f=3,q=1", "--input", "8"], "unknown key 'q'", {}),
    (["shape", "fc", "--input", "8"], "fc:c=10", {}),
    (["shape", "pool", "--input", "8"], "f=3", {}),
    (["shape", "relu:f=3", "--input", "8"], "relu", {}),
    (["shape", "conv:f=3,ceil=1", "--input", "8"], "ceil", {}),
    (["shape", "conv:f=3,s=0", "--input", "8"], "0", {}),
    (["shape", "conv:f=\uff13", "--input", "8"], "0-9", {}),
    (["shape", "conv:f=3,mode=max", "--input", "8"], "mode", {}),
    (["shape", "--input", "0x3", "--f", "3"], "0x3", {}),
    (["shape", "--input", "8x8x8x8x8", "--f", "3"], "'8x8x8x8x8'", {}),
    (["shape", "fc:c=10"], "fc", {}),
    (["shape", "--input", "8", "conv:f=3", "--f", "3"], "--f", {}),
    (["shape", "--input", "8", "conv:f=3", "--from", "L.txt"], "--from", {}),
    (["shape", "--input", "8", "--f", "3", "--stride", "0"], "stride", {}),
    (["shape", "--input", "8", "--f", "3", "--target", "5", "--pad", "1"], "--pad 1", {}),
    (["shape", "--input", "8", "--like", "X.npy", "--f", "3"], "--input", {}),
    (["shape", "--layout", "nchw", "--f", "3"], "--layout", {}),
    (["shape", "--layout", "foo", "--input", "8", "--f", "3"], "'foo'", {}),
    (["shape", "--layer", "dense", "--f", "3"], "'dense'", {}),
    (["shape", "--from", "nowhere.txt", "--input", "8"], "nowhere.txt", {}),
    (["shape", "--from", "L.txt", "--input", "1x4x32x32", "--layout", "nchw"], "line 2", {}),
    (["shape", "--from", "L2.txt", "--input", "1x4x224x224", "--layout", "nchw"], "line 2", {}),
    (["shape", "--from", "L.txt", "--input", "1x3x4x4", "--layout", "nchw"], "line 2", {}),
    (["shape", "--from", "L.txt", "--input", "32"], "give C in --input", {}),
    (["shape", "--from", "T.txt", "--input", "8x8x3"], "op=2", {}),
    (["shape", "--from", "U.txt", "--input", "8x8x3"], "'Frob'", {}),
    (["shape", "--from", "P.txt", "--input", "8x8x3"], "pad 2", {}),
    (["shape", "--from", "F.txt", "--input", "1x9"], "expects 400 features", {}),
    (["shape", "--from", "TT.txt", "--input", "3x32x32", "--layout", "nchw"], "ConvTranspose2d): expects 8", {}),
    (["shape", "--from", "TT.txt", "--input", "32x32", "--layout", "nchw"], "give C in --input", {}),
    (["shape", "--from", "LL.txt", "--input", "3x32x32", "--layout", "nchw"], "expects 400", {}),
    (["shape", "--from", "BN.txt", "--input", "3x32x32", "--layout", "nchw"], "expects 8", {}),
    (["shape", "--from", "MP.txt", "--input", "3x32x32", "--layout", "nchw"], "64x64", {}),
    (["shape", "--from", "AP.txt", "--input", "3x32x32", "--layout", "nchw"], "64x64", {}),
    (["shape", "--input", "28", "conv:kernel_size=3"], "'kernel_size' (f s p d c g bias)", {}),
    (["shape", "--input", "9" * 4401, "--f", "3"], "4,401 digits", {}),
    (["shape", "pool:f=2,mode=median", "--input", "8"], "'median'", {}),
    (["shape", "conv:f=3,p=1,2,3", "--input", "8"], "'1,2,3'", {}),
    (["shape", "conv:f=3,s=2x", "--input", "8"], "'2x'", {}),
    (["shape", "conv:f=3,s=1,2,3", "--input", "8"], "'1,2,3'", {}),
    (["shape", "conv:f=3,d=2_0", "--input", "8"], "'2_0'", {}),
    (["shape", "conv:f=3,bias=maybe", "--input", "8"], "'maybe'", {}),
    (["shape", "tconv:f=3,s=2,op=5", "--input", "8"], "op=5", {}),
    (["shape", "tconv:f=4,s=2,p=same", "--input", "8"], "p=same", {}),
    (["shape", "--input", "8x8x3", "--f", "3", "--filters", "4", "--groups", "2"], "groups=2", {}),
    (["shape", "--like", "S.npy", "--f", "3"], "'S.npy'", {}),
    (["shape", "--like", "C.npy", "--f", "3"], "'C.npy'", {}),
    (["shape", "--like", "Z.npz", "--f", "3"], "'Z.npz'", {}),
    (["shape", "--like", "e.h5", "--f", "3"], "'e.h5:/A_prev'", {}),
    (["shape", "--like", "k.h5", "--f", "3"], "'k.h5:/A_prev'", {}),
    (["shape", "--like", "5.npy", "--f", "3"], "'5.npy'", {}),
    # forward / backward: the arrays
    (["forward", "S.npy", "--f", "3", "-o", "out.npy"], "'S.npy'", {}),
    (["forward", "C.npy", "--f", "3", "-o", "out.npy"], "'C.npy'", {}),
    (["forward", "5.npy", "--f", "3", "-o", "out.npy"], "'5.npy'", {}),
    (["forward", "V.npy", "--f", "3"], "'V.npy'", {}),
    (["forward", "E.npy", "--f", "3"], "'E.npy'", {}),
    (["forward", "T.npy", "--f", "3"], "'T.npy'", {}),
    (["forward", "M0.npy", "--f", "3"], "'M0.npy'", {}),
    (["forward", "v9.npy", "--f", "3"], "'v9.npy'", {}),
    (["forward", "em.h5", "--f", "3"], "'em.h5:/A_prev'", {}),
    (["shape", "--like", "em.h5", "--f", "3"], "'em.h5:/A_prev'", {}),
    (["forward", "nowhere.npy", "--f", "3"], "'nowhere.npy'", {}),
    (["forward", "X.npy:foo", "--f", "3"], "':foo'", {}),
    (["forward", "Z.npz", "--f", "3"], "'Z.npz'", {}),
    (["forward", "Z.npz:q", "--f", "3"], "'q'", {}),
    (["forward", "examples/pool_case.npz:A", "--f", "2"], "'A'; it has: A_prev, dA", {}),
    (["forward", "examples/exercise_conv.h5:/Q"], "'/Q'; it has: /A_prev", {}),
    (["forward", "bomb.npz:A_prev", "--f", "2"], "example 0 cut short", {}),
    (["forward", "D.npz", "--f", "2", "-o", "out.npy"], "'D.npz:A_prev' names 2 members", {}),
    (["shape", "--like", "D.npz", "--f", "2"], "'D.npz:A_prev' names 2 members", {}),
    (["forward", "X.npy", "--f", "2", "-o", "dang.npy", "--force"], "'nowhere.npy'", {}),
    (["forward", "h.h5:/nope", "--f", "3"], "'/nope'", {}),
    (["forward", "e.h5", "--f", "3", "-o", "out.npy"], "'d.bin'", {}),
    (["forward", "case.h5", "--f", "1", "-o", "out.npy"], "'/etc/passwd'", {}),
    (["forward", "k.h5", "--f", "3", "-o", "out.npy"], "'h.h5:/A_prev'", {}),
    (["forward", "X.npy", "--weights", "W3.npy"], "'W3.npy'", {}),
    (["forward", "X.npy", "--weights", "nowhere.npy"], "'nowhere.npy'", {}),
    (["backward", "X.npy", "--weights", "W.npy", "--grad", "g.npy"], "'g.npy'", {}),
    (["forward", "X.npy", "--weights", "W.npy"], "CNNCLI_MEMORY_BYTES", {"CNNCLI_MEMORY_BYTES": "100"}),
    # forward: the hyperparameters
    (["forward", "X.npy", "--f", "3", "--stride", "0"], "stride", {}),
    (["forward", "X.npy", "--f", "3", "--pad", "1,2,3"], "1,2,3", {}),
    (["forward", "X.npy", "--f", "3x"], "'3x'", {}),
    (["forward", "X.npy", "--f", "9"], "9x9", {}),
    (["forward", "X.npy", "--f", "3", "--mode", "foo"], "'foo'", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--groups", "3"], "groups=3", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--f", "5"], "--f 5", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--mode", "max"], "--mode", {}),
    (["forward", "X.npy", "--f", "2", "--pad", "1,2,3,4,5"], "'1,2,3,4,5'", {}),
    (["forward", "X.npy", "--f", "2", "--json", "--plain"], "--json or --plain", {}),
    (["backward", "X.npy", "--f", "2"], "dA", {}),
    (["forward", "X.npy", "--f", "3", "--dtype", "float16"], "'float16'", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--pad", "10000000000000000"], "EiB", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--pad", "10" + "0" * 24], "memory", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--pad", "1" + "0" * 200], "memory", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--pad", "1000"], "CNNCLI_MEMORY_BYTES",
     {"CNNCLI_MEMORY_BYTES": "1000000"}),
    # forward: the output
    (["forward", "X.npy", "--f", "3", "-o", ""], "-o ''", {}),
    (["forward", "X.npy", "--f", "3", "-o", "out.txt"], "'.txt'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "out.npz:foo"], "-o 'out.npz:foo'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "out"], "-o 'out'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "/proc/x.npy"], "'/proc'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "nodir/x.npy"], "'nodir'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "."], "-o '.'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "taken.npy"], "'taken.npy'", {}),
    (["forward", "X.npy", "--f", "3", "-o", "taken.npy/x.npy"], "'taken.npy'", {}),
    # gradcheck
    (["gradcheck", "--impl", "nb.ipynb"], "'nb.ipynb'", {}),
    (["gradcheck", "--impl", "nb.ipynb", "--stride", "2"], "--stride", {}),
    (["gradcheck", "--impl", "nb4.ipynb"], "'nb4.ipynb' is not a notebook: its JSON has no cells", {}),
    (["gradcheck", "--impl", "sig.py", "--only", "conv_forward"], "--only conv_forward", {}),
    (["gradcheck", "--impl", "slowload.py", "--timeout", "1"], "line 2", {}),
    (["gradcheck", "--impl", "bad.ipynb"], "'bad.ipynb'", {}),
    (["gradcheck", "X.npy", "--weights", "W.npy", "--method", "foo"], "'foo'", {}),
    # numbers of typed options in other digits, or with '_' (click's "Invalid value for '--x': " comes first)
    (["gradcheck", "--samples", "\u0969"], "'\u0969'", {}),  # Devanagari 3
    (["gradcheck", "--tol", "1e-\u0667"], "'1e-\u0667'", {}),  # Arabic-Indic 7
    (["gradcheck", "--eps", "\uff11e-5"], "'\uff11e-5'", {}),  # full-width 1: two columns
    (["gradcheck", "--samples", "1_0"], "'1_0'", {}),
    (["forward", "X.npy", "--weights", "W.npy", "--groups", "0_1"], "'0_1'", {}),
    # settings
    (["forward", "X.npy", "--f", "3"], "CNNCLI_MEMORY_BYTES", {"CNNCLI_MEMORY_BYTES": "lots"}),
]


@pytest.mark.parametrize("argv, words, env", BAD, ids=[" ".join(a)[:60] for a, _, _ in BAD])
def test_a_short_bad_input_is_refused_in_one_line_of_at_most_80_columns(here, argv, words, env):
    result = runner.invoke(app, argv, env={"COLUMNS": "80", **env})
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output  # a stack's layers that fit may be drawn on stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    line = lines[0]
    assert line.startswith("cnncli: error: ") and words in line, line
    assert columns(line) <= ERROR_WIDTH, f"{columns(line)} columns: {line}"
    assert (here / "taken.npy").read_bytes() == b"keep" and not (here / "out.npy").exists()


# the fewer words taken where the whole did not fit (columns of the whole line before -> after)
FEWER = [
    (["forward", "examples/pool_case.npz:A", "--f", "2"],  # 105 -> 79
     "'examples/pool_case.npz' has no 'A'; it has: A_prev, dA, +5 more"),
    (["forward", "examples/exercise_conv.h5:/Q"],  # 92 -> 80
     "'examples/exercise_conv.h5' has no '/Q'; it has: /A_prev, +3 more"),
    (["shape", "--from", "TT.txt", "--input", "3x32x32", "--layout", "nchw"],  # 189 -> 75
     "layer 1 (line 2: ConvTranspose2d): expects 8 channels, got 3"),
    (["shape", "--from", "TT.txt", "--input", "32x32", "--layout", "nchw"],  # 218 -> 76
     "layer 1 (line 2): expects 8 input channels: give C in --input"),
    (["shape", "--input", "28", "conv:kernel_size=3"],  # 94 -> 76
     "'conv:kernel_size=3': no key 'kernel_size' (f s p d c g bias)"),
    (["shape", "--input", "9" * 4401, "--f", "3"],  # 101 -> 76
     "--input has a number of 4,401 digits; shape reads up to 1,000"),
    (["gradcheck", "--impl", "sig.py", "--only", "conv_forward"],  # 86 -> 79
     "--only conv_forward: 'sig.py' defines zero_pad, distribute_value"),
    (["gradcheck", "--impl", "slowload.py", "--timeout", "1"],  # 93 -> 79
     "slowload.py: loading passed 1 s at line 2 (a module-level loop?)"),
    (["gradcheck", "--impl", "bad.ipynb"],  # 82 -> 75
     "--impl 'bad.ipynb' is not notebook JSON (line 1, column 11)"),
    (["forward", "bomb.npz:A_prev", "--f", "2"],  # 98 -> 79: the bytes are example 0's
     "'bomb.npz:A_prev': example 0 cut short (1000 of 134217728 bytes)"),
    (["forward", "X.npy", "--f", "2", "-o", "dang.npy", "--force"],  # 85 -> 80
     "-o 'dang.npy' links to missing 'nowhere.npy'; remove it or rename"),
]


@pytest.mark.parametrize("argv, line", FEWER, ids=[" ".join(a)[:60] for a, _ in FEWER])
def test_where_the_whole_words_do_not_fit_fewer_still_name_the_value_and_what_is_valid(here, argv, line):
    result = runner.invoke(app, argv, env={"COLUMNS": "80"})
    assert (result.exit_code, result.stderr) == (2, f"cnncli: error: {line}\n")


def test_a_missing_name_keeps_the_whole_list_for_documents():
    from cnncli.errors import InputError
    from cnncli.io.readers import parse_ref, pick_name

    names = ["A_prev", "dA", "layer", "f", "stride", "pad", "mode"]
    with pytest.raises(InputError) as info:
        pick_name(parse_ref("examples/pool_case.npz:A"), names, "array")
    assert info.value.whole == "'examples/pool_case.npz' has no array 'A'; it has: " + ", ".join(names)
    with pytest.raises(InputError) as info:  # where the whole fits it is said
        pick_name(parse_ref("Z.npz:q"), ["A", "B"], "array")
    assert str(info.value) == "'Z.npz' has no array 'q'; it has: A, B"


def test_a_printed_line_gives_way_on_stderr_but_its_json_error_quotes_it_whole(here):
    import json

    for dims, reason in (("3x32x32", "on 3x32x32: expects 8 input channels, but its input has 3"),
                         ("32x32", "on 32x32: expects 8 input channels, but its input has 1 (1 assumed: give C in "
                                   "--input)")):
        result = runner.invoke(app, ["shape", "--from", "TT.txt", "--input", dims, "--layout", "nchw", "--json"],
                               env={"COLUMNS": "80"})
        assert result.exit_code == 2 and columns(result.stderr.splitlines()[0]) <= ERROR_WIDTH
        assert json.loads(result.stdout)["error"] == f"layer 1 (0: {TORCH_LINES['TT.txt'][7:]}, line 2) {reason}"
