"""The generated shapes set: determinism, occlusion-aware masks, tight boxes, semantic maps."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdl.data.shapes import SHAPE_CLASSES, draw_shape_masks, make_shapes
from jaxdl.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(64, image_size=48, max_objects=4, seed=3)


def test_shapes_and_dtypes(shapes):
    n, m, s = 64, 4, 48
    assert shapes.images.shape == (n, s, s, 3) and shapes.images.dtype == np.uint8
    assert shapes.boxes.shape == (n, m, 4) and shapes.boxes.dtype == np.float32
    assert shapes.classes.shape == (n, m) and shapes.classes.dtype == np.int32
    assert shapes.masks.shape == (n, m, s, s) and shapes.masks.dtype == bool
    assert shapes.semantic.shape == (n, s, s) and shapes.semantic.dtype == np.int32
    assert shapes.num_objects.min() >= 1 and shapes.num_objects.max() <= m
    assert shapes.class_names == SHAPE_CLASSES
    assert shapes.semantic_names == ("background", "circle", "square", "triangle")
    # Every class occurs, and images with 1..4 objects occur.
    assert set(np.unique(shapes.classes[shapes.classes >= 0])) == {0, 1, 2}
    assert set(np.unique(shapes.num_objects)) == {1, 2, 3, 4}


def test_deterministic_by_seed():
    a, b = make_shapes(20, seed=5), make_shapes(20, seed=5)
    for field in ("images", "boxes", "classes", "masks", "num_objects", "semantic"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = make_shapes(20, seed=6)
    assert not np.array_equal(a.images, c.images)


def test_padding_slots(shapes):
    used = np.arange(4)[None, :] < shapes.num_objects[:, None]
    assert np.all((shapes.classes >= 0) == used)
    assert np.all(shapes.boxes[~used] == 0)
    assert not shapes.masks[~used].any()
    assert np.all(shapes.masks[used].sum(axis=(1, 2)) >= 4)  # no empty or sliver object


def test_boxes_tight_on_visible_masks(shapes):
    for i in range(len(shapes)):
        obj = shapes.objects(i)
        for box, mask in zip(obj["boxes"], obj["masks"]):
            rows, cols = np.nonzero(mask)
            expected = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            np.testing.assert_array_equal(box, np.asarray(expected, np.float32))


def test_masks_disjoint_and_match_semantic(shapes):
    assert shapes.masks.sum(axis=1).max() <= 1  # a pixel belongs to at most one visible object
    rebuilt = np.zeros_like(shapes.semantic)
    for i in range(len(shapes)):
        for j in range(shapes.num_objects[i]):
            rebuilt[i][shapes.masks[i, j]] = shapes.classes[i, j] + 1
    np.testing.assert_array_equal(rebuilt, shapes.semantic)


def test_later_objects_hide_earlier_ones():
    s = make_shapes(200, image_size=40, seed=1, min_objects=4, max_objects=4)
    occluded = 0
    for i in range(len(s)):
        n = s.num_objects[i]
        m = s.masks[i, :n]
        last = m[n - 1]
        # The last-painted object is on top: no earlier visible mask overlaps it.
        assert last.sum() > 0
        for j in range(n - 1):
            assert not (m[j] & last).any()
        # Occlusion happened somewhere: an earlier object's visible box holds pixels of a later one.
        for j in range(n - 1):
            x1, y1, x2, y2 = s.boxes[i, j].astype(int)
            occluded += int(m[j + 1:, y1:y2, x1:x2].any())
    assert occluded > 0


def test_pixels_show_the_owner_colour(shapes):
    # Inside a visible mask the pixels are the object's colour (+ noise with std 6): the mask's
    # pixels are much more alike than the mask and the background.
    img = shapes.images.astype(np.float32)
    for i in range(8):
        for j in range(shapes.num_objects[i]):
            pix = img[i][shapes.masks[i, j]]
            assert pix.std(axis=0).max() < 12
        bg = img[i][shapes.semantic[i] == 0]
        if bg.size:
            assert bg.std(axis=0).max() < 12


def test_draw_shape_masks_geometry():
    kind = np.array([0, 1, 2])
    c = np.full(3, 10.0)
    r = np.full(3, 5.0)
    m = draw_shape_masks(kind, c, c, r, 20)
    assert m[1].sum() == 100               # square of side 10 pixels (centres 5.5..14.5)
    assert abs(m[0].sum() - np.pi * 25) < 8
    assert abs(m[2].sum() - 50) < 8       # triangle: base 10, height 10
    assert m[2][5:8].sum() < m[2][12:15].sum()  # apex up: narrow at the top


def test_to_dataset_and_subset(shapes):
    ds = shapes.to_dataset()
    assert len(ds) == len(shapes) and ds.classes == SHAPE_CLASSES
    i = int(np.argmax(shapes.num_objects == 1))
    assert ds.labels[i] == shapes.classes[i, 0]
    sub = shapes.subset([3, 1])
    np.testing.assert_array_equal(sub.images[1], shapes.images[1])
    np.testing.assert_array_equal(sub.semantic[0], shapes.semantic[3])
    with pytest.raises(DataError, match="out of range"):
        shapes.objects(100)


def test_class_subset_and_colour_by_class():
    s = make_shapes(30, class_names=("triangle", "circle"), color_by_class=True, seed=0)
    assert s.class_names == ("triangle", "circle")
    assert set(np.unique(s.semantic)) <= {0, 1, 2}


@pytest.mark.parametrize("kwargs, match", [
    ({"num_images": 0}, "num_images"),
    ({"num_images": 2, "image_size": 8}, "image_size"),
    ({"num_images": 2, "max_objects": 0}, "min_objects"),
    ({"num_images": 2, "max_objects": 20}, "max_objects"),
    ({"num_images": 2, "class_names": ("star",)}, "class_names"),
    ({"num_images": 2, "size_range": (0.3, 0.1)}, "size_range"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_shapes(**kwargs)
