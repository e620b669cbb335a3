"""Long runs (issue 11 part 6): the estimate and how to shorten it, printed as the check starts."""

import numpy as np
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.render import progress

runner = CliRunner()


def test_a_long_full_check_says_how_long_and_how_to_shorten_it(tmp_path, monkeypatch):
    # "Long" shrunk to nothing so that a small check counts as long: the note's wiring is what is tested.
    monkeypatch.setattr(progress, "LONG_SECONDS", 0.0)
    monkeypatch.setattr(progress, "MEASURE_SECONDS", 0.0)
    # One example of 24x24x8: its 4,608 elements are evaluated in several chunks, so progress comes in steps.
    np.save(tmp_path / "A.npy", np.random.default_rng(0).standard_normal((1, 24, 24, 8)))
    result = runner.invoke(app, ["gradcheck", str(tmp_path / "A.npy"), "--f", "2", "--method", "full", "--json"])
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: this run takes about")]
    assert len(notes) == 1
    assert notes[0].endswith("to shorten: --method fast (random directions: seconds) or --method sample "
                             "--samples N (N elements per tensor)")
    assert f"of {24 * 24 * 8:,} evaluations" in notes[0]


def test_a_short_check_prints_no_note(tmp_path):
    np.save(tmp_path / "A.npy", np.random.default_rng(0).standard_normal((4, 8, 8, 2)))
    result = runner.invoke(app, ["gradcheck", str(tmp_path / "A.npy"), "--f", "2", "--method", "full", "--json"])
    assert result.exit_code == 0
    assert "note: this run" not in result.stderr


def test_a_long_pass_says_how_long_and_how_to_shorten_it(tmp_path, monkeypatch):
    import h5py

    from cnncli.passes import stream

    monkeypatch.setattr(progress, "LONG_SECONDS", 0.0)
    monkeypatch.setattr(progress, "MEASURE_SECONDS", 0.0)
    monkeypatch.setattr(stream, "IO_CHUNK_BYTES", 6000)  # a few examples per chunk: progress in steps
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["A_prev"] = np.random.default_rng(0).standard_normal((23, 9, 8, 3))
    result = runner.invoke(app, ["forward", str(tmp_path / "a.h5"), "--f", "2", "--json"])
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: this run takes about")]
    assert len(notes) == 1 and "of 23 examples done" in notes[0]
    assert notes[0].endswith("to shorten: --dtype float32 computes in single precision (half the bytes to move)")
