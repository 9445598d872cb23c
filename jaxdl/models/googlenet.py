"""GoogLeNet (Inception-v1) and BN-Inception (Inception-v2): table-driven Inception modules.

Variants (the per-module widths are data: :data:`GOOGLENET_MODULES`, :data:`BN_INCEPTION_MODULES`):

* ``googlenet`` - Szegedy et al. 2015, "Going Deeper with Convolutions", Table 1, in
  torchvision's layout: every convolution is ``BasicConv2d`` (conv without bias ->
  BatchNorm eps 0.001 -> ReLU), max pools 3x3/2 with ``ceil_mode``, global average pool,
  dropout, ``head``. 6,624,904 parameters without the auxiliary heads, exactly
  torchvision's. Known torchvision deviations from the paper, kept for weight compatibility:
  BatchNorm (the 2014 network had none); the "5x5" branch uses a 3x3 convolution
  (``faithful_5x5=True`` restores the paper's 5x5, BatchNorm kept: 7,005,832 parameters
  without the auxiliary heads); the pool before inception (5a) is 2x2/2 instead of 3x3/2
  (both give 7x7 at 224); dropout before the head is 0.2 (paper: 0.4, Table 1) -
  ``dropout_rate`` is a field.

  Auxiliary classifiers (paper sec. 5) on the outputs of inception (4a) and (4d): average
  pool to 4x4, 1x1 conv 128 (``BasicConv2d``), FC 1024 + ReLU, dropout 0.7, FC classes;
  sown with weight 0.3 through :func:`jaxdl.nn.sow_aux_logits` when ``train=True`` only.
  The paper pools 5x5/3, which gives the same 4x4 map at 224x224 (14x14 maps); torchvision
  pools adaptively to 4x4 (windows of 4, not 5), which is what is done here so the head
  works at every input size. Their parameters are created by ``init`` even with
  ``train=False`` (one parameter tree for both modes; 13,004,888 parameters in all, as
  torchvision's ``aux_logits=True``); ``aux_logits=False`` drops them.

* ``inception_v2`` - BN-Inception, Ioffe & Szegedy 2015, "Batch Normalization", sec. 4.2
  and the appendix table (Fig. 5): GoogLeNet with BatchNorm after every convolution, each
  5x5 convolution replaced by two 3x3 ("double 3x3", up to 128 filters at 28x28), average
  pooling in most modules, and stride-2 modules (3c), (4e) that concatenate a max-pooled
  pass-through instead of separate pooling layers. The branch widths are the table's as
  printed; they make modules (4c), (4d) output 608 channels and (4e) 1056, not the 576 and
  1024 of the table's "output size" column (the released Caffe model has the same 608/1056
  widths). No auxiliary heads and no dropout (sec. 4.2.1 removes dropout; ``dropout_rate``
  defaults to 0). The first convolution is an ordinary 7x7 conv, as in the released Caffe model.
  Convolutions have no bias (BatchNorm's shift replaces it), BatchNorm eps 1e-5.
  11,285,224 parameters, computed from the table (no torchvision count; community ports of
  BN-Inception report about 11.3M; the paper's sec. 4.2 quotes 13.6M for its network, which
  the table as printed does not reproduce).
  Deviation from the Caffe model: the pass-through max pool of (3c)/(4e) is 3x3/2 with 1
  pixel of padding, aligned with the stride-2 3x3 convolutions beside it, so odd map sizes
  work (Caffe rounds up without padding: same size at 224, windows shifted by one pixel).

Parameter names: GoogLeNet mirrors torchvision (``conv1``, ``conv2``, ``conv3``,
``inception3a/branch1``, ``inception3a/branch2_0``, ``inception3a/branch2_1``, ...,
``inception3a/branch4_1`` - torchvision's ``nn.Sequential`` index after an underscore;
``aux1_head/conv``, ``aux1_head/fc1``, ``aux1_head/fc2`` for torchvision's ``aux1.*``, likewise
``aux2_head``; torchvision's ``fc`` is ``head``), each
``BasicConv2d`` holding ``conv`` and ``bn``. Note for importing torchvision's aux ``fc1``:
the flatten here is NHWC, torchvision's NCHW. BN-Inception uses the Caffe names
(``conv1_7x7``, ``conv2_3x3_reduce``, ``conv2_3x3``, ``inception_3a/1x1``, ``/3x3_reduce``,
``/3x3``, ``/double_3x3_reduce``, ``/double_3x3_1``, ``/double_3x3_2``, ``/pool_proj``).

Feature taps (shapes at 224x224): ``stem`` (after the second max pool, 28x28x192, stride
8), ``stage1`` (inception 3a-3b; GoogLeNet 28x28x480, BN-Inception 28x28x320, stride 8),
``stage2`` (pool + 4a-4e for GoogLeNet, 14x14x832; 3c-4d for BN-Inception, 14x14x608;
stride 16), ``stage3`` (pool + 5a-5b, 4e-5b; 7x7x1024, stride 32), ``pre_logits``
(global average, 1024) and ``logits``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.pooling import adaptive_avg_pool, check_nhwc, max_pool
from jaxdl.models.inception import BasicConv2d, check_width_multiplier, scaled_width
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm, sow_aux_logits

__all__ = ["GOOGLENET_MODULES", "BN_INCEPTION_MODULES", "GoogLeNet", "BNInception"]

ModuleDef = Any
TAPS = ("stem", "stage1", "stage2", "stage3", "pre_logits", "logits")

# Szegedy et al. 2015, Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
GOOGLENET_MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Stages of the taps; stage2 and stage3 start with a max pool (3x3/2, then torchvision's 2x2/2).
GOOGLENET_STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))
# Paper sec. 5: auxiliary classifiers on top of (4a) and (4d); sown under "aux1" / "aux2" by the
# modules "aux1_head" / "aux2_head" (a sown name cannot also name a submodule).
GOOGLENET_AUX = {"4a": "aux1", "4d": "aux2"}

# Ioffe & Szegedy 2015, appendix table (Fig. 5): (#1x1, #3x3 reduce, #3x3, double #3x3 reduce,
# double #3x3, pool type, pool proj, stride). Stride-2 modules have no 1x1 branch and pass the
# max-pooled input through (pool proj 0).
BN_INCEPTION_MODULES: dict[str, tuple[int, int, int, int, int, str, int, int]] = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}
BN_INCEPTION_STAGES = (("3a", "3b"), ("3c", "4a", "4b", "4c", "4d"), ("4e", "5a", "5b"))


class GoogLeNetModule(nn.Module):
    """Inception module of Fig. 2(b): 1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | 3x3 max pool -> 1x1.

    ``[N, H, W, C] -> [N, H, W, #1x1 + #3x3 + #5x5 + pool proj]``. ``five`` is the kernel of
    the "5x5" branch (3 in torchvision, 5 in the paper).
    """

    widths: tuple[int, int, int, int, int, int]
    layer: Callable[..., nn.Module]
    five: int = 3

    @nn.compact
    def __call__(self, x):
        c1, r3, c3, r5, c5, cp = self.widths
        L, p = self.layer, self.five // 2
        b1 = L(c1, (1, 1), name="branch1")(x)
        b2 = L(r3, (1, 1), name="branch2_0")(x)
        b2 = L(c3, (3, 3), padding=(1, 1), name="branch2_1")(b2)
        b3 = L(r5, (1, 1), name="branch3_0")(x)
        b3 = L(c5, (self.five, self.five), padding=(p, p), name="branch3_1")(b3)
        b4 = max_pool(x, 3, 1, 1, ceil_mode=True)  # torchvision: MaxPool2d(3, 1, 1, ceil_mode=True)
        b4 = L(cp, (1, 1), name="branch4_1")(b4)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNetAux(nn.Module):
    """Auxiliary classifier (paper sec. 5): ``[N, H, W, C] -> [N, num_classes]``."""

    num_classes: int
    layer: Callable[..., nn.Module]
    width: Callable[[int], int]
    dropout_rate: float = 0.7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = adaptive_avg_pool(x, 4)  # = the paper's 5x5/3 pool's 4x4 output at 224x224
        x = self.layer(self.width(128), (1, 1), name="conv")(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.width(1024), dtype=self.dtype, name="fc1")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc2")(x)


def _head(module: nn.Module, x, taps: FeatureTaps, train: bool):
    """Global average -> pre_logits tap -> dropout -> ``head`` (shared by both networks)."""
    x = jnp.mean(x, axis=(1, 2))
    if taps.add("pre_logits", x):
        return taps.result
    if module.num_classes == 0:
        return taps.finish(x)
    x = nn.Dropout(module.dropout_rate, deterministic=not train)(x)
    return taps.finish(nn.Dense(module.num_classes, dtype=module.dtype, name="head")(x))


class GoogLeNet(nn.Module):
    """GoogLeNet (Szegedy et al. 2015, Table 1), torchvision layout.

    ``x: <f32>[N, H, W, 3]`` (224x224 by default) ``-> <f32>[N, num_classes]``;
    ``num_classes=0`` returns the pooled ``pre_logits`` ``[N, 1024]``.

    Attributes:
      num_classes: size of ``head``; 0 drops the head (and the auxiliary heads).
      aux_logits: build the two auxiliary classifiers ``aux1_head`` (on 4a) and ``aux2_head``
        (on 4d); their logits are sown as ``"aux1"``, ``"aux2"`` only when ``train=True``.
      aux_weight: their loss weight (0.3, paper sec. 5).
      aux_dropout_rate: dropout inside the auxiliary heads (0.7, paper sec. 5).
      dropout_rate: dropout before ``head`` (0.2 as torchvision; the paper uses 0.4, Table 1).
      faithful_5x5: use the paper's 5x5 convolution in the "5x5" branch (torchvision: 3x3).
      width_multiplier: scales every width (1.0 = Table 1); for quick tests.
      frozen_bn: keep BatchNorm running statistics fixed even when training.
      dtype: compute dtype (parameters stay float32).
      conv: the convolution layer.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    aux_weight: float = 0.3
    aux_dropout_rate: float = 0.7
    dropout_rate: float = 0.2
    faithful_5x5: bool = False
    width_multiplier: float = 1.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: ModuleDef = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features=None):
        check_nhwc(x, "googlenet")
        check_width_multiplier(self.width_multiplier, "googlenet")
        taps = FeatureTaps(features, valid=TAPS)
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, epsilon=1e-3, dtype=self.dtype)  # torchvision eps
        L = functools.partial(BasicConv2d, norm=norm, conv=self.conv, dtype=self.dtype)
        w = functools.partial(scaled_width, multiplier=self.width_multiplier)
        aux = self.aux_logits and self.num_classes > 0 and (train or self.is_initializing())

        x = x.astype(self.dtype)
        x = L(w(64), (7, 7), strides=(2, 2), padding=(3, 3), name="conv1")(x)   # 224 -> 112
        x = max_pool(x, 3, 2, ceil_mode=True)                                    # -> 56
        x = L(w(64), (1, 1), name="conv2")(x)
        x = L(w(192), (3, 3), padding=(1, 1), name="conv3")(x)
        x = max_pool(x, 3, 2, ceil_mode=True)                                    # -> 28
        if taps.add("stem", x):
            return taps.result

        for stage, names in enumerate(GOOGLENET_STAGES, start=1):
            if stage == 2:
                x = max_pool(x, 3, 2, ceil_mode=True)                            # 28 -> 14
            elif stage == 3:
                x = max_pool(x, 2, 2, ceil_mode=True)  # torchvision maxpool4 (paper: 3x3/2); 14 -> 7
            for name in names:
                widths = tuple(w(c) for c in GOOGLENET_MODULES[name])
                x = GoogLeNetModule(widths, L, five=5 if self.faithful_5x5 else 3, name=f"inception{name}")(x)
                if aux and name in GOOGLENET_AUX:
                    logits = GoogLeNetAux(self.num_classes, L, w, self.aux_dropout_rate, self.dtype,
                                          name=f"{GOOGLENET_AUX[name]}_head")(x, train)
                    if train:
                        sow_aux_logits(self, GOOGLENET_AUX[name], logits, weight=self.aux_weight)
            if taps.add(f"stage{stage}", x):
                return taps.result
        return _head(self, x, taps, train)


