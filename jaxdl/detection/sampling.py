"""Static-shape label assignment and sampling for the two-stage detectors.

Every function works on one image with padded inputs (vmap it over a batch) and returns arrays
of fixed size, so the whole Faster / Mask R-CNN training step jits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.detection.boxes import box_iou

__all__ = ["assign", "sample_balanced"]


def assign(candidates: jax.Array, candidate_valid: jax.Array, boxes: jax.Array, classes: jax.Array,
           high: float, low: float, allow_low_quality: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Label candidates (anchors or proposals) against one image's ground truth.

    ``candidates <f>[A, 4]``, ``boxes <f>[M, 4]``, ``classes <i>[M]`` (-1 padding) ->
    ``(label <i32>[A]`` 1 positive / 0 negative / -1 ignored, ``matched <i32>[A]`` index of the best
    ground truth, ``max_iou <f>[A])``. Positive: IoU >= ``high``; negative: IoU < ``low``.
    ``allow_low_quality`` also makes positive, for each ground truth, the candidates of highest
    IoU with it (Faster R-CNN sec. 3.1.2, rule (i), so every object gets an anchor).
    """
    valid_gt = classes >= 0
    iou = jnp.where(valid_gt[None, :] & candidate_valid[:, None], box_iou(candidates, boxes), -1.0)   # [A, M]
    matched = jnp.argmax(iou, axis=1).astype(jnp.int32)
    max_iou = jnp.max(iou, axis=1)
    label = jnp.where(max_iou >= high, 1, jnp.where(max_iou < low, 0, -1))
    if allow_low_quality:
        best_per_gt = jnp.max(iou, axis=0)                                   # [M]
        is_best = (iou == best_per_gt[None, :]) & valid_gt[None, :] & (best_per_gt[None, :] > 0)
        label = jnp.where(is_best.any(axis=1), 1, label)
    label = jnp.where(candidate_valid, label, -1)
    return label.astype(jnp.int32), matched, max_iou


def sample_balanced(key: jax.Array, label: jax.Array, num_samples: int, positive_fraction: float
                    ) -> tuple[jax.Array, jax.Array]:
    """Choose ``num_samples`` candidates, at most ``positive_fraction`` of them positive, the rest
    negative, uniformly at random (Faster R-CNN: 256 anchors, 1:1; Fast R-CNN: 64 RoIs, 25%).

    ``label <i32>[A]`` (1 / 0 / -1) -> ``(index <i32>[num_samples], kind <i32>[num_samples])``:
    ``kind`` is 1 for a positive, 0 for a negative and -1 for an unused slot (fewer candidates than
    ``num_samples``; its ``index`` is -1). Positives come first.
    """
    a = label.shape[0]
    u = jax.random.uniform(key, (a,))
    max_pos = int(round(num_samples * positive_fraction))
    pos_key = jnp.where(label == 1, u + 2.0, -1.0)                # positives first, in random order
    n_pos = jnp.minimum(jnp.sum(label == 1), max_pos)
    neg_key = jnp.where(label == 0, u + 2.0, -1.0)
    _, pos_idx = jax.lax.top_k(pos_key, min(max_pos, a))
    _, neg_idx = jax.lax.top_k(neg_key, min(num_samples, a))
    slot = jnp.arange(num_samples)
    pos_part = jnp.where(slot < n_pos, jnp.pad(pos_idx, (0, max(0, num_samples - pos_idx.shape[0])))[:num_samples], -1)
    neg_slot = slot - n_pos
    neg_take = jnp.pad(neg_idx, (0, max(0, num_samples - neg_idx.shape[0])))
    neg_part = neg_take[jnp.clip(neg_slot, 0, num_samples - 1)]
    n_neg = jnp.sum(label == 0)
    index = jnp.where(slot < n_pos, pos_part, jnp.where(neg_slot < n_neg, neg_part, -1)).astype(jnp.int32)
    kind = jnp.where(slot < n_pos, 1, jnp.where((neg_slot < n_neg), 0, -1)).astype(jnp.int32)
    return index, kind
