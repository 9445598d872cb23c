"""Inception-v3 (Szegedy et al. 2016) and the building blocks the whole Inception family shares.

Variant:

* ``inception_v3`` - "Rethinking the Inception Architecture for Computer Vision", Table 1
  with the modules of Figs. 5 (35x35, ``InceptionA``), 6 (17x17, ``InceptionC``, n=7) and
  7 (8x8, ``InceptionE``), the grid reductions of Fig. 10 (``InceptionB``, ``InceptionD``)
  and the auxiliary classifier of Fig. 8 on top of the last 17x17 layer, in torchvision's
  layout: every convolution is ``BasicConv2d`` (conv without bias -> BatchNorm eps 0.001 ->
  ReLU), input 299x299, dropout 0.5 before the head. 27,161,264 parameters with the
  auxiliary head (default ``aux_logits=True``), exactly torchvision's count.

  The auxiliary head (``AuxLogits``: avg pool 5x5/3, 1x1 conv 128, 5x5 conv 768, global
  average, ``fc``) runs while training and is sown with weight 0.4 through
  :func:`jaxdl.nn.sow_aux_logits`: the paper treats it as a regularizer (sec. 4) without a
  weight; 0.4 is what torchvision's reference training script adds (``loss + 0.4 * aux``).
  Its parameters are also created by ``init`` with ``train=False``, so a checkpoint has the
  same tree in both modes. At inference it is not run. Like torchvision's, it needs a
  Mixed_6e map of at least 17x17 (input >= 299x299); pass ``aux_logits=False`` for smaller
  inputs (the smallest input the main path accepts is 75x75).

Parameter names mirror torchvision's (``Conv2d_1a_3x3``, ``Mixed_5b/branch5x5_1``,
``AuxLogits/conv1``, ...); each ``BasicConv2d`` holds ``conv`` (kernel) and ``bn``
(scale, bias; running statistics in ``batch_stats``); torchvision's ``fc`` is ``head``.

Feature taps (shapes for a 299x299 input): ``stem`` (after the second max pool, 35x35x192,
nominal stride 8), ``stage1`` (Mixed_5b-5d, 35x35x288), ``stage2`` (Mixed_6a-6e,
17x17x768, nominal stride 16), ``stage3`` (Mixed_7a-7c, 8x8x2048, nominal stride 32),
``pre_logits`` (global average, 2048) and ``logits``. The unpadded ("VALID") 3x3
convolutions of the stem and of the grid reductions make the maps 35/17/8 rather than
299/8, /16, /32.

Shared with :mod:`jaxdl.models.googlenet` and :mod:`jaxdl.models.inception_v4`:
:class:`BasicConv2d`, :func:`scaled_width` and :func:`check_input_size`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.nn.pooling import check_nhwc, max_pool
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm, sow_aux_logits

__all__ = ["BasicConv2d", "InceptionV3", "scaled_width", "check_input_size", "check_width_multiplier"]

ModuleDef = Any


class BasicConv2d(nn.Module):
    """Convolution without bias -> BatchNorm -> ReLU (torchvision's ``BasicConv2d``).

    ``x: <f>[N, H, W, Cin] -> <f>[N, H', W', features]``; ``padding`` is the symmetric
    zero padding ``(ph, pw)`` of each spatial axis, as in PyTorch (``(0, 0)`` = "VALID").
    ``norm`` is a :func:`jaxdl.nn.batch_norm` partial (it carries train mode and epsilon).
    Submodules: ``conv`` and ``bn``.
    """

    features: int
    kernel_size: tuple[int, int]
    norm: Callable[..., nn.Module]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    conv: ModuleDef = Conv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        x = self.conv(self.features, tuple(self.kernel_size), strides=tuple(self.strides),
                      padding=((ph, ph), (pw, pw)), use_bias=False, dtype=self.dtype, name="conv")(x)
        return nn.relu(self.norm(name="bn")(x))


def scaled_width(channels: int, multiplier: float) -> int:
    """``channels * multiplier`` rounded down, at least 1 (``width_multiplier`` of the family)."""
    return max(1, int(channels * multiplier))


def check_width_multiplier(multiplier: float, model: str) -> None:
    if not multiplier > 0:
        raise ConfigError(f"{model}: width_multiplier must be > 0 (1.0 = the paper's widths), got {multiplier}")


def check_input_size(x: jax.Array, minimum: int, model: str) -> None:
    """Raise a ConfigError unless ``x`` is an NHWC batch with H and W >= ``minimum``."""
    check_nhwc(x, model)
    h, w = x.shape[1:3]
    if h < minimum or w < minimum:
        raise ConfigError(
            f"{model} needs an input of at least {minimum}x{minimum} pixels (its unpadded convolutions and "
            f"poolings shrink the map to nothing below that), got {h}x{w}; resize or pad the images")


# --------------------------------------------------------------------------------------------
# Inception-v3 modules. ``layer`` is a BasicConv2d partial (conv, norm, dtype bound), ``width``
# maps a paper width to the scaled one.


class InceptionA(nn.Module):
    """35x35 module (Fig. 5's double-3x3 tower; like the released model, torchvision keeps a 5x5 branch).

    ``[N, H, W, C] -> [N, H, W, 64 + 64 + 96 + pool_features]`` (at full width).
    """

    pool_features: int
    layer: Callable[..., nn.Module]
    width: Callable[[int], int]

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        b1 = L(w(64), (1, 1), name="branch1x1")(x)
        b5 = L(w(48), (1, 1), name="branch5x5_1")(x)
        b5 = L(w(64), (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = L(w(64), (1, 1), name="branch3x3dbl_1")(x)
        b3 = L(w(96), (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = L(w(96), (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        # torchvision: F.avg_pool2d(x, 3, 1, 1), whose padding counts in the mean.
        bp = nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)
        bp = L(w(self.pool_features), (1, 1), name="branch_pool")(bp)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 grid reduction (Fig. 10): ``[N, H, W, C] -> [N, H', W', 384 + 96 + C]``."""

    layer: Callable[..., nn.Module]
    width: Callable[[int], int]

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        b3 = L(w(384), (3, 3), strides=(2, 2), name="branch3x3")(x)
        bd = L(w(64), (1, 1), name="branch3x3dbl_1")(x)
        bd = L(w(96), (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = L(w(96), (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
        bp = max_pool(x, 3, 2)
        return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
    """17x17 module with 7x7 factorized into 1x7 and 7x1 (Fig. 6, n=7): ``-> [N, H, W, 768]``."""

    channels_7x7: int
    layer: Callable[..., nn.Module]
    width: Callable[[int], int]

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        c7 = w(self.channels_7x7)
        b1 = L(w(192), (1, 1), name="branch1x1")(x)
        b7 = L(c7, (1, 1), name="branch7x7_1")(x)
        b7 = L(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = L(w(192), (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = L(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = L(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = L(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = L(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = L(w(192), (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)
        bp = L(w(192), (1, 1), name="branch_pool")(bp)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 grid reduction: ``[N, H, W, C] -> [N, H', W', 320 + 192 + C]``."""

    layer: Callable[..., nn.Module]
    width: Callable[[int], int]

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        b3 = L(w(192), (1, 1), name="branch3x3_1")(x)
        b3 = L(w(320), (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
        b7 = L(w(192), (1, 1), name="branch7x7x3_1")(x)
        b7 = L(w(192), (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = L(w(192), (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = L(w(192), (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
        bp = max_pool(x, 3, 2)
        return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter bank outputs (Fig. 7): ``-> [N, H, W, 2048]``."""

    layer: Callable[..., nn.Module]
    width: Callable[[int], int]

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        b1 = L(w(320), (1, 1), name="branch1x1")(x)
        b3 = L(w(384), (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([L(w(384), (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              L(w(384), (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = L(w(448), (1, 1), name="branch3x3dbl_1")(x)
        bd = L(w(384), (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([L(w(384), (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              L(w(384), (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        bp = nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)
        bp = L(w(192), (1, 1), name="branch_pool")(bp)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3Aux(nn.Module):
    """Auxiliary classifier on the last 17x17 map (Fig. 8; torchvision's ``InceptionAux``).

    ``[N, 17, 17, 768] -> [N, num_classes]``: avg pool 5x5/3 (-> 5x5), 1x1 conv 128, 5x5 conv
    768 (-> 1x1), global average, ``fc``.
    """

    num_classes: int
    layer: Callable[..., nn.Module]
    width: Callable[[int], int]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h, w_ = x.shape[1:3]
        if h < 17 or w_ < 17:
            raise ConfigError(
                f"inception_v3's auxiliary classifier needs a Mixed_6e map of at least 17x17 (an input of at "
                f"least 299x299), got {h}x{w_}; use 299x299 inputs or create the model with aux_logits=False")
        x = nn.avg_pool(x, (5, 5), (3, 3))
        x = self.layer(self.width(128), (1, 1), name="conv0")(x)
        x = self.layer(self.width(768), (5, 5), name="conv1")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


class InceptionV3(nn.Module):
    """Inception-v3 (Szegedy et al. 2016, Table 1), torchvision layout.

    ``x: <f32>[N, H, W, 3]`` (299x299 by default, at least 75x75) ``-> <f32>[N, num_classes]``;
    ``num_classes=0`` returns the pooled ``pre_logits`` ``[N, 2048]``.

    Attributes:
      num_classes: size of ``head``; 0 drops the head (and the auxiliary head).
      aux_logits: build the auxiliary classifier (``AuxLogits``); it is sown only when
        ``train=True`` (see the module docstring).
      aux_weight: its loss weight (0.4: torchvision's reference training recipe).
      dropout_rate: dropout before ``head`` (0.5, torchvision; the paper does not state it).
      width_multiplier: scales every convolution's width (1.0 = the paper's); for tests.
      frozen_bn: keep BatchNorm running statistics fixed even when training.
      dtype: compute dtype (parameters stay float32).
      conv: the convolution layer.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    aux_weight: float = 0.4
    dropout_rate: float = 0.5
    width_multiplier: float = 1.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: ModuleDef = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    TAPS = ("stem", "stage1", "stage2", "stage3", "pre_logits", "logits")

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features=None):
        check_width_multiplier(self.width_multiplier, "inception_v3")
        check_input_size(x, 75, "inception_v3")
        taps = FeatureTaps(features, valid=self.TAPS)
        # torchvision's BasicConv2d: BatchNorm2d(eps=0.001).
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, epsilon=1e-3, dtype=self.dtype)
        L = functools.partial(BasicConv2d, norm=norm, conv=self.conv, dtype=self.dtype)
        w = functools.partial(scaled_width, multiplier=self.width_multiplier)
        blocks = dict(layer=L, width=w)

        x = x.astype(self.dtype)
        x = L(w(32), (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)   # 299 -> 149
        x = L(w(32), (3, 3), name="Conv2d_2a_3x3")(x)                    # -> 147
        x = L(w(64), (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)    # -> 147
        x = max_pool(x, 3, 2)                                            # -> 73
        x = L(w(80), (1, 1), name="Conv2d_3b_1x1")(x)
        x = L(w(192), (3, 3), name="Conv2d_4a_3x3")(x)                   # -> 71
        x = max_pool(x, 3, 2)                                            # -> 35
        if taps.add("stem", x):
            return taps.result

        x = InceptionA(32, **blocks, name="Mixed_5b")(x)                 # 256
        x = InceptionA(64, **blocks, name="Mixed_5c")(x)                 # 288
        x = InceptionA(64, **blocks, name="Mixed_5d")(x)                 # 288
        if taps.add("stage1", x):
            return taps.result

        x = InceptionB(**blocks, name="Mixed_6a")(x)                     # 17x17x768
        x = InceptionC(128, **blocks, name="Mixed_6b")(x)
        x = InceptionC(160, **blocks, name="Mixed_6c")(x)
        x = InceptionC(160, **blocks, name="Mixed_6d")(x)
        x = InceptionC(192, **blocks, name="Mixed_6e")(x)
        if self.aux_logits and self.num_classes > 0 and (train or self.is_initializing()):
            aux = InceptionV3Aux(self.num_classes, **blocks, dtype=self.dtype, name="AuxLogits")(x)
            if train:
                sow_aux_logits(self, "aux", aux, weight=self.aux_weight)
        if taps.add("stage2", x):
            return taps.result

        x = InceptionD(**blocks, name="Mixed_7a")(x)                     # 8x8x1280
        x = InceptionE(**blocks, name="Mixed_7b")(x)                     # 2048
        x = InceptionE(**blocks, name="Mixed_7c")(x)                     # 2048
        if taps.add("stage3", x):
            return taps.result

        x = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return taps.finish(x)


register(
    "inception_v3",
    InceptionV3,
    input_shape=(299, 299, 3),
    family="inception",
    paper="Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision, Table 1 "
          "(Figs. 5-8, 10), torchvision layout",
    num_params=27_161_264,
    params_reference="torchvision inception_v3 (aux_logits=True)",
    params_exact=True,
    description="Inception-v3 with auxiliary classifier (0.4), BN eps 1e-3, 299x299",
    smoke_input_shape=(75, 75, 3),
    # The auxiliary head needs >= 299x299 inputs (as in torchvision); the smoke test runs the
    # main path at the smallest size it accepts. tests/models/test_inception.py covers the head.
    smoke_overrides={"width_multiplier": 0.125, "aux_logits": False},
)
