"""LeNet-5 against the paper (LeCun et al. 1998): Table I, layer sizes, parameter counts, and a
numpy reference forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models import count_params, feature_info
from jaxdl.models.introspect import abstract_variables
from jaxdl.models.lenet import C3_TABLE, ConnectionTableConv, Subsampling, connection_mask

# Table I of the paper as printed: row = S2 map, column = C3 map, X = connected.
TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)


@pytest.fixture(scope="module")
def lenet():
    model = models.create("lenet5")
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 1), jnp.float32)
    variables = model.init(jax.random.key(1), x)
    # Random subsampling coefficients/biases so that the reference checks use them.
    key = jax.random.key(2)
    params = dict(variables["params"])
    for name in ("s2", "s4"):
        k1, k2, key = jax.random.split(key, 3)
        n = params[name]["bias"].shape[0]
        params[name] = {"coefficient": jax.random.normal(k1, (n,)), "bias": 0.1 * jax.random.normal(k2, (n,))}
    return model, {"params": params}, x


def test_c3_table_is_table_i():
    expected = np.array([[c == "X" for c in row] for row in TABLE_I])
    np.testing.assert_array_equal(connection_mask(C3_TABLE, 6), expected)
    assert expected.sum() == 60


def test_parameter_counts_per_layer():
    params = abstract_variables("lenet5")["params"]
    per_layer = {name: count_params(tree) for name, tree in params.items()}
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "head": 850}
    assert count_params("lenet5") == 60850 == models.info("lenet5").num_params
    assert params["c3"]["kernel"].shape == (5, 5, 60)  # only connected filters are parameters
    full = abstract_variables("lenet5", connections="full")["params"]
    assert count_params(full["c3"]) == 2416 and count_params(full) == 61750


def test_feature_map_sizes():
    taps = {t.name: t.shape for t in feature_info("lenet5")}
    assert taps == {"c1": (28, 28, 6), "s2": (14, 14, 6), "c3": (10, 10, 16), "s4": (5, 5, 16),
                    "c5": (1, 1, 120), "f6": (84,), "pre_logits": (84,), "logits": (10,)}
    bigger = {t.name: t.shape for t in feature_info("lenet5", input_shape=(40, 36, 3))}
    assert bigger["c5"] == (3, 2, 120) and bigger["logits"] == (10,)


def _valid_conv(x, kernel):
    """x [N, H, W, Ci], kernel [kh, kw, Ci, Co] -> [N, H-kh+1, W-kw+1, Co] (cross-correlation)."""
    kh, kw = kernel.shape[:2]
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))  # [N, H', W', Ci, kh, kw]
    return np.einsum("nhwcij,ijco->nhwo", win, kernel)


def _subsample(x, p):
    n, h, w, c = x.shape
    s = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).sum((2, 4))
    return s * p["coefficient"] + p["bias"]


def _c3_reference(x, weights, bias):
    """Each C3 map j sums the correlations of its Table I inputs, one 5x5 filter per connection."""
    out, k = [], 0
    for inputs in C3_TABLE:
        acc = 0.0
        for i in inputs:
            acc = acc + _valid_conv(x[..., i:i + 1], weights[:, :, k][:, :, None, None])[..., 0]
            k += 1
        out.append(acc)
    return np.stack(out, -1) + bias


def test_forward_matches_numpy_reference(lenet):
    model, variables, x = lenet
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    f = lambda a: 1.7159 * np.tanh(2.0 * a / 3.0)  # Appendix A
    h = f(_valid_conv(np.asarray(x, np.float64), p["c1"]["kernel"]) + p["c1"]["bias"])
    h = f(_subsample(h, p["s2"]))
    h = f(_c3_reference(h, p["c3"]["kernel"], p["c3"]["bias"]))
    h = f(_subsample(h, p["s4"]))
    h = f(_valid_conv(h, p["c5"]["kernel"]) + p["c5"]["bias"]).reshape(2, -1)
    h = f(h @ p["f6"]["kernel"] + p["f6"]["bias"])
    expected = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-4, atol=1e-4)
    feats = model.apply(variables, x, features=("f6", "pre_logits"))
    np.testing.assert_allclose(feats["f6"], h, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(feats["f6"], feats["pre_logits"])


def test_c3_map_ignores_unconnected_inputs():
    layer = ConnectionTableConv(C3_TABLE)
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 6))
    variables = layer.init(jax.random.key(1), x)
    y = layer.apply(variables, x)
    y3 = layer.apply(variables, x.at[..., 3].add(1.0))  # perturb S2 map 3 only
    changed = np.abs(np.asarray(y3 - y)).max((0, 1, 2)) > 1e-6
    np.testing.assert_array_equal(changed, connection_mask(C3_TABLE, 6)[3])


def test_subsampling_layer():
    x = jax.random.normal(jax.random.key(0), (2, 6, 7, 3))
    layer = Subsampling()
    variables = layer.init(jax.random.key(0), x)
    np.testing.assert_allclose(variables["params"]["coefficient"], 0.25)  # starts as average pooling
    p = {"coefficient": np.array([1.0, -2.0, 0.5]), "bias": np.array([0.0, 1.0, -1.0])}
    y = layer.apply({"params": p}, x)
    assert y.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(y, _subsample(np.asarray(x), p), rtol=1e-5, atol=1e-6)


def test_activation_option(lenet):
    _, variables, x = lenet
    tanh_model = models.create("lenet5", activation="tanh")
    c1 = tanh_model.apply(variables, x, features="c1")["c1"]
    p = variables["params"]["c1"]
    ref = np.tanh(_valid_conv(np.asarray(x), np.asarray(p["kernel"])) + np.asarray(p["bias"]))
    np.testing.assert_allclose(c1, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="scaled_tanh"):
        models.create("lenet5", activation="softsign").init(jax.random.key(0), x)


def test_bad_inputs_and_options():
    small = jnp.zeros((1, 28, 28, 1))
    with pytest.raises(ConfigError, match="at least 32x32"):
        models.create("lenet5").init(jax.random.key(0), small)
    with pytest.raises(ConfigError, match="'paper'"):
        models.create("lenet5", connections="sparse").init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))


def test_batch_norm_and_dropout_options():
    model = models.create("lenet5", batch_norm=True, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 1))
    variables = model.init(jax.random.key(0), x)
    assert {"c1_bn", "c3_bn", "c5_bn", "f6_bn"} <= set(variables["batch_stats"])
    assert "bias" not in variables["params"]["c1"] and "bias" not in variables["params"]["c3"]
    out, updates = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                               mutable=["batch_stats"])
    assert not np.allclose(updates["batch_stats"]["c1_bn"]["mean"], variables["batch_stats"]["c1_bn"]["mean"])
    eval_out = model.apply(variables, x, train=False)
    assert np.isfinite(out).all() and not np.allclose(out, eval_out)
