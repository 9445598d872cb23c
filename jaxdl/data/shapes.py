"""The generated "shapes" set for detection and segmentation.

Each image shows 1..``max_objects`` filled shapes (circle, square, triangle) on a noisy
coloured background. The class is the *shape*; the colour is drawn independently of the class
(unless ``color_by_class=True``), so a model has to look at the outline, not the hue. Shapes may
overlap; they are painted in order, so a later object hides an earlier one, and every per-object
annotation (instance mask, box) describes the *visible* part:

    >>> from jaxdl.data.shapes import make_shapes
    >>> s = make_shapes(8, image_size=64, seed=0)
    >>> s.images.shape, s.boxes.shape, s.masks.shape, s.semantic.shape
    ((8, 64, 64, 3), (8, 4, 4), (8, 4, 64, 64), (8, 64, 64))

Conventions (the same as COCO's and torchvision's detection targets):

* ``boxes[i, j] = (x1, y1, x2, y2)`` in pixels, float32, tight on the visible mask with pixel
  *edges*: ``x1`` = first column, ``x2`` = last column + 1, so ``x2 - x1`` is the width in pixels.
* ``classes[i, j]`` in ``0..len(class_names)-1``, ``-1`` for padding slots ``j >= num_objects[i]``
  (their boxes are 0 and masks all False). Objects keep their painting order: object ``j`` is
  drawn over objects ``0..j-1``.
* ``semantic[i]``: ``<i32>[H, W]``, 0 = background, ``c + 1`` = class ``c`` (the names are
  ``semantic_names = ("background",) + class_names``). It equals the union of the instance masks
  labelled by class: ``semantic == 1 + classes[j]`` exactly where ``masks[j]`` is True.

An object that would be hidden for the most part (visible area below ``min_visible`` of its
full area, or fewer than 4 pixels) is left out of the image altogether (not drawn, not
annotated), so no annotation is a sliver; the last-painted object is always fully visible, so
every image has at least one object.

Everything is a function of ``seed`` (one ``numpy.random.Generator``); drawing is vectorised
over images and objects (2,000 64x64 images take well under a second or two on one core).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jaxdl.data.dataset import Dataset
from jaxdl.errors import ConfigError, DataError

__all__ = ["ShapesSet", "make_shapes", "SHAPE_CLASSES", "draw_shape_masks"]

SHAPE_CLASSES = ("circle", "square", "triangle")

# Bright, well-separated fill colours (RGB); each drawn colour is one of these plus a jitter of
# up to +-25 per channel. The background is dark (each channel 10..90), so every shape stands out
# from it by at least ~90 grey levels in some channel.
_PALETTE = np.array([
    (230, 40, 40), (40, 200, 60), (50, 90, 235), (235, 220, 50), (40, 215, 220),
    (220, 60, 210), (245, 150, 30), (235, 235, 235)], np.int16)

_CHUNK = 256  # images drawn at once: bounds the temporaries to ~100 MB at 64x64


@dataclasses.dataclass(frozen=True, eq=False)
class ShapesSet:
    """Images of coloured shapes with boxes, classes, instance masks and semantic maps.

    Attributes (``N`` images, ``M = max_objects`` slots, ``K = len(class_names)``):
      images: ``<u8>[N, H, W, 3]``.
      boxes: ``<f32>[N, M, 4]`` ``(x1, y1, x2, y2)`` pixel edges, tight on the visible mask; 0 in
        padding slots.
      classes: ``<i32>[N, M]`` in ``0..K-1``, -1 in padding slots.
      masks: ``<bool>[N, M, H, W]`` visible (occlusion-aware) instance masks; False in padding.
      num_objects: ``<i32>[N]`` objects per image (1..M); slots ``0..num_objects-1`` are used.
      semantic: ``<i32>[N, H, W]`` 0 = background, ``c + 1`` = class ``c``.
      class_names: names of the ``K`` object classes.
      name: e.g. ``"shapes/seed=0"``.
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    num_objects: np.ndarray
    semantic: np.ndarray
    class_names: tuple[str, ...] = SHAPE_CLASSES
    name: str = "shapes"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Object classes ``K`` (the semantic maps have ``K + 1`` labels with the background)."""
        return len(self.class_names)

    @property
    def semantic_names(self) -> tuple[str, ...]:
        """Names of the semantic labels ``0..K``: ``("background",) + class_names``."""
        return ("background",) + tuple(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])

    def objects(self, i: int) -> dict[str, np.ndarray]:
        """The unpadded annotations of image ``i``: ``boxes <f32>[n, 4]``, ``classes <i32>[n]``,
        ``masks <bool>[n, H, W]`` with ``n = num_objects[i]``."""
        if not -len(self) <= i < len(self):
            raise DataError(f"image index {i} out of range for a shapes set of {len(self)} images")
        n = int(self.num_objects[i])
        return {"boxes": self.boxes[i, :n], "classes": self.classes[i, :n], "masks": self.masks[i, :n]}

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "ShapesSet":
        """The images at ``indices`` with their annotations (a copy)."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return ShapesSet(self.images[idx], self.boxes[idx], self.classes[idx], self.masks[idx],
                         self.num_objects[idx], self.semantic[idx], self.class_names,
                         self.name if name is None else name)

    def segmentation_batches(self) -> dict[str, np.ndarray]:
        """``{"image": <u8>[N, H, W, 3], "label": <i32>[N, H, W]}``: the arrays a segmentation
        train step takes (label = the semantic map)."""
        return {"image": self.images, "label": self.semantic}

    def to_dataset(self) -> Dataset:
        """A classification :class:`~jaxdl.data.Dataset`: each image labelled by the class of its
        largest visible object (ties: the later-painted one)."""
        areas = self.masks.sum(axis=(2, 3)).astype(np.float64)  # [N, M]; padding slots are 0
        # + j * 1e-3 breaks ties towards the later (top-most) object.
        best = np.argmax(areas + np.arange(areas.shape[1]) * 1e-3, axis=1)
        labels = self.classes[np.arange(len(self)), best]
        return Dataset(self.images, labels.astype(np.int32), self.class_names, f"{self.name}/largest")

    def __repr__(self) -> str:
        return (f"ShapesSet(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
                f"max_objects={self.boxes.shape[1]}, classes={self.class_names})")


