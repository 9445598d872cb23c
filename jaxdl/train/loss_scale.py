"""Dynamic loss scaling for float16 training (Micikevicius et al. 2018, "Mixed precision training", sec. 3.2).

float16 has 5 exponent bits: gradients below 2^-24 flush to zero. Multiplying the loss by a
scale S shifts the gradients into range; they are divided by S before the optimizer sees them
(which stays in float32). Dynamic rule: if any gradient is inf/NaN the step is skipped and S is
halved; after ``period`` finite steps in a row S doubles. Start 2^15, period 2000 (the paper's
and common defaults). bfloat16 has float32's exponent range and needs no scaling.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["DynamicLossScale", "all_finite"]


def all_finite(tree: Any) -> jax.Array:
    """<bool>[]: every element of every leaf is finite."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


class DynamicLossScale(struct.PyTreeNode):
    """scale: <f32>[] current S; good_steps: <i32>[] finite steps since the last change."""

    scale: jax.Array
    good_steps: jax.Array
    period: int = struct.field(pytree_node=False, default=2000)
    factor: float = struct.field(pytree_node=False, default=2.0)
    min_scale: float = struct.field(pytree_node=False, default=1.0)

    @classmethod
    def create(cls, initial: float = 2.0 ** 15, period: int = 2000, factor: float = 2.0) -> "DynamicLossScale":
        return cls(scale=jnp.asarray(initial, jnp.float32), good_steps=jnp.zeros((), jnp.int32), period=period,
                   factor=factor)

    def scale_loss(self, loss: jax.Array) -> jax.Array:
        return loss * self.scale.astype(loss.dtype)

    def unscale(self, grads: Any) -> Any:
        return jax.tree_util.tree_map(lambda g: (g.astype(jnp.float32) / self.scale), grads)

    def adjust(self, finite: jax.Array) -> "DynamicLossScale":
        grow = finite & (self.good_steps + 1 >= self.period)
        scale = jnp.where(finite, jnp.where(grow, self.scale * self.factor, self.scale),
                          jnp.maximum(self.scale / self.factor, self.min_scale))
        good = jnp.where(finite & ~grow, self.good_steps + 1, 0)
        return self.replace(scale=scale, good_steps=good.astype(jnp.int32))
