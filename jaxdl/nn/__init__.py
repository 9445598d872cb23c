"""Layers and helpers that flax.linen lacks, shared by every model family.

* :data:`Conv` - the convolution every family uses (one place to swap in a faster kernel).
* :func:`batch_norm` - BatchNorm bound to train mode and the frozen-statistics flag.
* :class:`FeatureTaps` - collect named intermediate features and stop early.
* :func:`sow_aux_logits` - the one mechanism by which auxiliary classifiers reach the loss.
"""

from jaxdl.nn.common import Conv, FeatureTaps, batch_norm, sow_aux_logits, AUX_COLLECTION

__all__ = ["Conv", "FeatureTaps", "batch_norm", "sow_aux_logits", "AUX_COLLECTION"]
