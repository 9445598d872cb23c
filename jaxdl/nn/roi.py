"""Region-of-interest pooling: RoI max pooling (Fast R-CNN) and RoI Align (Mask R-CNN).

Both take NHWC features and RoIs ``<f>[R, 5] = (batch_index, x1, y1, x2, y2)`` in image
coordinates (scaled to the feature map by ``spatial_scale``, e.g. 1/16 for a stride-16
backbone), return ``<f>[R, PH, PW, C]``, have static shapes, jit, vmap and differentiate, and
reproduce ``torchvision.ops.roi_pool`` / ``roi_align`` (tested against them).

Both are computed separably: a bin is a rectangle, so the max over a bin is a max over its rows
of a max over its columns, and bilinear sampling is a product of a row and a column weight.
That keeps the memory at ``R * P * H * W * C`` rather than ``R * P^2 * H * W * C``.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

__all__ = ["roi_pool", "roi_align"]


def _check(features: jax.Array, rois: jax.Array, output_size, name: str) -> tuple[int, int]:
    if features.ndim != 4:
        raise ConfigError(f"{name} expects features [N, H, W, C], got shape {features.shape}")
    if rois.ndim != 2 or rois.shape[-1] != 5:
        raise ConfigError(f"{name} expects rois [R, 5] = (batch_index, x1, y1, x2, y2), got shape {rois.shape}")
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if ph < 1 or pw < 1:
        raise ConfigError(f"{name} output_size must be positive, got {output_size}")
    return int(ph), int(pw)


def _round_half_away(x: jax.Array) -> jax.Array:
    # C's round() (used by torchvision's roi_pool) rounds halves away from zero; jnp.round is banker's.
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def roi_pool(features: jax.Array, rois: jax.Array, output_size: int | tuple[int, int],
             spatial_scale: float = 1.0) -> jax.Array:
    """RoI max pooling (Girshick 2015, Fast R-CNN, sec. 2.1).

    The RoI is snapped to the feature grid (``round(x * spatial_scale)``, inclusive ends, at
    least 1 cell), divided into ``PH x PW`` bins of ``floor``/``ceil`` extents, and each bin
    max-pooled; an empty bin (wholly outside the map) gives 0. Gradients flow to the maximum.

    ``features: <f>[N, H, W, C]``, ``rois: <f>[R, 5] -> <f>[R, PH, PW, C]``.
    """
    ph, pw = _check(features, rois, output_size, "roi_pool")
    features, rois = jnp.asarray(features), jnp.asarray(rois)
    _, h, w, _ = features.shape
    neg = jnp.asarray(-jnp.inf, features.dtype)

    def one(roi):
        fmap = features[roi[0].astype(jnp.int32)]                               # [H, W, C]
        x1, y1, x2, y2 = (_round_half_away(roi[i] * spatial_scale) for i in range(1, 5))
        rw = jnp.maximum(x2 - x1 + 1, 1.0)
        rh = jnp.maximum(y2 - y1 + 1, 1.0)

        def bins(start, extent, pooled, size):
            p = jnp.arange(pooled, dtype=jnp.float32)
            lo = jnp.clip(jnp.floor(p * extent / pooled) + start, 0, size)
            hi = jnp.clip(jnp.ceil((p + 1) * extent / pooled) + start, 0, size)
            idx = jnp.arange(size, dtype=jnp.float32)
            return (idx[None, :] >= lo[:, None]) & (idx[None, :] < hi[:, None])  # [pooled, size]

        mh, mw = bins(y1, rh, ph, h), bins(x1, rw, pw, w)
        cols = jnp.max(jnp.where(mw[None, :, :, None], fmap[:, None, :, :], neg), axis=2)   # [H, PW, C]
        out = jnp.max(jnp.where(mh[:, :, None, None], cols[None], neg), axis=1)           # [PH, PW, C]
        empty = ~(mh.any(axis=1)[:, None] & mw.any(axis=1)[None, :])
        return jnp.where(empty[..., None], jnp.zeros_like(out), out)

    return jax.vmap(one)(rois)


def _bilinear_weights(coords: jax.Array, size: int) -> jax.Array:
    """``<f>[S] -> <f>[S, size]``: torchvision's bilinear weights of samples along one axis.

    A sample below -1 or above ``size`` contributes nothing; otherwise it is clamped at 0 and
    at ``size - 1`` and split between its two neighbouring cells.
    """
    outside = (coords < -1.0) | (coords > size)
    c = jnp.maximum(coords, 0.0)
    low = jnp.floor(c)
    at_end = low >= size - 1
    low = jnp.where(at_end, size - 1, low)
    high = jnp.where(at_end, size - 1, low + 1)
    c = jnp.where(at_end, low, c)
    frac = c - low
    idx = jnp.arange(size, dtype=coords.dtype)
    wts = (idx[None, :] == low[:, None]) * (1.0 - frac)[:, None] + (idx[None, :] == high[:, None]) * frac[:, None]
    return jnp.where(outside[:, None], 0.0, wts)


def roi_align(features: jax.Array, rois: jax.Array, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = False,
              max_adaptive_samples: int = 8) -> jax.Array:
    """RoI Align (He et al. 2017, Mask R-CNN, sec. 3): no snapping, bilinear sampling.

    Each of the ``PH x PW`` bins averages ``g_h x g_w`` bilinearly interpolated samples at
    regular positions. ``sampling_ratio > 0`` fixes ``g = sampling_ratio`` (the paper uses 2x2
    = 4 samples); ``sampling_ratio <= 0`` is torchvision's adaptive choice
    ``g = ceil(roi_size / output_size)`` per RoI, computed on a static grid of at most
    ``max_adaptive_samples`` per bin side (larger values would be truncated, so keep RoIs
    smaller than ``max_adaptive_samples * output_size`` feature cells, or raise it).
    ``aligned=True`` shifts by half a pixel (the Detectron2 correction of pixel-centre
    coordinates) and does not force RoIs to at least 1x1 cell.

    ``features: <f>[N, H, W, C]``, ``rois: <f>[R, 5] -> <f>[R, PH, PW, C]``.
    """
    ph, pw = _check(features, rois, output_size, "roi_align")
    features, rois = jnp.asarray(features), jnp.asarray(rois)
    _, h, w, _ = features.shape
    offset = 0.5 if aligned else 0.0
    g_static = int(sampling_ratio) if sampling_ratio > 0 else int(max_adaptive_samples)

    def one(roi):
        fmap = features[roi[0].astype(jnp.int32)]
        x1, y1 = roi[1] * spatial_scale - offset, roi[2] * spatial_scale - offset
        x2, y2 = roi[3] * spatial_scale - offset, roi[4] * spatial_scale - offset
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = jnp.maximum(rw, 1.0), jnp.maximum(rh, 1.0)
        bw, bh = rw / pw, rh / ph
        if sampling_ratio > 0:
            gh = gw = jnp.asarray(float(sampling_ratio))
        else:
            gh = jnp.clip(jnp.ceil(rh / ph), 1, g_static)
            gw = jnp.clip(jnp.ceil(rw / pw), 1, g_static)
        i = jnp.arange(g_static, dtype=jnp.float32)

        def axis_weights(start, bin_size, pooled, g, size):
            p = jnp.arange(pooled, dtype=jnp.float32)
            coords = start + p[:, None] * bin_size + (i[None, :] + 0.5) * bin_size / g    # [P, G]
            used = (i < g)[None, :].astype(jnp.float32)
            wts = _bilinear_weights(coords.reshape(-1), size).reshape(pooled, g_static, size)
            return (wts * used[..., None]).sum(axis=1) / g                                 # [P, size]

        wy = axis_weights(y1, bh, ph, gh, h)
        wx = axis_weights(x1, bw, pw, gw, w)
        return jnp.einsum("ph,hwc,qw->pqc", wy.astype(fmap.dtype), fmap, wx.astype(fmap.dtype))

    return jax.vmap(one)(rois)
