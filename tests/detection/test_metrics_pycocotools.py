"""``coco_evaluate`` against the official COCO evaluation (pycocotools' ``COCOeval``) on random cases.

pycocotools is in the ``test`` extra (CI installs it); the module is skipped only where it is
not installed. Boxes and masks are random, so ties in IoU or score (where the two tie-breaking
rules could differ) have probability zero.
"""

import numpy as np
import pytest

from jaxdl.detection.metrics import coco_evaluate

coco_pkg = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

SIZE = 48
NUM_CLASSES = 3


def random_case(seed: int, images: int = 12):
    """Ground truth (1-5 objects per image, some images empty) and detections: jittered copies of
    the ground truth (some dropped, some with the wrong class) plus random false positives."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for i in range(images):
        m = int(rng.integers(0, 6)) if i else 0          # image 0 has no objects
        xy = rng.uniform(0, SIZE - 12, size=(m, 2))
        wh = rng.uniform(6, 24, size=(m, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, SIZE)], 1)
        classes = rng.integers(0, NUM_CLASSES - 1, size=m)    # class 2 gets no ground truth in most cases
        if m and rng.random() < 0.3:
            classes[-1] = 2
        keep = rng.random(m) < 0.8
        jitter = rng.normal(0, 0.08, size=(m, 4)) * np.concatenate([wh, wh], 1)
        det_boxes = np.clip(boxes + jitter, 0, SIZE)[keep]
        det_classes = np.where(rng.random(m) < 0.15, (classes + 1) % NUM_CLASSES, classes)[keep]
        f = int(rng.integers(0, 4))
        fxy = rng.uniform(0, SIZE - 8, size=(f, 2))
        fboxes = np.concatenate([fxy, np.minimum(fxy + rng.uniform(3, 16, size=(f, 2)), SIZE)], 1)
        det_boxes = np.concatenate([det_boxes, fboxes])
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 0.5)
        det_classes = np.concatenate([det_classes, rng.integers(0, NUM_CLASSES, size=f)])
        scores = rng.uniform(0.05, 1.0, size=len(det_boxes))
        gts.append({"boxes": boxes, "classes": classes, "masks": _masks(rng, boxes)})
        dets.append({"boxes": det_boxes, "classes": det_classes, "scores": scores,
                     "masks": _masks(rng, det_boxes)})
    return dets, gts


def _masks(rng, boxes):
    """An ellipse in each box with a random hole: irregular masks for segm IoU."""
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    out = np.zeros((len(boxes), SIZE, SIZE), bool)
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 1.0), max((y2 - y1) / 2, 1.0)
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        hole = ((xx - cx - rng.uniform(-rx, rx) / 2) ** 2 + (yy - cy) ** 2) <= (min(rx, ry) / 3) ** 2
        out[n] = inside & ~hole
        if not out[n].any():
            out[n, int(min(cy, SIZE - 1)), int(min(cx, SIZE - 1))] = True
    return out


def pycocotools_stats(dets, gts, iou_type: str) -> dict[str, float]:
    def region(box, mask):
        if iou_type == "bbox":
            x1, y1, x2, y2 = (float(v) for v in box)
            return {"bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"segmentation": rle, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)]}

    annotations, results = [], []
    for i, g in enumerate(gts):
        for box, c, mask in zip(g["boxes"], g["classes"], g["masks"]):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                "iscrowd": 0, **region(box, mask)})
    for i, d in enumerate(dets):
        for box, c, s, mask in zip(d["boxes"], d["classes"], d["scores"], d["masks"]):
            r = region(box, mask)
            r.pop("area")
            results.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s), **r})
    truth = COCO()
    truth.dataset = {"images": [{"id": i + 1, "width": SIZE, "height": SIZE} for i in range(len(gts))],
                     "annotations": annotations,
                     "categories": [{"id": k + 1, "name": str(k)} for k in range(NUM_CLASSES)]}
    truth.createIndex()
    ev = COCOeval(truth, truth.loadRes(results), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    s = ev.stats      # [AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl]
    return {"AP": s[0], "AP50": s[1], "AP75": s[2], "AR1": s[6], "AR10": s[7], "AR100": s[8]}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coco_evaluate_matches_cocoeval(seed, iou_type):
    dets, gts = random_case(seed)
    ours = coco_evaluate(dets, gts, NUM_CLASSES, iou_type=iou_type)
    ref = pycocotools_stats(dets, gts, iou_type)
    assert 0.05 < ref["AP"] < 0.95, ref   # a case that is neither trivial nor hopeless
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), (key, ours, ref)


def test_cocoeval_cross_check_detects_a_wrong_matching_rule():
    """The comparison is sharp: evaluating at a shifted IoU threshold set moves AP off COCOeval's."""
    dets, gts = random_case(5)
    ref = pycocotools_stats(dets, gts, "bbox")
    shifted = coco_evaluate(dets, gts, NUM_CLASSES, iou_thresholds=np.linspace(0.55, 0.95, 9))
    assert abs(shifted["AP"] - ref["AP"]) > 1e-3
