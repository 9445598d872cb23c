"""DenseNet (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional
Networks", CVPR): every layer of a dense block sees the concatenation of all earlier outputs of
the block and adds ``growth_rate`` (k) new channels.

All variants here are DenseNet-BC (sec. 3): each dense layer is
``BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k)`` (bottleneck, ``bn_size=4``) and each
transition is ``BN-ReLU-Conv1x1(floor(compression*m))-AvgPool2x2`` (compression 0.5).

ImageNet (Table 1; torchvision layout and parameter counts)::

    stem      conv 7x7/2 (2k channels) - BN - ReLU - max-pool 3x3/2, pad 1    224 -> 56
    block i   block_config[i] dense layers; transition after blocks 1..3     56 -> 28 -> 14 -> 7
    final     BN - ReLU - global average pool - head (Dense)

    densenet121  k=32 (6, 12, 24, 16)    7,978,856 params (torchvision)
    densenet169  k=32 (6, 12, 32, 32)   14,149,480
    densenet201  k=32 (6, 12, 48, 32)   20,013,928
    densenet161  k=48 (6, 12, 36, 24)   28,681,000 (96 initial features = 2k)
    densenet264  k=32 (6, 12, 64, 48)   33,337,704 (computed; Table 1 has the layout, no count)

CIFAR (Table 2, DenseNet-BC): stem is one 3x3 conv with 2k channels (no BN, ReLU or pooling,
sec. 3 "Implementation Details"), three dense blocks of (L - 4) / 6 layers on 32x32, 16x16 and
8x8 maps, then BN - ReLU - global average pool - head::

    densenet_bc_100_k12   L=100, k=12, (16, 16, 16)      769,162 params (paper: 0.8M)
    densenet_bc_190_k40   L=190, k=40, (31, 31, 31)   25,624,430 params (paper: 25.6M)

Parameter names (map one-to-one to torchvision's ``features.*`` keys)::

    stem_conv, stem_bn                   features.conv0, features.norm0 (stem_bn: ImageNet stem only)
    stage{i}_layer{j}/{norm1,conv1,norm2,conv2}
                                         features.denseblock{i}.denselayer{j+1}.{norm1,conv1,norm2,conv2}
    transition{i}/{norm,conv}            features.transition{i}.{norm,conv}
    final_norm                           features.norm5
    head                                 classifier

Convolutions have no bias (every conv output reaches a BatchNorm before anything else), as in
torchvision. Dropout (``dropout_rate``) follows every convolution except the stem, as the paper
does for its data sets without augmentation (sec. 4.2, rate 0.2); torchvision drops only after
``conv2``. It uses the ``"dropout"`` rng stream.

Feature taps: ``stem`` (ImageNet: after the max-pool, stride 4; CIFAR: after the 3x3 conv,
stride 1); ``stage{i}`` for i < number of blocks is the output of dense block i followed by its
transition (compressed channels ``floor(compression * (c_in + n_i * k))``, pooled: stride 8, 16,
32 on ImageNet); the last ``stage`` is the last dense block after the final BN + ReLU
(``c_in + n * k`` channels, e.g. 1024 at stride 32 for densenet121); then ``pre_logits`` (pooled)
and ``logits``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm

__all__ = ["DenseLayer", "Transition", "DenseNet", "IMAGENET_CONFIGS", "CIFAR_CONFIGS", "dense_channels"]

# Table 1: (growth rate k, layers per dense block) for the ImageNet DenseNet-BC variants.
IMAGENET_CONFIGS: dict[int, tuple[int, tuple[int, ...]]] = {
    121: (32, (6, 12, 24, 16)),
    169: (32, (6, 12, 32, 32)),
    201: (32, (6, 12, 48, 32)),
    161: (48, (6, 12, 36, 24)),
    264: (32, (6, 12, 64, 48)),
}

# Table 2 (DenseNet-BC): depth L -> (k, layers per block); (L - 4) / 6 layers per block, since a
# BC layer has two convolutions and the stem, two transitions and the classifier add 4 layers.
CIFAR_CONFIGS: dict[tuple[int, int], tuple[int, ...]] = {
    (100, 12): (16, 16, 16),
    (190, 40): (31, 31, 31),
}

# Name under which the bottleneck output is saved when ``memory_efficient=True`` (see DenseLayer).
_BOTTLENECK = "densenet_bottleneck_output"


def dense_channels(num_init_features: int, growth_rate: int, block_config: Sequence[int],
                   compression: float) -> list[tuple[int, int]]:
    """Channels ``(after dense block i, after transition i)`` for every block (the last has no
    transition, so both numbers are equal): block i ends with ``c_in + n_i * k`` channels and its
    transition keeps ``floor(compression * that)`` (the paper's theta * m, sec. 3).

    >>> dense_channels(64, 32, (6, 12, 24, 16), 0.5)  # densenet121
    [(256, 128), (512, 256), (1024, 512), (1024, 1024)]
    """
    result, c = [], num_init_features
    for i, n in enumerate(block_config):
        c += n * growth_rate
        out = c if i == len(block_config) - 1 else int(math.floor(c * compression))
        result.append((c, out))
        c = out
    return result


class DenseLayer(nn.Module):
    """One DenseNet-BC layer: ``concat(inputs) -> BN-ReLU-Conv1x1(bn_size*k) -> BN-ReLU-Conv3x3(k)``.

    ``inputs``: the list of feature maps produced so far in the block, each ``[N, H, W, C_i]``;
    returns the ``[N, H, W, growth_rate]`` new features. Taking the list (and concatenating here)
    lets ``nn.remat`` keep only the pieces, not every layer's growing concatenation: with
    ``memory_efficient=True`` the DenseNet wraps this module in ``nn.remat`` saving only the 1x1
    conv's output, so concat-BN-ReLU is recomputed in the backward pass (the trick torchvision's
    ``memory_efficient`` uses; Pleiss et al. 2017). ``bn_size=0`` drops the bottleneck (plain
    DenseNet: BN-ReLU-Conv3x3).
    """

    growth_rate: int
    bn_size: int = 4
    dropout_rate: float = 0.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, inputs: Sequence[jax.Array], train: bool = False) -> jax.Array:
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        x = jnp.concatenate(list(inputs), axis=-1) if len(inputs) > 1 else inputs[0]
        if self.bn_size:
            x = nn.relu(norm(name="norm1")(x))
            x = self.conv(self.bn_size * self.growth_rate, (1, 1), use_bias=False, padding=((0, 0), (0, 0)),
                          dtype=self.dtype, name="conv1")(x)
            x = checkpoint_name(x, _BOTTLENECK)
            x = self._dropout(x, train)
            x = nn.relu(norm(name="norm2")(x))
        else:
            x = nn.relu(norm(name="norm2")(x))
        x = self.conv(self.growth_rate, (3, 3), use_bias=False, padding=((1, 1), (1, 1)), dtype=self.dtype,
                      name="conv2")(x)
        return self._dropout(x, train)

    def _dropout(self, x: jax.Array, train: bool) -> jax.Array:
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return x


class Transition(nn.Module):
    """``BN-ReLU-Conv1x1(out_channels)-[Dropout]-AvgPool2x2/2``: ``[N, H, W, C] -> [N, H//2, W//2, out]``."""

    out_channels: int
    dropout_rate: float = 0.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)(name="norm")(x))
        x = self.conv(self.out_channels, (1, 1), use_bias=False, padding=((0, 0), (0, 0)), dtype=self.dtype,
                      name="conv")(x)
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.avg_pool(x, (2, 2), strides=(2, 2), padding=((0, 0), (0, 0)))


