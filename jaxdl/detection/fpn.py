"""Feature Pyramid Network (Lin, Dollar, Girshick, He, Hariharan & Belongie 2017, "Feature Pyramid
Networks for Object Detection", CVPR): the neck and the RoI-to-level rule.

:class:`FPN` builds the pyramid of sec. 3: a 1x1 lateral conv brings every backbone map
``C_k`` to ``width`` channels, the top-down pathway upsamples the coarser merged map by 2
(nearest neighbour) and adds it to the lateral, and a 3x3 conv on each merged map gives ``P_k``
("to reduce the aliasing effect of upsampling"). No non-linearities (sec. 3: "there are no
non-linearities in these extra layers"). With ``extra_level`` a ``P_{top+1}`` is "a stride two
subsampling" (max pooling, kernel 1, stride 2) of the coarsest output (sec. 4.1, P6 for the RPN).

:func:`fpn_levels` is eq. 1, ``k = floor(k0 + log2(sqrt(w h) / canonical))``.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["FPN", "fpn_levels", "upsample_nearest_to"]


def upsample_nearest_to(x: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """``x <f>[N, h, w, C]`` -> ``<f>[N, H, W, C]`` by 2x nearest-neighbour upsampling, cropped to
    ``(H, W)`` (``H`` is ``2h`` or ``2h - 1`` when the finer map had an odd size: the backbones
    halve with ``ceil``)."""
    h, w = shape
    up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return up[:, :h, :w]


class FPN(nn.Module):
    """The pyramid of sec. 3 on backbone maps ordered fine to coarse.

    ``feats: [<f>[N, H/s_0, W/s_0, C_0], ..., <f>[N, H/s_L, W/s_L, C_L]]`` (strides doubling) ->
    ``[P_0, ..., P_L]`` with ``P_i <f>[N, H/s_i, W/s_i, width]`` (+ ``P_{L+1}`` of stride
    ``2 s_L`` with ``extra_level``). Parameters: ``lateral{i}`` (1x1) and ``output{i}`` (3x3).
    The paper uses ``width = 256`` on ~800-pixel images.
    """

    width: int = 64
    extra_level: bool = False

    @nn.compact
    def __call__(self, feats: Sequence[jax.Array]) -> list[jax.Array]:
        laterals = [nn.Conv(self.width, (1, 1), name=f"lateral{i}")(f) for i, f in enumerate(feats)]
        merged = [laterals[-1]]
        for lat in reversed(laterals[:-1]):                       # top-down: coarse -> fine
            merged.insert(0, lat + upsample_nearest_to(merged[0], lat.shape[1:3]))
        outs = [nn.Conv(self.width, (3, 3), padding=1, name=f"output{i}")(m) for i, m in enumerate(merged)]
        if self.extra_level:
            outs.append(nn.max_pool(outs[-1], (1, 1), strides=(2, 2)))
        return outs


def fpn_levels(boxes: jax.Array, k_min: int, k_max: int, k0: int = 4, canonical: float = 224.0) -> jax.Array:
    """Eq. 1 of the paper: the pyramid level of each RoI, clipped to ``[k_min, k_max]``.

    ``boxes <f>[..., 4]`` (x1, y1, x2, y2) -> ``<i32>[...]``, ``k = floor(k0 + log2(sqrt(w h) /
    canonical))``; the paper uses ``k0 = 4`` and ``canonical = 224`` (the ImageNet pre-training
    size). Empty boxes go to ``k_min``.
    """
    wh = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    size = jnp.sqrt(jnp.maximum(wh, 1e-12))
    k = jnp.floor(k0 + jnp.log2(size / canonical))
    return jnp.clip(k, k_min, k_max).astype(jnp.int32)

