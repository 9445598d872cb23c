"""``digits``: the small real data set that ships with scikit-learn, usable with no files or network.

UCI "Optical Recognition of Handwritten Digits" test set as bundled by
``sklearn.datasets.load_digits``: 1,797 images of 8x8 pixels, 10 classes (about 180 each),
each pixel a count 0..16 of set pixels in a 4x4 block of a 32x32 bitmap (Alpaydin & Kaynak 1998).

jaxdl stores them like every other set: ``<u8>[N, 8, 8, 1]`` with ``round(v * 255 / 16)``, and
fixes one train/test split so results are comparable across runs and machines: stratified,
20% of each class held out as test, seed 0 (``stratified_split_indices(labels, 0.2, 0)``),
which gives 1,438 train and 359 test images.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxdl.data.dataset import Dataset
from jaxdl.data.loader import stratified_split_indices
from jaxdl.errors import DataError

__all__ = ["load_digits", "DIGITS_TEST_FRACTION", "DIGITS_SPLIT_SEED"]

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise DataError("the digits data set comes with scikit-learn, which is not installed; "
                        "pip install scikit-learn") from None
    bunch = sklearn_load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # [1797, 8, 8], 0..16
    images = np.round(values * 255.0 / 16.0).astype(np.uint8)[..., None]
    images.setflags(write=False)
    labels = np.asarray(bunch.target, dtype=np.int32)
    labels.setflags(write=False)
    return images, labels


def load_digits(split: str = "train") -> Dataset:
    """The fixed ``"train"`` (1,438) / ``"test"`` (359) split, or ``"all"`` (1,797), of scikit-learn's digits."""
    images, labels = _digits_arrays()
    classes = tuple(str(i) for i in range(10))
    if split == "all":
        return Dataset(images.copy(), labels.copy(), classes, "digits/all")
    train, test = stratified_split_indices(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = train if split == "train" else test
    return Dataset(images[idx], labels[idx], classes, f"digits/{split}")
