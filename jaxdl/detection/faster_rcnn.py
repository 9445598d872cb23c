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

With ``fpn=True`` (Lin et al. 2017, "Feature Pyramid Networks for Object Detection") the
backbone maps ``fpn_taps`` (C2..C5: strides 4, 8, 16, 32 by default) go through the
:class:`jaxdl.detection.fpn.FPN` neck (``fpn_width`` channels, sec. 3). The RPN runs one shared
head (3x3 conv + two 1x1 convs) on every level, P6 included with ``fpn_p6`` (sec. 4.1), with one
anchor size per level times the aspect ratios; the anchors of all levels are concatenated and
the proposals are the top ``pre_nms_top_n`` of the merged set, NMS'd to ``post_nms_top_n``
(static sizes as without FPN). Each RoI is pooled from level ``k = floor(k0 + log2(sqrt(wh) /
canonical))`` clipped to the RoI levels (eq. 1; P6 is for the RPN only): RoI Align runs on every
level and each RoI takes its level's result, a static gather that differentiates like a single
pooling. The box and mask heads are the same as without FPN.

FPN sizes for 64x64 images (the paper's are for ~800-pixel images): anchors 8, 16, 32, 64 on P2..P5
(paper 32..512 on P2..P6, 8 x stride; here 2 x stride, the shapes being 13-28 pixels), and
``k0 = 4`` with ``canonical = 32`` instead of 224. Scaling 224 by the image size (to ~18) would send
the shapes to P4/P5, under two cells each, since the backbone strides are not scaled; with 32 a RoI
of side ``s`` goes to the level where it spans ``s / stride`` in [2, 4) cells (the paper: [14, 28)),
i.e. the level whose anchor size ``a`` has ``a <= s < 2a``: shapes under 16 pixels are pooled from
P2 (stride 4), 16-32 pixels from P3 (stride 8, the single map of the plain Faster R-CNN here), and
larger proposals from P4, P5. ``fpn_width = 64`` (paper 256) matches the small backbone's 64-128
channels.
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
from jaxdl.detection.fpn import FPN, fpn_levels
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

    Without FPN the RPN and the RoI heads read one map (``tap``, of stride ``stride``) and every
    cell has ``len(anchor_sizes) * len(aspect_ratios)`` anchors. With ``fpn=True`` they read the
    pyramid built on ``fpn_taps`` (names ``"s<stride>"``, strides doubling; map them to a zoo
    model's layers with ``backbone_taps``); ``tap``, ``stride`` and ``anchor_sizes`` are then
    unused and ``fpn_anchor_sizes`` gives one size per RPN level (P2.. plus P6 with ``fpn_p6``).
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
    fpn: bool = False                                        # Feature Pyramid Network (Lin et al. 2017)
    fpn_taps: Sequence[str] = ("s4", "s8", "s16", "s32")     # C2..C5 (sec. 3; C1 left out, as in the paper)
    fpn_width: int = 64                                      # paper d = 256
    fpn_p6: bool = False                                     # P6 = stride-2 subsampling of P5, RPN only (sec. 4.1)
    fpn_anchor_sizes: Sequence[float] = (8.0, 16.0, 32.0, 64.0)   # one per RPN level (paper 32 ... 512)
    fpn_k0: int = 4                                          # eq. 1 (paper 4)
    fpn_canonical: float = 32.0                              # eq. 1 (paper 224, for ~800-pixel images)

    def setup(self):
        if self.pooler not in ("align", "pool"):
            raise ConfigError(f"pooler must be 'align' (RoI Align) or 'pool' (RoI max pooling), got {self.pooler!r}")
        if self.proposal_source not in ("rpn", "given"):
            raise ConfigError(f"proposal_source must be 'rpn' (Faster R-CNN) or 'given' (Fast R-CNN), "
                              f"got {self.proposal_source!r}")
        self.features = make_backbone(self.backbone, self.backbone_taps)
        if self.fpn:
            self._check_fpn()
            self.neck = FPN(self.fpn_width, extra_level=self.fpn_p6)
        if self.proposal_source == "rpn":
            a = len(self._level_anchor_sizes[0]) * len(self.aspect_ratios)
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

    def _check_fpn(self):
        taps = tuple(self.fpn_taps)
        if not taps or not all(isinstance(t, str) and t[:1] == "s" and t[1:].isdigit() for t in taps):
            raise ConfigError(f"fpn_taps must name backbone maps by their stride, e.g. ('s4', 's8', 's16', 's32'), "
                              f"got {taps}; map them to a zoo model's layers with backbone_taps")
        strides = [int(t[1:]) for t in taps]
        if any(b != 2 * a for a, b in zip(strides, strides[1:])) or strides[0] < 1 or strides[0] & (strides[0] - 1):
            raise ConfigError(f"fpn_taps must be powers of two doubling from fine to coarse (the top-down pathway "
                              f"upsamples by 2), got strides {tuple(strides)}")
        levels = len(taps) + int(self.fpn_p6)
        if len(self.fpn_anchor_sizes) != levels:
            raise ConfigError(f"fpn_anchor_sizes needs one size per RPN level ({levels}: {len(taps)} taps"
                              f"{' + P6' if self.fpn_p6 else ''}), got {tuple(self.fpn_anchor_sizes)}")

    # ------------------------------------------------------------------ pieces
    @property
    def roi_strides(self) -> tuple[int, ...]:
        """Strides of the maps the RoI heads pool from (one without FPN)."""
        return tuple(int(t[1:]) for t in self.fpn_taps) if self.fpn else (self.stride,)

    @property
    def rpn_strides(self) -> tuple[int, ...]:
        """Strides of the maps the RPN runs on: the RoI maps, plus P6 with ``fpn_p6``."""
        s = self.roi_strides
        return s + (2 * s[-1],) if self.fpn and self.fpn_p6 else s

    @property
    def _level_anchor_sizes(self) -> tuple[tuple[float, ...], ...]:
        if self.fpn:
            return tuple((float(s),) for s in self.fpn_anchor_sizes)
        return (tuple(self.anchor_sizes),)

    @property
    def anchors(self) -> jax.Array:
        """``<f32>[A_total, 4]``: each RPN level's :func:`anchor_grid` on its ``ceil(image_size / stride)``
        square map, concatenated fine to coarse (the order of :meth:`_rpn`'s outputs)."""
        grids = []
        for stride, sizes in zip(self.rpn_strides, self._level_anchor_sizes):
            f = -(-self.image_size // stride)
            grids.append(anchor_grid((f, f), stride, sizes, self.aspect_ratios))
        return jnp.asarray(grids[0] if len(grids) == 1 else np.concatenate(grids, axis=0))

    def _maps(self, x, train):
        """``x <f>[N, H, W, 3]`` -> ``(rpn_maps, roi_maps)``: lists of ``<f>[N, H/s, W/s, C]`` for
        :attr:`rpn_strides` and :attr:`roi_strides` (the same single map without FPN)."""
        if not self.fpn:
            feat = self.features(x, train=train, features=(self.tap,))[self.tap]
            return [feat], [feat]
        c = self.features(x, train=train, features=tuple(self.fpn_taps))
        p = self.neck([c[t] for t in self.fpn_taps])
        return p, p[:len(self.fpn_taps)]

    def _rpn(self, maps):
        """The RPN head shared by every map: ``[<f>[N, h_l, w_l, C]]`` -> ``(<f>[N, A_total],
        <f>[N, A_total, 4])``, levels concatenated in :attr:`anchors` order."""
        n = maps[0].shape[0]
        logits, deltas = [], []
        for feat in maps:
            h = nn.relu(self.rpn_conv(feat))
            logits.append(self.rpn_cls(h).reshape(n, -1))
            deltas.append(self.rpn_box(h).reshape(n, -1, 4))
        logits, deltas = (logits[0], deltas[0]) if len(maps) == 1 else (jnp.concatenate(logits, 1),
                                                                         jnp.concatenate(deltas, 1))
        if logits.shape[1] != self.anchors.shape[0]:
            shapes = [tuple(m.shape[1:3]) for m in maps]
            raise ConfigError(f"the RPN maps {shapes} do not have the ceil(image_size / stride) sizes of strides "
                              f"{self.rpn_strides} on {self.image_size}-pixel images; check image_size and the taps")
        return logits, deltas

    def _proposals(self, logits, deltas, top_n):
        """One image: ``<f>[A], <f>[A, 4] -> (boxes <f>[top_n, 4], valid <bool>[top_n])``."""
        boxes = clip_boxes(decode_boxes(deltas, self.anchors), (self.image_size, self.image_size))
        k = min(self.pre_nms_top_n, boxes.shape[0])
        scores, idx = jax.lax.top_k(logits, k)
        boxes = boxes[idx]
        wide = (boxes[:, 2] - boxes[:, 0] > 1e-3) & (boxes[:, 3] - boxes[:, 1] > 1e-3)
        keep, ok = nms(boxes, scores, self.rpn_nms_iou, top_n, valid=wide)
        return jnp.where(ok[:, None], boxes[jnp.maximum(keep, 0)], 0.0), ok

    def roi_levels(self, boxes: jax.Array) -> jax.Array:
        """FPN eq. 1: ``boxes <f>[..., 4]`` -> ``<i32>[...]`` index into :attr:`roi_strides`."""
        k_min = int(np.log2(self.roi_strides[0]))
        k_max = k_min + len(self.roi_strides) - 1
        return fpn_levels(boxes, k_min, k_max, self.fpn_k0, self.fpn_canonical) - k_min

    def _pool(self, maps, boxes, size):
        """``maps [<f>[N, h_l, w_l, C]]`` (:attr:`roi_strides`), ``boxes <f>[N, R, 4]`` ->
        ``<f>[N, R, size, size, C]``; with several maps each RoI is pooled from its eq. 1 level."""
        n, r = boxes.shape[:2]
        rois = jnp.concatenate([jnp.repeat(jnp.arange(n, dtype=boxes.dtype), r)[:, None], boxes.reshape(-1, 4)], 1)

        def pool(feat, stride):
            if self.pooler == "pool":
                return roi_pool(feat, rois, size, 1.0 / stride)
            return roi_align(feat, rois, size, 1.0 / stride, sampling_ratio=2, aligned=True)

        if len(maps) == 1:
            out = pool(maps[0], self.roi_strides[0])
        else:
            # every level pools every RoI ([L, R, s, s, C], small at these sizes) and each RoI keeps
            # its own level: static shapes, and the gradient reaches only the level that was used
            every = jnp.stack([pool(feat, stride) for feat, stride in zip(maps, self.roi_strides)])
            level = self.roi_levels(boxes.reshape(-1, 4))
            out = jnp.take_along_axis(every, level[None, :, None, None, None], axis=0)[0]
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
        rpn_maps, feat = self._maps(x, train)
        if self.proposal_source == "given":
            props, ok = self._given(proposals, x.shape[0])
        else:
            logits, deltas = self._rpn(rpn_maps)
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

    def _rpn_loss(self, maps, key, gt_boxes, gt_classes):
        """RPN loss (sec. 3.1.2) and the proposals for the RoI head (no gradient through them,
        as in the approximate joint training of sec. 3.2). With FPN the anchors of all levels
        are assigned and sampled together (FPN sec. 4.1)."""
        n = gt_classes.shape[0]
        logits, deltas = self._rpn(maps)
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
        rpn_maps, feat = self._maps(x, train)
        key = self.make_rng("sample")
        k_rpn, k_roi = jax.random.split(key)
        parts = {}
        if self.proposal_source == "given":
            props, ok = self._given(targets.get("proposals"), n)
        else:
            props, ok, parts = self._rpn_loss(rpn_maps, k_rpn, gt_boxes, gt_classes)
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