class DenseNet(nn.Module):
    """DenseNet-BC (Huang et al. 2017): ``x: <f32>[N, H, W, C]`` -> ``<f32>[N, num_classes]``.

    Attributes:
      num_classes: size of ``head``; 0 returns the pooled ``pre_logits`` features.
      growth_rate: k, channels each dense layer adds (32 for Table 1, 12/40 for Table 2).
      block_config: number of dense layers in each dense block.
      num_init_features: channels of the stem conv; ``None`` = 2k as in the paper (64 for k=32,
        96 for densenet161's k=48).
      bn_size: the bottleneck 1x1 conv has ``bn_size * k`` channels (4k in the paper); 0 = no
        bottleneck (plain DenseNet, Table 2's "DenseNet" rows).
      compression: theta in (0, 1]; a transition keeps ``floor(theta * m)`` of its m channels.
      stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or ``"cifar"`` (one 3x3 conv).
      dropout_rate: dropout after every conv but the stem (paper sec. 4.2 uses 0.2 on C10/C100/SVHN
        without augmentation); 0 disables.
      memory_efficient: rematerialise concat-BN-ReLU of each dense layer in the backward pass
        (``nn.remat``, saving only the bottleneck output); same results and parameter names,
        less activation memory (the quadratic concatenations are not kept).
      frozen_bn: keep BatchNorm's running statistics fixed even when ``train=True``.
      dtype: compute dtype (parameters stay float32).
      conv: convolution layer.

    Taps: ``stem``, ``stage1`` .. ``stage{len(block_config)}``, ``pre_logits``, ``logits`` (see the
    module docstring for what each stage holds).
    """

    num_classes: int = 1000
    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int | None = None
    bn_size: int = 4
    compression: float = 0.5
    stem: str = "imagenet"
    dropout_rate: float = 0.0
    memory_efficient: bool = False
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    def _check(self, x: jax.Array) -> None:
        if self.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' (7x7/2 conv + 3x3/2 max-pool, Table 1) or 'cifar' "
                              f"(one 3x3 conv, Table 2), got {self.stem!r}")
        if self.growth_rate < 1 or not self.block_config or min(self.block_config) < 1:
            raise ConfigError(f"growth_rate and every entry of block_config must be >= 1, got growth_rate="
                              f"{self.growth_rate}, block_config={tuple(self.block_config)}")
        if not 0.0 < self.compression <= 1.0:
            raise ConfigError(f"compression must be in (0, 1] (the paper's theta; 0.5 for DenseNet-BC), got "
                              f"{self.compression}")
        if self.bn_size < 0 or not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"bn_size must be >= 0 and dropout_rate in [0, 1), got bn_size={self.bn_size}, "
                              f"dropout_rate={self.dropout_rate}")
        if self.num_init_features is not None and self.num_init_features < 1:
            raise ConfigError(f"num_init_features must be >= 1 or None (= 2 * growth_rate), got "
                              f"{self.num_init_features}")
        init = self.num_init_features or 2 * self.growth_rate
        channels = dense_channels(init, self.growth_rate, self.block_config, self.compression)
        if min(out for _, out in channels) < 1:
            raise ConfigError(f"compression {self.compression} leaves a transition with no channels "
                              f"(channels per block: {[out for _, out in channels]}); use a larger compression, "
                              f"growth_rate or num_init_features")
        # Each transition halves the map; the ImageNet stem divides by 4 (7x7/2 conv, 3x3/2 pool).
        stem_stride = 4 if self.stem == "imagenet" else 1
        smallest = stem_stride * 2 ** (len(self.block_config) - 1)
        if x.ndim != 4 or min(x.shape[1:3]) < smallest:
            raise ConfigError(f"this DenseNet ({self.stem} stem, {len(self.block_config)} dense blocks) takes NHWC "
                              f"input of at least {smallest}x{smallest}, got shape {tuple(x.shape)}; resize the "
                              f"images or use fewer dense blocks")

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        self._check(x)
        num_blocks = len(self.block_config)
        taps = FeatureTaps(features, valid=("stem", *(f"stage{i + 1}" for i in range(num_blocks)),
                                            "pre_logits", "logits"))
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        init_features = self.num_init_features or 2 * self.growth_rate

        x = jnp.asarray(x, self.dtype)
        if self.stem == "imagenet":
            x = self.conv(init_features, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                          dtype=self.dtype, name="stem_conv")(x)
            x = nn.relu(norm(name="stem_bn")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = self.conv(init_features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                          name="stem_conv")(x)
        if taps.add("stem", x):
            return taps.result

        layer_cls = DenseLayer
        if self.memory_efficient:
            # static_argnums counts self as 0: `train` (argument 2) is a Python bool.
            layer_cls = nn.remat(DenseLayer, static_argnums=(2,),
                                 policy=jax.checkpoint_policies.save_only_these_names(_BOTTLENECK))
        channels = dense_channels(init_features, self.growth_rate, self.block_config, self.compression)
        for i, n_layers in enumerate(self.block_config):
            pieces = [x]
            for j in range(n_layers):
                layer = layer_cls(self.growth_rate, self.bn_size, self.dropout_rate, self.frozen_bn, self.dtype,
                                  self.conv, self.bn_axis_name, name=f"stage{i + 1}_layer{j}")
                pieces.append(layer(pieces, train))
            x = jnp.concatenate(pieces, axis=-1)
            if i < num_blocks - 1:
                x = Transition(channels[i][1], self.dropout_rate, self.frozen_bn, self.dtype, self.conv,
                               self.bn_axis_name, name=f"transition{i + 1}")(x, train)
            else:
                x = nn.relu(norm(name="final_norm")(x))
            if taps.add(f"stage{i + 1}", x):
                return taps.result

        x = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        return taps.finish(nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x))


