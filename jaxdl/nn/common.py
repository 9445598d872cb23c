"""Helpers every model family shares (conventions in docs/models.md)."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.nn.batch_norm import BatchNorm
from jaxdl.nn.fast_conv import FastConv

__all__ = ["Conv", "FeatureTaps", "batch_norm", "sow_aux_logits", "AUX_COLLECTION"]

# The convolution layer of every family. Families take it as a dataclass field
# (`conv: ModuleDef = Conv`) so a faster backend-specific kernel can be swapped in one place:
# FastConv is nn.Conv (same params) with a matmul kernel gradient on XLA:CPU (jaxdl/nn/fast_conv.py);
# JAXDL_FAST_CONV=0 or `conv=nn.Conv` gives the stock layer.
Conv = FastConv

# Collection into which auxiliary classifiers sow their logits during training.
AUX_COLLECTION = "aux_logits"


def batch_norm(train: bool, *, frozen: bool = False, momentum: float = 0.9, epsilon: float = 1e-5,
               axis_name: str | None = None, dtype: Any = jnp.float32, **kw: Any):
    """:class:`jaxdl.nn.BatchNorm` (flax's variables and numerics) bound to the mode.

    Batch statistics are used (and running averages updated) only when ``train`` and not
    ``frozen``; ``frozen=True`` keeps running statistics fixed while dropout etc. still train
    (frozen-BN fine-tuning). Defaults equal torch's BatchNorm (momentum 0.1 == flax 0.9,
    eps 1e-5) so imported weights give identical outputs. ``axis_name``: the pmap axis the
    global batch is split over (statistics are exact over all devices, see ``batch_norm.py``).
    """
    return functools.partial(BatchNorm, use_running_average=(not train) or frozen, momentum=momentum,
                             epsilon=epsilon, axis_name=axis_name, dtype=dtype, **kw)


class FeatureTaps:
    """Collects named intermediate features inside a model's ``__call__``.

    ``features`` is ``None`` (plain logits), ``"all"``, or a sequence of tap names. Usage::

        taps = FeatureTaps(features, valid=("stem", "stage1", "stage2", "pre_logits", "logits"))
        x = stem(x)
        if taps.add("stem", x):
            return taps.result
        ...
        return taps.finish(logits)  # logits when features is None, else the dict

    ``add`` returns True once every requested tap has been collected, so the model returns
    without running later layers. Unknown tap names raise a ValueError listing valid ones.
    """

    def __init__(self, features: str | Sequence[str] | None, valid: Sequence[str]):
        self.valid = tuple(valid)
        self.all = features == "all"
        if features is None or self.all:
            self.wanted: tuple[str, ...] = self.valid if self.all else ()
        else:
            if isinstance(features, str):
                features = (features,)
            unknown = [f for f in features if f not in self.valid]
            if unknown:
                raise ValueError(f"unknown feature tap(s) {unknown}; this model has: {', '.join(self.valid)}")
            self.wanted = tuple(features)
        self.active = bool(self.wanted)
        self.result: dict[str, Any] = {}

    def add(self, name: str, x: Any) -> bool:
        if name not in self.valid:  # a programming error in the model, not user input
            raise ValueError(f"tap {name!r} is not declared in {self.valid}")
        if self.active and name in self.wanted:
            self.result[name] = x
            return len(self.result) == len(self.wanted)
        return False

    def finish(self, logits: Any) -> Any:
        if not self.active:
            return logits
        if "logits" in self.valid:
            self.add("logits", logits)
        return self.result


def sow_aux_logits(module: nn.Module, name: str, logits: Any, weight: float) -> None:
    """Record an auxiliary classifier's logits and its loss weight for the train step.

    The train step applies the model with ``mutable=[..., AUX_COLLECTION]`` and adds
    ``weight * loss(aux_logits, labels)`` for every sown entry (e.g. GoogLeNet's two aux
    heads with weight 0.3, Szegedy et al. 2015 sec. 5). Nothing is sown outside training.
    """
    module.sow(AUX_COLLECTION, name, {"logits": logits, "weight": jnp.asarray(weight, jnp.float32)},
               reduce_fn=lambda prev, new: new, init_fn=lambda: None)
