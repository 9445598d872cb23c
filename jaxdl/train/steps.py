"""Pure, module-level train and eval steps. Compile them where they are called::

    step = jax.jit(functools.partial(train_step, loss_fn=loss, prepare=prep), donate_argnums=0)
    state, metrics = step(state, batch)

``batch`` is ``{"image": <u8|f32>[N, H, W, C], "label": <i32>[N]}`` (eval batches may add
``"mask": <f32>[N]`` to ignore padding). ``prepare(keys, images, train)`` (keys: one per example in
training, see ``example_keys``) turns raw images into
model input on device (uint8 -> float, resize, augmentation, normalisation); ``None`` feeds the
images as they are.

Auxiliary classifiers (GoogLeNet, Inception v3) sow ``{"logits", "weight"}`` into the
``aux_logits`` collection in training (``jaxdl.nn.sow_aux_logits``); the train step adds
``weight * loss(aux_logits)`` to the loss. That is the one mechanism for auxiliary losses.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdl.nn import AUX_COLLECTION
from jaxdl.nn.batch_norm import EXAMPLE_MASK_COLLECTION, example_mask_tree
from jaxdl.train.loss_scale import all_finite
from jaxdl.train.losses import LossFn
from jaxdl.train.metrics import classification_sums
from jaxdl.train.state import TrainState

__all__ = ["train_step", "eval_step", "predict_step", "step_keys", "example_keys"]

Prepare = Callable[[jax.Array, jax.Array, bool], jax.Array]
# (logits, labels, per_example_loss[, mask]) -> dict of metric sums for the batch.
MetricsFn = Callable[..., dict[str, jax.Array]]


def step_keys(state: TrainState) -> tuple[jax.Array, jax.Array]:
    """(augmentation key, dropout key) for the current step: a pure function of (rng, step)."""
    key = jax.random.fold_in(state.rng, state.step)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def example_keys(key: jax.Array, position: jax.Array) -> jax.Array:
    """One key per example: ``fold_in(key, position[i])``. position: <i32>[N] -> keys [N, ...]."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(position)


def _aux_loss(aux: Any, labels: jax.Array, loss_fn: LossFn, mean: Callable[[jax.Array], jax.Array]) -> jax.Array:
    total = jnp.zeros((), jnp.float32)
    for entry in jax.tree_util.tree_leaves(aux, is_leaf=lambda x: isinstance(x, dict) and "logits" in x):
        total = total + entry["weight"] * mean(loss_fn(entry["logits"], labels))
    return total


