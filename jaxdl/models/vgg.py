"""VGG: very deep networks of 3x3 convolutions (Simonyan & Zisserman 2015, Table 1).

The configurations A-E are data (:data:`CONFIGS`), written in the paper's notation: a
configuration is a tuple of five blocks, each block a tuple of layers ``"conv3-64"``
(3x3 conv, 64 channels, padding 1), ``"conv1-256"`` (1x1 conv, padding 0) or ``"LRN"``; every
conv is followed by ReLU (with ``batch_norm=True``: BatchNorm then ReLU, torchvision's
``vgg*_bn``) and every block by a 2x2 stride-2 max pool. The classifier is an adaptive average
pool to 7x7 (as torchvision, so any input size >= 32 works) and ``fc6 -> ReLU -> Dropout ->
fc7 -> ReLU -> Dropout -> head`` (4096, 4096; dropout 0.5, sec. 3.1).

========== ======= ============================================ =====================
variant    config  weight layers                                parameters
========== ======= ============================================ =====================
vgg11      A       8 conv + 3 fc = 11                           132,863,336 (tv)
vgg11_lrn  A-LRN   11, LRN after conv1 (Krizhevsky's k,n,a,b)   133M (Table 2)
vgg13      B       13                                           133,047,848 (tv)
vgg16_c    C       16, 1x1 conv last in blocks 3-5              134M (Table 2)
vgg16      D       16                                           138,357,544 (tv)
vgg19      E       19                                           143,667,240 (tv)
========== ======= ============================================ =====================

plus ``vgg11_bn``, ``vgg13_bn``, ``vgg16_bn``, ``vgg19_bn`` (torchvision; convs keep their bias
before BatchNorm, as torchvision's do).

Parameter names: ``block{b}_conv{i}`` (``b`` = 1..5, ``i`` counted from 1 within the block),
``block{b}_bn{i}``, ``fc6``, ``fc7``, ``head``. torchvision's ``features.{k}`` modules map to
the convs/BNs in order, ``classifier.{0,3,6}`` to ``fc6, fc7, head`` (fc6's input rows
reorder from torch's C,H,W flattening to the H,W,C flattening used here).

Feature taps: ``stem`` (block 1 after its convs, before its pool: stride 1), ``stage1 ..
stage5`` (after each block's max pool: strides 2 .. 32), ``fc6``, ``fc7`` (after ReLU, before
dropout: the classic "VGG fc7 features"), ``pre_logits`` (= ``fc7``) and ``logits``.

Initialization follows torchvision (He normal with fan-out for convs, N(0, 0.01) for the
fully connected layers, zero biases); the paper trained A from N(0, 0.01) and initialized the
deeper nets from it (sec. 3.1), which He init makes unnecessary.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.nn.pooling import adaptive_avg_pool, check_nhwc, max_pool
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, LocalResponseNorm, batch_norm

__all__ = ["CONFIGS", "VGG", "parse_layer", "count_weight_layers"]

_C64, _C128, _C256, _C512 = "conv3-64", "conv3-128", "conv3-256", "conv3-512"

# Simonyan & Zisserman 2015, Table 1 (columns A, A-LRN, B, C, D, E); a max pool ends every block.
CONFIGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": ((_C64,), (_C128,), (_C256,) * 2, (_C512,) * 2, (_C512,) * 2),
    "A-LRN": ((_C64, "LRN"), (_C128,), (_C256,) * 2, (_C512,) * 2, (_C512,) * 2),
    "B": ((_C64,) * 2, (_C128,) * 2, (_C256,) * 2, (_C512,) * 2, (_C512,) * 2),
    "C": ((_C64,) * 2, (_C128,) * 2, (_C256, _C256, "conv1-256"), (_C512, _C512, "conv1-512"),
          (_C512, _C512, "conv1-512")),
    "D": ((_C64,) * 2, (_C128,) * 2, (_C256,) * 3, (_C512,) * 3, (_C512,) * 3),
    "E": ((_C64,) * 2, (_C128,) * 2, (_C256,) * 4, (_C512,) * 4, (_C512,) * 4),
}

_CONV = re.compile(r"conv(\d+)-(\d+)")


def parse_layer(layer: str) -> tuple[str, int, int]:
    """``"conv3-64"`` -> ``("conv", 3, 64)``; ``"LRN"`` -> ``("lrn", 0, 0)`` (Table 1 notation)."""
    if layer == "LRN":
        return ("lrn", 0, 0)
    match = _CONV.fullmatch(layer)
    if match is None:
        raise ConfigError(f"unknown VGG layer {layer!r}; write 'conv<kernel>-<channels>' (e.g. 'conv3-64') or 'LRN'")
    return ("conv", int(match.group(1)), int(match.group(2)))


def count_weight_layers(blocks: tuple[tuple[str, ...], ...]) -> int:
    """Weight layers of a configuration: its convs plus the three fully connected layers."""
    return sum(parse_layer(layer)[0] == "conv" for block in blocks for layer in block) + 3


class VGG(nn.Module):
    """VGG network: ``x: <f32>[N, H, W, 3]`` (H, W >= 32) ``-> <f32>[N, num_classes]``.

    Attributes:
      num_classes: size of ``head``; 0 returns ``pre_logits`` (fc7 features ``[N, classifier_width]``).
      blocks: the five blocks of layers (a value of :data:`CONFIGS`).
      batch_norm: BatchNorm after every conv (torchvision ``vgg*_bn``; not in the paper).
      frozen_bn: keep BatchNorm statistics fixed even with ``train=True``.
      pooled_size: adaptive average pool before fc6 (7 -> 7x7x512 = 25088 inputs).
      classifier_width: width of fc6 and fc7 (4096, Table 1; smaller for smoke tests).
      dropout_rate: dropout after fc6 and fc7 (0.5, sec. 3.1).
      norm: the layer used for ``"LRN"`` entries (Krizhevsky 2012's parameters, sec. 2.1).
      conv: convolution layer (swappable).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    blocks: tuple[tuple[str, ...], ...] = CONFIGS["D"]
    batch_norm: bool = False
    frozen_bn: bool = False
    pooled_size: int = 7
    classifier_width: int = 4096
    dropout_rate: float = 0.5
    norm: Any = LocalResponseNorm
    conv: Any = Conv
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        check_nhwc(x, "VGG")
        stages = tuple(f"stage{b}" for b in range(1, len(self.blocks) + 1))
        taps = FeatureTaps(features, valid=("stem",) + stages + ("fc6", "fc7", "pre_logits", "logits"))
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        x = jnp.asarray(x, self.dtype)
        for b, block in enumerate(self.blocks, start=1):
            i = 0
            for layer in block:
                kind, kernel, channels = parse_layer(layer)
                if kind == "lrn":
                    x = self.norm(name=f"block{b}_lrn")(x)
                    continue
                i += 1
                pad = kernel // 2  # 1 for 3x3 ("padding is 1 pixel", sec. 2.1), 0 for 1x1
                x = self.conv(channels, (kernel, kernel), padding=((pad, pad), (pad, pad)), kernel_init=conv_init,
                              dtype=self.dtype, name=f"block{b}_conv{i}")(x)
                if self.batch_norm:
                    x = norm(name=f"block{b}_bn{i}")(x)
                x = nn.relu(x)
            if b == 1 and taps.add("stem", x):
                return taps.result
            x = max_pool(x, 2, 2)
            if taps.add(f"stage{b}", x):
                return taps.result

        x = adaptive_avg_pool(x, self.pooled_size)
        x = x.reshape((x.shape[0], -1))
        dense = functools.partial(nn.Dense, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype)
        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        x = nn.relu(dense(self.classifier_width, name="fc6")(x))
        if taps.add("fc6", x):
            return taps.result
        x = nn.relu(dense(self.classifier_width, name="fc7")(drop(x)))
        if taps.add("fc7", x):
            return taps.result
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        logits = dense(self.num_classes, name="head")(drop(x))
        return taps.finish(logits)


_PAPER = "Simonyan & Zisserman 2015, 'Very Deep Convolutional Networks for Large-Scale Image Recognition'"
_SMOKE = dict(smoke_input_shape=(32, 32, 3), smoke_overrides={"classifier_width": 64})

# name, config, batch_norm, count, reference, exact
_VARIANTS = (
    ("vgg11", "A", False, 132_863_336, "torchvision vgg11", True),
    ("vgg11_lrn", "A-LRN", False, 133_000_000, "paper Table 2 (133M; LRN has no parameters)", False),
    ("vgg13", "B", False, 133_047_848, "torchvision vgg13", True),
    ("vgg16_c", "C", False, 134_000_000, "paper Table 2 (134M)", False),
    ("vgg16", "D", False, 138_357_544, "torchvision vgg16", True),
    ("vgg19", "E", False, 143_667_240, "torchvision vgg19", True),
    ("vgg11_bn", "A", True, 132_868_840, "torchvision vgg11_bn", True),
    ("vgg13_bn", "B", True, 133_053_736, "torchvision vgg13_bn", True),
    ("vgg16_bn", "D", True, 138_365_992, "torchvision vgg16_bn", True),
    ("vgg19_bn", "E", True, 143_678_248, "torchvision vgg19_bn", True),
)

for _name, _config, _bn, _count, _reference, _exact in _VARIANTS:
    register(
        _name, functools.partial(VGG, blocks=CONFIGS[_config], batch_norm=_bn),
        input_shape=(224, 224, 3), family="vgg",
        paper=f"{_PAPER}, Table 1 column {_config}" + (" (+ BatchNorm after each conv, torchvision)" if _bn else ""),
        num_params=_count, params_reference=_reference, params_exact=_exact,
        description=f"VGG configuration {_config}, {count_weight_layers(CONFIGS[_config])} weight layers"
                    + (", BatchNorm" if _bn else ""),
        **_SMOKE)
del _name, _config, _bn, _count, _reference, _exact
