"""AlexNet and ZFNet: five convolutions and three fully connected layers.

Variants (one :class:`AlexNet` module; the layer table is data, see :data:`LAYOUTS`):

* ``alexnet`` - the single-tower network of torchvision (Krizhevsky 2014, "One weird trick
  for parallelizing convolutional neural networks"): convolutions 64, 192, 384,
  256, 256 (11x11/4 pad 2, 5x5 pad 2, 3x3 pad 1), max pools 3/2, adaptive average pool to
  6x6, then ``Dropout -> fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> head``. 61,100,840
  parameters, exactly torchvision's.
* ``alexnet_lrn`` - Krizhevsky, Sutskever & Hinton 2012 (sec. 3, Fig. 2): convolutions 96,
  256, 384, 384, 256; ReLU then local response normalization (sec. 3.3: k=2, n=5,
  alpha=1e-4, beta=0.75) after conv1 and conv2; overlapping max pools 3/2 (sec. 3.4) after
  both normalizations and after conv5; dropout 0.5 on the outputs of fc6 and fc7 (sec. 4.2).
  ``groups=2`` (the default) is the paper's two-GPU layout: conv2, conv4 and conv5 only see
  the kernel maps of their own tower (Fig. 2: 5x5x48, 3x3x192, 3x3x192 kernels), which gives
  60,965,224 parameters, the count behind the paper's round "60 million" (sec. 4; 1.6% above
  it). ``groups=1`` connects every layer fully: 62,378,344 (4.0% above 60M).
* ``zfnet`` - Zeiler & Fergus 2014, Fig. 3: 7x7/2 conv 96, 3x3/2 max pool, contrast
  normalization across feature maps, 5x5/2 conv 256, pool, normalization, then 3x3 convs
  384, 384, 256, pool, fc 4096, 4096 with dropout 0.5 (sec. 3). The pools round up
  (``ceil_mode``) and conv1 pads by 1 so the map sizes are exactly Fig. 3's
  (224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6). The paper gives no formula for its
  contrast normalization; here it is the AlexNet LRN above (applied after the pool, in the
  order of Fig. 3's caption). 62,357,608 parameters, computed from Fig. 3 (no published count).

Parameter names: ``conv1 .. conv5``, ``fc6``, ``fc7``, ``head`` (each ``{kernel, bias}``);
a torchvision state dict maps ``features.{0,3,6,8,10}`` to ``conv1..conv5`` and
``classifier.{1,4,6}`` to ``fc6, fc7, head`` (kernels transposed to HWIO / (in, out); fc6's
input rows also reorder from torch's C,H,W flattening to the H,W,C flattening used here).

Feature taps: ``stem`` (conv1 with its ReLU/LRN/pool), ``stage1 .. stage4`` (conv2 .. conv5,
each after its own ReLU/LRN/pool), ``fc6``, ``fc7`` (after their ReLU, before dropout),
``pre_logits`` (= ``fc7``) and ``logits``.

This module also holds two PyTorch-exact pooling helpers the fixed-classifier families use:
:func:`max_pool` (``ceil_mode`` as ``torch.nn.MaxPool2d``) and :func:`adaptive_avg_pool`
(``torch.nn.AdaptiveAvgPool2d``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, LocalResponseNorm, conv_output_size
from jaxdl.nn.pooling import adaptive_avg_pool, check_nhwc, max_pool

__all__ = ["ConvLayer", "LAYOUTS", "AlexNet"]


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One convolution of the feature extractor, followed by ReLU and the ops in ``after``.

    Attributes:
      features: output channels.
      kernel: square kernel size.
      stride: stride.
      padding: symmetric zero padding on each side (PyTorch style).
      grouped: split into the model's ``groups`` towers (Krizhevsky 2012's two GPUs).
      after: ops after the ReLU, in order: ``"lrn"`` (the model's ``norm``) and/or ``"pool"``
        (3x3 stride-2 max pool).
    """

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    grouped: bool = False
    after: tuple[str, ...] = ()


