"""DenseNet (Huang et al. 2017): parameter counts, channel arithmetic, dense connectivity,
memory-efficient remat, dropout and taps. Big models only through ``jax.eval_shape``."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models.densenet import DenseLayer, DenseNet, Transition
from jaxdl.models.introspect import abstract_variables

@pytest.fixture(autouse=True, scope="module")
def _classic_threefry():
    # XLA:CPU (jax 0.10) compiles the partitionable threefry ~2.5 s per distinct random shape, and
    # a dropout DenseNet has several; the classic scheme compiles in a fraction of that. No test
    # here depends on the random values themselves.
    with jax.threefry_partitionable(False):
        yield


TORCHVISION = {"densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928,
               "densenet161": 28_681_000}
# Table 1 of the paper: (k, layers per block); initial features 2k.
TABLE1 = {"densenet121": (32, (6, 12, 24, 16)), "densenet169": (32, (6, 12, 32, 32)),
          "densenet201": (32, (6, 12, 48, 32)), "densenet161": (48, (6, 12, 36, 24)),
          "densenet264": (32, (6, 12, 64, 48))}


def closed_form_params(k, blocks, *, init, bn_size=4, compression=0.5, stem="imagenet", num_classes=1000):
    """Parameter count written out layer by layer from the paper's description (BN: 2 per channel)."""
    total = 7 * 7 * 3 * init + 2 * init if stem == "imagenet" else 3 * 3 * 3 * init
    c = init
    for i, n in enumerate(blocks):
        for _ in range(n):
            if bn_size:
                total += 2 * c + c * bn_size * k + 2 * bn_size * k + 9 * bn_size * k * k
            else:
                total += 2 * c + 9 * c * k
            c += k
        if i < len(blocks) - 1:
            out = math.floor(c * compression)
            total += 2 * c + c * out
            c = out
    return total + 2 * c + c * num_classes + num_classes


def expected_channels(init, k, blocks, compression):
    chans, c = [], init
    for i, n in enumerate(blocks):
        c += n * k
        if i < len(blocks) - 1:
            c = math.floor(c * compression)
        chans.append(c)
    return chans


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_imagenet_counts_match_torchvision_exactly(name):
    assert models.count_params(name) == TORCHVISION[name]
    k, blocks = TABLE1[name]
    assert closed_form_params(k, blocks, init=2 * k) == TORCHVISION[name]  # the closed form is right


def test_densenet264_count_is_the_table1_computation():
    k, blocks = TABLE1["densenet264"]
    expected = closed_form_params(k, blocks, init=2 * k)
    info = models.info("densenet264")
    assert models.count_params("densenet264") == expected == info.num_params
    assert info.params_exact and "Table 1" in info.params_reference


def test_cifar_counts_against_table2():
    # DenseNet-BC L=100 k=12: paper 0.8M (one decimal); L=190 k=40: 25.6M.
    small = models.count_params("densenet_bc_100_k12")
    assert small == closed_form_params(12, (16, 16, 16), init=24, stem="cifar", num_classes=10)
    assert abs(small - 0.8e6) < 0.05e6
    assert small == models.info("densenet_bc_100_k12").num_params
    big = models.count_params("densenet_bc_190_k40")
    assert big == closed_form_params(40, (31, 31, 31), init=80, stem="cifar", num_classes=10)
    assert abs(big - 25.6e6) / 25.6e6 < 0.01


@pytest.mark.parametrize("depth,k,blocks,bn_size,compression,init,paper", [
    (40, 12, (12, 12, 12), 0, 1.0, 16, 1.0e6),     # DenseNet without bottleneck/compression: 16 initial channels
])
def test_other_table2_rows_at_paper_precision(depth, k, blocks, bn_size, compression, init, paper):
    count = models.count_params("densenet_bc_100_k12", growth_rate=k, block_config=blocks, bn_size=bn_size,
                                compression=compression, num_init_features=init)
    assert abs(count - paper) < 0.05e6, (depth, k, count)


@pytest.mark.parametrize("name", ["densenet121", "densenet161"])
def test_imagenet_taps_channels_and_strides(name):
    k, blocks = TABLE1[name]
    taps = {t.name: t for t in models.feature_info(name)}
    assert set(taps) == {"stem", "stage1", "stage2", "stage3", "stage4", "pre_logits", "logits"}
    assert (taps["stem"].channels, taps["stem"].stride) == (2 * k, 4)
    chans = expected_channels(2 * k, k, blocks, 0.5)
    assert [taps[f"stage{i}"].channels for i in range(1, 5)] == chans
    assert [taps[f"stage{i}"].stride for i in range(1, 5)] == [8, 16, 32, 32]
    assert taps["pre_logits"].shape == (chans[-1],) and taps["logits"].shape == (1000,)


