"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2017).

Both take 299x299 inputs (at least 75x75); every convolution is conv without bias ->
BatchNorm (eps 0.001, as the public TensorFlow implementation) -> ReLU
(:class:`~jaxdl.models.inception.BasicConv2d`); "V" convolutions and the reduction max
pools are unpadded, all others keep the size. Average pools in the modules are 3x3/1 with
padding that does not count in the mean (TensorFlow "SAME"). Dropout 0.2 (keep 0.8, Figs. 9
and 15) before ``head``. Neither paper network has auxiliary classifiers in its figures;
none are built. The number of modules per grid size is the field ``blocks``.

* ``inception_v4`` - Fig. 9: stem (Fig. 3) -> 4 x Inception-A (Fig. 4) -> Reduction-A
  (Fig. 7, k=192, l=224, m=256, n=384; Table 1) -> 7 x Inception-B (Fig. 5) -> Reduction-B
  (Fig. 8) -> 3 x Inception-C (Fig. 6) -> average pool -> dropout -> ``head``. Branch widths
  and the order of the 1xn / nx1 factors are the figures' (the public implementation orders
  some of them the other way round, which does not change the count). 42,679,816
  parameters, within 1% of the widely reported 42.7M (``params_exact=False``).

* ``inception_resnet_v2`` - Fig. 15 with 5 x Inception-ResNet-A (Fig. 16), Reduction-A
  (k=l=256, m=n=384), 10 x Inception-ResNet-B (Fig. 17), Reduction-B (Fig. 18), 5 x
  Inception-ResNet-C (Fig. 19). Each residual module is ``relu(x + scale * up(concat of
  branches))`` where ``up`` is a 1x1 convolution with bias and no BatchNorm ("Linear";
  sec. 3.2: no BatchNorm on top of the summations) back to the input's width; ``scale`` is
  the residual scaling of sec. 3.3 ("between 0.1 and 0.3"), field ``residual_scales``
  with the public implementation's (0.17, 0.10, 0.20) for A, B, C.

  The paper's widths are inconsistent (Fig. 17's 1x1 gives 1154 channels but Reduction-A
  outputs 1152; Fig. 19 gives 2048 but Reduction-B outputs 2144, so the residual sums
  cannot be formed). The corrections of the paper's public implementation (TF-slim
  ``inception_resnet_v2``) are used: its stem (3x3/2 32, 3x3 32, 3x3 64, max pool, 1x1 80,
  3x3 192, max pool, then a 35x35 Inception module (``mixed_5b``: 1x1 96 | 1x1 48 -> 5x5 64
  | 1x1 64 -> 3x3 96 -> 3x3 96 | avg pool -> 1x1 64) giving 320 channels instead of Fig. 3's
  384), residual widths 320 / 1088 / 2080, and a final 1x1 convolution to 1536 channels
  (``conv_7b``) before the average pool. Every residual module ends with its ReLU as in the
  figures (the public implementation leaves it out of the very last one).

  The module counts are the paper's 5 / 10 / 5 (Fig. 15), which gives 33,782,664
  parameters, registered as the exact computed count. The widely reported 55.8M is the
  public implementation's 10 / 20 / 10 modules: ``blocks=(10, 20, 10)`` gives 55,843,464
  (within 0.1% of 55.8M).

Parameter names: ``stem/conv1``.. (Inception-v4: ``stem/conv1..conv3``, ``stem/mixed_3a``,
``stem/mixed_4a_branch{0,1}_{j}``, ``stem/mixed_5a``; Inception-ResNet-v2: ``stem/conv1..conv5``,
``stem/mixed_5b/branch{i}_{j}``), then ``inception_a{i}``, ``reduction_a``,
``inception_b{i}``, ``reduction_b``, ``inception_c{i}`` (Inception-v4) or ``block35_{i}``,
``reduction_a``, ``block17_{i}``, ``reduction_b``, ``block8_{i}``, ``conv_7b``
(Inception-ResNet-v2); inside a module ``branch{i}_{j}`` is the j-th convolution of branch i,
``up`` the residual projection; each convolution holds ``conv`` and ``bn``. Last layer: ``head``.

