"""Perceptron (linear classifier) and multilayer perceptron.

* ``perceptron`` - Rosenblatt 1958: one layer of linear threshold units. Here a flattened
  input and one ``Dense`` named ``head``; the perceptron criterion (multiclass hinge loss
  with margin 0) is a loss of ``jaxdl.train``, not part of the model. With ``num_classes=1``
  the output is one score whose sign is the threshold unit's decision.
* ``mlp`` - Rumelhart, Hinton & Williams 1986: fully connected hidden layers
  ``hidden1 .. hiddenK`` (each optionally followed by ``hiddenK_bn`` BatchNorm, then the
  activation and dropout), then ``head``.

Parameter names: ``hidden{k}/{kernel,bias}``, ``hidden{k}_bn/{scale,bias}``, ``head/{kernel,bias}``.
Both accept any input size (registered with ``fixed_input=False``).

The activation table :data:`ACTIVATIONS` is shared with LeNet-5 (``jaxdl.models.lenet``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import FeatureTaps, batch_norm

__all__ = ["ACTIVATIONS", "activation_fn", "scaled_tanh", "Perceptron", "MLP"]


def scaled_tanh(x: jax.Array) -> jax.Array:
    """LeCun's squashing function ``1.7159 * tanh(2x/3)`` (LeCun et al. 1998, Appendix A).

    The constants make ``f(1) = 1`` and ``f(-1) = -1`` with the largest second derivative
    at +-1, so unit-variance inputs stay in the non-saturated range.
    """
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "scaled_tanh": scaled_tanh,
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,  # negative slope 0.01, as torch.nn.LeakyReLU
    "elu": nn.elu,
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` (see :data:`ACTIVATIONS`); ConfigError if unknown."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}") from None


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape((x.shape[0], -1))


class Perceptron(nn.Module):
    """A linear classifier: ``logits = W vec(x) + b``.

    ``x: <f32>[N, H, W, C]`` (any size) -> ``<f32>[N, num_classes]``.
    ``num_classes=0`` returns the flattened input ``[N, H*W*C]`` (the ``pre_logits`` tap).
    ``train`` is accepted for the common interface; the model has no dropout or BatchNorm.
    """

    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        del train  # no train-dependent layer
        taps = FeatureTaps(features, valid=("pre_logits", "logits"))
        x = _flatten(jnp.asarray(x, self.dtype))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return taps.finish(logits)


class MLP(nn.Module):
    """Multilayer perceptron: ``[Dense -> (BatchNorm) -> activation -> (Dropout)] * K -> head``.

    ``x: <f32>[N, H, W, C]`` (any size; flattened) -> ``<f32>[N, num_classes]``.

    Attributes:
      hidden_sizes: widths of the hidden layers ``hidden1 .. hiddenK``; ``()`` gives a
        linear classifier.
      activation: one of ``sigmoid, tanh, scaled_tanh, relu, leaky_relu, elu``.
      dropout_rate: dropout after each hidden activation (rng stream ``"dropout"``).
      batch_norm: BatchNorm after each hidden Dense, before the activation (Ioffe & Szegedy
        2015, sec. 3.2); the Dense then has no bias (BatchNorm's offset replaces it).
      frozen_bn: keep BatchNorm's running statistics fixed even when ``train=True``.

    Taps: ``hidden1 .. hiddenK`` (after the activation), ``pre_logits`` (the last hidden
    layer, or the flattened input if there is none) and ``logits``.
    """

    num_classes: int = 10
    hidden_sizes: Sequence[int] = (256, 128, 64)
    activation: str = "relu"
    dropout_rate: float = 0.0
    batch_norm: bool = False
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        act = activation_fn(self.activation)
        sizes = tuple(self.hidden_sizes)
        if any(int(h) < 1 for h in sizes):
            raise ConfigError(f"hidden_sizes must be positive integers, got {sizes}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        names = tuple(f"hidden{k}" for k in range(1, len(sizes) + 1))
        taps = FeatureTaps(features, valid=(*names, "pre_logits", "logits"))
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)

        x = _flatten(jnp.asarray(x, self.dtype))
        for name, width in zip(names, sizes):
            x = nn.Dense(int(width), use_bias=not self.batch_norm, dtype=self.dtype, name=name)(x)
            if self.batch_norm:
                x = norm(name=f"{name}_bn")(x)
            x = act(x)
            if taps.add(name, x):
                return taps.result
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return taps.finish(logits)


register(
    "perceptron",
    functools.partial(Perceptron),
    input_shape=(28, 28, 1),
    num_classes=10,
    family="perceptron",
    paper="Rosenblatt 1958, 'The perceptron: a probabilistic model for information storage and "
          "organization in the brain' (single layer of linear threshold units)",
    description="linear classifier: flatten + Dense head (7,850 params on 28x28x1, 10 classes)",
    smoke_input_shape=(28, 28, 1),
    fixed_input=False,
)

register(
    "mlp",
    functools.partial(MLP),
    input_shape=(28, 28, 1),
    num_classes=10,
    family="mlp",
    paper="Rumelhart, Hinton & Williams 1986, 'Learning representations by back-propagating errors'",
    description="multilayer perceptron, hidden 256-128-64 ReLU by default (242,762 params on 28x28x1)",
    smoke_input_shape=(28, 28, 1),
    fixed_input=False,
)
