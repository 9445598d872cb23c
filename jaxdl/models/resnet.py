"""Residual networks: one :class:`ResNet` module whose fields cover the whole family.

* ResNet-18/34/50/101/152 (He, Zhang, Ren & Sun 2016, "Deep residual learning for image
  recognition", CVPR, Table 1), in the "v1.5" form of torchvision: the stride-2 of a
  bottleneck sits on its 3x3 convolution, not on the first 1x1 (the paper's Caffe models), and
  projection shortcuts (option B, sec. 3.3) where the shape changes. Parameter counts equal
  torchvision's exactly.
* Pre-activation ResNets (He, Zhang, Ren & Sun 2016b, "Identity mappings in deep residual
  networks", ECCV, Fig. 1(b) and 4(e)): BN-ReLU-conv units, a final BN-ReLU before pooling.
* Wide ResNets (Zagoruyko & Komodakis 2016, "Wide residual networks", BMVC): ImageNet
  ``wide_resnet50_2``/``wide_resnet101_2`` (torchvision: bottleneck 3x3 width doubled).
* ResNeXt (Xie, Girshick, Dollar, Tu & He 2017, "Aggregated residual transformations for deep
  neural networks", CVPR, Table 1, Fig. 3(c)): grouped 3x3 convolutions (``feature_group_count``).
* Squeeze-excitation variants (:mod:`jaxdl.models.senet`), CIFAR variants
  (:mod:`jaxdl.models.resnet_cifar`) and stochastic depth (``drop_path_rate``) on all of them.

Depth and shape are data: ``STAGES[depth] = (stage_sizes, block)``; each variant is one
``functools.partial(ResNet, ...)``.

Layout (224x224 input, ``stem="imagenet"``)::

    stem   conv 7x7/2 (pad 3) - BN - ReLU - maxpool 3x3/2 (pad 1)   -> 56x56, stride 4
    stage1 blocks at stride 1 (planes = width)                      -> 56x56
    stage2 first block stride 2 (planes = 2 width)                  -> 28x28
    stage3 ...                                    (4 width)         -> 14x14
    stage4 ...                                    (8 width)         ->  7x7, stride 32
    [final BN - ReLU for pre-activation blocks]
    global average pool -> pre_logits -> [dropout] -> head (Dense)

Parameter names (chosen so that a torchvision key map is one table)::

    stem_conv, stem_bn                     torchvision conv1, bn1
    stem_conv{1,2,3}, stem_bn{1,2,3}       deep stem (SENet-154)
    stage{s}_block{b}/conv{i}, /bn{i}      layer{s}.{b}.conv{i}, .bn{i}
    stage{s}_block{b}/shortcut_conv, /shortcut_bn    layer{s}.{b}.downsample.0, .1
    stage{s}_block{b}/se/fc1, /se/fc2      squeeze-excitation (fc1/fc2 of the SE reference)
    final_bn                               pre-activation networks only
    head                                   fc

In pre-activation blocks ``bn{i}`` is the BatchNorm *before* ``conv{i}``; a projection shortcut
there is a bare convolution of the pre-activated input (He et al. 2016b, as their released code).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm
from jaxdl.nn.drop_path import DropPath, linear_drop_path_rates
from jaxdl.nn.pooling import max_pool
from jaxdl.nn.squeeze_excitation import SqueezeExcitation

__all__ = [
    "BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ResNet", "STAGES",
    "zero_pad_shortcut", "he_normal_fan_out",
]

# He et al. 2016 Table 1: blocks per stage and block type for each depth.
STAGES: dict[int, tuple[tuple[int, ...], str]] = {
    18: ((2, 2, 2, 2), "basic"),
    34: ((3, 4, 6, 3), "basic"),
    50: ((3, 4, 6, 3), "bottleneck"),
    101: ((3, 4, 23, 3), "bottleneck"),
    152: ((3, 8, 36, 3), "bottleneck"),
}

# He initialisation with fan-out, as torchvision's ResNet (kaiming_normal_, mode="fan_out").
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

SHORTCUTS = ("projection", "zero_pad")
STEMS = ("imagenet", "cifar", "deep")


def zero_pad_shortcut(x: jax.Array, out_channels: int, strides: int) -> jax.Array:
    """Option-A shortcut (He et al. 2016, sec. 3.3 and 4.2): parameter-free.

    ``x: [N, H, W, C] -> [N, ceil(H / s), ceil(W / s), out_channels]``: subsample every
    ``strides``-th pixel (starting at 0, like a 1x1 stride-s pooling) and append
    ``out_channels - C`` zero channels after the input's channels.
    """
    channels = x.shape[-1]
    if out_channels < channels:
        raise ConfigError(f"a zero-padding (option A) shortcut can only add channels: {channels} -> "
                          f"{out_channels}; use shortcut='projection' for this block")
    if strides > 1:
        x = x[:, ::strides, ::strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, out_channels - channels)))


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((k // 2, k // 2), (k // 2, k // 2))


class _ResidualBlock(nn.Module):
    """Fields shared by the four block types (see :class:`ResNet` for their meaning).

    ``planes`` is the block's base width; its output has ``planes * expansion`` channels.
    """

    planes: int
    strides: int = 1
    groups: int = 1
    width_per_group: int = 64
    conv1_width_ratio: float = 1.0
    se_reduction: Optional[int] = None
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    shortcut: str = "projection"
    downsample_kernel: int = 1
    zero_init_residual: bool = False
    skip_preact: bool = False
    frozen_bn: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu
    conv: Any = Conv
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    expansion: ClassVar[int] = 1
    preact: ClassVar[bool] = False

    @property
    def out_channels(self) -> int:
        return self.planes * self.expansion

    def _conv(self, features: int, kernel: int, strides: int = 1, groups: int = 1, name: str = "",
              zero: bool = False) -> nn.Module:
        return self.conv(features, (kernel, kernel), strides=(strides, strides), padding=_pad(kernel),
                         feature_group_count=groups, use_bias=False, dtype=self.dtype,
                         kernel_init=nn.initializers.zeros_init() if zero else he_normal_fan_out, name=name)

    def _norm(self, train: bool, name: str, zero: bool = False) -> nn.Module:
        kw = {"scale_init": nn.initializers.zeros_init()} if zero else {}
        return batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)(name=name, **kw)

    def _shortcut(self, x: jax.Array, train: bool, with_norm: bool) -> jax.Array:
        """Identity, or (when stride or channels change) option A zero padding or a projection."""
        out = self.out_channels
        if self.strides == 1 and x.shape[-1] == out:
            return x
        if self.shortcut == "zero_pad":
            return zero_pad_shortcut(x, out, self.strides)
        # SENet-154 (Hu et al. 2018, sec. 6.1 / appendix): the strided 1x1 projection becomes a 3x3.
        kernel = self.downsample_kernel if self.strides > 1 else 1
        y = self._conv(out, kernel, self.strides, name="shortcut_conv")(x)
        return self._norm(train, "shortcut_bn")(y) if with_norm else y

    def _finish_branch(self, y: jax.Array, train: bool) -> jax.Array:
        if self.se_reduction is not None:
            y = SqueezeExcitation(reduction=self.se_reduction, dtype=self.dtype, name="se")(y)
        return DropPath(self.drop_path_rate, name="drop_path")(y, deterministic=not train)

    def _check(self, x: jax.Array) -> None:
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (He et al. 2016, Fig. 5 left), post-activation.

    ``x: [N, H, W, C] -> [N, H / strides, W / strides, planes]``::

        conv1 3x3/s - bn1 - relu - [dropout] - conv2 3x3 - bn2 - [se] - [drop_path] (+ shortcut) - relu
    """

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self._check(x)
        if self.groups != 1 or self.width_per_group != 64:
            raise ConfigError("BasicBlock supports only groups=1 and width_per_group=64 (as torchvision); "
                              "use a Bottleneck block for grouped (ResNeXt) or wide bottleneck variants")
        y = self._conv(self.planes, 3, self.strides, name="conv1")(x)
        y = self.act(self._norm(train, "bn1")(y))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = self._conv(self.planes, 3, name="conv2")(y)
        y = self._norm(train, "bn2", zero=self.zero_init_residual)(y)
        y = self._finish_branch(y, train)
        return self.act(y + self._shortcut(x, train, with_norm=True))