def test_densenet121_channel_numbers():
    # Spelled out: 64 + 6*32 = 256 -> 128; 128 + 12*32 = 512 -> 256; 256 + 24*32 = 1024 -> 512; 512 + 16*32.
    info = models.feature_info("densenet121", taps=("stage1", "stage2", "stage3", "stage4"))
    taps = {t.name: t.channels for t in info}
    assert taps == {"stage1": 128, "stage2": 256, "stage3": 512, "stage4": 1024}


def test_cifar_taps():
    taps = {t.name: t for t in models.feature_info("densenet_bc_100_k12")}
    assert set(taps) == {"stem", "stage1", "stage2", "stage3", "pre_logits", "logits"}
    # 24 -> 24 + 16*12 = 216 -> 108 -> 300 -> 150 -> 342
    assert [(taps[n].channels, taps[n].stride) for n in ("stem", "stage1", "stage2", "stage3")] == \
        [(24, 1), (108, 2), (150, 4), (342, 4)]


@settings(deadline=None, max_examples=8)
@given(k=st.integers(1, 6), blocks=st.lists(st.integers(1, 3), min_size=1, max_size=4),
       compression=st.sampled_from([0.5, 0.3, 0.75, 1.0]), init=st.integers(1, 9))
def test_channel_arithmetic_property(k, blocks, compression, init):
    if min(expected_channels(init, k, blocks, compression)) < 1:  # compression left nothing
        with pytest.raises(ConfigError):
            models.feature_info("densenet121", input_shape=(32, 32, 3), growth_rate=k, block_config=tuple(blocks),
                                compression=compression, num_init_features=init)
        return
    taps = models.feature_info("densenet121", input_shape=(32, 32, 3), growth_rate=k, block_config=tuple(blocks),
                               compression=compression, num_init_features=init)
    by_name = {t.name: t for t in taps}
    n = len(blocks)
    assert by_name["stem"].channels == init
    assert [by_name[f"stage{i + 1}"].channels for i in range(n)] == expected_channels(init, k, blocks, compression)
    assert [by_name[f"stage{i + 1}"].stride for i in range(n)] == [4 * 2 ** min(i + 1, n - 1) for i in range(n)]


