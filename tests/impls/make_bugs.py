"""The one-bug variants of correct.py, written on demand rather than kept as near-copies.

Each variant replaces exactly one snippet of correct.py (a snippet that does
not occur exactly once is refused), so every file holds one mistake a student
could make, described in its first line. Tests call :func:`bug_file`;
``python tests/impls/make_bugs.py DIR`` writes them all to DIR to try by hand
(``cnncli gradcheck --impl DIR/bug_db_assigned.py``).
"""

import functools
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent

#: name -> (what the mistake is, snippet of correct.py, replacement)
BUGS = {
    "bias_missing": ("conv_single_step forgets the bias",
                     "    Z = Z + np.squeeze(b)\n", "    Z = Z\n"),
    "forward_stride_ignored": ("conv_forward starts windows at h instead of h*stride",
                               "        for h in range(n_H):\n            vert_start = h * stride\n            vert_end = vert_start + f\n"
                               "            for w in range(n_W):\n                horiz_start = w * stride\n"
                               "                horiz_end = horiz_start + f\n                for c in range(n_C):\n"
                               "                    a_slice_prev",
                               "        for h in range(n_H):\n            vert_start = h\n            vert_end = vert_start + f\n"
                               "            for w in range(n_W):\n                horiz_start = w * stride\n"
                               "                horiz_end = horiz_start + f\n                for c in range(n_C):\n"
                               "                    a_slice_prev"),
    "crop_minus_pad": ("conv_backward crops the padded gradient with [pad:-pad] (empty at pad 0)",
                       "da_prev_pad[pad:pad + n_H_prev, pad:pad + n_W_prev, :]", "da_prev_pad[pad:-pad, pad:-pad, :]"),
    "db_assigned": ("conv_backward assigns db instead of accumulating it",
                    "db[:, :, :, c] += dZ[i, h, w, c]", "db[:, :, :, c] = dZ[i, h, w, c]"),
    "dW_unpadded_slice": ("conv_backward takes dW's slice from the unpadded A_prev",
                          "a_slice = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]",
                          "a_slice = A_prev[i, vert_start:vert_end, horiz_start:horiz_end, :]"),
    "dA_flipped_W": ("conv_backward flips the filter for dA_prev",
                     "+= W[:, :, :, c] * dZ[i, h, w, c]", "+= W[::-1, ::-1, :, c] * dZ[i, h, w, c]"),
    "dW_hw_swapped": ("conv_backward indexes dZ[i, w, h, c] for dW",
                      "dW[:, :, :, c] += a_slice * dZ[i, h, w, c]", "dW[:, :, :, c] += a_slice * dZ[i, w, h, c]"),
    "pool_backward_assign": ("pool_backward assigns the max gradient instead of accumulating it",
                             "] += mask * dA[i, h, w, c]", "] = mask * dA[i, h, w, c]"),
    "pool_backward_stride": ("pool_backward starts windows at w instead of w*stride",
                             "                    horiz_start = w * stride\n                    horiz_end = horiz_start + f\n"
                             "                    if mode",
                             "                    horiz_start = w\n                    horiz_end = horiz_start + f\n"
                             "                    if mode"),
    "distribute_sum": ("distribute_value divides by n_H + n_W instead of n_H * n_W",
                       "average = dz / (n_H * n_W)", "average = dz / (n_H + n_W)"),
    "distribute_no_average": ("distribute_value gives every element dz, not the average dz / (n_H * n_W)",
                              "    a = np.ones(shape) * average\n", "    a = np.ones(shape) * dz\n"),
    "distribute_precedence": ("distribute_value writes dz / n_H * n_W, which is (dz / n_H) * n_W",
                              "average = dz / (n_H * n_W)", "average = dz / n_H * n_W"),
    "mask_min": ("create_mask_from_window marks the minimum",
                 "mask = x == np.max(x)", "mask = x == np.min(x)"),
    "pool_size_by_f": ("pool_forward divides by f instead of the stride for the output size",
                       "n_H = int(1 + (n_H_prev - f) / stride)", "n_H = int(1 + (n_H_prev - f) / f)"),
    "zero_pad_height_only": ("zero_pad pads the height only",
                             "((0, 0), (pad, pad), (pad, pad), (0, 0))", "((0, 0), (pad, pad), (0, 0), (0, 0))"),
    "average_uses_max": ("pool_forward takes the max in average mode",
                         "A[i, h, w, c] = np.mean(a_prev_slice)", "A[i, h, w, c] = np.max(a_prev_slice)"),
    "backward_stride_ignored": ("conv_backward starts windows at h instead of h*stride",
                                "                    vert_start = h * stride\n                    vert_end = vert_start + f\n"
                                "                    horiz_start = w * stride\n                    horiz_end = horiz_start + f\n"
                                "                    a_slice = a_prev_pad",
                                "                    vert_start = h\n                    vert_end = vert_start + f\n"
                                "                    horiz_start = w * stride\n                    horiz_end = horiz_start + f\n"
                                "                    a_slice = a_prev_pad"),
    "forward_columns_use_h": ("conv_forward's column start uses h (horiz_start = stride * h)",
                              "                horiz_start = w * stride\n                horiz_end = horiz_start + f\n"
                              "                for c in range(n_C):\n                    a_slice_prev",
                              "                horiz_start = stride * h\n                horiz_end = horiz_start + f\n"
                              "                for c in range(n_C):\n                    a_slice_prev"),
    "float_of_b": ("conv_single_step converts b with float(b), which numpy 2 refuses on a (1, 1, 1) array",
                   "    Z = Z + np.squeeze(b)\n", "    Z = Z + float(b)\n"),
    "array_into_element": ("conv_single_step returns a (1, 1, 1) array, which numpy 2 refuses to assign to Z[i, h, w, c]",
                           "    Z = Z + np.squeeze(b)\n", "    Z = Z + b\n"),
    "pool_average_shape_stride": ("pool_backward spreads the average over (stride, stride) instead of (f, f)",
                                  "shape = (f, f)", "shape = (stride, stride)"),
}


