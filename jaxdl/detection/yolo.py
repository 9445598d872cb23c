"""YOLO v1 (Redmon, Divvala, Girshick & Farhadi 2016, "You Only Look Once", CVPR).

The image is divided into an ``S x S`` grid; each cell predicts ``B`` boxes ``(x, y, sqrt w,
sqrt h, confidence)`` and one set of ``C`` class probabilities, a tensor ``S x S x (5B + C)``
(sec. 2; the paper's 7 x 7 x 30 for S=7, B=2, C=20). The loss is the paper's sum-squared error
(eq. 3) with ``lambda_coord = 5`` and ``lambda_noobj = 0.5``: the box of a cell that "is
responsible" for an object (the one of the B with the highest IoU with it) regresses the
object's centre offset in the cell and the square roots of its width and height relative to the
image, and its confidence regresses that IoU; all other boxes regress confidence 0.

Differences from the paper, for small CPU runs: the backbone is configurable (a small CNN by
default instead of the 24-layer Darknet), the outputs go through a sigmoid (x, y, sqrt w, sqrt h,
confidence) and a softmax (classes) rather than a linear layer, which keeps early training
stable; with ``head="conv"`` the two fully connected layers (sec. 2.1) are replaced by
convolutions on an ``S x S`` feature map.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.detection.backbones import make_backbone
from jaxdl.detection.boxes import box_iou_elementwise, clip_boxes
from jaxdl.detection.postprocess import select_detections
from jaxdl.errors import ConfigError

__all__ = ["YOLOv1", "yolo_targets"]


def yolo_targets(boxes: jax.Array, classes: jax.Array, grid: int, image_size: int) -> dict[str, jax.Array]:
    """Per-cell targets for one image: ``boxes <f>[M, 4], classes <i>[M]`` (-1 padding) ->
    ``{"obj": <bool>[S, S], "box": <f>[S, S, 4] xyxy, "cls": <i32>[S, S]}``.

    An object belongs to the cell containing its centre (sec. 2). A cell can hold only one
    object (a limitation the paper notes in sec. 2.4); when two centres share a cell the larger
    object is kept.
    """
    cell = image_size / grid
    valid = classes >= 0
    cx = 0.5 * (boxes[:, 0] + boxes[:, 2])
    cy = 0.5 * (boxes[:, 1] + boxes[:, 3])
    ci = jnp.clip(jnp.floor(cy / cell), 0, grid - 1).astype(jnp.int32)
    cj = jnp.clip(jnp.floor(cx / cell), 0, grid - 1).astype(jnp.int32)
    cell_id = ci * grid + cj
    match = (cell_id[:, None] == jnp.arange(grid * grid)[None, :]) & valid[:, None]     # [M, S*S]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    best = jnp.argmax(jnp.where(match, area[:, None] + 1.0, 0.0), axis=0)               # [S*S]
    obj = match.any(axis=0)
    return {"obj": obj.reshape(grid, grid), "box": boxes[best].reshape(grid, grid, 4),
            "cls": jnp.where(obj, classes[best], -1).reshape(grid, grid).astype(jnp.int32)}


class YOLOv1(nn.Module):
    """YOLO v1 detector.

    ``x: <f32>[N, H, W, 3]`` (H = W = ``image_size``) ->
      ``__call__``: detections ``{"boxes": [N, D, 4], "scores": [N, D], "classes": [N, D]}``;
      ``raw``: ``<f32>[N, S, S, 5B + C]`` (after the sigmoid / softmax);
      ``loss(x, targets)``: ``(loss, parts)`` with targets ``{"boxes": <f>[N, M, 4], "classes": <i>[N, M]}``.
    """

    num_classes: int = 3
    image_size: int = 64
    grid: int = 8
    boxes_per_cell: int = 2
    backbone: Any = None
    backbone_taps: Any = None
    tap: str = "s8"
    head: str = "fc"
    hidden: int = 512
    dropout_rate: float = 0.5
    lambda_coord: float = 5.0      # eq. 3
    lambda_noobj: float = 0.5      # eq. 3
    max_detections: int = 50
    score_threshold: float = 0.05
    nms_iou: float = 0.5

    def setup(self):
        if self.head not in ("fc", "conv"):
            raise ConfigError(f"yolo_v1 head must be 'fc' (the paper) or 'conv', got {self.head!r}")
        self.features = make_backbone(self.backbone, self.backbone_taps)
        out = 5 * self.boxes_per_cell + self.num_classes
        if self.head == "fc":
            self.fc1 = nn.Dense(self.hidden)
            self.drop = nn.Dropout(self.dropout_rate)
            self.fc2 = nn.Dense(self.grid * self.grid * out)
        else:
            self.conv1 = nn.Conv(self.hidden // 2, (3, 3), padding=1)
            self.conv2 = nn.Conv(out, (1, 1))

    def raw(self, x: jax.Array, train: bool = False) -> jax.Array:
        f = self.features(x, train=train, features=(self.tap,))[self.tap]
        out = 5 * self.boxes_per_cell + self.num_classes
        if self.head == "fc":
            h = nn.leaky_relu(self.fc1(f.reshape(f.shape[0], -1)), 0.1)   # leaky ReLU 0.1: sec. 2.2
            h = self.drop(h, deterministic=not train)                     # dropout 0.5 after the first FC: sec. 2.2
            y = self.fc2(h).reshape(-1, self.grid, self.grid, out)
        else:
            if f.shape[1] != self.grid or f.shape[2] != self.grid:
                raise ConfigError(f"yolo_v1 head='conv' needs a {self.grid}x{self.grid} feature map at tap "
                                  f"{self.tap!r}, got {f.shape[1]}x{f.shape[2]}; change grid or tap")
            y = self.conv2(nn.leaky_relu(self.conv1(f), 0.1))
        nb = 5 * self.boxes_per_cell
        return jnp.concatenate([jax.nn.sigmoid(y[..., :nb]), jax.nn.softmax(y[..., nb:], axis=-1)], axis=-1)

    def _decode(self, raw: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """raw -> (boxes <f>[N, S, S, B, 4] xyxy pixels, sqrt-wh params, confidence <f>[N, S, S, B])."""
        s, b = self.grid, self.boxes_per_cell
        p = raw[..., :5 * b].reshape(*raw.shape[:3], b, 5)
        cell = self.image_size / s
        j = jnp.arange(s, dtype=raw.dtype)[None, None, :, None]
        i = jnp.arange(s, dtype=raw.dtype)[None, :, None, None]
        cx = (j + p[..., 0]) * cell
        cy = (i + p[..., 1]) * cell
        w = jnp.square(p[..., 2]) * self.image_size
        h = jnp.square(p[..., 3]) * self.image_size
        boxes = jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
        return boxes, p, p[..., 4]

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        raw = self.raw(x, train)
        boxes, _, conf = self._decode(raw)
        n, s, b = raw.shape[0], self.grid, self.boxes_per_cell
        probs = raw[..., 5 * b:]                                                  # [N, S, S, C]
        # class-specific confidence Pr(class | object) * Pr(object) * IoU (sec. 2, test time)
        scores = conf[..., None] * probs[:, :, :, None, :]                       # [N, S, S, B, C]
        boxes = clip_boxes(boxes, (self.image_size, self.image_size)).reshape(n, s * s * b, 4)
        scores = scores.reshape(n, s * s * b, self.num_classes)
        select = lambda bx, sc: select_detections(bx, sc, max_detections=self.max_detections,
                                                  iou_threshold=self.nms_iou, score_threshold=self.score_threshold)
        return jax.vmap(select)(boxes, scores)

    def loss(self, x: jax.Array, targets: dict[str, jax.Array], train: bool = True) -> tuple[jax.Array, dict]:
        """Eq. 3 of the paper, summed over cells and boxes, averaged over images."""
        return self.loss_from_raw(self.raw(x, train), targets)

    def loss_from_raw(self, raw: jax.Array, targets: dict[str, jax.Array]) -> tuple[jax.Array, dict]:
        """The loss of network outputs ``raw <f32>[N, S, S, 5B + C]`` (after sigmoid / softmax)."""
        n, s, b = raw.shape[0], self.grid, self.boxes_per_cell
        t = jax.vmap(lambda bx, c: yolo_targets(bx, c, s, self.image_size))(targets["boxes"], targets["classes"])
        boxes, p, conf = self._decode(raw)
        obj = t["obj"].astype(raw.dtype)                                          # [N, S, S]
        iou = box_iou_elementwise(boxes, t["box"][:, :, :, None, :])              # [N, S, S, B]
        responsible = jax.nn.one_hot(jnp.argmax(iou, axis=-1), b, dtype=raw.dtype) * obj[..., None]
        cell = self.image_size / s
        tb = t["box"]
        tcx = 0.5 * (tb[..., 0] + tb[..., 2]) / cell
        tcy = 0.5 * (tb[..., 1] + tb[..., 3]) / cell
        tx = tcx - jnp.floor(tcx)
        ty = tcy - jnp.floor(tcy)
        tsw = jnp.sqrt(jnp.maximum(tb[..., 2] - tb[..., 0], 0.0) / self.image_size)
        tsh = jnp.sqrt(jnp.maximum(tb[..., 3] - tb[..., 1], 0.0) / self.image_size)
        coord_xy = (p[..., 0] - tx[..., None]) ** 2 + (p[..., 1] - ty[..., None]) ** 2
        coord_wh = (p[..., 2] - tsw[..., None]) ** 2 + (p[..., 3] - tsh[..., None]) ** 2
        loss_xy = self.lambda_coord * jnp.sum(responsible * coord_xy)
        loss_wh = self.lambda_coord * jnp.sum(responsible * coord_wh)
        loss_obj = jnp.sum(responsible * (conf - jax.lax.stop_gradient(iou)) ** 2)
        loss_noobj = self.lambda_noobj * jnp.sum((1.0 - responsible) * conf ** 2)
        onehot = jax.nn.one_hot(t["cls"], self.num_classes, dtype=raw.dtype)
        loss_cls = jnp.sum(obj[..., None] * (raw[..., 5 * b:] - onehot) ** 2)
        parts = {"xy": loss_xy / n, "wh": loss_wh / n, "obj": loss_obj / n, "noobj": loss_noobj / n, "cls": loss_cls / n}
        return sum(parts.values()), parts
