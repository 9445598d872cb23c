"""Squeeze-and-excitation networks (Hu, Shen, Albanie, Sun & Wu 2018, "Squeeze-and-excitation
networks", CVPR; extended in TPAMI 2019).

Every variant is a :class:`jaxdl.models.resnet.ResNet` with ``se_reduction=16``: a
:class:`jaxdl.nn.SqueezeExcitation` on each residual branch after its last BN, before the
addition (paper Fig. 3, "SE-ResNet module"); parameter names ``stage{s}_block{b}/se/fc1``,
``/se/fc2`` (the rest as :mod:`jaxdl.models.resnet`).

* ``se_resnet50``: ResNet-50 + SE. The paper (sec. 4, "Model and computational complexity")
  gives ~2.5M SE parameters on top of ResNet-50's ~25M; the exact count of the released model
  is 28,088,024 = 25,557,032 + sum over blocks of ``2 C^2/16 + C/16 + C``
  (C = 256, 512, 1024, 2048 for 3, 4, 6, 3 blocks: 2,530,992).
* ``se_resnext50_32x4d``: ResNeXt-50 32x4d + SE: 25,028,904 + 2,530,992 = 27,559,896.
* ``senet154``: the paper's SENet-154 (TPAMI appendix, "Details of SENet-154"; the ILSVRC 2017
  winning single model): SE added to a 64x4d ResNeXt with ResNet-152's stage sizes (3, 8, 36, 3),
  with the paper's modifications (1) the first 1x1 of each bottleneck has half the width of its
  grouped 3x3 (``conv1_width_ratio=0.5``), (2) the 7x7 stem conv is three 3x3 convs (64, 64, 128;
  ``stem="deep"``), (3) the strided 1x1 projection shortcuts are 3x3 stride-2 convs
  (``downsample_kernel=3``), (4) dropout 0.2 before the classifier (``head_dropout_rate``).
  115,088,984 parameters, the count of the released model.

These implementations keep torchvision's v1.5 stride placement (stride on the 3x3) for all
three; the released Caffe SE-ResNet-50 strides its first 1x1 instead, which changes no
parameter count. The deep stem max-pools in ceil mode without padding as the released
SENet-154 does.
"""

from __future__ import annotations

import functools

from jaxdl.models.registry import register
from jaxdl.models.resnet import STAGES, Bottleneck, ResNet

__all__ = ["SE_COUNTS"]

_HU2018 = "Hu, Shen, Albanie, Sun & Wu 2018, Squeeze-and-excitation networks, CVPR/TPAMI"

# Counts of the authors' released models (as ported to PyTorch); the paper states ~2.5M SE
# parameters over ResNet-50 (sec. 4) and describes SENet-154 in its appendix without a count.
SE_COUNTS = {"se_resnet50": 28_088_024, "se_resnext50_32x4d": 27_559_896, "senet154": 115_088_984}

register(
    "se_resnet50",
    functools.partial(ResNet, stage_sizes=STAGES[50][0], block=Bottleneck, se_reduction=16),
    input_shape=(224, 224, 3), family="senet",
    paper=f"{_HU2018}, Fig. 3 (SE-ResNet module) on ResNet-50, sec. 4 (~25M + ~2.5M parameters)",
    num_params=SE_COUNTS["se_resnet50"],
    params_reference="released SE-ResNet-50 (paper sec. 4: ResNet-50 + ~2.5M)", params_exact=True,
    description="SE-ResNet-50 (r = 16)",
    smoke_input_shape=(32, 32, 3), smoke_overrides={"width": 8, "stage_sizes": (1, 1, 1, 1)},
)

register(
    "se_resnext50_32x4d",
    functools.partial(ResNet, stage_sizes=STAGES[50][0], block=Bottleneck, groups=32, width_per_group=4,
                      se_reduction=16),
    input_shape=(224, 224, 3), family="senet",
    paper=f"{_HU2018}, Fig. 3 on ResNeXt-50 (32x4d), Table 2",
    num_params=SE_COUNTS["se_resnext50_32x4d"],
    params_reference="released SE-ResNeXt-50 (32x4d)", params_exact=True,
    description="SE-ResNeXt-50 32x4d (r = 16)",
    smoke_input_shape=(32, 32, 3), smoke_overrides={"width": 16, "stage_sizes": (1, 1, 1, 1)},
)

register(
    "senet154",
    functools.partial(ResNet, stage_sizes=STAGES[152][0], block=Bottleneck, groups=64, width_per_group=4,
                      conv1_width_ratio=0.5, se_reduction=16, stem="deep", stem_width=64,
                      downsample_kernel=3, head_dropout_rate=0.2),
    input_shape=(224, 224, 3), family="senet",
    paper=(f"{_HU2018}, appendix 'Details of SENet-154' (64x4d ResNeXt-152 + SE, halved first 1x1, "
           f"3x3 deep stem, 3x3 stride-2 projections, dropout 0.2)"),
    num_params=SE_COUNTS["senet154"], params_reference="released SENet-154", params_exact=True,
    description="SENet-154",
    # One block per stage and 8 groups keep the smoke forward+grad small on CPU:
    # int(32 * 4 / 64) * 8 = 16 wide 3x3, 8 wide first 1x1, both multiples of 8 groups.
    smoke_input_shape=(32, 32, 3),
    smoke_overrides={"width": 32, "groups": 8, "stem_width": 8, "stage_sizes": (1, 1, 1, 1)},
)
