"""Pixel-wise softmax cross-entropy with an ignore label (FCN sec. 3, 4.3; PASCAL VOC's 255 = void)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["pixel_cross_entropy", "IGNORE_LABEL"]

# PASCAL VOC marks object borders and unlabelled pixels with 255 ("void"); they are not scored.
IGNORE_LABEL = 255


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array, ignore_label: int = IGNORE_LABEL) -> jax.Array:
    """Softmax cross-entropy per pixel, ignored pixels left out.

    Args:
      logits: ``<f>[N, H, W, K]``.
      labels: ``<int>[N, H, W]`` in ``0..K-1``, or ``ignore_label``; any other value outside
        ``0..K-1`` is ignored too (it cannot be a class).

    Returns:
      ``<f32>[N]``: image ``i``'s summed pixel loss divided by the number of valid pixels in the
      whole batch, times ``N``; so its mean over the batch (what :func:`jaxdl.train.train_step`
      differentiates) is the mean loss over all valid pixels of the batch (torch's
      ``F.cross_entropy(..., ignore_index=255)``), and a batch with no valid pixel gives 0.
    """
    logits = logits.astype(jnp.float32)
    k = logits.shape[-1]
    valid = (labels != ignore_label) & (labels >= 0) & (labels < k)
    safe = jnp.where(valid, labels, 0)
    per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits, safe) * valid
    per_image = per_pixel.reshape(per_pixel.shape[0], -1).sum(axis=1)
    total_valid = jnp.maximum(valid.sum(), 1).astype(jnp.float32)
    return per_image * (per_image.shape[0] / total_valid)
