"""Layers and helpers that flax.linen lacks, shared by every model family.

* :data:`Conv` - the convolution every family uses (one place to swap in a faster kernel).
* :func:`batch_norm` - BatchNorm bound to train mode and the frozen-statistics flag.
* :class:`FeatureTaps` - collect named intermediate features and stop early.
* :func:`sow_aux_logits` - the one mechanism by which auxiliary classifiers reach the loss.
* :func:`max_pool_with_indices`, :func:`max_unpool` - SegNet/DeconvNet pooling switches.
* :func:`conv_transpose2d`, :func:`bilinear_kernel_init`, :func:`bilinear_upsample` - FCN upsampling.
"""

from jaxdl.nn.common import Conv, FeatureTaps, batch_norm, sow_aux_logits, AUX_COLLECTION
from jaxdl.nn.lrn import LocalResponseNorm, local_response_norm  # noqa: F401
from jaxdl.nn.shapes import conv_output_size, transposed_conv_output_size  # noqa: F401
from jaxdl.nn.drop_path import DropPath, drop_path, linear_drop_path_rates  # noqa: F401
from jaxdl.nn.squeeze_excitation import SqueezeExcitation  # noqa: F401
from jaxdl.nn.pooling import adaptive_avg_pool, check_nhwc, max_pool  # noqa: F401
from jaxdl.nn.unpooling import max_pool_with_indices, max_unpool  # noqa: F401
from jaxdl.nn.upsample import (bilinear_kernel, bilinear_kernel_init, bilinear_upsample,  # noqa: F401
                               conv_transpose2d, conv_transpose_padding, upsample_geometry)

__all__ = [
    "Conv", "FeatureTaps", "batch_norm", "sow_aux_logits", "AUX_COLLECTION", "LocalResponseNorm",
    "local_response_norm", "conv_output_size", "transposed_conv_output_size", "DropPath", "drop_path",
    "linear_drop_path_rates", "SqueezeExcitation", "max_pool", "adaptive_avg_pool", "check_nhwc",
    "max_pool_with_indices", "max_unpool", "bilinear_kernel", "bilinear_kernel_init", "bilinear_upsample",
    "conv_transpose2d", "conv_transpose_padding", "upsample_geometry",
]
