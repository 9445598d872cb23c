"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters (Iandola et al. 2016).

A Fire module (sec. 3.2) squeezes with 1x1 convs to ``s`` channels, then expands with ``e``
1x1 and ``e`` 3x3 convs (padding 1) whose outputs are concatenated (``2e`` channels); every
conv is followed by ReLU. The network (Table 1 / Fig. 2, torchvision layout):

* ``squeezenet1_0`` (v1.0, Table 1): conv1 7x7/2 96, max pool, fire2-4, max pool, fire5-8,
  max pool, fire9. 1,248,424 parameters (torchvision).
* ``squeezenet1_1`` (v1.1, the SqueezeNet repository's v1.1 changelog: 2.4x less
  computation): conv1 3x3/2 64, max pool, fire2-3, max pool, fire4-5, max pool, fire6-9.
  1,235,496 parameters (torchvision).

Max pools are 3x3 stride 2 with ``ceil_mode=True`` (torchvision, inherited from Caffe). The
classifier is Dropout(0.5) (after fire9, sec. 3.3.1), the 1x1 conv ``head`` to
``num_classes`` channels, ReLU, and a global average pool (no fully connected layer).

Parameter names: ``conv1``, ``fire{k}/{squeeze, expand1x1, expand3x3}`` (k = 2..9 as in the
paper) and ``head``, each ``{kernel, bias}``; torchvision's ``features.{i}`` and
``classifier.1`` map to them in order.

Feature taps: ``stem`` (conv1 + ReLU, stride 2), ``stage1 .. stage3`` (after each max pool and
its Fire modules: strides 4, 8, 16), ``pre_logits`` (global average of the last Fire output,
512 channels; what ``num_classes=0`` returns) and ``logits``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.nn.pooling import check_nhwc, max_pool
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps

__all__ = ["CONFIGS", "Fire", "SqueezeNet"]

# version -> (conv1 channels, conv1 kernel, stages); a stage is a max pool followed by Fire
# modules given as (squeeze s1x1, expand e1x1 = e3x3). Iandola et al. 2016 Table 1 (v1.0).
CONFIGS: dict[str, tuple[int, int, tuple[tuple[tuple[int, int], ...], ...]]] = {
    "1_0": (96, 7, (((16, 64), (16, 64), (32, 128)),
                    ((32, 128), (48, 192), (48, 192), (64, 256)),
                    ((64, 256),))),
    "1_1": (64, 3, (((16, 64), (16, 64)),
                    ((32, 128), (32, 128)),
                    ((48, 192), (48, 192), (64, 256), (64, 256)))),
}


class Fire(nn.Module):
    """Fire module: ``x: <f>[N, H, W, C] -> <f>[N, H, W, 2 * expand]`` (sec. 3.2)."""

    squeeze: int
    expand: int
    conv: Any = Conv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(self.conv, dtype=self.dtype)
        s = nn.relu(conv(self.squeeze, (1, 1), name="squeeze")(x))
        e1 = nn.relu(conv(self.expand, (1, 1), name="expand1x1")(s))
        e3 = nn.relu(conv(self.expand, (3, 3), padding=((1, 1), (1, 1)), name="expand3x3")(s))
        return jnp.concatenate([e1, e3], axis=-1)


class SqueezeNet(nn.Module):
    """SqueezeNet: ``x: <f32>[N, H, W, 3]`` -> ``<f32>[N, num_classes]``.

    Attributes:
      num_classes: channels of the ``head`` conv; 0 returns ``pre_logits`` ``[N, 512]``.
      version: ``"1_0"`` or ``"1_1"`` (a key of :data:`CONFIGS`).
      dropout_rate: dropout before ``head`` (0.5, sec. 3.3.1).
      conv: convolution layer (swappable).
      dtype: compute dtype; parameters stay float32.
    """

    num_classes: int = 1000
    version: str = "1_0"
    dropout_rate: float = 0.5
    conv: Any = Conv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        check_nhwc(x, "SqueezeNet")
        if self.version not in CONFIGS:
            raise ConfigError(f"unknown SqueezeNet version {self.version!r}; choose one of {', '.join(CONFIGS)}")
        stem_channels, stem_kernel, stages = CONFIGS[self.version]
        taps = FeatureTaps(features, valid=("stem",) + tuple(f"stage{i}" for i in range(1, len(stages) + 1))
                           + ("pre_logits", "logits"))
        x = jnp.asarray(x, self.dtype)
        x = nn.relu(self.conv(stem_channels, (stem_kernel, stem_kernel), strides=(2, 2), padding="VALID",
                              dtype=self.dtype, name="conv1")(x))
        if taps.add("stem", x):
            return taps.result
        fire = 2  # the paper numbers the Fire modules fire2 .. fire9
        for i, stage in enumerate(stages, start=1):
            x = max_pool(x, 3, 2, ceil_mode=True)
            for squeeze, expand in stage:
                x = Fire(squeeze, expand, conv=self.conv, dtype=self.dtype, name=f"fire{fire}")(x)
                fire += 1
            if taps.add(f"stage{i}", x):
                return taps.result
        pooled = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", pooled):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(pooled)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        # torchvision initializes the final conv with N(0, 0.01) (the others He-uniform).
        x = self.conv(self.num_classes, (1, 1), kernel_init=nn.initializers.normal(0.01), dtype=self.dtype,
                      name="head")(x)
        logits = jnp.mean(nn.relu(x), axis=(1, 2))
        return taps.finish(logits)


_PAPER = "Iandola et al. 2016, 'SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size'"

register(
    "squeezenet1_0", functools.partial(SqueezeNet, version="1_0"),
    input_shape=(224, 224, 3), family="squeezenet", paper=f"{_PAPER}, Table 1 / Fig. 2 (left)",
    num_params=1_248_424, params_reference="torchvision squeezenet1_0", params_exact=True,
    description="SqueezeNet v1.0: conv1 7x7/2 96, fire2-9", smoke_input_shape=(32, 32, 3))

register(
    "squeezenet1_1", functools.partial(SqueezeNet, version="1_1"),
    input_shape=(224, 224, 3), family="squeezenet",
    paper=f"{_PAPER}; v1.1 layout of the authors' repository (conv1 3x3/2 64, earlier pools)",
    num_params=1_235_496, params_reference="torchvision squeezenet1_1", params_exact=True,
    description="SqueezeNet v1.1: conv1 3x3/2 64, pools moved earlier", smoke_input_shape=(32, 32, 3))
