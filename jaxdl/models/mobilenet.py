"""MobileNet v1 (depthwise separable convolutions) and v2 (inverted residuals).

* ``mobilenet_v1`` - Howard et al. 2017, Table 1: a 3x3/2 conv with 32 channels, then 13
  depthwise-separable layers (3x3 depthwise conv + BN + ReLU, 1x1 pointwise conv + BN + ReLU,
  Fig. 3), global average pool and ``head``. ``width_multiplier`` is the paper's alpha
  (sec. 3.3): every layer's channels become ``alpha * channels``. Table 1 lists the last
  depthwise layer as "s2" but maps 7x7 to 7x7, so it has stride 1 (as every implementation).
  4,231,976 parameters at alpha=1; Table 8 gives 4.2M for 1.0 MobileNet-224.
* ``mobilenet_v2`` - Sandler et al. 2018, Table 2 (torchvision layout): a 3x3/2 conv with 32
  channels, 17 inverted residual blocks in seven rows ``(t, c, n, s)`` (1x1 expansion by ``t`` +
  BN + ReLU6, 3x3 depthwise + BN + ReLU6, linear 1x1 projection + BN, Table 1 / Fig. 2d; a
  residual connection when stride is 1 and channels match), a 1x1 conv to 1280 + BN + ReLU6,
  global average pool, Dropout(0.2) and ``head``. 3,504,872 parameters (torchvision).
  ``width_multiplier`` scales channels with torchvision's rounding
  ``make_divisible(c * alpha, 8)``; the last conv keeps 1280 channels for alpha < 1 (sec. 5.1).

Convolutions have no bias (every conv is followed by BatchNorm: eps 1e-5, momentum 0.9 ==
torch's 0.1). Padding is symmetric (1 for 3x3), as in torchvision, not TensorFlow's "SAME".

Parameter names (v1): ``stem_conv``, ``stem_bn``, ``stage{i}_block{j}/{dw_conv, dw_bn, pw_conv,
pw_bn}``, ``head``. (v2): ``stem_conv``, ``stem_bn``, ``stage{i}_block{j}/{expand_conv,
expand_bn, dw_conv, dw_bn, project_conv, project_bn}`` (no expand layers where t = 1),
``last_conv``, ``last_bn``, ``head``. Stages and blocks count from 1.

Feature taps: v1: ``stem`` (stride 2), ``stage1 .. stage5`` (channels 64, 128, 256, 512, 1024
at strides 2, 4, 8, 16, 32); v2: ``stem``, ``stage1 .. stage7`` (the seven bottleneck rows of
Table 2), ``stage8`` (the 1x1 conv to 1280); then ``pre_logits`` (globally averaged features)
and ``logits``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.nn.pooling import check_nhwc
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm

__all__ = ["make_divisible", "V1_STAGES", "V2_SETTINGS", "DepthwiseSeparable", "MobileNetV1", "MobileNetV2",
           "InvertedResidual"]

# torchvision's initialization: He normal (fan-out) for convs, N(0, 0.01) for the classifier.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_HEAD_INIT = nn.initializers.normal(0.01)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (>= ``min_value``, default ``divisor``),
    going one step up if rounding lost more than 10% (torchvision's/TF's ``_make_divisible``)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check_width(alpha: float) -> None:
    if not alpha > 0:
        raise ConfigError(f"width_multiplier must be > 0 (the papers use 0.25 .. 1.4), got {alpha}")


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (Howard et al. Fig. 3).

    ``x: <f>[N, H, W, C] -> <f>[N, H / stride, W / stride, features]``.
    """

    features: int
    stride: int = 1
    frozen_bn: bool = False
    conv: Any = Conv
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        conv = functools.partial(self.conv, use_bias=False, kernel_init=_CONV_INIT, dtype=self.dtype)
        channels = x.shape[-1]
        x = conv(channels, (3, 3), strides=(self.stride, self.stride), padding=((1, 1), (1, 1)),
                 feature_group_count=channels, name="dw_conv")(x)
        x = nn.relu(norm(name="dw_bn")(x))
        x = conv(self.features, (1, 1), name="pw_conv")(x)
        return nn.relu(norm(name="pw_bn")(x))


