"""R-CNN (Girshick, Donahue, Darrell & Malik 2014, "Rich feature hierarchies ...", CVPR).

The pipeline of the paper (sec. 2), at the scale of the shapes set:

1. Region proposals: :func:`jaxdl.detection.proposals.selective_search` (a documented
   simplification of selective search, "fast mode" in the paper), up to 64 per image.
2. Warped crops: each proposal, dilated so the warped crop keeps context (the paper pads 16
   pixels at 227: a factor 227 / 195 = 1.16), is warped anisotropically to ``crop_size`` x
   ``crop_size`` (bilinear, with :func:`jaxdl.nn.roi_align` on the image).
3. CNN features: a small CNN trained (the paper fine-tunes an ImageNet CNN) to classify warped
   proposals into ``K + 1`` classes, positives being proposals with IoU >= 0.5 with a ground-truth
   box (sec. 2.3), in batches of 25 % positives (32 of 128 in the paper); its pooled
   ``pre_logits`` are the features. It is trained with ``jaxdl.train.train_step``.
4. Per-class linear SVMs (scikit-learn ``LinearSVC``) on the features: positives are the ground-
   truth boxes, negatives the proposals with IoU < 0.3 with every box of the class (sec. 2.3;
   no hard-negative mining rounds: all negatives fit in memory here).
5. Class-specific bounding-box regression (appendix C): ridge regression from the features to
   the R-CNN box targets of proposals with IoU >= 0.6, regularisation ``lambda = 1000``.
6. Test: SVM scores for every proposal and class, regressed boxes, greedy NMS per class (IoU 0.3).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.detection.boxes import clip_boxes, decode_boxes, encode_boxes
from jaxdl.detection.metrics import numpy_box_iou
from jaxdl.detection.nms import batched_nms
from jaxdl.nn import Conv, batch_norm
from jaxdl.nn.roi import roi_align

__all__ = ["CropCNN", "warp_crops", "RCNN", "fit_rcnn", "CONTEXT_SCALE"]

CONTEXT_SCALE = 227.0 / 195.0   # 16 pixels of context on each side of a 227-pixel crop (sec. 2.1)


class CropCNN(nn.Module):
    """The feature CNN: three conv-BN-ReLU-maxpool blocks, global average pooling, ``head``.

    ``x: <f32>[N, s, s, 3] -> <f32>[N, K + 1]`` (``features="pre_logits"``: ``<f32>[N, widths[-1]]``).
    """

    num_classes: int = 4
    widths: Sequence[int] = (32, 64, 128)

    @nn.compact
    def __call__(self, x, train: bool = False, features=None):
        norm = batch_norm(train)
        for i, w in enumerate(self.widths):
            x = nn.relu(norm(name=f"bn{i}")(Conv(w, (3, 3), padding=1, use_bias=False, name=f"conv{i}")(x)))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.mean(axis=(1, 2))
        if features == "pre_logits":
            return x
        return nn.Dense(self.num_classes, name="head")(x)


def warp_crops(images: jax.Array, boxes: jax.Array, crop_size: int, context: float = CONTEXT_SCALE) -> jax.Array:
    """``images <u8|f>[N, H, W, 3]``, ``boxes <f>[N, P, 4]`` -> ``<f32>[N * P, s, s, 3]`` in [-1, 1]:
    each box dilated by ``context`` about its centre and warped to ``s x s``."""
    n, p = boxes.shape[:2]
    c = 0.5 * (boxes[..., :2] + boxes[..., 2:])
    half = 0.5 * (boxes[..., 2:] - boxes[..., :2]) * context
    grown = jnp.concatenate([c - half, c + half], axis=-1)
    rois = jnp.concatenate([jnp.repeat(jnp.arange(n, dtype=jnp.float32), p)[:, None], grown.reshape(-1, 4)], 1)
    x = images.astype(jnp.float32) / 127.5 - 1.0
    return roi_align(x, rois, crop_size, 1.0, sampling_ratio=2, aligned=True)


@dataclasses.dataclass
class RCNN:
    """A trained R-CNN: the CNN's state, per-class SVM weights and box regressors."""

    state: Any
    svm_w: np.ndarray          # [K, F]
    svm_b: np.ndarray          # [K]
    reg_w: np.ndarray          # [K, F + 1, 4]
    crop_size: int
    image_size: int
    nms_iou: float = 0.3       # sec. 2.2 (test-time NMS per class)
    max_detections: int = 50

    def features(self, images, proposals, chunk: int = 4096):
        crops = _crops_fn(self.crop_size)(jnp.asarray(images), jnp.asarray(proposals))
        return np.concatenate([np.asarray(_features_fn(self.state, crops[i:i + chunk]))
                               for i in range(0, crops.shape[0], chunk)], 0)

    def predict(self, images: np.ndarray, proposals: np.ndarray) -> dict[str, np.ndarray]:
        """Detections ``{"boxes" [N, D, 4], "scores" [N, D], "classes" [N, D]}`` (numpy)."""
        n, p = proposals.shape[:2]
        k = self.svm_w.shape[0]
        f = self.features(images, proposals)                                     # [N*P, F]
        scores = (f @ self.svm_w.T + self.svm_b).reshape(n, p, k)
        f1 = np.concatenate([f, np.ones((f.shape[0], 1), f.dtype)], 1)
        deltas = np.einsum("rf,kfc->rkc", f1, self.reg_w).reshape(n, p, k, 4)
        refs = np.broadcast_to(proposals[:, :, None, :], deltas.shape)
        boxes = np.asarray(clip_boxes(decode_boxes(jnp.asarray(deltas), jnp.asarray(refs)),
                                      (self.image_size, self.image_size)))
        out = _nms_fn(self.nms_iou, self.max_detections)(jnp.asarray(boxes), jnp.asarray(scores))
        return jax.tree_util.tree_map(np.asarray, out)


