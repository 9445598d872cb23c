"""Greedy and beam-search decoding with a fixed maximum length (one compiled shape, jit-able).

Both take a step function ``step_fn(carry, tokens) -> (log_probs, carry)`` with ``tokens: <i32>[M]``
(the previous token of M hypotheses), ``log_probs: <f32>[M, V]`` and a carry pytree whose leaves
have a leading axis of size M. The caption decoder (``jaxdl.models.captioning``) provides one; so
can any toy model (the tests use a hand-written Markov chain whose best sequence is known).

Sequences stop at ``eos``; after it a hypothesis only emits ``pad`` at log-probability 0, so its score
no longer changes. Beam search (as in Vinyals et al. 2015 sec. 3.1 "BeamSearch", beam 20 there;
Sutskever, Vinyals & Le 2014 sec. 3.2) keeps the ``beam_size`` best partial sequences by summed
log-probability at every step; with ``length_penalty = alpha > 0`` the final choice divides each
score by ``length ** alpha`` (Wu et al. 2016 use ``((5 + len) / 6) ** alpha``; plain length here).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["greedy_decode", "beam_search"]

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]
NEG_INF = -1e9


def _after_eos(log_probs: jax.Array, finished: jax.Array, pad: int) -> jax.Array:
    """Finished hypotheses may only emit ``pad``, at log-probability 0."""
    only_pad = jnp.full_like(log_probs, NEG_INF).at[:, pad].set(0.0)
    return jnp.where(finished[:, None], only_pad, log_probs)


def greedy_decode(step_fn: StepFn, carry: Any, batch_size: int, *, bos: int, eos: int, pad: int = 0,
                  max_len: int) -> tuple[jax.Array, jax.Array]:
    """Most likely next token at every step: ``-> (tokens <i32>[N, max_len], log_prob <f32>[N])``.

    ``tokens`` holds the generated tokens (``eos`` included, then ``pad``), without ``bos``.
    """

    def step(state, _):
        carry, prev, finished, score = state
        log_probs, carry = step_fn(carry, prev)
        log_probs = _after_eos(log_probs.astype(jnp.float32), finished, pad)
        token = jnp.argmax(log_probs, -1).astype(jnp.int32)
        score = score + jnp.take_along_axis(log_probs, token[:, None], -1)[:, 0]
        finished = finished | (token == eos)
        return (carry, token, finished, score), token

    init = (carry, jnp.full((batch_size,), bos, jnp.int32), jnp.zeros((batch_size,), bool),
            jnp.zeros((batch_size,), jnp.float32))
    (_, _, _, score), tokens = jax.lax.scan(step, init, None, length=max_len)
    return tokens.T, score


def beam_search(step_fn: StepFn, carry: Any, batch_size: int, *, bos: int, eos: int, pad: int = 0,
                max_len: int, beam_size: int, length_penalty: float = 0.0
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Beam search: ``-> (best <i32>[N, max_len], best_score <f32>[N], beams <i32>[N, K, max_len])``.

    ``carry`` is for N sequences (leading axis N); it is repeated for the K beams. ``beams`` are all
    K final hypotheses sorted by score, ``best = beams[:, 0]``. ``best_score`` is the summed
    log-probability (divided by ``length ** length_penalty`` when that is > 0).
    """
    n, k = batch_size, beam_size
    carry = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), carry)  # [N*K, ...], beam-minor
    # Only beam 0 is alive at the start, so the K first tokens are K different ones.
    scores = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (n, 1))
    tokens = jnp.full((n, k, max_len), pad, jnp.int32)
    finished = jnp.zeros((n, k), bool)
    lengths = jnp.zeros((n, k), jnp.int32)

    def step(state, t):
        carry, prev, tokens, scores, finished, lengths = state
        log_probs, carry = step_fn(carry, prev.reshape(-1))
        vocab = log_probs.shape[-1]
        log_probs = _after_eos(log_probs.astype(jnp.float32), finished.reshape(-1), pad).reshape(n, k, vocab)
        total = (scores[..., None] + log_probs).reshape(n, k * vocab)
        scores, flat = jax.lax.top_k(total, k)  # [N, K]
        beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        rows = jnp.arange(n)[:, None]
        tokens = tokens[rows, beam].at[:, :, t].set(token)
        was_finished = finished[rows, beam]
        lengths = lengths[rows, beam] + (~was_finished).astype(jnp.int32)
        finished = was_finished | (token == eos)
        source = (rows * k + beam).reshape(-1)
        carry = jax.tree_util.tree_map(lambda x: x[source], carry)
        return (carry, token, tokens, scores, finished, lengths), None

    init = (carry, jnp.full((n, k), bos, jnp.int32), tokens, scores, finished, lengths)
    (_, _, tokens, scores, _, lengths), _ = jax.lax.scan(step, init, jnp.arange(max_len))
    if length_penalty > 0:
        scores = scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty
    order = jnp.argsort(-scores, axis=-1)
    rows = jnp.arange(n)[:, None]
    beams, scores = tokens[rows, order], scores[rows, order]
    return beams[:, 0], scores[:, 0], beams