Feature taps (shapes at 299x299): ``stem`` (35x35; 384 / 320 channels), ``stage1`` (after the
35x35 modules, 35x35x384 / 320), ``stage2`` (Reduction-A + 17x17 modules, 17x17x1024 / 1088),
``stage3`` (Reduction-B + 8x8 modules (+ ``conv_7b``), 8x8x1536), ``pre_logits`` (global
average, 1536) and ``logits``; nominal strides 8, 8, 16, 32 (the unpadded convolutions make
the maps 35/17/8 rather than 299/8, /16, /32).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.nn.pooling import max_pool
from jaxdl.models.inception import BasicConv2d, check_input_size, check_width_multiplier, scaled_width
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm

__all__ = ["InceptionV4", "InceptionResNetV2"]

ModuleDef = Any
TAPS = ("stem", "stage1", "stage2", "stage3", "pre_logits", "logits")


def _avg_pool(x):
    # TensorFlow "SAME" 3x3/1 average: the zero padding is not counted in the mean.
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class _Block(nn.Module):
    """Base of the modules below: ``layer`` is a BasicConv2d partial, ``width`` scales widths."""

    layer: Callable[..., nn.Module]
    width: Callable[[int], int]

    def tower(self, x, specs, branch: int):
        """Apply the convolutions ``specs`` = ((width, kernel, stride, padding), ...) in turn."""
        for j, (c, k, s, p) in enumerate(specs):
            x = self.layer(self.width(c), k, strides=(s, s), padding=p, name=f"branch{branch}_{j}")(x)
        return x


