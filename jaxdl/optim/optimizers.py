"""Optimizers of the canon as optax chains.

``optimizer(name, learning_rate, ...)`` builds, from optax's own transformations::

    [clip_by_global_norm]                      if clip_norm
    [add_decayed_weights(wd, mask)]            coupled L2 (all but adamw), if weight_decay
    <direction>                                trace / scale_by_rss / scale_by_rms / scale_by_adam
    [add_decayed_weights(wd, mask)]            decoupled (adamw), if weight_decay
    <learning rate>                            -lr(count), or -lr of the plateau state
    wrapped in optax.MultiSteps                if accumulate_steps > 1

The learning-rate part keeps the rate of the *next* update in the optimizer state, so
:func:`current_learning_rate` reads it from ``opt_state`` alone (for logging), and so a
checkpoint carries it. The update rules and defaults are in docs/optim.md.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.errors import ConfigError
from jaxdl.optim.plateau import Plateau, PlateauState, scale_by_plateau

__all__ = [
    "optimizer",
    "available_optimizers",
    "current_learning_rate",
    "scale_by_scheduled_learning_rate",
    "ScheduledLearningRateState",
    "kernels_mask",
]

# Leaf names that get weight decay under decay_mask="kernels": weight matrices of Dense/Conv
# and embedding tables. Biases and BatchNorm/LayerNorm scale/bias are left alone.
_DECAYED_NAMES = ("kernel", "embedding")


class ScheduledLearningRateState(NamedTuple):
    """State of :func:`scale_by_scheduled_learning_rate`."""

    count: jax.Array  # <i32>[] updates applied so far
    learning_rate: jax.Array  # <f32>[] schedule(count): the rate of the next update


def scale_by_scheduled_learning_rate(schedule: Callable[[jax.Array], jax.Array]
                                     ) -> optax.GradientTransformation:
    """Multiply updates by ``-schedule(count)``, like ``optax.scale_by_learning_rate``, and keep
    ``schedule(count)`` for the next update in the state (read by :func:`current_learning_rate`)."""

    def rate(count):
        return jnp.asarray(schedule(count), jnp.float32)

    def init_fn(params):
        del params
        count = jnp.zeros([], jnp.int32)
        return ScheduledLearningRateState(count=count, learning_rate=rate(count))

    def update_fn(updates, state, params=None):
        del params
        step = -rate(state.count)
        updates = jax.tree.map(lambda u: u * step.astype(u.dtype), updates)
        count = optax.safe_increment(state.count)
        return updates, ScheduledLearningRateState(count=count, learning_rate=rate(count))

    return optax.GradientTransformation(init_fn, update_fn)


def kernels_mask(params: Any) -> Any:
    """Weight-decay mask: True for leaves named ``kernel`` or ``embedding``, False elsewhere.

    ``params`` is a flax parameter tree; returns a tree of bools of the same structure.
    """

    def is_decayed(path, _leaf):
        if not path:
            return False
        last = path[-1]
        key = getattr(last, "key", getattr(last, "name", None))
        return key in _DECAYED_NAMES

    return jax.tree_util.tree_map_with_path(is_decayed, params)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(float(x))


def _check(name: str, opt: str, value: Any, *, low: float, high: float | None = None,
           low_open: bool = False, high_open: bool = True) -> float:
    ok = _is_real(value)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (high is None or (v < high if high_open else v <= high))
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}" \
              f"{')' if high_open or high is None else ']'}"
        raise ConfigError(f"optimizer {opt!r}: {name} must be a number in {rng}, got {value!r}")
    return float(value)


# The direction part of each optimizer (everything but the learning rate), from optax's own
# transformations; `o` holds the checked hyperparameters.
def _sgd(o):
    del o
    return optax.identity()


def _momentum(o):
    return optax.trace(decay=o["momentum"], nesterov=False)


def _nesterov(o):
    return optax.trace(decay=o["momentum"], nesterov=True)


def _adagrad(o):
    # Duchi et al. 2011 start the sum of squares at 0 (optax's default is 0.1); eps sits inside
    # the square root in optax: g / sqrt(G + eps).
    return optax.scale_by_rss(initial_accumulator_value=0.0, eps=o["eps"])


def _rmsprop(o):
    # Hinton, Lecture 6e / Goodfellow et al. Alg. 8.5: no centering, no momentum, r_0 = 0,
    # eps inside the square root.
    return optax.scale_by_rms(decay=o["decay"], eps=o["eps"], initial_scale=0.0, eps_in_sqrt=True)


def _adam(o):
    # Kingma & Ba 2015, Alg. 1: bias-corrected moments, eps outside the square root.
    return optax.scale_by_adam(b1=o["b1"], b2=o["b2"], eps=o["eps"], eps_root=0.0)


# name -> (direction builder, default eps, decoupled weight decay?)
_OPTIMIZERS: dict[str, tuple[Callable[[dict], optax.GradientTransformation], float, bool]] = {
    "sgd": (_sgd, 0.0, False),
    "momentum": (_momentum, 0.0, False),
    "nesterov": (_nesterov, 0.0, False),
    "adagrad": (_adagrad, 1e-10, False),
    "rmsprop": (_rmsprop, 1e-8, False),
    "adam": (_adam, 1e-8, False),
    "adamw": (_adam, 1e-8, True),
}


def available_optimizers() -> list[str]:
    """Names accepted by :func:`optimizer`."""
    return sorted(_OPTIMIZERS)


def _resolve_mask(decay_mask: Any):
    if isinstance(decay_mask, str):
        if decay_mask == "kernels":
            return kernels_mask
        if decay_mask == "all":
            return None
    elif decay_mask is None:
        return None
    elif callable(decay_mask):
        return decay_mask
    raise ConfigError(f"decay_mask must be 'kernels' (weights of Dense/Conv/Embed only), 'all' or None "
                      f"(every parameter), or a function params -> tree of bools; got {decay_mask!r}")


def _learning_rate_part(learning_rate: Any, name: str) -> optax.GradientTransformation:
    if isinstance(learning_rate, Plateau):
        return scale_by_plateau(learning_rate)
    if callable(learning_rate):
        return scale_by_scheduled_learning_rate(learning_rate)
    if isinstance(learning_rate, (np.ndarray, jax.Array)) and np.ndim(learning_rate) == 0:
        learning_rate = learning_rate.item()
    if not _is_real(learning_rate) or float(learning_rate) < 0:
        raise ConfigError(f"optimizer {name!r}: learning_rate must be a number >= 0, a schedule "
                          f"(jaxdl.optim.schedule(...)) or a Plateau; got {learning_rate!r}")
    return scale_by_scheduled_learning_rate(optax.constant_schedule(float(learning_rate)))


def optimizer(name: str, learning_rate: Any, *, momentum: float = 0.9, b1: float = 0.9,
              b2: float = 0.999, eps: float | None = None, decay: float = 0.9,
              weight_decay: float = 0.0, decay_mask: Any = "kernels", clip_norm: float | None = None,
              accumulate_steps: int = 1) -> optax.GradientTransformation:
    """Build the optimizer ``name`` as an optax chain.

    Args:
      name: one of :func:`available_optimizers`: sgd, momentum, nesterov, adagrad, rmsprop, adam,
        adamw.
      learning_rate: a number, an optax schedule ``step -> lr`` (e.g. from ``schedule``), or a
        :class:`Plateau` from ``schedule("plateau", ...)`` (then call ``plateau_update`` once per
        epoch).
      momentum: mu of 'momentum' and 'nesterov' (ignored by the others).
      b1, b2: Adam's moment decay rates ('adam', 'adamw').
      eps: numerical-stability term; ``None`` picks the optimizer's default (adagrad 1e-10 inside
        the root; rmsprop 1e-8 inside the root; adam/adamw 1e-8 outside).
      decay: rho of RMSprop's running mean of squared gradients.
      weight_decay: lambda. Coupled L2 (``g + lambda * w`` before the optimizer's scaling) for all
        but 'adamw', where it is decoupled (Loshchilov & Hutter 2019): ``w -= lr * (adam + lambda*w)``.
      decay_mask: which parameters decay: 'kernels' (leaves named kernel/embedding: no biases, no
        BatchNorm scale/bias), 'all' or None (every leaf), or a function params -> tree of bools.
      clip_norm: if set, the gradient is first rescaled so its global L2 norm is at most this.
      accumulate_steps: k > 1 wraps the chain in ``optax.MultiSteps``: k calls accumulate
        micro-batch gradients and the k-th applies one update with their mean (others return 0).

    Returns:
      an ``optax.GradientTransformation``; ``update(grads, opt_state, params)`` needs ``params``
      when ``weight_decay > 0``.

    Raises:
      ConfigError: unknown name (valid ones listed) or a value out of range.
    """
    if name not in _OPTIMIZERS:
        close = difflib.get_close_matches(str(name), list(_OPTIMIZERS), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ConfigError(f"unknown optimizer {name!r}{hint}; valid optimizers: "
                          f"{', '.join(available_optimizers())}")
    build, default_eps, decoupled = _OPTIMIZERS[name]
    o = {
        "momentum": _check("momentum", name, momentum, low=0.0, high=1.0),
        "b1": _check("b1", name, b1, low=0.0, high=1.0),
        "b2": _check("b2", name, b2, low=0.0, high=1.0),
        "decay": _check("decay", name, decay, low=0.0, high=1.0),
        "eps": default_eps if eps is None else _check("eps", name, eps, low=0.0),
    }
    weight_decay = _check("weight_decay", name, weight_decay, low=0.0)
    mask = _resolve_mask(decay_mask)
    if clip_norm is not None:
        clip_norm = _check("clip_norm", name, clip_norm, low=0.0, low_open=True)
    if not isinstance(accumulate_steps, (int, np.integer)) or isinstance(accumulate_steps, bool) \
            or accumulate_steps < 1:
        raise ConfigError(f"accumulate_steps must be a whole number >= 1 (1 = no accumulation), "
                          f"got {accumulate_steps!r}")
    lr_part = _learning_rate_part(learning_rate, name)

    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if weight_decay and not decoupled:
        parts.append(optax.add_decayed_weights(weight_decay, mask=mask))
    parts.append(build(o))
    if weight_decay and decoupled:
        # optax.adamw's own order: Adam direction, + lambda * w, then the learning rate.
        parts.append(optax.add_decayed_weights(weight_decay, mask=mask))
    parts.append(lr_part)
    tx = optax.chain(*parts)
    if accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=int(accumulate_steps)).gradient_transformation()
    return tx


def _learning_rate_states(opt_state: Any) -> list:
    kinds = (ScheduledLearningRateState, PlateauState)
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, kinds))
    return [s for s in nodes if isinstance(s, kinds)]


def current_learning_rate(opt_state: Any):
    """The learning rate the next update will use (schedule value at the current update count,
    or the plateau's current rate), read from ``opt_state`` of a chain built by :func:`optimizer`.

    Returns a Python float on the host; under ``jit`` a <f32>[] array.

    Raises:
      ConfigError: ``opt_state`` was not built by :func:`optimizer` (no learning-rate state in it).
    """
    states = _learning_rate_states(opt_state)
    if len(states) != 1:
        raise ConfigError(f"expected one learning-rate state in opt_state, found {len(states)}; "
                          f"build the optimizer with jaxdl.optim.optimizer(...)")
    lr = states[0].learning_rate
    return lr if isinstance(lr, jax.core.Tracer) else float(lr)
