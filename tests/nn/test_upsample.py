"""Transposed convolution (torch geometry) and bilinear upsampling: numpy reference, torch parity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.nn import (bilinear_kernel, bilinear_kernel_init, bilinear_upsample, conv_transpose2d,
                      transposed_conv_output_size, upsample_geometry)


def numpy_conv_transpose(x, w_torch, b, s, p, op):
    """Direct definition: every input pixel adds its value times the kernel at stride s."""
    n, h, wd, cin = x.shape
    _, cout, k, _ = w_torch.shape
    full_h, full_w = (h - 1) * s + k + op, (wd - 1) * s + k + op
    out = np.zeros((n, full_h, full_w, cout), np.float64)
    for i in range(h):
        for j in range(wd):
            out[:, i * s:i * s + k, j * s:j * s + k] += np.einsum("nc,coab->nabo", x[:, i, j], w_torch)
    oh = transposed_conv_output_size(h, k, p, s, op)
    ow = transposed_conv_output_size(wd, k, p, s, op)
    return out[:, p:p + oh, p:p + ow] + b


@pytest.mark.parametrize("k, s, p, op", [(3, 2, 1, 1), (4, 2, 1, 0), (3, 1, 1, 0), (5, 3, 2, 2), (2, 2, 0, 0)])
def test_conv_transpose_matches_numpy(k, s, p, op):
    rng = np.random.default_rng(k + s + p + op)
    x = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    layer = conv_transpose2d(6, k, s, p, op)
    variables = layer.init(jax.random.PRNGKey(0), x)
    kernel = np.asarray(variables["params"]["kernel"])
    assert kernel.shape == (k, k, 6, 3)
    bias = rng.normal(size=6).astype(np.float32)
    variables = {"params": {"kernel": kernel, "bias": jnp.asarray(bias)}}
    y = np.asarray(layer.apply(variables, x))
    ref = numpy_conv_transpose(x, kernel.transpose(3, 2, 0, 1), bias, s, p, op)
    assert y.shape == ref.shape == (2, transposed_conv_output_size(4, k, p, s, op),
                                    transposed_conv_output_size(5, k, p, s, op), 6)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_bilinear_kernel_values():
    # Size 4 (factor 2): taps 0.25, 0.75, 0.75, 0.25 (FCN's upsample_filt).
    np.testing.assert_allclose(bilinear_kernel(4)[0], np.array([0.25, 0.75, 0.75, 0.25]) * 0.25)
    np.testing.assert_allclose(bilinear_kernel(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    assert upsample_geometry(32) == (64, 16) and upsample_geometry(3) == (5, 1)


@pytest.mark.parametrize("factor", [2, 3, 8])
def test_bilinear_upsample_equals_diagonal_transposed_conv(factor):
    x = jnp.asarray(np.random.default_rng(factor).normal(size=(2, 3, 4, 3)), jnp.float32)
    k, p = upsample_geometry(factor)
    layer = conv_transpose2d(3, k, factor, p, use_bias=False, kernel_init=bilinear_kernel_init)
    learned = layer.apply(layer.init(jax.random.PRNGKey(0), x), x)
    fixed = bilinear_upsample(x, factor)
    assert fixed.shape == (2, 3 * factor, 4 * factor, 3)
    np.testing.assert_allclose(np.asarray(fixed), np.asarray(learned), atol=1e-5)


def test_bilinear_upsample_interpolates():
    # Away from the border, upsampling a linear ramp by 2 gives the ramp at half steps; a constant
    # stays constant (the filter's taps at each phase sum to 1).
    ramp = jnp.tile(jnp.arange(8, dtype=jnp.float32)[None, :, None, None], (1, 1, 1, 1)).transpose(0, 2, 1, 3)
    ramp = jnp.broadcast_to(ramp, (1, 8, 8, 1))
    up = np.asarray(bilinear_upsample(ramp, 2))[0, 4, 2:-2, 0]
    np.testing.assert_allclose(np.diff(up), 0.5, atol=1e-6)
    const = np.asarray(bilinear_upsample(jnp.ones((1, 6, 6, 2)), 4))[0, 4:-4, 4:-4]
    np.testing.assert_allclose(const, 1.0, atol=1e-6)


def test_bad_input():
    with pytest.raises(ConfigError, match="square"):
        bilinear_kernel_init(None, (3, 4, 1, 1))
    with pytest.raises(ConfigError, match="output_padding"):
        conv_transpose2d(4, 3, 2, 1, 2)
    with pytest.raises(ConfigError, match="factor"):
        upsample_geometry(0)


@pytest.mark.parametrize("k, s, p, op", [(3, 2, 1, 1), (4, 2, 1, 0), (16, 8, 4, 0)])
def test_torch_parity(k, s, p, op):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    w = rng.normal(size=(5, 4, k, k)).astype(np.float32)     # torch layout [Cin, Cout, kh, kw]
    b = rng.normal(size=4).astype(np.float32)
    layer = conv_transpose2d(4, k, s, p, op)
    y = layer.apply({"params": {"kernel": jnp.asarray(w.transpose(2, 3, 1, 0)), "bias": jnp.asarray(b)}}, x)
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(w),
                                               torch.from_numpy(b), stride=s, padding=p, output_padding=op)
    np.testing.assert_allclose(np.asarray(y), ref.numpy().transpose(0, 2, 3, 1), atol=1e-4)
