"""LeNet-5 as in LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11), sec. II-B, Fig. 2 and Table I.

Layers (input 32x32x1; sizes for that input)::

    c1  conv 6@5x5, valid              32 -> 28     156 params
    s2  subsampling 2x2 (6 maps)       28 -> 14      12
    c3  conv 16@5x5, Table I table     14 -> 10   1,516   (2,416 with connections="full")
    s4  subsampling 2x2 (16 maps)      10 -> 5       32
    c5  conv 120@5x5                    5 -> 1   48,120
    f6  dense 84                                 10,164
    head dense num_classes                          850   (10 classes)
                                          total  60,850

Each of c1 .. f6 is followed by the squashing function, by default the paper's scaled tanh
``1.7159 tanh(2a/3)`` (Appendix A). A subsampling unit adds its four inputs, multiplies the
sum by a trainable coefficient and adds a trainable bias (one of each per map), then squashes.

Deviation, stated: the paper's output layer is 10 Euclidean RBF units whose weights are fixed
+-1 codes drawn from 7x12 bitmaps of the characters (sec. II-B); those bitmaps are not given
numerically in the paper, so this module uses a trainable ``Dense`` head (84*10 + 10 = 850
parameters) instead. C1 .. F6 (60,000 parameters) are the paper's.

Parameter names: ``c1/{kernel,bias}``, ``s2/{coefficient,bias}``, ``c3/{kernel,bias}``,
``s4/{coefficient,bias}``, ``c5/{kernel,bias}``, ``f6/{kernel,bias}``, ``head/{kernel,bias}``;
with ``batch_norm=True`` also ``c1_bn``, ``c3_bn``, ``c5_bn``, ``f6_bn`` (and no bias in the
layer before each). With ``connections="paper"`` the kernel of ``c3`` holds only the 60
connected 5x5 filters, ``[5, 5, 60]``, ordered as :data:`C3_TABLE` lists them.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype

from jaxdl.errors import ConfigError
from jaxdl.models.linear import activation_fn
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm

__all__ = ["C3_TABLE", "connection_mask", "connection_kernel", "Subsampling", "ConnectionTableConv", "LeNet5"]

# Table I of the paper: the S2 maps (0..5) that each C3 map (0..15) combines. Maps 0-5 take
# 3 contiguous S2 maps, 6-11 take 4 contiguous ones, 12-14 take 4 non-contiguous ones and
# 15 takes all 6: 60 connections, 60 * 25 + 16 = 1,516 parameters.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def connection_mask(table: Sequence[Sequence[int]], in_channels: int) -> np.ndarray:
    """``bool[in_channels, len(table)]``: ``mask[i, j]`` is True if output map j sees input map i."""
    mask = np.zeros((in_channels, len(table)), bool)
    for j, inputs in enumerate(table):
        mask[list(inputs), j] = True
    return mask


def _connections(table: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(input map, output map) of each connection, output-major in table order."""
    pairs = [(i, j) for j, inputs in enumerate(table) for i in inputs]
    return np.array([i for i, _ in pairs], np.int32), np.array([j for _, j in pairs], np.int32)


def connection_kernel(weights: jax.Array, table: Sequence[Sequence[int]], in_channels: int) -> jax.Array:
    """Dense ``[kh, kw, in_channels, len(table)]`` kernel with zeros where ``table`` has no connection.

    ``weights: [kh, kw, P]`` holds one filter per connection, in the order
    ``[(i, j) for j, inputs in enumerate(table) for i in inputs]``.
    """
    in_idx, out_idx = _connections(table)
    if weights.shape[-1] != len(in_idx):
        raise ValueError(f"the table has {len(in_idx)} connections but weights has {weights.shape[-1]} filters")
    full = jnp.zeros((*weights.shape[:2], in_channels, len(table)), weights.dtype)
    return full.at[:, :, in_idx, out_idx].set(weights)


class Subsampling(nn.Module):
    """LeNet subsampling: ``coefficient[c] * sum(2x2 window) + bias[c]`` (sec. II-B, S2/S4).

    ``x: [N, H, W, C] -> [N, H // 2, W // 2, C]``; ``2C`` parameters. The coefficient starts at
    1/4 so that the layer starts as average pooling (the paper does not give this layer's init).
    The squashing function is applied by the caller.
    """

    window: int = 2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        coefficient = self.param("coefficient", nn.initializers.constant(1.0 / self.window ** 2), (channels,),
                                 self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,), self.param_dtype)
        x, coefficient, bias = promote_dtype(x, coefficient, bias, dtype=self.dtype)
        w = (self.window, self.window)
        summed = nn.pool(x, 0.0, jax.lax.add, w, w, ((0, 0), (0, 0)))
        return summed * coefficient + bias


