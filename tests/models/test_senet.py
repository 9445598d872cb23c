"""Squeeze-and-excitation networks (Hu et al. 2018): counts, SE placement, SENet-154 structure."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from jaxdl import models
from jaxdl.models import feature_info
from jaxdl.models.introspect import abstract_variables
from jaxdl.models.resnet import Bottleneck
from jaxdl.nn.pooling import max_pool
from jaxdl.nn import SqueezeExcitation


@functools.lru_cache(maxsize=None)
def _shapes(name: str) -> dict[str, tuple[int, ...]]:
    params = flatten_dict(abstract_variables(name)["params"])
    return {"/".join(k): tuple(v.shape) for k, v in params.items()}


def _count(name: str) -> int:
    return sum(math.prod(s) for s in _shapes(name).values())


def _se_params(channels_and_blocks) -> int:
    # fc1 C -> C/16 and fc2 C/16 -> C, with biases (Hu et al. 2018 Eq. 3, r = 16).
    return sum(n * (2 * c * c // 16 + c // 16 + c) for c, n in channels_and_blocks)


RESNET50_SE = _se_params(((256, 3), (512, 4), (1024, 6), (2048, 3)))


@pytest.mark.parametrize("name, base, base_count", [
    ("se_resnet50", "resnet50", 25_557_032),
    ("se_resnext50_32x4d", "resnext50_32x4d", 25_028_904),
])
def test_se_adds_exactly_the_excitation_parameters(name, base, base_count):
    # The paper's sec. 4: ~2.5M on top of ResNet-50's ~25M.
    assert RESNET50_SE == 2_530_992
    assert _count(name) == base_count + RESNET50_SE == models.info(name).num_params
    assert models.info(name).params_exact
    se, plain = _shapes(name), _shapes(base)
    assert {k: v for k, v in se.items() if "/se/" not in k} == plain
    assert se["stage1_block0/se/fc1/kernel"] == (256, 16)
    assert se["stage4_block2/se/fc2/kernel"] == (128, 2048)


def test_senet154_count_and_structure():
    assert _count("senet154") == 115_088_984 == models.info("senet154").num_params
    s = _shapes("senet154")
    # (2) deep stem: three 3x3 convs 64, 64, 128 instead of the 7x7.
    assert [s[f"stem_conv{i}/kernel"] for i in (1, 2, 3)] == [(3, 3, 3, 64), (3, 3, 64, 64), (3, 3, 64, 128)]
    assert "stem_conv/kernel" not in s
    # (1) halved first 1x1: 128 -> 128 then a 64-group 3x3 128 -> 256 (2 input channels per group).
    assert s["stage1_block0/conv1/kernel"] == (1, 1, 128, 128)
    assert s["stage1_block0/conv2/kernel"] == (3, 3, 2, 256)
    assert s["stage4_block0/conv2/kernel"] == (3, 3, 16, 2048)
    # (3) strided projections are 3x3; the stride-1 projection of stage 1 stays 1x1.
    assert s["stage1_block0/shortcut_conv/kernel"] == (1, 1, 128, 256)
    assert s["stage2_block0/shortcut_conv/kernel"] == (3, 3, 256, 512)
    assert s["stage4_block0/shortcut_conv/kernel"] == (3, 3, 1024, 2048)
    # ResNet-152's stage sizes, SE with r = 16 on every block.
    for stage, blocks in enumerate((3, 8, 36, 3), 1):
        assert f"stage{stage}_block{blocks - 1}/se/fc1/kernel" in s
        assert f"stage{stage}_block{blocks}/conv1/kernel" not in s
    # (4) dropout 0.2 before the classifier.
    assert models.create("senet154").head_dropout_rate == 0.2


def test_senet154_strides():
    taps = {t.name: t for t in feature_info("senet154")}
    assert (taps["stem"].shape, taps["stem"].stride) == ((56, 56, 128), 4)
    assert [(taps[f"stage{i}"].channels, taps[f"stage{i}"].stride) for i in range(1, 5)] == \
        [(256, 4), (512, 8), (1024, 16), (2048, 32)]


def _torch_ceil_pool_reference(x, k, s):
    n, h, w, c = x.shape
    oh, ow = math.ceil((h - k) / s) + 1, math.ceil((w - k) / s) + 1
    out = np.empty((n, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * s:min(i * s + k, h), j * s:min(j * s + k, w)].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [(7, 8), (112, 111), (5, 5)])
def test_ceil_mode_max_pool(size):
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
    np.testing.assert_array_equal(max_pool(jnp.asarray(x), 3, 2, ceil_mode=True), _torch_ceil_pool_reference(x, 3, 2))


def test_se_sits_on_the_branch_before_the_addition():
    # y = relu(x + SE(bn3(conv3(...)))) for an identity-shortcut bottleneck (paper Fig. 3).
    block = Bottleneck(planes=4, se_reduction=4)
    x = jnp.abs(jax.random.normal(jax.random.key(0), (2, 5, 5, 16)))
    variables = block.init(jax.random.key(1, impl="rbg"), x)
    # Non-trivial BN statistics and SE biases so that every term matters.
    rng = np.random.default_rng(3)
    variables = jax.tree_util.tree_map(
        lambda l: jnp.asarray(np.abs(rng.normal(size=l.shape)) + 0.1, jnp.float32), variables)
    seen = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.name in ("bn3", "se"):
            seen[context.module.name] = (args[0], out)
        return out

    with nn.intercept_methods(interceptor):
        y = block.apply(variables, x)
    np.testing.assert_array_equal(seen["se"][0], seen["bn3"][1])
    expected_se = SqueezeExcitation(reduction=4).apply({"params": variables["params"]["se"]}, seen["bn3"][1])
    np.testing.assert_allclose(seen["se"][1], expected_se, rtol=1e-6)
    np.testing.assert_allclose(y, jax.nn.relu(x + expected_se), rtol=1e-5, atol=1e-6)