@functools.lru_cache(maxsize=None)
def _crops_fn(size):
    return jax.jit(lambda im, b: warp_crops(im, b, size))


@jax.jit
def _features_fn(state, crops):
    return state.apply_fn(state.variables, crops, train=False, features="pre_logits")


@functools.lru_cache(maxsize=None)
def _nms_fn(iou, max_det):
    def one(boxes, scores):           # boxes [P, K, 4], scores [P, K]
        p, k = scores.shape
        b = boxes.reshape(-1, 4)
        s = scores.reshape(-1)
        c = jnp.tile(jnp.arange(k), p)
        # SVM margins are unbounded; every (proposal, class) pair with a positive margin is a candidate
        idx, ok = batched_nms(b, s, c, iou, max_det, valid=s > -1.0)
        safe = jnp.maximum(idx, 0)
        return {"boxes": jnp.where(ok[:, None], b[safe], 0.0), "scores": jnp.where(ok, s[safe], -jnp.inf),
                "classes": jnp.where(ok, c[safe], -1)}
    return jax.jit(jax.vmap(one))


def _labels_for(proposals, boxes, classes):
    """Per proposal: max IoU over ground truth, its class, and the matched box."""
    n, p = proposals.shape[:2]
    iou = np.zeros((n, p))
    cls = np.full((n, p), -1)
    matched = np.zeros((n, p, 4), np.float32)
    for i in range(n):
        valid = classes[i] >= 0
        if valid.any():
            m = numpy_box_iou(proposals[i], boxes[i][valid])
            j = m.argmax(1)
            iou[i], cls[i], matched[i] = m.max(1), classes[i][valid][j], boxes[i][valid][j]
    return iou, cls, matched


