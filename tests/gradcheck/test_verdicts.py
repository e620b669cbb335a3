"""Verdicts at the edges: data magnitudes (rounding floor, overflow) and coverage (kinks, inconclusive)."""

import warnings

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams
from cnncli.gradcheck import gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.core import check_problem
from cnncli.gradcheck.metrics import gradient_metrics
from cnncli.gradcheck.problems import ConvProblem
from cnncli.gradcheck.protocol import ProblemDefaults

RNG = np.random.default_rng(11)
A0, W0, B0 = RNG.standard_normal((2, 5, 7, 4)), RNG.standard_normal((3, 3, 4, 8)), RNG.standard_normal(8)


@pytest.mark.parametrize("scale", [1e-6, 1e6, 1e8, 1e300])
@pytest.mark.parametrize("method", ["full", "fast"])
def test_a_correct_conv_passes_at_any_magnitude_without_numpy_warnings(scale, method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a raw numpy RuntimeWarning would be an error here
        r = gradcheck_conv(scale * A0, W0, B0, method=method)
    assert r.passed and r.verdict == "pass", [(g.name, g.relative_error, g.tolerance) for g in r.gradients]


def test_overflow_is_an_inconclusive_verdict_with_a_message():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = gradcheck_conv(1e307 * A0, W0, B0, method="full")
    assert not r.passed and r.verdict == "inconclusive"
    for g in r.gradients:
        assert g.verdict == "inconclusive" and "the loss overflows float64 at this scale" in g.inconclusive
        assert "rescale the input" in g.inconclusive and g.to_dict()["reason"] == g.inconclusive


def test_rounding_floor_bounds_the_real_rounding_error_of_a_small_step():
    # A small bias step on outputs of magnitude ~1e9: the numerical db is visibly off by rounding;
    # the floor (computed from |G| and |A|*|W| + |b|) must cover every such error.
    A = 1e8 * A0
    G = RNG.standard_normal((2, 3, 5, 8))
    p = ConvProblem(A, W0, B0, ConvParams(), G)
    h = 1e-3
    idx = np.arange(8)
    numerical = p.differences("b", idx, B0 + h, B0 - h) / ((B0 + h) - (B0 - h))
    err = np.abs(numerical - G.sum(axis=(0, 1, 2)))
    floor = p.rounding_floor("b", h)
    assert err.max() > 1e-7 * np.abs(numerical).max()  # the rounding is real at this step
    assert np.all(err <= floor)


def test_a_floor_within_the_error_raises_the_threshold_and_a_wrong_value_still_fails():
    a, n = np.array([1.0, -2.0]), np.array([1.0 + 1e-5, -2.0])
    strict = gradient_metrics("db", (2,), "c", "full", np.arange(2), a, n, 0, 1e-7)
    assert not strict.passed and strict.rounding_floor == 0.0 and strict.tolerance == 1e-7
    lenient = gradient_metrics("db", (2,), "c", "full", np.arange(2), a, n, 0, 1e-7, floor=np.full(2, 2e-5))
    expected_floor = np.sqrt(2 * (2e-5) ** 2) / (np.sqrt(5) + np.linalg.norm(n))
    assert lenient.passed and lenient.rounding_floor == pytest.approx(expected_floor)
    assert lenient.tolerance == pytest.approx(expected_floor)
    wrong = gradient_metrics("db", (2,), "c", "full", np.arange(2), a, n + 0.1, 0, 1e-7, floor=np.full(2, 2e-5))
    assert not wrong.passed and wrong.failing == 2


class _Noisy(ProblemDefaults):
    """A one-input linear problem whose numerical values carry a known rounding floor."""

    layer, names, linear = "conv", ("b",), True

    def __init__(self, floor):
        self.inputs = {"b": np.array([1.0, 2.0, 3.0])}
        self.floor = floor

    def analytical(self):
        return {"b": np.array([4.0, 5.0, 6.0])}

    def kinks(self, name, h):
        return None

    def rounding_floor(self, name, h):
        return np.full(3, self.floor)

    def differences(self, name, idx, plus, minus, tick=None):
        return (np.array([4.0, 5.0, 6.0])[idx] + self.floor / 2) * (plus - minus)


def test_a_raised_tolerance_is_noted_and_a_useless_one_is_inconclusive():
    r = check_problem(_Noisy(1e-4), method="full")
    g = r.gradients[0]
    assert r.passed and g.tolerance > 1e-7
    assert any(n.startswith(f"db: tolerance raised from 1e-07 to {g.tolerance:.2g}") for n in r.notes)
    useless = check_problem(_Noisy(1.0), method="full").gradients[0]
    assert useless.verdict == "inconclusive" and "rescale the input" in useless.inconclusive


def test_a_filter_that_only_sees_padding_passes():
    # dW is exactly 0 on both sides (every output reads padding there) while the bias gives a rounding floor
    r = gradcheck_conv(np.full((1, 1, 1, 1), 0.3), np.full((1, 1, 1, 1), 2.0), np.ones(1),
                       ConvParams(stride=(1, 2), pad=1), method="full")
    assert r.passed and r.gradients[1].rounding_floor == 0.0, r.to_dict()


@pytest.mark.parametrize("check", ["memory", "streamed"])
def test_a_sample_of_elements_no_window_reads_passes_a_correct_conv(check):
    # stride 3 past the dilated window leaves input columns no window reads (their derivative exactly 0).
    # The plus and minus copies of an example evaluated in one engine call sat at other rows of its matrix
    # product and were rounded apart: such an element's numerical derivative came out ~1e-13, alone in a
    # sample of 1 it was the elementwise test's whole scale, and a correct conv failed (44 of 60 seeds)
    from cnncli.gradcheck.streamed import gradcheck_streamed
    rng = np.random.default_rng(0)
    A, Wt, b = rng.normal(size=(1, 4, 11, 2)), rng.normal(size=(3, 2, 2, 1)), rng.normal(size=1)
    params = ConvParams(stride=(4, 3), dilation=(1, 2))
    run = gradcheck_conv if check == "memory" else gradcheck_streamed
    for seed in range(12):
        g = run(A, Wt, b, params, method="sample", samples=1, seed=seed).gradients[0]
        assert g.passed, (seed, g.worst)


def test_tiny_data_has_no_spurious_kinks():
    r = gradcheck_pool(1e-6 * A0, PoolParams(f=2), method="full")
    g = r.gradients[0]
    assert r.passed and g.kinks == 0 and g.checked == A0.size


def test_a_step_larger_than_the_gaps_is_inconclusive_not_a_pass():
    r = gradcheck_pool(A0, PoolParams(f=2), eps=1.0, method="full")
    g = r.gradients[0]
    assert not r.passed and g.verdict == "inconclusive" and g.checked == 0
    # 5x7 with f=2: windows read rows 0..3 and columns 0..5 of both examples' 4 channels
    assert g.inconclusive.startswith("dA_prev: 192 of 192 elements are at kinks")
    assert g.inconclusive.endswith("nothing was checked: use a smaller --eps")


def test_elements_no_window_reads_do_not_count_as_checked():
    A = np.zeros((1, 5, 5, 1))  # a constant image: every window a tie
    A[0, 4, :, 0] = A[0, :, 4, 0] = RNG.standard_normal(5)  # the row/column f=2 never reads
    r = gradcheck_pool(A, PoolParams(f=2), method="full")
    g = r.gradients[0]
    # the 9 unread elements are not "checked": nothing is, and the note says why
    assert g.verdict == "pass" and g.checked == 0 and g.kinks == 16
    assert "every pooling window of this input has tied maxima" in " ".join(r.notes)


def test_most_elements_at_kinks_is_noted_but_still_checked():
    A = RNG.standard_normal((3, 4, 4, 1))
    A[:2] = 1.0  # two constant examples of three: 2/3 of the elements are exact ties
    r = gradcheck_pool(A, PoolParams(f=2), method="full")
    g = r.gradients[0]
    assert r.passed and g.kinks == 32 and g.checked == 16
    assert "dA_prev: 32 of 48 elements were not checked: 32 in windows with tied maxima" in " ".join(r.notes)


def _binary_masks(m=4, hw=16, seed=3):
    """0/255 masks: blobs, so most 2x2 windows are all-0 or all-255 (exact ties), a few mixed."""
    rng = np.random.default_rng(seed)
    A = np.zeros((m, hw, hw, 1), dtype=np.uint8)
    for k in range(m):
        r, c = rng.integers(2, hw - 6, size=2)
        A[k, r:r + 5, c:c + 4] = 255
    return A


def test_a_correct_max_pool_passes_on_binary_masks_at_any_eps():
    A = _binary_masks()
    for eps in (1e-6, 1e-14):
        r = gradcheck_pool(A, PoolParams(f=2), eps=eps)
        g = r.gradients[0]
        # a mixed window (odd row/column offsets of the blobs) has one 255 and the rest 0: checkable
        assert r.verdict == "pass" and 0 < g.checked < A.size, (eps, r.to_dict())
        assert "tied maxima" in " ".join(r.notes)


def test_a_wrong_max_pool_gradient_still_fails_on_binary_masks():
    from cnncli.gradcheck.problems import PoolProblem

    class Wrong(PoolProblem):
        def analytical(self):
            d = super().analytical()["A_prev"]
            return {"A_prev": 1.5 * d}  # every routed gradient 50% off

    A = _binary_masks().astype(np.float64)
    G = RNG.standard_normal((A.shape[0], 8, 8, 1))
    r = check_problem(Wrong(A, PoolParams(f=2), G), method="full")
    assert r.verdict == "fail" and r.gradients[0].failing > 0


def test_an_all_tied_input_passes_with_a_note_and_nothing_checked():
    A = np.repeat(np.repeat(np.array([0, 255, 255, 0], dtype=np.uint8).reshape(1, 2, 2, 1), 2, 1), 2, 2)
    r = gradcheck_pool(np.concatenate([A, A]), PoolParams(f=2))  # every 2x2 window constant
    g = r.gradients[0]
    assert (r.verdict, g.checked, g.kinks, g.failing) == ("pass", 0, 32, 0)
    assert any(n.startswith("dA_prev: every pooling window of this input has tied maxima: the max-pool "
                            "gradient is not defined there; nothing to check") for n in r.notes)


def test_near_ties_within_the_step_still_ask_for_a_smaller_eps():
    A = 1.0 - 1e-9 * RNG.permutation(16).reshape(1, 4, 4, 1)  # distinct values: gaps 1e-9 and up, no tie
    g = gradcheck_pool(A, PoolParams(f=2), method="full").gradients[0]
    # every gap is below twice the step 1e-6 * max|A|: all 16 excluded, none of them an exact tie
    assert g.verdict == "inconclusive" and "use a smaller --eps" in g.inconclusive
    assert g.inconclusive.startswith("dA_prev: 16 of 16 elements are at kinks")
    assert gradcheck_pool(A, PoolParams(f=2), eps=1e-12, method="full").verdict == "pass"


@pytest.mark.parametrize("method", ["full", "fast"])
def test_a_large_bias_does_not_drown_tiny_inputs_and_weights(method):
    # Z = b + (A*W terms ~1e-15): b ~1 adds nothing to dZ/dA or dZ/dW, so it must not raise their floor
    A, W, b = 1e-8 * A0, 1e-8 * W0, B0
    r = gradcheck_conv(A, W, b, ConvParams(pad=1), method=method)
    assert r.verdict == "pass", r.to_dict()
    for g in r.gradients:
        assert g.tolerance == pytest.approx(1e-7) and g.rounding_floor < 1e-7, (g.name, g.rounding_floor)


def test_the_bias_free_differences_still_catch_a_wrong_dA_prev_with_a_large_bias():
    class Wrong(ConvProblem):
        def analytical(self):
            d = super().analytical()
            d["A_prev"] = d["A_prev"].copy()
            d["A_prev"][0, 1, 1, 0] *= 1.001
            return d

    G = RNG.standard_normal((2, 5, 7, 8))
    r = check_problem(Wrong(1e-8 * A0, 1e-8 * W0, 10 * B0, ConvParams(pad=1), G), method="full")
    da = r.gradients[0]
    assert da.verdict == "fail" and da.failing == 1 and da.worst.index == (0, 1, 1, 0)
    # the analytical db (sum of G per channel) is unaffected by A and W, and checked with the bias
    assert r.gradients[2].verdict == "pass"


def test_exercise_style_hparameters_dicts_are_accepted():
    r = gradcheck_conv(A0, W0, B0, {"pad": 1, "stride": 2}, method="full")
    # same verdict and hyperparameters as with ConvParams: the output grid is 3x4 at pad 1, stride 2
    assert r.passed and r.params["stride"] == [2, 2] and r.params["pad"] == [1, 1, 1, 1]
    assert r.to_dict() == gradcheck_conv(A0, W0, B0, ConvParams(pad=1, stride=2), method="full").to_dict()
    p = gradcheck_pool(A0, {"f": 2, "stride": 1, "mode": "average"}, method="full")
    assert p.passed and p.params["mode"] == "average" and p.params["f"] == [2, 2] and p.params["stride"] == [1, 1]
    assert gradcheck_pool(A0, {"f": 3}).params["mode"] == "max"


def test_params_of_another_kind_raise_a_clear_error():
    from cnncli.errors import HyperparameterError

    with pytest.raises(HyperparameterError, match=r"gradcheck_conv needs a ConvParams or an exercise-style "
                                                  r"hparameters dict as params.*got PoolParams"):
        gradcheck_conv(A0, W0, B0, PoolParams(f=2))
    with pytest.raises(HyperparameterError, match=r"gradcheck_pool needs a PoolParams .*got list"):
        gradcheck_pool(A0, [2, 2])
    with pytest.raises(HyperparameterError, match="'f'"):
        gradcheck_pool(A0, {"stride": 2})  # the exercise's message: a pool needs its window size


@pytest.mark.parametrize("tol", [0.02, 0.5])
def test_a_generous_tol_checks_as_asked_it_voids_nothing(tol, monkeypatch):
    # only a rounding floor above MAX_TOLERANCE voids a check; a --tol above it is the user's choice
    import numpy as np

    import cnncli.gradcheck.pool_problem as pool_problem
    from cnncli.engine import PoolParams
    from cnncli.gradcheck import gradcheck_pool

    A = np.random.default_rng(0).standard_normal((2, 6, 6, 3))
    assert gradcheck_pool(A, PoolParams(f=2), tol=tol).to_dict()["verdict"] == "pass"
    real = pool_problem.pool2d_backward
    monkeypatch.setattr(pool_problem, "pool2d_backward", lambda *a, **k: real(*a, **k) * 1.5)  # 20% relative error
    wrong = gradcheck_pool(A, PoolParams(f=2), tol=tol).to_dict()
    assert wrong["verdict"] == ("fail" if tol < 0.2 else "pass")


@pytest.mark.parametrize("scale_A, scale_W", [(1e-315, 1.0), (1e-320, 1.0), (1e-160, 1e-160)])
def test_a_loss_in_the_subnormal_range_is_inconclusive_never_a_fail(scale_A, scale_W):
    # below 2.2e-308 float64 keeps fewer bits: the relative rounding floor says 0 and a correct engine failed
    import numpy as np

    from cnncli.engine import ConvParams
    from cnncli.gradcheck import gradcheck_conv

    rng = np.random.default_rng(0)
    A, W, b = rng.standard_normal((2, 6, 6, 3)) * scale_A, rng.standard_normal((3, 3, 3, 4)) * scale_W, np.ones(4)
    doc = gradcheck_conv(A, W, b, ConvParams(pad=1)).to_dict()
    assert doc["verdict"] == "inconclusive"
    assert any("the loss underflows float64 at this scale" in (g["reason"] or "") for g in doc["gradients"])
    near = gradcheck_conv(rng.standard_normal((2, 6, 6, 3)) * 1e-300, W / scale_W, b, ConvParams(pad=1))
    assert near.to_dict()["verdict"] == "pass"  # still the normal range: checked as ever
