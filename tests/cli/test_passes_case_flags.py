"""Yes/no case attributes (ceil_mode, count_include_pad) stored as words are read as words:
``bool("false")`` is True, so a case saying "false" must not switch the flag on."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app

runner = CliRunner()


def write_case(path, **entries):
    """An .h5 case (attributes as HDF5 str attributes) or an .npz case (0-d str entries)."""
    A = entries.pop("A_prev")
    if path.suffix == ".h5":
        with h5py.File(path, "w") as h:
            h["A_prev"] = A
            h.attrs.update(entries)
    else:
        np.savez(path, A_prev=A, **{k: np.array(v) for k, v in entries.items()})
    return str(path)


def forward(case, tmp_path, *extra):
    out = tmp_path / "out.npy"
    res = runner.invoke(app, ["forward", case, *extra, "-o", str(out), "--force"])
    assert res.exit_code == 0, res.stderr
    return np.load(out)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_ceil_mode_false_as_a_word_pools_without_ceil_mode(tmp_path, suffix):
    A = np.random.default_rng(0).standard_normal((1, 5, 5, 2))
    case = write_case(tmp_path / f"case{suffix}", A_prev=A, layer="pool", f="2", ceil_mode="false")
    out = forward(case, tmp_path)
    # 5 rows, windows of 2 at stride 2: floor((5 - 2) / 2) + 1 = 2 (ceil mode would give 3).
    assert out.shape == (1, 2, 2, 2)
    blocks = A[:, :4, :4].reshape(1, 2, 2, 2, 2, 2).max(axis=(2, 4))  # max of each 2x2 block
    np.testing.assert_array_equal(out, blocks)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_ceil_mode_true_as_a_word_and_the_option_overrides_it(tmp_path, suffix):
    A = np.random.default_rng(1).standard_normal((1, 5, 5, 1))
    case = write_case(tmp_path / f"case{suffix}", A_prev=A, layer="pool", f="2", ceil_mode=" True")
    out = forward(case, tmp_path)
    assert out.shape == (1, 3, 3, 1)
    assert out[0, 2, 2, 0] == A[0, 4, 4, 0]  # the ceil-mode window holds one pixel
    assert forward(case, tmp_path, "--no-ceil-mode").shape == (1, 2, 2, 1)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_count_include_pad_false_as_a_word_divides_by_real_pixels(tmp_path, suffix):
    case = write_case(tmp_path / f"case{suffix}", A_prev=np.ones((1, 4, 4, 1)), layer="pool", f="3",
                      stride="1", pad="1", mode="average", count_include_pad="false")
    # Every window averages only ones: 1 everywhere (counting the padded zeros would give 4/9 at corners).
    np.testing.assert_array_equal(forward(case, tmp_path), np.ones((1, 4, 4, 1)))


def test_a_flag_that_is_not_a_yes_or_no_is_one_line_exit_2(tmp_path):
    case = write_case(tmp_path / "case.h5", A_prev=np.ones((1, 4, 4, 1)), layer="pool", f="2", ceil_mode="maybe")
    res = runner.invoke(app, ["forward", case, "-o", str(tmp_path / "out.npy")])
    assert res.exit_code == 2
    assert res.stderr == f"cnncli: error: '{case}': ceil_mode must be true or false, got 'maybe'\n"
    assert not (tmp_path / "out.npy").exists()
