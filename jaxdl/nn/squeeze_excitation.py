"""Squeeze-and-excitation (Hu, Shen, Albanie, Sun & Wu 2018, "Squeeze-and-excitation networks",
CVPR / TPAMI, sec. 3, Fig. 2-3).

``SE(x) = x * sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2)``: a global average pool ("squeeze",
Eq. 2), a bottleneck of two fully connected layers with reduction ratio ``r`` ("excitation",
Eq. 3; ``r = 16`` in all the paper's SE-ResNet/ResNeXt/SENet-154 models, sec. 6.1) and a
channel-wise rescaling of the input (Eq. 4). Parameters: ``2 C^2 / r + C / r + C``
(fc1 and fc2 with biases, as the released models' 1x1 convolutions).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(nn.Module):
    """Channel recalibration: ``x: [N, *spatial, C] -> [N, *spatial, C]``.

    Attributes:
      reduction: the paper's ratio ``r``; the hidden layer has ``max(1, C // r)`` units.
      squeeze_channels: hidden units, overriding ``reduction`` when given.
      act: activation of the hidden layer (ReLU, Eq. 3).
      gate: gating function (sigmoid, Eq. 3).
      dtype: compute dtype (parameters stay float32).

    Submodules: ``fc1`` (C -> hidden), ``fc2`` (hidden -> C), both ``nn.Dense`` with bias.
    """

    reduction: int = 16
    squeeze_channels: Optional[int] = None
    act: Callable[[jax.Array], jax.Array] = nn.relu
    gate: Callable[[jax.Array], jax.Array] = nn.sigmoid
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 3:
            raise ConfigError(f"SqueezeExcitation needs [N, *spatial, C] input with at least one spatial axis, "
                              f"got shape {tuple(x.shape)}")
        channels = x.shape[-1]
        if self.squeeze_channels is not None:
            if self.squeeze_channels < 1:
                raise ConfigError(f"squeeze_channels must be >= 1, got {self.squeeze_channels}")
            hidden = self.squeeze_channels
        else:
            if self.reduction < 1:
                raise ConfigError(f"reduction must be an integer >= 1 (the paper uses 16), got {self.reduction}")
            hidden = max(1, channels // self.reduction)
        spatial = tuple(range(1, x.ndim - 1))
        # Squeeze in float32 at least: a mean over e.g. 56*56 bf16 values loses precision.
        squeezed = jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=spatial, keepdims=True)
        s = nn.Dense(hidden, dtype=self.dtype, name="fc1")(squeezed)
        s = nn.Dense(channels, dtype=self.dtype, name="fc2")(self.act(s))
        return x * self.gate(s).astype(x.dtype)
