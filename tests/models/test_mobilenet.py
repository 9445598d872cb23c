"""MobileNet v1 (Howard et al. 2017, Table 1/8) and v2 (Sandler et al. 2018, Table 2): counts,
width multipliers with torchvision's channel rounding, residual connections, ReLU6, BatchNorm
and dropout behaviour."""

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
from jaxdl.models.introspect import abstract_variables
from jaxdl.models.mobilenet import V1_STAGES, V2_SETTINGS, InvertedResidual, make_divisible


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


def _v1_closed_form(classes=1000):
    """Table 1: conv 3x3x3x32, then per layer dw 3x3xC and pw CxC'; BN (scale, offset) after each."""
    total, c = 3 * 3 * 3 * 32 + 2 * 32, 32
    for c_out, n, _ in V1_STAGES:
        for _ in range(n):
            total += 9 * c + 2 * c + c * c_out + 2 * c_out
            c = c_out
    return total + c * classes + classes


def test_v1_count_is_table8():
    got = count_params("mobilenet_v1")
    assert got == _v1_closed_form()
    assert abs(got / 4.2e6 - 1) < 0.01  # Table 8: 1.0 MobileNet-224, 4.2 million parameters
    assert sum(n for _, n, _ in V1_STAGES) == 13  # Table 1: 13 depthwise-separable layers


def test_v2_count_is_torchvision():
    assert count_params("mobilenet_v2") == 3_504_872
    assert sum(n for _, _, n, _ in V2_SETTINGS) == 17  # Table 2: 17 bottleneck blocks


def test_make_divisible_rule():
    assert make_divisible(32 * 0.5) == 16
    assert make_divisible(24 * 0.5) == 16        # 12 rounds half up to 16
    assert make_divisible(16 * 0.35) == 8        # never below the divisor
    assert make_divisible(10) == 16              # 8 would lose more than 10%
    assert make_divisible(96 * 0.75) == 72
    assert make_divisible(1280 * 1.4) == 1792
    for v in (8, 16, 24, 320, 1280):
        assert make_divisible(v) == v


@pytest.mark.parametrize("alpha", [0.5, 0.35, 1.4])
def test_v2_width_multiplier_channels(alpha):
    taps = {t.name: t for t in feature_info("mobilenet_v2", width_multiplier=alpha)}
    assert taps["stem"].channels == make_divisible(32 * alpha)
    for i, (_, c, _, _) in enumerate(V2_SETTINGS, start=1):
        assert taps[f"stage{i}"].channels == make_divisible(c * alpha), i
    assert taps["stage8"].channels == taps["pre_logits"].shape[0] == make_divisible(1280 * max(1.0, alpha))


def test_v2_width_half_builds_smaller():
    assert count_params("mobilenet_v2", width_multiplier=0.5) < count_params("mobilenet_v2") / 1.5


def test_v1_width_multiplier_scales_every_layer():
    full = {t.name: t.channels for t in feature_info("mobilenet_v1")}
    half = {t.name: t.channels for t in feature_info("mobilenet_v1", width_multiplier=0.5)}
    for name in ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "pre_logits"):
        assert half[name] * 2 == full[name], name
    # Depthwise convs have one 3x3 filter per channel.
    params = abstract_variables("mobilenet_v1", width_multiplier=0.5)["params"]
    assert params["stage4_block3"]["dw_conv"]["kernel"].shape == (3, 3, 1, 256)
    assert "bias" not in params["stage4_block3"]["pw_conv"]


