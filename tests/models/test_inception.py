"""Inception family: GoogLeNet, BN-Inception, Inception-v3, Inception-v4, Inception-ResNet-v2.

Structure is checked shape-only (``jax.eval_shape``: the full models never run); numerics run
on a width-1/8 GoogLeNet at 32x32 and on single residual modules.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models.googlenet import GOOGLENET_MODULES
from jaxdl.models.inception import BasicConv2d
from jaxdl.models.inception_v4 import InceptionResNetBlock
from jaxdl.nn import AUX_COLLECTION, batch_norm, conv_output_size

NAMES = ("googlenet", "inception_v2", "inception_v3", "inception_v4", "inception_resnet_v2")
KEY = jax.random.key(0)


def _abstract_init(model, shape, train=False, features="all"):
    """Shape-only ``init_with_output``: (output, variables) as ShapeDtypeStructs."""
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    return jax.eval_shape(
        lambda x: model.init_with_output({"params": KEY, "dropout": KEY}, x, train=train, features=features), x)


@functools.lru_cache(maxsize=None)
def _default(name):
    """(taps, params) of a registered model at its default input, shape-only; one trace per name."""
    out, variables = _abstract_init(models.create(name), models.info(name).input_shape)
    return out, variables["params"]


def _host_variables(model, x):
    """Random variables drawn on the host (no compiled initializers: the graphs are big)."""
    abstract = jax.eval_shape(lambda: model.init({"params": KEY, "dropout": KEY}, x, train=False))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name in ("bias", "mean"):
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------------------------
# Parameter counts


def test_googlenet_count_is_torchvisions_without_aux_and_aux_heads_match_their_layout():
    assert models.info("googlenet").num_params == 6_624_904
    assert dict(models.info("googlenet").count_overrides) == {"aux_logits": False}
    params = _default("googlenet")[1]
    # (count_params with aux_logits=False is checked by the generated zoo tests.)
    assert _count({k: v for k, v in params.items() if not k.startswith("aux")}) == 6_624_904

    # Each aux head: 1x1 conv 128 (+BN scale/shift), FC 4*4*128 -> 1024, FC 1024 -> 1000.
    def aux_head(c_in):
        return c_in * 128 + 2 * 128 + (4 * 4 * 128 * 1024 + 1024) + (1024 * 1000 + 1000)

    assert _count(params["aux1_head"]) == aux_head(512)  # on inception (4a): 512 channels
    assert _count(params["aux2_head"]) == aux_head(528)  # on inception (4d): 528 channels
    assert _count(params) == 13_004_888


def test_googlenet_faithful_5x5_only_changes_the_5x5_branch_kernels():
    default = _default("googlenet")[1]
    _, faithful = _abstract_init(models.create("googlenet", faithful_5x5=True), (224, 224, 3))
    faithful = faithful["params"]
    assert default["inception3a"]["branch3_1"]["conv"]["kernel"].shape == (3, 3, 16, 32)
    assert faithful["inception3a"]["branch3_1"]["conv"]["kernel"].shape == (5, 5, 16, 32)
    extra = sum((25 - 9) * r5 * c5 for _, _, _, r5, c5, _ in GOOGLENET_MODULES.values())
    assert _count(faithful) - _count(default) == extra


def test_inception_v3_count_is_torchvisions_with_and_without_aux():
    params = _default("inception_v3")[1]
    assert _count(params) == 27_161_264 == models.info("inception_v3").num_params
    # AuxLogits: 1x1 conv 768->128, 5x5 conv 128->768 (each + BN), fc 768 -> 1000.
    aux = 768 * 128 + 2 * 128 + 25 * 128 * 768 + 2 * 768 + 768 * 1000 + 1000
    assert _count(params["AuxLogits"]) == aux
    assert _count(params) - aux == 23_834_568  # torchvision inception_v3(aux_logits=False)


def test_bn_inception_count_is_the_computed_one():
    entry = models.info("inception_v2")
    assert entry.params_exact and entry.params_reference == "computed from Ioffe & Szegedy 2015 Fig. 5"
    assert _count(_default("inception_v2")[1]) == entry.num_params == 11_285_224


def test_inception_v4_within_one_percent_of_published():
    entry = models.info("inception_v4")
    assert not entry.params_exact and entry.num_params == 42_700_000
    n = _count(_default("inception_v4")[1])
    assert n == 42_679_816 and abs(n - 42.7e6) / 42.7e6 < 0.01


def test_inception_resnet_v2_paper_depth_count_and_public_depth_count():
    entry = models.info("inception_resnet_v2")
    params = _default("inception_resnet_v2")[1]
    assert entry.params_exact and _count(params) == entry.num_params
    # The public implementation's 10 / 20 / 10 modules (5 / 10 / 5 more; modules of a kind are
    # identical) give the widely reported 55.8M.
    public = _count(params) + sum(n * _count(params[f"{kind}_0"])
                                  for kind, n in (("block35", 5), ("block17", 10), ("block8", 5)))
    assert abs(public - 55.8e6) / 55.8e6 < 0.01


# ---------------------------------------------------------------------------------------------
# Structure: taps, module counts, names

EXPECTED_TAPS = {
    # name: {tap: (H, W, C)} at the default input
    "googlenet": {"stem": (28, 28, 192), "stage1": (28, 28, 480), "stage2": (14, 14, 832),
                  "stage3": (7, 7, 1024), "pre_logits": (1024,), "logits": (1000,)},
    "inception_v2": {"stem": (28, 28, 192), "stage1": (28, 28, 320), "stage2": (14, 14, 608),
                     "stage3": (7, 7, 1024), "pre_logits": (1024,), "logits": (1000,)},
    "inception_v3": {"stem": (35, 35, 192), "stage1": (35, 35, 288), "stage2": (17, 17, 768),
                     "stage3": (8, 8, 2048), "pre_logits": (2048,), "logits": (1000,)},
    "inception_v4": {"stem": (35, 35, 384), "stage1": (35, 35, 384), "stage2": (17, 17, 1024),
                     "stage3": (8, 8, 1536), "pre_logits": (1536,), "logits": (1000,)},
    "inception_resnet_v2": {"stem": (35, 35, 320), "stage1": (35, 35, 320), "stage2": (17, 17, 1088),
                            "stage3": (8, 8, 1536), "pre_logits": (1536,), "logits": (1000,)},
}


@pytest.mark.parametrize("name", NAMES)
def test_feature_taps_shapes(name):
    taps = _default(name)[0]
    assert {k: v.shape[1:] for k, v in taps.items()} == EXPECTED_TAPS[name]


def test_feature_info_strides_at_224():
    info = {t.name: t for t in models.feature_info("googlenet")}
    assert [(info[t].stride, info[t].channels) for t in ("stem", "stage1", "stage2", "stage3")] == \
        [(8, 192), (8, 480), (16, 832), (32, 1024)]


def test_inception_v4_module_counts():
    params = _default("inception_v4")[1]
    for prefix, n in (("inception_a", 4), ("inception_b", 7), ("inception_c", 3)):
        assert sorted(k for k in params if k.startswith(prefix)) == sorted(f"{prefix}{i}" for i in range(n))
    assert {"stem", "reduction_a", "reduction_b", "head"} <= set(params)
    # Reduction-A with Table 1's (k, l, m, n) = (192, 224, 256, 384).
    red = params["reduction_a"]
    assert [red[f"branch1_{j}"]["conv"]["kernel"].shape[-1] for j in range(3)] == [192, 224, 256]
    assert red["branch0_0"]["conv"]["kernel"].shape == (3, 3, 384, 384)


def test_inception_resnet_v2_module_counts_and_linear_residual_projection():
    params = _default("inception_resnet_v2")[1]
    for prefix, n in (("block35_", 5), ("block17_", 10), ("block8_", 5)):
        assert sorted(k for k in params if k.startswith(prefix)) == sorted(f"{prefix}{i}" for i in range(n))
    for block, width in (("block35_0", 320), ("block17_9", 1088), ("block8_4", 2080)):
        up = params[block]["up"]
        assert set(up) == {"kernel", "bias"} and up["kernel"].shape[-1] == width  # bias, no BatchNorm
    assert params["conv_7b"]["conv"]["kernel"].shape == (1, 1, 2080, 1536)


def test_convolutions_have_no_bias_and_factorized_kernels():
    params = _default("inception_v3")[1]
    conv = params["Mixed_5b"]["branch5x5_2"]
    assert set(conv["conv"]) == {"kernel"} and conv["conv"]["kernel"].shape == (5, 5, 48, 64)
    assert set(conv["bn"]) == {"scale", "bias"}
    assert params["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"].shape == (1, 7, 128, 128)
    assert params["Mixed_6b"]["branch7x7_3"]["conv"]["kernel"].shape == (7, 1, 128, 192)
    assert params["Mixed_7b"]["branch3x3_2a"]["conv"]["kernel"].shape == (1, 3, 384, 384)
    assert params["Mixed_7b"]["branch3x3_2b"]["conv"]["kernel"].shape == (3, 1, 384, 384)
    assert set(params["head"]) == {"kernel", "bias"} and params["head"]["kernel"].shape == (2048, 1000)


def _record(model, shape, module_type, attribute, train=False):
    """Values of ``attribute`` (a name or a tuple of names) of every ``module_type`` layer called
    in a shape-only init."""
    seen = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, module_type) and context.method_name == "__call__":
            seen.append(getattr(context.module, attribute) if isinstance(attribute, str)
                        else tuple(getattr(context.module, a, None) for a in attribute))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        _abstract_init(model, shape, train=train, features=None)
    return seen


@functools.lru_cache(maxsize=None)
def _training_layers(name, **overrides):
    """(BatchNorm (epsilon, momentum, use_running_average), Dropout rates) seen with train=True."""
    entry = models.info(name)
    model = models.create(name, **{**dict(entry.smoke_overrides), **overrides})
    layers = _record(model, entry.smoke_input_shape, (nn.BatchNorm, nn.Dropout),
                     ("epsilon", "momentum", "use_running_average", "rate"), train=True)
    return [layer[:3] for layer in layers if layer[3] is None], [layer[3] for layer in layers if layer[3] is not None]


@pytest.mark.parametrize("name, eps", [("googlenet", 1e-3), ("inception_v2", 1e-5), ("inception_v3", 1e-3),
                                       ("inception_v4", 1e-3), ("inception_resnet_v2", 1e-3)])
def test_batchnorm_epsilon_and_momentum(name, eps):
    norms, _ = _training_layers(name)
    assert {(e, m) for e, m, _ in norms} == {(eps, 0.9)}  # momentum 0.9 == torch's 0.1
    assert not any(running for _, _, running in norms)  # batch statistics while training


@pytest.mark.parametrize("name", ["googlenet", "inception_v4"])
def test_frozen_bn_uses_running_statistics_while_training(name):
    norms, _ = _training_layers(name)
    frozen, _ = _training_layers(name, frozen_bn=True)
    assert len(frozen) == len(norms) > 0 and all(running for _, _, running in frozen)


def test_dropout_rates():
    # googlenet: main head 0.2 (torchvision) and each aux head 0.7 (paper sec. 5).
    assert sorted(_training_layers("googlenet")[1]) == [0.2, 0.7, 0.7]
    assert _training_layers("inception_v2")[1] == [0.0]  # sec. 4.2.1 removes dropout
    assert _training_layers("inception_v3")[1] == [0.5]
    assert _training_layers("inception_v4")[1] == [0.2]
    assert _training_layers("inception_resnet_v2")[1] == [0.2]


# ---------------------------------------------------------------------------------------------
# Auxiliary classifiers


@pytest.fixture(scope="module")
def small_googlenet():
    model = models.create("googlenet", num_classes=5, width_multiplier=0.125)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    return model, x, _host_variables(model, x)


def test_googlenet_aux_params_exist_after_eval_init(small_googlenet):
    _, _, variables = small_googlenet
    assert {"aux1_head", "aux2_head"} <= set(variables["params"])
    assert variables["params"]["aux1_head"]["fc2"]["kernel"].shape == (128, 5)  # width 1/8 of 1024
    assert AUX_COLLECTION not in variables


def test_googlenet_aux_logits_sown_with_weight_03_only_in_training(small_googlenet):
    model, x, variables = small_googlenet
    train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION],
                                                   rngs={"dropout": jax.random.key(2)}))
    logits, updates = train_apply(variables, x)
    aux = updates[AUX_COLLECTION]
    assert set(aux) == {"aux1", "aux2"}
    for entry in aux.values():
        assert entry["logits"].shape == (2, 5) and bool(jnp.all(jnp.isfinite(entry["logits"])))
        assert float(entry["weight"]) == pytest.approx(0.3)
    assert not np.allclose(aux["aux1"]["logits"], aux["aux2"]["logits"])
    assert not np.allclose(aux["aux1"]["logits"], logits)
    # At inference nothing is sown (the heads do not even run).
    out, sown = jax.eval_shape(lambda v: model.apply(v, x, train=False, mutable=[AUX_COLLECTION]), variables)
    assert out.shape == (2, 5) and sown == {}


def test_googlenet_without_aux_heads():
    model = models.create("googlenet", num_classes=5, width_multiplier=0.125, aux_logits=False)
    _, variables = _abstract_init(model, (32, 32, 3), features=None)
    assert not any(k.startswith("aux") for k in variables["params"])
    _, sown = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3)), train=True, mutable=["batch_stats", AUX_COLLECTION],
                              rngs={"dropout": KEY}), variables)
    assert AUX_COLLECTION not in sown


def test_inception_v3_aux_sown_with_weight_04_in_training_only():
    model = models.create("inception_v3", num_classes=7, width_multiplier=0.125)
    _, variables = _abstract_init(model, (299, 299, 3), features=None)
    assert "AuxLogits" in variables["params"]  # created by init with train=False
    x = jnp.zeros((2, 299, 299, 3))
    _, sown = jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats", AUX_COLLECTION],
                                                   rngs={"dropout": KEY}), variables)
    assert jax.tree.map(lambda s: s.shape, sown[AUX_COLLECTION]) == {"aux": {"logits": (2, 7), "weight": ()}}
    assert model.aux_weight == 0.4
    _, sown = jax.eval_shape(lambda v: model.apply(v, x, train=False, mutable=[AUX_COLLECTION]), variables)
    assert sown == {}


def test_inception_v3_aux_needs_299_and_says_how_to_avoid_it():
    with pytest.raises(ConfigError, match="aux_logits=False"):
        _abstract_init(models.create("inception_v3", width_multiplier=0.125), (75, 75, 3), features=None)
    out, _ = _abstract_init(models.create("inception_v3", width_multiplier=0.125, aux_logits=False), (75, 75, 3),
                            features=None)
    assert out.shape == (2, 1000)


# ---------------------------------------------------------------------------------------------
# Residual modules


def test_inception_resnet_block_scales_its_residual_branch():
    kind = "c"  # the residual wiring is shared by the A, B and C modules
    layer = functools.partial(BasicConv2d, norm=batch_norm(False, epsilon=1e-3))
    width = lambda c: max(1, c // 32)  # noqa: E731 - tiny widths, the branch structure is what matters
    x = 100.0 + jax.random.uniform(jax.random.key(3), (1, 5, 5, 6))  # >> 0: the final ReLU is the identity
    blocks = {s: InceptionResNetBlock(layer=layer, width=width, kind=kind, scale=s) for s in (0.0, 0.1, 0.3)}
    abstract = jax.eval_shape(lambda: blocks[0.1].init(KEY, x))
    rng = np.random.default_rng(1)

    def fill(path, leaf):
        if path[-1].key in ("var", "scale"):
            return jnp.ones(leaf.shape)
        if path[-1].key == "mean":
            return jnp.zeros(leaf.shape)
        # Small "up" weights keep x + scale * up > 0 for x ~ 100 (activations scale with x).
        std = 1e-3 if path[-2].key == "up" else 0.5
        return jnp.asarray(rng.normal(size=leaf.shape) * std, jnp.float32)

    variables = jax.tree_util.tree_map_with_path(fill, abstract)
    out = {s: block.apply(variables, x) for s, block in blocks.items()}
    assert out[0.0].shape == x.shape
    np.testing.assert_allclose(out[0.0], x, rtol=0, atol=0)
    residual_01 = (out[0.1] - x) / 0.1
    residual_03 = (out[0.3] - x) / 0.3
    assert float(jnp.abs(residual_01).max()) > 1e-2
    np.testing.assert_allclose(residual_01, residual_03, rtol=1e-3, atol=1e-3)


def test_inception_resnet_v2_residual_scales_field():
    assert models.create("inception_resnet_v2").residual_scales == (0.17, 0.10, 0.20)
    scales = _record(models.create("inception_resnet_v2", width_multiplier=0.125, blocks=(2, 1, 1),
                                   residual_scales=(0.3, 0.2, 0.1)),
                     (75, 75, 3), InceptionResNetBlock, ("kind", "scale"))
    assert scales == [("a", 0.3), ("a", 0.3), ("b", 0.2), ("c", 0.1)]


# ---------------------------------------------------------------------------------------------
# Interface: early exit, no head, dtype, errors


@pytest.mark.parametrize("name", NAMES)
def test_features_stop_early(name):
    entry = models.info(name)
    overrides = dict(entry.smoke_overrides)
    out, variables = _abstract_init(models.create(name, **overrides), entry.smoke_input_shape, features=("stem",))
    assert set(out) == {"stem"}
    later = {"head", "Mixed_5b", "inception3a", "inception_3a", "inception_a0", "block35_0"}
    assert not later & set(variables["params"])


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_no_head_returns_pre_logits_and_builds_no_aux_head(name):
    model = models.create(name, num_classes=0, width_multiplier=0.125)  # aux_logits=True (default)
    out, variables = _abstract_init(model, models.info(name).input_shape, features=None)
    assert out.shape == (2, _default(name)[0]["pre_logits"].shape[-1] // 8)  # smoke width: 1/8
    assert not {"head", "AuxLogits", "aux1_head", "aux2_head"} & set(variables["params"])


@pytest.mark.parametrize("name", ["inception_v4"])
def test_bfloat16_compute_float32_params(name):
    entry = models.info(name)
    model = models.create(name, dtype=jnp.bfloat16, **dict(entry.smoke_overrides))
    out, variables = _abstract_init(model, entry.smoke_input_shape, features=None)
    assert out.dtype == jnp.bfloat16
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables["params"])} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name, size", [("inception_v3", 74), ("inception_v4", 74), ("inception_resnet_v2", 74),
                                        ("googlenet", 30)])
def test_too_small_input_is_a_config_error(name, size):
    model = models.create(name, aux_logits=False) if name == "inception_v3" else models.create(name)
    with pytest.raises(ConfigError, match="input"):
        _abstract_init(model, (size, size, 3), features=None)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="width_multiplier"):
        _abstract_init(models.create("googlenet", width_multiplier=0.0), (32, 32, 3), features=None)
    with pytest.raises(ConfigError, match="blocks"):
        _abstract_init(models.create("inception_v4", blocks=(4, 7)), (75, 75, 3), features=None)
    with pytest.raises(ConfigError, match="NHWC"):
        models.create("inception_v2").init(KEY, jnp.zeros((32, 32, 3)))


# ---------------------------------------------------------------------------------------------
# Map sizes follow PyTorch's formulas at any input size


def _v3_sizes(h):
    h = conv_output_size(h, 3, 0, 2)                       # Conv2d_1a_3x3
    h = conv_output_size(conv_output_size(h, 3, 0, 1), 3, 1, 1)
    h = conv_output_size(h, 3, 0, 2)                       # max pool
    h = conv_output_size(conv_output_size(h, 3, 0, 1), 3, 0, 2)  # Conv2d_4a_3x3, max pool
    s2 = conv_output_size(h, 3, 0, 2)                      # Mixed_6a
    return h, s2, conv_output_size(s2, 3, 0, 2)            # Mixed_7a


def _googlenet_sizes(h):
    h = conv_output_size(h, 7, 3, 2)
    h = conv_output_size(h, 3, 0, 2, ceil_mode=True)
    h = conv_output_size(h, 3, 0, 2, ceil_mode=True)
    s2 = conv_output_size(h, 3, 0, 2, ceil_mode=True)
    return h, s2, conv_output_size(s2, 2, 0, 2, ceil_mode=True)


@settings(deadline=None, max_examples=3)
@given(h=st.integers(75, 140), w=st.integers(75, 140))
def test_inception_v3_map_sizes(h, w):
    model = models.create("inception_v3", width_multiplier=0.125, aux_logits=False)
    out, _ = _abstract_init(model, (h, w, 3), features=("stem", "stage2", "stage3"))
    sizes = tuple(zip(_v3_sizes(h), _v3_sizes(w)))
    assert (out["stem"].shape[1:3], out["stage2"].shape[1:3], out["stage3"].shape[1:3]) == sizes


@settings(deadline=None, max_examples=3)
@given(h=st.integers(31, 120), w=st.integers(31, 120))
def test_googlenet_map_sizes_with_ceil_mode_pools(h, w):
    model = models.create("googlenet", width_multiplier=0.125)
    out, _ = _abstract_init(model, (h, w, 3), features=("stem", "stage2", "stage3"))
    sizes = tuple(zip(_googlenet_sizes(h), _googlenet_sizes(w)))
    assert (out["stem"].shape[1:3], out["stage2"].shape[1:3], out["stage3"].shape[1:3]) == sizes
