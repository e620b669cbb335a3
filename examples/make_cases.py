"""Regenerate the small case files of examples/ (deterministic: same bytes of data every run).

    exercise_conv.h5   the classic exercise's conv_forward test call as a case:
                       np.random.seed(1); A_prev (2,5,7,4), W (3,3,4,8), b (1,1,1,8), pad 1, stride 2
                       (published: mean of Z = 0.5511276474566768); dZ = Z
    exercise_conv_backward.h5
                       the exercise's conv_backward test: seed 1, A_prev (10,4,4,3), W (2,2,3,8),
                       b (1,1,1,8), pad 2, stride 2, dZ = Z (published means: dA 1.45243777754,
                       dW 1.72699145831, db 7.83923256462)
    conv_case.h5       four digits from digits.h5 through four 3x3 edge filters, pad same, with dZ
    pool_case.npz      3x3 max pooling, stride 2, pad 1, on small integer images (ties), with dA
    edge_filters.npy   the four 3x3 filters (3, 3, 1, 4): Sobel x, Sobel y, Laplacian, box blur

Usage: ``python examples/make_cases.py [OUT_DIR]`` (default: examples/; reads examples/digits.h5,
see make_digits.py).
"""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

from cnncli.engine import ConvParams, conv2d  # noqa: E402


def edge_filters() -> np.ndarray:
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    laplace = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    blur = np.full((3, 3), 1 / 9)
    return np.stack([sobel_x, sobel_x.T, laplace, blur], axis=-1)[:, :, None, :]  # (3, 3, 1, 4)


def write_h5(path: str, arrays: dict, attrs: dict) -> None:
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f[name] = value
        f.attrs.update(attrs)


def main(out: str = HERE) -> None:
    np.random.seed(1)  # the exercise's own draws, in its order
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = conv2d(A_prev, W, b, ConvParams(stride=2, pad=1))
    write_h5(os.path.join(out, "exercise_conv.h5"), {"A_prev": A_prev, "W": W, "b": b, "dZ": Z},
             {"layer": "conv", "pad": 1, "stride": 2,
              "note": "classic exercise: conv_forward(A_prev, W, b, {'pad': 1, 'stride': 2}); dZ = Z"})

    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = conv2d(A_prev, W, b, ConvParams(stride=2, pad=2))
    write_h5(os.path.join(out, "exercise_conv_backward.h5"), {"A_prev": A_prev, "W": W, "b": b, "dZ": Z},
             {"layer": "conv", "pad": 2, "stride": 2,
              "note": "classic exercise: conv_backward(Z, cache) after conv_forward with pad 2, stride 2"})

    W_edges = edge_filters()
    np.save(os.path.join(out, "edge_filters.npy"), W_edges)
    with h5py.File(os.path.join(HERE, "digits.h5"), "r") as f:
        digits = f["images"][:4]  # (4, 8, 8, 1) uint8
    dZ = np.random.default_rng(0).standard_normal((4, 8, 8, 4))
    write_h5(os.path.join(out, "conv_case.h5"),
             {"A_prev": digits, "W": W_edges, "b": np.zeros(4), "dZ": dZ},
             {"layer": "conv", "pad": "same", "stride": 1, "note": "four digits, four 3x3 edge filters"})

    rng = np.random.default_rng(1)
    A = rng.integers(0, 5, (2, 6, 6, 3)).astype(np.float64)  # small integers: max-pool ties
    np.savez(os.path.join(out, "pool_case.npz"), A_prev=A, dA=rng.standard_normal((2, 3, 3, 3)),
             layer=np.array("pool"), f=np.array(3), stride=np.array(2), pad=np.array(1), mode=np.array("max"))
    print(f"wrote exercise_conv.h5, exercise_conv_backward.h5, conv_case.h5, pool_case.npz, "
          f"edge_filters.npy in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else HERE)
