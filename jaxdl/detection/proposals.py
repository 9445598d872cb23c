"""Class-agnostic region proposals: a documented simplification of selective search.

Selective search (Uijlings et al. 2013, IJCV, sec. 3) starts from an over-segmentation
(Felzenszwalb & Huttenlocher's graph segmentation) and greedily merges the two most similar
neighbouring regions until one is left; every region met on the way is a proposal. This version
keeps that hierarchical grouping and simplifies the rest:

1. Initial regions: the image is smoothed with a 3x3 box filter, every channel quantised into
   ``levels`` bins, and each connected component (4-neighbourhood) of one quantised colour is a
   region (instead of the graph segmentation). Regions under ``min_size`` pixels are merged
   into their most similar neighbour first.
2. Similarity of neighbours: colour similarity ``1 - |mean_a - mean_b|_1 / 765`` plus the size
   term ``1 - (size_a + size_b) / image_size`` (the paper's ``s_colour`` and ``s_size``; no
   texture or fill terms, and one colour space instead of the paper's diversification).
3. Every region of the hierarchy gives its bounding box; duplicates (IoU > 0.95) are dropped,
   boxes are ordered by hierarchy level (earliest first, as the paper ranks them), and the list
   is cut or padded (by repeating the whole-image box) to a fixed ``num_proposals``.

Runs on the host in numpy/scipy, about 5-10 ms per 64x64 image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jaxdl.detection.metrics import numpy_box_iou

__all__ = ["selective_search", "proposals_for", "proposal_recall"]


def _initial_regions(image: np.ndarray, levels: int) -> np.ndarray:
    smooth = ndimage.uniform_filter(image.astype(np.float32), size=(3, 3, 1), mode="nearest")
    q = np.clip((smooth / 256.0 * levels).astype(np.int32), 0, levels - 1)
    colour_id = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    labels = np.zeros(colour_id.shape, np.int32)
    next_id = 0
    for c in np.unique(colour_id):
        comp, n = ndimage.label(colour_id == c)
        labels[comp > 0] = comp[comp > 0] + next_id - 1
        next_id += n
    return labels


def selective_search(image: np.ndarray, levels: int = 4, min_size: int = 6) -> np.ndarray:
    """Proposals for one image ``<u8>[H, W, 3]`` -> ``<f32>[P, 4]`` xyxy, hierarchy order (P varies)."""
    h, w, _ = image.shape
    labels = _initial_regions(image, levels)
    n = int(labels.max()) + 1
    idx = np.arange(n)
    size = ndimage.sum_labels(np.ones((h, w)), labels, idx)
    colour = np.stack([ndimage.sum_labels(image[..., c].astype(np.float64), labels, idx) for c in range(3)], 1)
    ys, xs = np.mgrid[0:h, 0:w]
    box = np.stack([ndimage.minimum(xs, labels, idx), ndimage.minimum(ys, labels, idx),
                    ndimage.maximum(xs, labels, idx) + 1, ndimage.maximum(ys, labels, idx) + 1], 1).astype(np.float64)
    # neighbours: pairs of different labels side by side
    codes = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        codes.append(lo.astype(np.int64) * n + hi)
    codes = np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)
    alive = {i: True for i in range(n)}
    neigh = {i: set() for i in range(n)}
    for code in codes.tolist():
        p, q = divmod(code, n)
        neigh[p].add(q)
        neigh[q].add(p)
    total = float(h * w)
    size, colour, box = list(size), list(colour), list(box)

    def sim(a, b):
        ca, cb = colour[a] / size[a], colour[b] / size[b]
        return (1.0 - np.abs(ca - cb).sum() / 765.0) + (1.0 - (size[a] + size[b]) / total)

    def merge(a, b):
        new = len(size)
        size.append(size[a] + size[b])
        colour.append(colour[a] + colour[b])
        box.append(np.array([min(box[a][0], box[b][0]), min(box[a][1], box[b][1]),
                             max(box[a][2], box[b][2]), max(box[a][3], box[b][3])]))
        alive[a] = alive[b] = False
        alive[new] = True
        neigh[new] = (neigh[a] | neigh[b]) - {a, b}
        for r in neigh[new]:
            neigh[r] -= {a, b}
            neigh[r].add(new)
        return new

    # absorb tiny regions (noise specks) into their most similar neighbour
    for r in range(n):
        if alive.get(r) and size[r] < min_size and neigh[r]:
            merge(r, max(neigh[r], key=lambda q: sim(r, q)))
    out = [box[r] for r in range(len(size)) if alive[r]]
    sims = {(a, b): sim(a, b) for a in alive if alive[a] for b in neigh[a] if a < b}
    while sims:
        a, b = max(sims, key=sims.get)
        new = merge(a, b)
        out.append(box[new])
        sims = {k: v for k, v in sims.items() if a not in k and b not in k}
        sims.update({(r, new): sim(r, new) for r in neigh[new]})
    boxes = np.asarray(out, np.float32).reshape(-1, 4)
    keep = []
    for i, bx in enumerate(boxes):
        if bx[2] - bx[0] < 2 or bx[3] - bx[1] < 2:
            continue
        if keep and numpy_box_iou(bx[None], boxes[keep]).max() > 0.95:
            continue
        keep.append(i)
    return boxes[keep]


def proposals_for(images: np.ndarray, num_proposals: int = 64, **kw) -> np.ndarray:
    """``<u8>[N, H, W, 3] -> <f32>[N, num_proposals, 4]`` (padded with the whole-image box)."""
    n, h, w, _ = images.shape
    out = np.tile(np.array([0, 0, w, h], np.float32), (n, num_proposals, 1))
    for i in range(n):
        p = selective_search(images[i], **kw)[:num_proposals]
        out[i, :len(p)] = p
    return out


def proposal_recall(proposals: np.ndarray, boxes: np.ndarray, classes: np.ndarray, iou: float = 0.5) -> float:
    """Fraction of ground-truth objects covered by some proposal at IoU >= ``iou``."""
    hit = total = 0
    for p, b, c in zip(proposals, boxes, classes):
        b = b[c >= 0]
        if len(b):
            hit += int(np.sum(numpy_box_iou(b, p).max(axis=1) >= iou))
            total += len(b)
    return hit / max(total, 1)