#: Real students' files that hold two mistakes at once (each still one snippet per mistake):
#: name -> (what, ((snippet, replacement), ...)).
TWO_BUGS = {
    "backward_stride_ignored_and_crop": (
        "conv_backward ignores the stride in the row start and crops with [pad:-pad]",
        ((BUGS["crop_minus_pad"][1], BUGS["crop_minus_pad"][2]),
         ("                    vert_start = h * stride\n                    vert_end = vert_start + f\n"
          "                    horiz_start = w * stride\n                    horiz_end = horiz_start + f\n"
          "                    a_slice = a_prev_pad",
          "                    vert_start = h\n                    vert_end = vert_start + f\n"
          "                    horiz_start = w * stride\n                    horiz_end = horiz_start + f\n"
          "                    a_slice = a_prev_pad"))),
    "pool_max_mean_and_average_assigned": (
        "pool_forward averages in max mode too, and pool_backward assigns the average gradient",
        (("A[i, h, w, c] = np.max(a_prev_slice)", "A[i, h, w, c] = np.mean(a_prev_slice)"),
         ("] += distribute_value(da, shape)", "] = distribute_value(da, shape)"))),
}


def _variant(source: str, name: str, what: str, edits) -> str:
    """correct.py with each (snippet, replacement) of ``edits`` applied; a snippet must occur exactly once."""
    body = source.split('"""', 2)[2]
    for old, new in edits:
        if source.count(old) != 1:
            raise ValueError(f"{name}: snippet occurs {source.count(old)} times in correct.py")
        body = body.replace(old, new)
    kind = "One-bug" if len(edits) == 1 else "Two-bug"
    return f'"""{kind} variant of correct.py: {what}."""' + body


def write_bugs(folder) -> Path:
    """Write every ``bug_NAME.py`` into ``folder``; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = (HERE / "correct.py").read_text()
    for name, (what, old, new) in BUGS.items():
        (folder / f"bug_{name}.py").write_text(_variant(source, name, what, ((old, new),)))
    for name, (what, edits) in TWO_BUGS.items():
        (folder / f"bug_{name}.py").write_text(_variant(source, name, what, edits))
    return folder


_written = {}


@functools.lru_cache(maxsize=None)
def report(name: str):
    """``check_impl(bug_file(name))`` with its defaults, once per process: several tests read the same
    (frozen) result, and each check runs the whole battery in a child process (about 0.5 s)."""
    from cnncli.gradcheck.impl import check_impl

    return check_impl(bug_file(name))


def bug_file(name: str) -> Path:
    """Path of ``bug_NAME.py``, written once per process into a temporary folder."""
    if "folder" not in _written:
        _written["folder"] = write_bugs(tempfile.mkdtemp(prefix="cnncli-bugs-"))
    return _written["folder"] / f"bug_{name}.py"


if __name__ == "__main__":
    print(write_bugs(sys.argv[1] if len(sys.argv) > 1 else HERE))
