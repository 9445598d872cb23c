"""FractalNet (Larsson, Maire & Shakhnarovich 2017, "FractalNet: Ultra-Deep Neural Networks
without Residuals", ICLR), the CIFAR network of sec. 4.

A fractal block with C columns follows the expansion rule of sec. 2 (Fig. 1)::

    f_1(z) = conv(z)
    f_{C+1}(z) = join( f_C(f_C(z)), conv(z) )

with the nested joins of one depth merged into a single join (Fig. 1), so column c (0-based,
0 = shallowest) has ``2**c`` convolutions per block and the deepest column ``2**(C-1)``. A join
is the element-wise mean of its inputs. Every "conv" is ``Conv3x3 - Dropout - BN - ReLU`` (the
authors' implementation puts dropout right after the convolution); all convolutions of a block
have the block's channels. Blocks are followed by 2x2 max-pooling; as in the paper's
implementation (sec. 4) the pooling is applied to each column before the block's last join.
After B blocks: global average pool (a 32x32 input is 1x1 after five poolings, so this equals
the paper's flatten) and ``head``.

The paper's CIFAR model ("FractalNet, 20 layers", Table 1): B=5 blocks of 64, 128, 256, 512,
512 channels, C=3 columns (deepest path 5 * 2**2 = 20 convolutions), dropout per block
0, 0.1, 0.2, 0.3, 0.4, local drop-path 0.15 and global drop-path for half of the samples
(sec. 4, "Training").

Parameter count: 33,724,618 (no conv biases: every conv is followed by BatchNorm). The paper
states 38.6M for this network; the architecture it describes does not reach that number (with
C=4, the 40-layer layout, these widths give 76.1M), so the registry checks the computed count
and the tests check it against a closed form.

Drop-path (sec. 3.1), training only, with the ``"dropout"`` rng stream:

* local: each join drops each of its inputs with probability ``local_drop_rate`` (0.15), and
  keeps one input chosen at random if all were dropped; the join is the mean of the kept inputs.
* global: a single column is chosen for the whole network (the same in every block); every
  join keeps only that column's input.

The paper draws global-or-local per mini-batch, 50% global (sec. 3.1 and sec. 4). Here
``drop_path_per="example"`` (default) draws, for every example on its own, global (probability
``global_drop_fraction``) or local, the global column and every local mask: the same expected
regularisation with a lower-variance gradient, and an example's path does not depend on its
batch-mates.
``drop_path_per="batch"`` draws once for the whole mini-batch, as the paper does. All columns
are always computed (jit needs static shapes), so the choice does not change the cost. Without
``train`` every join is the plain mean of all its inputs.

``column=c`` builds only column c (``-1`` = the deepest: the paper's "deepest column alone"
rows of Table 1): a plain chain of ``2**c`` convs per block whose parameters carry the
full network's names, so a trained FractalNet's variables apply to it unchanged.

Parameter names: ``stage{b}_col{c}_layer{i}/{conv,bn}`` (block b from 1, column c from 0 =
shallowest, i-th conv of that column in the block from 0), ``head``. Taps: ``stage1`` ..
``stage{B}`` (after each block's pooling and last join, stride ``2**b``), ``pre_logits``,
``logits``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import Conv, FeatureTaps, batch_norm

__all__ = ["ConvUnit", "FractalNet", "fractal_schedule", "drop_path_keep", "mean_join", "PAPER_DROPOUT"]

# Sec. 4: "we fix drop rate per block at (0%, 10%, 20%, 30%, 40%)".
PAPER_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4)


def fractal_schedule(num_columns: int) -> list[tuple[int, ...]]:
    """Columns that convolve at each depth step of a block (and then join, if two or more).

    Column c (0 = shallowest) convolves every ``2**(C-1-c)`` steps of the ``2**(C-1)`` steps; the
    columns that convolve at one step are exactly those that join after it (Fig. 1).

    >>> fractal_schedule(3)
    [(2,), (1, 2), (2,), (0, 1, 2)]
    """
    depth = 2 ** (num_columns - 1)
    return [tuple(c for c in range(num_columns) if (step + 1) % 2 ** (num_columns - 1 - c) == 0)
            for step in range(depth)]


def drop_path_keep(key: jax.Array, columns: Sequence[int], is_global: jax.Array, chosen: jax.Array,
                   local_drop_rate: float) -> jax.Array:
    """Which inputs of one join drop-path keeps: ``bool[n, len(columns)]``, never all False in a row.

    Args:
      key: PRNG key of this join.
      columns: the columns whose outputs this join merges, in input order.
      is_global: ``bool[n]``: row i uses global drop-path (else local); n = batch size or 1.
      chosen: ``int[n]``: the column global drop-path keeps for the whole network.
      local_drop_rate: probability of dropping each input under local drop-path.

    Local rows drop each input independently and keep one input chosen uniformly if all were
    dropped (sec. 3.1: at least one input survives). Global rows keep only the chosen column's
    input; at a join the chosen column takes no part in, they keep every input (such a join only
    feeds columns the chosen path never reads, and the mean must stay defined).
    """
    k = len(columns)
    k_keep, k_fallback = jax.random.split(key)
    local = jax.random.bernoulli(k_keep, 1.0 - local_drop_rate, (is_global.shape[0], k))
    fallback = jax.nn.one_hot(jax.random.randint(k_fallback, is_global.shape, 0, k), k, dtype=bool)
    local = jnp.where(local.any(-1, keepdims=True), local, fallback)
    glob = chosen[:, None] == jnp.asarray(columns)[None, :]
    glob = jnp.where(glob.any(-1, keepdims=True), glob, True)
    return jnp.where(is_global[:, None], glob, local)


def mean_join(inputs: Sequence[jax.Array], keep: jax.Array | None = None) -> jax.Array:
    """Element-wise mean of the kept inputs (the paper's join).

    ``inputs``: k arrays ``[N, H, W, C]``; ``keep``: ``bool[n, k]`` with n = N (one draw per
    example) or 1 (one for the batch) and at least one True per row, or None (keep all).
    Returns ``[N, H, W, C]``.
    """
    if keep is None:
        return sum(inputs[1:], inputs[0]) / len(inputs)
    weights = keep.astype(inputs[0].dtype)
    weights = weights / weights.sum(-1, keepdims=True)
    return sum(weights[:, j, None, None, None] * x for j, x in enumerate(inputs))


class ConvUnit(nn.Module):
    """``Conv3x3(features) - Dropout - BN - ReLU``: ``[N, H, W, C] -> [N, H, W, features]``."""

    features: int
    dropout_rate: float = 0.0
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.conv(self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                      name="conv")(x)
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = batch_norm(train, frozen=self.frozen_bn, axis_name=self.bn_axis_name, dtype=self.dtype)(name="bn")(x)
        return nn.relu(x)


class FractalNet(nn.Module):
    """FractalNet for CIFAR (Larsson et al. 2017, sec. 4): ``x: <f32>[N, H, W, C]`` -> ``<f32>[N, num_classes]``.

    H and W must be at least ``2**len(channels)`` (32 for the paper's five blocks).

    Attributes:
      num_classes: size of ``head``; 0 returns the pooled ``pre_logits`` features.
      num_columns: C, columns per block (3 in the paper's 20-layer CIFAR network).
      channels: channels of each block; B = ``len(channels)`` blocks.
      dropout_rate: dropout after every conv; one rate for all blocks or one per block (default
        the paper's ``PAPER_DROPOUT`` = 0, 0.1, 0.2, 0.3, 0.4).
      local_drop_rate: probability that a join drops each input in training (0.15; 0 disables).
      global_drop_fraction: share of examples (or mini-batches) trained on a single column of
        the whole network (0.5; 0 disables).
      drop_path_per: ``"example"`` or ``"batch"``: what one drop-path draw covers (module doc).
      column: ``None`` (all columns) or a column index (0 = shallowest, -1 = deepest) to build
        and run that column alone, in training and evaluation.
      frozen_bn: keep BatchNorm's running statistics fixed even when ``train=True``.
      dtype: compute dtype (parameters stay float32).
      conv: convolution layer.
    """

    num_classes: int = 10
    num_columns: int = 3
    channels: Sequence[int] = (64, 128, 256, 512, 512)
    dropout_rate: float | Sequence[float] = PAPER_DROPOUT
    local_drop_rate: float = 0.15
    global_drop_fraction: float = 0.5
    drop_path_per: str = "example"
    column: int | None = None
    frozen_bn: bool = False
    dtype: Any = jnp.float32
    conv: Any = Conv
    bn_axis_name: str | None = None  # pmap axis for cross-device BatchNorm statistics

    def _dropout_rates(self) -> tuple[float, ...]:
        rates = self.dropout_rate
        rates = (float(rates),) * len(self.channels) if isinstance(rates, (int, float)) else tuple(rates)
        if len(rates) != len(self.channels) or not all(0.0 <= r < 1.0 for r in rates):
            raise ConfigError(f"dropout_rate must be one rate in [0, 1) or one per block ({len(self.channels)} "
                              f"blocks), got {self.dropout_rate!r}")
        return rates

    def _check(self, x: jax.Array) -> None:
        if self.num_columns < 1 or not self.channels or min(self.channels) < 1:
            raise ConfigError(f"num_columns must be >= 1 and channels a non-empty sequence of positive widths, got "
                              f"num_columns={self.num_columns}, channels={tuple(self.channels)}")
        if not 0.0 <= self.local_drop_rate <= 1.0 or not 0.0 <= self.global_drop_fraction <= 1.0:
            raise ConfigError(f"local_drop_rate and global_drop_fraction must be in [0, 1], got "
                              f"{self.local_drop_rate} and {self.global_drop_fraction}")
        if self.drop_path_per not in ("example", "batch"):
            raise ConfigError(f"drop_path_per must be 'example' or 'batch' (the paper's per-mini-batch draw), "
                              f"got {self.drop_path_per!r}")
        if self.column is not None and not -self.num_columns <= self.column < self.num_columns:
            raise ConfigError(f"column must be None (all columns) or an index in [{-self.num_columns}, "
                              f"{self.num_columns - 1}] (0 = shallowest, -1 = deepest), got {self.column}")
        smallest = 2 ** len(self.channels)
        if x.ndim != 4 or min(x.shape[1:3]) < smallest:
            raise ConfigError(f"FractalNet with {len(self.channels)} blocks (each ends with a 2x2 max-pool) takes "
                              f"NHWC input of at least {smallest}x{smallest}, got shape {tuple(x.shape)}; resize "
                              f"the images or use fewer blocks (a shorter `channels`)")

    def _sample_paths(self, batch: int) -> tuple[jax.Array, jax.Array] | None:
        """``(is_global bool[n], column int32[n])`` with n = batch (per example) or 1 (per batch)."""
        if self.global_drop_fraction == 0 and self.local_drop_rate == 0:
            return None
        n = batch if self.drop_path_per == "example" else 1
        k_global, k_column = jax.random.split(self.make_rng("dropout"))
        is_global = jax.random.bernoulli(k_global, self.global_drop_fraction, (n,))
        return is_global, jax.random.randint(k_column, (n,), 0, self.num_columns)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None) -> Any:
        self._check(x)
        rates = self._dropout_rates()
        num_blocks, num_columns = len(self.channels), self.num_columns
        taps = FeatureTaps(features, valid=(*(f"stage{b + 1}" for b in range(num_blocks)), "pre_logits", "logits"))
        active = tuple(range(num_columns)) if self.column is None else (self.column % num_columns,)
        paths = self._sample_paths(x.shape[0]) if train and self.column is None else None
        schedule = fractal_schedule(num_columns)

        x = jnp.asarray(x, self.dtype)
        for b, (width, rate) in enumerate(zip(self.channels, rates)):
            state = {c: x for c in active}
            layer = {c: 0 for c in active}
            for step, fired in enumerate(schedule):
                fired = tuple(c for c in fired if c in active)
                for c in fired:
                    state[c] = ConvUnit(width, rate, self.frozen_bn, self.dtype, self.conv, self.bn_axis_name,
                                        name=f"stage{b + 1}_col{c}_layer{layer[c]}")(state[c], train)
                    layer[c] += 1
                if step == len(schedule) - 1:  # pool before the block's last join (paper sec. 4)
                    for c in fired:
                        state[c] = nn.max_pool(state[c], (2, 2), strides=(2, 2), padding=((0, 0), (0, 0)))
                if len(fired) > 1:
                    keep = None if paths is None else drop_path_keep(self.make_rng("dropout"), fired, *paths,
                                                                     self.local_drop_rate)
                    joined = mean_join([state[c] for c in fired], keep)
                    for c in fired:
                        state[c] = joined
            x = state[active[0]]  # every active column took part in the block's last join
            if taps.add(f"stage{b + 1}", x):
                return taps.result

        x = jnp.mean(x, axis=(1, 2))
        if taps.add("pre_logits", x):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(x)
        return taps.finish(nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x))


register(
    "fractalnet",
    functools.partial(FractalNet),
    input_shape=(32, 32, 3),
    num_classes=10,
    family="fractalnet",
    paper="Larsson, Maire & Shakhnarovich 2017, 'FractalNet: Ultra-Deep Neural Networks without Residuals', "
          "sec. 4 and Table 1 (FractalNet, 20 layers: B=5, C=3, channels 64-128-256-512-512, "
          "drop-path + dropout)",
    num_params=33_724_618,
    params_reference="computed from sec. 4's architecture (Table 1 states 38.6M, which this architecture "
                     "does not reach)",
    params_exact=True,
    description="FractalNet 20 layers (CIFAR, C=3 columns, B=5 blocks, mean joins, local+global drop-path)",
    smoke_input_shape=(32, 32, 3),
    # Two narrow blocks of two columns keep the smoke compile short and still exercise joins,
    # drop-path and dropout.
    smoke_overrides={"channels": (8, 8), "num_columns": 2, "dropout_rate": (0.0, 0.1)},
)
