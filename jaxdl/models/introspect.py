"""Shape-only introspection of registered models (parameter counts, feature taps, layer tables).

Everything here runs through ``jax.eval_shape``: no FLOPs, no memory for weights, so it is
cheap even for VGG-19 or DenseNet-264.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.models import registry

__all__ = ["abstract_variables", "count_params", "feature_info", "TapInfo", "layer_table"]


def _input(name: str, input_shape: Sequence[int] | None, batch: int = 1):
    shape = tuple(input_shape) if input_shape is not None else registry.info(name).input_shape
    return jax.ShapeDtypeStruct((batch, *shape), jnp.float32)


def abstract_variables(name: str, *, input_shape: Sequence[int] | None = None, **overrides: Any):
    """``jax.eval_shape`` of ``model.init`` at the default (or given) input shape."""
    model = registry.create(name, **overrides)
    x = _input(name, input_shape)
    return jax.eval_shape(lambda k, x: model.init({"params": k, "dropout": k}, x, train=False),
                          jax.random.key(0), x)


def count_params(variables_or_name: Any, **overrides: Any) -> int:
    """Number of trainable parameters: of a variables/params tree, or of a registered name."""
    if isinstance(variables_or_name, str):
        tree = abstract_variables(variables_or_name, **overrides)["params"]
    else:
        tree = variables_or_name.get("params", variables_or_name) if hasattr(variables_or_name, "get") \
            else variables_or_name
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree)))


@dataclasses.dataclass(frozen=True)
class TapInfo:
    """A named feature tap: its shape (H, W, C) at the default input, and its stride."""

    name: str
    shape: tuple[int, ...]
    channels: int
    stride: int | None


def feature_info(name: str, *, input_shape: Sequence[int] | None = None, taps: Sequence[str] | None = None,
                 **overrides: Any) -> list[TapInfo]:
    """Channels and stride of each feature tap of a registered model (shape-only).

    ``taps`` defaults to all the taps the model reports when asked with ``features="all"``.
    """
    model = registry.create(name, **overrides)
    x = _input(name, input_shape)
    requested = "all" if taps is None else tuple(taps)

    def run(k, x):
        variables = model.init({"params": k, "dropout": k}, x, train=False)
        return model.apply(variables, x, train=False, features=requested)

    out = jax.eval_shape(run, jax.random.key(0), x)
    result = []
    in_h = x.shape[1]
    for tap, value in out.items():
        shape = tuple(value.shape[1:])
        stride = (in_h // shape[0]) if len(shape) == 3 and shape[0] else None
        result.append(TapInfo(tap, shape, int(shape[-1]), stride))
    return result


def layer_table(name: str, *, input_shape: Sequence[int] | None = None, **overrides: Any) -> str:
    """A per-layer table (module path, output shape, parameters) as text, via flax's tabulate."""
    import flax.linen as nn

    model = registry.create(name, **overrides)
    x = jnp.zeros(_input(name, input_shape).shape, jnp.float32)
    return nn.tabulate(model, jax.random.key(0), depth=None, console_kwargs={"width": 160})(x, train=False)
