"""A failing fast check on a large tensor: per-block detection and localization by bisection."""

import numpy as np
import pytest

from cnncli.engine import ConvParams, PoolParams
from cnncli.gradcheck import core
from cnncli.gradcheck.core import check_problem
from cnncli.gradcheck.problems import ConvProblem, PoolProblem


class _Scaled:
    """A problem whose analytical gradient of ``name`` is multiplied by ``factor`` at ``index``."""

    def __init__(self, problem, name, index, factor):
        self.p, self.name, self.index, self.factor = problem, name, index, factor

    def analytical(self):
        g = {k: v.copy() for k, v in self.p.analytical().items()}
        g[self.name][self.index] *= self.factor
        return g

    def __getattr__(self, attr):
        return getattr(self.p, attr)


def _conv(m, hw=8, c=3, n_C=4, seed=0):
    rng = np.random.default_rng(seed)
    A, W = rng.standard_normal((m, hw, hw, c)), rng.standard_normal((3, 3, c, n_C))
    return ConvProblem(A, W, np.zeros(n_C), ConvParams(pad=1), rng.standard_normal((m, hw, hw, n_C)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_one_wrong_element_among_many_examples_fails_and_is_found_at_every_seed(seed):
    # 400 examples: 76800 values, above LOCALIZE_FULL_LIMIT; the last element's gradient is 0.1% off,
    # far below the whole direction's tolerance but not its own example's
    p = _Scaled(_conv(400), "A_prev", (-1, -1, -1, -1), 1.001)
    assert p.p.inputs["A_prev"].size > core.LOCALIZE_FULL_LIMIT
    r = check_problem(p, method="auto", seed=seed)
    da = r.gradients[0]
    assert r.verdict == "fail" and da.method == "fast+bisect"
    assert da.failing == 1 and da.worst.index == (399, 7, 7, 2)
    assert da.worst.analytical == pytest.approx(1.001 * da.worst.numerical, rel=1e-6)
    assert [g.verdict for g in r.gradients[1:]] == ["pass", "pass"]


@pytest.mark.parametrize("name,index", [("W", (2, 0, 1, 3)), ("b", (2,))])
def test_bisection_localizes_in_W_and_b(monkeypatch, name, index):
    monkeypatch.setattr(core, "LOCALIZE_FULL_LIMIT", 0)  # bisect even these small tensors
    p = _Scaled(_conv(3), name, index, 1.01)
    g = {g.name: g for g in check_problem(p, method="fast", seed=1).gradients}["d" + name]
    assert g.verdict == "fail" and g.method == "fast+bisect" and g.failing == 1 and g.worst.index == index


def test_two_wrong_elements_in_two_examples_are_both_found(monkeypatch):
    monkeypatch.setattr(core, "LOCALIZE_FULL_LIMIT", 0)
    base = PoolProblem(np.random.default_rng(4).standard_normal((6, 8, 8, 2)), PoolParams(f=2, mode="average"),
                       np.random.default_rng(5).standard_normal((6, 4, 4, 2)))
    p = _Scaled(_Scaled(base, "A_prev", (1, 3, 4, 0), 1.01), "A_prev", (4, 0, 7, 1), 0.98)
    g = check_problem(p, method="fast").gradients[0]
    assert g.verdict == "fail" and g.failing == 2
    assert sorted(o.index for o in g.top[:2]) == [(1, 3, 4, 0), (4, 0, 7, 1)]


def test_an_error_spread_over_every_element_says_no_single_element_disagreed(monkeypatch):
    monkeypatch.setattr(core, "LOCALIZE_FULL_LIMIT", 0)
    # every element 2e-6 off relatively: the directional sums disagree (> tol 1e-7 relative),
    # no element does (the elementwise test allows 100 * tol relative)

    class Spread(_Scaled):
        def analytical(self):
            g = self.p.analytical()
            g["A_prev"] = g["A_prev"] * (1 + 2e-6)
            return g

    r = check_problem(Spread(_conv(3), "A_prev", None, None), method="fast")
    da = r.gradients[0]
    assert da.verdict == "fail" and da.failing == 0
    assert any(n.startswith("dA_prev: a directional check disagreed by ") and
               n.endswith("but no single element did (of those localized and sampled): rerun with --method full")
               for n in r.notes), r.notes


def test_the_default_method_stays_cheap_on_a_medium_conv():
    """Speed itself is measured in benchmarks/bench_gradcheck.py, never timed in tests (the
    machines are shared): here, that auto checks directions plus a bounded sample, not every
    element, on 9,216 input values."""
    rng = np.random.default_rng(0)
    A, W = rng.standard_normal((4, 16, 16, 8)), rng.standard_normal((3, 3, 8, 16))
    p = ConvProblem(A, W, rng.standard_normal(16), ConvParams(pad=1), rng.standard_normal((4, 16, 16, 16)))
    r = check_problem(p, method="auto")
    assert r.verdict == "pass"
    checked = {g.name: g.checked for g in r.gradients}
    assert checked["dA_prev"] <= 256 < A.size and checked["dW"] <= 256 < W.size
    assert all(g.directions >= 1 for g in r.gradients)
