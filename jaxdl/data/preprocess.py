"""From stored uint8 images to a model's float input, on device.

``to_model_input`` converts ``<u8>[N, H, W, C]`` to ``<f32>[N, H', W', C']`` in [0, 1] and fits
the spatial size the model expects: MNIST's 28x28 goes to LeNet-5's 32x32 by zero padding, as
LeCun et al. (1998, sec. II-A) centred the digits in a 32x32 field; larger gaps are resized.
``channel_stats`` gives the per-channel mean/std for ``augment.normalize``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.dataset import Dataset
from jaxdl.errors import ConfigError

__all__ = ["to_model_input", "channel_stats", "MAX_AUTO_PAD"]

# "auto" pads when the target is larger by at most this many pixels per side (28 -> 32 is 2 per side).
MAX_AUTO_PAD = 4
_MODES = ("auto", "pad", "resize", "none")
# ITU-R BT.601 luma weights (what pillow's RGB -> L uses) for RGB -> gray.
_LUMA = (0.299, 0.587, 0.114)


def _pad_amounts(src: int, dst: int) -> tuple[int, int]:
    extra = dst - src
    return extra // 2, extra - extra // 2  # an odd extra pixel goes to the bottom / right


def to_model_input(images: jax.Array | np.ndarray, target_hw: Sequence[int] | None, mode: str = "auto", *,
                   channels: int | None = None) -> jax.Array:
    """``<u8>[N, H, W, C] -> <f32>[N, th, tw, C']`` with values in [0, 1]; jit-able (arguments after
    ``images`` are static).

    Args:
      images: uint8 pixels 0..255 (float input is taken to be in [0, 1] already).
      target_hw: ``(th, tw)`` the model takes; None keeps the size (``mode`` must be "auto"/"none").
      mode: ``"auto"``: same size -> unchanged; target larger by at most ``MAX_AUTO_PAD`` pixels per
        side -> symmetric zero padding; otherwise bilinear resize (``jax.image.resize``, which
        antialiases when shrinking). ``"pad"``, ``"resize"``, ``"none"`` force one behaviour.
      channels: 1 or 3 to convert (gray -> RGB repeats the channel; RGB -> gray uses BT.601 luma);
        None keeps C.
    """
    if mode not in _MODES:
        raise ConfigError(f"unknown input mode {mode!r}; valid: {', '.join(_MODES)}")
    x = jnp.asarray(images)
    if x.ndim != 4:
        raise ConfigError(f"images must be [N, H, W, C], got shape {x.shape}")
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    n, h, w, c = x.shape
    if target_hw is None:
        if mode in ("pad", "resize"):
            raise ConfigError(f"mode {mode!r} needs target_hw=(H, W)")
        th, tw = h, w
    else:
        th, tw = (int(v) for v in target_hw)
    if mode == "auto":
        dh, dw = th - h, tw - w
        if dh == 0 and dw == 0:
            mode = "none"
        elif 0 <= dh <= 2 * MAX_AUTO_PAD and 0 <= dw <= 2 * MAX_AUTO_PAD:
            mode = "pad"
        else:
            mode = "resize"
    if mode == "pad":
        if th < h or tw < w:
            raise ConfigError(f"cannot pad {h}x{w} images to the smaller {th}x{tw}; use mode='resize'")
        x = jnp.pad(x, ((0, 0), _pad_amounts(h, th), _pad_amounts(w, tw), (0, 0)))
    elif mode == "resize" and (th, tw) != (h, w):
        x = jax.image.resize(x, (n, th, tw, c), method="bilinear")
    elif mode == "none" and target_hw is not None and (th, tw) != (h, w):
        raise ConfigError(f"mode 'none' keeps {h}x{w} images but the model takes {th}x{tw}; use 'auto', 'pad' "
                          f"or 'resize'")
    if channels is not None and channels != c:
        if (c, channels) == (1, 3):
            x = jnp.repeat(x, 3, axis=-1)
        elif (c, channels) == (3, 1):
            x = jnp.tensordot(x, jnp.asarray(_LUMA, x.dtype), axes=([-1], [0]))[..., None]
        else:
            raise ConfigError(f"cannot convert {c}-channel images to {channels} channels; use 1 or 3")
    return x


def channel_stats(dataset: Dataset, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)``, each ``<f32>[C]``, of the images in [0, 1] units (host, numpy).

    Summed in float64 over chunks of ``chunk`` images, so CIFAR-10's 153M values never make a
    float copy of the whole set.
    """
    if len(dataset) == 0:
        raise ConfigError("cannot compute channel statistics of an empty data set")
    c = dataset.image_shape[-1]
    total = np.zeros(c, np.float64)
    total_sq = np.zeros(c, np.float64)
    for i in range(0, len(dataset), chunk):
        x = dataset.images[i:i + chunk].reshape(-1, c).astype(np.float64)
        total += x.sum(axis=0)
        total_sq += np.square(x).sum(axis=0)
    count = len(dataset) * dataset.image_shape[0] * dataset.image_shape[1]
    mean = total / count
    var = np.maximum(total_sq / count - mean ** 2, 0.0)
    return (mean / 255.0).astype(np.float32), (np.sqrt(var) / 255.0).astype(np.float32)
