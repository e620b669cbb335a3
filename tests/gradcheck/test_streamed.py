"""gradcheck on a data set read chunk by chunk: the same upstream gradient, directions and samples as
the in-memory check with the same seed, the same verdicts, and memory that does not grow with the set."""

import tracemalloc

import h5py
import numpy as np
import pytest

import cnncli.gradcheck.perturbed as perturbed
import cnncli.gradcheck.pool_problem as pool_problem
import cnncli.gradcheck.problems as problems
import cnncli.gradcheck.streamed as streamed
import cnncli.gradcheck.streamed_evals as streamed_evals
from cnncli.engine import ConvParams, PoolParams, conv2d, pool2d
from cnncli.errors import InputError
from cnncli.gradcheck import directional, gradcheck_conv, gradcheck_pool
from cnncli.gradcheck.lazy import DirectionChunks, DrawnUpstream
from cnncli.gradcheck.streamed import gradcheck_streamed
from tests.gradcheck.same import same_check

RNG = np.random.default_rng(1)
A = RNG.integers(0, 256, size=(40, 16, 16, 3)).astype(np.float64)  # 30720 elements: sampled as in memory
W = RNG.normal(size=(4, 4, 3, 8)) * 0.1
B = RNG.normal(size=8)


def test_the_upstream_gradient_drawn_by_slices_is_the_whole_draw_every_time():
    shape = (9, 3, 4, 2)
    whole = np.random.default_rng(7).standard_normal(shape)
    G = DrawnUpstream(7, shape)
    for lo, hi in [(3, 5), (0, 2), (7, 9), (3, 5), (2, 8), (8, 9), (0, 9)]:
        np.testing.assert_array_equal(G[lo:hi], whole[lo:hi])


def test_direction_chunks_are_the_fast_checks_directions():
    shape = (5, 3, 4, 2)
    excluded = np.random.default_rng(3).random(shape) < 0.2
    D = directional.directions(np.random.default_rng(11), shape, excluded)
    rng = np.random.default_rng(11)
    chunks = DirectionChunks(rng, shape)
    for p in (2, 0, 1):
        for lo, hi in ((1, 4), (0, 5), (4, 5)):
            np.testing.assert_array_equal(chunks.chunk(p, lo, hi, excluded[lo:hi]), D[p][lo:hi])
    after = np.random.default_rng(11)
    directional.directions(after, shape, excluded)
    assert rng.random() == after.random()  # the generator moved on as the whole draw moves it


@pytest.mark.parametrize("method", ["auto", "fast", "sample"])
def test_a_streamed_conv_check_is_the_in_memory_check(method):
    params = ConvParams(pad="same")
    same_check(gradcheck_conv(A, W, B, params, method=method, seed=3),
                gradcheck_streamed(A, W, B, params, method=method, seed=3))


@pytest.mark.parametrize("mode", ["max", "average"])
def test_a_streamed_pool_check_is_the_in_memory_check(mode):
    params = PoolParams(f=3, stride=2, mode=mode)
    same_check(gradcheck_pool(A, params, seed=2), gradcheck_streamed(A, params=params, kind="pool", seed=2))


def _break_one_position(monkeypatch):
    real = problems.conv2d_backward

    def broken(G, A_prev, W_, params, **options):
        g = real(G, A_prev, W_, params, **options)
        if g.dA_prev is None:  # dW and db only
            return g
        dA = g.dA_prev.copy()
        dA[:, 5, 7, 1] *= 1.001  # every example, one position: a wrong engine
        return type(g)(dA, g.dW, g.db)

    monkeypatch.setattr(problems, "conv2d_backward", broken)


def test_a_wrong_gradient_fails_both_checks_at_the_same_element(monkeypatch):
    _break_one_position(monkeypatch)
    params = ConvParams(pad="same")
    a, s = gradcheck_conv(A, W, B, params, seed=3), gradcheck_streamed(A, W, B, params, seed=3)
    same_check(a, s)
    g = s.gradients[0]
    assert s.verdict == "fail" and g.method == "fast+bisect" and g.worst.index[1:] == (5, 7, 1)


