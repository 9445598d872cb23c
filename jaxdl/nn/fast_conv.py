"""A convolution with a custom VJP whose kernel gradient is a set of matmuls (fast on XLA:CPU).

XLA's CPU backend lowers the kernel gradient of a convolution (a convolution whose "batch" is
the input channels and whose "features" are the output channels, contracted over N*H*W) to a
slow generic loop nest. The same quantity is a sum of matrix products: for each kernel tap
``(i, j)``, ``dW[i, j] = X_ij^T @ dY`` with ``X_ij`` the input window shifted by the tap
(strided by the stride, dilated by the dilation), ``[N*Ho*Wo, Cin] x [N*Ho*Wo, Cout]``.
Matmuls run on the CPU's tuned GEMM. The input gradient stays XLA's own transposed convolution
(a forward-style conv with the flipped kernel, already fast). The forward pass is unchanged.

Numerically this is the same sum in another order: equal to ``lax.conv_general_dilated``'s
gradients within float rounding (tests/nn/test_fast_conv.py, strides, padding, groups, dilation).

:class:`FastConv` is ``flax.linen.Conv`` with this primitive (same params, same names), used as
``jaxdl.nn.Conv`` on the CPU backend; ``JAXDL_FAST_CONV=0`` selects stock ``nn.Conv``. On the same
backend, float32 3x3 stride-1 convs with at least 16 channels and 8x8 outputs take the Winograd
path instead (:mod:`jaxdl.nn.winograd`: all three products, or the kernel gradient only for convs
with at most 16 output channels; ``JAXDL_WINOGRAD=0`` or ``FastConv(winograd=False)`` turns only that
off), and depthwise convs (``feature_group_count == Cin``, MobileNet) are sums of shifted
inputs times per-channel taps (:func:`depthwise_conv2d`).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.nn import winograd
from jaxdl.nn._env import switch

__all__ = ["conv2d", "depthwise_conv2d", "FastConv", "fast_conv_enabled"]

_DIMS = ("NHWC", "HWIO", "NHWC")


def fast_conv_enabled() -> bool:
    """True unless the environment says ``JAXDL_FAST_CONV=0`` (read once, when jaxdl.nn is imported)."""
    return _ENABLED


_ENABLED = switch("JAXDL_FAST_CONV")


def _forward(x, w, strides, padding, dilation, groups):
    return lax.conv_general_dilated(x, w, window_strides=strides, padding=padding, rhs_dilation=dilation,
                                    dimension_numbers=_DIMS, feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: tuple[tuple[int, int], ...],
           dilation: tuple[int, int], groups: int) -> jax.Array:
    """NHWC x HWIO convolution. x: [N, H, W, Cin], w: [kh, kw, Cin / groups, Cout] -> [N, Ho, Wo, Cout].
    ``padding`` is explicit ``((top, bottom), (left, right))``."""
    return _forward(x, w, strides, padding, dilation, groups)


def _fwd(x, w, strides, padding, dilation, groups):
    return _forward(x, w, strides, padding, dilation, groups), (x, w)


def _tap_window(xp: jax.Array, i: int, j: int, ho: int, wo: int, strides, dilation) -> jax.Array:
    """The ``[N, Ho, Wo, C]`` input values that kernel tap ``(i, j)`` multiplies: padded input ``xp``
    shifted by the (dilated) tap and strided by the stride."""
    r, c = i * dilation[0], j * dilation[1]
    return lax.slice(xp, (0, r, c, 0), (xp.shape[0], r + (ho - 1) * strides[0] + 1, c + (wo - 1) * strides[1] + 1,
                                        xp.shape[3]), (1, strides[0], strides[1], 1))


def _kernel_grad(x, dy, w_shape, strides, padding, dilation, groups):
    """dW as one matmul per kernel tap: dW[i, j] = X_ij^T @ dY (see the module docstring).

    Measured on a 2-core AMD EPYC (shared), 3x3 conv, 128 -> 128 channels, batch 64 at 32x32:
    2.85 s stock kernel gradient vs 1.54 s for these 9 matmuls; one big im2col matmul
    (concatenated windows, [M, 9 Cin]) took 2.04 s (the 9x copy costs more than it saves).
    """
    kh, kw, cin_g, cout = w_shape
    n, ho, wo, _ = dy.shape
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    m = n * ho * wo
    dy_g = dy.reshape(m, groups, cout // groups)
    taps = []
    for i in range(kh):
        for j in range(kw):
            window = _tap_window(xp, i, j, ho, wo, strides, dilation)
            if groups == 1:  # a plain 2-d GEMM: [M, Cin]^T [M, Cout] (a batched dot of 1 is slower on CPU)
                taps.append(lax.dot_general(window.reshape(m, cin_g), dy_g.reshape(m, cout),
                                            (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)[None])
                continue
            window = window.reshape(m, groups, cin_g)
            # contract M, batch over groups: [G, Cin/G, Cout/G], accumulated in float32
            taps.append(lax.dot_general(window, dy_g, (((0,), (0,)), ((1,), (1,))),
                                        preferred_element_type=jnp.float32))
    dw = jnp.stack(taps).reshape(kh, kw, groups, cin_g, cout // groups)
    return jnp.moveaxis(dw, 2, 3).reshape(kh, kw, cin_g, cout)


def _bwd(strides, padding, dilation, groups, residuals, dy):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x_: _forward(x_, w, strides, padding, dilation, groups), x)
    (dx,) = input_vjp(dy)  # XLA's transposed conv (flipped kernel): already fast on CPU
    dw = _kernel_grad(x, dy, w.shape, strides, padding, dilation, groups).astype(w.dtype)
    return dx, dw


conv2d.defvjp(_fwd, _bwd)


def depthwise_conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int], padding: tuple[tuple[int, int], ...],
                     dilation: tuple[int, int]) -> jax.Array:
    """Depthwise NHWC conv (``feature_group_count == Cin``) as a sum of shifted inputs times per-channel taps.

    x: [N, H, W, C], w: [kh, kw, 1, C * m] (channel multiplier m, output channel ``c * m + j`` reads
    input channel c, as ``lax.conv_general_dilated``) -> [N, Ho, Wo, C * m]. Every term is
    elementwise, so the forward pass and both gradients (autodiff: shifted sums and reductions)
    are fused loops. XLA:CPU runs depthwise convs as grouped convs through a slow generic path:
    a 3x3 depthwise conv at 32x32x64, batch 64, took 2,239 ms forward + backward stock, 609 ms
    with the per-tap kernel gradient and 176 ms this way (docs/performance.md, "Depthwise convs").
    Products accumulate in float32.
    """
    kh, kw, _, cout = w.shape
    n, _, _, cin = x.shape
    mult = cout // cin
    acc = jnp.promote_types(x.dtype, jnp.float32)
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0))).astype(acc)
    ho = (xp.shape[1] - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    wo = (xp.shape[2] - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    taps = w.astype(acc).reshape(kh, kw, cin, mult)
    y = None
    for i in range(kh):
        for j in range(kw):
            window = _tap_window(xp, i, j, ho, wo, strides, dilation)
            term = window[..., None] * taps[i, j] if mult > 1 else window * taps[i, j, :, 0]
            y = term if y is None else y + term
    return y.reshape(n, ho, wo, cout).astype(jnp.result_type(x.dtype, w.dtype))


def _explicit_padding(padding: Any, in_hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                      dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(in_hw, [(k - 1) * d + 1 for k, d in zip(kernel, dilation)], strides,
                                         padding.upper()))
    if isinstance(padding, int):
        return ((padding, padding),) * 2
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


class FastConv(nn.Conv):
    """``flax.linen.Conv`` (same fields and params) for 2-d NHWC input through :func:`conv2d`.

    The custom path is taken on the CPU backend (where it measured faster, see
    docs/performance.md) unless ``JAXDL_FAST_CONV=0``; GPU/TPU, other ranks, input dilation,
    circular/causal/reflect padding or masks use ``nn.Conv``'s own path. ``fast=False`` forces
    the stock path for one layer or model. Float32 3x3 stride-1 convs go through
    :func:`jaxdl.nn.winograd.winograd_conv2d` where :func:`~jaxdl.nn.winograd.tile_size` picks a
    tile, or through :func:`~jaxdl.nn.winograd.winograd_kernel_grad_conv2d` where
    :func:`~jaxdl.nn.winograd.kernel_grad_only` says so (``winograd=False`` keeps them on :func:`conv2d`);
    depthwise convs take :func:`depthwise_conv2d`.

    The custom paths define reverse-mode gradients only (``jax.grad``, ``jax.vjp``; they compose with
    ``jax.vmap`` and ``jax.checkpoint``): forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``,
    ``jax.hessian``) raises JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp function";
    use ``fast=False`` or ``JAXDL_FAST_CONV=0`` for those.
    """

    fast: bool | None = None  # None: the custom VJP on CPU when enabled; False: stock nn.Conv
    winograd: bool | None = None  # None: F(m x m, 3 x 3) where winograd.tile_size picks one; False: never

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel_size = tuple(self.kernel_size) if not isinstance(self.kernel_size, int) else (self.kernel_size,)
        simple = (inputs.ndim == 4 and len(kernel_size) == 2 and self.input_dilation in (None, 1, (1, 1))
                  and self.mask is None and not (isinstance(self.padding, str)
                                                 and self.padding.upper() in ("CIRCULAR", "CAUSAL", "REFLECT")))
        use = self.fast if self.fast is not None else (_ENABLED and jax.default_backend() == "cpu")
        if not (simple and use):
            return super().__call__(inputs)
        strides = (1, 1) if self.strides is None else ((self.strides,) * 2 if isinstance(self.strides, int)
                                                       else tuple(self.strides))
        dilation = (1, 1) if self.kernel_dilation is None else (
            (self.kernel_dilation,) * 2 if isinstance(self.kernel_dilation, int) else tuple(self.kernel_dilation))
        in_features = inputs.shape[-1]
        groups = self.feature_group_count
        kernel = self.param("kernel", self.kernel_init, (*kernel_size, in_features // groups, self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        padding = _explicit_padding(self.padding, inputs.shape[1:3], kernel_size, strides, dilation)
        tile = None
        if self.winograd is not False and winograd.winograd_enabled() and winograd.supports(
                kernel_size, strides, dilation, groups, padding):
            out_hw = [inputs.shape[1 + i] + padding[i][0] + padding[i][1] - 2 for i in range(2)]
            tile = winograd.tile_size(out_hw, in_features, self.features, inputs.dtype)
        if tile is not None and winograd.kernel_grad_only(self.features):
            y = winograd.winograd_kernel_grad_conv2d(inputs, kernel, padding, tile)
        elif tile is not None:
            y = winograd.winograd_conv2d(inputs, kernel, padding, tile)
        elif groups > 1 and groups == in_features and self.features % groups == 0:
            y = depthwise_conv2d(inputs, kernel, strides, padding, dilation)
        else:
            y = conv2d(inputs, kernel, strides, padding, dilation, groups)
        if bias is not None:
            y = y + bias.reshape((1, 1, 1, -1))
        return y
