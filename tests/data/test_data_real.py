"""Facts of the real data sets on this machine: Debian's Fashion-MNIST and scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdl import data
from jaxdl.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def fashion():
    try:
        return {split: data.load("fashion_mnist", split) for split in ("train", "test")}
    except DatasetNotFoundError:
        pytest.skip("real Fashion-MNIST is not installed; `sudo apt-get install dataset-fashion-mnist` "
                    "(or put the IDX files in $JAXDL_DATA) to run these checks")


def test_fashion_mnist_published_facts(fashion):
    train, test = fashion["train"], fashion["test"]
    assert (len(train), len(test)) == (60000, 10000)  # Xiao et al. 2017, Table 1
    for ds in (train, test):
        assert ds.images.shape[1:] == (28, 28, 1) and ds.images.dtype == np.uint8
        assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(train.class_counts(), np.full(10, 6000))
    np.testing.assert_array_equal(test.class_counts(), np.full(10, 1000))
    assert train.images.min() == 0 and train.images.max() == 255


def test_fashion_mnist_statistics(fashion):
    # The widely quoted normalisation constants of the training set: mean 0.2860, std 0.3530.
    mean, std = data.channel_stats(fashion["train"])
    assert abs(float(mean[0]) - 0.2860) < 5e-4 and abs(float(std[0]) - 0.3530) < 5e-4


def test_digits_facts():
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert len(train) + len(test) == 1797 and (len(train), len(test)) == (1438, 359)
    for ds in (train, test):
        assert ds.images.shape[1:] == (8, 8, 1) and ds.images.dtype == np.uint8 and ds.num_classes == 10
    everything = np.concatenate([train.images, test.images])
    assert everything.min() == 0 and everything.max() == 255
    # round(v * 255 / 16) of integer counts 0..16 gives exactly 17 possible levels.
    assert set(np.unique(everything)) <= {round(v * 255 / 16) for v in range(17)}
    # Stratified 20% test: every class holds round(0.2 * count) test examples.
    counts = train.class_counts() + test.class_counts()
    np.testing.assert_array_equal(test.class_counts(), np.round(0.2 * counts))
    # Fixed split: the same images every call, and no image in both halves.
    np.testing.assert_array_equal(data.load("digits", "test").images, test.images)
    from sklearn.datasets import load_digits

    sk = load_digits()
    assert counts.sum() == sk.images.shape[0]
    sk_rows = {tuple(np.round(r * 255 / 16).astype(np.uint8).ravel()) + (int(y),) for r, y in zip(sk.images, sk.target)}
    ours = {tuple(x.ravel()) + (int(y),) for ds in (train, test) for x, y in zip(ds.images, ds.labels)}
    assert ours == sk_rows
