"""SqueezeExcitation (Hu et al. 2018, Eq. 2-4) against a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.nn import SqueezeExcitation


def _reference(x, p):
    s = x.mean(axis=tuple(range(1, x.ndim - 1)))                       # squeeze, Eq. 2
    h = np.maximum(s @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0.0)      # excitation, Eq. 3
    g = 1.0 / (1.0 + np.exp(-(h @ p["fc2"]["kernel"] + p["fc2"]["bias"])))
    return x * g.reshape(g.shape[0], *([1] * (x.ndim - 2)), g.shape[-1])  # scale, Eq. 4


def _random_params(params, key):
    # Non-zero biases so that a missing bias term would show.
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("shape", [(2, 5, 4, 32), (3, 7, 32), (1, 2, 3, 2, 32)])
def test_matches_numpy_reference(shape):
    layer = SqueezeExcitation(reduction=8)
    x = jax.random.normal(jax.random.key(0), shape)
    params = _random_params(layer.init(jax.random.key(1), x)["params"], jax.random.key(2))
    y = layer.apply({"params": params}, x)
    np_params = jax.tree_util.tree_map(np.asarray, params)
    np.testing.assert_allclose(np.asarray(y), _reference(np.asarray(x, np.float64), np_params), rtol=1e-5, atol=1e-5)


def test_parameter_shapes_and_count():
    c, r = 64, 16
    params = SqueezeExcitation(reduction=r).init(jax.random.key(0), jnp.ones((1, 3, 3, c)))["params"]
    assert params["fc1"]["kernel"].shape == (c, c // r)
    assert params["fc2"]["kernel"].shape == (c // r, c)
    n = sum(l.size for l in jax.tree_util.tree_leaves(params))
    assert n == 2 * c * c // r + c // r + c


def test_squeeze_channels_override_and_small_inputs():
    params = SqueezeExcitation(squeeze_channels=5).init(jax.random.key(0), jnp.ones((1, 2, 2, 12)))["params"]
    assert params["fc1"]["kernel"].shape == (12, 5)
    # C < reduction still leaves one hidden unit.
    params = SqueezeExcitation(reduction=16).init(jax.random.key(0), jnp.ones((1, 2, 2, 8)))["params"]
    assert params["fc1"]["kernel"].shape == (8, 1)


def test_gate_is_bounded_and_preserves_dtype():
    layer = SqueezeExcitation(reduction=4, dtype=jnp.bfloat16)
    x = jnp.abs(jax.random.normal(jax.random.key(0), (2, 4, 4, 8))).astype(jnp.bfloat16)
    variables = layer.init(jax.random.key(1), x)
    y = layer.apply(variables, x)
    assert y.dtype == jnp.bfloat16
    assert jax.tree_util.tree_leaves(variables)[0].dtype == jnp.float32
    # A sigmoid gate scales each channel by a factor in (0, 1).
    assert bool(jnp.all(y <= x)) and bool(jnp.all(y >= 0))


def test_bad_configuration_raises():
    with pytest.raises(ConfigError, match="reduction"):
        SqueezeExcitation(reduction=0).init(jax.random.key(0), jnp.ones((1, 2, 2, 8)))
    with pytest.raises(ConfigError, match="spatial"):
        SqueezeExcitation().init(jax.random.key(0), jnp.ones((2, 8)))
