"""Augmentations (pure, jit-able, per example) and the uint8 -> model input conversion."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import data
from jaxdl.data import Dataset
from jaxdl.errors import ConfigError

KEY = jax.random.key(0)


def _images(n=16, h=8, w=8, c=3, seed=0):
    # Strictly positive, all distinct values: any window of the padded image is identifiable.
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.permutation(n * h * w * c).reshape(n, h, w, c) + 1, jnp.float32)


_crop = jax.jit(data.random_crop, static_argnums=2)


def test_crop_only_shifts_content():
    x, p = _images(), 2
    out = np.asarray(_crop(KEY, x, p))
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(np.asarray(x), ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1, f"example {i} is not a {p}-pixel shift of its input"
        offsets.append(matches[0])
    assert len(set(offsets)) > 3  # offsets differ per example
    np.testing.assert_array_equal(data.random_crop(KEY, x, 0), x)
    np.testing.assert_array_equal(out, np.asarray(_crop(KEY, x, p)))  # same key, same crops
    assert not np.array_equal(out, np.asarray(_crop(jax.random.key(1), x, p)))


def test_crop_keeps_uint8():
    x = jnp.ones((16, 8, 8, 3), jnp.uint8)
    assert _crop(KEY, x, 2).dtype == jnp.uint8


def test_flip():
    x = _images(n=200, h=2, w=3, c=1)
    once = jax.jit(data.random_flip)(KEY, x)
    np.testing.assert_array_equal(jax.jit(data.random_flip)(KEY, once), x)  # same key twice = identity
    mirrored = np.asarray(x)[:, :, ::-1]
    flipped = np.array([np.array_equal(o, m) for o, m in zip(np.asarray(once), mirrored)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(np.asarray(once), np.asarray(x))])
    assert (flipped ^ kept).all()
    assert 60 <= flipped.sum() <= 140  # p = 0.5 over 200 examples (about 5.7 sigma either side)


def test_normalize():
    x = _images(n=2, c=3)
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 8.0])
    np.testing.assert_allclose(jax.jit(data.normalize)(x, mean, std), (np.asarray(x) - mean) / std, rtol=1e-6)


def _rectangle(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert mask.sum() == h * w, "erased region is not a rectangle"
    return h, w


# One compilation each, shared by the erasing tests (p and the fill value are traced arguments).
_erase = jax.jit(lambda key, x, p, value: data.random_erasing(key, x, p, value=value))
_erase_noise = jax.jit(lambda key, x: data.random_erasing(key, x, 1.0, value="random"))
_ERASE_SHAPE = (64, 32, 32, 3)


def test_erasing_bounds():
    n, size = _ERASE_SHAPE[0], _ERASE_SHAPE[1]
    x = jnp.ones(_ERASE_SHAPE, jnp.float32)
    scale, ratio = (0.02, 0.33), (0.3, 3.3)  # the defaults
    out = np.asarray(_erase(KEY, x, 1.0, jnp.zeros(3)))
    assert out.shape == x.shape and out.dtype == np.float32
    for i in range(n):
        mask = out[i, ..., 0] == 0
        assert (mask[..., None] == (out[i] == 0)).all()  # all channels erased together
        h, w = _rectangle(mask)
        # Rounding h and w to whole pixels moves the area and aspect a little past the sampled bounds.
        assert scale[0] * size * size * 0.7 <= h * w <= scale[1] * size * size * 1.3
        assert ratio[0] * 0.7 <= h / w <= ratio[1] * 1.3
    np.testing.assert_array_equal(_erase(KEY, x, 0.0, jnp.zeros(3)), x)


def test_erasing_probability_and_fill_values():
    x = jnp.full(_ERASE_SHAPE, 5.0, jnp.float32)
    changed = (np.asarray(_erase(KEY, x, 0.5, jnp.zeros(3))) != 5.0).any(axis=(1, 2, 3))
    assert 16 <= changed.sum() <= 48  # Binomial(64, 0.5): mean 32, sd 4
    noisy = np.asarray(_erase_noise(KEY, x))
    erased = noisy != 5.0
    assert erased.any(axis=(1, 2, 3)).all() and (noisy[erased] >= 0).all() and (noisy[erased] < 1).all()
    per_channel = np.asarray(_erase(KEY, x, 1.0, jnp.array([0.1, 0.2, 0.3])))
    assert set(np.unique(per_channel[..., 1])) == {np.float32(0.2), 5.0}
    with pytest.raises(ConfigError):
        data.random_erasing(KEY, x, p=2.0)
    with pytest.raises(ConfigError):
        data.random_erasing(KEY, x, value="noise")


def test_make_augment():
    x = _images(n=4, h=8, w=8)
    np.testing.assert_array_equal(data.make_augment([])(KEY, x), x)
    fn = jax.jit(data.make_augment(["crop", "flip", "erase"], padding=2))
    out = fn(KEY, x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, fn(KEY, x))
    assert not np.array_equal(out, fn(jax.random.key(1), x))
    with pytest.raises(ConfigError, match="crop, flip, erase"):
        data.make_augment(["crop", "rotate"])


def test_to_model_input_pads_28_to_32():
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    out = np.asarray(jax.jit(data.to_model_input, static_argnums=(1, 2))(x, (32, 32), "auto"))
    assert out.shape == (2, 32, 32, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 2:30, 2:30], x / 255.0, rtol=1e-6)
    assert (out[:, :2] == 0).all() and (out[:, 30:] == 0).all() and (out[:, :, :2] == 0).all()


def test_to_model_input_resize_and_modes():
    x = np.full((1, 8, 8, 1), 255, np.uint8)
    up = data.to_model_input(x, (32, 32))  # 12 px per side: resize, not pad
    assert up.shape == (1, 32, 32, 1)
    np.testing.assert_allclose(up, 1.0, rtol=1e-6)
    assert data.to_model_input(x, (16, 16), "pad").shape == (1, 16, 16, 1)
    assert data.to_model_input(x, (4, 4)).shape == (1, 4, 4, 1)
    np.testing.assert_allclose(data.to_model_input(x, None), 1.0)
    rgb = data.to_model_input(x, (8, 8), channels=3)
    assert rgb.shape == (1, 8, 8, 3)
    gray = data.to_model_input(np.full((1, 2, 2, 3), 255, np.uint8), (2, 2), channels=1)
    np.testing.assert_allclose(gray, 1.0, rtol=1e-5)
    with pytest.raises(ConfigError):
        data.to_model_input(x, (4, 4), "pad")
    with pytest.raises(ConfigError):
        data.to_model_input(x, (16, 16), "none")
    with pytest.raises(ConfigError):
        data.to_model_input(x, (16, 16), "stretch")


def test_channel_stats():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    ds = Dataset(images, np.zeros(50, int), ("a",))
    mean, std = data.channel_stats(ds, chunk=7)
    ref = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-5)
    assert mean.shape == (3,) and mean.dtype == np.float32
