"""The in-memory data set every reader returns.

A :class:`Dataset` is a labelled image classification set held on the host as numpy
arrays: ``images: <u8>[N, H, W, C]`` (NHWC, the layout every jaxdl model takes) and
``labels: <i32>[N]`` indexing ``classes``. Conversion to float, padding/resizing to a
model's input and augmentation happen later, on device (``jaxdl.data.preprocess``,
``jaxdl.data.augment``), so the host copy stays 4x smaller than float32.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jaxdl.errors import DataError

__all__ = ["Dataset"]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images and integer labels of one split of a classification data set.

    Attributes:
      images: ``<u8>[N, H, W, C]`` pixel values 0..255, C = 1 (grayscale) or 3 (RGB).
      labels: ``<i32>[N]`` class indices in ``[0, len(classes))``; any integer array is
        accepted and stored as int32.
      classes: class names; ``classes[labels[i]]`` names example ``i``.
      name: where the data came from (``"fashion_mnist/train"``, ``"folder:/data/pets"``).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self):
        images, labels = self.images, self.labels
        where = f"data set {self.name!r}" if self.name else "data set"
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            got = (f"{type(images).__name__} {getattr(images, 'dtype', '')} shape {getattr(images, 'shape', '?')}")
            raise DataError(f"{where}: images must be a uint8 numpy array [N, H, W, C], got {got}; "
                            f"convert pixel values 0..255 with np.asarray(x, np.uint8) and add a channel axis "
                            f"for grayscale")
        if images.shape[-1] not in (1, 3):
            raise DataError(f"{where}: images have {images.shape[-1]} channels (shape {images.shape}); "
                            f"expected 1 (grayscale) or 3 (RGB) in the last axis (NHWC)")
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} shape {labels.shape}")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; they must match")
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise DataError(f"{where}: no class names given; pass classes=('cat', 'dog', ...)")
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{where}: labels range over {int(labels.min())}..{int(labels.max())} but there are "
                            f"{len(classes)} classes; labels must lie in 0..{len(classes) - 1}")
        object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.images.shape[1:])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "Dataset":
        """The examples at ``indices`` (in that order), same classes; a copy, not a view."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise DataError(f"subset indices must be integers, got {indices.dtype}")
        indices = indices.astype(np.int64, copy=False)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise DataError(f"subset index out of range for {len(self)} examples "
                            f"(got {int(indices.min())}..{int(indices.max())})")
        return Dataset(self.images[indices], self.labels[indices], self.classes,
                       self.name if name is None else name)

    def class_counts(self) -> np.ndarray:
        """``<i64>[num_classes]``: how many examples each class has."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes})")
