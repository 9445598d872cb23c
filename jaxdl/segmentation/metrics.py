"""Segmentation metrics from one confusion matrix (Long et al. 2015, sec. 5).

With ``n_ij`` the number of pixels of class ``i`` predicted as ``j`` and ``t_i = sum_j n_ij``:

* pixel accuracy ``sum_i n_ii / sum_i t_i``;
* mean (class) accuracy ``(1/k) sum_i n_ii / t_i``;
* mean IU ``(1/k) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``;
* frequency weighted IU ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``.

Means run over the classes that occur (in the labels or the predictions), so a class absent from
both does not count as 0 or 1. The matrix is a sum, so batches (and devices) add up exactly;
``confusion_matrix`` is jit-able.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.segmentation.losses import IGNORE_LABEL

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy", "mean_accuracy",
           "frequency_weighted_iou", "segmentation_sums", "segmentation_scores"]


def confusion_matrix(predictions: jax.Array, labels: jax.Array, num_classes: int,
                     ignore_label: int = IGNORE_LABEL, mask: jax.Array | None = None) -> jax.Array:
    """``<i32>[K, K]``, rows = true class, columns = predicted class.

    ``predictions``, ``labels``: ``<int>[...]`` of one shape (e.g. ``[N, H, W]``). Pixels whose label
    is ``ignore_label`` or outside ``0..K-1`` are not counted; ``mask <[N]>`` drops whole images
    (padding of the last eval batch).
    """
    labels = labels.astype(jnp.int32)
    predictions = predictions.astype(jnp.int32)
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    if mask is not None:
        valid = valid & (mask.reshape(mask.shape + (1,) * (labels.ndim - mask.ndim)) > 0)
    flat = jnp.where(valid, labels * num_classes + jnp.clip(predictions, 0, num_classes - 1), 0)
    counts = jnp.bincount(flat.ravel(), weights=valid.ravel().astype(jnp.int32), length=num_classes ** 2)
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def _parts(cm):
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    true = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    return cm, tp, true, pred


def iou_per_class(cm) -> np.ndarray:
    """``<f64>[K]`` intersection over union per class; NaN for a class absent from labels and predictions."""
    _, tp, true, pred = _parts(cm)
    union = true + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm) -> float:
    """Mean IU over the classes that occur (labels or predictions); NaN for an empty matrix."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm) -> float:
    cm, tp, _, _ = _parts(cm)
    return float(tp.sum() / cm.sum()) if cm.sum() > 0 else float("nan")


def mean_accuracy(cm) -> float:
    """Mean over classes present in the labels of ``n_ii / t_i``."""
    _, tp, true, _ = _parts(cm)
    present = true > 0
    return float(np.mean(tp[present] / true[present])) if present.any() else float("nan")


def frequency_weighted_iou(cm) -> float:
    _, tp, true, _ = _parts(cm)
    iou = iou_per_class(cm)
    present = true > 0
    return float(np.sum(true[present] * iou[present]) / true.sum()) if present.any() else float("nan")


def segmentation_sums(logits: jax.Array, labels: jax.Array, per_example_loss: jax.Array,
                      mask: jax.Array | None = None, ignore_label: int = IGNORE_LABEL) -> dict[str, jax.Array]:
    """Metric sums of one batch for the train/eval steps (``metrics_fn``): ``loss_sum``, ``count``
    (images) and ``confusion <i32>[K, K]``. ``logits: <f>[N, H, W, K]``, ``labels: <int>[N, H, W]``."""
    weight = jnp.ones(per_example_loss.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    predictions = jnp.argmax(logits, axis=-1)
    return {"loss_sum": jnp.sum(per_example_loss * weight), "count": jnp.sum(weight),
            "confusion": confusion_matrix(predictions, labels, logits.shape[-1], ignore_label, mask)}


def segmentation_scores(sums: dict, prefix: str = "") -> dict[str, float]:
    """Accumulated sums -> ``loss, pixel_accuracy, mean_accuracy, mean_iou, fw_iou`` (floats)."""
    cm = np.asarray(sums["confusion"])
    n = max(float(sums["count"]), 1.0)
    return {f"{prefix}loss": float(sums["loss_sum"]) / n, f"{prefix}pixel_accuracy": pixel_accuracy(cm),
            f"{prefix}mean_accuracy": mean_accuracy(cm), f"{prefix}mean_iou": mean_iou(cm),
            f"{prefix}fw_iou": frequency_weighted_iou(cm)}