_PAPER = "Huang, Liu, van der Maaten & Weinberger 2017, 'Densely Connected Convolutional Networks'"
# Small enough that forward + gradient compiles in seconds on CPU; (32, 32) is the smallest input
# the ImageNet layout accepts (stride 4 stem, three transitions: 32 -> 8 -> 4 -> 2 -> 1).
_IMAGENET_SMOKE = {"growth_rate": 8, "block_config": (2, 2, 2, 2)}
_TORCHVISION_COUNTS = {121: 7_978_856, 169: 14_149_480, 201: 20_013_928, 161: 28_681_000}

for _depth, (_k, _blocks) in IMAGENET_CONFIGS.items():
    register(
        f"densenet{_depth}",
        functools.partial(DenseNet, growth_rate=_k, block_config=_blocks),
        input_shape=(224, 224, 3),
        family="densenet",
        paper=f"{_PAPER}, Table 1 (DenseNet-{_depth}, DenseNet-BC: k={_k}, bottleneck 4k, compression 0.5)",
        num_params=_TORCHVISION_COUNTS.get(_depth, 33_337_704),
        params_reference="torchvision" if _depth in _TORCHVISION_COUNTS
        else "computed from Table 1 (no published count)",
        params_exact=True,
        description=f"DenseNet-{_depth} (ImageNet, k={_k}, blocks {_blocks})",
        smoke_input_shape=(32, 32, 3),
        smoke_overrides=_IMAGENET_SMOKE,
    )

