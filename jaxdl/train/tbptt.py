"""Truncated backpropagation through time (TBPTT) over long token streams.

A stream of ``L`` tokens is cut into ``batch_size`` parallel streams (rows) and read in chunks of
``chunk_len`` steps (:func:`stream_chunks`). Each train step differentiates the loss of one chunk
only; the recurrent carry is handed from one chunk to the next under ``jax.lax.stop_gradient``,
so the state sees the whole history while gradients flow back at most ``chunk_len`` steps
(Williams & Peng 1990, "An efficient gradient-based algorithm for on-line training of recurrent
network trajectories"; the "BPTT(h; h)" schedule of Williams & Zipser 1995). Gradient clipping
is the optimizer's (``jaxdl.optim.optimizer(..., clip_norm=...)``, Pascanu et al. 2013).

The model is any flax module with ``apply(variables, tokens, carry, train=..., rngs=...) ->
(logits, carry)`` and ``carry=None`` meaning zeros (``jaxdl.models.rnn.CharLanguageModel``).
Steps are pure and module level, like ``jaxdl.train.steps``; jit them at the call site::

    step = jax.jit(tbptt_train_step, donate_argnums=0)
    carry = None
    for inputs, targets in stream_chunks(tokens, batch_size=32, chunk_len=100):
        state, carry, metrics = step(state, carry, inputs, targets)
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.errors import ConfigError
from jaxdl.train.state import TrainState
from jaxdl.train.steps import step_keys

__all__ = ["create_sequence_state", "stream_chunks", "num_stream_chunks", "tbptt_train_step", "tbptt_eval_step", "bits_per_token"]


def num_stream_chunks(num_tokens: int, batch_size: int, chunk_len: int) -> int:
    """How many chunks :func:`stream_chunks` yields."""
    per_row = (num_tokens - 1) // batch_size
    return per_row // chunk_len


def stream_chunks(tokens: np.ndarray, batch_size: int, chunk_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(inputs, targets)``, each ``<i32>[batch_size, chunk_len]``, targets shifted one step ahead.

    Row ``b`` reads the ``b``-th contiguous slice of the stream, so chunk ``k+1`` of a row continues
    chunk ``k`` of the same row (what lets the carry be passed on). The tail that does not fill a
    whole chunk in every row is dropped (at most ``batch_size * chunk_len`` tokens).
    """
    tokens = np.asarray(tokens)
    if batch_size < 1 or chunk_len < 1:
        raise ConfigError(f"batch_size and chunk_len must be >= 1, got {batch_size} and {chunk_len}")
    chunks = num_stream_chunks(len(tokens), batch_size, chunk_len)
    if chunks < 1:
        raise ConfigError(f"a stream of {len(tokens)} tokens is too short for {batch_size} rows of chunks of "
                          f"{chunk_len} steps; use a smaller batch size or chunk length")
    per_row = chunks * chunk_len
    rows_in = np.stack([tokens[b * per_row:(b + 1) * per_row] for b in range(batch_size)])
    rows_out = np.stack([tokens[b * per_row + 1:(b + 1) * per_row + 1] for b in range(batch_size)])
    for k in range(chunks):
        s = slice(k * chunk_len, (k + 1) * chunk_len)
        yield rows_in[:, s].astype(np.int32), rows_out[:, s].astype(np.int32)


def _constant(carry: Any) -> Any:
    return None if carry is None else jax.lax.stop_gradient(carry)


def create_sequence_state(model: Any, tx: optax.GradientTransformation, *, seq_len: int = 8,
                          seed: int = 0) -> TrainState:
    """A :class:`TrainState` for a token model, initialised on a ``<i32>[1, seq_len]`` zero batch.

    Same key discipline as ``create_train_state``: parameters from ``fold_in(key(seed), 0)``,
    training randomness from ``fold_in(key(seed), 1)``.
    """
    base = jax.random.PRNGKey(seed)
    init_key, train_key = jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)
    params = jax.jit(lambda k: model.init(k, jnp.zeros((1, seq_len), jnp.int32))["params"])(init_key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={}, opt_state=tx.init(params),
                      rng=train_key, apply_fn=model.apply, tx=tx)


def tbptt_train_step(state: TrainState, carry: Any, inputs: jax.Array, targets: jax.Array
                     ) -> tuple[TrainState, Any, dict[str, jax.Array]]:
    """One optimizer step on one chunk; returns ``(state, next_carry, metrics)``.

    ``carry`` (from the previous chunk, or ``None``) enters as a constant: no gradient flows into
    the previous chunk. ``next_carry`` is the stop-gradient final carry. Metrics: ``loss`` (mean
    cross-entropy in nats per token), ``loss_sum`` and ``count`` (sums, for bits per token).
    """
    _, dropout_key = step_keys(state)
    carry = _constant(carry)

    def compute_loss(params):
        logits, new_carry = state.apply_fn({"params": params}, inputs, carry, train=True,
                                           rngs={"dropout": dropout_key})
        per_token = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
        return jnp.mean(per_token), (per_token, new_carry)

    grads, (per_token, new_carry) = jax.grad(compute_loss, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, state.batch_stats)
    metrics = {"loss": jnp.mean(per_token), "loss_sum": jnp.sum(per_token),
               "count": jnp.asarray(per_token.size, jnp.float32), "grad_norm": optax.tree.norm(grads)}
    return new_state, jax.lax.stop_gradient(new_carry), metrics


def tbptt_eval_step(state: TrainState, carry: Any, inputs: jax.Array, targets: jax.Array
                    ) -> tuple[Any, dict[str, jax.Array]]:
    """Loss sums on one chunk in inference mode, carrying the state on: ``(next_carry, metrics)``."""
    logits, new_carry = state.apply_fn(state.variables, inputs, carry, train=False)
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return new_carry, {"loss_sum": jnp.sum(per_token), "count": jnp.asarray(per_token.size, jnp.float32)}


def bits_per_token(loss_sum: float, count: float) -> float:
    """Mean cross-entropy in bits: ``loss_sum / count / ln 2`` (bits per character for a char model)."""
    return float(loss_sum) / float(count) / math.log(2.0)
