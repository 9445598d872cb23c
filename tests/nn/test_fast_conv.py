"""The custom-VJP convolution equals lax.conv_general_dilated (values and both gradients)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.nn import Conv
from jaxdl.nn.fast_conv import FastConv, conv2d, depthwise_conv2d

CASES = [  # (kernel, strides, padding, dilation, groups, cin, cout, H, W)
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, 4, 6, 7, 6),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1, 3, 5, 9, 8),
    ((3, 3), (2, 2), ((0, 1), (1, 0)), (1, 1), 1, 2, 4, 8, 7),   # asymmetric ("SAME" at stride 2)
    ((1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1, 4, 8, 7, 7),   # projection shortcut
    ((7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1), 1, 3, 4, 11, 10),  # ImageNet stem
    ((1, 7), (1, 1), ((0, 0), (3, 3)), (1, 1), 1, 3, 2, 5, 9),   # Inception's factorised 1x7
    ((3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 1, 3, 3, 8, 8),   # dilation
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2, 4, 6, 6, 6),   # groups (ResNeXt)
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 6, 6, 6, 7, 7),   # depthwise (MobileNet)
    ((5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, 2, 3, 9, 9),   # VALID (LeNet)
]


def stock(x, w, strides, padding, dilation, groups):
    return jax.lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


@pytest.mark.parametrize("kernel, strides, padding, dilation, groups, cin, cout, h, w", CASES)
def test_values_and_gradients_match_lax(kernel, strides, padding, dilation, groups, cin, cout, h, w):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, h, w, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(*kernel, cin // groups, cout)), jnp.float32)
    args = (strides, padding, dilation, groups)
    y = conv2d(x, k, *args)
    np.testing.assert_allclose(y, stock(x, k, *args), atol=1e-5, rtol=1e-5)
    cot = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    loss = lambda f: (lambda x_, k_: jnp.sum(f(x_, k_, *args) * cot))
    got = jax.jit(jax.grad(loss(conv2d), argnums=(0, 1)))(x, k)
    ref = jax.grad(loss(stock), argnums=(0, 1))(x, k)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)


DEPTHWISE = [  # (kernel, strides, padding, dilation, channels, multiplier, H, W)
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 5, 1, 7, 6),     # MobileNet, stride 1
    ((3, 3), (2, 2), ((0, 1), (0, 1)), (1, 1), 4, 1, 8, 7),     # stride 2, "SAME" padding
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 3, 1, 9, 9),     # stride 2, symmetric
    ((5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1), 3, 1, 6, 6),     # 5x5 (MobileNet v3 / MnasNet style)
    ((3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 2, 1, 7, 7),     # dilation
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 3, 2, 5, 5),     # channel multiplier 2
]


@pytest.mark.parametrize("kernel, strides, padding, dilation, channels, mult, h, w", DEPTHWISE)
def test_depthwise_values_and_gradients_match_lax(kernel, strides, padding, dilation, channels, mult, h, w):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, h, w, channels)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(*kernel, 1, channels * mult)), jnp.float32)
    y = depthwise_conv2d(x, k, strides, padding, dilation)
    ref_y = stock(x, k, strides, padding, dilation, channels)
    assert y.shape == ref_y.shape
    np.testing.assert_allclose(y, ref_y, atol=1e-5, rtol=1e-5)
    cot = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    got = jax.jit(jax.grad(lambda x_, k_: jnp.sum(depthwise_conv2d(x_, k_, strides, padding, dilation) * cot),
                           argnums=(0, 1)))(x, k)
    ref = jax.grad(lambda x_, k_: jnp.sum(stock(x_, k_, strides, padding, dilation, channels) * cot),
                   argnums=(0, 1))(x, k)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)


def test_depthwise_layer_takes_the_tap_sum_path():
    """FastConv with feature_group_count == Cin computes without any conv op (and equals nn.Conv)."""
    layer = dict(features=6, kernel_size=(3, 3), strides=2, padding="SAME", feature_group_count=6)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 9, 9, 6)), jnp.float32)
    fast, ref = FastConv(**layer, fast=True), nn.Conv(**layer)
    params = ref.init(jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(fast.apply(params, x), ref.apply(params, x), atol=1e-5)
    program = str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(fast.apply(p, x) ** 2)))(params))
    assert "conv_general_dilated" not in program


def test_bfloat16_kernel_gradient_accumulates_in_float32():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(8, 8, 8, 16)), jnp.bfloat16)
    k = jnp.asarray(rng.normal(size=(3, 3, 16, 8)) * 0.1, jnp.bfloat16)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    g = jax.grad(lambda k_: jnp.sum(conv2d(x, k_, *args).astype(jnp.float32)))(k)
    r = jax.grad(lambda k_: jnp.sum(stock(x.astype(jnp.float32), k_.astype(jnp.float32), *args)))(k)
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g, np.float32), r, rtol=2e-2, atol=2e-1)


@pytest.mark.parametrize("kw", [dict(features=5, kernel_size=(3, 3), strides=2, padding="SAME"),
                                dict(features=4, kernel_size=(3, 3), padding=1, use_bias=False,
                                     feature_group_count=2),
                                dict(features=3, kernel_size=(5, 5), padding="VALID", kernel_dilation=2)])
def test_fast_conv_layer_equals_flax_conv(kw):
    assert Conv is FastConv and issubclass(FastConv, nn.Conv)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 11, 11, 4)), jnp.float32)
    fast, ref = FastConv(**kw, fast=True), nn.Conv(**kw)
    params = ref.init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_structure(fast.init(jax.random.PRNGKey(0), x)) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(fast.apply(params, x), ref.apply(params, x), atol=1e-5)
    gf = jax.grad(lambda p: jnp.sum(fast.apply(p, x) ** 2))(params)
    gr = jax.grad(lambda p: jnp.sum(ref.apply(p, x) ** 2))(params)
    for a, b in zip(jax.tree_util.tree_leaves(gf), jax.tree_util.tree_leaves(gr)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    # fast=False is the stock layer: no custom_vjp in its program
    stock_jaxpr = str(jax.make_jaxpr(lambda p: FastConv(**kw, fast=False).apply(p, x))(params))
    fast_jaxpr = str(jax.make_jaxpr(lambda p: fast.apply(p, x))(params))
    assert "custom_vjp" in fast_jaxpr and "custom_vjp" not in stock_jaxpr


@pytest.mark.parametrize("env, expect", [
    ({}, {"custom_vjp": True, "winograd": True}),
    ({"JAXDL_WINOGRAD": "0"}, {"custom_vjp": True, "winograd": False}),
    ({"JAXDL_FAST_CONV": "off"}, {"custom_vjp": False, "winograd": False}),
])
def test_environment_switches_select_the_conv_path(env, expect):
    """JAXDL_FAST_CONV=0 gives stock convs everywhere, JAXDL_WINOGRAD=0 only drops the Winograd path
    (read when jaxdl.nn is imported, so each case is a fresh interpreter)."""
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import json, jax, jax.numpy as jnp\n"
        "from jaxdl.nn import fast_conv\n"
        "def program(kernel):\n"
        "    conv = fast_conv.FastConv(16, (kernel, kernel), strides=(2, 2) if kernel == 1 else (1, 1))\n"
        "    x = jnp.ones((1, 16, 16, 16))\n"
        "    v = conv.init(jax.random.key(0), x)\n"
        "    return str(jax.make_jaxpr(jax.grad(lambda p: conv.apply(p, x).sum()))(v))\n"
        "strided, three = program(1), program(3)\n"
        # the custom VJP's kernel gradient is 9 per-tap matmuls (stock: a conv); Winograd's (here the kernel
        # gradient only, 16 channels) is (m + 2)^2 = 36 GEMMs
        "print(json.dumps({'custom_vjp': 'dot_general' in strided,\n"
        "                  'winograd': three.count('dot_general') >= 16}))\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("JAXDL_FAST_CONV", "JAXDL_WINOGRAD")}
    done = subprocess.run([sys.executable, "-c", probe], env={**clean, "JAX_PLATFORMS": "cpu", **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expect


@pytest.mark.parametrize("size, channels", [(8, 4), (16, 16)])  # the tap-matmul VJP; the Winograd kernel-gradient VJP
def test_reverse_mode_only_and_the_stock_layer_for_forward_mode(size, channels):
    """The custom paths are reverse-mode (and vmap) only, as FastConv's docstring says; fast=False gives forward mode."""
    x = jnp.asarray(np.random.default_rng(size).normal(size=(2, size, size, channels)), jnp.float32)
    fast = FastConv(features=channels, kernel_size=(3, 3), padding="SAME", fast=True)
    stock = FastConv(features=channels, kernel_size=(3, 3), padding="SAME", fast=False)
    params = stock.init(jax.random.PRNGKey(0), x)
    tangent = jax.tree_util.tree_map(jnp.ones_like, params)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda p: fast.apply(p, x), (params,), (tangent,))
    _, jvp_stock = jax.jvp(lambda p: stock.apply(p, x), (params,), (tangent,))
    # the stock layer's directional derivative equals the fast layer's reverse-mode gradient dotted with the tangent
    cot = jnp.asarray(np.random.default_rng(1).normal(size=jvp_stock.shape), jnp.float32)
    grad = jax.grad(lambda p: jnp.sum(fast.apply(p, x) * cot))(params)
    dot = sum(jnp.sum(g * t) for g, t in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(tangent)))
    np.testing.assert_allclose(float(jnp.sum(jvp_stock * cot)), float(dot), rtol=1e-4)
