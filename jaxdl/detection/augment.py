"""Box-aware augmentation, pure and jit-able: horizontal flip, scale (zoom) and crop.

Every function takes a batch ``images <f|u8>[N, H, W, C]``, ``boxes <f>[N, M, 4]`` (pixel-edge
xyxy), ``classes <i>[N, M]`` (-1 padding) and optional instance ``masks <bool|f>[N, M, H, W]``,
and returns them transformed with the same shapes, so a jitted train step can call it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdl.detection.boxes import box_area

__all__ = ["hflip", "random_hflip", "scale_crop", "random_scale_crop"]


def hflip(images, boxes, classes, masks=None, flip=None):
    """Mirror the images where ``flip <bool>[N]`` (all when None): ``x -> W - x``."""
    n, _, w, _ = images.shape
    flip = jnp.ones((n,), bool) if flip is None else flip
    images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
    flipped = jnp.stack([w - boxes[..., 2], boxes[..., 1], w - boxes[..., 0], boxes[..., 3]], axis=-1)
    boxes = jnp.where(flip[:, None, None] & (classes >= 0)[..., None], flipped, boxes)
    if masks is not None:
        masks = jnp.where(flip[:, None, None, None], masks[..., ::-1], masks)
    return images, boxes, classes, masks


def random_hflip(key, images, boxes, classes, masks=None, p: float = 0.5):
    """:func:`hflip` each image with probability ``p``."""
    return hflip(images, boxes, classes, masks, jax.random.bernoulli(key, p, (images.shape[0],)))


def scale_crop(images, boxes, classes, masks=None, scale=None, offset=None, min_visible: float = 0.5):
    """Zoom each image by ``scale <f>[N]`` (>= 1 zooms in) and keep the ``H x W`` window whose
    top-left corner is ``offset <f>[N, 2]`` (x, y) pixels of the zoomed image, i.e. a crop of a
    rescaled image at the original size. Boxes are scaled, shifted and clipped to the window;
    an object left with less than ``min_visible`` of its (scaled) area gets class -1 and a zero
    box. Images and masks are resampled bilinearly (masks thresholded at 0.5).
    """
    n, h, w, c = images.shape
    scale = jnp.ones((n,)) if scale is None else scale
    offset = jnp.zeros((n, 2)) if offset is None else offset

    def warp(img, s, off, method):
        # output pixel (u, v) shows zoomed pixel (u + off): input = (u + off) / s
        return jax.image.scale_and_translate(img, img.shape, (0, 1), jnp.stack([s, s]),
                                             jnp.stack([-off[1], -off[0]]), method=method, antialias=False)

    out = jax.vmap(lambda im, s, o: warp(im.astype(jnp.float32), s, o, "linear"))(images, scale, offset)
    out = out.astype(images.dtype) if images.dtype != jnp.uint8 else jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
    shift = jnp.concatenate([offset, offset], axis=-1)[:, None, :]
    moved = boxes * scale[:, None, None] - shift
    clipped = jnp.clip(moved, 0.0, jnp.asarray([w, h, w, h], boxes.dtype))
    keep = (classes >= 0) & (box_area(clipped) >= min_visible * box_area(moved)) & (box_area(clipped) > 0)
    boxes = jnp.where(keep[..., None], clipped, 0.0)
    classes = jnp.where(keep, classes, -1)
    if masks is not None:
        m = jax.vmap(jax.vmap(lambda mk, s, o: warp(mk.astype(jnp.float32)[..., None], s, o, "linear")[..., 0],
                              in_axes=(0, None, None)))(masks, scale, offset)
        masks = jnp.where(keep[..., None, None], m > 0.5, False).astype(masks.dtype)
    return out, boxes, classes, masks


def random_scale_crop(key, images, boxes, classes, masks=None, max_scale: float = 1.5, min_visible: float = 0.5):
    """:func:`scale_crop` with ``scale ~ U[1, max_scale]`` and a uniform random window."""
    n, h, w, _ = images.shape
    k1, k2 = jax.random.split(key)
    scale = jax.random.uniform(k1, (n,), minval=1.0, maxval=max_scale)
    room = jnp.stack([w * (scale - 1), h * (scale - 1)], axis=-1)
    offset = jax.random.uniform(k2, (n, 2)) * room
    return scale_crop(images, boxes, classes, masks, scale, offset, min_visible)