LAYOUTS: dict[str, tuple[ConvLayer, ...]] = {
    # torchvision / Krizhevsky 2014 ("one weird trick"), single tower.
    "torchvision": (
        ConvLayer(64, 11, 4, 2, after=("pool",)),
        ConvLayer(192, 5, 1, 2, after=("pool",)),
        ConvLayer(384, 3, 1, 1),
        ConvLayer(256, 3, 1, 1),
        ConvLayer(256, 3, 1, 1, after=("pool",)),
    ),
    # Krizhevsky et al. 2012, sec. 3.5 and Fig. 2; sec. 3.3: LRN after the ReLU of conv1, conv2.
    "krizhevsky2012": (
        ConvLayer(96, 11, 4, 2, after=("lrn", "pool")),
        ConvLayer(256, 5, 1, 2, grouped=True, after=("lrn", "pool")),
        ConvLayer(384, 3, 1, 1),  # "connected to all kernel maps in the second layer"
        ConvLayer(384, 3, 1, 1, grouped=True),
        ConvLayer(256, 3, 1, 1, grouped=True, after=("pool",)),
    ),
    # Zeiler & Fergus 2014, Fig. 3: relu -> pool -> contrast normalization in layers 1 and 2.
    "zeiler_fergus2014": (
        ConvLayer(96, 7, 2, 1, after=("pool", "lrn")),
        ConvLayer(256, 5, 2, 0, after=("pool", "lrn")),
        ConvLayer(384, 3, 1, 1),
        ConvLayer(384, 3, 1, 1),
        ConvLayer(256, 3, 1, 1, after=("pool",)),
    ),
}

DROPOUT_LAYOUTS = ("torchvision", "paper")


