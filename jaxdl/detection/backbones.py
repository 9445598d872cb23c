"""Backbones for the detectors: a small CNN for CPU runs, or any zoo model by name via feature taps.

A backbone maps ``x: <f32>[N, H, W, 3]`` to a dict of feature maps keyed by name, each
``<f32>[N, H / s, W / s, C_s]``; the detectors say which taps they read and the stride of each.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn import Conv, batch_norm

__all__ = ["SmallBackbone", "ZooBackbone", "make_backbone"]


class SmallBackbone(nn.Module):
    """A VGG-like stack for small images: stage ``k`` halves the resolution (3x3 stride-2 conv)
    and adds a 3x3 conv, each followed by BatchNorm and ReLU. Taps are ``"s2", "s4", "s8", ...``
    (the stride); with the default widths it has about 0.76 M parameters.

    ``x: <f32>[N, H, W, 3] -> {"s2": [N, H/2, W/2, w0], "s4": ..., ...}``
    """

    widths: Sequence[int] = (32, 64, 96, 128, 128)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Sequence[str] | None = None) -> dict[str, jax.Array]:
        norm = batch_norm(train)
        out = {}
        for k, width in enumerate(self.widths):
            x = nn.relu(norm(name=f"bn{k}a")(Conv(width, (3, 3), strides=(2, 2), padding=1, use_bias=False,
                                                   name=f"conv{k}a")(x)))
            x = nn.relu(norm(name=f"bn{k}b")(Conv(width, (3, 3), padding=1, use_bias=False, name=f"conv{k}b")(x)))
            name = f"s{2 ** (k + 1)}"
            out[name] = x
            if features is not None and all(f in out for f in features):
                break
        return out if features is None else {f: out[f] for f in features}


class ZooBackbone(nn.Module):
    """A registered classifier (``jaxdl.models.create(name)``) used through its feature taps.

    ``taps`` maps the names the detector asks for (e.g. ``"s8"``) to the model's tap names
    (e.g. ``"stage2"``), so ``ZooBackbone("resnet18", {"s8": "stage2", "s16": "stage3"})``
    is a ResNet-18 feature extractor for a detector that reads strides 8 and 16.
    """

    model: str
    taps: dict[str, str]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Sequence[str] | None = None) -> dict[str, jax.Array]:
        from jaxdl.models import create    # models is a lower layer; imported lazily to keep import time low

        wanted = tuple(self.taps) if features is None else tuple(features)
        net = create(self.model, num_classes=0)
        feats = net(x, train=train, features=tuple(self.taps[w] for w in wanted))
        return {w: feats[self.taps[w]] for w in wanted}


def make_backbone(spec: str | nn.Module | None, taps: dict[str, str] | None = None,
                  widths: Sequence[int] = (32, 64, 96, 128, 128)) -> nn.Module:
    """``None``/``"small"`` -> :class:`SmallBackbone`; a zoo name -> :class:`ZooBackbone` with ``taps``."""
    if spec is None or spec == "small":
        return SmallBackbone(widths=tuple(widths))
    if isinstance(spec, nn.Module):
        return spec
    if taps is None:
        from jaxdl.errors import ConfigError
        raise ConfigError(f"a zoo backbone ({spec!r}) needs taps, e.g. {{'s8': 'stage2', 's16': 'stage3'}}")
    return ZooBackbone(spec, dict(taps))
