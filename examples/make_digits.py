"""Convert scikit-learn's 8x8 handwritten digits into examples/digits.h5 (run once).

The digits (1,797 images of 8x8 pixels, grey levels 0-16) are the UCI "Optical
Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998), CC BY 4.0,
as shipped inside scikit-learn. scikit-learn is needed only to run this script;
cnncli itself never imports it.

Writes::

    /images   (1797, 8, 8, 1) uint8   NHWC, values 0..16
    /labels   (1797,)         uint8   the digit shown, 0..9

Usage: ``pip install scikit-learn && python examples/make_digits.py [OUT]``.
"""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np


def main(out: str) -> None:
    from sklearn.datasets import load_digits  # only here: not a cnncli dependency

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # (1797, 8, 8) floats 0..16 -> NHWC uint8
    assert images.shape == (1797, 8, 8, 1) and np.array_equal(images[..., 0], digits.images)
    with h5py.File(out, "w") as f:
        f.create_dataset("images", data=images, compression="gzip", compression_opts=9)
        f.create_dataset("labels", data=digits.target.astype(np.uint8), compression="gzip", compression_opts=9)
        f.attrs["source"] = "scikit-learn sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits)"
        f.attrs["license"] = "CC BY 4.0"
        f.attrs["layout"] = "nhwc"
        f.attrs["value_range"] = np.array([0, 16])
    print(f"wrote {out}: images {images.shape} uint8, labels {digits.target.shape}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.h5"))