class ConnectionTableConv(nn.Module):
    """Valid convolution where output map ``j`` only sees the input maps ``table[j]``.

    Only the connected filters are parameters (``kernel: [kh, kw, P]`` for P connections,
    ``bias: [len(table)]``), so the parameter count is the paper's (C3: 60 * 25 + 16 = 1,516).
    They are scattered into a zero ``[kh, kw, C_in, C_out]`` kernel for one dense convolution;
    the gradient of the zeros is discarded by the scatter, so unconnected weights never exist.
    Init: LeCun normal with each output map's true fan-in (25 * number of its inputs).

    ``x: [N, H, W, C_in] -> [N, H - kh + 1, W - kw + 1, len(table)]``.
    """

    table: Sequence[Sequence[int]]
    kernel_size: tuple[int, int] = (5, 5)
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_channels = x.shape[-1]
        needed = 1 + max(max(inputs) for inputs in self.table)
        if in_channels < needed:
            raise ValueError(f"the connection table refers to input map {needed - 1} but the input has "
                             f"{in_channels} channels")
        kh, kw = self.kernel_size
        _, out_idx = _connections(self.table)
        fan_in = np.array([len(self.table[j]) * kh * kw for j in out_idx], np.float32)

        def init(key, shape, dtype):
            # 0.8796...: std of a standard normal truncated to [-2, 2] (as flax's lecun_normal).
            std = np.sqrt(1.0 / fan_in) / 0.87962566103423978
            return (jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32) * std).astype(dtype)

        weights = self.param("kernel", init, (kh, kw, len(out_idx)), self.param_dtype)
        kernel = connection_kernel(weights, self.table, in_channels)
        x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((0, 0), (0, 0)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (len(self.table),), self.param_dtype)
            y = y + jnp.asarray(bias, self.dtype)
        return y


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998, Fig. 2): ``x: <f32>[N, H, W, C]`` -> ``<f32>[N, num_classes]``.

    Inputs must be at least 32x32 (the paper pads 28x28 MNIST digits to 32x32); larger inputs
    give a larger C5 map that F6 flattens. 60,850 parameters with the defaults (10 classes).

    Attributes:
      num_classes: size of ``head``; 0 returns F6's 84 features (``pre_logits``).
      connections: ``"paper"`` (Table I, C3 has 1,516 params) or ``"full"`` (2,416).
      activation: ``"scaled_tanh"`` (the paper's 1.7159 tanh(2a/3)) or one of
        ``sigmoid, tanh, relu, leaky_relu, elu``.
      dropout_rate: dropout before F6 and before the head (not in the paper; default 0).
      batch_norm: BatchNorm before the squashing of C1, C3, C5 and F6 (not in the paper).
      frozen_bn: keep BatchNorm's running statistics fixed even when ``train=True``.
      conv: convolution layer for C1, C5 (and C3 with ``connections="full"``).

    Taps: ``c1, s2, c3, s4, c5`` (``[N, H, W, C]`` maps), ``f6`` = ``pre_logits`` (``[N, 84]``),
    ``logits``.
    """

    num_classes: int = 10
    connections: str = "paper"
    activation: str = "scaled_tanh"
    dropout_rate: float = 0.0
    batch_norm: bool = False
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        act = activation_fn(self.activation)
        if self.connections not in ("paper", "full"):
            raise ConfigError(f"connections must be 'paper' (Table I of LeCun et al. 1998) or 'full', "
                              f"got {self.connections!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if x.ndim != 4 or min(x.shape[1:3]) < 32:
            raise ConfigError(f"LeNet-5 takes NHWC input of at least 32x32 (C5's 5x5 kernel needs a 5x5 S4 "
                              f"map), got shape {tuple(x.shape)}; pad smaller images to 32x32 as the paper "
                              f"does for 28x28 MNIST digits")
        taps = FeatureTaps(features, valid=("c1", "s2", "c3", "s4", "c5", "f6", "pre_logits", "logits"))
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        bias = not self.batch_norm
        valid = ((0, 0), (0, 0))

        def squash(y: jax.Array, name: str) -> jax.Array:
            if self.batch_norm:
                y = norm(name=f"{name}_bn")(y)
            return act(y)

        x = jnp.asarray(x, self.dtype)
        x = squash(self.conv(6, (5, 5), padding=valid, use_bias=bias, dtype=self.dtype, name="c1")(x), "c1")
        if taps.add("c1", x):
            return taps.result
        x = act(Subsampling(dtype=self.dtype, name="s2")(x))
        if taps.add("s2", x):
            return taps.result
        if self.connections == "paper":
            c3 = ConnectionTableConv(C3_TABLE, (5, 5), use_bias=bias, dtype=self.dtype, name="c3")
        else:
            c3 = self.conv(16, (5, 5), padding=valid, use_bias=bias, dtype=self.dtype, name="c3")
        x = squash(c3(x), "c3")
        if taps.add("c3", x):
            return taps.result
        x = act(Subsampling(dtype=self.dtype, name="s4")(x))
        if taps.add("s4", x):
            return taps.result
        x = squash(self.conv(120, (5, 5), padding=valid, use_bias=bias, dtype=self.dtype, name="c5")(x), "c5")
        if taps.add("c5", x):
            return taps.result
        x = x.reshape((x.shape[0], -1))
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = squash(nn.Dense(84, use_bias=bias, dtype=self.dtype, name="f6")(x), "f6")
        done = taps.add("f6", x)
        if taps.add("pre_logits", x) or done:  # the same tensor under both names
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return taps.finish(nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x))


register(
    "lenet5",
    functools.partial(LeNet5),
    input_shape=(32, 32, 1),
    num_classes=10,
    family="lenet",
    paper="LeCun, Bottou, Bengio & Haffner 1998, 'Gradient-based learning applied to document recognition', "
          "sec. II-B, Fig. 2, Table I (C3 connections); Dense output instead of the fixed RBF units",
    num_params=60850,
    params_reference="LeCun et al. 1998, sec. II-B (C1..F6) + 84*10+10 dense output",
    params_exact=True,
    description="LeNet-5: C1-S2-C3(Table I)-S4-C5-F6, scaled tanh, 60,850 params",
    smoke_input_shape=(32, 32, 1),
)