class Bottleneck(_ResidualBlock):
    """1x1 - 3x3 (stride, groups) - 1x1 bottleneck (He et al. 2016 Fig. 5 right; ResNeXt Fig. 3(c)).

    Inner width ``w = int(planes * width_per_group / 64) * groups`` (torchvision's rule: 64 for
    ResNet-50's first stage, 128 = 32x4 for ResNeXt-50 32x4d, 128 for Wide ResNet-50-2);
    ``conv1`` has ``int(w * conv1_width_ratio)`` outputs (0.5 in SENet-154). Output
    ``4 * planes`` channels. ``x: [N, H, W, C] -> [N, H / strides, W / strides, 4 planes]``::

        conv1 1x1 - bn1 - relu - conv2 3x3/s (groups) - bn2 - relu - [dropout] - conv3 1x1 - bn3
        - [se] - [drop_path] (+ shortcut) - relu
    """

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self._check(x)
        width, reduced = _bottleneck_widths(self)
        y = self._conv(reduced, 1, name="conv1")(x)
        y = self.act(self._norm(train, "bn1")(y))
        y = self._conv(width, 3, self.strides, self.groups, name="conv2")(y)
        y = self.act(self._norm(train, "bn2")(y))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = self._conv(self.out_channels, 1, name="conv3")(y)
        y = self._norm(train, "bn3", zero=self.zero_init_residual)(y)
        y = self._finish_branch(y, train)
        return self.act(y + self._shortcut(x, train, with_norm=True))


