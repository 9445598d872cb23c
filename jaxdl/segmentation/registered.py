"""Registry entries of the segmentation family (``family="segmentation"``; output ``[N, H, W, K]``)."""

from __future__ import annotations

import functools

from jaxdl.models.registry import register
from jaxdl.segmentation.fcn import FCN
from jaxdl.segmentation.segnet import DeconvNet, SegNet

_FCN_PAPER = "Long, Shelhamer & Darrell 2015, 'Fully Convolutional Networks for Semantic Segmentation'"
# Tiny widths the test-suite's forward + gradient uses on CPU (64x64 input: pool5 is 2x2).
_FCN_SMOKE = {"width": 0.0625, "fc_width": 16}

for _stride in (32, 16, 8):
    register(f"fcn{_stride}s", functools.partial(FCN, stride=_stride), input_shape=(224, 224, 3), num_classes=21,
             family="segmentation",
             paper=f"{_FCN_PAPER}, Fig. 3 / Table 2 (FCN-{_stride}s, VGG16)",
             num_params=134_000_000, params_reference="paper Table 1 (FCN-VGG16: 134M)", params_exact=False,
             description=f"FCN-{_stride}s on VGG16 (fc6/fc7 as convs, "
                         + ("single x32 upsampling)" if _stride == 32 else f"skips down to stride {_stride})"),
             smoke_input_shape=(64, 64, 3), smoke_overrides=_FCN_SMOKE, fixed_input=False)
del _stride

register("segnet", SegNet, input_shape=(360, 480, 3), num_classes=11, family="segmentation",
         paper="Badrinarayanan, Kendall & Cipolla 2017, 'SegNet: A Deep Convolutional Encoder-Decoder Architecture "
               "for Image Segmentation', Fig. 2 / sec. 3",
         description="VGG16 encoder (BN), mirrored decoder upsampling with max-pooling indices",
         smoke_input_shape=(64, 64, 3), smoke_overrides={"width": 0.0625}, fixed_input=False)

register("deconvnet", DeconvNet, input_shape=(224, 224, 3), num_classes=21, family="segmentation",
         paper="Noh, Hong & Han 2015, 'Learning Deconvolution Network for Semantic Segmentation', Table 1",
         description="VGG16 + fc6/fc7 convs, mirrored unpooling + deconvolution network, BN everywhere",
         smoke_input_shape=(64, 64, 3), smoke_overrides={"width": 0.0625, "fc_width": 16, "fc_kernel": 2},
         fixed_input=False)
