"""Faster R-CNN (Ren, He, Girshick & Sun 2015) and Mask R-CNN (He, Gkioxari, Dollar & Girshick 2017).

Faster R-CNN = a Region Proposal Network sharing the backbone's features (sec. 3.1) + the Fast
R-CNN detector on its proposals (RoI pooling, two FC layers, a (K+1)-way classifier and
class-specific box regression, Girshick 2015 sec. 2). Mask R-CNN adds a small FCN on RoI Align
features that predicts a 28x28 binary mask per class (sec. 3), trained with per-pixel sigmoid
cross-entropy on the mask of the ground-truth class only.

Static shapes for jit: the RPN keeps ``pre_nms_top_n`` proposals before and ``post_nms_top_n``
after NMS (padded); the RPN samples ``rpn_batch`` anchors per image (up to half positive) and
the RoI head ``roi_batch`` proposals (up to 25 % foreground); everything padded is masked out
of the losses. Ground-truth boxes are appended to the proposals in training (as in the
reference implementations), so the RoI head sees positives from step one.

Defaults are scaled for 64x64 images and a stride-8 small CNN: anchors of 16, 24, 32 pixels
(the paper's 128, 256, 512 on ~600-pixel images), RPN batch 64 (paper 256), RoI batch 64
(paper 128 for 2 images), post-NMS 64 proposals (paper 300 at test time).
RoI Align (``pooler="align"``, Mask R-CNN's layer) is the default; ``pooler="pool"`` is Fast
R-CNN's RoI max pooling.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.detection.anchors import anchor_grid
from jaxdl.detection.backbones import make_backbone
from jaxdl.detection.boxes import clip_boxes, decode_boxes, encode_boxes
from jaxdl.detection.masks import paste_masks
from jaxdl.detection.nms import nms
from jaxdl.detection.postprocess import select_detections
from jaxdl.detection.sampling import assign, sample_balanced
from jaxdl.errors import ConfigError
from jaxdl.nn.roi import roi_align, roi_pool

__all__ = ["FasterRCNN", "RCNN_BOX_WEIGHTS"]

RCNN_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)   # Fast R-CNN box-target normalisation (torchvision's values)


def _smooth_l1(x: jax.Array, beta: float) -> jax.Array:
    ax = jnp.abs(x)
    return jnp.where(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


class FasterRCNN(nn.Module):
    """Faster R-CNN; with ``mask_head=True`` Mask R-CNN.

    ``x: <f32>[N, H, W, 3]`` -> ``__call__``: detections ``{"boxes": [N, D, 4], "scores": [N, D],
    "classes": [N, D]}`` (+ ``"masks": <f32>[N, D, H, W]`` probabilities with ``mask_head``);
    ``loss(x, targets)``: ``(loss, parts)``, targets ``{"boxes", "classes"}`` (+ ``"masks"
    <bool>[N, M, H, W]``).
    """

    num_classes: int = 3
    image_size: int = 64
    proposal_source: str = "rpn"        # "given": Fast R-CNN, proposals come with the input
    backbone: Any = None
    backbone_taps: Any = None
    tap: str = "s8"
    stride: int = 8
    anchor_sizes: Sequence[float] = (16.0, 24.0, 32.0)
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)
    rpn_width: int = 128
    rpn_batch: int = 64
    rpn_positive_fraction: float = 0.5
    rpn_pos_iou: float = 0.7            # sec. 3.1.2
    rpn_neg_iou: float = 0.3
    pre_nms_top_n: int = 300
    post_nms_top_n: int = 64
    rpn_nms_iou: float = 0.7            # sec. 3.3
    roi_batch: int = 64
    roi_positive_fraction: float = 0.25   # Fast R-CNN sec. 2.3
    roi_fg_iou: float = 0.5
    pooler: str = "align"
    pool_size: int = 7
    fc_width: int = 256
    mask_head: bool = False
    mask_pool_size: int = 14            # Mask R-CNN: 14x14 RoI Align -> 4 convs -> deconv -> 28x28
    mask_width: int = 64
    max_detections: int = 50
    score_threshold: float = 0.05
    nms_iou: float = 0.5

    def setup(self):
        if self.pooler not in ("align", "pool"):
            raise ConfigError(f"pooler must be 'align' (RoI Align) or 'pool' (RoI max pooling), got {self.pooler!r}")
        if self.proposal_source not in ("rpn", "given"):
            raise ConfigError(f"proposal_source must be 'rpn' (Faster R-CNN) or 'given' (Fast R-CNN), "
                              f"got {self.proposal_source!r}")
        self.features = make_backbone(self.backbone, self.backbone_taps)
        if self.proposal_source == "rpn":
            a = len(self.anchor_sizes) * len(self.aspect_ratios)
            self.rpn_conv = nn.Conv(self.rpn_width, (3, 3), padding=1)
            self.rpn_cls = nn.Conv(a, (1, 1), kernel_init=nn.initializers.normal(0.01))
            self.rpn_box = nn.Conv(4 * a, (1, 1), kernel_init=nn.initializers.normal(0.01))
        self.fc6 = nn.Dense(self.fc_width)
        self.fc7 = nn.Dense(self.fc_width)
        self.cls_score = nn.Dense(self.num_classes + 1, kernel_init=nn.initializers.normal(0.01))
        self.bbox_pred = nn.Dense(4 * self.num_classes, kernel_init=nn.initializers.normal(0.001))
        if self.mask_head:
            self.mask_convs = [nn.Conv(self.mask_width, (3, 3), padding=1) for _ in range(4)]
            self.mask_up = nn.ConvTranspose(self.mask_width, (2, 2), strides=(2, 2))
            self.mask_logits = nn.Conv(self.num_classes, (1, 1))

    # ------------------------------------------------------------------ pieces
    @property
    def anchors(self) -> jax.Array:
        f = -(-self.image_size // self.stride)
        return jnp.asarray(anchor_grid((f, f), self.stride, self.anchor_sizes, self.aspect_ratios))

    def _rpn(self, feat):
        h = nn.relu(self.rpn_conv(feat))
        n = feat.shape[0]
        return self.rpn_cls(h).reshape(n, -1), self.rpn_box(h).reshape(n, -1, 4)

    def _proposals(self, logits, deltas, top_n):
        """One image: ``<f>[A], <f>[A, 4] -> (boxes <f>[top_n, 4], valid <bool>[top_n])``."""
        boxes = clip_boxes(decode_boxes(deltas, self.anchors), (self.image_size, self.image_size))
        k = min(self.pre_nms_top_n, boxes.shape[0])
        scores, idx = jax.lax.top_k(logits, k)
        boxes = boxes[idx]
        wide = (boxes[:, 2] - boxes[:, 0] > 1e-3) & (boxes[:, 3] - boxes[:, 1] > 1e-3)
        keep, ok = nms(boxes, scores, self.rpn_nms_iou, top_n, valid=wide)
        return jnp.where(ok[:, None], boxes[jnp.maximum(keep, 0)], 0.0), ok

    def _pool(self, feat, boxes, size):
        """``feat <f>[N, h, w, C]``, ``boxes <f>[N, R, 4]`` -> ``<f>[N, R, size, size, C]``."""
        n, r = boxes.shape[:2]
        rois = jnp.concatenate([jnp.repeat(jnp.arange(n, dtype=boxes.dtype), r)[:, None], boxes.reshape(-1, 4)], 1)
        if self.pooler == "pool":
            out = roi_pool(feat, rois, size, 1.0 / self.stride)
        else:
            out = roi_align(feat, rois, size, 1.0 / self.stride, sampling_ratio=2, aligned=True)
        return out.reshape(n, r, size, size, -1)

    def _box_head(self, pooled):
        n, r = pooled.shape[:2]
        h = nn.relu(self.fc6(pooled.reshape(n, r, -1)))
        h = nn.relu(self.fc7(h))
        return self.cls_score(h), self.bbox_pred(h).reshape(n, r, self.num_classes, 4)

    def _mask_head(self, pooled):
        n, r = pooled.shape[:2]
        h = pooled.reshape(n * r, *pooled.shape[2:])
        for conv in self.mask_convs:
            h = nn.relu(conv(h))
        h = nn.relu(self.mask_up(h))
        return self.mask_logits(h).reshape(n, r, 2 * self.mask_pool_size, 2 * self.mask_pool_size, self.num_classes)

    # ------------------------------------------------------------------ inference
    def _given(self, proposals, n):
        """Fast R-CNN's external proposals ``<f>[N, P, 4]``; rows of zero width are padding."""
        if proposals is None:
            if not self.is_initializing():
                raise ConfigError("fast_rcnn needs proposals: call it with proposals=<f32>[N, P, 4] "
                                  "(e.g. jaxdl.detection.proposals.proposals_for(images))")
            proposals = jnp.tile(jnp.asarray([0.0, 0.0, self.image_size, self.image_size]), (n, 1, 1))
        ok = (proposals[..., 2] - proposals[..., 0] > 1e-3) & (proposals[..., 3] - proposals[..., 1] > 1e-3)
        return proposals, ok

    def __call__(self, x: jax.Array, train: bool = False, proposals: jax.Array | None = None) -> dict[str, jax.Array]:
        feat = self.features(x, train=train, features=(self.tap,))[self.tap]
        if self.proposal_source == "given":
            props, ok = self._given(proposals, x.shape[0])
        else:
            logits, deltas = self._rpn(feat)
            props, ok = jax.vmap(lambda l, d: self._proposals(l, d, self.post_nms_top_n))(logits, deltas)
        cls_logits, box_deltas = self._box_head(self._pool(feat, props, self.pool_size))
        probs = jax.nn.softmax(cls_logits, axis=-1)[..., 1:] * ok[..., None]
        boxes = decode_boxes(box_deltas, props[:, :, None, :], RCNN_BOX_WEIGHTS)
        boxes = clip_boxes(boxes, (self.image_size, self.image_size))
        select = lambda b, s: select_detections(b, s, max_detections=self.max_detections, iou_threshold=self.nms_iou,
                                                score_threshold=self.score_threshold)
        out = jax.vmap(select)(boxes, probs)
        if self.mask_head:
            m = jax.nn.sigmoid(self._mask_head(self._pool(feat, out["boxes"], self.mask_pool_size)))   # [N, D, 28, 28, K]
            cls = jnp.maximum(out["classes"], 0)
            m = jnp.take_along_axis(m, cls[:, :, None, None, None], axis=-1)[..., 0]
            out["masks"] = jax.vmap(lambda mm, bb: paste_masks(mm, bb, (self.image_size, self.image_size)))(m, out["boxes"])
        return out

    def _rpn_loss(self, feat, key, gt_boxes, gt_classes):
        """RPN loss (sec. 3.1.2) and the proposals for the RoI head (no gradient through them,
        as in the approximate joint training of sec. 3.2)."""
        n = gt_classes.shape[0]
        logits, deltas = self._rpn(feat)
        anchors = self.anchors

        # binary log loss on sampled anchors + smooth L1 on the positives
        def rpn_one(key, l, d, b, c):
            label, matched, _ = assign(anchors, jnp.ones(anchors.shape[0], bool), b, c,
                                       self.rpn_pos_iou, self.rpn_neg_iou, allow_low_quality=True)
            idx, kind = sample_balanced(key, label, self.rpn_batch, self.rpn_positive_fraction)
            safe = jnp.maximum(idx, 0)
            used = (kind >= 0).astype(jnp.float32)
            cls_loss = jnp.sum(optax.sigmoid_binary_cross_entropy(l[safe], (kind == 1).astype(jnp.float32)) * used)
            target = encode_boxes(b[matched[safe]], anchors[safe])
            box_loss = jnp.sum(_smooth_l1(d[safe] - target, 1.0 / 9).sum(-1) * (kind == 1))
            return cls_loss, box_loss, jnp.maximum(used.sum(), 1.0)

        rc, rb, rn = jax.vmap(rpn_one)(jax.random.split(key, n), logits, deltas, gt_boxes, gt_classes)
        props, ok = jax.vmap(lambda l, d: self._proposals(l, d, self.post_nms_top_n))(
            jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas))
        return props, ok, {"rpn_cls": jnp.sum(rc) / jnp.sum(rn), "rpn_box": jnp.sum(rb) / jnp.sum(rn)}

    # ------------------------------------------------------------------ training
    def loss(self, x: jax.Array, targets: dict[str, jax.Array], train: bool = True) -> tuple[jax.Array, dict]:
        gt_boxes, gt_classes = targets["boxes"], targets["classes"]
        n, m = gt_classes.shape
        feat = self.features(x, train=train, features=(self.tap,))[self.tap]
        key = self.make_rng("sample")
        k_rpn, k_roi = jax.random.split(key)
        parts = {}
        if self.proposal_source == "given":
            props, ok = self._given(targets.get("proposals"), n)
        else:
            props, ok, parts = self._rpn_loss(feat, k_rpn, gt_boxes, gt_classes)
        props = jnp.concatenate([props, gt_boxes], axis=1)
        ok = jnp.concatenate([ok, gt_classes >= 0], axis=1)

        # RoI head: sample 25 % foreground (IoU >= 0.5), the rest background (IoU < 0.5).
        def roi_one(key, p, v, b, c):
            label, matched, _ = assign(p, v, b, c, self.roi_fg_iou, self.roi_fg_iou, allow_low_quality=False)
            idx, kind = sample_balanced(key, label, self.roi_batch, self.roi_positive_fraction)
            safe = jnp.maximum(idx, 0)
            gt_idx = matched[safe]
            cls_target = jnp.where(kind == 1, c[gt_idx] + 1, 0)
            return p[safe], kind, cls_target, gt_idx

        rois, kind, cls_target, gt_idx = jax.vmap(roi_one)(jax.random.split(k_roi, n), props, ok, gt_boxes, gt_classes)
        used = (kind >= 0).astype(jnp.float32)
        fg = (kind == 1)
        cls_logits, box_deltas = self._box_head(self._pool(feat, rois, self.pool_size))
        denom = jnp.maximum(used.sum(), 1.0)
        roi_cls = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(cls_logits, cls_target) * used) / denom
        matched_boxes = jnp.take_along_axis(gt_boxes, gt_idx[..., None], axis=1)
        box_target = encode_boxes(matched_boxes, rois, RCNN_BOX_WEIGHTS)
        own = jnp.take_along_axis(box_deltas, jnp.maximum(cls_target - 1, 0)[..., None, None], axis=2)[:, :, 0]
        roi_box = jnp.sum(_smooth_l1(own - box_target, 1.0).sum(-1) * fg) / denom
        parts.update({"roi_cls": roi_cls, "roi_box": roi_box})

        if self.mask_head:
            if "masks" not in targets:
                raise ConfigError("mask_rcnn training needs instance masks in the batch ('masks': [N, M, H, W])")
            size = 2 * self.mask_pool_size
            # The mask loss is defined on positive RoIs only (Mask R-CNN sec. 3.1); sample_balanced puts
            # them in the first round(roi_batch * fraction) slots, so only those go through the mask head.
            p = max(1, int(round(self.roi_batch * self.roi_positive_fraction)))
            rois, fg, cls_target, gt_idx = rois[:, :p], fg[:, :p], cls_target[:, :p], gt_idx[:, :p]
            mask_logits = self._mask_head(self._pool(feat, rois, self.mask_pool_size))   # [N, P, 28, 28, K]
            own_mask = jnp.take_along_axis(mask_logits, jnp.maximum(cls_target - 1, 0)[:, :, None, None, None],
                                           axis=-1)[..., 0]
            # Target: the matched instance mask cropped to the RoI and resampled to 28x28 (RoI Align on the mask).
            gt_masks = targets["masks"].astype(jnp.float32).reshape(n * m, self.image_size, self.image_size, 1)
            r = rois.shape[1]
            batch_index = (jnp.arange(n)[:, None] * m + gt_idx).astype(jnp.float32).reshape(-1, 1)
            mrois = jnp.concatenate([batch_index, rois.reshape(-1, 4)], axis=1)
            mask_target = roi_align(gt_masks, mrois, size, 1.0, sampling_ratio=2, aligned=True).reshape(n, r, size, size)
            mask_target = (mask_target >= 0.5).astype(jnp.float32)
            per_roi = optax.sigmoid_binary_cross_entropy(own_mask, mask_target).mean(axis=(2, 3))
            parts["mask"] = jnp.sum(per_roi * fg) / jnp.maximum(fg.sum(), 1.0)
        return sum(parts.values()), parts
