"""AlexNet (torchvision and Krizhevsky 2012) and ZFNet (Zeiler & Fergus 2014, Fig. 3): layer
shapes, parameter counts, op order, dropout placement, and the PyTorch-exact pooling helpers."""

from __future__ import annotations

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models import count_params, feature_info
from jaxdl.nn.pooling import adaptive_avg_pool, max_pool
from jaxdl.models.introspect import abstract_variables
from jaxdl.nn import conv_output_size, local_response_norm


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


def _conv_params(k, c_in, c_out, groups=1):
    return k * k * (c_in // groups) * c_out + c_out


def _alexnet_count(convs, groups_of, classifier=4096, classes=1000, pooled=6):
    """Closed-form count: convs [(kernel, out)], FC on pooled x pooled x last channels."""
    total, c_in = 0, 3
    for i, (k, c_out) in enumerate(convs):
        total += _conv_params(k, c_in, c_out, groups_of[i])
        c_in = c_out
    fc_in = pooled * pooled * c_in
    return total + (fc_in + 1) * classifier + (classifier + 1) * classifier + (classifier + 1) * classes


def test_alexnet_torchvision_count():
    assert count_params("alexnet") == 61_100_840
    assert _alexnet_count([(11, 64), (5, 192), (3, 384), (3, 256), (3, 256)], [1] * 5) == 61_100_840


def test_alexnet_lrn_grouped_count_is_the_papers_60_million():
    """Krizhevsky 2012 sec. 3.5/Fig. 2: conv2, conv4, conv5 see only their tower's maps."""
    convs = [(11, 96), (5, 256), (3, 384), (3, 384), (3, 256)]
    grouped = count_params("alexnet_lrn")
    assert grouped == _alexnet_count(convs, [1, 2, 1, 2, 2]) == models.info("alexnet_lrn").num_params
    ungrouped = count_params("alexnet_lrn", groups=1)
    assert ungrouped == _alexnet_count(convs, [1] * 5)
    # "60 million parameters" (sec. 4): the grouped layout is the closer one, by far.
    assert abs(grouped - 60e6) < abs(ungrouped - 60e6)
    assert abs(grouped / 60e6 - 1) < 0.02 and abs(ungrouped / 60e6 - 1) > 0.03


def test_alexnet_lrn_grouped_kernel_shapes():
    params = abstract_variables("alexnet_lrn")["params"]
    # Fig. 2: 5x5x48, 3x3x256 (across towers), 3x3x192, 3x3x192 kernels.
    assert params["conv1"]["kernel"].shape == (11, 11, 3, 96)
    assert params["conv2"]["kernel"].shape == (5, 5, 48, 256)
    assert params["conv3"]["kernel"].shape == (3, 3, 256, 384)
    assert params["conv4"]["kernel"].shape == (3, 3, 192, 384)
    assert params["conv5"]["kernel"].shape == (3, 3, 192, 256)
    assert params["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)


def test_zfnet_count_from_fig3():
    assert count_params("zfnet") == _alexnet_count([(7, 96), (5, 256), (3, 384), (3, 384), (3, 256)], [1] * 5)
    assert "no published count" in models.info("zfnet").params_reference


@pytest.mark.parametrize("name,expected", [
    # (H = W, C) of stem, stage1 .. stage4 at 224x224.
    ("alexnet", [(27, 64), (13, 192), (13, 384), (13, 256), (6, 256)]),
    ("alexnet_lrn", [(27, 96), (13, 256), (13, 384), (13, 384), (6, 256)]),
    # Zeiler & Fergus Fig. 3: 110 -> pool 55, 26 -> pool 13, 13, 13, 13 -> pool 6.
    ("zfnet", [(55, 96), (13, 256), (13, 384), (13, 384), (6, 256)]),
])
def test_feature_map_sizes(name, expected):
    taps = {t.name: t for t in feature_info(name)}
    got = [(taps[n].shape[0], taps[n].channels) for n in ("stem", "stage1", "stage2", "stage3", "stage4")]
    assert got == expected
    assert all(taps[n].shape[0] == taps[n].shape[1] for n in ("stem", "stage4"))
    assert taps["fc6"].shape == taps["fc7"].shape == taps["pre_logits"].shape == (4096,)
    assert taps["logits"].shape == (1000,)


@settings(deadline=None, max_examples=6)
@given(size=st.integers(63, 260))
def test_alexnet_sizes_follow_the_conv_formula(size):
    """Every input >= 63 works; the map sizes are PyTorch's floor formulas; fc6 always sees 6x6."""
    expected = conv_output_size(conv_output_size(size, 11, 2, 4), 3, 0, 2)
    taps = {t.name: t for t in feature_info("alexnet", input_shape=(size, size, 3), taps=("stem", "stage4"),
                                            classifier_width=8)}
    assert taps["stem"].shape == (expected, expected, 64)
    assert abstract_variables("alexnet", input_shape=(size, size, 3), classifier_width=8)["params"]["fc6"][
        "kernel"].shape == (9216, 8)


def _stem(name, x, **overrides):
    model = models.create(name, **overrides)
    # Asking only for the stem builds only conv1 (no layer past the last tap runs).
    variables = host_variables(model, x, features=("stem",))
    assert set(variables["params"]) == {"conv1"}
    return variables, model.apply(variables, x, features=("stem",))["stem"]


def _conv(x, p, stride, pad):
    y = jax.lax.conv_general_dilated(x, p["kernel"], (stride, stride), ((pad, pad), (pad, pad)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def test_alexnet_lrn_stem_is_conv_relu_lrn_pool():
    """Sec. 3.3/3.5: ReLU, then response normalization, then the overlapping max pool."""
    x = jax.random.normal(jax.random.key(1), (1, 67, 67, 3)) * 40
    variables, stem = _stem("alexnet_lrn", x)
    y = jax.nn.relu(_conv(x, variables["params"]["conv1"], 4, 2))
    expected = max_pool(local_response_norm(y, 5, 1e-4, 0.75, 2.0), 3, 2)
    np.testing.assert_allclose(stem, expected, rtol=1e-5, atol=1e-5)
    # And the LRN does something here (large activations), so the order matters.
    assert not np.allclose(stem, max_pool(y, 3, 2), rtol=1e-3)


def test_zfnet_stem_is_conv_relu_pool_then_normalization():
    """Fig. 3 caption: rectified, pooled (3x3, stride 2), then contrast normalized."""
    x = jax.random.normal(jax.random.key(2), (1, 64, 64, 3)) * 40
    variables, stem = _stem("zfnet", x)
    y = jax.nn.relu(_conv(x, variables["params"]["conv1"], 2, 1))
    expected = local_response_norm(max_pool(y, 3, 2, ceil_mode=True))
    np.testing.assert_allclose(stem, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def small_alexnet():
    """alexnet with 16-wide fc layers, its variables, and jitted applies for both dropout layouts."""
    x = jax.random.normal(jax.random.key(3), (4, 64, 64, 3))
    model = models.create("alexnet", num_classes=5, classifier_width=16)
    variables = host_variables(model, x, seed=4)
    applies = {layout: jax.jit(functools.partial(model.clone(dropout_layout=layout).apply),
                               static_argnames=("train", "features"))
               for layout in ("torchvision", "paper")}
    return x, variables, applies


def test_dropout_only_in_training(small_alexnet):
    x, variables, applies = small_alexnet
    apply = applies["torchvision"]
    eval_a, eval_b = apply(variables, x), apply(variables, x)
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a = apply(variables, x, train=True, rngs={"dropout": jax.random.key(5)})
    train_b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(6)})
    assert not np.allclose(train_a, eval_a) and not np.allclose(train_a, train_b)
    no_drop = models.create("alexnet", num_classes=5, classifier_width=16, dropout_rate=0.0)
    np.testing.assert_allclose(no_drop.apply(variables, x, train=True, rngs={"dropout": jax.random.key(5)}),
                               eval_a, rtol=1e-5, atol=1e-6)


def test_dropout_placement(small_alexnet):
    """torchvision drops fc6's input; the paper (Krizhevsky sec. 4.2, used by alexnet_lrn and
    zfnet) drops fc6's output, so fc6 itself is the same in training and evaluation."""
    assert models.create("alexnet_lrn").dropout_layout == models.create("zfnet").dropout_layout == "paper"
    x, variables, applies = small_alexnet
    rngs = {"dropout": jax.random.key(7)}
    for layout, fc6_changes in (("torchvision", True), ("paper", False)):
        apply = applies[layout]
        fc6_eval = apply(variables, x, features=("fc6",))["fc6"]
        fc6_train = apply(variables, x, train=True, features=("fc6",), rngs=rngs)["fc6"]
        assert (not np.allclose(fc6_train, fc6_eval)) == fc6_changes, layout
        logits_train = apply(variables, x, train=True, rngs=rngs)
        assert not np.allclose(logits_train, apply(variables, x)), layout


def test_headless_returns_fc7(small_alexnet):
    x, variables, applies = small_alexnet
    apply = applies["torchvision"]
    headless = models.create("alexnet", num_classes=0, classifier_width=16)
    params = {k: v for k, v in variables["params"].items() if k != "head"}
    pooled = headless.apply({"params": params}, x)
    np.testing.assert_allclose(pooled, apply(variables, x, features=("fc7",))["fc7"], rtol=1e-6)
    assert pooled.shape == (4, 16)


def test_errors_are_actionable():
    with pytest.raises(ConfigError, match="too small"):
        abstract_variables("alexnet", input_shape=(62, 62, 3))  # 63 is the smallest that works
    with pytest.raises(ConfigError, match="NHWC"):
        jax.eval_shape(models.create("alexnet").init, jax.random.key(0), jnp.zeros((64, 64, 3)))
    with pytest.raises(ConfigError, match="groups"):
        abstract_variables("alexnet_lrn", groups=3)
    with pytest.raises(ConfigError, match="dropout_layout"):
        abstract_variables("alexnet", dropout_layout="sometimes")


# --- pooling helpers against numpy loops of PyTorch's definitions ---------------------------------

def _max_pool_reference(x, window, stride, padding, ceil_mode):
    n, h, w, c = x.shape
    oh = conv_output_size(h, window, padding, stride, ceil_mode=ceil_mode)
    ow = conv_output_size(w, window, padding, stride, ceil_mode=ceil_mode)
    out = np.empty((n, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - padding, j * stride - padding
            rows = slice(max(r0, 0), min(r0 + window, h))
            cols = slice(max(c0, 0), min(c0 + window, w))
            out[:, i, j] = x[:, rows, cols].max(axis=(1, 2))
    return out


@settings(deadline=None, max_examples=25)
@given(h=st.integers(3, 14), w=st.integers(3, 14), window=st.integers(2, 3), stride=st.integers(1, 3),
       padding=st.integers(0, 1), ceil_mode=st.booleans())
def test_max_pool_matches_torch_definition(h, w, window, stride, padding, ceil_mode):
    x = np.random.default_rng(h * 100 + w).standard_normal((1, h, w, 2)).astype(np.float32) - 5.0
    got = max_pool(jnp.asarray(x), window, stride, padding, ceil_mode)
    np.testing.assert_array_equal(np.asarray(got), _max_pool_reference(x, window, stride, padding, ceil_mode))


def test_ceil_mode_adds_the_last_window():
    x = jnp.arange(26.0).reshape(1, 26, 1, 1) * jnp.ones((1, 1, 26, 1))
    assert max_pool(x, 3, 2).shape[1] == 12
    assert max_pool(x, 3, 2, ceil_mode=True).shape[1] == 13  # ZFNet Fig. 3: 26 -> 13
    assert float(max_pool(x, 3, 2, ceil_mode=True)[0, -1, 0, 0]) == 25.0


def _adaptive_reference(x, oh, ow):
    n, h, w, c = x.shape
    out = np.empty((n, oh, ow, c), np.float64)
    for i in range(oh):
        r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


@settings(deadline=None, max_examples=25)
@given(h=st.integers(1, 15), w=st.integers(1, 15), oh=st.integers(1, 8), ow=st.integers(1, 8))
def test_adaptive_avg_pool_matches_torch_definition(h, w, oh, ow):
    x = np.random.default_rng(h * 31 + w).standard_normal((2, h, w, 3)).astype(np.float32)
    got = adaptive_avg_pool(jnp.asarray(x), (oh, ow))
    assert got.shape == (2, oh, ow, 3)
    np.testing.assert_allclose(np.asarray(got), _adaptive_reference(x, oh, ow), rtol=1e-5, atol=1e-6)
