"""Pooling with PyTorch's semantics on NHWC input (so torchvision weights give identical outputs).

* :func:`max_pool` - ``torch.nn.MaxPool2d`` including ``ceil_mode``.
* :func:`adaptive_avg_pool` - ``torch.nn.AdaptiveAvgPool2d``.
* :func:`check_nhwc` - the one input check every CNN makes.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.nn.shapes import conv_output_size

__all__ = ["max_pool", "adaptive_avg_pool", "check_nhwc"]


def check_nhwc(x: jax.Array, model: str) -> None:
    """Raise a ConfigError unless ``x`` is a 4-D NHWC batch."""
    if getattr(x, "ndim", None) != 4:
        raise ConfigError(
            f"{model} expects a batch of images [N, H, W, C] (NHWC), got an array of shape "
            f"{getattr(x, 'shape', None)}; add a batch axis with x[None] for a single image")


def max_pool(x: jax.Array, window: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> jax.Array:
    """``torch.nn.MaxPool2d(window, stride, padding, ceil_mode=...)`` on NHWC input.

    ``x: <f>[N, H, W, C] -> <f>[N, H', W', C]`` with ``H' = conv_output_size(H, window, padding,
    stride, ceil_mode=ceil_mode)``. Padding counts as -inf (never the maximum). ``ceil_mode``
    adds the extra right/bottom padding that rounding up needs, and (like torch) drops a
    last window that would start in the right padding.

    Raises:
      ConfigError: the feature map is smaller than the window (the input image is too small).
    """
    pads = []
    for axis in (1, 2):
        size = x.shape[axis]
        try:
            out = conv_output_size(size, window, padding, stride, ceil_mode=ceil_mode)
        except ValueError:
            raise ConfigError(
                f"a {window}x{window} max pool met a {x.shape[1]}x{x.shape[2]} feature map, too small for it "
                f"(padding {padding}); the input image is too small for this model: use a larger input "
                f"(the model's registered smoke_input_shape is the smallest size that is tested)") from None
        extra = max(0, (out - 1) * stride + window - size - 2 * padding)  # > 0 only in ceil mode
        pads.append((padding, padding + extra))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=tuple(pads))


def _adaptive_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] averaging matrix of torch's adaptive pooling along one axis.

    Output ``i`` averages inputs ``floor(i * n_in / n_out) .. ceil((i + 1) * n_in / n_out) - 1``.
    """
    weights = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` on NHWC input.

    ``x: <f>[N, H, W, C] -> <f>[N, oh, ow, C]``. Each output cell averages the input window
    ``[floor(i*H/oh), ceil((i+1)*H/oh))`` (and likewise for width); windows overlap when ``H`` is
    not a multiple of ``oh`` and repeat cells when ``H < oh`` (e.g. a 1x1 map becomes 7x7 copies),
    which lets AlexNet/VGG keep their fixed-size classifiers for any input size.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    n, h, w, c = x.shape
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:  # disjoint equal windows: a plain mean
        return x.reshape(n, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
    # Averages along H and W are separable, so two small matrices do it in one einsum.
    rows = jnp.asarray(_adaptive_weights(h, oh), x.dtype)
    cols = jnp.asarray(_adaptive_weights(w, ow), x.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", rows, x, cols)
