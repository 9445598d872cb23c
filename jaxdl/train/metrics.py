"""Classification metrics as sums, so batches (and devices) add up exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["topk_correct", "classification_sums", "finalize"]


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """<f32>[N]: 1.0 where the label is among the ``k`` highest logits (ties count as hits)."""
    k = min(k, logits.shape[-1])
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    # rank of the true class = number of classes scoring strictly higher
    rank = jnp.sum(logits > true, axis=-1)
    return (rank < k).astype(jnp.float32)


def classification_sums(logits: jax.Array, labels: jax.Array, per_example_loss: jax.Array,
                        mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """Sums of loss, top-1 and top-5 hits and the example count (``mask`` drops padding)."""
    logits = logits.astype(jnp.float32)
    weight = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(per_example_loss * weight),
        "correct": jnp.sum(topk_correct(logits, labels, 1) * weight),
        "correct5": jnp.sum(topk_correct(logits, labels, 5) * weight),
        "count": jnp.sum(weight),
    }


def finalize(sums: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Turn accumulated sums into means: loss, accuracy (top-1), top5_accuracy."""
    n = max(float(sums["count"]), 1.0)
    return {
        f"{prefix}loss": float(sums["loss_sum"]) / n,
        f"{prefix}accuracy": float(sums["correct"]) / n,
        f"{prefix}top5_accuracy": float(sums["correct5"]) / n,
    }
