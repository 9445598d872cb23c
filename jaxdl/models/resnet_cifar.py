"""CIFAR residual networks (input 32x32x3, 10 classes), all as :class:`jaxdl.models.resnet.ResNet`
with ``stem="cifar"`` (a 3x3 stride-1 conv, no max-pool) and three stages at strides 1, 2, 4.

* ``resnet{20,32,44,56,110,1202}``: He, Zhang, Ren & Sun 2016, "Deep residual learning for
  image recognition", sec. 4.2 and Table 6: 6n+2 layers, basic blocks with 16/32/64 channels,
  n = 3, 5, 7, 9, 18, 200, option A shortcuts (stride-2 subsampling plus zero channels, no
  parameters). Counts in Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M.
* ``resnet110_stochastic_depth``: Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep networks with
  stochastic depth", sec. 4 (CIFAR-10): ResNet-110 with the linear decay rule and p_L = 0.5
  (``drop_path_rate=0.5``).
* ``preact_resnet164``, ``preact_resnet1001``: He et al. 2016b, "Identity mappings in deep
  residual networks", sec. 4-5 and Table 3 (CIFAR): pre-activation bottleneck units
  (9n+2 layers, n = 18, 111; 16/32/64 planes, outputs x4), 1x1 projection shortcuts (option B)
  where the channels change, a final BN-ReLU. Counts 1.7M, 10.2M (the latter is the count
  without BN parameters; see :func:`preact_bottleneck_cifar_params`).
* ``wrn16_8``, ``wrn28_10``, ``wrn40_4``: Zagoruyko & Komodakis 2016, "Wide residual networks",
  Table 1 (structure) and Table 4 (counts 11.0M, 36.5M, 8.9M): WRN-d-k has (d-4)/6
  pre-activation basic-wide blocks B(3,3) per stage with 16k/32k/64k channels after a 16-channel
  3x3 conv, 1x1 projection shortcuts where the shape changes, optional dropout between the two
  convolutions (``dropout_rate``; 0.3 in the paper's dropout runs, default 0 here).
* ``resnext29_8x64d``: Xie et al. 2017, "Aggregated residual transformations for deep neural
  networks", sec. 5.3 and Table 7 (CIFAR): 64-channel 3x3 stem, 3 stages of 3 bottlenecks with
  cardinality 8 and bottleneck width 64d (grouped 3x3 of 512/1024/2048 channels), outputs
  256/512/1024, projection shortcuts. 34.4M.

Deviation, stated: in the pre-activation bottlenecks the stride sits on the 3x3 convolution
(the v1.5 placement used across this package) rather than on the first 1x1 of He et al.'s
released CIFAR code; no parameter count changes.

:func:`cifar_resnet_params` gives the closed-form count of the Table 6 networks, derived from
the architecture of sec. 4.2 (Table 6's two significant digits are not precise enough to check
ResNet-110 to 1%: its 1,727,962 parameters print as 1.7M).
"""

from __future__ import annotations

import functools

from jaxdl.models.registry import register
from jaxdl.models.resnet import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ResNet

__all__ = ["CIFAR_RESNET_DEPTHS", "cifar_resnet_params", "preact_bottleneck_cifar_params", "WIDE_RESNETS"]

_CIFAR = (32, 32, 3)
_HE2016 = "He, Zhang, Ren & Sun 2016, Deep residual learning for image recognition, CVPR"
_HE2016B = "He, Zhang, Ren & Sun 2016b, Identity mappings in deep residual networks, ECCV"
_HUANG2016 = "Huang, Sun, Liu, Sedra & Weinberger 2016, Deep networks with stochastic depth, ECCV"
_WRN = "Zagoruyko & Komodakis 2016, Wide residual networks, BMVC"
_XIE2017 = "Xie, Girshick, Dollar, Tu & He 2017, Aggregated residual transformations for deep neural networks, CVPR"

# depth -> (n blocks per stage, Table 6 parameter count)
CIFAR_RESNET_DEPTHS = {20: (3, 270_000), 32: (5, 460_000), 44: (7, 660_000), 56: (9, 850_000),
                       110: (18, 1_700_000), 1202: (200, 19_400_000)}


def cifar_resnet_params(n: int, num_classes: int = 10) -> int:
    """Parameters of the CIFAR ResNet-(6n+2) of He et al. 2016 sec. 4.2 with option A shortcuts.

    3x3 convs without bias, each followed by a BN (scale and offset): a stem conv 3 -> 16, then
    per stage of width c (16, 32, 64) n blocks of two 3x3 convs, the first taking c_in = c/2
    channels in stages 2-3; global pool and a Dense head.
    """
    total = 3 * 3 * 3 * 16 + 2 * 16
    c_in = 16
    for c in (16, 32, 64):
        total += 9 * c_in * c + 9 * c * c + 4 * c  # first block
        total += (n - 1) * (18 * c * c + 4 * c)
        c_in = c
    return total + 64 * num_classes + num_classes


def preact_bottleneck_cifar_params(n: int, num_classes: int = 10) -> int:
    """Parameters of the CIFAR pre-activation bottleneck ResNet-(9n+2) of He et al. 2016b (sec. 4-5).

    A bare 3x3 conv 3 -> 16; per stage of ``p`` = 16, 32, 64 planes (outputs 4p), n units
    BN(c_in) - 1x1 c_in -> p - BN - 3x3 p -> p - BN - 1x1 p -> 4p (convs without bias, BNs with scale
    and offset), the first unit of each stage with a 1x1 projection c_in -> 4p (c_in = 16, 64, 128);
    a final BN(256), global pool and a Dense head.
    """
    total = 3 * 3 * 3 * 16
    c_in = 16
    for p in (16, 32, 64):
        out = 4 * p
        total += 2 * c_in + c_in * p + 2 * p + 9 * p * p + 2 * p + p * out + c_in * out  # first unit
        total += (n - 1) * (2 * out + out * p + 2 * p + 9 * p * p + 2 * p + p * out)
        c_in = out
    return total + 2 * 256 + 256 * num_classes + num_classes


