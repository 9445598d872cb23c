"""Winograd F(2x2, 3x3) and F(4x4, 3x3) equal lax.conv_general_dilated (values and both gradients, all three
products in the Winograd domain or the kernel gradient only), and jaxdl.nn.Conv takes that path exactly where
winograd.tile_size says."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.nn.fast_conv import FastConv
from jaxdl.nn.winograd import kernel_grad_only, supports, tile_size, winograd_conv2d, winograd_kernel_grad_conv2d

# float32 tolerance relative to the output's largest magnitude (module docstring: ~1e-6 / ~2e-5)
TOLERANCE = {2: 2e-6, 4: 5e-5}


def stock(x, w, padding):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def relative(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("m, count, extra", [(2, 3, 0), (4, 2, 0), (4, 3, 3)])
@pytest.mark.parametrize("axis", [1, 2])
def test_tile_gradient_is_the_transpose_of_tiling(m, count, extra, axis):
    """The written-out transpose of the tile extraction (overlap-add) equals autodiff's, including rows past
    the last tile, which get no gradient; too short an input is refused."""
    from jaxdl.nn import winograd

    rng = np.random.default_rng(m + count + axis)
    shape = [2, 5, 5, 3]
    shape[axis] = m * (count + 1) + extra
    a = jnp.asarray(rng.normal(size=shape), jnp.float32)
    cot = [jnp.asarray(rng.normal(size=t.shape), jnp.float32) for t in winograd._tiles(a, axis, m, count)]
    (got,) = jax.vjp(lambda z: winograd._tiles(z, axis, m, count), a)[1](cot)
    (ref,) = jax.vjp(lambda z: winograd._tiles_fwd_only(z, axis, m, count), a)[1](tuple(cot))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(got).sum()) > 0
    with pytest.raises(ValueError, match="need"):
        winograd._tiles(a[(slice(None),) * axis + (slice(0, m * (count + 1) - 1),)], axis, m, count)


@pytest.mark.parametrize("conv", [winograd_conv2d, winograd_kernel_grad_conv2d], ids=["winograd", "kernel-grad"])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("h, w, padding", [
    (8, 8, ((1, 1), (1, 1))),     # SAME, whole tiles
    (17, 13, ((1, 1), (1, 1))),   # ragged last tile in both directions
    (16, 16, ((0, 0), (0, 0))),   # VALID
    (9, 20, ((2, 0), (0, 2))),    # asymmetric explicit padding
    (5, 6, ((1, 1), (1, 1))),     # fewer rows than one F(4x4) tile
])
def test_values_and_gradients_match_lax(conv, m, h, w, padding):
    rng = np.random.default_rng(m * 100 + h)
    x = jnp.asarray(rng.normal(size=(2, h, w, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 16, 24)) * 0.1, jnp.float32)
    y = jax.jit(conv, static_argnums=(2, 3))(x, k, padding, m)
    ref = stock(x, k, padding)
    assert y.shape == ref.shape
    assert relative(y, ref) < TOLERANCE[m]
    cot = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
    got = jax.jit(jax.grad(lambda a, b: jnp.sum(conv(a, b, padding, m) * cot), (0, 1)))(x, k)
    want = jax.grad(lambda a, b: jnp.sum(stock(a, b, padding) * cot), (0, 1))(x, k)
    for g, r in zip(got, want):
        assert relative(g, r) < TOLERANCE[m]


def test_tile_choice():
    assert tile_size((32, 32), 64, 64, jnp.float32) == 4
    assert tile_size((16, 20), 128, 128, jnp.float32) == 4
    assert tile_size((8, 8), 256, 256, jnp.float32) == 2
    assert tile_size((4, 4), 512, 512, jnp.float32) is None     # too small: stays on the other paths
    assert tile_size((32, 32), 3, 64, jnp.float32) is None       # RGB stem: matmuls too thin
    assert tile_size((32, 32), 64, 64, jnp.bfloat16) is None     # float32 only
    assert supports((3, 3), (1, 1), (1, 1), 1, ((1, 1), (1, 1)))
    assert not supports((3, 3), (2, 2), (1, 1), 1, ((1, 1), (1, 1)))
    assert not supports((3, 3), (1, 1), (2, 2), 1, ((2, 2), (2, 2)))
    assert not supports((3, 3), (1, 1), (1, 1), 2, ((1, 1), (1, 1)))
    assert not supports((5, 5), (1, 1), (1, 1), 1, ((2, 2), (2, 2)))
    assert not supports((3, 3), (1, 1), (1, 1), 1, ((3, 3), (3, 3)))
    with pytest.raises(ValueError, match="use 2 or 4"):
        winograd_conv2d(jnp.zeros((1, 8, 8, 16)), jnp.zeros((3, 3, 16, 16)), ((1, 1), (1, 1)), 3)
    with pytest.raises(ValueError, match="use 2 or 4"):
        winograd_kernel_grad_conv2d(jnp.zeros((1, 8, 8, 16)), jnp.zeros((3, 3, 16, 16)), ((1, 1), (1, 1)), 3)


def _ops(module, params, x):
    return str(jax.make_jaxpr(lambda p: module.apply(p, x))(params))


def _grad_ops(module, params, x):
    return str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2)))(params))


# route: "winograd" = all three products in the Winograd domain (no XLA conv anywhere), "kernel-grad" = XLA
# conv forward with the kernel gradient as (m + 2)^2 >= 16 Winograd GEMMs, "taps" = the custom VJP's 9 tap matmuls
@pytest.mark.parametrize("size, channels, features, route", [
    (16, 16, 16, "kernel-grad"), (8, 32, 16, "kernel-grad"),   # <= 16 output channels
    (8, 32, 32, "winograd"), (16, 16, 32, "winograd"), (16, 48, 48, "winograd"),
    (4, 32, 16, "taps"), (16, 8, 16, "taps"),                   # below 8x8 outputs or 16 input channels
])
def test_layer_routes_and_equals_flax_conv(size, channels, features, route):
    x = jnp.asarray(np.random.default_rng(size).normal(size=(2, size, size, channels)), jnp.float32)
    kw = dict(features=features, kernel_size=(3, 3), padding="SAME")
    ref = nn.Conv(**kw)
    params = ref.init(jax.random.PRNGKey(0), x)
    layer = FastConv(**kw, fast=True)
    forward, backward = _ops(layer, params, x), _grad_ops(layer, params, x)
    assert ("conv_general_dilated" not in forward) == (route == "winograd")
    assert ("conv_general_dilated" not in backward) == (route == "winograd")
    assert (backward.count("dot_general") >= 16) == (route != "taps")
    off = FastConv(**kw, fast=True, winograd=False)
    assert "conv_general_dilated" in _ops(off, params, x) and _grad_ops(off, params, x).count("dot_general") == 9
    np.testing.assert_allclose(layer.apply(params, x), ref.apply(params, x), atol=1e-4, rtol=1e-4)
    gl = jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2))(params)
    gr = jax.grad(lambda p: jnp.sum(ref.apply(p, x) ** 2))(params)
    for a, b in zip(jax.tree_util.tree_leaves(gl), jax.tree_util.tree_leaves(gr)):
        assert relative(a, b) < 5e-5


def test_kernel_grad_policy():
    assert kernel_grad_only(16) and not kernel_grad_only(32) and not kernel_grad_only(64)


def test_strided_and_half_precision_layers_keep_the_other_paths():
    x = jnp.ones((1, 16, 16, 16), jnp.float32)
    strided = FastConv(features=16, kernel_size=(3, 3), strides=2, padding="SAME", fast=True)
    assert "conv_general_dilated" in _ops(strided, strided.init(jax.random.PRNGKey(0), x), x)
    half = FastConv(features=16, kernel_size=(3, 3), padding="SAME", dtype=jnp.bfloat16, fast=True)
    assert "conv_general_dilated" in _ops(half, half.init(jax.random.PRNGKey(0), x), x)
