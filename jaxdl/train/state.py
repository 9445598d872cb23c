"""The training state: one immutable pytree carried from step to step."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

__all__ = ["TrainState", "create_train_state"]


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes.

    Attributes:
      step: <i32>[] number of optimizer steps taken.
      params: the model's ``params`` collection (float32).
      batch_stats: the ``batch_stats`` collection (``{}`` for models without BatchNorm).
      opt_state: optax state of ``tx``.
      rng: <u32>[2] base key; step ``s`` uses ``fold_in(rng, s)``, so randomness is a pure
        function of (seed, step) and a resumed run draws the same numbers.
      apply_fn, tx: static (not part of the pytree, not checkpointed).
      loss_scale: a :class:`jaxdl.train.loss_scale.DynamicLossScale` for float16 training, else None.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    loss_scale: Any = None

    @property
    def variables(self) -> dict[str, Any]:
        """The variables dict that ``apply_fn`` expects."""
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out

    def apply_gradients(self, grads: Any, batch_stats: Any) -> "TrainState":
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)

    def checkpoint_tree(self) -> dict[str, Any]:
        """The pytree that is saved (static fields are rebuilt from the run's config)."""
        tree = {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
                "opt_state": self.opt_state, "rng": self.rng}
        if self.loss_scale is not None:
            tree["loss_scale"] = self.loss_scale
        return tree


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, *, input_shape: Sequence[int],
                       seed: int = 0) -> TrainState:
    """Initialise ``model`` on a zero batch of ``input_shape`` (H, W, C) and wrap it with ``tx``.

    Parameters come from ``fold_in(key(seed), 0)``; the training randomness from
    ``fold_in(key(seed), 1)``, so changing one never shifts the other.
    """
    base = jax.random.PRNGKey(seed)
    init_key, train_key = jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)
    x = jnp.zeros((1, *input_shape), jnp.float32)

    @jax.jit
    def init(key):
        return model.init({"params": key, "dropout": key}, x, train=False)

    variables = init(init_key)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), rng=train_key, apply_fn=model.apply, tx=tx)
