"""VGG against Simonyan & Zisserman 2015, Table 1 (configurations A-E), Table 2 and torchvision's
counts; feature taps; LRN placement in A-LRN; BatchNorm and dropout behaviour."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models import count_params, feature_info
from jaxdl.nn.pooling import max_pool
from jaxdl.models.introspect import abstract_variables
from jaxdl.models.vgg import CONFIGS, count_weight_layers, parse_layer
from jaxdl.nn import local_response_norm


def host_variables(model, x, seed=0, **init_kw):
    """Variables with ``model.init``'s tree, filled with numpy (He-normal kernels, biases N(0, 0.1^2),
    unit BN scale and variance, zero means): the same model at a fraction of the cost of compiling its
    random initializers, which dominates these small tests on CPU."""
    shapes = jax.eval_shape(functools.partial(model.init, **init_kw), jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name == "mean":
            return jnp.zeros(leaf.shape, leaf.dtype)
        if name == "bias":
            return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)

# Table 1 header: "11 weight layers" (A, A-LRN), 13 (B), 16 (C, D), 19 (E).
WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
VARIANT_CONFIG = {"vgg11": "A", "vgg11_lrn": "A-LRN", "vgg13": "B", "vgg16_c": "C", "vgg16": "D", "vgg19": "E",
                  "vgg11_bn": "A", "vgg13_bn": "B", "vgg16_bn": "D", "vgg19_bn": "E"}
TORCHVISION = {"vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
               "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248}
TABLE_2 = {"vgg11_lrn": 133e6, "vgg16_c": 134e6}  # "Number of parameters (in millions)"


def _closed_form_count(config, batch_norm, classes=1000):
    total, c_in = 0, 3
    for block in CONFIGS[config]:
        for layer in block:
            kind, k, c_out = parse_layer(layer)
            if kind == "conv":
                total += k * k * c_in * c_out + c_out + (2 * c_out if batch_norm else 0)
                c_in = c_out
    return total + (7 * 7 * c_in + 1) * 4096 + 4097 * 4096 + 4097 * classes


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_table1_weight_layers(config):
    assert count_weight_layers(CONFIGS[config]) == WEIGHT_LAYERS[config]
    assert len(CONFIGS[config]) == 5  # five max-pooled blocks in every column


@pytest.mark.parametrize("name", sorted(VARIANT_CONFIG))
def test_built_layers_and_counts(name):
    config = VARIANT_CONFIG[name]
    bn = name.endswith("_bn")
    params = abstract_variables(name)["params"]
    kernels = [k for k in params if "conv" in k or k in ("fc6", "fc7", "head")]
    assert len(kernels) == WEIGHT_LAYERS[config]
    assert sum("bn" in k for k in params) == (WEIGHT_LAYERS[config] - 3 if bn else 0)
    got = count_params(name)
    assert got == _closed_form_count(config, bn)
    if name in TORCHVISION:
        assert got == TORCHVISION[name] == models.info(name).num_params
    else:
        assert abs(got / TABLE_2[name] - 1) < 0.01


def test_config_c_has_1x1_convs_last_in_blocks_3_to_5():
    params = abstract_variables("vgg16_c")["params"]
    assert params["block3_conv3"]["kernel"].shape == (1, 1, 256, 256)
    assert params["block4_conv3"]["kernel"].shape == (1, 1, 512, 512)
    assert params["block5_conv3"]["kernel"].shape == (1, 1, 512, 512)
    assert params["block5_conv2"]["kernel"].shape == (3, 3, 512, 512)
    # The 1x1 conv keeps the map size (padding 0), so C's taps have D's shapes.
    assert [t.shape for t in feature_info("vgg16_c")] == [t.shape for t in feature_info("vgg16")]


@pytest.mark.parametrize("name", ["vgg16", "vgg19_bn"])
def test_feature_taps(name):
    taps = {t.name: t for t in feature_info(name)}
    assert (taps["stem"].shape, taps["stem"].stride) == ((224, 224, 64), 1)
    for i, channels in enumerate((64, 128, 256, 512, 512), start=1):
        assert taps[f"stage{i}"].channels == channels and taps[f"stage{i}"].stride == 2 ** i
    assert taps["stage5"].shape == (7, 7, 512)
    assert taps["fc6"].shape == taps["fc7"].shape == taps["pre_logits"].shape == (4096,)


def test_classifier_is_independent_of_input_size():
    """Adaptive pooling to 7x7 keeps fc6 at 25088 inputs for a 32x32 image too."""
    small = abstract_variables("vgg11", input_shape=(32, 32, 3))["params"]["fc6"]["kernel"].shape
    assert small == (7 * 7 * 512, 4096)
    with pytest.raises(ConfigError, match="too small"):
        abstract_variables("vgg11", input_shape=(16, 16, 3))


def test_a_lrn_normalizes_after_the_first_conv():
    x = 40 * jax.random.normal(jax.random.key(0), (1, 8, 8, 3))
    model = models.create("vgg11_lrn")
    variables = host_variables(model, x, features=("stage1",))
    assert set(variables["params"]) == {"block1_conv1"}
    out = model.apply(variables, x, features=("stem", "stage1"))
    p = variables["params"]["block1_conv1"]
    conv = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
    expected = local_response_norm(jax.nn.relu(conv), 5, 1e-4, 0.75, 2.0)
    np.testing.assert_allclose(out["stem"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["stage1"], max_pool(expected, 2, 2), rtol=1e-5, atol=1e-5)
    plain = models.create("vgg11").apply(variables, x, features=("stem",))["stem"]
    assert not np.allclose(plain, out["stem"], rtol=1e-3)


@pytest.fixture(scope="module")
def small_vgg11_bn():
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    model = models.create("vgg11_bn", num_classes=3, classifier_width=16)
    variables = host_variables(model, x, seed=3)
    return x, model, variables


def test_dropout_and_batch_norm_modes(small_vgg11_bn):
    x, model, variables = small_vgg11_bn
    rngs = {"dropout": jax.random.key(4)}

    @functools.partial(jax.jit, static_argnums=(1, 2, 3))
    def run(variables, frozen_bn, dropout_rate, train):
        m = model.clone(frozen_bn=frozen_bn, dropout_rate=dropout_rate)
        return m.apply(variables, x, train=train, rngs=rngs, mutable=["batch_stats"])

    eval_logits, _ = run(variables, False, 0.5, False)
    # Training: dropout changes the output and the running statistics move.
    train_logits, updates = run(variables, False, 0.5, True)
    assert not np.allclose(train_logits, eval_logits)
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                                   variables["batch_stats"])
    assert all(jax.tree_util.tree_leaves(moved))
    # frozen_bn + no dropout: training mode computes exactly the evaluation function.
    frozen_logits, frozen_updates = run(variables, True, 0.0, True)
    np.testing.assert_allclose(frozen_logits, eval_logits, rtol=1e-5, atol=1e-6)
    jax.tree_util.tree_map(np.testing.assert_array_equal, frozen_updates["batch_stats"], variables["batch_stats"])


def test_bad_layer_name():
    with pytest.raises(ConfigError, match="conv3-64"):
        parse_layer("conv3x3-64")
