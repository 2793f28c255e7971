"""The digits are read from scikit-learn's bundled file without importing scikit-learn, and
equal what scikit-learn's own ``load_digits`` returns."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from accelwrap.runner.data import DigitsDataset, digits_arrays


def test_the_arrays_equal_scikit_learns_load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels, labels = digits_arrays()
    assert pixels.dtype == digits.data.dtype and labels.dtype == np.int64
    assert np.array_equal(pixels, digits.data) and np.array_equal(labels, digits.target)


def test_building_the_dataset_does_not_import_scikit_learn():
    code = ("import sys; from accelwrap.runner.data import DigitsDataset; "
            "n = len(DigitsDataset('train')); "
            "print(n, 'sklearn' in sys.modules, 'scipy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [str(len(DigitsDataset("train"))), "False", "False"]
