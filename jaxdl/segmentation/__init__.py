"""Semantic segmentation: FCN-32s/16s/8s, SegNet, DeconvNet; pixel-wise loss and metrics.

Models register in the one zoo registry with ``family="segmentation"``:

    >>> from jaxdl import models
    >>> model = models.create("fcn8s", num_classes=4, width=0.25, fc_width=128)
    >>> # model.apply(variables, x) : <f32>[N, H, W, 3] -> <f32>[N, H, W, 4] per-pixel logits

Training (``jaxdl.segmentation.training``) reuses :class:`jaxdl.train.TrainState`,
:func:`jaxdl.train.train_step` and :mod:`jaxdl.optim`; see docs/segmentation.md.
"""

from jaxdl.segmentation.fcn import FCN, convolutionalize_vgg_params, vgg_blocks
from jaxdl.segmentation.losses import pixel_cross_entropy
from jaxdl.segmentation.metrics import (confusion_matrix, iou_per_class, mean_iou, pixel_accuracy,
                                        segmentation_scores, segmentation_sums)
from jaxdl.segmentation.segnet import DeconvNet, SegNet
from jaxdl.segmentation import registered  # noqa: F401  (registers fcn32s ... deconvnet)

__all__ = ["FCN", "SegNet", "DeconvNet", "vgg_blocks", "convolutionalize_vgg_params", "pixel_cross_entropy",
           "confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy", "segmentation_sums",
           "segmentation_scores"]