def train_step(state: TrainState, batch: dict[str, jax.Array], *, loss_fn: LossFn,
               prepare: Prepare | None = None, axis_name: str | None = None,
               metrics_fn: MetricsFn = classification_sums) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on ``batch``; returns the new state and metric sums for the batch.

    Metrics: ``loss`` (mean main loss, for the non-finite check and the progress bar),
    ``loss_sum``, ``correct``, ``correct5``, ``count`` (sums over the batch), ``total_loss``
    (main + auxiliary terms, the quantity differentiated).

    ``batch["mask"]`` (<f32>[N], optional) weights examples: padding (0) counts neither in the
    loss nor in BatchNorm statistics. With ``axis_name`` (pmap / shard_map; the batch is this
    device's shard) the loss is the global masked mean -- each device divides its sum by the
    ``psum`` of the counts and gradients are ``psum``-ed -- so the step equals one step on the
    global batch even when devices hold different numbers of real examples; metrics are summed
    over devices. ``prepare`` gets one augmentation key per example (:func:`example_keys` of its
    position in the global batch: the augmentation does not depend on how the batch is split,
    so jit over a Mesh and pmap augment alike); dropout keys are folded with the device index.
    ``metrics_fn(logits, labels, per_example_loss, mask)`` gives the sums (segmentation passes
    ``jaxdl.segmentation.segmentation_sums``: a confusion matrix).

    With ``state.loss_scale`` (float16) the differentiated loss is multiplied by the scale and
    the gradients divided by it; a step whose gradients are not finite leaves params and
    optimizer state unchanged and halves the scale (metric ``loss_scale``).
    """
    aug_key, dropout_key = step_keys(state)
    # Augmentation: one key per example, from its position in the global (padded) batch, so the
    # augmented batch is the same whichever way it is split (jit over a Mesh, pmap, processes).
    position = jnp.arange(batch["image"].shape[0])
    if axis_name is not None:
        device = jax.lax.axis_index(axis_name)
        position = position + device * batch["image"].shape[0]  # pmap shards are equal-sized slabs
        dropout_key = jax.random.fold_in(dropout_key, device)
    images = batch["image"] if prepare is None else prepare(example_keys(aug_key, position), batch["image"], True)
    labels = batch["label"]
    mask = batch.get("mask")
    # One weight per example (labels may be per-pixel maps [N, H, W] for segmentation).
    weight = jnp.ones(labels.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32)
    count = jnp.sum(weight)
    if axis_name is not None:
        count = jax.lax.psum(count, axis_name)
    count = jnp.maximum(count, 1.0)

    def masked_mean(per_example: jax.Array) -> jax.Array:
        return jnp.sum(per_example * weight) / count

    mutable = [AUX_COLLECTION] + (["batch_stats"] if state.batch_stats else [])

    def compute_loss(params):
        variables = {"params": params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
            if mask is not None:  # BatchNorm statistics over the real examples only
                variables[EXAMPLE_MASK_COLLECTION] = example_mask_tree(state.batch_stats, weight)
        logits, updates = state.apply_fn(variables, images, train=True, rngs={"dropout": dropout_key},
                                         mutable=mutable)
        per_example = loss_fn(logits, labels)
        main = masked_mean(per_example)
        total = main + _aux_loss(updates.get(AUX_COLLECTION, {}), labels, loss_fn, masked_mean)
        scaled = total if state.loss_scale is None else state.loss_scale.scale_loss(total)
        return scaled, (logits, per_example, main, total, updates.get("batch_stats", state.batch_stats))

    grads, (logits, per_example, main, total, batch_stats) = jax.grad(compute_loss, has_aux=True)(state.params)
    if state.loss_scale is not None:
        grads = state.loss_scale.unscale(grads)
    metrics = metrics_fn(logits, labels, per_example, mask)
    metrics["loss"] = main
    metrics["total_loss"] = total
    if axis_name is not None:  # each device holds its share of the global mean: sum the shares
        grads, metrics = jax.lax.psum((grads, metrics), axis_name)
    new_state = state.apply_gradients(grads, batch_stats)
    if state.loss_scale is not None:  # float16: skip the update when the scaled gradients overflowed
        finite = all_finite(grads)
        new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        new_state = new_state.replace(step=state.step + 1, loss_scale=state.loss_scale.adjust(finite))
        metrics["loss_scale"] = state.loss_scale.scale
    return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, jax.Array], *, loss_fn: LossFn,
              prepare: Prepare | None = None, metrics_fn: MetricsFn = classification_sums) -> dict[str, jax.Array]:
    """Metric sums on ``batch`` in inference mode (running BatchNorm statistics, no dropout)."""
    images = batch["image"] if prepare is None else prepare(jax.random.PRNGKey(0), batch["image"], False)
    logits = state.apply_fn(state.variables, images, train=False)
    return metrics_fn(logits, batch["label"], loss_fn(logits, batch["label"]), batch.get("mask"))


def predict_step(state: TrainState, images: jax.Array, *, prepare: Prepare | None = None) -> jax.Array:
    """Logits <f32>[N, K] in inference mode."""
    if prepare is not None:
        images = prepare(jax.random.PRNGKey(0), images, False)
    return state.apply_fn(state.variables, images, train=False).astype(jnp.float32)
