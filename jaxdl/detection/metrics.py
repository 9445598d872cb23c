"""Detection metrics on the host (numpy): Pascal VOC AP and COCO-style AP / AR, for boxes and masks.

Inputs are per-image lists (any length-N sequences of dicts):

* detections[i] = ``{"boxes": <f>[n, 4], "scores": <f>[n], "classes": <i>[n]}`` (+ ``"masks":
  <bool>[n, H, W]`` for mask AP),
* ground_truth[i] = ``{"boxes": <f>[m, 4], "classes": <i>[m]}`` (+ ``"masks"``, and optionally
  ``"difficult": <bool>[m]`` for VOC, which neither count as positives nor make a detection
  a false positive).

Boxes are ``(x1, y1, x2, y2)`` pixel edges (area ``(x2 - x1) (y2 - y1)``, COCO's convention).
Padding rows (class < 0) are ignored, so the padded arrays of a jitted detector can go in as they are.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxdl.errors import ConfigError

__all__ = ["voc_ap", "voc_map", "coco_evaluate", "mask_iou", "numpy_box_iou", "COCO_IOU_THRESHOLDS"]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)     # AP@[.5:.05:.95], COCO's primary metric
_COCO_RECALLS = np.linspace(0.0, 1.0, 101)          # COCO's 101-point interpolation


def numpy_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``<f>[n, 4] x <f>[m, 4] -> <f64>[n, m]`` (0 where the union is empty)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of binary masks ``<bool>[n, H, W] x <bool>[m, H, W] -> <f64>[n, m]``."""
    a = np.asarray(a, bool).reshape(len(a), -1).astype(np.float64)
    b = np.asarray(b, bool).reshape(len(b), -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_11_point: bool = False) -> float:
    """Average precision from a precision/recall curve (detections sorted by score).

    ``use_11_point``: VOC2007's mean of the maximum precision at recall >= t for
    t in {0, 0.1, ..., 1} (Everingham et al. 2010, sec. 4.2). Otherwise VOC2010+'s area under
    the monotone precision envelope ("all points").
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_11_point:
        return float(np.mean([precision[recall >= t].max() if np.any(recall >= t) else 0.0
                              for t in np.linspace(0, 1, 11)]))
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]         # envelope: max precision to the right
    step = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))


def _rows(entry: dict[str, Any], with_scores: bool, key: str) -> dict[str, np.ndarray]:
    classes = np.asarray(entry["classes"]).reshape(-1).astype(np.int64)
    keep = classes >= 0
    out = {"classes": classes[keep]}
    if key == "masks":
        if "masks" not in entry:
            raise ConfigError("mask AP needs 'masks' in every detection and ground-truth entry")
        out["masks"] = np.asarray(entry["masks"], bool)[keep]
    else:
        out["boxes"] = np.asarray(entry["boxes"], np.float64).reshape(-1, 4)[keep]
    if with_scores:
        out["scores"] = np.asarray(entry["scores"], np.float64).reshape(-1)[keep]
    else:
        diff = entry.get("difficult")
        out["difficult"] = (np.zeros(len(classes), bool) if diff is None else np.asarray(diff, bool))[keep]
    return out


def _check_lengths(detections: Sequence, ground_truth: Sequence) -> None:
    if len(detections) != len(ground_truth):
        raise ConfigError(f"detections cover {len(detections)} images but ground_truth {len(ground_truth)}; "
                          f"pass one entry per image to both (an image without detections gets empty arrays)")


def voc_map(detections: Sequence[dict], ground_truth: Sequence[dict], num_classes: int,
            iou_threshold: float = 0.5, use_11_point: bool = False, iou_type: str = "bbox") -> dict[str, Any]:
    """Pascal VOC mean average precision at one IoU threshold (0.5 in the challenge).

    Matching is VOC's: detections of a class in descending score order; each takes the ground
    truth it overlaps most; if that IoU >= threshold and that ground truth is not yet taken it is
    a true positive, else a false positive (a duplicate). ``iou_type="segm"`` uses mask IoU.

    Returns:
      ``{"map": float, "ap": <f64>[K]}``; ``ap[k]`` is NaN for a class with no ground truth, and
      such classes are left out of the mean.
    """
    _check_lengths(detections, ground_truth)
    key = "masks" if iou_type == "segm" else "boxes"
    iou_fn = mask_iou if key == "masks" else numpy_box_iou
    dets = [_rows(d, True, key) for d in detections]
    gts = [_rows(g, False, key) for g in ground_truth]
    ap = np.full(num_classes, np.nan)
    for k in range(num_classes):
        n_pos = sum(int(np.sum((g["classes"] == k) & ~g["difficult"])) for g in gts)
        if n_pos == 0:
            continue
        scores, tp, fp = [], [], []
        for d, g in zip(dets, gts):
            dk, gk = d["classes"] == k, g["classes"] == k
            if not dk.any():
                continue
            s = d["scores"][dk]
            order = np.argsort(-s, kind="stable")
            taken = np.zeros(int(gk.sum()), bool)
            difficult = g["difficult"][gk]
            iou = iou_fn(d[key][dk][order], g[key][gk]) if gk.any() else np.zeros((len(order), 0))
            for row in range(len(order)):
                scores.append(s[order[row]])
                if iou.shape[1] == 0:
                    tp.append(0), fp.append(1)
                    continue
                j = int(np.argmax(iou[row]))
                if iou[row, j] >= iou_threshold:
                    if difficult[j]:
                        tp.append(0), fp.append(0)
                    elif not taken[j]:
                        taken[j] = True
                        tp.append(1), fp.append(0)
                    else:
                        tp.append(0), fp.append(1)
                else:
                    tp.append(0), fp.append(1)
        if not scores:
            ap[k] = 0.0
            continue
        order = np.argsort(-np.asarray(scores), kind="stable")
        ctp, cfp = np.cumsum(np.asarray(tp)[order]), np.cumsum(np.asarray(fp)[order])
        recall = ctp / n_pos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        ap[k] = voc_ap(recall, precision, use_11_point)
    valid = ~np.isnan(ap)
    return {"map": float(np.mean(ap[valid])) if valid.any() else 0.0, "ap": ap}


def coco_evaluate(detections: Sequence[dict], ground_truth: Sequence[dict], num_classes: int,
                  iou_type: str = "bbox", max_detections: Sequence[int] = (1, 10, 100),
                  iou_thresholds: np.ndarray = COCO_IOU_THRESHOLDS) -> dict[str, float]:
    """COCO-style AP and AR (Lin et al. 2014; the rules of the official ``COCOeval``), no crowds.

    For every class and image the top ``max_detections`` detections by score are matched at
    every IoU threshold ``t`` in .50:.05:.95: in score order each detection takes the
    still-unmatched ground truth of highest IoU >= t. Precision is interpolated at 101 recall
    points (max precision at recall >= r), averaged over classes with ground truth and over
    thresholds. AR is the recall reached, averaged likewise. No area ranges (all objects count).

    Returns:
      ``{"AP", "AP50", "AP75", "AR1", "AR10", "AR100"}`` (AR keys follow ``max_detections``); AP
      values use the largest ``max_detections``.
    """
    _check_lengths(detections, ground_truth)
    key = "masks" if iou_type == "segm" else "boxes"
    if iou_type not in ("bbox", "segm"):
        raise ConfigError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    iou_fn = mask_iou if key == "masks" else numpy_box_iou
    dets = [_rows(d, True, key) for d in detections]
    gts = [_rows(g, False, key) for g in ground_truth]
    thresholds = np.asarray(iou_thresholds, np.float64)
    t_count = len(thresholds)
    max_dets = sorted(int(m) for m in max_detections)
    precision = np.full((t_count, num_classes), np.nan)
    recall = {m: np.full((t_count, num_classes), np.nan) for m in max_dets}
    for k in range(num_classes):
        n_pos = sum(int(np.sum(g["classes"] == k)) for g in gts)
        if n_pos == 0:
            continue
        for m in max_dets:
            scores, matched = [], []   # matched: [t_count] bool per detection
            for d, g in zip(dets, gts):
                dk, gk = d["classes"] == k, g["classes"] == k
                if not dk.any():
                    continue
                s = d["scores"][dk]
                order = np.argsort(-s, kind="stable")[:m]
                iou = iou_fn(d[key][dk][order], g[key][gk]) if gk.any() else np.zeros((len(order), 0))
                hits = np.zeros((len(order), t_count), bool)
                for ti, t in enumerate(thresholds):
                    taken = np.zeros(iou.shape[1], bool)
                    for row in range(len(order)):
                        cand = np.where(taken, -1.0, iou[row])
                        if cand.size and cand.max() >= t:
                            j = int(np.argmax(cand))
                            taken[j] = True
                            hits[row, ti] = True
                scores.extend(s[order])
                matched.extend(hits)
            if not scores:
                recall[m][:, k] = 0.0
                if m == max_dets[-1]:
                    precision[:, k] = 0.0
                continue
            order = np.argsort(-np.asarray(scores), kind="mergesort")
            hits = np.asarray(matched)[order]                   # [D, T]
            ctp = np.cumsum(hits, axis=0)
            cfp = np.cumsum(~hits, axis=0)
            rec = ctp / n_pos
            recall[m][:, k] = rec[-1]
            if m != max_dets[-1]:
                continue
            prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
            for ti in range(t_count):
                p = np.maximum.accumulate(prec[::-1, ti])[::-1]
                idx = np.searchsorted(rec[:, ti], _COCO_RECALLS, side="left")
                q = np.where(idx < len(p), p[np.minimum(idx, len(p) - 1)], 0.0)
                precision[ti, k] = q.mean()
    mean = lambda a: float(np.nanmean(a)) if np.any(~np.isnan(a)) else 0.0
    out = {"AP": mean(precision)}
    for name, t in (("AP50", 0.5), ("AP75", 0.75)):
        hit = np.flatnonzero(np.isclose(thresholds, t))
        if hit.size:
            out[name] = mean(precision[hit[0]])
    for m in max_dets:
        out[f"AR{m}"] = mean(recall[m])
    return out