# Table 2 gives counts rounded to 0.1M. DenseNet-BC-190 (25,624,430 here) is checked within 1% of
# the paper's 25.6M. DenseNet-BC-100 has 769,162 parameters: that rounds to the paper's 0.8M but is
# 3.9% below 800,000, so the registry checks the exact count of the Table 2 architecture and
# tests/models/test_densenet.py checks it against the paper's figure at the paper's precision.
_CIFAR_COUNTS = {
    100: dict(num_params=769_162, params_exact=True,
              params_reference="computed from Table 2's architecture; the paper reports 0.8M (rounded to 0.1M)"),
    190: dict(num_params=25_600_000, params_exact=False, params_reference="paper Table 2 (25.6M)"),
}
for (_depth, _k), _blocks in CIFAR_CONFIGS.items():
    register(
        f"densenet_bc_{_depth}_k{_k}",
        functools.partial(DenseNet, growth_rate=_k, block_config=_blocks, stem="cifar"),
        input_shape=(32, 32, 3),
        num_classes=10,
        family="densenet",
        paper=f"{_PAPER}, Table 2 (DenseNet-BC, L={_depth}, k={_k})",
        description=f"DenseNet-BC L={_depth} k={_k} (CIFAR, blocks {_blocks})",
        smoke_input_shape=(32, 32, 3),
        smoke_overrides={"growth_rate": 4, "block_config": (2, 2, 2)},
        **_CIFAR_COUNTS[_depth],
    )
del _depth, _k, _blocks