def draw_shape_masks(kind: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray,
                     image_size: int) -> np.ndarray:
    """Full (unoccluded) masks of shapes, vectorised over any leading axes.

    Args:
      kind: ``<int>[...]`` 0 circle, 1 square, 2 triangle (apex up).
      cx, cy, r: ``<float>[...]`` centre and half-size in pixels (the shape fits in the square
        ``[cx - r, cx + r] x [cy - r, cy + r]``).
      image_size: ``S``; a pixel ``(row, col)`` is inside when its centre ``(col + 0.5, row + 0.5)``
        is.

    Returns:
      ``<bool>[..., S, S]``.
    """
    centres = np.arange(image_size, dtype=np.float32) + 0.5
    dx = centres[None, :] - cx[..., None, None]          # [..., 1, S] (varies along columns)
    dy = centres[:, None] - cy[..., None, None]          # [..., S, 1] (varies along rows)
    rr = r[..., None, None]
    kk = kind[..., None, None]
    circle = dx * dx + dy * dy <= rr * rr
    square = (np.abs(dx) <= rr) & (np.abs(dy) <= rr)
    # Isosceles triangle: apex (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r); the
    # half-width at height dy is (dy + r) / 2.
    triangle = (dy <= rr) & (np.abs(dx) <= (dy + rr) * 0.5)
    return np.where(kk == 0, circle, np.where(kk == 1, square, triangle))


