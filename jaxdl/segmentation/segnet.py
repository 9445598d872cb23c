"""Encoder-decoder segmenters that upsample with max-pooling indices: SegNet and DeconvNet.

Both take ``x: <f32>[N, H, W, 3]`` and return ``<f32>[N, H, W, num_classes]`` logits; every
2x2/2 max pool of the encoder records its argmax indices (:func:`jaxdl.nn.max_pool_with_indices`)
and the mirrored decoder stage puts values back there (:func:`jaxdl.nn.max_unpool`, with the
encoder's pre-pool size, so odd sizes such as CamVid's 360x480 -> 45 -> 22 work).

**SegNet** (Badrinarayanan, Kendall & Cipolla 2017, Fig. 2 and sec. 3): the encoder is the 13
convolutions of VGG16 (Table 1 column D of Simonyan & Zisserman), each followed by BatchNorm and
ReLU; the fully connected layers are dropped ("from 134M to 14.7M" encoder parameters, sec. 3).
Each decoder stage unpools and then applies as many 3x3 conv + BN + ReLU as its encoder stage,
mirroring the channels (512, 512, 512 | 512, 512, 256 | 256, 256, 128 | 128, 64 | 64); the last
decoder convolution is the 3x3 classifier to ``K`` channels (no BN/ReLU), whose softmax is the
pixel-wise classification layer. Default ``K = 11`` (CamVid's 11 classes, sec. 4.1).
Parameters (computed, ``K = 11``): 29,449,355 (encoder 14,723,136 incl. BN scale/offset, decoder 14,726,219).

**DeconvNet** (Noh, Hong & Han 2015, Table 1 and sec. 3): the VGG16 convolutions, then fc6 as a
7x7 convolution with 4096 channels (224x224 input: 7x7 -> 1x1) and fc7 as 1x1 (4096); the
deconvolution network mirrors it: a 7x7 "deconv-fc6" (1x1 -> 7x7, 512 channels), then per stage
unpooling and 3x3 deconvolutions (512, 512, 512 | 512, 512, 256 | 256, 256, 128 | 128, 64 | 64, 64),
and a 1x1 score layer to ``K = 21`` (PASCAL VOC). BatchNorm follows every convolution and
deconvolution (sec. 4.1) except the score layer. Parameters (computed, ``K = 21``): 251,805,653 (fc6 102.8M and deconv-fc6 102.8M of them).

Width options for CPU: ``width`` multiplies every VGG channel count (the decoder's mirror too) and,
for DeconvNet, ``fc_width`` replaces 4096 and ``fc_kernel`` replaces 7 (it must equal the pool5
size: 2 for 64x64 inputs).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.vgg import parse_layer
from jaxdl.nn import batch_norm, check_nhwc, conv_transpose2d, max_pool_with_indices, max_unpool
from jaxdl.segmentation.fcn import vgg_blocks

__all__ = ["SegNet", "DeconvNet", "decoder_channels"]


def decoder_channels(blocks) -> list[list[int]]:
    """Channels of the mirrored decoder, deepest stage first: stage ``b``'s convs keep the width of
    encoder stage ``b`` and the last one drops to the width of stage ``b - 1`` (its input)."""
    widths = [[parse_layer(layer)[2] for layer in block if layer != "LRN"] for block in blocks]
    out = []
    for b in range(len(widths) - 1, -1, -1):
        target = widths[b - 1][-1] if b > 0 else widths[0][-1]
        chans = list(reversed(widths[b]))
        chans[-1] = target
        out.append(chans)
    return out


class _Encoder(nn.Module):
    """VGG16 conv stages with BN + ReLU, each ending in a 2x2/2 pool with indices."""

    blocks: Any
    frozen_bn: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        norm = batch_norm(train, frozen=self.frozen_bn, dtype=self.dtype)
        init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        switches = []
        for b, block in enumerate(self.blocks, start=1):
            for i, layer in enumerate(block, start=1):
                _, k, c = parse_layer(layer)
                x = nn.Conv(c, (k, k), padding=k // 2, kernel_init=init, dtype=self.dtype, name=f"block{b}_conv{i}")(x)
                x = nn.relu(norm(name=f"block{b}_bn{i}")(x))
            size = x.shape[1:3]
            x, idx = max_pool_with_indices(x, 2, 2)
            switches.append((idx, size))
        return x, switches


class SegNet(nn.Module):
    """SegNet: ``x: <f32>[N, H, W, 3] -> <f32>[N, H, W, num_classes]`` (H, W >= 32).

    Attributes:
      num_classes: ``K`` (11 for CamVid).
      width: channel multiplier of the VGG16 encoder and its mirrored decoder (1 = the paper).
      frozen_bn: keep BatchNorm statistics fixed with ``train=True``.
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 11
    width: float = 1.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_nhwc(x, "SegNet")
        blocks = vgg_blocks(self.width)
        x, switches = _Encoder(blocks, self.frozen_bn, self.dtype, name="encoder")(jnp.asarray(x, self.dtype), train)
        norm = batch_norm(train, frozen=self.frozen_bn, dtype=self.dtype)
        init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding=1, kernel_init=init, dtype=self.dtype)
        for stage, chans in zip(range(len(blocks), 0, -1), decoder_channels(blocks)):
            idx, size = switches[stage - 1]
            x = max_unpool(x, idx, 2, 2, output_size=size)
            for i, c in enumerate(chans):
                layer = len(chans) - i  # decoder layers numbered as their encoder mirrors: conv5_3_D first
                last = stage == 1 and i == len(chans) - 1
                if last:  # the pixel-wise classifier (conv1_1_D in the reference net)
                    x = conv(self.num_classes, name=f"decoder{stage}_conv{layer}")(x)
                else:
                    x = nn.relu(norm(name=f"decoder{stage}_bn{layer}")(conv(c, name=f"decoder{stage}_conv{layer}")(x)))
        return x.astype(jnp.float32)


