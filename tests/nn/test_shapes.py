"""conv_output_size / transposed_conv_output_size against flax's own layers (shape-only)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from hypothesis import assume, given, settings, strategies as st

from jaxdl.nn import conv_output_size, transposed_conv_output_size

SETTINGS = settings(deadline=None, max_examples=50)
sizes = st.integers(1, 40)
kernels = st.integers(1, 7)
pads = st.integers(0, 3)
strides = st.integers(1, 4)
dilations = st.integers(1, 3)


def _conv_out(w, f, p, s, d):
    layer = nn.Conv(1, (f, f), strides=(s, s), padding=((p, p), (p, p)), kernel_dilation=(d, d))
    x = jax.ShapeDtypeStruct((1, w, w, 1), jnp.float32)
    out, _ = jax.eval_shape(layer.init_with_output, jax.random.key(0), x)
    return out.shape[1]


def _pool_out(w, f, p, s, extra_right=0):
    x = jax.ShapeDtypeStruct((1, w, w, 1), jnp.float32)
    pad = ((p, p + extra_right), (p, p + extra_right))
    return jax.eval_shape(lambda x: nn.max_pool(x, (f, f), strides=(s, s), padding=pad), x).shape[1]


@SETTINGS
@given(sizes, kernels, pads, strides, dilations)
def test_conv_output_size_matches_flax_conv(w, f, p, s, d):
    f_eff = d * (f - 1) + 1
    assume(w + 2 * p >= f_eff)
    assert conv_output_size(w, f, p, s, dilation=d) == _conv_out(w, f, p, s, d)


@SETTINGS
@given(sizes, kernels, pads, strides)
def test_conv_output_size_matches_flax_max_pool(w, f, p, s):
    assume(w + 2 * p >= f)
    assert conv_output_size(w, f, p, s) == _pool_out(w, f, p, s)


@SETTINGS
@given(sizes, kernels, pads, strides)
def test_ceil_mode_is_pytorchs_rule(w, f, p, s):
    """ceil_mode counts every window that starts inside the input or the left padding and
    needs fewer than `s` cells of extra right padding; max_pool with that padding agrees."""
    assume(w + 2 * p >= f and p <= f // 2)  # PyTorch's pooling needs pad <= kernel // 2
    out = conv_output_size(w, f, p, s, ceil_mode=True)
    starts = [i * s for i in range(w + 2 * p + 1) if i * s + f <= w + 2 * p + s - 1 and i * s < w + p]
    assert out == len(starts)
    floor_out = conv_output_size(w, f, p, s)
    assert floor_out <= out <= floor_out + 1
    extra = max(0, (out - 1) * s + f - (w + 2 * p))
    assert extra < s
    assert _pool_out(w, f, p, s, extra_right=extra) == out


@SETTINGS
@given(sizes, kernels, pads, strides, st.integers(0, 3), st.integers(1, 2))
def test_transposed_conv_output_size_matches_flax(w, f, p, s, output_padding, d):
    f_eff = d * (f - 1) + 1
    # PyTorch padding p is flax padding (f_eff - 1 - p) on the dilated input; needs p <= f_eff - 1.
    assume(p <= f_eff - 1 and output_padding < max(s, d))
    q = f_eff - 1 - p
    layer = nn.ConvTranspose(1, (f, f), strides=(s, s), kernel_dilation=(d, d),
                             padding=((q, q + output_padding), (q, q + output_padding)))
    x = jax.ShapeDtypeStruct((1, w, w, 1), jnp.float32)
    out, _ = jax.eval_shape(layer.init_with_output, jax.random.key(0), x)
    if out.shape[1] < 1:  # padding ate everything: an error, not a zero-size axis
        with pytest.raises(ValueError, match="reduce the padding"):
            transposed_conv_output_size(w, f, p, s, output_padding, dilation=d)
    else:
        assert transposed_conv_output_size(w, f, p, s, output_padding, dilation=d) == out.shape[1]


@pytest.mark.parametrize("args, kw, expected", [
    ((32, 5, 0, 1), {}, 28),                       # LeNet-5 C1
    ((224, 11, 2, 4), {}, 55),                     # torchvision AlexNet conv1
    ((112, 3, 1, 2), {}, 56),                      # ResNet stem max-pool
    ((112, 3, 0, 2), {"ceil_mode": True}, 56),     # GoogLeNet maxpool1 (floor gives 55)
    ((112, 3, 0, 2), {}, 55),
    ((5, 2, 1, 2), {"ceil_mode": True}, 3),        # last window would start in the right padding
    ((7, 3, 2, 1), {"dilation": 2}, 7),
])
def test_known_sizes(args, kw, expected):
    assert conv_output_size(*args, **kw) == expected


def test_known_transposed_sizes():
    assert transposed_conv_output_size(7, 4, 1, 2) == 14            # DCGAN-style upsampling x2
    assert transposed_conv_output_size(7, 3, 1, 2, output_padding=1) == 14
    assert transposed_conv_output_size(7, 3, 1, 2) == 13


@pytest.mark.parametrize("args, kw, match", [
    ((3, 5, 0, 1), {}, "does not fit"),
    ((0, 3, 0, 1), {}, "input size"),
    ((8, 3, -1, 1), {}, "padding"),
    ((8, 3, 0, 0), {}, "stride"),
    ((8, 3, 0, 1), {"dilation": 0}, "dilation"),
    ((2, 2, 0, 1), {"dilation": 2}, "does not fit"),
    ((8, 2, 2, 2), {"ceil_mode": True}, "half the window"),
])
def test_impossible_sizes_raise(args, kw, match):
    with pytest.raises(ValueError, match=match):
        conv_output_size(*args, **kw)


def test_transposed_impossible_sizes_raise():
    with pytest.raises(ValueError, match="output_padding"):
        transposed_conv_output_size(4, 3, 0, 2, output_padding=2)
    with pytest.raises(ValueError, match="reduce the padding"):
        transposed_conv_output_size(1, 1, 1, 1)


def test_non_integer_is_type_error():
    with pytest.raises(TypeError, match="integer"):
        conv_output_size(8.0, 3, 0, 1)
