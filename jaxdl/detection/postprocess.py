"""From per-box class scores to a fixed-size list of detections (shared by every detector)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.detection.nms import batched_nms

__all__ = ["select_detections"]


def select_detections(boxes: jax.Array, scores: jax.Array, *, max_detections: int = 50,
                      iou_threshold: float = 0.5, score_threshold: float = 0.05,
                      pre_nms_top_k: int = 400) -> dict[str, jax.Array]:
    """Class-aware NMS on one image's candidates.

    Args:
      boxes: ``<f>[D, 4]`` (one box per candidate, shared by all classes) or ``<f>[D, K, 4]``
        (class-specific boxes, as Fast/Faster R-CNN regress them).
      scores: ``<f>[D, K]`` per-class scores (background excluded).
      pre_nms_top_k: only the best ``pre_nms_top_k`` (candidate, class) pairs go into NMS, which
        bounds its ``O(k^2)`` cost.

    Returns:
      ``{"boxes": <f32>[max_detections, 4], "scores": <f32>[max_detections],
      "classes": <i32>[max_detections]}``, best first; unused rows have class -1 and score 0.
    """
    d, k = scores.shape
    if boxes.ndim == 2:
        boxes = jnp.broadcast_to(boxes[:, None, :], (d, k, 4))
    flat_scores = scores.reshape(-1)
    flat_boxes = boxes.reshape(-1, 4)
    flat_classes = jnp.tile(jnp.arange(k, dtype=jnp.int32), d)
    top = min(pre_nms_top_k, d * k)
    s, idx = jax.lax.top_k(flat_scores, top)
    b, c = flat_boxes[idx], flat_classes[idx]
    keep_idx, ok = batched_nms(b, s, c, iou_threshold, max_detections, score_threshold=score_threshold)
    safe = jnp.maximum(keep_idx, 0)
    return {"boxes": jnp.where(ok[:, None], b[safe], 0.0).astype(jnp.float32),
            "scores": jnp.where(ok, s[safe], 0.0).astype(jnp.float32),
            "classes": jnp.where(ok, c[safe], -1).astype(jnp.int32)}
