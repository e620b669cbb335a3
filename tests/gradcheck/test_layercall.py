"""check_layer_call: a resolved layer call checked as gradcheck_conv/pool would check its arrays."""

import numpy as np

from cnncli.engine import ConvParams, PoolParams
from cnncli.gradcheck.layercall import check_layer_call
from cnncli.gradcheck.layers import gradcheck_conv, gradcheck_pool
from cnncli.passes.call import resolve_layer


def test_an_nchw_conv_call_is_checked_as_the_nchw_arrays(tmp_path):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2, 3, 6, 5))       # m, C, H, W
    W = rng.standard_normal((4, 3, 3, 3))       # C_out, C_in, kH, kW
    b = rng.standard_normal(4)
    for name, arr in (("A", A), ("W", W), ("b", b)):
        np.save(tmp_path / f"{name}.npy", arr)
    with resolve_layer(str(tmp_path / "A.npy"), weights=str(tmp_path / "W.npy"), bias=str(tmp_path / "b.npy"),
                       stride="2", pad="1", layout="nchw", dtype="float64") as call:
        got = check_layer_call(call, method="full", seed=5)
    # the same check on the arrays themselves, with the same seed and layout
    want = gradcheck_conv(A, W, b, ConvParams(stride=2, pad=1), layout="nchw", method="full", seed=5)
    assert got.to_dict()["gradients"] == want.to_dict()["gradients"]
    assert got.passed
    worst = {g["name"]: g["worst_index"] for g in got.to_dict()["gradients"]}
    assert len(worst["dW"]) == 4 and all(0 <= i < n for i, n in zip(worst["dW"], W.shape))
    assert all(0 <= i < n for i, n in zip(worst["dA_prev"], A.shape))


def test_the_calls_notes_come_first_and_once(tmp_path):
    A = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    np.save(tmp_path / "A.npy", A)
    with resolve_layer(str(tmp_path / "A.npy"), layer="pool", f="2", mode="average", dtype="float64") as call:
        call_notes = tuple(call.notes)
        got = check_layer_call(call, method="full", seed=0)
    assert call_notes and got.notes[:len(call_notes)] == call_notes
    assert len(set(got.notes)) == len(got.notes)
    want = gradcheck_pool(A.astype(np.float64), PoolParams(f=2, mode="average"), method="full", seed=0)
    assert got.to_dict()["gradients"] == want.to_dict()["gradients"]


def test_an_hparameters_layout_key_is_read_as_conv_forward_reads_it():
    import numpy as np
    import pytest

    from cnncli.errors import HyperparameterError
    from cnncli.gradcheck import gradcheck_conv, gradcheck_pool

    rng = np.random.default_rng(0)
    A, W, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    r = gradcheck_conv(A, W, b, {"pad": 1, "stride": 1, "layout": "nchw"})  # PyTorch's layouts: read as such
    assert r.passed and [g.shape for g in r.gradients] == [(2, 3, 6, 6), (4, 3, 3, 3), (4,)]
    assert gradcheck_pool(A, {"f": 2, "stride": 2, "layout": "nchw"}).gradients[0].shape == (2, 3, 6, 6)
    with pytest.raises(HyperparameterError, match="layout given twice"):
        gradcheck_conv(A, W, b, {"pad": 1, "stride": 1, "layout": "nhwc"}, layout="nchw")