class BNInceptionModule(nn.Module):
    """BN-Inception module (Fig. 5 table row).

    Stride 1: ``1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg/max pool 3x3/1 -> 1x1``.
    Stride 2: ``1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2`` (pass-through).
    ``[N, H, W, C] -> [N, H/s, W/s, sum of branch widths (+ C when stride 2)]``.
    """

    spec: tuple[int, int, int, int, int, str, int, int]
    layer: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x):
        c1, r3, c3, rd, cd, pool, cp, s = self.spec
        L = self.layer
        branches = []
        if c1:
            branches.append(L(c1, (1, 1), name="1x1")(x))
        b = L(r3, (1, 1), name="3x3_reduce")(x)
        branches.append(L(c3, (3, 3), strides=(s, s), padding=(1, 1), name="3x3")(b))
        b = L(rd, (1, 1), name="double_3x3_reduce")(x)
        b = L(cd, (3, 3), padding=(1, 1), name="double_3x3_1")(b)
        branches.append(L(cd, (3, 3), strides=(s, s), padding=(1, 1), name="double_3x3_2")(b))
        if pool == "avg":
            b = nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)
        else:
            b = max_pool(x, 3, s, 1)
        branches.append(L(cp, (1, 1), name="pool_proj")(b) if cp else b)
        return jnp.concatenate(branches, axis=-1)


