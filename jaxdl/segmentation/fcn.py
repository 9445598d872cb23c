"""Fully convolutional networks: FCN-32s, FCN-16s, FCN-8s (Long, Shelhamer & Darrell 2015).

``x: <f32>[N, H, W, 3] -> <f32>[N, H, W, num_classes]`` per-pixel logits.

The VGG16 classifier is made fully convolutional (sec. 3.1): its backbone comes from the zoo by
name (``backbone="vgg16"``, feature taps ``stage3/4/5`` = pool3/pool4/pool5 at strides 8/16/32),
fc6 becomes a 7x7 convolution with 4096 channels and fc7 a 1x1 one (dropout 0.5 after each, as
in VGG), and a zero-initialised 1x1 ``score_fr`` gives class scores at stride 32 (sec. 4.1: zero
init of the scoring layer). Fig. 3 / sec. 4.2 skip architecture:

* FCN-32s: score_fr upsampled x32 in one step.
* FCN-16s: ``upscore2`` (x2, learned, bilinear init) of score_fr + ``score_pool4`` (1x1 on
  pool4, zero init), then x16.
* FCN-8s: that sum upsampled x2 (``upscore_pool4``) + ``score_pool3``, then x8.

The final upsampling is fixed bilinear interpolation and the intermediate ones are initialised
bilinear and learned (sec. 4.2: "the final layer deconvolutional filters are fixed to bilinear
interpolation, while intermediate upsampling layers are initialized to bilinear upsampling, and
then learned"); ``learn_final_upsample=True`` learns the last one too.

Alignment (the paper's "crop" layers). The reference Caffe nets pad the input by 100 pixels and
crop each upsampled map at a computed offset. Here fc6 uses "same" padding (3) and the input is
zero-padded at the bottom/right to a multiple of 32, so every map is exactly ``H/32, H/16, H/8``,
the x2 upsamplings (kernel 4, stride 2, padding 1) land exactly on pool4/pool3, and the output
is cropped back to ``H x W``; the receptive-field arithmetic of the skips is the same, without
the 100-pixel margin.

Parameter counts (21 classes, PASCAL VOC; the fixed x8/x16/x32 upsampling has none here, while
Caffe stores it as a frozen 21x21 deconvolution): paper Table 1 gives 134M for FCN-VGG16.

========  ==============  =====================================================
variant   parameters      (VGG16 convs 14,714,688 + fc6 102,764,544 + fc7 16,781,312)
========  ==============  =====================================================
fcn32s    134,346,581     + score_fr 86,037
fcn16s    134,364,410     + score_pool4 10,773 + upscore2 7,056
fcn8s     134,376,863     + score_pool3 5,397 + upscore_pool4 7,056
========  ==============  =====================================================

For CPU training, ``width`` scales the backbone's channels and ``fc_width`` replaces 4096 (e.g.
``width=0.25, fc_width=256``); the backbone is then the same VGG16 topology, narrower.
``fc6`` / ``fc7`` are named as in VGG, so :func:`convolutionalize_vgg_params` turns a zoo VGG16's
``fc6``/``fc7`` dense weights (ImageNet-pretrained via torchvision import) into these convs.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.models import registry
from jaxdl.models.vgg import CONFIGS
from jaxdl.nn import bilinear_kernel_init, bilinear_upsample, check_nhwc, conv_transpose2d, upsample_geometry

__all__ = ["FCN", "vgg_blocks", "convolutionalize_vgg_params", "FCN_TAPS"]

# Backbone taps used by the skips: pool3, pool4, pool5 (strides 8, 16, 32).
FCN_TAPS = ("stage3", "stage4", "stage5")


def vgg_blocks(width: float = 1.0, config: str = "D") -> tuple[tuple[str, ...], ...]:
    """A VGG configuration (Table 1 of Simonyan & Zisserman) with every channel count times ``width``."""
    if not 0 < width <= 1:
        raise ConfigError(f"width must be in (0, 1], got {width}")

    def scale(layer: str) -> str:
        if layer == "LRN":
            return layer
        kernel, channels = layer[len("conv"):].split("-")
        return f"conv{kernel}-{max(4, int(round(int(channels) * width)))}"

    return tuple(tuple(scale(layer) for layer in block) for block in CONFIGS[config])


def convolutionalize_vgg_params(vgg_params: dict, pooled_size: int = 7) -> dict:
    """Map a zoo VGG's ``fc6``/``fc7`` Dense parameters to FCN's ``fc6``/``fc7`` convolutions (sec. 3.1).

    ``fc6: kernel [7*7*512, 4096]`` (rows in H, W, C order, see jaxdl/models/vgg.py) ->
    ``[7, 7, 512, 4096]``; ``fc7: [4096, 4096] -> [1, 1, 4096, 4096]``. Returns ``{"fc6": ..., "fc7": ...}``.
    """
    out = {}
    for name, k in (("fc6", pooled_size), ("fc7", 1)):
        kernel = np.asarray(vgg_params[name]["kernel"])
        cout = kernel.shape[1]
        out[name] = {"kernel": kernel.reshape(k, k, -1, cout), "bias": np.asarray(vgg_params[name]["bias"])}
    return out


class FCN(nn.Module):
    """FCN-32s/16s/8s: ``x: <f32>[N, H, W, 3] -> <f32>[N, H, W, num_classes]`` (H, W >= 32).

    Attributes:
      num_classes: ``K`` output channels (21 for PASCAL VOC incl. background).
      stride: 32, 16 or 8: the finest skip used (FCN-32s / -16s / -8s).
      backbone: zoo name of a VGG with taps ``stage3..5`` (``"vgg16"``; ``"vgg16_bn"`` works too).
      width: channel multiplier of the backbone (1 = the paper's VGG16).
      fc_width: channels of fc6/fc7 (4096 in the paper).
      fc6_kernel: 7 (VGG's 7x7 pool5 grid); 'same' padding.
      dropout_rate: after fc6 and fc7 (0.5, as VGG).
      learn_final_upsample: learn the last upsampling too (the paper keeps it fixed).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 21
    stride: int = 8
    backbone: str = "vgg16"
    width: float = 1.0
    fc_width: int = 4096
    fc6_kernel: int = 7
    dropout_rate: float = 0.5
    learn_final_upsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_nhwc(x, "FCN")
        if self.stride not in (8, 16, 32):
            raise ConfigError(f"FCN stride must be 32, 16 or 8 (FCN-32s/16s/8s), got {self.stride}")
        n, h, w, _ = x.shape
        # Pad to a multiple of 32 so every pool is exact and the skips align (see module docstring).
        ph, pw = -h % 32, -w % 32
        x = jnp.pad(jnp.asarray(x, self.dtype), ((0, 0), (0, ph), (0, pw), (0, 0)))

        overrides: dict[str, Any] = {"dtype": self.dtype}
        if self.width != 1.0:
            config = "D" if self.backbone.startswith("vgg16") else None
            if config is None:
                raise ConfigError(f"width != 1 is only defined for the vgg16 backbones, got {self.backbone!r}")
            overrides["blocks"] = vgg_blocks(self.width, config)
        entry = registry.info(self.backbone)
        body = entry.builder(num_classes=0, name="backbone", **overrides)
        taps = body(x, train=train, features=FCN_TAPS)

        zeros = nn.initializers.zeros
        conv = functools.partial(nn.Conv, dtype=self.dtype)
        drop = nn.Dropout(self.dropout_rate, deterministic=not train)
        k = self.fc6_kernel
        y = nn.relu(conv(self.fc_width, (k, k), padding=((k // 2, (k - 1) // 2),) * 2, name="fc6")(taps["stage5"]))
        y = nn.relu(conv(self.fc_width, (1, 1), name="fc7")(drop(y)))
        score = conv(self.num_classes, (1, 1), kernel_init=zeros, name="score_fr")(drop(y))

        up2 = functools.partial(conv_transpose2d, self.num_classes, 4, 2, 1, use_bias=False,
                                kernel_init=bilinear_kernel_init, dtype=self.dtype)
        if self.stride <= 16:
            score = up2(name="upscore2")(score) + conv(self.num_classes, (1, 1), kernel_init=zeros,
                                                       name="score_pool4")(taps["stage4"])
        if self.stride == 8:
            score = up2(name="upscore_pool4")(score) + conv(self.num_classes, (1, 1), kernel_init=zeros,
                                                            name="score_pool3")(taps["stage3"])
        if self.learn_final_upsample:
            kk, pp = upsample_geometry(self.stride)
            score = conv_transpose2d(self.num_classes, kk, self.stride, pp, use_bias=False,
                                     kernel_init=bilinear_kernel_init, dtype=self.dtype,
                                     name=f"upscore{self.stride}")(score)
        else:
            score = bilinear_upsample(score, self.stride)
        return score[:, :h, :w].astype(jnp.float32)
