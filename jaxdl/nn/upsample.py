"""Transposed convolutions with PyTorch's geometry, initialised to bilinear upsampling (FCN).

Long, Shelhamer & Darrell 2015 (sec. 3.3) upsample coarse score maps by a "backwards strided
convolution" whose filter starts as bilinear interpolation; intermediate upsampling layers are
then learned, the final one stays fixed (sec. 4.2). The bilinear filter of size ``k`` is the
outer product of ``1 - |i - centre| / f`` with ``f = ceil(k / 2)`` and ``centre = f - 1`` (``k``
odd) or ``f - 0.5`` (``k`` even); for a factor-``s`` upsampling ``k = 2s - s % 2`` and padding
``s // 2`` give exactly ``s * H`` outputs (kernel 64, stride 32, padding 16 for FCN-32s).

* :func:`bilinear_kernel` - the ``k x k`` filter (numpy).
* :func:`bilinear_kernel_init` - flax initializer ``[kh, kw, in, out]``: the filter on the channel
  diagonal (channel ``i`` upsamples channel ``i``), zero elsewhere (the FCN reference nets' init).
* :func:`conv_transpose_padding` - flax ``nn.ConvTranspose`` padding equal to torch's
  ``ConvTranspose2d(padding=p, output_padding=op)``, so the output size is
  :func:`~jaxdl.nn.shapes.transposed_conv_output_size`.
* :func:`conv_transpose2d` - an ``nn.ConvTranspose`` with torch's arguments and output size
  (``transpose_kernel=True``: the gradient of a convolution, as torch's ``conv_transpose2d``).
* :func:`bilinear_upsample` - fixed (parameter-free) per-channel bilinear upsampling by ``s``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError

__all__ = ["bilinear_kernel", "bilinear_kernel_init", "conv_transpose_padding", "conv_transpose2d",
           "bilinear_upsample", "upsample_geometry"]


def bilinear_kernel(size: int) -> np.ndarray:
    """``<f32>[size, size]`` bilinear interpolation filter (FCN sec. 3.3)."""
    if int(size) < 1:
        raise ConfigError(f"bilinear kernel size must be >= 1, got {size}")
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1.0 - np.abs(np.arange(size) - centre) / factor
    return np.outer(taps, taps).astype(np.float32)


def bilinear_kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """Initializer for a ``[kh, kw, in, out]`` transposed-conv kernel: bilinear on the diagonal.

    ``kh == kw`` is required; with ``in != out`` the first ``min(in, out)`` channels map to
    themselves. The key is unused (the init is deterministic).
    """
    del key
    if len(shape) != 4 or shape[0] != shape[1]:
        raise ConfigError(f"bilinear_kernel_init needs a square 2-D kernel [k, k, in, out], got {shape}")
    k, _, cin, cout = shape
    kernel = np.zeros(shape, np.float32)
    idx = np.arange(min(cin, cout))
    kernel[:, :, idx, idx] = bilinear_kernel(k)[:, :, None]
    return jnp.asarray(kernel, dtype)


def upsample_geometry(factor: int) -> tuple[int, int]:
    """``(kernel, padding)`` of a stride-``factor`` transposed conv that maps ``H`` to ``factor * H``."""
    factor = int(factor)
    if factor < 1:
        raise ConfigError(f"upsampling factor must be >= 1, got {factor}")
    return 2 * factor - factor % 2, factor // 2


def conv_transpose_padding(kernel: int, padding: int = 0, output_padding: int = 0, dilation: int = 1
                           ) -> tuple[int, int]:
    """flax ``nn.ConvTranspose`` padding ``(lo, hi)`` for one axis equal to torch's ``padding`` /
    ``output_padding``: ``lo = d (k - 1) - p``, ``hi = lo + output_padding`` (may be negative: a crop)."""
    lo = dilation * (kernel - 1) - padding
    return lo, lo + output_padding


def conv_transpose2d(features: int, kernel_size: int, strides: int = 1, padding: int = 0, output_padding: int = 0,
                     **kwargs: Any) -> nn.ConvTranspose:
    """``nn.ConvTranspose`` with torch ``ConvTranspose2d`` semantics on NHWC input.

    ``x: <f>[N, H, W, Cin] -> <f>[N, H', W', features]`` with ``H' =
    transposed_conv_output_size(H, kernel_size, padding, strides, output_padding)``. It is the
    gradient of a convolution (``transpose_kernel=True``), as torch's ``conv_transpose2d``; the
    kernel is stored ``[kh, kw, features, Cin]`` and a torch weight ``[Cin, features, kh, kw]``
    maps to it by ``w.transpose(2, 3, 1, 0)``. ``kwargs`` go to ``nn.ConvTranspose`` (``name``,
    ``use_bias``, ``kernel_init``, ``dtype`` ...).
    """
    if output_padding >= max(strides, 1) and output_padding > 0:
        raise ConfigError(f"output_padding must be smaller than the stride ({strides}), got {output_padding}")
    pad = conv_transpose_padding(kernel_size, padding, output_padding)
    return nn.ConvTranspose(features, (kernel_size, kernel_size), strides=(strides, strides), padding=(pad, pad),
                            transpose_kernel=True, **kwargs)


def bilinear_upsample(x: jax.Array, factor: int) -> jax.Array:
    """Fixed bilinear upsampling of every channel by ``factor``: ``<f>[N, H, W, C] -> <f>[N, sH, sW, C]``.

    The same as a transposed conv (kernel ``2s - s % 2``, stride ``s``, padding ``s // 2``) with the
    :func:`bilinear_kernel_init` kernel held fixed, i.e. FCN's final upsampling layer (sec. 4.2), but
    depthwise, so it costs ``C`` rather than ``C^2`` filters and has no parameters.
    """
    if factor == 1:
        return x
    k, p = upsample_geometry(factor)
    c = x.shape[-1]
    # The filter is symmetric, so the flip of a transposed conv changes nothing.
    kernel = jnp.broadcast_to(jnp.asarray(bilinear_kernel(k), x.dtype)[:, :, None, None], (k, k, 1, c))
    lo, hi = conv_transpose_padding(k, p)
    return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding=((lo, hi), (lo, hi)),
                                        lhs_dilation=(factor, factor), feature_group_count=c,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