def _bottleneck_widths(block: _ResidualBlock) -> tuple[int, int]:
    width = int(block.planes * (block.width_per_group / 64.0)) * block.groups
    reduced = int(width * block.conv1_width_ratio)
    if width < 1 or reduced < 1 or width % block.groups or reduced % block.groups:
        raise ConfigError(
            f"bottleneck widths {reduced} -> {width} are not positive multiples of groups={block.groups} "
            f"(planes={block.planes}, width_per_group={block.width_per_group}, conv1_width_ratio="
            f"{block.conv1_width_ratio}); raise width or width_per_group, or lower groups")
    return width, reduced


class PreActBasicBlock(_ResidualBlock):
    """Pre-activation basic unit (He et al. 2016b Fig. 4(e)); the Wide ResNet block
    (Zagoruyko & Komodakis 2016, Fig. 1(d): dropout between the convolutions).

    ``x: [N, H, W, C] -> [N, H / strides, W / strides, planes]``::

        bn1 - relu - conv1 3x3/s - bn2 - relu - [dropout] - conv2 3x3 - [se] - [drop_path] (+ shortcut)

    When the shortcut is not the identity it takes the pre-activated input (bn1-relu shared by
    both paths). ``skip_preact`` drops bn1-relu for the first block after a stem that already
    ends in BN-ReLU (He et al.'s released ImageNet code).
    """

    preact: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self._check(x)
        if self.groups != 1 or self.width_per_group != 64:
            raise ConfigError("PreActBasicBlock supports only groups=1 and width_per_group=64; "
                              "use PreActBottleneck for grouped or wide bottleneck variants")
        pre = x if self.skip_preact else self.act(self._norm(train, "bn1")(x))
        y = self._conv(self.planes, 3, self.strides, name="conv1")(pre)
        y = self.act(self._norm(train, "bn2")(y))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = self._conv(self.planes, 3, name="conv2", zero=self.zero_init_residual)(y)
        y = self._finish_branch(y, train)
        identity = self.strides == 1 and x.shape[-1] == self.out_channels
        return y + (x if identity else self._shortcut(pre, train, with_norm=False))


class PreActBottleneck(_ResidualBlock):
    """Pre-activation bottleneck (He et al. 2016b Fig. 4(e), the ResNet-164/1001 unit).

    ``x: [N, H, W, C] -> [N, H / strides, W / strides, 4 planes]``::

        bn1 - relu - conv1 1x1 - bn2 - relu - conv2 3x3/s (groups) - bn3 - relu - [dropout] - conv3 1x1
        - [se] - [drop_path] (+ shortcut)
    """

    expansion: ClassVar[int] = 4
    preact: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        self._check(x)
        width, reduced = _bottleneck_widths(self)
        pre = x if self.skip_preact else self.act(self._norm(train, "bn1")(x))
        y = self._conv(reduced, 1, name="conv1")(pre)
        y = self.act(self._norm(train, "bn2")(y))
        y = self._conv(width, 3, self.strides, self.groups, name="conv2")(y)
        y = self.act(self._norm(train, "bn3")(y))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = self._conv(self.out_channels, 1, name="conv3", zero=self.zero_init_residual)(y)
        y = self._finish_branch(y, train)
        identity = self.strides == 1 and x.shape[-1] == self.out_channels
        return y + (x if identity else self._shortcut(pre, train, with_norm=False))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck,
          "preact_basic": PreActBasicBlock, "preact_bottleneck": PreActBottleneck}


