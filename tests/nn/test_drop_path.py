"""DropPath / stochastic depth (Huang et al. 2016): per-example drops, inverted scaling, linear decay."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxdl.errors import ConfigError
from jaxdl.nn import DropPath, drop_path, linear_drop_path_rates


def _apply(rate, x, train, seed=0):
    layer = DropPath(rate)
    return layer.apply({}, x, deterministic=not train, rngs={"dropout": jax.random.key(seed)})


def test_eval_is_identity():
    x = jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
    np.testing.assert_array_equal(_apply(0.7, x, train=False), x)


def test_rate_zero_is_identity_in_training():
    x = jax.random.normal(jax.random.key(1), (8, 4, 4, 3))
    np.testing.assert_array_equal(_apply(0.0, x, train=True), x)


def test_training_drops_whole_examples_and_rescales_kept_ones():
    rate = 0.25
    x = jax.random.normal(jax.random.key(1), (512, 3, 2, 5)) + 3.0  # no exact zeros in x
    y = np.asarray(_apply(rate, x, train=True))
    x = np.asarray(x)
    zero = np.all(y == 0, axis=(1, 2, 3))
    kept = np.all(np.isclose(y, x / (1 - rate), rtol=1e-6), axis=(1, 2, 3))
    # Every example is either dropped entirely or kept entirely (scaled by 1 / (1 - rate)).
    assert np.all(zero ^ kept)
    # Both outcomes occur, in about the right proportion (512 draws: std of the fraction ~0.019).
    assert abs(zero.mean() - rate) < 0.08


def test_mean_is_preserved():
    # Inverted scaling: E[drop_path(x)] = x. 20,000 draws, std of the mean ~ 0.0058 at rate 0.4.
    x = jnp.ones((20_000, 1))
    y = _apply(0.4, x, train=True, seed=3)
    assert abs(float(y.mean()) - 1.0) < 0.03
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.6], rtol=1e-6)


def test_mask_depends_on_rng_and_is_reproducible():
    x = jnp.ones((64, 2))
    a, b, c = _apply(0.5, x, True, seed=0), _apply(0.5, x, True, seed=0), _apply(0.5, x, True, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rate_one_drops_everything_and_bad_rates_raise():
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(_apply(1.0, x, train=True), jnp.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="rate"):
            _apply(bad, x, train=True)
        with pytest.raises(ConfigError):
            linear_drop_path_rates(bad, 3)


def test_functional_form_keeps_dtype():
    x = jnp.ones((16, 2), jnp.bfloat16)
    y = drop_path(jax.random.key(0), x, 0.5)
    assert y.dtype == jnp.bfloat16
    assert set(np.unique(np.asarray(y, np.float32))) <= {0.0, 2.0}


def test_needs_the_dropout_stream():
    with pytest.raises(Exception, match="dropout"):
        DropPath(0.5).apply({}, jnp.ones((2, 2)), deterministic=False)


@settings(deadline=None, max_examples=25)
@given(rate=st.floats(0.0, 1.0), num_blocks=st.integers(1, 60))
def test_linear_decay_rule(rate, num_blocks):
    rates = linear_drop_path_rates(rate, num_blocks)
    assert len(rates) == num_blocks
    # Huang et al. 2016 Eq. 4: p_l = 1 - (l / L)(1 - p_L), i.e. drop probability (l / L) * rate.
    np.testing.assert_allclose(rates, [rate * l / num_blocks for l in range(1, num_blocks + 1)])
    assert rates[-1] == pytest.approx(rate)
    assert all(a <= b for a, b in zip(rates, rates[1:]))