class DeconvNet(nn.Module):
    """DeconvNet: ``x: <f32>[N, H, W, 3] -> <f32>[N, H, W, num_classes]`` with pool5 of size ``fc_kernel``
    (224x224 for the paper's 7).

    Attributes:
      num_classes: ``K`` (21 for PASCAL VOC).
      width: VGG16 channel multiplier (1 = the paper).
      fc_width: channels of fc6/fc7 (4096).
      fc_kernel: fc6 / deconv-fc6 kernel (7): must equal the pool5 map size.
      frozen_bn: keep BatchNorm statistics fixed with ``train=True``.
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 21
    width: float = 1.0
    fc_width: int = 4096
    fc_kernel: int = 7
    frozen_bn: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_nhwc(x, "DeconvNet")
        blocks = vgg_blocks(self.width)
        x, switches = _Encoder(blocks, self.frozen_bn, self.dtype, name="encoder")(jnp.asarray(x, self.dtype), train)
        if x.shape[1:3] != (self.fc_kernel, self.fc_kernel):
            raise ConfigError(
                f"DeconvNet's fc6 is a {self.fc_kernel}x{self.fc_kernel} convolution over pool5, but pool5 is "
                f"{x.shape[1]}x{x.shape[2]} for this {32 * x.shape[1]}-ish input; use {32 * self.fc_kernel}x"
                f"{32 * self.fc_kernel} inputs or set fc_kernel={x.shape[1]} (square inputs only)")
        norm = batch_norm(train, frozen=self.frozen_bn, dtype=self.dtype)
        init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        k = self.fc_kernel
        x = nn.relu(norm(name="bn_fc6")(nn.Conv(self.fc_width, (k, k), padding="VALID", kernel_init=init,
                                                dtype=self.dtype, name="fc6")(x)))          # -> 1x1
        x = nn.relu(norm(name="bn_fc7")(nn.Conv(self.fc_width, (1, 1), kernel_init=init, dtype=self.dtype,
                                                name="fc7")(x)))
        top = parse_layer(blocks[-1][-1])[2]
        x = conv_transpose2d(top, k, 1, 0, kernel_init=init, dtype=self.dtype, name="deconv_fc6")(x)  # 1x1 -> kxk
        x = nn.relu(norm(name="bn_deconv_fc6")(x))
        deconv = functools.partial(conv_transpose2d, kernel_size=3, strides=1, padding=1, kernel_init=init,
                                   dtype=self.dtype)
        for stage, chans in zip(range(len(blocks), 0, -1), decoder_channels(blocks)):
            idx, size = switches[stage - 1]
            x = max_unpool(x, idx, 2, 2, output_size=size)
            if stage == 1:
                chans = [chans[0]] * len(chans)  # deconv1_1, deconv1_2 keep 64 channels (Table 1)
            for i, c in enumerate(chans, start=1):
                x = nn.relu(norm(name=f"bn_deconv{stage}_{i}")(deconv(c, name=f"deconv{stage}_{i}")(x)))
        x = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="score")(x)
        return x.astype(jnp.float32)