# Convolution specs: (width, kernel, stride, padding); padding (0, 0) = "V" (valid).
def _c(c, kh, kw=None, s=1, valid=False):
    kw = kh if kw is None else kw
    return (c, (kh, kw), s, (0, 0) if valid else (kh // 2, kw // 2))


class InceptionV4Stem(_Block):
    """Fig. 3: ``[N, 299, 299, 3] -> [N, 35, 35, 384]``."""

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        x = L(w(32), (3, 3), strides=(2, 2), name="conv1")(x)                  # 149x149x32
        x = L(w(32), (3, 3), name="conv2")(x)                                  # 147x147x32
        x = L(w(64), (3, 3), padding=(1, 1), name="conv3")(x)                  # 147x147x64
        x = jnp.concatenate([max_pool(x, 3, 2),
                             L(w(96), (3, 3), strides=(2, 2), name="mixed_3a")(x)], axis=-1)  # 73x73x160
        a = x
        for j, spec in enumerate((_c(64, 1), _c(96, 3, valid=True))):
            c, k, s, p = spec
            a = L(w(c), k, strides=(s, s), padding=p, name=f"mixed_4a_branch0_{j}")(a)
        b = x
        for j, spec in enumerate((_c(64, 1), _c(64, 7, 1), _c(64, 1, 7), _c(96, 3, valid=True))):
            c, k, s, p = spec
            b = L(w(c), k, strides=(s, s), padding=p, name=f"mixed_4a_branch1_{j}")(b)
        x = jnp.concatenate([a, b], axis=-1)                                   # 71x71x192
        return jnp.concatenate([L(w(192), (3, 3), strides=(2, 2), name="mixed_5a")(x),
                                max_pool(x, 3, 2)], axis=-1)                   # 35x35x384


class InceptionA(_Block):
    """Fig. 4: ``[N, 35, 35, C] -> [N, 35, 35, 384]``."""

    @nn.compact
    def __call__(self, x):
        return jnp.concatenate([
            self.tower(x, [_c(96, 1)], 0),
            self.tower(x, [_c(64, 1), _c(96, 3)], 1),
            self.tower(x, [_c(64, 1), _c(96, 3), _c(96, 3)], 2),
            self.tower(_avg_pool(x), [_c(96, 1)], 3),
        ], axis=-1)


class ReductionA(_Block):
    """Fig. 7 (35x35 -> 17x17): ``[N, H, W, C] -> [N, H', W', n + m + C]``; (k, l, m, n) of Table 1."""

    klmn: tuple[int, int, int, int] = (192, 224, 256, 384)

    @nn.compact
    def __call__(self, x):
        k, l, m, n = self.klmn
        return jnp.concatenate([
            self.tower(x, [_c(n, 3, s=2, valid=True)], 0),
            self.tower(x, [_c(k, 1), _c(l, 3), _c(m, 3, s=2, valid=True)], 1),
            max_pool(x, 3, 2),
        ], axis=-1)


class InceptionB(_Block):
    """Fig. 5: ``[N, 17, 17, C] -> [N, 17, 17, 1024]``."""

    @nn.compact
    def __call__(self, x):
        return jnp.concatenate([
            self.tower(x, [_c(384, 1)], 0),
            self.tower(x, [_c(192, 1), _c(224, 1, 7), _c(256, 7, 1)], 1),
            self.tower(x, [_c(192, 1), _c(192, 1, 7), _c(224, 7, 1), _c(224, 1, 7), _c(256, 7, 1)], 2),
            self.tower(_avg_pool(x), [_c(128, 1)], 3),
        ], axis=-1)


class ReductionB(_Block):
    """Fig. 8 (17x17 -> 8x8): ``[N, H, W, C] -> [N, H', W', 192 + 320 + C]``."""

    @nn.compact
    def __call__(self, x):
        return jnp.concatenate([
            self.tower(x, [_c(192, 1), _c(192, 3, s=2, valid=True)], 0),
            self.tower(x, [_c(256, 1), _c(256, 1, 7), _c(320, 7, 1), _c(320, 3, s=2, valid=True)], 1),
            max_pool(x, 3, 2),
        ], axis=-1)


class InceptionC(_Block):
    """Fig. 6: ``[N, 8, 8, C] -> [N, 8, 8, 1536]``; the last 3x3 of two towers is split in 1x3 | 3x1."""

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        b1 = self.tower(x, [_c(384, 1)], 1)
        b2 = self.tower(x, [_c(384, 1), _c(448, 1, 3), _c(512, 3, 1)], 2)
        return jnp.concatenate([
            self.tower(x, [_c(256, 1)], 0),
            L(w(256), (1, 3), padding=(0, 1), name="branch1_1a")(b1),
            L(w(256), (3, 1), padding=(1, 0), name="branch1_1b")(b1),
            L(w(256), (1, 3), padding=(0, 1), name="branch2_3a")(b2),
            L(w(256), (3, 1), padding=(1, 0), name="branch2_3b")(b2),
            self.tower(_avg_pool(x), [_c(256, 1)], 3),
        ], axis=-1)


class InceptionResNetV2Stem(_Block):
    """The public implementation's stem + ``mixed_5b``: ``[N, 299, 299, 3] -> [N, 35, 35, 320]``."""

    @nn.compact
    def __call__(self, x):
        L, w = self.layer, self.width
        x = L(w(32), (3, 3), strides=(2, 2), name="conv1")(x)                  # 149x149x32
        x = L(w(32), (3, 3), name="conv2")(x)                                  # 147x147x32
        x = L(w(64), (3, 3), padding=(1, 1), name="conv3")(x)                  # 147x147x64
        x = max_pool(x, 3, 2)                                                  # 73x73x64
        x = L(w(80), (1, 1), name="conv4")(x)                                  # 73x73x80
        x = L(w(192), (3, 3), name="conv5")(x)                                 # 71x71x192
        x = max_pool(x, 3, 2)                                                  # 35x35x192
        return _Mixed5b(L, w, name="mixed_5b")(x)                              # 35x35x320


class _Mixed5b(_Block):
    @nn.compact
    def __call__(self, x):
        return jnp.concatenate([
            self.tower(x, [_c(96, 1)], 0),
            self.tower(x, [_c(48, 1), _c(64, 5)], 1),
            self.tower(x, [_c(64, 1), _c(96, 3), _c(96, 3)], 2),
            self.tower(_avg_pool(x), [_c(64, 1)], 3),
        ], axis=-1)


# Inception-ResNet-v2 residual modules: branches of (width, kernel, stride, padding) specs.
RESNET_BRANCHES = {
    "a": ([_c(32, 1)], [_c(32, 1), _c(32, 3)], [_c(32, 1), _c(48, 3), _c(64, 3)]),   # Fig. 16
    "b": ([_c(192, 1)], [_c(128, 1), _c(160, 1, 7), _c(192, 7, 1)]),                 # Fig. 17
    "c": ([_c(192, 1)], [_c(192, 1), _c(224, 1, 3), _c(256, 3, 1)]),                 # Fig. 19
}


class InceptionResNetBlock(_Block):
    """``relu(x + scale * up(concat(branches)))``; ``[N, H, W, C] -> [N, H, W, C]``."""

    kind: str = "a"
    scale: float = 0.17
    conv: ModuleDef = Conv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = jnp.concatenate([self.tower(x, specs, i) for i, specs in enumerate(RESNET_BRANCHES[self.kind])],
                            axis=-1)
        # "Linear" 1x1 back to the input width: bias, no BatchNorm, no ReLU (sec. 3.2).
        y = self.conv(x.shape[-1], (1, 1), use_bias=True, dtype=self.dtype, name="up")(y)
        return nn.relu(x + self.scale * y)


class ReductionBResNet(_Block):
    """Fig. 18 (17x17 -> 8x8): ``[N, H, W, C] -> [N, H', W', 384 + 288 + 320 + C]``."""

    @nn.compact
    def __call__(self, x):
        return jnp.concatenate([
            self.tower(x, [_c(256, 1), _c(384, 3, s=2, valid=True)], 0),
            self.tower(x, [_c(256, 1), _c(288, 3, s=2, valid=True)], 1),
            self.tower(x, [_c(256, 1), _c(288, 3), _c(320, 3, s=2, valid=True)], 2),
            max_pool(x, 3, 2),
        ], axis=-1)


def _check_blocks(blocks, model: str) -> tuple[int, int, int]:
    if len(tuple(blocks)) != 3 or any(int(b) != b or b < 0 for b in blocks):
        raise ConfigError(f"{model}: blocks must be three non-negative integers (modules at 35x35, 17x17, "
                          f"8x8), got {blocks!r}")
    return tuple(int(b) for b in blocks)


def _classifier(module: nn.Module, x, taps: FeatureTaps, train: bool):
    x = jnp.mean(x, axis=(1, 2))
    if taps.add("pre_logits", x):
        return taps.result
    if module.num_classes == 0:
        return taps.finish(x)
    x = nn.Dropout(module.dropout_rate, deterministic=not train)(x)
    return taps.finish(nn.Dense(module.num_classes, dtype=module.dtype, name="head")(x))


class InceptionV4(nn.Module):
    """Inception-v4 (Szegedy et al. 2017, Fig. 9).

    ``x: <f32>[N, H, W, 3]`` (299x299 by default, at least 75x75) ``-> <f32>[N, num_classes]``;
    ``num_classes=0`` returns the pooled ``pre_logits`` ``[N, 1536]``.

    Attributes:
      num_classes: size of ``head``; 0 drops it.
      blocks: number of Inception-A, -B, -C modules (4, 7, 3 in Fig. 9).
      dropout_rate: dropout before ``head`` (0.2 = keep 0.8, Fig. 9).
      width_multiplier: scales every width (1.0 = the paper's); for quick tests.
      frozen_bn: keep BatchNorm running statistics fixed even when training.
      dtype: compute dtype (parameters stay float32).
      conv: the convolution layer.
    """

    num_classes: int = 1000
    blocks: tuple[int, int, int] = (4, 7, 3)
    dropout_rate: float = 0.2
    width_multiplier: float = 1.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: ModuleDef = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features=None):
        n_a, n_b, n_c = _check_blocks(self.blocks, "inception_v4")
        check_width_multiplier(self.width_multiplier, "inception_v4")
        check_input_size(x, 75, "inception_v4")
        taps = FeatureTaps(features, valid=TAPS)
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, epsilon=1e-3, dtype=self.dtype)
        blk = dict(layer=functools.partial(BasicConv2d, norm=norm, conv=self.conv, dtype=self.dtype),
                   width=functools.partial(scaled_width, multiplier=self.width_multiplier))

        x = InceptionV4Stem(**blk, name="stem")(x.astype(self.dtype))
        if taps.add("stem", x):
            return taps.result
        for i in range(n_a):
            x = InceptionA(**blk, name=f"inception_a{i}")(x)
        if taps.add("stage1", x):
            return taps.result
        x = ReductionA(**blk, klmn=(192, 224, 256, 384), name="reduction_a")(x)
        for i in range(n_b):
            x = InceptionB(**blk, name=f"inception_b{i}")(x)
        if taps.add("stage2", x):
            return taps.result
        x = ReductionB(**blk, name="reduction_b")(x)
        for i in range(n_c):
            x = InceptionC(**blk, name=f"inception_c{i}")(x)
        if taps.add("stage3", x):
            return taps.result
        return _classifier(self, x, taps, train)


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 (Szegedy et al. 2017, Fig. 15; widths of the public implementation).

    ``x: <f32>[N, H, W, 3]`` (299x299 by default, at least 75x75) ``-> <f32>[N, num_classes]``;
    ``num_classes=0`` returns the pooled ``pre_logits`` ``[N, 1536]``.

    Attributes:
      num_classes: size of ``head``; 0 drops it.
      blocks: number of Inception-ResNet-A, -B, -C modules (5, 10, 5 in Fig. 15; the public
        implementation and its 55.8M parameters use 10, 20, 10).
      residual_scales: scaling of the residual branch of A, B, C modules (sec. 3.3).
      dropout_rate: dropout before ``head`` (0.2 = keep 0.8, Fig. 15).
      width_multiplier: scales every width (1.0 = the paper's); for quick tests.
      frozen_bn: keep BatchNorm running statistics fixed even when training.
      dtype: compute dtype (parameters stay float32).
      conv: the convolution layer.
    """

    num_classes: int = 1000
    blocks: tuple[int, int, int] = (5, 10, 5)
    residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20)
    dropout_rate: float = 0.2
    width_multiplier: float = 1.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: ModuleDef = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features=None):
        n_a, n_b, n_c = _check_blocks(self.blocks, "inception_resnet_v2")
        if len(tuple(self.residual_scales)) != 3:
            raise ConfigError(f"inception_resnet_v2: residual_scales must be three numbers (for the A, B, C "
                              f"modules; the paper suggests 0.1-0.3), got {self.residual_scales!r}")
        s_a, s_b, s_c = self.residual_scales
        check_width_multiplier(self.width_multiplier, "inception_resnet_v2")
        check_input_size(x, 75, "inception_resnet_v2")
        taps = FeatureTaps(features, valid=TAPS)
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, epsilon=1e-3, dtype=self.dtype)
        L = functools.partial(BasicConv2d, norm=norm, conv=self.conv, dtype=self.dtype)
        w = functools.partial(scaled_width, multiplier=self.width_multiplier)
        blk = dict(layer=L, width=w)
        res = dict(blk, conv=self.conv, dtype=self.dtype)

        x = InceptionResNetV2Stem(**blk, name="stem")(x.astype(self.dtype))
        if taps.add("stem", x):
            return taps.result
        for i in range(n_a):
            x = InceptionResNetBlock(**res, kind="a", scale=s_a, name=f"block35_{i}")(x)
        if taps.add("stage1", x):
            return taps.result
        x = ReductionA(**blk, klmn=(256, 256, 384, 384), name="reduction_a")(x)
        for i in range(n_b):
            x = InceptionResNetBlock(**res, kind="b", scale=s_b, name=f"block17_{i}")(x)
        if taps.add("stage2", x):
            return taps.result
        x = ReductionBResNet(**blk, name="reduction_b")(x)
        for i in range(n_c):
            x = InceptionResNetBlock(**res, kind="c", scale=s_c, name=f"block8_{i}")(x)
        x = L(w(1536), (1, 1), name="conv_7b")(x)
        if taps.add("stage3", x):
            return taps.result
        return _classifier(self, x, taps, train)


register(
    "inception_v4",
    InceptionV4,
    input_shape=(299, 299, 3),
    family="inception",
    paper="Szegedy et al. 2017, Inception-v4, Inception-ResNet and the Impact of Residual Connections on "
          "Learning, Figs. 3-9 and Table 1",
    num_params=42_700_000,
    params_reference="widely reported 42.7M (public implementation); paper gives no count",
    params_exact=False,
    description="Inception-v4: 4 x A, 7 x B, 3 x C modules, 299x299",
    smoke_input_shape=(75, 75, 3),
    smoke_overrides={"width_multiplier": 0.125, "blocks": (1, 1, 1)},
)

register(
    "inception_resnet_v2",
    InceptionResNetV2,
    input_shape=(299, 299, 3),
    family="inception",
    paper="Szegedy et al. 2017, Inception-v4, Inception-ResNet and the Impact of Residual Connections on "
          "Learning, Figs. 7, 15-19 and Table 1 (widths of the public implementation)",
    num_params=33_782_664,
    params_reference="computed from Szegedy et al. 2017 Fig. 15 (5/10/5 modules) with the public "
                     "implementation's widths; its 10/20/10 modules give the widely reported 55.8M",
    params_exact=True,
    description="Inception-ResNet-v2: 5 x A, 10 x B, 5 x C residual modules, 299x299",
    smoke_input_shape=(75, 75, 3),
    smoke_overrides={"width_multiplier": 0.125, "blocks": (1, 1, 1)},
)
