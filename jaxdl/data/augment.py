"""Data augmentation as pure, jit-able functions of ``(key, images)`` that run on device.

Every function takes ``images: [N, H, W, C]`` (any dtype; float32 in [0, 1] in the train step)
and returns the same shape and dtype. Randomness is per example and comes only from the
``jax.random`` key, so a step's augmentation is reproducible from
``jax.random.fold_in(state.rng, state.step)``.

- ``random_crop``: zero-pad ``padding`` pixels per side and crop back at a random offset
  (the CIFAR recipe of He et al. 2016, sec. 4.2: pad 4, crop 32x32).
- ``random_flip``: horizontal flip with probability 0.5 (same source).
- ``random_erasing``: Zhong et al. 2017, "Random Erasing Data Augmentation", Alg. 1.
- ``normalize``: per-channel standardisation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

__all__ = ["random_crop", "random_flip", "normalize", "random_erasing", "make_augment", "AUGMENTATIONS"]

AUGMENTATIONS = ("crop", "flip", "erase")
# Attempts at drawing a rectangle that fits (torchvision also uses 10); images where all fail are kept.
_ERASE_ATTEMPTS = 10


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Pad each side with ``padding`` zeros, then crop ``[H, W]`` at a per-example offset in
    ``[0, 2 * padding]`` (uniform): content shifts by up to ``padding`` pixels, borders fill with 0.

    ``images: [N, H, W, C] -> [N, H, W, C]``; ``padding`` must be static under jit.
    """
    padding = int(padding)
    if padding < 0:
        raise ConfigError(f"crop padding must be >= 0, got {padding}")
    if padding == 0:
        return images
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 0.5. ``[N, H, W, C] -> [N, H, W, C]``."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def normalize(images: jax.Array, mean: Sequence[float] | jax.Array, std: Sequence[float] | jax.Array) -> jax.Array:
    """``(images - mean) / std`` per channel; ``mean``, ``std``: ``[C]`` (e.g. from ``channel_stats``)."""
    dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
    mean = jnp.asarray(mean, dtype)
    std = jnp.asarray(std, dtype)
    return (images.astype(dtype) - mean) / std


def _erase_rectangles(u: jax.Array, h: int, w: int, scale, ratio) -> tuple[jax.Array, ...]:
    """Per example, from uniforms ``u: [N, 2 * _ERASE_ATTEMPTS + 2]``: (top, left, height, width, found)
    of the first of ``_ERASE_ATTEMPTS`` draws that fits inside the image."""
    k = _ERASE_ATTEMPTS
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[:, :k])
    # Alg. 1 draws the aspect ratio r_e uniformly in [r_1, r_2].
    aspect = ratio[0] + (ratio[1] - ratio[0]) * u[:, k:2 * k]
    eh = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    ew = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (eh >= 1) & (ew >= 1) & (eh <= h) & (ew <= w)
    first = jnp.argmax(fits, axis=1)
    pick = lambda a: jnp.take_along_axis(a, first[:, None], axis=1)[:, 0]
    eh, ew = pick(eh), pick(ew)
    found = jnp.any(fits, axis=1)
    # Position uniform over the places where the rectangle fits inside the image.
    top = jnp.floor(u[:, 2 * k] * (h - eh + 1)).astype(jnp.int32)
    left = jnp.floor(u[:, 2 * k + 1] * (w - ew + 1)).astype(jnp.int32)
    return top, left, eh, ew, found


def random_erasing(key: jax.Array, images: jax.Array, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3), value: float | Sequence[float] | str = 0.0) -> jax.Array:
    """Random Erasing (Zhong et al. 2017, Alg. 1): with probability ``p`` per image, fill one
    rectangle of area ``S_e ~ U(scale) * H * W`` and aspect ``r_e ~ U(ratio)`` at a uniform position.

    The paper's defaults are p=0.5, scale=(0.02, 0.4), r_1=0.3 (ratio (0.3, 1/0.3)); the
    default scale here, (0.02, 0.33), is torchvision's.

    Args:
      p: probability of erasing each image (a float, or a traced scalar).
      scale, ratio: ``(min, max)`` ranges, static.
      value: fill: a scalar or per-channel ``[C]`` values (may be traced), or the static string
        ``"random"`` for uniform noise in [0, 1) per pixel (the paper's choice).
    """
    if isinstance(p, (int, float)) and not 0.0 <= p <= 1.0:  # p may also be a traced scalar
        raise ConfigError(f"erasing probability p must be in [0, 1], got {p}")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ConfigError(f"erasing scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"erasing ratio must satisfy 0 < min <= max, got {ratio}")
    if isinstance(value, str) and value != "random":
        raise ConfigError(f"erasing value must be a number, per-channel numbers or 'random', got {value!r}")
    n, h, w, c = images.shape
    # One draw for everything, noise fill included: each separate threefry call in a program
    # adds seconds of XLA compile time on CPU.
    noise = h * w * c if isinstance(value, str) else 0
    u = jax.random.uniform(key, (n, 2 * _ERASE_ATTEMPTS + 3 + noise))
    draws = 2 * _ERASE_ATTEMPTS + 2
    top, left, eh, ew, found = _erase_rectangles(u[:, :draws], h, w, scale, ratio)
    apply = (u[:, draws] < p) & found
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
    mask = (inside & apply[:, None, None])[..., None]
    if noise:
        fill = u[:, draws + 1:].reshape(images.shape).astype(images.dtype)
    else:
        fill = jnp.broadcast_to(jnp.asarray(value, images.dtype), (c,))
    return jnp.where(mask, fill, images)


def make_augment(names: Sequence[str], *, padding: int = 4, erase_p: float = 0.5,
                 erase_scale: tuple[float, float] = (0.02, 0.33), erase_ratio: tuple[float, float] = (0.3, 3.3),
                 erase_value: float | Sequence[float] | str = 0.0) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Compose augmentations by name, applied in the order given.

    ``make_augment(["crop", "flip", "erase"])`` returns ``fn(key, images) -> images``, pure and
    jit-able; each step gets its own ``fold_in(key, position)``. An empty list gives the identity.

    Raises:
      ConfigError: an unknown name (the message lists the valid ones).
    """
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    names = [n.strip() for n in names]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"unknown augmentation(s) {', '.join(map(repr, unknown))}; valid: {', '.join(AUGMENTATIONS)}")
    ops = {
        "crop": lambda k, x: random_crop(k, x, padding),
        "flip": random_flip,
        "erase": lambda k, x: random_erasing(k, x, erase_p, erase_scale, erase_ratio, erase_value),
    }
    steps = tuple(ops[n] for n in names)

    def augment(key: jax.Array, images: jax.Array) -> jax.Array:
        for i, op in enumerate(steps):
            images = op(jax.random.fold_in(key, i), images)
        return images

    return augment
