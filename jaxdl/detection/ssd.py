"""SSD: Single Shot MultiBox Detector (Liu et al. 2016, ECCV).

Convolutional class and box predictors on several feature maps of decreasing resolution, each
cell of map ``k`` carrying default boxes of scale ``s_k`` and several aspect ratios (sec. 2.2,
:func:`jaxdl.detection.anchors.ssd_default_boxes`). Training (sec. 2.2):

* matching: each ground-truth box takes the default box it overlaps most, and every default
  box with IoU > 0.5 with some ground truth is matched to it;
* loss ``L = (L_conf + alpha L_loc) / N`` (eq. 1, ``alpha = 1``, ``N`` = matched boxes): softmax
  cross-entropy over ``K + 1`` classes (0 = background) and Smooth L1 on the offsets encoded as
  in Faster R-CNN with the "variances" 0.1 / 0.2 (``weights = (10, 10, 5, 5)``);
* hard negative mining: the unmatched boxes with the highest confidence loss, at most 3 per
  positive ("the ratio between the negatives and positives is at most 3:1").

The backbone is a small CNN for CPU runs (a zoo model by name also works through feature
taps); the extra 1x1 map comes from one more stride-2 convolution, as the paper's extra layers.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl.detection.anchors import ssd_boxes_per_cell, ssd_default_boxes
from jaxdl.detection.backbones import make_backbone
from jaxdl.detection.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes
from jaxdl.detection.postprocess import select_detections

__all__ = ["SSD", "ssd_match", "SSD_BOX_WEIGHTS"]

SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)   # 1 / variances (0.1, 0.1, 0.2, 0.2) of the reference implementation


def ssd_match(defaults: jax.Array, boxes: jax.Array, classes: jax.Array, iou_threshold: float = 0.5
              ) -> tuple[jax.Array, jax.Array]:
    """Match one image's ground truth to default boxes (SSD sec. 2.2, "Matching strategy").

    ``defaults <f>[D, 4]``, ``boxes <f>[M, 4]``, ``classes <i>[M]`` (-1 padding) ->
    ``(labels <i32>[D]`` in 0..K (0 = background), ``matched_boxes <f>[D, 4])``.
    """
    valid = classes >= 0
    iou = jnp.where(valid[None, :], box_iou(defaults, boxes), -1.0)          # [D, M]
    best_gt = jnp.argmax(iou, axis=1)
    best_iou = jnp.max(iou, axis=1)
    # every ground truth keeps its best default box, whatever the IoU
    best_default = jnp.argmax(iou, axis=0)                                   # [M]
    target_rows = jnp.where(valid, best_default, defaults.shape[0])          # out of range -> dropped
    best_gt = best_gt.at[target_rows].set(jnp.arange(boxes.shape[0]), mode="drop")
    best_iou = best_iou.at[target_rows].set(2.0, mode="drop")
    positive = best_iou >= iou_threshold
    labels = jnp.where(positive, classes[best_gt] + 1, 0).astype(jnp.int32)
    return labels, boxes[best_gt]


class SSD(nn.Module):
    """SSD detector on a square ``image_size`` input.

    ``x: <f32>[N, S, S, 3]`` -> detections (``__call__``) or ``(loss, parts)`` (``loss``);
    ``raw`` gives ``(class logits <f32>[N, D, K + 1], box deltas <f32>[N, D, 4])`` for the
    ``D`` default boxes of :attr:`default_boxes`.
    """

    num_classes: int = 3
    image_size: int = 64
    backbone: Any = None
    backbone_taps: Any = None
    taps: Sequence[str] = ("s8", "s16", "s32")
    strides: Sequence[int] = (8, 16, 32, 64)        # the last map comes from the extra layer
    aspect_ratios: Sequence[Sequence[float]] = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0,))
    s_min: float = 0.2                               # eq. 4
    s_max: float = 0.9
    extra_width: int = 128
    neg_pos_ratio: float = 3.0                       # hard negative mining 3:1
    alpha: float = 1.0                               # eq. 1
    max_detections: int = 50
    score_threshold: float = 0.02
    nms_iou: float = 0.45                            # sec. 3 (inference)

    def setup(self):
        self.features = make_backbone(self.backbone, self.backbone_taps)
        self.extra = nn.Conv(self.extra_width, (3, 3), strides=(2, 2), padding=1)
        self.cls_heads = [nn.Conv(ssd_boxes_per_cell(r) * (self.num_classes + 1), (3, 3), padding=1)
                          for r in self.aspect_ratios]
        self.box_heads = [nn.Conv(ssd_boxes_per_cell(r) * 4, (3, 3), padding=1) for r in self.aspect_ratios]

    @property
    def default_boxes(self) -> jax.Array:
        sizes = [max(1, -(-self.image_size // s)) for s in self.strides]
        return jnp.asarray(ssd_default_boxes(sizes, self.image_size, self.aspect_ratios, self.s_min, self.s_max))

    def raw(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        feats = self.features(x, train=train, features=tuple(self.taps))
        maps = [feats[t] for t in self.taps]
        maps.append(nn.relu(self.extra(maps[-1])))
        n = x.shape[0]
        logits = [h(f).reshape(n, -1, self.num_classes + 1) for h, f in zip(self.cls_heads, maps)]
        deltas = [h(f).reshape(n, -1, 4) for h, f in zip(self.box_heads, maps)]
        return jnp.concatenate(logits, axis=1), jnp.concatenate(deltas, axis=1)

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        logits, deltas = self.raw(x, train)
        defaults = self.default_boxes
        boxes = clip_boxes(decode_boxes(deltas, defaults[None], SSD_BOX_WEIGHTS), (self.image_size, self.image_size))
        scores = jax.nn.softmax(logits, axis=-1)[..., 1:]
        select = lambda b, s: select_detections(b, s, max_detections=self.max_detections, iou_threshold=self.nms_iou,
                                                score_threshold=self.score_threshold, pre_nms_top_k=200)
        return jax.vmap(select)(boxes, scores)

    def loss(self, x: jax.Array, targets: dict[str, jax.Array], train: bool = True) -> tuple[jax.Array, dict]:
        logits, deltas = self.raw(x, train)
        defaults = self.default_boxes
        labels, matched = jax.vmap(lambda b, c: ssd_match(defaults, b, c))(targets["boxes"], targets["classes"])
        positive = labels > 0                                                   # [N, D]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)    # [N, D]
        num_pos = positive.sum(axis=1)
        # hard negative mining: rank the background boxes by their loss, keep the top 3 per positive
        neg_loss = jnp.where(positive, -jnp.inf, jax.lax.stop_gradient(ce))
        rank = jnp.argsort(jnp.argsort(-neg_loss, axis=1), axis=1)
        num_neg = jnp.minimum(self.neg_pos_ratio * num_pos, positive.shape[1] - num_pos)
        selected = positive | (rank < num_neg[:, None])
        target_deltas = encode_boxes(matched, defaults[None], SSD_BOX_WEIGHTS)
        loc = optax.huber_loss(deltas, target_deltas, delta=1.0).sum(-1)         # Smooth L1
        n = jnp.maximum(num_pos.sum(), 1).astype(jnp.float32)
        conf_loss = jnp.sum(ce * selected) / n
        loc_loss = self.alpha * jnp.sum(loc * positive) / n
        return conf_loss + loc_loss, {"conf": conf_loss, "loc": loc_loss}
