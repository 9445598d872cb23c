"""Box arithmetic in JAX: areas, pairwise IoU, the R-CNN box parametrisation, clipping.

Boxes are ``(x1, y1, x2, y2)`` with pixel *edges* (``x2 - x1`` is the width), the convention of
COCO, torchvision and :mod:`jaxdl.data.shapes`. Every function is pure, jit-able and works on
any leading batch axes unless it says otherwise.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = ["box_area", "box_iou", "box_iou_elementwise", "encode_boxes", "decode_boxes", "clip_boxes",
           "xyxy_to_cxcywh", "cxcywh_to_xyxy", "BBOX_XFORM_CLIP"]

# Largest log-scale a decoded width/height may take: log(1000 / 16), as in the Detectron /
# torchvision implementations of Faster R-CNN, so exp() cannot overflow early in training.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def box_area(boxes: jax.Array) -> jax.Array:
    """``<f>[..., 4] -> <f>[...]``; degenerate boxes (x2 < x1) have area 0."""
    w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return w * h


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pairwise intersection over union, ``a: <f>[N, 4], b: <f>[M, 4] -> <f>[N, M]``.

    A pair whose union is 0 (two empty boxes) has IoU 0 rather than NaN.
    """
    lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
    rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = jnp.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def box_iou_elementwise(a: jax.Array, b: jax.Array) -> jax.Array:
    """IoU of corresponding boxes, ``<f>[..., 4] x <f>[..., 4] -> <f>[...]``."""
    lt = jnp.maximum(a[..., :2], b[..., :2])
    rb = jnp.minimum(a[..., 2:], b[..., 2:])
    wh = jnp.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a) + box_area(b) - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def xyxy_to_cxcywh(boxes: jax.Array) -> jax.Array:
    """``(x1, y1, x2, y2) -> (cx, cy, w, h)`` on the last axis."""
    wh = boxes[..., 2:] - boxes[..., :2]
    return jnp.concatenate([boxes[..., :2] + 0.5 * wh, wh], axis=-1)


def cxcywh_to_xyxy(boxes: jax.Array) -> jax.Array:
    """``(cx, cy, w, h) -> (x1, y1, x2, y2)`` on the last axis."""
    half = 0.5 * boxes[..., 2:]
    return jnp.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def encode_boxes(boxes: jax.Array, reference: jax.Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jax.Array:
    """Regression targets of ``boxes`` relative to ``reference`` (anchors / proposals).

    The parametrisation of R-CNN (Girshick et al. 2014, appendix C) used unchanged by Fast and
    Faster R-CNN and SSD: ``t_x = wx (x - x_a) / w_a``, ``t_y = wy (y - y_a) / h_a``,
    ``t_w = ww log(w / w_a)``, ``t_h = wh log(h / h_a)`` on centres and sizes. ``weights`` scale
    the four terms: ``(10, 10, 5, 5)`` for Faster R-CNN's box head (torchvision) and SSD's
    "variances" (0.1, 0.2); ``(1, 1, 1, 1)`` for the RPN.

    ``boxes, reference: <f>[..., 4] -> <f>[..., 4]``. Sizes are floored at a tiny positive value
    so an empty padding box gives a finite (and masked-out) target.
    """
    wx, wy, ww, wh = weights
    b, r = xyxy_to_cxcywh(boxes), xyxy_to_cxcywh(reference)
    rw, rh = jnp.maximum(r[..., 2], 1e-6), jnp.maximum(r[..., 3], 1e-6)
    bw, bh = jnp.maximum(b[..., 2], 1e-6), jnp.maximum(b[..., 3], 1e-6)
    return jnp.stack([wx * (b[..., 0] - r[..., 0]) / rw, wy * (b[..., 1] - r[..., 1]) / rh,
                      ww * jnp.log(bw / rw), wh * jnp.log(bh / rh)], axis=-1)


def decode_boxes(deltas: jax.Array, reference: jax.Array, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 clip: float = BBOX_XFORM_CLIP) -> jax.Array:
    """Inverse of :func:`encode_boxes`: ``deltas, reference: <f>[..., 4] -> boxes <f>[..., 4]``.

    The log-size terms are clipped at ``clip`` (default ``log(1000/16)``) before ``exp``.
    """
    wx, wy, ww, wh = weights
    r = xyxy_to_cxcywh(reference)
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = jnp.minimum(deltas[..., 2] / ww, clip)
    dh = jnp.minimum(deltas[..., 3] / wh, clip)
    cx = dx * r[..., 2] + r[..., 0]
    cy = dy * r[..., 3] + r[..., 1]
    w = jnp.exp(dw) * r[..., 2]
    h = jnp.exp(dh) * r[..., 3]
    return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def clip_boxes(boxes: jax.Array, image_size: tuple[int, int]) -> jax.Array:
    """Clip ``<f>[..., 4]`` boxes to an image of ``(height, width)``: x to [0, W], y to [0, H]."""
    h, w = image_size
    lo = jnp.zeros(4, boxes.dtype)
    hi = jnp.asarray([w, h, w, h], boxes.dtype)
    return jnp.clip(boxes, lo, hi)