class AlexNet(nn.Module):
    """AlexNet-style network: ``x: <f32>[N, H, W, 3] -> <f32>[N, num_classes]``.

    Attributes:
      num_classes: size of ``head``; 0 returns ``pre_logits`` (fc7 features, ``[N, classifier_width]``).
      layers: the convolutions, a tuple of :class:`ConvLayer` (see :data:`LAYOUTS`).
      groups: towers of the layers marked ``grouped`` (2 = Krizhevsky 2012's two GPUs).
      pool_ceil_mode: round the max pools' output size up (ZFNet's Fig. 3 sizes).
      pooled_size: adaptive average pool before fc6 (6 -> a 6x6x256 = 9216 input to fc6).
      classifier_width: width of fc6 and fc7 (4096 in every paper; smaller for smoke tests).
      dropout_rate: dropout probability in the classifier (0.5, Krizhevsky 2012 sec. 4.2).
      dropout_layout: ``"torchvision"`` drops the inputs of fc6 and fc7; ``"paper"`` drops the
        outputs of fc6 and fc7 (Krizhevsky 2012 sec. 4.2, Zeiler & Fergus 2014 sec. 3).
      norm: the response-normalization layer used for ``"lrn"`` entries.
      conv: convolution layer (swappable).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    layers: tuple[ConvLayer, ...] = LAYOUTS["torchvision"]
    groups: int = 1
    pool_ceil_mode: bool = False
    pooled_size: int = 6
    classifier_width: int = 4096
    dropout_rate: float = 0.5
    dropout_layout: str = "torchvision"
    norm: Any = LocalResponseNorm
    conv: Any = Conv
    dtype: Any = jnp.float32

    def _check(self) -> None:
        if self.dropout_layout not in DROPOUT_LAYOUTS:
            raise ConfigError(f"dropout_layout must be one of {DROPOUT_LAYOUTS}, got {self.dropout_layout!r}")
        if self.groups < 1:
            raise ConfigError(f"groups must be >= 1, got {self.groups}")
        in_features = None
        for i, layer in enumerate(self.layers):
            if layer.grouped and (layer.features % self.groups or (in_features or 0) % self.groups):
                raise ConfigError(
                    f"conv{i + 1} is grouped but its {in_features} input / {layer.features} output channels "
                    f"are not divisible by groups={self.groups}; use groups=1 or 2")
            unknown = set(layer.after) - {"lrn", "pool"}
            if unknown:
                raise ConfigError(f"conv{i + 1}: unknown op(s) {sorted(unknown)} after the ReLU; use 'lrn' or 'pool'")
            in_features = layer.features

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        check_nhwc(x, type(self).__name__)
        self._check()
        stage_names = ("stem",) + tuple(f"stage{i}" for i in range(1, len(self.layers)))
        taps = FeatureTaps(features, valid=stage_names + ("fc6", "fc7", "pre_logits", "logits"))
        x = jnp.asarray(x, self.dtype)
        for i, (layer, tap) in enumerate(zip(self.layers, stage_names)):
            x = self.conv(layer.features, (layer.kernel, layer.kernel), strides=(layer.stride, layer.stride),
                          padding=((layer.padding, layer.padding),) * 2,
                          feature_group_count=self.groups if layer.grouped else 1,
                          dtype=self.dtype, name=f"conv{i + 1}")(x)
            x = nn.relu(x)
            for op in layer.after:
                if op == "lrn":
                    x = self.norm(name=f"lrn{i + 1}")(x)
                else:
                    x = max_pool(x, 3, 2, ceil_mode=self.pool_ceil_mode)
            if taps.add(tap, x):
                return taps.result

        x = adaptive_avg_pool(x, self.pooled_size)
        x = x.reshape((x.shape[0], -1))
        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        if self.dropout_layout == "torchvision":
            x = drop(x)
        x = nn.relu(nn.Dense(self.classifier_width, dtype=self.dtype, name="fc6")(x))
        if taps.add("fc6", x):
            return taps.result
        x = drop(x)  # torchvision's dropout before fc7 is the paper's dropout after fc6
        x = nn.relu(nn.Dense(self.classifier_width, dtype=self.dtype, name="fc7")(x))
        if taps.add("fc7", x):
            return taps.result
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        if self.dropout_layout == "paper":
            x = drop(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return taps.finish(logits)


_SMOKE = dict(smoke_input_shape=(64, 64, 3), smoke_overrides={"classifier_width": 64})

register(
    "alexnet", functools.partial(AlexNet),
    input_shape=(224, 224, 3), family="alexnet",
    paper="Krizhevsky 2014, 'One weird trick for parallelizing convolutional neural networks' "
          "(single-tower AlexNet as in torchvision; Krizhevsky et al. 2012 otherwise)",
    num_params=61_100_840, params_reference="torchvision alexnet", params_exact=True,
    description="AlexNet, torchvision's single-tower layout (64-192-384-256-256)", **_SMOKE)

register(
    "alexnet_lrn",
    functools.partial(AlexNet, layers=LAYOUTS["krizhevsky2012"], groups=2, dropout_layout="paper"),
    input_shape=(224, 224, 3), family="alexnet",
    paper="Krizhevsky, Sutskever & Hinton 2012, sec. 3 and Fig. 2 (LRN sec. 3.3, overlapping pooling "
          "sec. 3.4, two-tower grouped conv2/conv4/conv5)",
    num_params=60_965_224,
    params_reference="computed from sec. 3.5/Fig. 2 with groups=2 (the paper's two-GPU layout); sec. 4 "
                     "states '60 million parameters' (this count rounded; groups=1 gives 62,378,344)",
    params_exact=True,
    description="AlexNet as published: 96-256-384-384-256, LRN, two grouped towers", **_SMOKE)

register(
    "zfnet",
    functools.partial(AlexNet, layers=LAYOUTS["zeiler_fergus2014"], pool_ceil_mode=True, dropout_layout="paper"),
    input_shape=(224, 224, 3), family="alexnet",
    paper="Zeiler & Fergus 2014, 'Visualizing and Understanding Convolutional Networks', Fig. 3",
    num_params=62_357_608, params_reference="computed from Fig. 3, no published count", params_exact=True,
    description="ZFNet: 7x7/2 first layer, 5x5/2 second, contrast normalization", **_SMOKE)
