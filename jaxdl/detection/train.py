"""Training and evaluation of detectors: one pure, jit-compiled train step on ``jaxdl.train.TrainState``.

Every detector here is a flax module with two entry points:

* ``model.apply(vars, x, train=False)`` -> padded detections ``{"boxes": <f32>[N, D, 4],
  "scores": <f32>[N, D], "classes": <i32>[N, D]}`` (+ ``"masks": <f32>[N, D, H, W]``),
* ``model.apply(vars, x, targets, train=True, method="loss")`` -> ``(loss, parts)``,

so :func:`detection_train_step` is the same for all of them. Batches are
``{"image": <u8>[N, H, W, 3], "boxes": <f32>[N, M, 4], "classes": <i32>[N, M]}`` (+ ``"masks"``).

:func:`train_detector` is a small bounded loop for the experiments (epochs, batches from
``jaxdl.data.loader.epoch_order``, optimizer and schedule from ``jaxdl.optim``). Given a
:class:`jaxdl.train.checkpoint.RunCheckpoints` it checkpoints after every epoch and when the
time limit stops it mid-epoch (orbax, keyed by the global step), and ``resume=True`` continues
from the latest checkpoint at the exact batch it stopped before: the data order is a function of
(seed, epoch) and the randomness of ``fold_in(rng, step)``, so an interrupted and resumed run
takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.loader import epoch_order
from jaxdl.detection.augment import random_hflip, random_scale_crop
from jaxdl.detection.metrics import coco_evaluate, voc_map
from jaxdl.errors import ConfigError
from jaxdl.optim import optimizer, schedule
from jaxdl.train.state import TrainState, create_train_state

__all__ = ["to_input", "detection_train_step", "predict", "evaluate_detector", "train_detector", "shapes_batch"]


def to_input(images: jax.Array) -> jax.Array:
    """``<u8>[N, H, W, 3] -> <f32>`` in [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def detection_train_step(state: TrainState, batch: dict[str, jax.Array], *, flip: bool = True,
                         max_scale: float = 1.0) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step. Augmentation (on device, from ``fold_in(rng, step)``): horizontal flip
    with probability 1/2 when ``flip``, and a random zoom-in crop up to ``max_scale`` when > 1.
    The model's ``loss`` draws its own randomness (proposal sampling) from the ``"sample"`` stream.
    """
    key = jax.random.fold_in(state.rng, state.step)
    k_flip, k_scale, k_drop, k_sample = jax.random.split(key, 4)
    images, boxes, classes, masks = batch["image"], batch["boxes"], batch["classes"], batch.get("masks")
    proposals = batch.get("proposals")
    if max_scale > 1.0:
        if proposals is not None:
            raise ConfigError("max_scale > 1 (zoom augmentation) is not supported with given proposals")
        images, boxes, classes, masks = random_scale_crop(k_scale, images, boxes, classes, masks, max_scale)
    if flip:
        if proposals is not None:   # the same key draws the same flips for the proposals
            _, proposals, _, _ = random_hflip(k_flip, images, proposals, jnp.zeros(proposals.shape[:2], jnp.int32))
        images, boxes, classes, masks = random_hflip(k_flip, images, boxes, classes, masks)
    targets = {"boxes": boxes, "classes": classes}
    if proposals is not None:
        targets["proposals"] = proposals
    if masks is not None:
        targets["masks"] = masks
    mutable = ["batch_stats"] if state.batch_stats else []

    def compute(params):
        variables = {"params": params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        (loss, parts), updates = state.apply_fn(variables, to_input(images), targets, train=True, method="loss",
                                                mutable=mutable, rngs={"dropout": k_drop, "sample": k_sample})
        return loss, (parts, updates.get("batch_stats", state.batch_stats) if mutable else state.batch_stats)

    grads, (parts, batch_stats) = jax.grad(compute, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, batch_stats)
    metrics = {k: v for k, v in parts.items()}
    metrics["loss"] = sum(parts.values())
    return new_state, metrics


def predict(state: TrainState, images: jax.Array, proposals: jax.Array | None = None) -> dict[str, jax.Array]:
    """Detections in inference mode (running BatchNorm statistics); ``proposals`` for Fast R-CNN."""
    if proposals is None:
        return state.apply_fn(state.variables, to_input(images), train=False)
    return state.apply_fn(state.variables, to_input(images), train=False, proposals=proposals)


def shapes_batch(data, idx: np.ndarray, with_masks: bool = False, proposals: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """A detection batch from a :class:`jaxdl.data.shapes.ShapesSet` at ``idx`` (+ its proposals)."""
    out = {"image": data.images[idx], "boxes": data.boxes[idx], "classes": data.classes[idx]}
    if with_masks:
        out["masks"] = data.masks[idx]
    if proposals is not None:
        out["proposals"] = proposals[idx]
    return out


def evaluate_detector(state: TrainState, data, batch_size: int = 50, with_masks: bool = False,
                      predict_fn: Callable | None = None, proposals: np.ndarray | None = None) -> dict[str, float]:
    """VOC mAP@0.5 (all-point and 11-point) and COCO AP / AR on a shapes set (boxes, and masks
    with ``with_masks``)."""
    predict_fn = predict_fn or jax.jit(predict)
    dets, gts = [], []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(len(data), start + batch_size))
        out = jax.device_get(predict_fn(state, data.images[idx], None if proposals is None else proposals[idx]))
        for r, i in enumerate(idx):
            d = {k: np.asarray(v[r]) for k, v in out.items()}
            if with_masks:
                d["masks"] = d["masks"] > 0.5
            dets.append(d)
            g = {"boxes": data.boxes[i], "classes": data.classes[i]}
            if with_masks:
                g["masks"] = data.masks[i]
            gts.append(g)
    k = data.num_classes
    res = {"map50": voc_map(dets, gts, k)["map"], "map50_11pt": voc_map(dets, gts, k, use_11_point=True)["map"]}
    coco = coco_evaluate(dets, gts, k)
    res.update({"coco_ap": coco["AP"], "coco_ap75": coco["AP75"], "coco_ar100": coco["AR100"]})
    if with_masks:
        res["mask_map50"] = voc_map(dets, gts, k, iou_type="segm")["map"]
        res["mask_coco_ap"] = coco_evaluate(dets, gts, k, iou_type="segm")["AP"]
    return res


def train_detector(model: nn.Module, train_set, test_set, *, epochs: int, batch_size: int = 32,
                   learning_rate: float = 1e-3, optimizer_name: str = "adam", weight_decay: float = 0.0,
                   warmup_epochs: float = 0.0, flip: bool = True, max_scale: float = 1.0, seed: int = 0,
                   with_masks: bool = False, time_limit_s: float | None = None, max_steps: int | None = None,
                   train_proposals: np.ndarray | None = None, test_proposals: np.ndarray | None = None,
                   checkpoints: Any = None, resume: bool = False,
                   on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
                   log: Callable[[str], None] = print) -> tuple[TrainState, dict[str, Any]]:
    """Train ``model`` on ``train_set`` (a shapes set) and evaluate on ``test_set``.

    Adam (or ``optimizer_name``) with a cosine decay over the run (linear warm-up of
    ``warmup_epochs``); the gradient is clipped at global norm 10 (the two-stage losses spike in
    the first steps). Stops early at ``time_limit_s`` or ``max_steps`` (the summary says so).

    ``checkpoints`` (a ``RunCheckpoints``): save after every epoch and at an early stop; with
    ``resume`` restore the latest and go on from its step (``train_seconds`` and the time limit
    count the earlier part too). ``on_epoch(history)`` is called after each checkpoint with the
    per-epoch rows so far (``epoch``, ``step``, ``seconds``, mean losses).

    Returns:
      ``(state, summary)`` with the metrics of :func:`evaluate_detector`, ``steps``,
      ``train_seconds`` and ``stopped_early``.
    """
    steps_per_epoch = max(1, len(train_set) // batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    lr = schedule("cosine", learning_rate=learning_rate, total_steps=total,
                  **({"warmup_steps": int(warmup_epochs * steps_per_epoch)} if warmup_epochs else {}))
    tx = optimizer(optimizer_name, lr, weight_decay=weight_decay, clip_norm=10.0)
    state = create_train_state(model, tx, input_shape=train_set.image_shape, seed=seed)
    done, prior_seconds, history, partial = 0, 0.0, [], None
    if resume and checkpoints is not None and checkpoints.latest_epoch() is not None:
        state, meta = checkpoints.restore(state)
        done, prior_seconds, history = int(meta["step"]), float(meta["train_seconds"]), list(meta["history"])
        partial = (dict(meta.get("epoch_sums", {})), int(meta.get("epoch_count", 0))) if done % steps_per_epoch else None
        log(f"resumed after step {done} ({done / steps_per_epoch:.2f} epochs, {prior_seconds:.0f}s of training)")
    step = jax.jit(functools.partial(detection_train_step, flip=flip, max_scale=max_scale), donate_argnums=0)
    start = time.time() - prior_seconds
    stopped = False
    first_epoch = done // steps_per_epoch

    sums, count = {}, 0

    def save(epoch: int) -> None:
        if checkpoints is not None:
            meta = {"step": done, "epoch": epoch, "train_seconds": round(time.time() - start, 3), "history": history,
                    "epoch_sums": sums, "epoch_count": count}    # a mid-epoch resume goes on averaging them
            checkpoints.save(done, state, meta, is_best=False)
        if on_epoch is not None:
            on_epoch(history)

    for epoch in range(first_epoch, epochs):
        if done >= total:
            break
        order = epoch_order(len(train_set), seed, epoch)
        sums, count = partial if (partial is not None and epoch == first_epoch) else ({}, 0)
        for b in range(done - epoch * steps_per_epoch, steps_per_epoch):
            idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
            state, metrics = step(state, shapes_batch(train_set, idx, with_masks, train_proposals))
            done += 1
            if b % 20 == 0 or b == steps_per_epoch - 1:
                m = jax.device_get(metrics)
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
            if (time_limit_s is not None and time.time() - start > time_limit_s) or done >= total:
                stopped = done < steps_per_epoch * epochs
                break
        if not np.isfinite(sums.get("loss", 0.0)):
            from jaxdl.errors import NonFiniteLossError
            raise NonFiniteLossError(done, sums["loss"])
        row = {"epoch": epoch + 1, "step": done, "seconds": round(time.time() - start, 1),
               **{k: v / max(count, 1) for k, v in sorted(sums.items())}}
        if history and history[-1]["epoch"] == row["epoch"]:   # an epoch cut short by the time limit, resumed
            history[-1] = row
        else:
            history.append(row)
        save(epoch + 1)
        log(f"epoch {epoch + 1}/{epochs} step {done} {time.time() - start:.0f}s " +
            " ".join(f"{k}={v / max(count, 1):.4f}" for k, v in sorted(sums.items())))
        if stopped or done >= total:
            break
    train_seconds = time.time() - start
    summary = evaluate_detector(state, test_set, with_masks=with_masks, proposals=test_proposals)
    summary.update({"steps": done, "epochs_run": -(-done // steps_per_epoch), "train_seconds": round(train_seconds, 1),
                    "stopped_early": stopped})
    log("eval " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return state, summary