@pytest.mark.parametrize("name,strides", [
    ("mobilenet_v1", {"stem": 2, "stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 32}),
    ("mobilenet_v2", {"stem": 2, "stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 16,
                      "stage6": 32, "stage7": 32, "stage8": 32}),
])
def test_strides(name, strides):
    assert {t.name: t.stride for t in feature_info(name) if t.stride} == strides


@settings(deadline=None, max_examples=5)
@given(size=st.integers(1, 100))
def test_v2_any_input_size(size):
    """3x3 stride-2 convs with padding 1: each halves the size rounding up, five times."""
    taps = {t.name: t for t in feature_info("mobilenet_v2", input_shape=(size, size, 3), taps=("stage8",),
                                            width_multiplier=0.25)}
    expected = size
    for _ in range(5):
        expected = (expected - 1) // 2 + 1
    assert taps["stage8"].shape[:2] == (expected, expected)


def _block(x, features, stride, expansion, zero_projection):
    block = InvertedResidual(features, stride, expansion)
    variables = host_variables(block, x)
    if zero_projection:  # the projection's BatchNorm outputs 0: only the shortcut is left
        params = dict(variables["params"])
        params["project_bn"] = jax.tree_util.tree_map(jnp.zeros_like, params["project_bn"])
        variables = {**variables, "params": params}
    return block.apply(variables, x)


def test_inverted_residual_shortcut_only_when_shapes_match():
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 8))
    np.testing.assert_allclose(_block(x, 8, 1, 6, zero_projection=True), x)  # residual kept
    np.testing.assert_allclose(_block(x, 16, 1, 6, zero_projection=True), 0.0)  # channels change
    np.testing.assert_allclose(_block(x, 8, 2, 6, zero_projection=True), 0.0)  # stride 2
    assert _block(x, 8, 2, 6, zero_projection=False).shape == (2, 3, 3, 8)
    # The projection is linear (sec. 3.2): without the shortcut, outputs can be negative.
    assert bool(jnp.any(_block(x, 16, 1, 6, zero_projection=False) < 0))


def test_inverted_residual_expansion_width():
    x = jnp.zeros((1, 4, 4, 24))
    params = jax.eval_shape(InvertedResidual(32, 2, 6).init, jax.random.key(0), x)["params"]
    assert params["expand_conv"]["kernel"].shape == (1, 1, 24, 144)
    assert params["dw_conv"]["kernel"].shape == (3, 3, 1, 144)
    assert params["project_conv"]["kernel"].shape == (1, 1, 144, 32)
    no_expansion = jax.eval_shape(InvertedResidual(16, 1, 1).init, jax.random.key(0), jnp.zeros((1, 4, 4, 32)))
    assert "expand_conv" not in no_expansion["params"]


@pytest.fixture(scope="module")
def small_v2():
    x = 10 * jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    # The first two rows of Table 2 keep compilation cheap; BN and dropout are the same in all rows.
    model = models.create("mobilenet_v2", num_classes=5, width_multiplier=0.25, settings=V2_SETTINGS[:2])
    variables = host_variables(model, x, seed=3)

    @functools.partial(jax.jit, static_argnums=(1, 2, 3))
    def run(variables, frozen_bn, dropout_rate, train):
        m = model.clone(frozen_bn=frozen_bn, dropout_rate=dropout_rate)
        return m.apply(variables, x, train=train, rngs={"dropout": jax.random.key(4)}, mutable=["batch_stats"],
                       features=("stem", "logits"))

    return variables, run


def test_v2_train_eval_dropout_and_frozen_bn(small_v2):
    variables, run = small_v2
    evaluation, _ = run(variables, False, 0.2, False)
    assert float(evaluation["stem"].max()) == 6.0  # ReLU6 saturates on this large input
    train, updates = run(variables, False, 0.2, True)
    assert not np.allclose(train["logits"], evaluation["logits"])
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                                     variables["batch_stats"])
    assert all(jax.tree_util.tree_leaves(changed))
    # Dropout alone (frozen statistics): the stem is unchanged, only the head input is dropped.
    dropout_only, frozen_updates = run(variables, True, 0.2, True)
    np.testing.assert_allclose(dropout_only["stem"], evaluation["stem"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(dropout_only["logits"], evaluation["logits"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, frozen_updates["batch_stats"], variables["batch_stats"])
    same, _ = run(variables, True, 0.0, True)
    np.testing.assert_allclose(same["logits"], evaluation["logits"], rtol=1e-5, atol=1e-6)


def test_bad_width_multiplier():
    with pytest.raises(ConfigError, match="width_multiplier"):
        abstract_variables("mobilenet_v2", width_multiplier=0.0)
