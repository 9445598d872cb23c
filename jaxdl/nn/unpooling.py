"""Max pooling that remembers where each maximum came from, and max unpooling.

The decoders of DeconvNet (Noh et al. 2015, sec. 3.2 "Unpooling": the pooling layer's
"switch variables" record the location of each maximum) and SegNet (Badrinarayanan et al. 2017,
sec. 3: "the max-pooling indices ... of the corresponding encoder are used to upsample") put
every value back at the position its encoder's maximum had, zeros elsewhere.

Indices use PyTorch's convention (``torch.nn.functional.max_pool2d(..., return_indices=True)``),
in NHWC layout: ``indices[n, i, j, c] = h * W + w``, the flat position of the maximum within the
``H x W`` plane of channel ``c`` of image ``n`` (so torch's ``[N, C, H', W']`` indices transposed to
NHWC are equal). Ties pick the first maximum in row-major window order, as torch's CPU kernel.

* :func:`max_pool_with_indices` - ``x: <f>[N, H, W, C] -> (<f>[N, H', W', C], <i32>[N, H', W', C])``.
* :func:`max_unpool` - ``torch.nn.functional.max_unpool2d``: scatter back to ``[N, H, W, C]``.

Both are differentiable (the gradient of the pooled value flows to the element that won, the
gradient of an unpooled position flows back to the value put there) and jit-able; window,
stride and padding are static. Non-overlapping windows (stride == window, no padding, the
SegNet/DeconvNet 2x2/2 case) take an elementwise path with no gather or scatter, which is what
keeps CPU training fast; other windows use a scatter.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.nn.shapes import conv_output_size

__all__ = ["max_pool_with_indices", "max_unpool", "unpool_output_size"]


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ConfigError(f"{name} must be an int or a pair (h, w), got {v}")
    return v


def _check_nhwc(x, what: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise ConfigError(f"{what} expects a batch [N, H, W, C] (NHWC), got shape {getattr(x, 'shape', None)}")


def max_pool_with_indices(x: jax.Array, window: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None,
                          padding: int | Sequence[int] = 0) -> tuple[jax.Array, jax.Array]:
    """Max pooling that also returns the flat input position of each maximum.

    Args:
      x: ``<f>[N, H, W, C]``.
      window, stride, padding: as ``torch.nn.MaxPool2d`` (stride defaults to the window; padding
        counts as -inf, never the maximum; floor mode).

    Returns:
      ``(pooled <f>[N, H', W', C], indices <i32>[N, H', W', C])`` with
      ``H' = conv_output_size(H, window, padding, stride)`` and ``indices = h * W + w``.
    """
    _check_nhwc(x, "max_pool_with_indices")
    (kh, kw), (ph, pw) = _pair(window, "window"), _pair(padding, "padding")
    sh, sw = _pair(window if stride is None else stride, "stride")
    n, h, w, c = x.shape
    if ph > kh // 2 or pw > kw // 2:
        raise ConfigError(f"max pooling padding must be at most half the window ({kh // 2}, {kw // 2}), "
                          f"got ({ph}, {pw}); reduce the padding (torch refuses it too)")
    try:
        oh, ow = conv_output_size(h, kh, ph, sh), conv_output_size(w, kw, pw, sw)
    except ValueError as err:
        raise ConfigError(f"a {kh}x{kw} max pool does not fit a {h}x{w} feature map: {err}") from None

    if (kh, kw) == (sh, sw) and (ph, pw) == (0, 0):
        # Non-overlapping windows: a reshape puts each window in its own axis.
        xs = x[:, :oh * kh, :ow * kw].reshape(n, oh, kh, ow, kw, c)
        xs = xs.transpose(0, 1, 3, 5, 2, 4).reshape(n, oh, ow, c, kh * kw)
    else:
        xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-jnp.inf)
        xs = jnp.stack([xp[:, di:di + (oh - 1) * sh + 1:sh, dj:dj + (ow - 1) * sw + 1:sw]
                        for di in range(kh) for dj in range(kw)], axis=-1)        # [N, H', W', C, kh*kw]
    arg = jnp.argmax(xs, axis=-1)                                                 # first max, row-major
    pooled = jnp.take_along_axis(xs, arg[..., None], axis=-1)[..., 0]            # differentiable
    rows = (jnp.arange(oh) * sh - ph)[None, :, None, None] + arg // kw
    cols = (jnp.arange(ow) * sw - pw)[None, None, :, None] + arg % kw
    return pooled, (rows * w + cols).astype(jnp.int32)


def unpool_output_size(size: int, window: int, stride: int, padding: int = 0) -> int:
    """torch's default ``max_unpool2d`` size for one axis: ``(size - 1) * stride - 2 * padding + window``."""
    return (size - 1) * stride - 2 * padding + window


