"""Pasting fixed-size RoI masks back into the image (Mask R-CNN inference)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["paste_masks"]


def _axis_weights(lo: jax.Array, hi: jax.Array, size: int, m: int) -> jax.Array:
    """``[size, m]`` bilinear weights: image pixel ``p`` (centre ``p + 0.5``) samples mask cell
    ``(p + 0.5 - lo) / (hi - lo) * m - 0.5``; pixels outside ``[lo, hi)`` get 0."""
    centre = jnp.arange(size, dtype=jnp.float32) + 0.5
    u = (centre - lo) / jnp.maximum(hi - lo, 1e-6) * m - 0.5
    u_c = jnp.clip(u, 0.0, m - 1.0)
    low = jnp.floor(u_c)
    frac = u_c - low
    high = jnp.minimum(low + 1, m - 1)
    idx = jnp.arange(m, dtype=jnp.float32)
    w = (idx[None] == low[:, None]) * (1 - frac)[:, None] + (idx[None] == high[:, None]) * frac[:, None]
    inside = (centre >= lo) & (centre < hi)
    return w * inside[:, None]


def paste_masks(masks: jax.Array, boxes: jax.Array, image_size: tuple[int, int]) -> jax.Array:
    """``masks <f>[D, m, m]`` (probabilities on each box), ``boxes <f>[D, 4]`` ->
    ``<f>[D, H, W]``: each mask bilinearly resampled into its box, 0 outside it."""
    h, w = image_size
    m = masks.shape[-1]

    def one(mask, box):
        wy = _axis_weights(box[1], box[3], h, m)
        wx = _axis_weights(box[0], box[2], w, m)
        return wy @ mask @ wx.T

    return jax.vmap(one)(masks, boxes)
