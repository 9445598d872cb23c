"""Losses of the canon, each ``loss(logits, labels) -> <f32>[N]`` per example (mean it yourself).

``labels`` are integer class ids ``<i32>[N]`` for every loss, so the train step stays one.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import ConfigError

__all__ = ["softmax_cross_entropy", "binary_cross_entropy", "mean_squared_error", "multiclass_hinge",
           "get_loss", "available_losses", "LossFn"]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Cross-entropy of softmax(logits) against integer labels.

    With ``label_smoothing`` eps the target is (1 - eps) * onehot + eps / K (Szegedy et al. 2016, sec. 7).
    logits: <f>[N, K], labels: <i32>[N] -> <f32>[N].
    """
    logits = logits.astype(jnp.float32)
    if label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Sigmoid cross-entropy: one independent logistic unit per class (summed over classes).

    With one output unit (``K == 1``) this is the classic logistic regression loss and
    ``labels`` must be 0/1. logits: <f>[N, K], labels: <i32>[N] -> <f32>[N].
    """
    logits = logits.astype(jnp.float32)
    if logits.shape[-1] == 1:
        targets = labels.astype(jnp.float32)[:, None]
    else:
        targets = jax.nn.one_hot(labels, logits.shape[-1])
    return optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)


def mean_squared_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Squared error between the outputs and one-hot targets, averaged over classes.

    The loss of classic backprop (Rumelhart et al. 1986) and of LeNet-era networks.
    logits: <f>[N, K], labels: <i32>[N] -> <f32>[N].
    """
    logits = logits.astype(jnp.float32)
    return jnp.mean((logits - jax.nn.one_hot(labels, logits.shape[-1])) ** 2, axis=-1)


def multiclass_hinge(logits: jax.Array, labels: jax.Array, margin: float = 1.0) -> jax.Array:
    """Multiclass SVM hinge loss (Weston & Watkins 1999): sum_{j != y} max(0, s_j - s_y + margin).

    ``margin=0`` is the perceptron criterion: zero loss once the true class scores highest.
    logits: <f>[N, K], labels: <i32>[N] -> <f32>[N].
    """
    logits = logits.astype(jnp.float32)
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    violations = jnp.maximum(0.0, logits - true + margin)
    not_true = 1.0 - jax.nn.one_hot(labels, logits.shape[-1])
    return jnp.sum(violations * not_true, axis=-1)


_LOSSES = {
    "cross_entropy": softmax_cross_entropy,
    "bce": binary_cross_entropy,
    "mse": mean_squared_error,
    "hinge": multiclass_hinge,
}
_OPTIONS = {"cross_entropy": {"label_smoothing"}, "hinge": {"margin"}, "bce": set(), "mse": set()}


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def get_loss(name: str, **kw: float) -> LossFn:
    """The loss ``name`` with its options bound, e.g. ``get_loss("cross_entropy", label_smoothing=0.1)``."""
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(available_losses())}")
    kw = {k: v for k, v in kw.items() if v is not None}
    bad = set(kw) - _OPTIONS[name]
    if bad:
        raise ConfigError(f"loss {name!r} takes no option {', '.join(sorted(bad))}; "
                          f"it takes: {', '.join(sorted(_OPTIONS[name])) or 'none'}")
    if "label_smoothing" in kw and not 0.0 <= kw["label_smoothing"] < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {kw['label_smoothing']}")
    return functools.partial(_LOSSES[name], **kw)