def fit_rcnn(train_set, proposals: np.ndarray, *, crop_size: int = 32, cnn_steps: int = 600, batch_size: int = 128,
             learning_rate: float = 1e-3, svm_c: float = 0.01, ridge_lambda: float = 1000.0, seed: int = 0,
             log: Callable[[str], None] = print) -> RCNN:
    """Train the R-CNN stages in order on a shapes set and its proposals ``<f32>[N, P, 4]``."""
    from sklearn.svm import LinearSVC

    from jaxdl.optim import optimizer, schedule
    from jaxdl.train.losses import softmax_cross_entropy
    from jaxdl.train.state import create_train_state
    from jaxdl.train.steps import train_step

    k = train_set.num_classes
    images, n = train_set.images, len(train_set)
    # GT boxes join the proposals as positives (as in the paper's SVM and fine-tuning sets)
    all_boxes = np.concatenate([proposals, train_set.boxes], axis=1)
    iou, cls, matched = _labels_for(all_boxes, train_set.boxes, train_set.classes)
    is_gt = np.zeros(all_boxes.shape[:2], bool)
    is_gt[:, proposals.shape[1]:] = train_set.classes >= 0
    usable = (all_boxes[..., 2] - all_boxes[..., 0] > 1) & ((all_boxes[..., 3] - all_boxes[..., 1] > 1))
    label = np.where((iou >= 0.5) & usable, cls + 1, 0)          # fine-tuning labels: IoU >= 0.5 -> class
    crops = np.asarray(_crops_fn(crop_size)(jnp.asarray(images), jnp.asarray(all_boxes)))  # [N*P', s, s, 3]
    flat_label = label.reshape(-1)
    flat_ok = usable.reshape(-1)
    pos, neg = np.flatnonzero(flat_ok & (flat_label > 0)), np.flatnonzero(flat_ok & (flat_label == 0))
    log(f"r-cnn: {len(crops)} warped crops ({len(pos)} positive), {crop_size}x{crop_size}")

    # 3. CNN on warped crops, batches of 25 % positives
    lr = schedule("cosine", learning_rate=learning_rate, total_steps=cnn_steps)
    state = create_train_state(CropCNN(num_classes=k + 1), optimizer("adam", lr), input_shape=(crop_size, crop_size, 3),
                               seed=seed)
    step = jax.jit(functools.partial(train_step, loss_fn=softmax_cross_entropy), donate_argnums=0)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    for s in range(cnn_steps):
        b = np.concatenate([rng.choice(pos, batch_size // 4), rng.choice(neg, batch_size - batch_size // 4)])
        state, m = step(state, {"image": jnp.asarray(crops[b]), "label": jnp.asarray(flat_label[b], jnp.int32)})
        if s % 200 == 0 or s == cnn_steps - 1:
            log(f"r-cnn cnn step {s + 1}/{cnn_steps} loss={float(m['loss']):.4f} {time.time() - t0:.0f}s")

    model = RCNN(state, np.zeros((k, 1)), np.zeros(k), np.zeros((k, 1, 4)), crop_size, train_set.image_shape[0])
    feats = np.concatenate([np.asarray(_features_fn(state, jnp.asarray(crops[i:i + 4096])))
                            for i in range(0, len(crops), 4096)], 0)
    f_dim = feats.shape[1]
    flat_iou, flat_cls, flat_gt = iou.reshape(-1), cls.reshape(-1), is_gt.reshape(-1)
    flat_matched = matched.reshape(-1, 4)
    flat_boxes = all_boxes.reshape(-1, 4)

    # 4. per-class linear SVMs: positives = ground truth, negatives = IoU < 0.3 with that class
    svm_w, svm_b = np.zeros((k, f_dim)), np.zeros(k)
    for c in range(k):
        p_idx = np.flatnonzero(flat_gt & (flat_cls == c))
        n_idx = np.flatnonzero(flat_ok & ~((flat_cls == c) & (flat_iou >= 0.3)))
        x = np.concatenate([feats[p_idx], feats[n_idx]])
        y = np.concatenate([np.ones(len(p_idx)), np.zeros(len(n_idx))])
        svm = LinearSVC(C=svm_c, class_weight="balanced", max_iter=5000).fit(x, y)
        svm_w[c], svm_b[c] = svm.coef_[0], svm.intercept_[0]
    # 5. box regression (ridge, closed form) on proposals with IoU >= 0.6
    reg_w = np.zeros((k, f_dim + 1, 4))
    for c in range(k):
        idx = np.flatnonzero(flat_ok & (flat_cls == c) & (flat_iou >= 0.6))
        x = np.concatenate([feats[idx], np.ones((len(idx), 1))], 1)
        t = np.asarray(encode_boxes(jnp.asarray(flat_matched[idx]), jnp.asarray(flat_boxes[idx])))
        reg = ridge_lambda * np.eye(f_dim + 1)
        reg[-1, -1] = 0.0                                         # no penalty on the bias
        reg_w[c] = np.linalg.solve(x.T @ x + reg, x.T @ t)
    model.svm_w, model.svm_b, model.reg_w = svm_w, svm_b, reg_w
    log(f"r-cnn: SVMs and box regressors fitted ({f_dim}-d features), {time.time() - t0:.0f}s")
    return model