class ResNet(nn.Module):
    """Residual network: ``x: <f32>[N, H, W, C]`` -> ``<f32>[N, num_classes]``.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50 (He et al. 2016 Table 1),
        ``(n, n, n)`` for a CIFAR ResNet-(6n+2) (sec. 4.2).
      block: a block class (:class:`BasicBlock`, :class:`Bottleneck`, :class:`PreActBasicBlock`,
        :class:`PreActBottleneck`) or its name in ``BLOCKS``.
      num_classes: size of ``head``; 0 drops it and returns the pooled ``pre_logits``.
      width: ``planes`` of stage 1; stage ``s`` has ``width * 2**(s-1)`` (outputs times the
        block's expansion: 64/128/256/512 x4 for ResNet-50, 16/32/64 for CIFAR ResNets,
        16k/32k/64k for WRN-d-k).
      stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), ``"cifar"`` (3x3 conv, BN,
        ReLU; a bare conv in pre-activation networks, whose first block pre-activates) or
        ``"deep"`` (SENet-154: three 3x3 convs ``stem_width, stem_width, 2 stem_width``, the first
        stride 2, each with BN-ReLU, then a 3x3/2 max-pool in ceil mode).
      stem_width: stem output channels (``None`` = ``width``; 16 for Wide ResNets).
      groups, width_per_group: ResNeXt cardinality and bottleneck width (torchvision's rule,
        see :class:`Bottleneck`); ``width_per_group=128`` is Wide ResNet-50-2.
      conv1_width_ratio: width of a bottleneck's first 1x1 relative to its 3x3 (SENet-154: 0.5).
      se_reduction: add squeeze-excitation with this ratio to every block (Hu et al. 2018: 16).
      shortcut: ``"projection"`` (option B: 1x1 conv [+ BN] where the shape changes) or
        ``"zero_pad"`` (option A: stride-s subsampling and zero channels, no parameters).
      downsample_kernel: kernel of strided projections (SENet-154: 3).
      drop_path_rate: stochastic depth (Huang et al. 2016): drop probability of the *last*
        block; block ``l`` of ``L`` uses ``(l / L) * drop_path_rate`` (linear decay rule),
        in training only, inverted scaling (see :mod:`jaxdl.nn.drop_path`). Needs the
        ``"dropout"`` rng when ``> 0`` and ``train=True``.
      dropout_rate: dropout between the convolutions of every block (Wide ResNets, sec. 2.4:
        0.3 in the paper's dropout runs).
      head_dropout_rate: dropout before ``head`` (SENet-154: 0.2, Hu et al. 2018 sec. 6.1).
      zero_init_residual: start every residual branch at zero: the last BN's scale of
        post-activation blocks (Goyal et al. 2017, sec. 5.1), the last conv's kernel of
        pre-activation blocks (they end in a conv), so each block starts as its shortcut.
      frozen_bn: keep BatchNorm running statistics fixed even with ``train=True``.
      dtype: compute dtype; parameters stay float32.
      conv: convolution layer (``jaxdl.nn.Conv``).

    Feature taps: ``stem`` (after the max-pool), ``stage1`` .. ``stage{len(stage_sizes)}``
    (block outputs; for pre-activation networks the last stage is tapped before
    ``final_bn``-ReLU), ``pre_logits`` (pooled ``[N, C]``), ``logits``.
    """

    stage_sizes: Sequence[int]
    block: Any = BasicBlock
    num_classes: int = 1000
    width: int = 64
    stem: str = "imagenet"
    stem_width: Optional[int] = None
    groups: int = 1
    width_per_group: int = 64
    conv1_width_ratio: float = 1.0
    se_reduction: Optional[int] = None
    shortcut: str = "projection"
    downsample_kernel: int = 1
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    head_dropout_rate: float = 0.0
    zero_init_residual: bool = False
    frozen_bn: bool = False
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics
    remat: bool = False  # recompute each residual block's activations in the backward pass (jax.checkpoint)

    def _block_class(self) -> type:
        block = BLOCKS.get(self.block, None) if isinstance(self.block, str) else self.block
        if not (isinstance(block, type) and issubclass(block, _ResidualBlock)):
            raise ConfigError(f"block must be one of {', '.join(BLOCKS)} (or one of those classes), "
                              f"got {self.block!r}")
        return block

    def _validate(self, x: jax.Array) -> None:
        if x.ndim != 4:
            raise ConfigError(f"ResNet takes NHWC input [N, H, W, C], got shape {tuple(x.shape)}; "
                              f"add a batch axis for a single image")
        if self.stem not in STEMS:
            raise ConfigError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if not self.stage_sizes or any(int(n) < 1 for n in self.stage_sizes):
            raise ConfigError(f"stage_sizes must be a non-empty sequence of positive block counts, "
                              f"got {self.stage_sizes!r}")
        if self.width < 1:
            raise ConfigError(f"width must be >= 1, got {self.width}")
        for name in ("dropout_rate", "head_dropout_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.drop_path_rate <= 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1] (drop probability of the last block), "
                              f"got {self.drop_path_rate}")

    def _stem(self, x: jax.Array, train: bool, activate: bool) -> jax.Array:
        stem_width = self.width if self.stem_width is None else self.stem_width
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype, kernel_init=he_normal_fan_out)
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        if self.stem == "deep":
            for i, (features, stride) in enumerate(((stem_width, 2), (stem_width, 1), (2 * stem_width, 1)), 1):
                x = conv(features, (3, 3), strides=(stride, stride), padding=_pad(3), name=f"stem_conv{i}")(x)
                x = self.act(norm(name=f"stem_bn{i}")(x))
            # The released SENet models pool 3x3/2 in ceil mode without padding (112 -> 56 at 224).
            return max_pool(x, 3, 2, ceil_mode=True)
        kernel, stride = (7, 2) if self.stem == "imagenet" else (3, 1)
        x = conv(stem_width, (kernel, kernel), strides=(stride, stride), padding=_pad(kernel), name="stem_conv")(x)
        if activate:
            x = self.act(norm(name="stem_bn")(x))
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_pad(3))
        return x

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        self._validate(x)
        block_cls = self._block_class()
        stage_names = tuple(f"stage{i + 1}" for i in range(len(self.stage_sizes)))
        taps = FeatureTaps(features, valid=("stem", *stage_names, "pre_logits", "logits"))
        x = x.astype(self.dtype)

        # Pre-activation networks with a CIFAR stem start with a bare conv and let the first block
        # pre-activate (WRN, He et al. 2016b's CIFAR code); after an ImageNet/deep stem, which ends
        # in BN-ReLU(-pool), the first block skips its own pre-activation.
        stem_activates = not (block_cls.preact and self.stem == "cifar")
        x = self._stem(x, train, activate=stem_activates)
        if taps.add("stem", x):
            return taps.result

        rates = linear_drop_path_rates(self.drop_path_rate, sum(int(n) for n in self.stage_sizes))
        index = 0
        # remat: only block inputs are kept for the backward pass; the block's inner activations are
        # recomputed (memory ~ one block instead of all; about one extra forward of compute).
        make_block = nn.remat(block_cls, static_argnums=(2,)) if self.remat else block_cls  # (self, x, train)
        for s, num_blocks in enumerate(self.stage_sizes):
            for b in range(int(num_blocks)):
                x = make_block(
                    planes=self.width * 2 ** s,
                    strides=2 if s > 0 and b == 0 else 1,
                    groups=self.groups,
                    width_per_group=self.width_per_group,
                    conv1_width_ratio=self.conv1_width_ratio,
                    se_reduction=self.se_reduction,
                    drop_path_rate=rates[index],
                    dropout_rate=self.dropout_rate,
                    shortcut=self.shortcut,
                    downsample_kernel=self.downsample_kernel,
                    zero_init_residual=self.zero_init_residual,
                    skip_preact=block_cls.preact and stem_activates and index == 0,
                    frozen_bn=self.frozen_bn,
                    bn_axis_name=self.bn_axis_name,
                    act=self.act,
                    conv=self.conv,
                    dtype=self.dtype,
                    name=f"stage{s + 1}_block{b}",
                )(x, train)
                index += 1
            if taps.add(stage_names[s], x):
                return taps.result

        if block_cls.preact:
            x = self.act(batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)(name="final_bn")(x))
        x = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        x = nn.Dropout(self.head_dropout_rate)(x, deterministic=not train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return taps.finish(logits)


# ---------------------------------------------------------------------------------------------
# ImageNet variants (input 224x224x3, 1000 classes). Counts: torchvision's models, exactly.

_HE2016 = "He, Zhang, Ren & Sun 2016, Deep residual learning for image recognition, CVPR"
_HE2016B = "He, Zhang, Ren & Sun 2016b, Identity mappings in deep residual networks, ECCV"
_IMAGENET = (224, 224, 3)
# 32x32 still leaves 1x1 at stage 4 (stride 32); width 8 keeps a forward+grad to seconds on CPU.
_SMOKE = (32, 32, 3)

TORCHVISION_COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240, "wide_resnet101_2": 126_886_696,
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336,
}