def max_unpool(x: jax.Array, indices: jax.Array, window: int | Sequence[int] = 2,
               stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0,
               output_size: Sequence[int] | None = None) -> jax.Array:
    """Put each value back where its maximum was (``torch.nn.functional.max_unpool2d``).

    Args:
      x: ``<f>[N, H', W', C]`` values to place (a decoder's features).
      indices: ``<i32>[N, H', W', C]`` from :func:`max_pool_with_indices` (``h * W + w``).
      window, stride, padding: those of the pooling (they give the default output size).
      output_size: ``(H, W)`` of the pooled input; needed when the pooling floored an odd size
        (e.g. 25 -> 12: the default would give 24). SegNet/DeconvNet pass the encoder's size.

    Returns:
      ``<f>[N, H, W, C]``: zeros except at the indexed positions. Duplicate indices (only possible
      with overlapping windows) hold one of the values, as in torch.
    """
    _check_nhwc(x, "max_unpool")
    if indices.shape != x.shape:
        raise ConfigError(f"max_unpool: indices of shape {indices.shape} do not match the values {x.shape}; "
                          f"pass the indices returned by the pooling of this feature map")
    (kh, kw), (ph, pw) = _pair(window, "window"), _pair(padding, "padding")
    sh, sw = _pair(window if stride is None else stride, "stride")
    n, oh, ow, c = x.shape
    if output_size is None:
        h, w = unpool_output_size(oh, kh, sh, ph), unpool_output_size(ow, kw, sw, pw)
    else:
        h, w = (int(v) for v in output_size[-2:])
        dh, dw = unpool_output_size(oh, kh, sh, ph), unpool_output_size(ow, kw, sw, pw)
        # torch's rule: within (default - stride, default + stride) exclusive.
        if not (dh - sh < h < dh + sh and dw - sw < w < dw + sw):
            raise ConfigError(f"max_unpool: output_size {(h, w)} cannot come from pooling to {(oh, ow)} with "
                              f"window {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)}; expected sizes within "
                              f"({dh - sh}, {dh + sh}) x ({dw - sw}, {dw + sw}), exclusive")

    if (kh, kw) == (sh, sw) and (ph, pw) == (0, 0) and h >= oh * kh and w >= ow * kw:
        # Non-overlapping windows: repeat each value over its window and keep it only at the
        # position the index names (elementwise, no scatter).
        up = jnp.repeat(jnp.repeat(x, kh, axis=1), kw, axis=2)
        up_idx = jnp.repeat(jnp.repeat(indices, kh, axis=1), kw, axis=2)
        pos = (jnp.arange(oh * kh)[:, None] * w + jnp.arange(ow * kw)[None, :])[None, :, :, None]
        out = jnp.where(up_idx == pos, up, jnp.zeros((), x.dtype))
        return jnp.pad(out, ((0, 0), (0, h - oh * kh), (0, w - ow * kw), (0, 0)))
    flat = jnp.zeros((n, h * w, c), x.dtype)
    n_idx = jnp.arange(n)[:, None, None]
    c_idx = jnp.arange(c)[None, None, :]
    flat = flat.at[n_idx, indices.reshape(n, oh * ow, c), c_idx].set(x.reshape(n, oh * ow, c), mode="drop")
    return flat.reshape(n, h, w, c)
