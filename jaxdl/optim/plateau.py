"""Reduce-on-plateau: a learning rate cut by ``factor`` when the validation loss stops improving.

The decision is taken once per epoch, on the host, by :func:`plateau_update`; the optax
transformation built by :func:`scale_by_plateau` only applies the learning rate stored in its
state. Everything the rule needs (current rate, best loss, counters *and* the settings) lives in
``opt_state``, so ``plateau_update`` is a pure function of ``(opt_state, value)`` and a checkpoint
of the train state carries the plateau with it.

Semantics (those of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` in mode ``"min"``,
threshold mode ``"rel"``):

* an epoch *improves* when ``value < best * (1 - threshold)``; ``best`` starts at +inf;
* ``num_bad_epochs`` counts consecutive epochs that do not improve;
* when ``num_bad_epochs > patience`` the rate becomes ``max(lr * factor, min_lr)``, the counter
  is reset and ``cooldown`` epochs follow during which bad epochs are not counted.

With ``patience=2`` a loss that stops improving after epoch 0 cuts the rate at the end of
epoch 3 (bad epochs 1, 2 are tolerated, the third is one too many).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import ConfigError

__all__ = ["Plateau", "PlateauState", "scale_by_plateau", "plateau_update"]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclasses.dataclass(frozen=True)
class Plateau:
    """Settings of a reduce-on-plateau learning rate (from ``schedule("plateau", ...)``).

    Attributes:
      learning_rate: rate used until the first reduction.
      factor: multiplier applied at each reduction, in (0, 1).
      patience: number of consecutive non-improving epochs tolerated; one more cuts the rate.
      threshold: relative improvement needed to count as better: ``value < best * (1 - threshold)``.
      cooldown: epochs after a reduction during which non-improving epochs are not counted.
      min_lr: floor of the learning rate.
    """

    learning_rate: float
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        if not _is_number(self.learning_rate) or self.learning_rate < 0:
            raise ConfigError(f"plateau: learning_rate must be a number >= 0, got {self.learning_rate!r}")
        if not _is_number(self.factor) or not 0 < self.factor < 1:
            raise ConfigError(f"plateau: factor must be in (0, 1) (the rate is multiplied by it at each "
                              f"reduction), got {self.factor!r}; 0.1 is the usual choice")
        for name in ("patience", "cooldown"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"plateau: {name} must be a whole number of epochs >= 0, got {v!r}")
        if not _is_number(self.threshold) or not 0 <= self.threshold < 1:
            raise ConfigError(f"plateau: threshold is a relative improvement in [0, 1) (e.g. 1e-4), "
                              f"got {self.threshold!r}")
        if not _is_number(self.min_lr) or not 0 <= self.min_lr <= self.learning_rate:
            raise ConfigError(f"plateau: min_lr must be in [0, learning_rate={self.learning_rate}], "
                              f"got {self.min_lr!r}")


class PlateauState(NamedTuple):
    """Optimizer state of :func:`scale_by_plateau` (all scalars, so it checkpoints as arrays).

    The settings are stored next to the counters so that :func:`plateau_update` needs nothing
    but ``opt_state``; a resumed run continues with the settings it was started with.
    """

    learning_rate: jax.Array  # <f32>[] rate the next update uses
    best: jax.Array  # <f32>[] best value seen (+inf before the first epoch)
    num_bad_epochs: jax.Array  # <i32>[]
    cooldown_counter: jax.Array  # <i32>[] epochs of cooldown left
    factor: jax.Array  # <f32>[]
    patience: jax.Array  # <i32>[]
    threshold: jax.Array  # <f32>[]
    cooldown: jax.Array  # <i32>[]
    min_lr: jax.Array  # <f32>[]


def scale_by_plateau(plateau: Plateau) -> optax.GradientTransformation:
    """Multiply updates by ``-learning_rate`` where the rate is the one stored in the state.

    The state only changes through :func:`plateau_update` (once per epoch), never in ``update``.
    """

    def init_fn(params):
        del params
        f32, i32 = jnp.float32, jnp.int32
        return PlateauState(
            learning_rate=jnp.asarray(plateau.learning_rate, f32),
            best=jnp.asarray(jnp.inf, f32),
            num_bad_epochs=jnp.zeros([], i32),
            cooldown_counter=jnp.zeros([], i32),
            factor=jnp.asarray(plateau.factor, f32),
            patience=jnp.asarray(plateau.patience, i32),
            threshold=jnp.asarray(plateau.threshold, f32),
            cooldown=jnp.asarray(plateau.cooldown, i32),
            min_lr=jnp.asarray(plateau.min_lr, f32),
        )

    def update_fn(updates, state, params=None):
        del params
        step = -state.learning_rate
        return jax.tree.map(lambda u: u * step.astype(u.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def _step_plateau(state: PlateauState, value) -> PlateauState:
    value = jnp.asarray(value, jnp.float32)
    # NaN compares False: a NaN loss counts as a bad epoch.
    improved = value < state.best * (1.0 - state.threshold)
    best = jnp.where(improved, value, state.best)
    bad = jnp.where(improved, 0, state.num_bad_epochs + 1)
    in_cooldown = state.cooldown_counter > 0
    cooldown_counter = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
    bad = jnp.where(in_cooldown, 0, bad)
    reduce = bad > state.patience
    lr = jnp.where(reduce, jnp.maximum(state.learning_rate * state.factor, state.min_lr),
                   state.learning_rate)
    return state._replace(
        learning_rate=lr.astype(jnp.float32),
        best=best.astype(jnp.float32),
        num_bad_epochs=jnp.where(reduce, 0, bad).astype(jnp.int32),
        cooldown_counter=jnp.where(reduce, state.cooldown, cooldown_counter).astype(jnp.int32),
    )


def plateau_update(opt_state: optax.OptState, value) -> optax.OptState:
    """Advance the reduce-on-plateau part of ``opt_state`` by one epoch whose loss is ``value``.

    Call it once per epoch with the validation loss (a scalar). Pure and jit-able; returns
    ``opt_state`` unchanged (same structure, same leaves) when the optimizer has no plateau part,
    so the training loop can call it unconditionally. Works through ``clip``/weight-decay chains
    and ``optax.MultiSteps`` wrappers since it rewrites every :class:`PlateauState` it finds.
    """
    return jax.tree.map(
        lambda s: _step_plateau(s, value) if isinstance(s, PlateauState) else s,
        opt_state,
        is_leaf=lambda s: isinstance(s, PlateauState),
    )