def _smoke(**extra: Any) -> dict[str, Any]:
    # One block per stage for the smoke run: compiling an initialiser costs time per parameter
    # tensor, and one block of each stage still runs every kind of block and shortcut. Counts
    # and stage shapes are always checked at the full depth (shape-only).
    return {"width": 8, "stage_sizes": (1, 1, 1, 1), **extra}


for _depth, (_stages, _kind) in STAGES.items():
    register(
        f"resnet{_depth}",
        functools.partial(ResNet, stage_sizes=_stages, block=BLOCKS[_kind]),
        input_shape=_IMAGENET, family="resnet",
        paper=f"{_HE2016}, Table 1 ({_depth}-layer; v1.5: stride on the bottleneck 3x3, option B shortcuts)",
        num_params=TORCHVISION_COUNTS[f"resnet{_depth}"], params_reference="torchvision", params_exact=True,
        description=f"ResNet-{_depth} v1.5 (torchvision layout)",
        smoke_input_shape=_SMOKE, smoke_overrides=_smoke(),
    )
    # Pre-activation: the same stages with BN-ReLU-conv units and one final BN. There is no
    # published ImageNet count for every depth, so the reference is the v1 count: moving the
    # BNs before the convs, dropping the projection-shortcut BNs and adding the final BN changes
    # < 0.1% of the parameters.
    register(
        f"preact_resnet{_depth}",
        functools.partial(ResNet, stage_sizes=_stages, block=BLOCKS[f"preact_{_kind}"]),
        input_shape=_IMAGENET, family="preact_resnet",
        paper=f"{_HE2016B}, Fig. 4(e) units on the stages of {_HE2016}, Table 1 ({_depth}-layer)",
        num_params=TORCHVISION_COUNTS[f"resnet{_depth}"],
        params_reference=f"ResNet-{_depth} v1 (torchvision); pre-activation moves BNs only (He et al. 2016b)",
        params_exact=False,
        description=f"pre-activation ResNet-{_depth}",
        smoke_input_shape=_SMOKE, smoke_overrides=_smoke(),
    )