class BNInception(nn.Module):
    """BN-Inception / Inception-v2 (Ioffe & Szegedy 2015, Fig. 5 table).

    ``x: <f32>[N, H, W, 3]`` (224x224 by default) ``-> <f32>[N, num_classes]``;
    ``num_classes=0`` returns the pooled ``pre_logits`` ``[N, 1024]``.

    Attributes:
      num_classes: size of ``head``; 0 drops it.
      dropout_rate: dropout before ``head``; 0 as in the paper (sec. 4.2.1 removes dropout).
      width_multiplier: scales every width (1.0 = the table's); for quick tests.
      frozen_bn: keep BatchNorm running statistics fixed even when training.
      dtype: compute dtype (parameters stay float32).
      conv: the convolution layer.
    """

    num_classes: int = 1000
    dropout_rate: float = 0.0
    width_multiplier: float = 1.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: ModuleDef = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features=None):
        check_nhwc(x, "inception_v2")
        check_width_multiplier(self.width_multiplier, "inception_v2")
        taps = FeatureTaps(features, valid=TAPS)
        norm = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)
        L = functools.partial(BasicConv2d, norm=norm, conv=self.conv, dtype=self.dtype)
        w = functools.partial(scaled_width, multiplier=self.width_multiplier)

        x = x.astype(self.dtype)
        x = L(w(64), (7, 7), strides=(2, 2), padding=(3, 3), name="conv1_7x7")(x)  # 224 -> 112
        x = max_pool(x, 3, 2, ceil_mode=True)                                       # -> 56
        x = L(w(64), (1, 1), name="conv2_3x3_reduce")(x)
        x = L(w(192), (3, 3), padding=(1, 1), name="conv2_3x3")(x)
        x = max_pool(x, 3, 2, ceil_mode=True)                                       # -> 28
        if taps.add("stem", x):
            return taps.result

        for stage, names in enumerate(BN_INCEPTION_STAGES, start=1):
            for name in names:
                c1, r3, c3, rd, cd, pool, cp, s = BN_INCEPTION_MODULES[name]
                spec = (c1 and w(c1), w(r3), w(c3), w(rd), w(cd), pool, cp and w(cp), s)
                x = BNInceptionModule(spec, L, name=f"inception_{name}")(x)
            if taps.add(f"stage{stage}", x):
                return taps.result
        return _head(self, x, taps, train)


register(
    "googlenet",
    GoogLeNet,
    input_shape=(224, 224, 3),
    family="inception",
    paper="Szegedy et al. 2015, Going Deeper with Convolutions, Table 1 (torchvision layout: BatchNorm, "
          "3x3 in the '5x5' branch)",
    num_params=6_624_904,
    params_reference="torchvision googlenet (aux_logits=False)",
    params_exact=True,
    description="GoogLeNet / Inception-v1 with two auxiliary classifiers (0.3)",
    smoke_input_shape=(32, 32, 3),
    smoke_overrides={"width_multiplier": 0.125},
    count_overrides={"aux_logits": False},
)

register(
    "inception_v2",
    BNInception,
    input_shape=(224, 224, 3),
    family="inception",
    paper="Ioffe & Szegedy 2015, Batch Normalization, sec. 4.2 and appendix table (Fig. 5): BN-Inception",
    num_params=11_285_224,
    params_reference="computed from Ioffe & Szegedy 2015 Fig. 5",
    params_exact=True,
    description="BN-Inception (Inception-v2): BatchNorm, double 3x3 instead of 5x5",
    smoke_input_shape=(32, 32, 3),
    smoke_overrides={"width_multiplier": 0.125},
)
