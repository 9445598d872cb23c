"""Drop-path / stochastic depth (Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep networks with
stochastic depth", ECCV, sec. 3).

During training each residual branch ``f_l(x)`` of an example is kept with survival probability
``p_l`` and dropped (replaced by zero) otherwise, independently for every example of the batch
(one Bernoulli draw per example, broadcast over all other axes). The paper keeps the branch as
is while training and multiplies it by ``p_l`` at test time (sec. 3, "Stochastic depth during
testing"). This module uses the equivalent *inverted* form: a kept branch is divided by ``p_l``
while training and the layer is the identity at test time. In both, a block's expected
training output equals its test output: here ``E[x + mask f(x) / p_l] = x + f(x)`` (test:
``x + f(x)``), there ``E[x + mask f(x)] = x + p_l f(x)`` (test: ``x + p_l f(x)``); the two
parameterisations differ only by the factor ``p_l`` folded into ``f``. The inverted form keeps
the evaluation graph free of any stochastic-depth constant.

The paper's *linear decay rule* (sec. 3, Eq. 4) gives block ``l`` of ``L`` the survival
probability ``p_l = 1 - (l / L) (1 - p_L)``, i.e. the drop probability ``(l / L) * rate`` with
``rate = 1 - p_L`` the drop probability of the last block (``p_L = 0.5`` in the paper's
CIFAR experiments, sec. 4). :func:`linear_drop_path_rates` computes it.

Randomness comes from the rng stream ``"dropout"`` (one stream for dropout and drop-path keeps
the train step simple).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

__all__ = ["DropPath", "drop_path", "linear_drop_path_rates"]


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"drop-path rate must be a probability in [0, 1], got {rate}; "
                          f"the paper's CIFAR setting is 0.5 for the last block (Huang et al. 2016, sec. 4)")


def drop_path(rng: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Drop whole examples of a residual branch: ``x: [N, ...] -> [N, ...]``.

    Each example ``x[i]`` is zeroed with probability ``rate`` and otherwise divided by
    ``1 - rate`` (inverted scaling), so ``E[drop_path(x)] = x``. ``rate=1`` returns zeros.
    """
    _check_rate(rate)
    if rate == 0.0:
        return x
    if rate == 1.0:
        return jnp.zeros_like(x)
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def linear_drop_path_rates(rate: float, num_blocks: int) -> tuple[float, ...]:
    """Drop probabilities of blocks ``1..L`` under the linear decay rule: ``(l / L) * rate``.

    ``rate`` is the drop probability of the last block (``1 - p_L`` in Huang et al. 2016,
    Eq. 4); the input-side blocks are dropped least often. ``num_blocks=0`` gives ``()``.
    """
    _check_rate(rate)
    if num_blocks < 0:
        raise ConfigError(f"num_blocks must be >= 0, got {num_blocks}")
    return tuple(rate * (l + 1) / num_blocks for l in range(num_blocks))


class DropPath(nn.Module):
    """Stochastic depth for one residual branch (see the module docstring).

    ``x: [N, ...] -> [N, ...]``: the identity when ``deterministic`` (evaluation) or
    ``rate == 0``; in training each example is zeroed with probability ``rate`` and kept ones
    are scaled by ``1 / (1 - rate)``. Needs the rng stream ``rng_collection`` (``"dropout"``)
    in training.

    Attributes:
      rate: drop probability of this branch, in [0, 1].
      deterministic: as ``nn.Dropout``; may instead be passed to ``__call__``.
      rng_collection: rng stream name.
    """

    rate: float = 0.0
    deterministic: Optional[bool] = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: Optional[bool] = None) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        _check_rate(self.rate)
        if deterministic or self.rate == 0.0:
            return x
        return drop_path(self.make_rng(self.rng_collection), x, self.rate)