for _depth, _stages in ((50, STAGES[50][0]), (101, STAGES[101][0])):
    register(
        f"wide_resnet{_depth}_2",
        functools.partial(ResNet, stage_sizes=_stages, block=Bottleneck, width_per_group=128),
        input_shape=_IMAGENET, family="wide_resnet",
        paper=("Zagoruyko & Komodakis 2016, Wide residual networks, BMVC, sec. 5 (ImageNet: bottleneck "
               f"ResNet-{_depth} with the 3x3 convolutions twice as wide; torchvision layout)"),
        num_params=TORCHVISION_COUNTS[f"wide_resnet{_depth}_2"], params_reference="torchvision",
        params_exact=True, description=f"Wide ResNet-{_depth}-2 (ImageNet)",
        smoke_input_shape=_SMOKE, smoke_overrides=_smoke(),
    )

_XIE2017 = "Xie, Girshick, Dollar, Tu & He 2017, Aggregated residual transformations for deep neural networks, CVPR"
for _name, _depth, _groups, _wpg in (("resnext50_32x4d", 50, 32, 4), ("resnext101_32x8d", 101, 32, 8)):
    register(
        _name,
        functools.partial(ResNet, stage_sizes=STAGES[_depth][0], block=Bottleneck, groups=_groups,
                          width_per_group=_wpg),
        input_shape=_IMAGENET, family="resnext",
        paper=f"{_XIE2017}, Table 1 / Fig. 3(c) (ResNeXt-{_depth} {_groups}x{_wpg}d, grouped 3x3)",
        num_params=TORCHVISION_COUNTS[_name], params_reference="torchvision", params_exact=True,
        description=f"ResNeXt-{_depth} ({_groups}x{_wpg}d)",
        # width 16: int(16 * wpg / 64) * 32 keeps at least one channel per group.
        smoke_input_shape=_SMOKE, smoke_overrides=_smoke(width=16),
    )

del _depth, _stages, _kind, _name, _groups, _wpg
