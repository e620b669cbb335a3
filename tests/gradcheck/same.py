"""The one comparison of two checks of the same layer call (streamed and in memory, fused and not)."""

import pytest


def same_check(a, s):
    """Same verdicts, counts, worst elements and notes; metrics equal up to float64 rounding."""
    da, ds = a.to_dict(), s.to_dict()
    assert da["verdict"] == ds["verdict"] and da["notes"] == ds["notes"], (da, ds)
    for ga, gs in zip(da["gradients"], ds["gradients"]):
        for key in ("name", "shape", "method", "checked", "directions", "kinks", "failing", "passed", "verdict",
                    "hint", "reason"):
            assert ga[key] == gs[key], (key, ga, gs)
        for key in ("rounding_floor", "tolerance"):
            assert gs[key] == pytest.approx(ga[key], rel=1e-6), (key, ga, gs)
        if not ga["passed"]:  # a passing gradient's errors are rounding: their size and place are noise
            assert ga["worst_index"] == gs["worst_index"]
            assert [o["index"] for o in ga["top"]] == [o["index"] for o in gs["top"]]
            for key in ("relative_error", "max_abs_error"):
                assert gs[key] == pytest.approx(ga[key], rel=1e-6), (key, ga, gs)
