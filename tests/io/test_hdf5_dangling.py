"""HDF5 links that point nowhere (an external link to a missing file or object, a soft link to a missing
path) are not datasets: they are never listed as ones, and naming one says it points nowhere (an external
one is still refused first without --allow-external, as every external link is)."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.errors import ArrayChoiceError, ExternalDataError, InputError
from cnncli.io.arrays import load_array

runner = CliRunner()
VALUES = np.arange(16.0).reshape(1, 4, 4, 1)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HDF5_EXT_PREFIX", raising=False)
    with h5py.File("other.h5", "w") as f:
        f["data"] = VALUES
    with h5py.File("gone.h5", "w") as f:  # links only, all of them dangling
        f["E1"] = h5py.ExternalLink("missing.h5", "/x")
        f["E2"] = h5py.ExternalLink("missing.h5", "/y")
        f["S"] = h5py.SoftLink("/nowhere")
    with h5py.File("mixed.h5", "w") as f:  # two links that lead somewhere, one to a missing file
        f["E1"] = h5py.ExternalLink("other.h5", "/data")
        f["E2"] = h5py.ExternalLink("missing.h5", "/x")
        f["E3"] = h5py.ExternalLink("other.h5", "/data")
    with h5py.File("one.h5", "w") as f:  # one link that leads somewhere
        f["E1"] = h5py.ExternalLink("other.h5", "/data")
        f["E2"] = h5py.ExternalLink("missing.h5", "/x")
        f["S"] = h5py.SoftLink("/nowhere")
    with h5py.File("nopath.h5", "w") as f:  # its file exists, the object does not: seen only by opening it
        f["E1"] = h5py.ExternalLink("other.h5", "/data")
        f["E2"] = h5py.ExternalLink("other.h5", "/absent")
    with h5py.File("soft.h5", "w") as f:
        f["A"], f["W"] = VALUES, np.ones((3, 3, 1, 2))
        f["S"] = h5py.SoftLink("/B")
    return tmp_path


def test_links_that_point_nowhere_are_not_listed_as_datasets(here):
    for allow in (False, True):
        with pytest.raises(InputError) as info:
            load_array("gone.h5", allow_external=allow)
        assert str(info.value) == "'gone.h5' holds no datasets"  # it was "holds 2 datasets (/E1, /E2)"
        with pytest.raises(ArrayChoiceError) as info:
            load_array("mixed.h5", allow_external=allow)
        assert info.value.names == ("/E1", "/E3")
        assert str(info.value) == "'mixed.h5' holds 2 datasets (/E1, /E3); add :NAME"
    # the one link that leads somewhere is the file's only array: refused, or followed with --allow-external
    with pytest.raises(ExternalDataError) as info:
        load_array("one.h5")
    # 87 columns as 'refused without --allow-external'
    assert str(info.value) == "'one.h5:/E1' links to 'other.h5:/data'; needs --allow-external"
    np.testing.assert_array_equal(load_array("one.h5", allow_external=True), VALUES)


def test_an_object_missing_from_an_existing_file_is_seen_only_when_it_may_be_opened(here):
    with pytest.raises(ArrayChoiceError) as info:
        load_array("nopath.h5")  # other.h5 is not opened: /absent may be in it
    assert info.value.names == ("/E1", "/E2")
    np.testing.assert_array_equal(load_array("nopath.h5", allow_external=True), VALUES)


def test_naming_a_dangling_link_says_it_points_nowhere(here):
    with pytest.raises(ExternalDataError) as info:  # the refusal of every external link comes first
        load_array("gone.h5:/E1")
    assert str(info.value) == "'gone.h5:/E1' links to 'missing.h5:/x'; needs --allow-external"
    cases = [("gone.h5:/E1", "'gone.h5:/E1' points nowhere (a link to 'missing.h5:/x')"),
             ("nopath.h5:/E2", "'nopath.h5:/E2' points nowhere (a link to 'other.h5:/absent')"),
             ("gone.h5:S", "'gone.h5:/S' points nowhere (a soft link to '/nowhere')")]
    for ref, message in cases:  # it was "'gone.h5' has no dataset '/E1'; it has: none"
        with pytest.raises(InputError) as info:
            load_array(ref, allow_external=True)
        assert str(info.value) == message
    with pytest.raises(InputError) as info:
        load_array("soft.h5:/S")
    assert str(info.value) == "'soft.h5:/S' points nowhere (a soft link to '/B'); it has: /A, /W"
    with pytest.raises(InputError) as info:  # a name that is no link at all keeps its words
        load_array("soft.h5:/nope")
    assert str(info.value) == "'soft.h5' has no dataset '/nope'; it has: /A, /W"


@pytest.mark.parametrize("args, line", [
    (["forward", "gone.h5", "--f", "2", "-o", "out.npy"], "'gone.h5' holds no datasets"),
    (["forward", "gone.h5:/E2", "--f", "2", "--allow-external", "-o", "out.npy"],
     "'gone.h5:/E2' points nowhere (a link to 'missing.h5:/y')"),
    (["forward", "soft.h5:/S", "--f", "2", "-o", "out.npy"],
     "'soft.h5:/S' points nowhere (a soft link to '/B'); it has: /A, /W"),
    (["shape", "--like", "mixed.h5", "--f", "2"], "--like 'mixed.h5' has 2 datasets (/E1, /E3); add :NAME"),
    (["shape", "--like", "gone.h5", "--f", "2"], "--like 'gone.h5' holds no datasets"),
])
def test_the_cli_says_it_in_one_line_and_writes_nothing(here, args, line):
    result = runner.invoke(app, args)
    assert (result.exit_code, result.stderr) == (2, f"cnncli: error: {line}\n")
    assert len(result.stderr.rstrip("\n")) <= 80 and "Traceback" not in result.output
    assert not (here / "out.npy").exists()
