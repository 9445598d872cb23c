"""Anchor boxes (Faster R-CNN) and default boxes (SSD), computed once on the host as numpy.

Both return static arrays, so the models that use them stay shape-static under jit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from jaxdl.errors import ConfigError

__all__ = ["anchor_grid", "ssd_default_boxes", "ssd_scales", "ssd_boxes_per_cell"]


def _check_positive(name: str, values: Sequence[float]) -> None:
    if len(values) == 0 or any(float(v) <= 0 for v in values):
        raise ConfigError(f"{name} must be a non-empty list of positive numbers, got {tuple(values)}")


def anchor_grid(feature_size: tuple[int, int], stride: float | tuple[float, float], sizes: Sequence[float],
                aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)) -> np.ndarray:
    """Faster R-CNN anchors (Ren et al. 2015, sec. 3.1.1) on a ``(Hf, Wf)`` feature map.

    At every feature cell ``(i, j)`` there are ``A = len(sizes) * len(aspect_ratios)`` anchors
    centred on the cell's centre in image pixels, ``((j + 0.5) * stride_x, (i + 0.5) * stride_y)``;
    an anchor of size ``s`` and ratio ``r = h / w`` has area ``s^2``: ``w = s / sqrt(r)``,
    ``h = s * sqrt(r)``. The paper uses sizes (128, 256, 512) and ratios (0.5, 1, 2), so A = 9.

    Returns:
      ``<f32>[Hf * Wf * A, 4]`` ``(x1, y1, x2, y2)``, ordered cell-major (row, column, then anchor,
      sizes outer and ratios inner), matching a head output reshaped from ``[N, Hf, Wf, A * k]``.
    """
    _check_positive("sizes", sizes)
    _check_positive("aspect_ratios", aspect_ratios)
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    hf, wf = int(feature_size[0]), int(feature_size[1])
    shapes = []
    for s in sizes:
        for r in aspect_ratios:
            shapes.append((s / math.sqrt(r), s * math.sqrt(r)))
    wh = np.asarray(shapes, np.float64)                                      # [A, 2]
    cy, cx = np.meshgrid((np.arange(hf) + 0.5) * sy, (np.arange(wf) + 0.5) * sx, indexing="ij")
    centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)                   # [Hf*Wf, 1, 2]
    boxes = np.concatenate([centres - wh / 2, centres + wh / 2], axis=-1)     # [Hf*Wf, A, 4]
    return boxes.reshape(-1, 4).astype(np.float32)


def ssd_scales(num_maps: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
    """SSD eq. 4: ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``, k = 1..m."""
    if num_maps < 1:
        raise ConfigError(f"SSD needs at least one feature map, got {num_maps}")
    if num_maps == 1:
        return [s_min]
    return [s_min + (s_max - s_min) * k / (num_maps - 1) for k in range(num_maps)]


def ssd_default_boxes(feature_sizes: Sequence[int], image_size: int,
                      aspect_ratios: Sequence[Sequence[float]] | None = None,
                      s_min: float = 0.2, s_max: float = 0.9, clip: bool = True) -> np.ndarray:
    """SSD default boxes (Liu et al. 2016, sec. 2.2 "Choosing scales and aspect ratios").

    Feature map ``k`` (``f_k x f_k`` cells) has scale ``s_k`` (eq. 4) and, for every ratio
    ``a`` in ``{1} + aspect_ratios[k] + {1/a}``, a box ``w = s_k sqrt(a)``, ``h = s_k / sqrt(a)``,
    plus one extra square box of scale ``sqrt(s_k s_{k+1})`` (``s_{m+1} = 1``), centred at
    ``((j + 0.5) / f_k, (i + 0.5) / f_k)``. ``aspect_ratios`` defaults to ``(2, 3)`` on every map,
    i.e. 6 boxes per cell as in the paper.

    Returns:
      ``<f32>[sum_k f_k^2 * B_k, 4]`` ``(x1, y1, x2, y2)`` in pixels of a square ``image_size``
      image, map-major then cell-major then box, matching heads reshaped from
      ``[N, f_k, f_k, B_k * c]`` and concatenated. With ``clip`` the boxes are clipped to the image.
    """
    m = len(feature_sizes)
    if aspect_ratios is None:
        aspect_ratios = [(2.0, 3.0)] * m
    if len(aspect_ratios) != m:
        raise ConfigError(f"aspect_ratios needs one entry per feature map ({m}), got {len(aspect_ratios)}")
    scales = ssd_scales(m, s_min, s_max) + [1.0]
    out = []
    for k, f in enumerate(feature_sizes):
        wh = [(scales[k], scales[k])]
        extra = math.sqrt(scales[k] * scales[k + 1])
        wh.append((extra, extra))
        for a in aspect_ratios[k]:
            wh.append((scales[k] * math.sqrt(a), scales[k] / math.sqrt(a)))
            wh.append((scales[k] / math.sqrt(a), scales[k] * math.sqrt(a)))
        wh = np.asarray(wh)
        cy, cx = np.meshgrid((np.arange(f) + 0.5) / f, (np.arange(f) + 0.5) / f, indexing="ij")
        centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        out.append(np.concatenate([centres - wh / 2, centres + wh / 2], axis=-1).reshape(-1, 4))
    boxes = np.concatenate(out, axis=0)
    if clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    return (boxes * image_size).astype(np.float32)


def ssd_boxes_per_cell(aspect_ratios: Sequence[float]) -> int:
    """Default boxes per cell for one map: 2 squares + 2 per extra ratio."""
    return 2 + 2 * len(aspect_ratios)
