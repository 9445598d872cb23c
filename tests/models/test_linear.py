"""Perceptron and MLP: parameter counts, numerics against numpy, options and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models import count_params

NUMPY_ACTIVATIONS = {
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "tanh": np.tanh,
    "scaled_tanh": lambda a: 1.7159 * np.tanh(2.0 * a / 3.0),
    "relu": lambda a: np.maximum(a, 0.0),
    "leaky_relu": lambda a: np.where(a >= 0, a, 0.01 * a),
    "elu": lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0.0))),
}


def _x(shape=(3, 28, 28, 1), seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def test_registered_facts():
    for name in ("perceptron", "mlp"):
        entry = models.info(name)
        assert entry.input_shape == (28, 28, 1) and entry.num_classes == 10
        assert entry.fixed_input is False
    assert models.info("perceptron").family == "perceptron"
    assert models.info("mlp").family == "mlp"


def test_perceptron_is_flatten_plus_dense_head():
    model = models.create("perceptron")
    x = _x()
    variables = model.init(jax.random.key(1), x)
    params = variables["params"]
    assert set(params) == {"head"}
    assert params["head"]["kernel"].shape == (784, 10)
    assert count_params("perceptron") == 784 * 10 + 10
    expected = np.asarray(x).reshape(3, -1) @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_perceptron_single_threshold_unit_and_any_input_size():
    model = models.create("perceptron", num_classes=1)
    x = _x((4, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    assert variables["params"]["head"]["kernel"].shape == (32 * 32 * 3, 1)
    assert model.apply(variables, x).shape == (4, 1)


def test_perceptron_without_head_returns_flat_input():
    model = models.create("perceptron", num_classes=0)
    x = _x((2, 5, 5, 2))
    variables = model.init(jax.random.key(0), x)
    assert "params" not in variables or not variables["params"]
    np.testing.assert_array_equal(model.apply(variables, x), np.asarray(x).reshape(2, 50))


def _mlp_count(inputs, hidden, classes):
    sizes = (inputs, *hidden, classes)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def test_mlp_default_count_and_layers():
    assert count_params("mlp") == _mlp_count(784, (256, 128, 64), 10) == 242_762
    assert count_params("mlp", hidden_sizes=(32,), num_classes=3) == _mlp_count(784, (32,), 3)
    assert count_params("mlp", hidden_sizes=()) == count_params("perceptron")
    params = models.introspect.abstract_variables("mlp")["params"]
    assert set(params) == {"hidden1", "hidden2", "hidden3", "head"}


@pytest.mark.parametrize("activation", sorted(NUMPY_ACTIVATIONS))
def test_mlp_matches_numpy(activation):
    model = models.create("mlp", hidden_sizes=(7, 5), activation=activation, num_classes=4)
    x = _x((3, 4, 4, 2)) * 2.0
    variables = model.init(jax.random.key(2), x)
    p = jax.tree.map(np.asarray, variables["params"])
    act = NUMPY_ACTIVATIONS[activation]
    h = np.asarray(x).reshape(3, -1)
    for name in ("hidden1", "hidden2"):
        h = act(h @ p[name]["kernel"] + p[name]["bias"])
    expected = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-4, atol=1e-5)


def test_mlp_unknown_activation_lists_choices():
    model = models.create("mlp", activation="swishy")
    with pytest.raises(ConfigError, match="leaky_relu") as err:
        model.init(jax.random.key(0), _x((1, 4, 4, 1)))
    for name in ("sigmoid", "tanh", "relu", "elu"):
        assert name in str(err.value)


def test_mlp_taps_stop_early():
    model = models.create("mlp", hidden_sizes=(8, 6, 4))
    x = _x((2, 4, 4, 1))
    out = model.init_with_output(jax.random.key(0), x, features=("hidden1",))
    feats, variables = out
    assert set(feats) == {"hidden1"} and feats["hidden1"].shape == (2, 8)
    assert set(variables["params"]) == {"hidden1"}  # no layer past the tap ran
    full = model.init(jax.random.key(0), x)
    feats = model.apply(full, x, features="all")
    assert set(feats) == {"hidden1", "hidden2", "hidden3", "pre_logits", "logits"}
    np.testing.assert_array_equal(feats["pre_logits"], feats["hidden3"])
    np.testing.assert_allclose(feats["logits"], model.apply(full, x), rtol=1e-6)
    with pytest.raises(ValueError, match="hidden3"):
        model.apply(full, x, features=("hidden9",))


def test_mlp_dropout_only_in_training():
    model = models.create("mlp", hidden_sizes=(64,), dropout_rate=0.5)
    x = _x((4, 4, 4, 1))
    variables = model.init(jax.random.key(0), x)
    eval_out = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(eval_out, model.apply(variables, x, train=False))
    a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a, eval_out) and not np.allclose(a, b)


def test_mlp_batch_norm_updates_and_freezes():
    model = models.create("mlp", hidden_sizes=(6, 5), batch_norm=True)
    x = _x((8, 3, 3, 1)) * 3.0 + 1.0
    variables = model.init(jax.random.key(0), x)
    params = variables["params"]
    assert "bias" not in params["hidden1"]  # BatchNorm's offset replaces the Dense bias
    assert params["hidden1_bn"]["scale"].shape == (6,)
    assert count_params(variables) == (9 * 6 + 2 * 6) + (6 * 5 + 2 * 5) + (5 * 10 + 10)

    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    old = variables["batch_stats"]["hidden1_bn"]["mean"]
    new = updates["batch_stats"]["hidden1_bn"]["mean"]
    assert not np.allclose(old, new)
    # Training normalises with batch statistics: unit variance before the activation.
    pre = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                      capture_intermediates=lambda mdl, _: mdl.name == "hidden1_bn")[1]
    normed = pre["intermediates"]["hidden1_bn"]["__call__"][0]
    np.testing.assert_allclose(np.asarray(normed).std(0), 1.0, atol=1e-2)

    frozen = models.create("mlp", hidden_sizes=(6, 5), batch_norm=True, frozen_bn=True)
    out, updates = frozen.apply(variables, x, train=True, mutable=["batch_stats"])
    unchanged = jax.tree.map(np.array_equal, updates["batch_stats"], variables["batch_stats"])
    assert all(jax.tree_util.tree_leaves(unchanged))
    np.testing.assert_allclose(out, model.apply(variables, x, train=False), rtol=1e-6)


def test_mlp_bad_options():
    with pytest.raises(ConfigError, match="hidden_sizes"):
        models.create("mlp", hidden_sizes=(4, 0)).init(jax.random.key(0), _x((1, 2, 2, 1)))
    with pytest.raises(ConfigError, match="dropout_rate"):
        models.create("mlp", dropout_rate=1.0).init(jax.random.key(0), _x((1, 2, 2, 1)))


def test_bfloat16_compute_float32_params():
    model = models.create("mlp", hidden_sizes=(8,), dtype=jnp.bfloat16)
    out, variables = model.init_with_output(jax.random.key(0), _x((2, 4, 4, 1)))
    assert out.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