def test_a_large_set_samples_by_examples_says_so_and_still_finds_a_wrong_element(monkeypatch):
    _break_one_position(monkeypatch)
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    monkeypatch.setattr(streamed, "DIRECTED_EXAMPLES", 10)
    r = gradcheck_streamed(A, W, B, ConvParams(pad="same"), seed=3)
    g = r.gradients[0]
    assert r.verdict == "fail" and g.failing >= 1 and g.worst.index[1:] == (5, 7, 1)
    assert any(n.startswith("dA_prev: 256 elements sampled from 40 of the 40 examples") for n in r.notes)
    assert any(n.startswith("dA_prev: the directional check moves 10 of the 40 examples") for n in r.notes)
    assert r.gradients[1].passed and r.gradients[2].passed  # dW, db over every example


def test_a_large_set_passes_on_the_engine_with_its_defaults_noted(monkeypatch):
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    monkeypatch.setattr(streamed, "DIRECTED_EXAMPLES", 10)
    r = gradcheck_streamed(A, W, B, ConvParams(pad="same", stride=2), seed=4)
    assert r.passed and r.gradients[0].checked == 256


def test_an_all_zero_given_gradient_is_inconclusive_as_in_memory():
    params = ConvParams(pad=1)
    G = np.zeros((40, 15, 15, 8))  # f 4, pad 1: 15 x 15 outputs
    a, s = gradcheck_conv(A, W, B, params, grad=G), gradcheck_streamed(A, W, B, params, grad=G)
    assert a.to_dict()["gradients"] == s.to_dict()["gradients"] and s.verdict == "inconclusive"