def test_dense_connectivity_in_kernel_shapes():
    params = abstract_variables("densenet121")["params"]
    c = 64
    for i, n in enumerate((6, 12, 24, 16), start=1):
        for j in range(n):
            layer = params[f"stage{i}_layer{j}"]
            assert layer["conv1"]["kernel"].shape == (1, 1, c + 32 * j, 128)  # sees every earlier output
            assert layer["conv2"]["kernel"].shape == (3, 3, 128, 32)
        c += 32 * n
        if i < 4:
            assert params[f"transition{i}"]["conv"]["kernel"].shape == (1, 1, c, c // 2)
            c //= 2
    assert params["final_norm"]["scale"].shape == (1024,) and params["head"]["kernel"].shape == (1024, 1000)
    assert params["stem_conv"]["kernel"].shape == (7, 7, 3, 64)
    # no conv has a bias (torchvision layout)
    assert not any("bias" in layer.get("conv1", {}) for layer in params.values() if isinstance(layer, dict))


def _bn_eval(x, p, eps=1e-5):
    # Freshly initialised running statistics: mean 0, variance 1.
    return x / np.sqrt(1.0 + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _conv(x, kernel, pad):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_dense_layer_and_transition_numerics():
    """Concatenation order [earliest, ..., latest] (torchvision's) and BN-ReLU-conv order."""
    keys = jax.random.split(jax.random.key(0), 4)
    a = jax.random.normal(keys[0], (2, 6, 6, 3))
    b = jax.random.normal(keys[1], (2, 6, 6, 2))
    layer = DenseLayer(growth_rate=4, bn_size=2)
    v = jax.jit(layer.init)(keys[2], [a, b])
    # Non-trivial BN affine parameters so the reference sees them.
    v = {**v, "params": jax.tree_util.tree_map(lambda t: t + 0.3 * jax.random.normal(keys[3], t.shape), v["params"])}
    p = v["params"]
    out = jax.jit(layer.apply)(v, [a, b])
    z = jnp.concatenate([a, b], -1)
    h = _conv(jax.nn.relu(_bn_eval(z, p["norm1"])), p["conv1"]["kernel"], 0)
    ref = _conv(jax.nn.relu(_bn_eval(h, p["norm2"])), p["conv2"]["kernel"], 1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 6, 6, 4)

    t = Transition(out_channels=3)
    vt = jax.jit(t.init)(keys[2], z)
    y = jax.jit(t.apply)(vt, z)
    h = _conv(jax.nn.relu(_bn_eval(z, vt["params"]["norm"])), vt["params"]["conv"]["kernel"], 0)
    ref = h.reshape(2, 3, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


TINY = dict(num_classes=5, growth_rate=4, block_config=(2, 3), stem="cifar")


def _random_variables(model, x):
    """Random variables filled with numpy (nothing to compile), BN variances positive."""
    shapes = jax.eval_shape(model.init, jax.random.key(1), x)
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        if "var" in jax.tree_util.keystr(path):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
        return jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), jnp.float32)
    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def tiny():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    return x, _random_variables(DenseNet(**TINY), x)


def _loss(model, variables, x):
    def f(params):
        out, state = model.apply({**variables, "params": params}, x, train=True, rngs={"dropout": jax.random.key(3)},
                                 mutable=["batch_stats"])
        return (out ** 2).sum(), state
    return f


def test_memory_efficient_same_results_and_remat(tiny):
    x = tiny[0][:, :4, :4]
    cfg = dict(num_classes=3, growth_rate=3, block_config=(3,), stem="cifar", dropout_rate=0.2)
    plain, remat = DenseNet(**cfg), DenseNet(memory_efficient=True, **cfg)
    v = _random_variables(plain, x)
    abstract = jax.eval_shape(remat.init, jax.random.key(1), x)
    assert jax.tree_util.tree_structure(abstract) == jax.tree_util.tree_structure(v)
    (la, sa), ga = jax.jit(jax.value_and_grad(_loss(plain, v, x), has_aux=True))(v["params"])
    (lb, sb), gb = jax.jit(jax.value_and_grad(_loss(remat, v, x), has_aux=True))(v["params"])
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    for u, w in zip(jax.tree_util.tree_leaves((ga, sa)), jax.tree_util.tree_leaves((gb, sb))):
        np.testing.assert_allclose(u, w, rtol=1e-4, atol=1e-5)

    def has_remat(model):
        text = str(jax.make_jaxpr(jax.grad(lambda p: _loss(model, v, x)(p)[0]))(v["params"]))
        return "remat" in text or "checkpoint" in text
    assert has_remat(remat) and not has_remat(plain)


def test_dropout_train_vs_eval(tiny):
    x, v = tiny

    def run(key, rate, train):
        return DenseNet(dropout_rate=rate, **TINY).apply(v, x, train=train, rngs={"dropout": key},
                                                         mutable=["batch_stats"])[0]
    run = jax.jit(run, static_argnums=(1, 2))
    k1, k2 = jax.random.key(1), jax.random.key(2)
    assert not np.allclose(run(k1, 0.5, True), run(k2, 0.5, True))
    np.testing.assert_array_equal(run(k1, 0.5, False), run(k2, 0.5, False))
    np.testing.assert_array_equal(run(k1, 0.0, True), run(k2, 0.0, True))


def test_frozen_bn_keeps_statistics(tiny):
    x, v = tiny

    @functools.partial(jax.jit, static_argnums=0)
    def stats(frozen):
        return DenseNet(frozen_bn=frozen, **TINY).apply(v, x, train=True, mutable=["batch_stats"])[1]
    moved, kept = stats(False), stats(True)
    leaves = jax.tree_util.tree_leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(kept["batch_stats"]), leaves(v["batch_stats"])))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(moved["batch_stats"]), leaves(v["batch_stats"])))


def test_taps_stop_early_and_headless(tiny):
    x, v = tiny
    model = DenseNet(**TINY)
    built = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, features=("stem",)), x)
    assert set(built["params"]) == {"stem_conv"}  # nothing past the requested tap was built
    out = jax.eval_shape(lambda v, x: model.apply(v, x, features=("stage1",)), v, x)
    assert set(out) == {"stage1"} and out["stage1"].shape == (2, 4, 4, 8)  # floor((8 + 2*4) / 2)
    headless = DenseNet(**{**TINY, "num_classes": 0})
    feats, variables = jax.eval_shape(lambda x: headless.init_with_output(jax.random.key(0), x), x)
    assert feats.shape == (2, 8 + 3 * 4) and "head" not in variables["params"]


@pytest.mark.parametrize("overrides,shape", [
    (dict(), (1, 16, 16, 3)),                       # ImageNet stem, 4 blocks: needs >= 32x32
    (dict(compression=0.0), (1, 32, 32, 3)),
    (dict(stem="mnist"), (1, 32, 32, 3)),
    (dict(block_config=()), (1, 32, 32, 3)),
])
def test_bad_configuration_raises(overrides, shape):
    model = models.create("densenet121", **overrides)
    with pytest.raises(ConfigError):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct(shape, jnp.float32))