# One block per stage for the registry's smoke run (forward + gradient on CPU): compile time
# grows with the number of layers; counts and shapes are checked at full depth (shape-only).
_SMOKE = {"stage_sizes": (1, 1, 1)}


def _cifar(**fields):
    return functools.partial(ResNet, stem="cifar", num_classes=10, **fields)


for _depth, (_n, _published) in CIFAR_RESNET_DEPTHS.items():
    _exact = cifar_resnet_params(_n)
    # Table 6 rounds to two significant digits; where that is more than 1% away from the exact
    # count (ResNet-110: 1.728M vs "1.7M"), register the closed-form count of sec. 4.2 instead.
    _use_exact = abs(_exact - _published) > 0.01 * _published
    register(
        f"resnet{_depth}",
        _cifar(stage_sizes=(_n,) * 3, block=BasicBlock, width=16, shortcut="zero_pad"),
        input_shape=_CIFAR, num_classes=10, family="resnet_cifar",
        paper=f"{_HE2016}, sec. 4.2 and Table 6 (CIFAR-10, {_depth} layers, n = {_n}, option A)",
        num_params=_exact if _use_exact else _published,
        params_reference=(f"closed form of sec. 4.2 (Table 6 lists {_published / 1e6:g}M, rounded)"
                          if _use_exact else "paper Table 6"),
        params_exact=_use_exact,
        description=f"CIFAR ResNet-{_depth}",
        smoke_input_shape=_CIFAR, smoke_overrides=_SMOKE,
    )

register(
    "resnet110_stochastic_depth",
    _cifar(stage_sizes=(18,) * 3, block=BasicBlock, width=16, shortcut="zero_pad", drop_path_rate=0.5),
    input_shape=_CIFAR, num_classes=10, family="resnet_cifar",
    paper=f"{_HUANG2016}, sec. 4 (CIFAR-10 ResNet-110, linear decay rule, p_L = 0.5)",
    num_params=cifar_resnet_params(18),
    params_reference="closed form of He et al. 2016 sec. 4.2 (papers list 1.7M, rounded)", params_exact=True,
    description="CIFAR ResNet-110 with stochastic depth (p_L = 0.5)",
    smoke_input_shape=_CIFAR, smoke_overrides=_SMOKE,
)

for _depth, _n, _published in ((164, 18, 1_700_000), (1001, 111, 10_200_000)):
    _exact = preact_bottleneck_cifar_params(_n)
    # ResNet-1001: Table 3's 10.2M is the count without the BN parameters (10,178,490); with
    # them the described network has 10,327,706 (1.3% more), so the closed form is registered.
    _use_exact = abs(_exact - _published) > 0.01 * _published
    register(
        f"preact_resnet{_depth}",
        _cifar(stage_sizes=(_n,) * 3, block=PreActBottleneck, width=16),
        input_shape=_CIFAR, num_classes=10, family="preact_resnet",
        paper=f"{_HE2016B}, sec. 4-5 and Table 3 (CIFAR, pre-activation bottleneck ResNet-{_depth})",
        num_params=_exact if _use_exact else _published,
        params_reference=(f"closed form of sec. 4-5 (Table 3 lists {_published / 1e6:g}M, the count "
                          f"without BN parameters)" if _use_exact else "paper Table 3"),
        params_exact=_use_exact,
        description=f"pre-activation ResNet-{_depth} (CIFAR)",
        smoke_input_shape=_CIFAR, smoke_overrides=_SMOKE,
    )

# name -> (depth d, widening factor k, Table 4 parameter count)
WIDE_RESNETS = {"wrn16_8": (16, 8, 11_000_000), "wrn28_10": (28, 10, 36_500_000), "wrn40_4": (40, 4, 8_900_000)}

for _name, (_depth, _k, _published) in WIDE_RESNETS.items():
    register(
        _name,
        _cifar(stage_sizes=((_depth - 4) // 6,) * 3, block=PreActBasicBlock, width=16 * _k, stem_width=16),
        input_shape=_CIFAR, num_classes=10, family="wide_resnet",
        paper=f"{_WRN}, Table 1 (WRN-{_depth}-{_k}) and Table 4 (CIFAR)",
        num_params=_published, params_reference="paper Table 4", params_exact=False,
        description=f"WRN-{_depth}-{_k} (CIFAR)",
        smoke_input_shape=_CIFAR, smoke_overrides={**_SMOKE, "width": 16},
    )

register(
    "resnext29_8x64d",
    _cifar(stage_sizes=(3, 3, 3), block=Bottleneck, width=64, groups=8, width_per_group=64),
    input_shape=_CIFAR, num_classes=10, family="resnext",
    paper=f"{_XIE2017}, sec. 5.3 and Table 7 (CIFAR, ResNeXt-29 8x64d)",
    num_params=34_400_000, params_reference="paper Table 7", params_exact=False,
    description="ResNeXt-29 8x64d (CIFAR)",
    smoke_input_shape=_CIFAR, smoke_overrides={**_SMOKE, "width": 16, "width_per_group": 16},
)

del _depth, _n, _published, _exact, _use_exact, _name, _k
