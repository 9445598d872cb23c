"""VOC / COCO / YOLO readers and writers, conversions, malformed files; box-aware augmentation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.shapes import make_shapes
from jaxdl.detection.augment import hflip, random_hflip, random_scale_crop, scale_crop
from jaxdl.detection.formats import (ImageAnnotation, convert, from_shapes, read_coco, read_voc, read_yolo,
                                     to_arrays, write_coco, write_voc, write_yolo)
from jaxdl.errors import CorruptFileError, DataError

NAMES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(6, image_size=32, seed=3)


def same(a, b, atol=1e-3):
    assert (a.file_name, a.width, a.height, a.labels) == (b.file_name, b.width, b.height, b.labels)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol)


def test_round_trips_through_every_format(tmp_path, shapes):
    anns = from_shapes(shapes)
    for a in anns:
        write_voc(tmp_path / "voc" / (a.file_name[:-4] + ".xml"), a)
        same(read_voc(tmp_path / "voc" / (a.file_name[:-4] + ".xml"), NAMES), a)
        write_yolo(tmp_path / "y.txt", a, NAMES)
        same(read_yolo(tmp_path / "y.txt", a.width, a.height, NAMES, a.file_name), a)
    write_coco(tmp_path / "c.json", anns, NAMES)
    back, names = read_coco(tmp_path / "c.json")
    assert names == NAMES
    for a, b in zip(anns, back):
        same(b, a)
    # conversions voc -> coco -> yolo -> voc keep every box
    convert(tmp_path / "voc", "voc", tmp_path / "c2.json", "coco", class_names=NAMES)
    convert(tmp_path / "c2.json", "coco", tmp_path / "yolo", "yolo", class_names=NAMES)
    sizes = {a.file_name[:-4]: (a.width, a.height) for a in anns}
    convert(tmp_path / "yolo", "yolo", tmp_path / "voc2", "voc", class_names=NAMES, image_sizes=sizes)
    for a in anns:
        b = read_voc(tmp_path / "voc2" / (a.file_name[:-4] + ".xml"))
        assert b.labels == a.labels
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
    boxes, classes = to_arrays(back, NAMES, shapes.boxes.shape[1])
    np.testing.assert_array_equal(classes, shapes.classes)
    np.testing.assert_allclose(boxes, shapes.boxes)


def test_voc_conventions(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>10</width><height>8</height>"
                                    "</size><object><name>dog</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax>"
                                    "<ymax>8</ymax></bndbox></object></annotation>")
    a = read_voc(tmp_path / "a.xml")
    np.testing.assert_allclose(a.boxes, [[0, 1, 10, 8]])       # 1-based inclusive -> pixel edges
    assert a.labels == ("dog",)


def test_malformed_annotations_name_the_file_and_record(tmp_path):
    bad_xml = tmp_path / "bad.xml"
    bad_xml.write_text("<annotation><size><width>10</width>")
    with pytest.raises(CorruptFileError, match=r"bad\.xml.*not valid XML"):
        read_voc(bad_xml)
    out = tmp_path / "out.xml"
    out.write_text("<annotation><size><width>10</width><height>10</height></size>"
                   "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
                   "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>15</xmax><ymax>5</ymax></bndbox></object>"
                   "</annotation>")
    with pytest.raises(DataError, match=r"out\.xml: object 1 \(cat\).*outside the 10x10 image"):
        read_voc(out)
    with pytest.raises(DataError, match=r"object 0 has unknown class 'cat'"):
        read_voc(out, class_names=NAMES)
    nan = tmp_path / "nan.xml"
    nan.write_text("<annotation><size><width>10</width><height>10</height></size><object><name>cat</name>"
                   "<bndbox><xmin>a</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(CorruptFileError, match=r"nan\.xml: object 0 \(cat\) has <xmin>a</xmin>, not a number"):
        read_voc(nan)

    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"images": [}')
    with pytest.raises(CorruptFileError, match=r"bad\.json: not valid JSON"):
        read_coco(bad_json)
    doc = {"images": [{"id": 1, "file_name": "x.png", "width": 20, "height": 20}],
           "categories": [{"id": 1, "name": "circle"}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [15, 15, 10, 2]}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"c\.json: annotation 7 \(image x\.png\).*outside the 20x20 image"):
        read_coco(tmp_path / "c.json")
    doc["annotations"][0].update(bbox=[1, 1, 2, 2], category_id=5)
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="annotation 7 has unknown category_id 5"):
        read_coco(tmp_path / "c.json")
    doc["annotations"][0].update(category_id=1, image_id=3)
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="annotation 7 refers to image_id 3"):
        read_coco(tmp_path / "c.json")
    (tmp_path / "c.json").write_text(json.dumps({"images": []}))
    with pytest.raises(CorruptFileError, match="missing the list 'annotations'"):
        read_coco(tmp_path / "c.json")

    y = tmp_path / "l.txt"
    y.write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"l\.txt: line 2 has class id 3, outside 0\.\.2"):
        read_yolo(y, 10, 10, NAMES)
    y.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(CorruptFileError, match="line 1 has 4 fields"):
        read_yolo(y, 10, 10, NAMES)
    y.write_text("0 0.95 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match="line 1 has a box .* outside"):
        read_yolo(y, 10, 10, NAMES)
    # a writer refuses a bad record and leaves the existing file untouched
    good = tmp_path / "g.txt"
    good.write_text("kept\n")
    with pytest.raises(DataError, match="object 0"):
        write_yolo(good, ImageAnnotation("g.png", 10, 10, [[0, 0, 20, 5]], ("circle",)), NAMES)
    assert good.read_text() == "kept\n"


def test_hflip_and_scale_crop_move_boxes_with_pixels(shapes):
    imgs = jnp.asarray(shapes.images)
    boxes, classes, masks = jnp.asarray(shapes.boxes), jnp.asarray(shapes.classes), jnp.asarray(shapes.masks)
    fi, fb, fc, fm = jax.jit(hflip)(imgs, boxes, classes, masks)
    np.testing.assert_array_equal(fi, shapes.images[:, :, ::-1])
    # the flipped boxes are tight on the flipped masks
    for i in range(len(shapes)):
        for j in range(int(shapes.num_objects[i])):
            ys, xs = np.nonzero(np.asarray(fm[i, j]))
            np.testing.assert_allclose(fb[i, j], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    # zoom x2 on the top-left quadrant: a box (x1, y1, x2, y2) inside it becomes 2x, masks follow
    n = len(shapes)
    si, sb, sc, sm = scale_crop(imgs, boxes, classes, masks, jnp.full((n,), 2.0), jnp.zeros((n, 2)))
    for i in range(n):
        for j in range(int(shapes.num_objects[i])):
            b = shapes.boxes[i, j]
            if b[2] <= 16 and b[3] <= 16:
                np.testing.assert_allclose(sb[i, j], 2 * b)
                assert sc[i, j] == shapes.classes[i, j]
                ys, xs = np.nonzero(np.asarray(sm[i, j]))
                np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], 2 * b, atol=1)
            elif b[0] >= 16 or b[1] >= 16:
                assert sc[i, j] == -1 and not np.asarray(sm[i, j]).any()      # pushed out of the window
    assert si.dtype == jnp.uint8 and si.shape == imgs.shape
    # random versions jit and keep shapes; scale 1 and offset 0 is the identity
    out = jax.jit(random_scale_crop)(jax.random.PRNGKey(0), imgs, boxes, classes, masks)
    assert [o.shape for o in out] == [imgs.shape, boxes.shape, classes.shape, masks.shape]
    same_i, same_b, _, _ = scale_crop(imgs, boxes, classes, None)
    np.testing.assert_array_equal(same_i, imgs)
    np.testing.assert_allclose(same_b, boxes)
    out = jax.jit(random_hflip)(jax.random.PRNGKey(1), imgs, boxes, classes)
    assert out[0].shape == imgs.shape
