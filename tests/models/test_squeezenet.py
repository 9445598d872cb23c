"""SqueezeNet 1.0 / 1.1 (Iandola et al. 2016): torchvision counts, Fire module arithmetic,
ceil-mode pooling, the conv classifier, and dropout."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models
from jaxdl.models import count_params, feature_info
from jaxdl.models.introspect import abstract_variables
from jaxdl.models.squeezenet import CONFIGS, Fire
from jaxdl.nn import conv_output_size


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


def _closed_form_count(version, classes=1000):
    stem_channels, stem_kernel, stages = CONFIGS[version]
    total = stem_kernel ** 2 * 3 * stem_channels + stem_channels
    c_in = stem_channels
    for stage in stages:
        for s, e in stage:
            total += (c_in * s + s) + (s * e + e) + (9 * s * e + e)
            c_in = 2 * e
    return total + c_in * classes + classes


@pytest.mark.parametrize("name,version,torchvision", [("squeezenet1_0", "1_0", 1_248_424),
                                                      ("squeezenet1_1", "1_1", 1_235_496)])
def test_counts(name, version, torchvision):
    assert count_params(name) == torchvision == _closed_form_count(version)
    params = abstract_variables(name)["params"]
    assert sorted(k for k in params if k.startswith("fire")) == [f"fire{i}" for i in range(2, 10)]
    assert params["head"]["kernel"].shape == (1, 1, 512, 1000)  # a conv classifier, no Dense


@pytest.mark.parametrize("name,expected", [
    # (H, C) of stem, stage1, stage2, stage3 at 224x224; torchvision ends at 13x13x512 in both.
    ("squeezenet1_0", [(109, 96), (54, 256), (27, 512), (13, 512)]),
    ("squeezenet1_1", [(111, 64), (55, 128), (27, 256), (13, 512)]),
])
def test_feature_map_sizes(name, expected):
    taps = {t.name: t for t in feature_info(name)}
    assert [(taps[n].shape[0], taps[n].channels) for n in ("stem", "stage1", "stage2", "stage3")] == expected
    assert taps["pre_logits"].shape == (512,)


def test_pools_round_up():
    """torchvision's ceil_mode=True: a 30x30 conv1 map pools to 15, not 14."""
    stem = conv_output_size(65, 7, 0, 2)
    assert stem == 30
    taps = {t.name: t for t in feature_info("squeezenet1_0", input_shape=(65, 65, 3), taps=("stage1",))}
    assert taps["stage1"].shape[0] == conv_output_size(stem, 3, 0, 2, ceil_mode=True) == 15


def test_fire_module_is_squeeze_then_two_expands_concatenated():
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 6))
    fire = Fire(squeeze=3, expand=4)
    variables = host_variables(fire, x)
    out = fire.apply(variables, x)
    assert out.shape == (2, 5, 5, 8)
    p = variables["params"]

    def conv(y, q, pad):
        return jax.lax.conv_general_dilated(y, q["kernel"], (1, 1), ((pad, pad), (pad, pad)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["bias"]

    s = jax.nn.relu(conv(x, p["squeeze"], 0))
    np.testing.assert_allclose(out[..., :4], jax.nn.relu(conv(s, p["expand1x1"], 0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[..., 4:], jax.nn.relu(conv(s, p["expand3x3"], 1)), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def small_squeezenet():
    x = jax.random.normal(jax.random.key(2), (3, 32, 32, 3))
    model = models.create("squeezenet1_1", num_classes=6)
    variables = host_variables(model, x, seed=3)
    return x, model, variables, jax.jit(model.apply, static_argnames=("train", "features"))


def test_logits_are_averaged_relu_maps(small_squeezenet):
    """Classifier = dropout, 1x1 conv ``head``, ReLU, global average: logits are never negative."""
    x, _, variables, apply = small_squeezenet
    out = apply(variables, x, features=("pre_logits", "logits"))
    assert out["logits"].shape == (3, 6) and bool(jnp.all(out["logits"] >= 0))
    assert out["pre_logits"].shape == (3, 512)


def test_dropout_only_in_training(small_squeezenet):
    x, model, variables, apply = small_squeezenet
    eval_logits = apply(variables, x)
    np.testing.assert_array_equal(eval_logits, apply(variables, x))
    train_logits = apply(variables, x, train=True, rngs={"dropout": jax.random.key(4)})
    assert not np.allclose(train_logits, eval_logits)
    no_drop = model.clone(dropout_rate=0.0).apply(variables, x, train=True, rngs={"dropout": jax.random.key(4)})
    np.testing.assert_allclose(no_drop, eval_logits, rtol=1e-5, atol=1e-6)