# Howard et al. 2017, Table 1: (pointwise channels, depthwise-separable layers, stride of the first).
V1_STAGES: tuple[tuple[int, int, int], ...] = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))


class MobileNetV1(nn.Module):
    """MobileNet v1: ``x: <f32>[N, H, W, 3] -> <f32>[N, num_classes]`` (Howard et al. 2017).

    Attributes:
      num_classes: size of ``head``; 0 returns ``pre_logits`` ``[N, 1024 * alpha]``.
      width_multiplier: alpha (sec. 3.3); channels are ``make_divisible(c * alpha, 8)``.
      stem_channels: channels of the first full conv (32, Table 1).
      stages: :data:`V1_STAGES`.
      frozen_bn: keep BatchNorm statistics fixed even with ``train=True``.
      conv: convolution layer (swappable).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    width_multiplier: float = 1.0
    stem_channels: int = 32
    stages: tuple[tuple[int, int, int], ...] = V1_STAGES
    frozen_bn: bool = False
    conv: Any = Conv
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        check_nhwc(x, "MobileNetV1")
        _check_width(self.width_multiplier)
        taps = FeatureTaps(features, valid=("stem",) + tuple(f"stage{i}" for i in range(1, len(self.stages) + 1))
                           + ("pre_logits", "logits"))
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        conv = functools.partial(self.conv, use_bias=False, kernel_init=_CONV_INIT, dtype=self.dtype)
        width = lambda c: make_divisible(c * self.width_multiplier, 8)  # noqa: E731

        x = jnp.asarray(x, self.dtype)
        x = conv(width(self.stem_channels), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        if taps.add("stem", x):
            return taps.result
        for i, (channels, blocks, stride) in enumerate(self.stages, start=1):
            for j in range(blocks):
                s = stride if j == 0 else 1
                x = DepthwiseSeparable(width(channels), s, self.frozen_bn, self.conv, self.dtype,
                                       self.bn_axis_name, name=f"stage{i}_block{j + 1}")(x, train)
            if taps.add(f"stage{i}", x):
                return taps.result
        x = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        logits = nn.Dense(self.num_classes, kernel_init=_HEAD_INIT, dtype=self.dtype, name="head")(x)
        return taps.finish(logits)


# Sandler et al. 2018, Table 2: (expansion t, output channels c, repeats n, first stride s).
V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """Bottleneck residual block (Sandler et al. 2018, Table 1 / Fig. 2d).

    ``x: <f>[N, H, W, C] -> <f>[N, H / stride, W / stride, features]``; the input is added back
    when ``stride == 1`` and ``C == features``. The hidden width is ``round(C * expansion)``.
    """

    features: int
    stride: int
    expansion: int
    frozen_bn: bool = False
    conv: Any = Conv
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        conv = functools.partial(self.conv, use_bias=False, kernel_init=_CONV_INIT, dtype=self.dtype)
        in_channels = x.shape[-1]
        hidden = int(round(in_channels * self.expansion))
        y = x
        if self.expansion != 1:
            y = jax.nn.relu6(norm(name="expand_bn")(conv(hidden, (1, 1), name="expand_conv")(y)))
        y = conv(hidden, (3, 3), strides=(self.stride, self.stride), padding=((1, 1), (1, 1)),
                 feature_group_count=hidden, name="dw_conv")(y)
        y = jax.nn.relu6(norm(name="dw_bn")(y))
        # Linear bottleneck: no activation after the projection (sec. 3.2).
        y = norm(name="project_bn")(conv(self.features, (1, 1), name="project_conv")(y))
        if self.stride == 1 and in_channels == self.features:
            y = x + y
        return y


class MobileNetV2(nn.Module):
    """MobileNet v2: ``x: <f32>[N, H, W, 3] -> <f32>[N, num_classes]`` (Sandler et al. 2018).

    Attributes:
      num_classes: size of ``head``; 0 returns ``pre_logits`` ``[N, last_channels]``.
      width_multiplier: alpha (sec. 5.1); channels are ``make_divisible(c * alpha, 8)``, the last
        conv has ``make_divisible(1280 * max(1, alpha), 8)``.
      stem_channels: 32 (Table 2).
      settings: :data:`V2_SETTINGS`.
      last_channels: 1280 (Table 2).
      dropout_rate: before ``head`` (0.2, torchvision; the paper does not state it).
      frozen_bn: keep BatchNorm statistics fixed even with ``train=True``.
      remat: recompute each inverted residual block's activations in the backward pass
        (``nn.remat``: only block inputs are kept; same results and parameter names).
      conv: convolution layer (swappable).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    width_multiplier: float = 1.0
    stem_channels: int = 32
    settings: tuple[tuple[int, int, int, int], ...] = V2_SETTINGS
    last_channels: int = 1280
    dropout_rate: float = 0.2
    frozen_bn: bool = False
    remat: bool = False
    conv: Any = Conv
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        check_nhwc(x, "MobileNetV2")
        _check_width(self.width_multiplier)
        n_stages = len(self.settings) + 1  # Table 2's bottleneck rows, then the 1x1 conv to 1280
        taps = FeatureTaps(features, valid=("stem",) + tuple(f"stage{i}" for i in range(1, n_stages + 1))
                           + ("pre_logits", "logits"))
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        conv = functools.partial(self.conv, use_bias=False, kernel_init=_CONV_INIT, dtype=self.dtype)
        alpha = self.width_multiplier

        x = jnp.asarray(x, self.dtype)
        x = conv(make_divisible(self.stem_channels * alpha, 8), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                 name="stem_conv")(x)
        x = jax.nn.relu6(norm(name="stem_bn")(x))
        if taps.add("stem", x):
            return taps.result
        # remat: static_argnums counts self as 0, so 2 is `train` (a Python bool).
        block_cls = nn.remat(InvertedResidual, static_argnums=(2,)) if self.remat else InvertedResidual
        for i, (t, c, n, s) in enumerate(self.settings, start=1):
            for j in range(n):
                x = block_cls(make_divisible(c * alpha, 8), s if j == 0 else 1, t, self.frozen_bn,
                                     self.conv, self.dtype, self.bn_axis_name, name=f"stage{i}_block{j + 1}")(x, train)
            if taps.add(f"stage{i}", x):
                return taps.result
        x = conv(make_divisible(self.last_channels * max(1.0, alpha), 8), (1, 1), name="last_conv")(x)
        x = jax.nn.relu6(norm(name="last_bn")(x))
        if taps.add(f"stage{n_stages}", x):
            return taps.result
        x = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, kernel_init=_HEAD_INIT, dtype=self.dtype, name="head")(x)
        return taps.finish(logits)


register(
    "mobilenet_v1", functools.partial(MobileNetV1),
    input_shape=(224, 224, 3), family="mobilenet",
    paper="Howard et al. 2017, 'MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
          "Applications', Table 1 (1.0 MobileNet-224)",
    num_params=4_200_000, params_reference="paper Table 8 (4.2M for 1.0 MobileNet-224)", params_exact=False,
    description="MobileNet v1, depthwise separable convs, width multiplier alpha",
    smoke_input_shape=(32, 32, 3))

register(
    "mobilenet_v2", functools.partial(MobileNetV2),
    input_shape=(224, 224, 3), family="mobilenet",
    paper="Sandler et al. 2018, 'MobileNetV2: Inverted Residuals and Linear Bottlenecks', Table 2",
    num_params=3_504_872, params_reference="torchvision mobilenet_v2", params_exact=True,
    description="MobileNet v2, inverted residuals with linear bottlenecks, ReLU6",
    smoke_input_shape=(32, 32, 3))