def test_the_streamed_check_reads_the_file_in_bounded_memory(tmp_path, monkeypatch):
    # 300 uint8 images 32x32x3: in float64 A_prev is 7 MiB, G 19 MiB, dA_prev and its floor 7 MiB each;
    # with 1 MiB budgets per evaluation, nothing of that size is ever held (the budgets, not the set,
    # bound the check: at the default ones, 3000 images 64x64x3 peak at about 120 MB RSS).
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 2**20)
    monkeypatch.setattr(perturbed, "CHUNK_BYTES", 2**20)
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 2**16)
    monkeypatch.setattr(streamed, "SAMPLED_EXAMPLES", 16)
    monkeypatch.setattr(streamed_evals, "DENSE_VALUES", 2**16)
    path = tmp_path / "set.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(0).integers(0, 256, size=(300, 32, 32, 3), dtype=np.uint8)
    with h5py.File(path, "r") as f:
        x = f["x"]
        tracemalloc.start()
        try:
            r = gradcheck_streamed(x, W, B, ConvParams(pad="same"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert r.passed and r.gradients[0].errors is None and r.gradients[0].error_map.shape == (32, 32)
    assert peak < 10 * 2**20, peak / 2**20  # measured 7.9 MiB; G alone is 19 MiB


@pytest.mark.parametrize("where", ["A_prev", "W", "b", "grad"])
def test_non_finite_input_is_the_in_memory_error_whichever_chunk_holds_it(where, monkeypatch):
    monkeypatch.setattr(perturbed, "BATCH_BYTES", 2**18)  # several chunks: the bad value is in the last one
    params = ConvParams(pad="same")
    a, w, b = A.copy(), W.copy(), B.copy()
    G = np.random.default_rng(4).normal(size=A.shape[:3] + (8,))
    {"A_prev": a, "W": w, "b": b, "grad": G}[where].reshape(-1)[-1] = np.nan
    with pytest.raises(InputError) as memory:
        gradcheck_conv(a, w, b, params, grad=G)
    with pytest.raises(InputError) as streamed_:
        gradcheck_streamed(a, w, b, params, grad=G)
    assert str(streamed_.value) == str(memory.value) and "1 NaN/inf value(s)" in str(memory.value)


@pytest.mark.parametrize("kind", ["conv", "pool"])
def test_an_all_zero_upstream_gradient_is_inconclusive_streamed_as_in_memory(kind):
    # the pool case once built W.shape from W = None (exit 3)
    params = ConvParams(pad=1) if kind == "conv" else PoolParams(f=2)
    out = (conv2d(A, W, B, params) if kind == "conv" else pool2d(A, params)).shape
    zeros = np.zeros(out)
    if kind == "conv":
        memory = gradcheck_conv(A, W, B, params, grad=zeros, seed=3)
        stream = gradcheck_streamed(A, W, B, params, grad=zeros, seed=3)
    else:
        memory = gradcheck_pool(A, params, grad=zeros, seed=3)
        stream = gradcheck_streamed(A, params=params, kind="pool", grad=zeros, seed=3)
    assert stream.to_dict()["verdict"] == memory.to_dict()["verdict"] == "inconclusive"
    assert [g["name"] for g in stream.to_dict()["gradients"]] == [g["name"] for g in memory.to_dict()["gradients"]]


def test_the_directed_examples_note_names_dw_and_db_for_conv_only(monkeypatch):
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    monkeypatch.setattr(streamed, "DIRECTED_EXAMPLES", 10)
    conv = gradcheck_streamed(A, W, B, ConvParams(pad="same"), seed=3)
    pool = gradcheck_streamed(A, params=PoolParams(f=3, stride=2, mode="average"), kind="pool", seed=3)
    moves = "dA_prev: the directional check moves 10 of the 40 examples (evenly spread, first and last included)"
    assert f"{moves}, each compared on its own; every example's part of dW and db is checked" in conv.notes
    assert f"{moves}, each compared on its own" in pool.notes


def test_non_finite_inputs_are_one_short_line_in_memory_and_streamed():
    bad = A.copy()
    bad[0, 0, 0, 0] = np.nan
    G = np.ones((40, 15, 15, 8))
    G[1, 2, 3, 4] = np.inf
    for check in (lambda: gradcheck_conv(bad, W, B, ConvParams(pad=1)),
                  lambda: gradcheck_streamed(bad, W, B, ConvParams(pad=1))):
        with pytest.raises(InputError) as err:
            check()
        assert str(err.value) == "A_prev holds 1 NaN/inf value(s); checks need finite ones"
    for check in (lambda: gradcheck_conv(A, W, B, ConvParams(pad=1), grad=G),
                  lambda: gradcheck_streamed(A, W, B, ConvParams(pad=1), grad=G)):
        with pytest.raises(InputError) as err:
            check()
        assert str(err.value) == "--grad holds 1 NaN/inf value(s); checks need finite ones"


def test_a_huge_samples_on_a_large_set_says_what_was_checked_and_why(monkeypatch):
    # average pooling: no kinks, and integers 0..255 all move under the step, so every element is checkable
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    monkeypatch.setattr(streamed, "SAMPLED_EXAMPLES", 4)
    params = PoolParams(f=2, mode="average")
    r = gradcheck_streamed(A, params=params, kind="pool", samples=10**6, method="sample", seed=3)
    g = r.gradients[0]
    assert r.passed and g.checked == 4 * 16 * 16 * 3  # every element of the 4 sampled examples, not 10**6
    assert ("dA_prev: 3072 elements checked, every checkable one of 4 of the 40 examples (one from each 1/4 of "
            "the set): --samples 1000000 asks more, but a streamed sample is drawn from at most 4 examples; "
            "--method full checks all 30720") in r.notes
    assert not any("--samples N checks more" in n for n in r.notes)
    # a set of no more examples than are sampled: the whole of it is checked, and said so
    r = gradcheck_streamed(A[:3], params=params, kind="pool", samples=10**6, method="sample", seed=3)
    assert r.passed and r.gradients[0].checked == 3 * 16 * 16 * 3
    assert "dA_prev: all 2304 checkable elements are checked (--samples 1000000 asks more than there are)" in r.notes
    # a sample the examples hold keeps its note
    r = gradcheck_streamed(A, params=params, kind="pool", samples=100, method="sample", seed=3)
    assert r.gradients[0].checked == 100
    assert any(n.startswith("dA_prev: 100 elements sampled from 4 of the 40 examples") and
               n.endswith("--samples N checks more") for n in r.notes)


def _one_fertile_example():
    """40 examples of all-equal values under 2x2 max pooling (every window ties) but one window of example 39."""
    A1 = np.ones((40, 8, 8, 2))
    A1[39, 0, 0, 0] = 2  # one window without a tie: its 4 elements are the set's only checkable ones
    return A1


def test_a_large_sets_sample_is_drawn_from_the_examples_that_hold_checkable_elements(monkeypatch):
    # drawn from all 40, --samples 3 took one example from each third of the set and none was example 39:
    # 0 elements checked and a PASS on nothing, where the in-memory check finds the four
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    r = gradcheck_streamed(_one_fertile_example(), params=PoolParams(f=2), kind="pool", samples=3, method="sample",
                           seed=3)
    assert r.passed and r.gradients[0].checked == 3
    assert ("dA_prev: 5116 of 5120 elements were not checked: 5116 in windows with tied maxima (exact ties: not "
            "checkable at any eps); 4 checkable") in r.notes
    assert "dA_prev: 39 of the 40 examples hold no checkable element; the sample is drawn from the other 1" in r.notes
    assert ("dA_prev: 3 elements sampled from the 1 example with checkable elements (corners, edges and interior "
            "within each); --samples N checks more") in r.notes
    # more fertile examples than are sampled: one from each part of those
    A3 = _one_fertile_example()
    A3[[5, 17, 30], 2, 4, 1] = 3
    r = gradcheck_streamed(A3, params=PoolParams(f=2), kind="pool", samples=2, method="sample", seed=3)
    assert r.gradients[0].checked == 2
    assert "dA_prev: 36 of the 40 examples hold no checkable element; the sample is drawn from the other 4" in r.notes
    assert ("dA_prev: 2 elements sampled from 2 of the 4 examples with checkable elements (one from each 1/2 of "
            "those; corners, edges and interior within each); --samples N checks more") in r.notes
    r = gradcheck_streamed(A3, params=PoolParams(f=2), kind="pool", samples=8, method="sample", seed=3)
    assert r.gradients[0].checked == 8
    assert ("dA_prev: 8 elements sampled from the 4 examples with checkable elements (corners, edges "
            "and interior within each); --samples N checks more") in r.notes  # 8 in all, not 8 from each
    r = gradcheck_streamed(_one_fertile_example(), params=PoolParams(f=2), kind="pool", samples=10, method="sample",
                           seed=3)
    assert r.gradients[0].checked == 4
    assert "dA_prev: all 4 checkable elements are checked (--samples 10 asks more than there are)" in r.notes


def test_a_wrong_gradient_in_the_one_example_that_can_be_checked_fails_streamed(monkeypatch):
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    real = pool_problem.pool2d_backward

    def broken(G, A_prev, params, **options):
        dA = real(G, A_prev, params, **options).copy()
        dA[..., 0, 0, 0] *= 1.5  # the untied window's maximum: the gradient routed to it is wrong
        return dA

    monkeypatch.setattr(pool_problem, "pool2d_backward", broken)
    for method in ("sample", "auto"):
        r = gradcheck_streamed(_one_fertile_example(), params=PoolParams(f=2), kind="pool", samples=3,
                               method=method, seed=3)
        assert r.verdict == "fail", (method, r.notes)
        assert r.gradients[0].worst.index == (39, 0, 0, 0)


def test_the_directions_move_the_examples_that_hold_checkable_elements(monkeypatch):
    # 10 directed examples spread over all 40 are 0, 4, 9, 13, 17, 22, 26, 30, 35 and 39: not example 20, the
    # only one a direction could move; a wrong gradient there passed the fast check unseen
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)
    monkeypatch.setattr(streamed, "DIRECTED_EXAMPLES", 10)
    A1 = np.ones((40, 8, 8, 2))
    A1[20, 0, 0, 0] = 2
    r = gradcheck_streamed(A1, params=PoolParams(f=2), kind="pool", method="fast", seed=3)
    assert r.passed and r.gradients[0].directions == 3
    assert ("dA_prev: the directional check moves 1 of the 40 examples (of the 1 with checkable elements), each "
            "compared on its own") in r.notes
    real = pool_problem.pool2d_backward

    def broken(G, A_prev, params, **options):
        dA = real(G, A_prev, params, **options).copy()
        dA[..., 0, 0, 0] *= 1.5
        return dA

    monkeypatch.setattr(pool_problem, "pool2d_backward", broken)
    r = gradcheck_streamed(A1, params=PoolParams(f=2), kind="pool", method="fast", seed=3)
    assert r.verdict == "fail" and r.gradients[0].worst.index == (20, 0, 0, 0)
    # more fertile examples than directions: evenly spread over them
    A1[::2, 4, 4, 1] = 3  # 20 examples (0, 2, ..., 38) with an untied window
    monkeypatch.setattr(pool_problem, "pool2d_backward", real)
    r = gradcheck_streamed(A1, params=PoolParams(f=2), kind="pool", method="fast", seed=3)
    assert ("dA_prev: the directional check moves 10 of the 40 examples (evenly spread over the 20 with "
            "checkable elements), each compared on its own") in r.notes


TINY = RNG.normal(size=(6, 8, 8, 3)) * 1e-315  # subnormal: one step's change of the loss is below 2.2e-308


@pytest.mark.parametrize("method", ["auto", "full", "sample", "fast"])
@pytest.mark.parametrize("layer", ["conv", "max", "average"])
def test_a_subnormal_loss_is_inconclusive_streamed_as_in_memory(layer, method):
    if layer == "conv":
        params = ConvParams(pad=1)
        memory = gradcheck_conv(TINY, W[:3, :3], B[:8], params, seed=3, method=method)
        stream = gradcheck_streamed(TINY, W[:3, :3], B[:8], params, seed=3, method=method)
    else:
        params = PoolParams(f=2, mode=layer)
        memory = gradcheck_pool(TINY, params, seed=3, method=method)
        stream = gradcheck_streamed(TINY, params=params, kind="pool", seed=3, method=method)
    top = f"{np.max(np.abs(TINY)):.2g}"
    sizes = f"max |A_prev| {top}" + (f", max |W| {np.max(np.abs(W[:3, :3])):.2g}, max |b| {np.max(np.abs(B)):.2g}"
                                     if layer == "conv" else "")
    reason = f"dA_prev: the loss underflows float64 at this scale ({sizes}); rescale the input"
    assert stream.verdict == memory.verdict == "inconclusive" and not stream.passed
    assert stream.gradients[0].inconclusive == memory.gradients[0].inconclusive == reason
    # dW and db name the same magnitudes as in memory (A_prev's too: the cause)
    assert [g.inconclusive for g in stream.gradients] == [g.inconclusive for g in memory.gradients]
    assert stream.notes == memory.notes


def test_a_small_but_normal_loss_still_checks_streamed():
    A = TINY * 1e15  # near 1e-300: the change over one step is about 1e-303, a normal number
    r = gradcheck_streamed(A, params=PoolParams(f=2, mode="average"), kind="pool", seed=3)
    assert r.passed and r.gradients[0].inconclusive is None


def test_a_subnormal_loss_on_a_large_set_is_inconclusive_without_the_sampling_notes(monkeypatch):
    monkeypatch.setattr(streamed, "SAMPLE_WHOLE_LIMIT", 1000)  # sampled by examples, directions on some
    monkeypatch.setattr(streamed, "DIRECTED_EXAMPLES", 4)
    r = gradcheck_streamed(TINY, params=PoolParams(f=2), kind="pool", seed=3)
    assert r.verdict == "inconclusive" and "underflows" in r.gradients[0].inconclusive
    assert r.notes == ()  # nothing was sampled nor moved: no note says it was


@pytest.mark.parametrize("kind, with_b", [("conv", True), ("conv", False), ("pool", False)])
@pytest.mark.parametrize("method", ["full", "fast"])
def test_an_overflow_is_worded_as_in_memory_naming_every_inputs_magnitude(kind, with_b, method):
    # the streamed conv check named max |A_prev| alone where the in-memory one names W's and b's too
    rng = np.random.default_rng(0)
    if kind == "conv":
        A0 = rng.standard_normal((2, 5, 5, 3)) * 1e307  # 27 products of ~1e307 per output: the loss is inf
        W0, b0 = rng.standard_normal((3, 3, 3, 4)), (rng.standard_normal(4) if with_b else None)
        a = gradcheck_conv(A0, W0, b0, ConvParams(pad=1), seed=0, method=method)
        s = gradcheck_streamed(A0, W0, b0, ConvParams(pad=1), seed=0, method=method)
        sizes = [f"max |A_prev| {np.abs(A0).max():.2g}", f"max |W| {np.abs(W0).max():.2g}",
                 f"max |b| {np.abs(b0).max() if with_b else 0:.2g}"]  # no b is a zero bias
    else:
        A0 = rng.standard_normal((2, 6, 6, 3)) * 3e307
        params = PoolParams(f=2, mode="average")
        a = gradcheck_pool(A0, params, seed=0, method=method)
        s = gradcheck_streamed(A0, params=params, kind="pool", seed=0, method=method)
        sizes = [f"max |A_prev| {np.abs(A0).max():.2g}"]
    want = f"dA_prev: the loss overflows float64 at this scale ({', '.join(sizes)}); rescale the input"
    assert a.gradients[0].inconclusive == want
    assert s.gradients[0].inconclusive == want
