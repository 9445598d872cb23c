"""Detection annotations: Pascal VOC XML, COCO JSON and YOLO txt readers and writers.

Everything goes through one record, :class:`ImageAnnotation` (file name, image size, boxes as
``(x1, y1, x2, y2)`` pixel edges, class names), so converting between formats is reading one
and writing another (:func:`convert`). The coordinate conventions of each format:

* VOC: ``<xmin>..<xmax>`` are 1-based inclusive pixel indices, so ``x1 = xmin - 1``,
  ``x2 = xmax`` (the VOC devkit's convention);
* COCO: ``bbox = [x, y, width, height]`` in pixel edges from the top-left, ``x2 = x + width``;
* YOLO: one ``<class> <cx> <cy> <w> <h>`` line per object, all four normalised by the image
  width / height; class ids index a class-name list kept beside the files.

Malformed input raises :class:`jaxdl.errors.CorruptFileError` (unreadable XML / JSON, missing
fields, bad numbers) or :class:`jaxdl.errors.DataError` (a box outside the image, an unknown
class), and the message names the file and the record (object number or annotation id).
Writers write to a temporary file and rename it, so an existing file is never half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from jaxdl.errors import ConfigError, CorruptFileError, DataError

__all__ = ["ImageAnnotation", "read_voc", "write_voc", "read_coco", "write_coco", "read_yolo", "write_yolo",
           "convert", "from_shapes", "to_arrays", "FORMATS"]

FORMATS = ("voc", "coco", "yolo")


@dataclasses.dataclass(frozen=True)
class ImageAnnotation:
    """The objects of one image. ``boxes: <f32>[n, 4]`` xyxy pixel edges; ``labels``: n class names."""

    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float32).reshape(-1, 4))
        object.__setattr__(self, "labels", tuple(self.labels))


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_box(source: str, record: str, box: Sequence[float], width: int, height: int) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise CorruptFileError(f"{source}: {record} has a non-finite box {box}")
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{source}: {record} has an empty box (x1, y1, x2, y2) = ({x1:g}, {y1:g}, {x2:g}, {y2:g}); "
                        f"need x2 > x1 and y2 > y1")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise DataError(f"{source}: {record} has a box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) outside the "
                        f"{width}x{height} image; fix or drop that object")


def _check_class(source: str, record: str, name: str, class_names: Sequence[str] | None) -> None:
    if class_names is not None and name not in class_names:
        raise DataError(f"{source}: {record} has unknown class {name!r}; known classes: {', '.join(class_names)}")


def _check_annotation(ann: ImageAnnotation, class_names: Sequence[str] | None, where: str) -> None:
    for j, (box, name) in enumerate(zip(ann.boxes, ann.labels)):
        _check_box(where, f"object {j}", box, ann.width, ann.height)
        _check_class(where, f"object {j}", name, class_names)


# ----------------------------------------------------------------------------- Pascal VOC
def read_voc(path: str | os.PathLike, class_names: Sequence[str] | None = None) -> ImageAnnotation:
    """One VOC XML file (``<annotation><filename/><size>...</size><object>...</object></annotation>``)."""
    src = str(path)
    try:
        root = ET.parse(src).getroot()
    except ET.ParseError as e:
        raise CorruptFileError(f"{src}: not valid XML ({e}); is it a Pascal VOC annotation?") from None
    except OSError as e:
        raise DataError(f"{src}: cannot read the annotation file ({e.strerror})") from None

    def text(node, tag, record):
        child = node.find(tag)
        if child is None or child.text is None or not child.text.strip():
            raise CorruptFileError(f"{src}: {record} lacks <{tag}>")
        return child.text.strip()

    def number(node, tag, record):
        value = text(node, tag, record)
        try:
            return float(value)
        except ValueError:
            raise CorruptFileError(f"{src}: {record} has <{tag}>{value}</{tag}>, not a number") from None

    size = root.find("size")
    if size is None:
        raise CorruptFileError(f"{src}: the annotation lacks <size> (image width and height)")
    width, height = int(number(size, "width", "<size>")), int(number(size, "height", "<size>"))
    file_name = root.findtext("filename", default=Path(src).with_suffix(".jpg").name).strip()
    boxes, labels = [], []
    for j, obj in enumerate(root.findall("object")):
        record = f"object {j}"
        name = text(obj, "name", record)
        bb = obj.find("bndbox")
        if bb is None:
            raise CorruptFileError(f"{src}: {record} ({name}) lacks <bndbox>")
        xmin, ymin, xmax, ymax = (number(bb, t, f"{record} ({name})") for t in ("xmin", "ymin", "xmax", "ymax"))
        box = (xmin - 1.0, ymin - 1.0, xmax, ymax)
        _check_box(src, f"{record} ({name})", box, width, height)
        _check_class(src, record, name, class_names)
        boxes.append(box)
        labels.append(name)
    return ImageAnnotation(file_name, width, height, np.asarray(boxes, np.float32).reshape(-1, 4), tuple(labels))


def write_voc(path: str | os.PathLike, ann: ImageAnnotation) -> None:
    """Write ``ann`` as VOC XML (coordinates rounded to whole pixels, 1-based inclusive)."""
    _check_annotation(ann, None, str(path))
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = ann.file_name
    size = ET.SubElement(root, "size")
    for tag, v in (("width", ann.width), ("height", ann.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(v))
    for box, name in zip(ann.boxes, ann.labels):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(v)
    ET.indent(root)
    _atomic_write_text(path, ET.tostring(root, encoding="unicode") + "\n")


# ----------------------------------------------------------------------------- COCO
def read_coco(path: str | os.PathLike, class_names: Sequence[str] | None = None
              ) -> tuple[list[ImageAnnotation], tuple[str, ...]]:
    """A COCO ``instances`` JSON file -> (one annotation per image, in file order; category names
    ordered by category id)."""
    src = str(path)
    try:
        with open(src, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{src}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except OSError as e:
        raise DataError(f"{src}: cannot read the annotation file ({e.strerror})") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{src}: a COCO file is a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CorruptFileError(f"{src}: missing the list {key!r} of a COCO annotation file")
    try:
        cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    except (KeyError, TypeError, ValueError):
        raise CorruptFileError(f"{src}: every category needs an integer 'id' and a 'name'") from None
    names = tuple(cats[k] for k in sorted(cats))
    images, order = {}, []
    for i, im in enumerate(data["images"]):
        try:
            iid = int(im["id"])
            images[iid] = (str(im["file_name"]), int(im["width"]), int(im["height"]), [], [])
        except (KeyError, TypeError, ValueError):
            raise CorruptFileError(f"{src}: image record {i} needs 'id', 'file_name', 'width', 'height'") from None
        order.append(iid)
    for i, a in enumerate(data["annotations"]):
        record = f"annotation {a.get('id', i) if isinstance(a, dict) else i}"
        try:
            iid, cid = int(a["image_id"]), int(a["category_id"])
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            raise CorruptFileError(f"{src}: {record} needs 'image_id', 'category_id' and 'bbox': [x, y, w, h]") from None
        if iid not in images:
            raise DataError(f"{src}: {record} refers to image_id {iid}, which is not in 'images'")
        if cid not in cats:
            raise DataError(f"{src}: {record} has unknown category_id {cid}; known ids: {sorted(cats)}")
        file_name, width, height, boxes, labels = images[iid]
        box = (x, y, x + w, y + h)
        _check_box(src, f"{record} (image {file_name})", box, width, height)
        _check_class(src, record, cats[cid], class_names)
        boxes.append(box)
        labels.append(cats[cid])
    anns = [ImageAnnotation(images[i][0], images[i][1], images[i][2], np.asarray(images[i][3], np.float32).reshape(-1, 4),
                            tuple(images[i][4])) for i in order]
    return anns, names


def write_coco(path: str | os.PathLike, anns: Sequence[ImageAnnotation], class_names: Sequence[str]) -> None:
    """Write a COCO ``instances`` JSON: category ids 1..K in ``class_names`` order, image ids 1..N."""
    cat_id = {name: k + 1 for k, name in enumerate(class_names)}
    images, annotations = [], []
    for i, ann in enumerate(anns):
        _check_annotation(ann, class_names, f"{path} (image {ann.file_name})")
        images.append({"id": i + 1, "file_name": ann.file_name, "width": int(ann.width), "height": int(ann.height)})
        for box, name in zip(ann.boxes, ann.labels):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cat_id[name],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": k, "name": n} for n, k in cat_id.items()]}
    _atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


# ----------------------------------------------------------------------------- YOLO
def read_yolo(path: str | os.PathLike, width: int, height: int, class_names: Sequence[str],
              file_name: str | None = None) -> ImageAnnotation:
    """One YOLO label file for an image of ``width x height`` (the format does not store it)."""
    src = str(path)
    try:
        lines = Path(src).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"{src}: cannot read the label file ({e.strerror})") from None
    boxes, labels = [], []
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        record = f"line {n}"
        if len(fields) != 5:
            raise CorruptFileError(f"{src}: {record} has {len(fields)} fields; a YOLO line is "
                                   f"'<class> <cx> <cy> <w> <h>'")
        try:
            cid = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise CorruptFileError(f"{src}: {record} ({line.strip()!r}) is not '<int> <float> <float> <float> <float>'") from None
        if not 0 <= cid < len(class_names):
            raise DataError(f"{src}: {record} has class id {cid}, outside 0..{len(class_names) - 1} "
                            f"({', '.join(class_names)})")
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        # normalised coordinates carry rounding error of about 1e-6 of the size
        box = tuple(float(np.clip(v, 0, lim)) if abs(v - np.clip(v, 0, lim)) < 1e-3 else v
                    for v, lim in zip(box, (width, height, width, height)))
        _check_box(src, record, box, width, height)
        boxes.append(box)
        labels.append(class_names[cid])
    name = file_name if file_name is not None else Path(src).with_suffix(".jpg").name
    return ImageAnnotation(name, int(width), int(height), np.asarray(boxes, np.float32).reshape(-1, 4), tuple(labels))


def write_yolo(path: str | os.PathLike, ann: ImageAnnotation, class_names: Sequence[str]) -> None:
    """Write ``ann`` as a YOLO label file (6 decimals)."""
    _check_annotation(ann, class_names, str(path))
    rows = []
    for box, name in zip(ann.boxes, ann.labels):
        x1, y1, x2, y2 = (float(v) for v in box)
        rows.append(f"{class_names.index(name)} {(x1 + x2) / 2 / ann.width:.6f} {(y1 + y2) / 2 / ann.height:.6f} "
                    f"{(x2 - x1) / ann.width:.6f} {(y2 - y1) / ann.height:.6f}")
    _atomic_write_text(path, "\n".join(rows) + ("\n" if rows else ""))


# ----------------------------------------------------------------------------- conversions
def _read_dir(src: Path, fmt: str, class_names: Sequence[str] | None, image_sizes: dict | None):
    if fmt == "coco":
        anns, names = read_coco(src, class_names)
        return anns, tuple(class_names) if class_names else names
    if fmt == "voc":
        files = sorted(src.glob("*.xml")) if src.is_dir() else [src]
        anns = [read_voc(f, class_names) for f in files]
        names = tuple(class_names) if class_names else tuple(sorted({l for a in anns for l in a.labels}))
        return anns, names
    if class_names is None or image_sizes is None:
        raise ConfigError("reading YOLO labels needs class_names and image_sizes ({stem: (width, height)}), "
                          "which the format does not store")
    files = sorted(src.glob("*.txt")) if src.is_dir() else [src]
    anns = []
    for f in files:
        if f.stem not in image_sizes:
            raise DataError(f"{f}: no image size given for {f.stem!r}; pass image_sizes[{f.stem!r}] = (width, height)")
        w, h = image_sizes[f.stem]
        anns.append(read_yolo(f, w, h, class_names))
    return anns, tuple(class_names)


def convert(src: str | os.PathLike, src_format: str, dst: str | os.PathLike, dst_format: str, *,
            class_names: Sequence[str] | None = None, image_sizes: dict | None = None) -> list[ImageAnnotation]:
    """Convert annotations between formats; returns what was read.

    ``src``/``dst`` are a JSON file for COCO and a folder (one file per image, named after the
    image's stem) for VOC and YOLO. ``class_names`` fixes the class order (needed for YOLO; for
    VOC sources it defaults to the sorted names found); ``image_sizes`` (``{stem: (w, h)}``) is
    needed when reading YOLO.
    """
    for f in (src_format, dst_format):
        if f not in FORMATS:
            raise ConfigError(f"unknown annotation format {f!r}; valid formats: {', '.join(FORMATS)}")
    anns, names = _read_dir(Path(src), src_format, class_names, image_sizes)
    dst = Path(dst)
    if dst_format == "coco":
        write_coco(dst, anns, names)
    else:
        for ann in anns:
            stem = Path(ann.file_name).stem
            if dst_format == "voc":
                write_voc(dst / f"{stem}.xml", ann)
            else:
                write_yolo(dst / f"{stem}.txt", ann, names)
    return anns


def from_shapes(data, prefix: str = "img") -> list[ImageAnnotation]:
    """The annotations of a :class:`jaxdl.data.shapes.ShapesSet` (files ``{prefix}{i:05d}.png``)."""
    _, h, w, _ = data.images.shape
    out = []
    for i in range(len(data)):
        o = data.objects(i)
        out.append(ImageAnnotation(f"{prefix}{i:05d}.png", w, h, o["boxes"], tuple(data.class_names[c] for c in o["classes"])))
    return out


def to_arrays(anns: Iterable[ImageAnnotation], class_names: Sequence[str], max_objects: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Padded arrays for a train step: ``boxes <f32>[N, M, 4]``, ``classes <i32>[N, M]`` (-1 padding)."""
    anns = list(anns)
    boxes = np.zeros((len(anns), max_objects, 4), np.float32)
    classes = np.full((len(anns), max_objects), -1, np.int32)
    for i, a in enumerate(anns):
        if len(a.labels) > max_objects:
            raise DataError(f"{a.file_name} has {len(a.labels)} objects, more than max_objects={max_objects}")
        for j, name in enumerate(a.labels):
            _check_class(a.file_name, f"object {j}", name, class_names)
            classes[i, j] = list(class_names).index(name)
        boxes[i, :len(a.labels)] = a.boxes
    return boxes, classes
