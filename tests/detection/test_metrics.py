"""VOC and COCO metrics on hand-worked cases."""

import numpy as np
import pytest

from jaxdl.detection.metrics import coco_evaluate, mask_iou, voc_ap, voc_map
from jaxdl.errors import ConfigError

GT = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "classes": [0, 0]}]
# d1 hits gt1, d2 misses everything, d3 hits gt2: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
DETS = [{"boxes": [[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]], "scores": [0.9, 0.8, 0.7],
         "classes": [0, 0, 0]}]


def test_voc_all_point_and_11_point_hand_worked():
    # all points: 0.5 * 1 + 0.5 * 2/3
    assert voc_map(DETS, GT, 1)["map"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11 points: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points)
    assert voc_map(DETS, GT, 1, use_11_point=True)["map"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75)


def test_voc_perfect_duplicates_misses_and_missing_classes():
    perfect = [{"boxes": GT[0]["boxes"], "scores": [0.9, 0.8], "classes": [0, 0]}]
    res = voc_map(perfect, GT, 3)
    assert res["map"] == 1.0 and np.isnan(res["ap"][1]) and np.isnan(res["ap"][2])
    # a duplicate of gt1 ranked second is a false positive: P = 1, 1/2, 2/3 again
    dup = [{"boxes": [[0, 0, 10, 10], [0, 0, 10, 10.5], [20, 20, 30, 30]], "scores": [0.9, 0.8, 0.7], "classes": [0, 0, 0]}]
    assert voc_map(dup, GT, 1)["map"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # wrong class counts for nothing; a box at IoU 0.49 is a miss
    assert voc_map([{"boxes": GT[0]["boxes"], "scores": [1, 1], "classes": [1, 1]}], GT, 2)["map"] == 0.0
    half = [{"boxes": [[0, 0, 10, 4.9]], "scores": [1.0], "classes": [0]}]
    assert voc_map(half, [{"boxes": [[0, 0, 10, 10]], "classes": [0]}], 1)["map"] == 0.0
    # padding rows (class -1) are ignored
    padded = [{"boxes": GT[0]["boxes"] + [[0, 0, 0, 0]], "scores": [0.9, 0.8, 0.99], "classes": [0, 0, -1]}]
    assert voc_map(padded, GT, 1)["map"] == 1.0


def test_voc_difficult_objects_are_neutral():
    gt = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "classes": [0, 0], "difficult": [False, True]}]
    dets = [{"boxes": [[20, 20, 30, 30], [0, 0, 10, 10]], "scores": [0.9, 0.8], "classes": [0, 0]}]
    assert voc_map(dets, gt, 1)["map"] == 1.0


def test_coco_101_point_and_thresholds():
    res = coco_evaluate(DETS, GT, 1)
    # every IoU is 0 or 1, so all ten thresholds give the 101-point AP of P = 1, 1/2, 2/3
    expected = (51 + 50 * 2 / 3) / 101
    assert res["AP"] == pytest.approx(expected) and res["AP50"] == pytest.approx(expected)
    assert res["AR100"] == 1.0 and res["AR1"] == 0.5
    # IoU 0.72 is a hit at .50 .55 .60 .65 .70 and a miss at .75 ... .95
    gt = [{"boxes": [[0, 0, 10, 10]], "classes": [0]}]
    res = coco_evaluate([{"boxes": [[0, 0, 10, 7.2]], "scores": [1.0], "classes": [0]}], gt, 1)
    assert res["AP"] == pytest.approx(0.5) and res["AP50"] == 1.0 and res["AP75"] == 0.0
    assert res["AR100"] == pytest.approx(0.5)


def test_coco_matching_takes_the_best_unmatched_ground_truth():
    # A = [0,0,10,10], B = [4,0,14,10] (IoU(A, B) = 0.43). The first detection overlaps A at 0.54
    # and B at 0.82, the second equals A. Best-IoU matching pairs 1->B, 2->A: two hits (AP 1);
    # first-come matching would pair 1->A and leave the second a miss (AP 0.5).
    gt = [{"boxes": [[0, 0, 10, 10], [4, 0, 14, 10]], "classes": [0, 0]}]
    dets = [{"boxes": [[3, 0, 13, 10], [0, 0, 10, 10]], "scores": [0.9, 0.8], "classes": [0, 0]}]
    assert coco_evaluate(dets, gt, 1, iou_thresholds=np.array([0.5]))["AP"] == pytest.approx(1.0)
    assert voc_map(dets, gt, 1)["map"] == pytest.approx(1.0)


def test_mask_ap():
    m = np.zeros((2, 8, 8), bool)
    m[0, :4, :4] = True
    m[1, 4:, 4:] = True
    d = m.copy()
    d[1, 4:, 4:6] = False   # second prediction covers half of its object: IoU 0.5
    np.testing.assert_allclose(mask_iou(d, m), [[1, 0], [0, 0.5]])
    gts = [{"masks": m, "classes": [0, 0], "boxes": np.zeros((2, 4))}]
    dets = [{"masks": d, "scores": [0.9, 0.8], "classes": [0, 0], "boxes": np.zeros((2, 4))}]
    assert voc_map(dets, gts, 1, iou_type="segm")["map"] == 1.0
    assert voc_map(dets, gts, 1, iou_type="segm", iou_threshold=0.6)["map"] == pytest.approx(0.5)
    # COCO: mask IoUs 1 and 0.5 -> at t = .5 both hit (AP 1); above, only the first (recall 1/2, AP ~ 0.5)
    res = coco_evaluate(dets, gts, 1, iou_type="segm")
    assert res["AP50"] == 1.0
    assert res["AP"] == pytest.approx((1.0 + 9 * 51 / 101) / 10)
    with pytest.raises(ConfigError, match="masks"):
        voc_map([{"boxes": [[0, 0, 1, 1]], "scores": [1], "classes": [0]}], gts, 1, iou_type="segm")


def test_length_mismatch_is_an_error():
    with pytest.raises(ConfigError, match="one entry per image"):
        voc_map(DETS, GT + GT, 1)