def _visible(full: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Visible masks ``[n, M, S, S]``: object j minus every present object painted after it."""
    full = full & present[..., None, None]
    # covered_after[:, j] = OR of full[:, j+1:], by a reversed cumulative OR.
    rev = np.logical_or.accumulate(full[:, ::-1], axis=1)[:, ::-1]
    covered_after = np.zeros_like(full)
    covered_after[:, :-1] = rev[:, 1:]
    return full & ~covered_after


def make_shapes(num_images: int, *, image_size: int = 64, max_objects: int = 4, min_objects: int = 1,
                seed: int = 0, class_names: Sequence[str] = SHAPE_CLASSES, size_range: tuple[float, float] = (0.1, 0.22),
                noise: float = 6.0, min_visible: float = 0.4, color_by_class: bool = False) -> ShapesSet:
    """Generate the shapes set (see the module docstring for every convention).

    Args:
      num_images: ``N`` >= 1.
      image_size: ``S``; images are ``S x S x 3`` (>= 16).
      max_objects / min_objects: each image gets ``U{min_objects..max_objects}`` candidate shapes
        before occlusion culling (so ``num_objects`` may end up below ``min_objects`` only when a
        shape is mostly hidden).
      seed: everything is a function of it.
      class_names: a subset of ``("circle", "square", "triangle")`` (in any order); the order gives
        the class ids.
      size_range: half-size ``r`` of a shape as a fraction of ``S`` (uniform); the default
        ``(0.1, 0.22)`` gives shapes of about 13..28 pixels across at 64x64.
      noise: standard deviation of the Gaussian pixel noise (grey levels) over the whole image.
      min_visible: an object whose visible area is below this fraction of its full area is not
        drawn at all.
      color_by_class: colour class ``c`` with palette colour ``c`` (an easier, colour-cued set);
        by default colours are independent of classes.

    Returns:
      A :class:`ShapesSet`.

    Raises:
      ConfigError: a bad size, object count or class name.
    """
    if int(num_images) < 1:
        raise ConfigError(f"num_images must be >= 1, got {num_images}")
    if int(image_size) < 16:
        raise ConfigError(f"image_size must be >= 16 pixels, got {image_size}; shapes need room to be recognisable")
    if not 1 <= int(min_objects) <= int(max_objects):
        raise ConfigError(f"need 1 <= min_objects <= max_objects, got min_objects={min_objects}, "
                          f"max_objects={max_objects}")
    if int(max_objects) > len(_PALETTE):
        raise ConfigError(f"max_objects must be at most {len(_PALETTE)} (one distinct colour per object), "
                          f"got {max_objects}")
    class_names = tuple(str(c) for c in class_names)
    unknown = [c for c in class_names if c not in SHAPE_CLASSES]
    if unknown or not class_names or len(set(class_names)) != len(class_names):
        raise ConfigError(f"class_names must be distinct names among {SHAPE_CLASSES}, got {class_names}")
    lo, hi = (float(v) for v in size_range)
    if not 0.02 <= lo <= hi <= 0.45:
        raise ConfigError(f"size_range must satisfy 0.02 <= low <= high <= 0.45 (fractions of the image size), "
                          f"got {size_range}")
    n, m, s = int(num_images), int(max_objects), int(image_size)
    kinds_of_class = np.array([SHAPE_CLASSES.index(c) for c in class_names])

    rng = np.random.default_rng(seed)
    # All random parameters first (so the result does not depend on the drawing chunk size).
    count = rng.integers(min_objects, m + 1, size=n)
    cls = rng.integers(0, len(class_names), size=(n, m))
    r = rng.uniform(lo, hi, size=(n, m)) * s
    cx = rng.uniform(r, s - r)                  # the whole shape lies inside the image
    cy = rng.uniform(r, s - r)
    if color_by_class:
        colour_idx = cls % len(_PALETTE)
    else:
        # Distinct colours within an image (so two touching objects never merge into one blob),
        # drawn independently of the classes.
        colour_idx = rng.permuted(np.tile(np.arange(len(_PALETTE)), (n, 1)), axis=1)[:, :m]
    colours = np.clip(_PALETTE[colour_idx] + rng.integers(-25, 26, size=(n, m, 3)), 0, 255)
    background = rng.integers(10, 91, size=(n, 3))
    present = np.arange(m)[None, :] < count[:, None]

    images = np.empty((n, s, s, 3), np.uint8)
    masks = np.zeros((n, m, s, s), bool)
    semantic = np.zeros((n, s, s), np.int32)
    keep_all = np.zeros((n, m), bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        full = draw_shape_masks(kinds_of_class[cls[sl]], cx[sl], cy[sl], r[sl], s)   # [c, M, S, S]
        area = full.sum(axis=(2, 3))
        vis = _visible(full, present[sl])
        # Cull mostly-hidden objects, then recompute: removing an object only uncovers others, so
        # every kept object stays at least as visible and one pass suffices.
        keep = present[sl] & (vis.sum(axis=(2, 3)) >= np.maximum(min_visible * area, 4))
        vis = _visible(full, keep)
        keep_all[sl] = keep
        masks[sl] = vis
        # Paint: background + shapes in order; each pixel takes the colour of its visible owner.
        owner = np.where(vis.any(axis=1), np.argmax(vis, axis=1), -1)             # [c, S, S]
        rows = np.arange(sl.stop - sl.start)[:, None, None]
        pix = np.where((owner >= 0)[..., None], colours[sl][rows, np.maximum(owner, 0)],
                       background[sl][:, None, None, :]).astype(np.float32)
        pix += rng.normal(0.0, noise, size=pix.shape).astype(np.float32)
        images[sl] = np.clip(np.rint(pix), 0, 255).astype(np.uint8)
        semantic[sl] = np.where(owner >= 0, cls[sl][rows, np.maximum(owner, 0)] + 1, 0)

    # Compact kept objects to the front, preserving painting order.
    order = np.argsort(~keep_all, axis=1, kind="stable")
    take = np.arange(n)[:, None]
    keep_all, masks, cls = keep_all[take, order], masks[take, order], cls[take, order]
    num_objects = keep_all.sum(axis=1).astype(np.int32)
    classes = np.where(keep_all, cls, -1).astype(np.int32)

    rows_any = masks.any(axis=3)                 # [N, M, S]: which rows the visible mask touches
    cols_any = masks.any(axis=2)                 # [N, M, S]
    idx = np.arange(s)
    y1 = np.where(rows_any, idx, s).min(axis=2)
    y2 = np.where(rows_any, idx, -1).max(axis=2) + 1
    x1 = np.where(cols_any, idx, s).min(axis=2)
    x2 = np.where(cols_any, idx, -1).max(axis=2) + 1
    boxes = np.stack([x1, y1, x2, y2], axis=-1).astype(np.float32)
    boxes = np.where(keep_all[..., None], boxes, 0.0).astype(np.float32)
    return ShapesSet(images, boxes, classes, masks, num_objects, semantic, class_names,
                     f"shapes/seed={seed}")
