"""BatchNorm whose batch statistics are exact over all devices and ignore padded examples.

Ioffe & Szegedy 2015, "Batch normalization", Algorithm 1: normalise by the mini-batch mean and
(biased) variance, keep running averages for inference. In data-parallel training the
mini-batch is the *global* batch. ``flax.linen.BatchNorm`` with ``axis_name`` averages the
per-device means (``pmean``), which is exact only when every device holds the same number of
examples; here the statistics are ratios of ``psum`` of sums and counts, so they stay exact when
per-device batches differ (a global batch not divisible by the device count is padded per
device and the padding masked out).

Same variables and numerics as ``flax.linen.BatchNorm`` (params ``scale``, ``bias``;
batch_stats ``mean``, ``var``; float32 statistics, ``Var = E[x^2] - E[x]^2`` clipped at 0,
running update ``m * running + (1 - m) * batch``), so checkpoints and imported weights are
unchanged.

Example weights reach every BatchNorm of a model without changing the model's signature: pass
``{"batch_stats": ..., EXAMPLE_MASK_COLLECTION: example_mask_tree(batch_stats, mask)}`` in the
variables (the train step does this when its batch holds a ``"mask"``).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["BatchNorm", "EXAMPLE_MASK_COLLECTION", "example_mask_tree"]

# Collection holding, per BatchNorm module path, ``{"mask": <f32>[N]}`` (1 = real example).
EXAMPLE_MASK_COLLECTION = "example_mask"


def _is_bn_stats(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"mean", "var"}


def example_mask_tree(batch_stats: Any, mask: jax.Array) -> Any:
    """The ``EXAMPLE_MASK_COLLECTION`` tree for a model: the ``batch_stats`` tree with every
    BatchNorm's ``{"mean", "var"}`` replaced by ``{"mask": mask}``. mask: <f32>[N]."""
    def walk(node):
        if _is_bn_stats(node):
            return {"mask": mask}
        return {k: walk(v) for k, v in node.items()}

    return walk(dict(batch_stats)) if batch_stats else {}


class BatchNorm(nn.BatchNorm):
    """``flax.linen.BatchNorm`` (same fields, variables, ``isinstance``) with exact cross-device statistics.

    Batch normalisation over all axes but ``axis`` (NHWC: over N, H, W). Fields as flax's; the
    ones that matter here:
      use_running_average: normalise with the running statistics (inference / frozen BN).
      momentum: running-average decay (flax convention: 0.9 == torch momentum 0.1).
      axis_name: the pmap / shard_map axis the global batch is split over; sums and counts are
        ``psum``-ed over it. None on one device and under jit sharding (XLA inserts the collectives).
    ``axis_index_groups`` and ``use_fast_variance=False`` are not supported (ValueError).

    Call: ``x: <f>[N, ..., C] -> <dtype>[N, ..., C]``; optional ``mask: <f>[N]`` weights examples
    (0 = padding); without it the mask from ``EXAMPLE_MASK_COLLECTION`` is used when present.
    """

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                             use_running_average)
        if self.axis_index_groups is not None or not self.use_fast_variance or not isinstance(self.axis, int):
            raise ValueError("jaxdl BatchNorm supports one feature axis, no axis_index_groups and the fast "
                             "variance E[x^2] - E[x]^2 only")
        axis = self.axis % x.ndim
        features = x.shape[axis]
        reduce_axes = tuple(i for i in range(x.ndim) if i != axis)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        if mask is None and self.has_variable(EXAMPLE_MASK_COLLECTION, "mask"):
            mask = self.get_variable(EXAMPLE_MASK_COLLECTION, "mask")

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            if mask is None:
                weight = None
                count = jnp.asarray(x.size // features, jnp.float32)
            else:
                # [N] -> [N, 1, ..., 1] on the batch axis; every position of an example counts once.
                weight = jnp.asarray(mask, jnp.float32).reshape((x.shape[0],) + (1,) * (x.ndim - 1))
                count = jnp.sum(weight) * (x.size // (features * x.shape[0]))
            xw = x32 if weight is None else x32 * weight
            sums = jnp.stack([jnp.sum(xw, reduce_axes), jnp.sum(xw * x32, reduce_axes)])
            if self.axis_name is not None and not self.is_initializing():
                sums, count = jax.lax.psum((sums, count), self.axis_name)
            count = jnp.maximum(count, 1.0)  # an all-padding batch gives mean 0, var 0 (no NaN)
            mean = sums[0] / count
            var = jnp.maximum(0.0, sums[1] / count - mean * mean)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var

        shape = [1] * x.ndim
        shape[axis] = features
        y = x - mean.reshape(shape)
        mul = jax.lax.rsqrt(var + self.epsilon)
        args = [x]
        if self.use_scale:
            scale = self.param("scale", self.scale_init, (features,), self.param_dtype)
            mul = mul * scale
            args.append(scale)
        y = y * mul.reshape(shape)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (features,), self.param_dtype)
            y = y + bias.reshape(shape)
            args.append(bias)
        dtype = self.dtype if self.dtype is not None else jnp.result_type(*args)
        return jnp.asarray(y, dtype)
