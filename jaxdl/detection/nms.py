"""Non-maximum suppression with a static output size: jit-able, batched, class-aware.

``nms`` keeps the same boxes as ``torchvision.ops.nms`` (greedy, highest score first, a box is
suppressed by a kept box whose IoU with it is *strictly* above the threshold) but returns a fixed
number of indices padded with -1, so it composes with ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.detection.boxes import box_iou

__all__ = ["nms", "batched_nms", "nms_mask"]


def nms_mask(boxes: jax.Array, scores: jax.Array, iou_threshold: float,
             valid: jax.Array | None = None) -> jax.Array:
    """``<bool>[N]``: which boxes greedy NMS keeps (boxes: ``<f>[N, 4]``, scores: ``<f>[N]``).

    ``valid`` (``<bool>[N]``) marks candidates; invalid ones are never kept and suppress nothing.
    Cost is one ``N x N`` IoU matrix and an ``N``-step loop, fine for the few thousand candidates
    of the detectors here.
    """
    n = boxes.shape[0]
    if valid is None:
        valid = jnp.ones((n,), bool)
    order = jnp.argsort(-scores, stable=True)
    b = boxes[order]
    iou = box_iou(b, b)
    valid_sorted = valid[order]

    def body(i, state):
        keep, suppressed = state
        k = valid_sorted[i] & ~suppressed[i]
        keep = keep.at[i].set(k)
        suppressed = suppressed | (k & (iou[i] > iou_threshold))
        return keep, suppressed

    keep_sorted, _ = jax.lax.fori_loop(0, n, body, (jnp.zeros((n,), bool), jnp.zeros((n,), bool)))
    return jnp.zeros((n,), bool).at[order].set(keep_sorted)


def nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float, max_output: int,
        score_threshold: float | None = None, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Greedy NMS returning at most ``max_output`` indices, highest score first.

    Args:
      boxes: ``<f>[N, 4]``; scores: ``<f>[N]``.
      iou_threshold: suppress boxes with IoU strictly above it.
      max_output: static length of the result.
      score_threshold: drop boxes with a score at or below it before NMS.
      valid: ``<bool>[N]`` candidates (e.g. the real rows of a padded array).

    Returns:
      ``(indices <i32>[max_output], keep <bool>[max_output])``: kept indices in descending score
      order, padded with -1 where ``keep`` is False.
    """
    n = boxes.shape[0]
    if valid is None:
        valid = jnp.ones((n,), bool)
    if score_threshold is not None:
        valid = valid & (scores > score_threshold)
    kept = nms_mask(boxes, scores, iou_threshold, valid)
    # Rank kept boxes by score; the others go last.
    key = jnp.where(kept, scores, -jnp.inf)
    k = min(max_output, n)
    _, idx = jax.lax.top_k(key, k)
    ok = kept[idx]
    idx = jnp.where(ok, idx, -1).astype(jnp.int32)
    if k < max_output:
        idx = jnp.concatenate([idx, jnp.full((max_output - k,), -1, jnp.int32)])
        ok = jnp.concatenate([ok, jnp.zeros((max_output - k,), bool)])
    return idx, ok


def batched_nms(boxes: jax.Array, scores: jax.Array, classes: jax.Array, iou_threshold: float,
                max_output: int, score_threshold: float | None = None,
                valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Class-aware NMS (``torchvision.ops.batched_nms``): boxes of different classes never
    suppress each other. Same arguments as :func:`nms` plus ``classes: <i>[N]``.

    Works by shifting each class's boxes by ``class * (max coordinate + 1)`` so boxes of distinct
    classes cannot overlap, then one :func:`nms`. For a batch of images use ``jax.vmap``.
    """
    offset = (jnp.max(jnp.abs(boxes)) + 1.0) * classes.astype(boxes.dtype)
    return nms(boxes + offset[:, None], scores, iou_threshold, max_output, score_threshold, valid)
