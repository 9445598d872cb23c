"""ResNet family: v1.5 ImageNet ResNets, pre-activation, CIFAR (option A), Wide ResNets, ResNeXt,
stochastic depth. Big models are checked shape-only (jax.eval_shape); numerics use tiny widths."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from hypothesis import given, settings, strategies as st

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models import count_params, feature_info
from jaxdl.models.introspect import abstract_variables
from jaxdl.models.resnet import (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck,
                                 zero_pad_shortcut)
from jaxdl.models.resnet_cifar import cifar_resnet_params, preact_bottleneck_cifar_params

TORCHVISION = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240, "wide_resnet101_2": 126_886_696,
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336,
}
# Published counts as printed (He et al. 2016 Table 6, He et al. 2016b Table 3, WRN Table 4,
# ResNeXt Table 7), in millions.
PAPER_MILLIONS = {
    "resnet20": "0.27", "resnet32": "0.46", "resnet44": "0.66", "resnet56": "0.85", "resnet110": "1.7",
    "resnet1202": "19.4", "resnet110_stochastic_depth": "1.7", "preact_resnet164": "1.7",
    "wrn16_8": "11.0", "wrn28_10": "36.5", "wrn40_4": "8.9", "resnext29_8x64d": "34.4",
}


@functools.lru_cache(maxsize=None)
def _abstract_params(name: str, **overrides) -> dict[tuple[str, ...], jax.ShapeDtypeStruct]:
    return flatten_dict(abstract_variables(name, **overrides)["params"])


def _count(name: str, **overrides) -> int:
    return sum(math.prod(v.shape) for v in _abstract_params(name, **overrides).values())


def _flat_shapes(name: str, **overrides) -> dict[str, tuple[int, ...]]:
    return {"/".join(k): tuple(v.shape) for k, v in _abstract_params(name, **overrides).items()}


# --------------------------------------------------------------------------------- counts

@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_counts_exact(name):
    assert _count(name) == TORCHVISION[name]
    assert models.info(name).params_exact and models.info(name).num_params == TORCHVISION[name]


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_preact_counts_within_one_percent_of_v1(depth):
    # He et al. 2016b give no ImageNet counts for every depth; pre-activation only moves BNs
    # (and adds the final one), so the v1 count is the reference.
    got, v1 = _count(f"preact_resnet{depth}"), TORCHVISION[f"resnet{depth}"]
    assert got != v1  # a different architecture, not a copy of v1
    assert abs(got - v1) <= 0.01 * v1


@pytest.mark.parametrize("name", sorted(PAPER_MILLIONS))
def test_cifar_counts_round_to_the_papers_figures(name):
    printed = PAPER_MILLIONS[name]
    decimals = len(printed.split(".")[1])
    assert f"{_count(name) / 1e6:.{decimals}f}" == printed
    entry = models.info(name)
    if not entry.params_exact:
        assert abs(_count(name) - entry.num_params) <= 0.01 * entry.num_params


def test_resnet110_and_preact1001_use_closed_forms():
    # Table 6's "1.7M" is 1.6% below ResNet-110's 1,727,962; Table 3's "10.2M" for ResNet-1001 is
    # the count without BN parameters. Both register the closed form of the described network.
    assert _count("resnet110") == cifar_resnet_params(18) == models.info("resnet110").num_params
    assert _count("preact_resnet1001") == preact_bottleneck_cifar_params(111)
    params = _abstract_params("preact_resnet1001")
    without_bn = sum(math.prod(v.shape) for k, v in params.items() if not any("bn" in part for part in k))
    assert abs(without_bn - 10_200_000) <= 0.01 * 10_200_000


@settings(deadline=None, max_examples=6)
@given(n=st.integers(1, 4), num_classes=st.integers(1, 20))
def test_cifar_closed_forms_match_the_modules(n, num_classes):
    assert count_params("resnet20", stage_sizes=(n,) * 3, num_classes=num_classes) == \
        cifar_resnet_params(n, num_classes)
    assert count_params("preact_resnet164", stage_sizes=(n,) * 3, num_classes=num_classes) == \
        preact_bottleneck_cifar_params(n, num_classes)


def test_resnext_groups_divide_the_3x3_parameters():
    # Same widths, groups=1 vs 32: every 3x3 conv loses 31/32 of its 9 w^2 weights, w = 128 * 2^s.
    dense = _count("resnext50_32x4d", groups=1, width_per_group=128)
    grouped = _count("resnext50_32x4d")
    expected = sum(n * 9 * (128 * 2 ** s) ** 2 * 31 // 32 for s, n in enumerate((3, 4, 6, 3)))
    assert dense - grouped == expected
    shapes = _flat_shapes("resnext50_32x4d")
    assert shapes["stage1_block0/conv2/kernel"] == (3, 3, 4, 128)  # 32 groups of 4 channels
    assert shapes["stage4_block2/conv2/kernel"] == (3, 3, 32, 1024)


def test_wide_resnet50_2_doubles_the_bottleneck_only():
    wide, base = _flat_shapes("wide_resnet50_2"), _flat_shapes("resnet50")
    assert wide["stage1_block0/conv2/kernel"] == (3, 3, 128, 128)
    assert base["stage1_block0/conv2/kernel"] == (3, 3, 64, 64)
    # Block outputs (and so the shortcuts and the head) keep ResNet-50's widths.
    assert wide["stage4_block2/conv3/kernel"] == (1, 1, 1024, 2048)
    assert base["stage4_block2/conv3/kernel"] == (1, 1, 512, 2048)
    assert wide["stage2_block0/shortcut_conv/kernel"] == base["stage2_block0/shortcut_conv/kernel"]
    assert wide["head/kernel"] == base["head/kernel"] == (2048, 1000)


# --------------------------------------------------------------------------------- structure

@pytest.mark.parametrize("name, channels, strides", [
    ("resnet18", (64, 64, 128, 256, 512), (4, 4, 8, 16, 32)),
    ("resnet50", (64, 256, 512, 1024, 2048), (4, 4, 8, 16, 32)),
    ("preact_resnet50", (64, 256, 512, 1024, 2048), (4, 4, 8, 16, 32)),
    ("resnext50_32x4d", (64, 256, 512, 1024, 2048), (4, 4, 8, 16, 32)),
    ("resnet20", (16, 16, 32, 64), (1, 1, 2, 4)),
    ("preact_resnet164", (16, 64, 128, 256), (1, 1, 2, 4)),
    ("wrn28_10", (16, 160, 320, 640), (1, 1, 2, 4)),
    ("resnext29_8x64d", (64, 256, 512, 1024), (1, 1, 2, 4)),
])
def test_stage_channels_and_strides(name, channels, strides):
    taps = {t.name: t for t in feature_info(name)}
    order = ["stem"] + [f"stage{i}" for i in range(1, len(channels))]
    assert set(taps) == {*order, "pre_logits", "logits"}
    assert tuple(taps[n].channels for n in order) == channels
    assert tuple(taps[n].stride for n in order) == strides
    assert taps["pre_logits"].shape == (channels[-1],)


def test_stride_is_on_the_3x3_of_the_bottleneck():
    # v1.5 (torchvision): conv1 (1x1) keeps 56x56 in stage2's first block, conv2 (3x3) halves it.
    model = models.create("resnet50")
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)

    def run(x):
        variables = model.init(jax.random.key(0), x)
        return model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])[1]

    inter = jax.eval_shape(run, x)["intermediates"]["stage2_block0"]
    assert inter["conv1"]["__call__"][0].shape == (1, 56, 56, 128)
    assert inter["conv2"]["__call__"][0].shape == (1, 28, 28, 128)
    assert inter["shortcut_conv"]["__call__"][0].shape == (1, 28, 28, 512)


def test_projection_shortcuts_only_where_the_shape_changes():
    shapes = _flat_shapes("resnet18")
    assert "stage1_block0/shortcut_conv/kernel" not in shapes
    assert shapes["stage2_block0/shortcut_conv/kernel"] == (1, 1, 64, 128)
    assert shapes["stage2_block0/shortcut_bn/scale"] == (128,)
    assert "stage2_block1/shortcut_conv/kernel" not in shapes
    assert shapes["stem_conv/kernel"] == (7, 7, 3, 64) and "stem_conv/bias" not in shapes
    assert shapes["head/kernel"] == (512, 1000)
    # Pre-activation: the projection is a bare conv, and the network ends in final_bn.
    pre = _flat_shapes("preact_resnet18")
    assert "stage2_block0/shortcut_conv/kernel" in pre and "stage2_block0/shortcut_bn/scale" not in pre
    assert pre["final_bn/scale"] == (512,)
    assert "stage1_block0/bn1/scale" not in pre  # first unit: the stem's BN-ReLU pre-activates it
    assert pre["stage1_block1/bn1/scale"] == (64,)


def test_wide_resnet_cifar_structure():
    shapes = _flat_shapes("wrn16_8")
    assert shapes["stem_conv/kernel"] == (3, 3, 3, 16) and "stem_bn/scale" not in shapes
    assert shapes["stage1_block0/bn1/scale"] == (16,)  # the first block pre-activates the bare stem conv
    assert shapes["stage1_block0/shortcut_conv/kernel"] == (1, 1, 16, 128)
    assert shapes["stage3_block1/conv2/kernel"] == (3, 3, 512, 512)
    assert sum(k.endswith("shortcut_conv/kernel") for k in shapes) == 3
    assert shapes["final_bn/scale"] == (512,)


def test_option_a_shortcuts_have_no_parameters():
    shapes = _flat_shapes("resnet56")
    assert not any("shortcut" in k for k in shapes)


def test_zero_pad_shortcut_numerics():
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 3))
    y = np.asarray(zero_pad_shortcut(x, 8, 2))
    assert y.shape == (2, 3, 2, 8)
    np.testing.assert_array_equal(y[..., :3], np.asarray(x)[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 3:], 0.0)
    with pytest.raises(ConfigError, match="option A"):
        zero_pad_shortcut(x, 2, 1)


def test_option_a_block_adds_the_padded_identity():
    # With the residual branch zeroed, a stride-2 option-A block is relu(zero_pad(x)).
    block = BasicBlock(planes=8, strides=2, shortcut="zero_pad", zero_init_residual=True)
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    variables = block.init(jax.random.key(1, impl="rbg"), x)
    assert "shortcut_conv" not in variables["params"]
    y = block.apply(variables, x)
    np.testing.assert_allclose(y, jax.nn.relu(zero_pad_shortcut(x, 8, 2)), atol=1e-6)


@settings(deadline=None, max_examples=8)
@given(h=st.integers(8, 90), w=st.integers(8, 90))
def test_imagenet_stage_sizes_follow_ceil_division(h, w):
    # 7x7/2 pad 3, 3x3/2 pad 1 pool and stride-2 3x3s each map n -> ceil(n / 2).
    taps = feature_info("resnet18", input_shape=(h, w, 3), width=4)
    got = {t.name: t.shape[:2] for t in taps if len(t.shape) == 3}
    for name, stride in (("stem", 4), ("stage1", 4), ("stage2", 8), ("stage3", 16), ("stage4", 32)):
        assert got[name] == (-(-h // stride), -(-w // stride))


# --------------------------------------------------------------------------------- numerics

def _key(seed: int) -> jax.Array:
    # The "rbg" generator: initialising with it compiles several times faster on CPU than threefry.
    return jax.random.key(seed, impl="rbg")


def _tiny(name: str, **overrides):
    """A small instance of a registered variant and variables for an 8x8 (CIFAR) / 32x32 input."""
    model = models.create(name, **overrides)
    size = 8 if models.info(name).input_shape[0] == 32 else 32
    x = jax.random.normal(jax.random.key(0), (4, size, size, 3))
    return model, jax.jit(model.init)({"params": _key(1), "dropout": _key(2)}, x), x


BLOCK_TYPES = (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck)


def _block_io(model, variables, x):
    """{block name: (input, output)} of every residual block in one evaluation pass."""
    io = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, BLOCK_TYPES) and context.method_name == "__call__":
            io[context.module.name] = (np.asarray(args[0]), np.asarray(out))
        return out

    with nn.intercept_methods(interceptor):
        model.apply(variables, x)
    return io


@pytest.mark.parametrize("name, overrides, last", [
    ("resnet18", {"width": 4, "stage_sizes": (2, 1, 1, 1)}, "bn2/scale"),
    ("resnet50", {"width": 4, "stage_sizes": (2, 1, 1, 1)}, "bn3/scale"),
    ("preact_resnet50", {"width": 4, "stage_sizes": (2, 1, 1, 1)}, "conv3/kernel"),
    ("wrn16_8", {"width": 8, "stage_sizes": (2, 1, 1)}, "conv2/kernel"),
])
def test_zero_init_residual_makes_blocks_identities(name, overrides, last):
    model, variables, x = _tiny(name, zero_init_residual=True, **overrides)
    # Only the last BN scale (post-activation) / last conv (pre-activation) of a block starts at zero.
    for key, value in flatten_dict(variables["params"]).items():
        path = "/".join(key)
        if key[0].startswith("stage"):
            assert bool(jnp.all(value == 0)) == path.endswith(last) or path.endswith("bias"), path
    io = _block_io(model, variables, x)
    identity = [b for b, (i, o) in io.items() if "shortcut_conv" not in variables["params"][b] and i.shape == o.shape]
    assert identity
    for b in identity:
        # The branch is exactly zero, so the block returns its input (post-activation blocks get
        # a non-negative, post-ReLU input, so their final ReLU is a no-op).
        np.testing.assert_allclose(io[b][1], io[b][0], atol=1e-6)


def _recorded_block_rates(model, x):
    rates = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck)) \
                and context.method_name == "__call__":
            rates.append(context.module.drop_path_rate)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x), x)
    return rates


def test_drop_path_rates_decay_linearly_over_all_blocks():
    model = models.create("resnet110_stochastic_depth")
    rates = _recorded_block_rates(model, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    assert len(rates) == 54
    # Huang et al. 2016: p_l = 1 - (l / L)(1 - p_L) with p_L = 0.5 -> drop rate 0.5 l / 54.
    np.testing.assert_allclose(rates, [0.5 * l / 54 for l in range(1, 55)])
    big = _recorded_block_rates(models.create("resnet50", drop_path_rate=0.2),
                                jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    np.testing.assert_allclose(big, [0.2 * l / 16 for l in range(1, 17)])
    assert set(_recorded_block_rates(models.create("resnet18"),
                                     jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))) == {0.0}


@pytest.fixture(scope="module")
def tiny_cifar():
    return _tiny("resnet20", width=4, stage_sizes=(1, 1, 1), drop_path_rate=0.5)


def test_drop_path_is_random_in_training_and_off_in_evaluation(tiny_cifar):
    model, variables, x = tiny_cifar

    def train(seed, m=model):
        return m.apply(variables, x, train=True, rngs={"dropout": _key(seed)},
                       mutable=["batch_stats"])[0]

    assert not np.allclose(train(0), train(1))
    # Without drop-path, training (batch statistics) is deterministic.
    no_drop = models.create("resnet20", width=4, stage_sizes=(1, 1, 1))
    np.testing.assert_array_equal(train(0, no_drop), train(1, no_drop))
    # In evaluation drop-path is the identity: same output as the model without it.
    np.testing.assert_array_equal(model.apply(variables, x), no_drop.apply(variables, x))


def test_wide_resnet_dropout_between_convolutions():
    model, variables, x = _tiny("wrn16_8", width=8, stage_sizes=(1, 1, 1), dropout_rate=0.3)

    def run(seed, train=True):
        out = model.apply(variables, x, train=train, rngs={"dropout": _key(seed)},
                          mutable=["batch_stats"])
        return out[0]

    assert not np.allclose(run(0), run(1))
    np.testing.assert_array_equal(run(0, train=False), run(1, train=False))


def test_train_updates_batch_stats_unless_frozen(tiny_cifar):
    _, variables, x = tiny_cifar
    for frozen in (False, True):
        model = models.create("resnet20", width=4, stage_sizes=(1, 1, 1), frozen_bn=frozen)
        _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        same = jax.tree_util.tree_all(jax.tree_util.tree_map(
            lambda a, b: bool(jnp.array_equal(a, b)), updates["batch_stats"], variables["batch_stats"]))
        assert same == frozen


def test_taps_stop_early_and_headless_output(tiny_cifar):
    model, variables, x = tiny_cifar
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        calls.append(context.module.name)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        out = model.apply(variables, x, features=("stem",))
    assert set(out) == {"stem"} and out["stem"].shape == (4, 8, 8, 4)
    assert not any(c and c.startswith("stage") for c in calls)
    headless = models.create("resnet20", num_classes=0, width=4, stage_sizes=(1, 1, 1))
    pooled = headless.apply({"params": {k: v for k, v in variables["params"].items() if k != "head"},
                             "batch_stats": variables["batch_stats"]}, x)
    np.testing.assert_allclose(pooled, model.apply(variables, x, features=("pre_logits",))["pre_logits"],
                               atol=1e-6)
    assert pooled.shape == (4, 16)


def test_bad_options_raise_config_errors():
    x = jnp.ones((1, 32, 32, 3))
    for overrides, match in (({"stem": "huge"}, "stem"), ({"shortcut": "C"}, "shortcut"),
                             ({"block": "triple"}, "block"), ({"stage_sizes": ()}, "stage_sizes"),
                             ({"drop_path_rate": 1.5}, "drop_path_rate")):
        with pytest.raises(ConfigError, match=match):
            jax.eval_shape(models.create("resnet18", **overrides).init, jax.random.key(0), x)
    with pytest.raises(ConfigError, match="NHWC"):
        jax.eval_shape(models.create("resnet18").init, jax.random.key(0), jnp.ones((32, 32, 3)))
    with pytest.raises(ConfigError, match="groups"):
        jax.eval_shape(models.create("resnext50_32x4d", width=8).init, jax.random.key(0), x)
