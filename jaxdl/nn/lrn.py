"""Local response normalization across channels (Krizhevsky, Sutskever & Hinton 2012, sec. 3.3).

For the activity ``a[c]`` of channel ``c`` at one position, with ``C`` channels::

    b[c] = a[c] / (k + alpha' * sum_{j = max(0, c - size//2)}^{min(C - 1, c + (size - 1)//2)} a[j]**2) ** beta

Two conventions for ``alpha'`` exist and both are available:

* ``alpha_over_size=False`` (default): ``alpha' = alpha``, the formula of the AlexNet paper
  (and of cuda-convnet); with the paper's ``k=2, n=5, alpha=1e-4, beta=0.75`` this is what
  AlexNet, ZFNet and VGG-A-LRN use here.
* ``alpha_over_size=True``: ``alpha' = alpha / size``, i.e. ``alpha`` scales the *mean* of
  the squares over the window. This is ``torch.nn.LocalResponseNorm`` and Caffe's
  ``LRN`` layer; use it (with the same ``alpha``) to reproduce weights trained there. In this
  convention the divisor is always ``size`` even where the window is cut off at the first or
  last channels (torch averages over zero padding).

The window spans ``size`` channels: ``size // 2`` before and ``(size - 1) // 2`` after
channel ``c`` (centred for odd ``size``, like the paper's ``n = 5``; for even ``size`` this is
torch's choice), clipped at the channel edges (channels outside contribute zero).
"""

from __future__ import annotations

import operator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

__all__ = ["LocalResponseNorm", "local_response_norm"]


def _check(size: Any, alpha: float, beta: float, k: float) -> int:
    try:
        size = operator.index(size)
    except TypeError:
        raise ConfigError(f"LRN size must be an integer number of channels, got {size!r}") from None
    if size < 1:
        raise ConfigError(f"LRN size must be >= 1 channel, got {size}; the paper uses size=5")
    if k == 0 and beta > 0:
        # k = 0 divides by zero where a whole window is zero (e.g. dead ReLU channels).
        raise ConfigError("LRN k must be > 0 (the paper uses k=2) so that all-zero windows do not divide by zero")
    return size


def local_response_norm(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                        alpha_over_size: bool = False) -> jax.Array:
    """Normalize ``x: <float>[..., C]`` across its last (channel) axis; same shape and dtype out.

    See the module docstring for the formula; ``alpha_over_size`` picks torch/Caffe's
    ``alpha / size`` convention instead of the paper's ``alpha``. The sum of squares and the
    power are computed in float32 (a bfloat16 sum of 5 squares near 1e4 loses the ``k=2``
    term), then cast back to ``x.dtype``.
    """
    size = _check(size, alpha, beta, k)
    x32 = x.astype(jnp.float32)
    pad = [(0, 0)] * (x.ndim - 1) + [(size // 2, (size - 1) // 2)]
    window_sum = jax.lax.reduce_window(
        jnp.square(x32), 0.0, jax.lax.add, window_dimensions=(1,) * (x.ndim - 1) + (size,),
        window_strides=(1,) * x.ndim, padding=pad)
    scale = alpha / size if alpha_over_size else alpha
    return (x32 * jnp.power(k + scale * window_sum, -beta)).astype(x.dtype)


class LocalResponseNorm(nn.Module):
    """Local response normalization layer (no parameters) over the channel axis of NHWC input.

    ``x: <f>[N, H, W, C] -> <f>[N, H, W, C]``. Defaults are Krizhevsky et al. 2012, sec. 3.3
    (``k=2, n=5, alpha=1e-4, beta=0.75``, ``alpha`` multiplying the window sum).

    Attributes:
      size: number of adjacent channels in the window (the paper's ``n``).
      alpha: scale of the sum of squares (or of their mean if ``alpha_over_size``).
      beta: exponent.
      k: additive constant.
      alpha_over_size: False = paper formula ``alpha * sum``; True = ``torch.nn.LocalResponseNorm``
        / Caffe formula ``alpha / size * sum``.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    alpha_over_size: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.alpha_over_size)
