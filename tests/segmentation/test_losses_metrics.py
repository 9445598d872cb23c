"""Pixel-wise cross-entropy with ignore label; confusion-matrix metrics on hand-worked cases."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.segmentation import (confusion_matrix, iou_per_class, mean_iou, pixel_accuracy, pixel_cross_entropy,
                                segmentation_sums)
from jaxdl.segmentation.metrics import frequency_weighted_iou, mean_accuracy, segmentation_scores

LABELS = np.array([[[0, 0, 1], [1, 2, 255]]])
PREDS = np.array([[[0, 1, 1], [1, 2, 0]]])


def test_confusion_matrix_hand_worked():
    cm = np.asarray(confusion_matrix(jnp.asarray(PREDS), jnp.asarray(LABELS), 3))
    # rows = truth: class 0 -> {0, 1}, class 1 -> {1, 1}, class 2 -> {2}; the 255 pixel is ignored.
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    assert pixel_accuracy(cm) == pytest.approx(4 / 5)
    np.testing.assert_allclose(iou_per_class(cm), [1 / 2, 2 / 3, 1.0])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert mean_accuracy(cm) == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert frequency_weighted_iou(cm) == pytest.approx((2 * 0.5 + 2 * 2 / 3 + 1 * 1) / 5)


def test_absent_class_is_left_out_of_the_mean():
    cm = np.asarray(confusion_matrix(jnp.asarray(PREDS), jnp.asarray(LABELS), 4))
    iou = iou_per_class(cm)
    assert math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # A class that is predicted but never true counts with IoU 0.
    cm2 = np.asarray(confusion_matrix(jnp.asarray([[3, 0]]), jnp.asarray([[0, 0]]), 4))
    np.testing.assert_array_equal(np.isnan(iou_per_class(cm2)), [False, True, True, False])
    assert mean_iou(cm2) == pytest.approx(0.25)


def test_perfect_and_mask():
    labels = np.random.default_rng(0).integers(0, 4, size=(3, 5, 5))
    cm = np.asarray(confusion_matrix(jnp.asarray(labels), jnp.asarray(labels), 4))
    assert mean_iou(cm) == 1.0 and pixel_accuracy(cm) == 1.0 and cm.sum() == 75
    masked = confusion_matrix(jnp.asarray(labels), jnp.asarray(labels), 4, mask=jnp.asarray([1, 0, 1]))
    assert int(np.asarray(masked).sum()) == 50


def _numpy_ce(logits, labels, ignore=255):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    valid = labels != ignore
    picked = np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -(picked * valid).sum() / valid.sum()


def test_pixel_cross_entropy_is_the_mean_over_valid_pixels():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=(3, 4, 5))
    labels[0, :2] = 255
    labels[2] = 255                                   # an image with no valid pixel
    per_image = np.asarray(pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
    assert per_image.shape == (3,) and per_image[2] == 0
    assert per_image.mean() == pytest.approx(_numpy_ce(logits, labels), rel=1e-5)
    assert float(pixel_cross_entropy(jnp.asarray(logits), jnp.full((3, 4, 5), 255)).sum()) == 0.0


def test_pixel_cross_entropy_torch_parity():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(2, 6, 7))
    labels[1, 3:] = 255
    ours = float(np.mean(np.asarray(pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))))
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(logits.transpose(0, 3, 1, 2)),
                                            torch.from_numpy(labels), ignore_index=255)
    assert ours == pytest.approx(float(ref), rel=1e-5)


def test_segmentation_sums_and_scores():
    logits = np.zeros((1, 2, 3, 3), np.float32)
    np.put_along_axis(logits, PREDS[..., None], 5.0, axis=-1)
    labels = jnp.asarray(LABELS)
    sums = segmentation_sums(jnp.asarray(logits), labels, pixel_cross_entropy(jnp.asarray(logits), labels))
    scores = segmentation_scores({k: np.asarray(v) for k, v in sums.items()}, "test_")
    assert scores["test_pixel_accuracy"] == pytest.approx(0.8)
    assert scores["test_mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert scores["test_loss"] > 0
