"""Greedy and beam-search decoding on a hand-written Markov chain whose best sequence is known."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models.decoding import beam_search, greedy_decode

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4
MAX_LEN = 4


def _chain():
    """table[row, prev] = next-token probabilities. Row 0: greedy takes A (0.6) and then wanders
    (A 0.36 ...), while the best sequence is "B <eos>" (0.4 * 0.9 = 0.36). Row 1: greedy is optimal."""
    p = np.full((2, 5, 5), 1e-12)
    p[0, BOS, [A, B]] = 0.6, 0.4
    p[0, A, [A, B, EOS]] = 0.36, 0.34, 0.30
    p[0, B, [EOS, A, B]] = 0.9, 0.05, 0.05
    p[1, BOS, [A, B]] = 0.3, 0.7
    p[1, B, [EOS, A]] = 0.8, 0.2
    p[1, A, [EOS]] = 1.0
    p[:, [PAD, EOS]] = 1.0 / 5  # never used: finished hypotheses only emit PAD
    p = p / p.sum(-1, keepdims=True)
    return np.log(p).astype(np.float32)


TABLE = _chain()


def step_fn(carry, tokens):
    rows = carry  # each hypothesis carries its batch row, so beams of different rows never mix
    return jnp.asarray(TABLE)[rows, tokens], rows


def brute_force_best(row):
    best, best_score = None, -math.inf
    for seq in itertools.product([EOS, A, B], repeat=MAX_LEN):
        score, prev, out = 0.0, BOS, []
        for tok in seq:
            score += TABLE[row, prev, tok]
            out.append(tok)
            prev = tok
            if tok == EOS:
                break
        out += [PAD] * (MAX_LEN - len(out))
        if score > best_score + 1e-6:
            best, best_score = out, score
    return best, best_score


@pytest.fixture(scope="module")
def decoded():
    rows = jnp.arange(2)
    greedy = jax.jit(lambda c: greedy_decode(step_fn, c, 2, bos=BOS, eos=EOS, pad=PAD, max_len=MAX_LEN))(rows)
    beam = jax.jit(lambda c: beam_search(step_fn, c, 2, bos=BOS, eos=EOS, pad=PAD, max_len=MAX_LEN,
                                         beam_size=2))(rows)
    return greedy, beam


def test_beam_finds_the_best_sequence_where_greedy_does_not(decoded):
    (greedy, greedy_score), (best, best_score, beams) = decoded
    want, want_score = brute_force_best(0)
    assert want == [B, EOS, PAD, PAD]
    np.testing.assert_array_equal(best[0], want)
    np.testing.assert_allclose(best_score[0], want_score, rtol=1e-5)
    np.testing.assert_array_equal(greedy[0], [A, A, A, A])  # greedy follows the likeliest first word
    np.testing.assert_allclose(greedy_score[0], np.log(0.6 * 0.36 ** 3), rtol=1e-4)
    assert best_score[0] > greedy_score[0]
    assert beams.shape == (2, 2, MAX_LEN)


def test_rows_are_decoded_independently_and_agree_when_greedy_is_optimal(decoded):
    (greedy, greedy_score), (best, best_score, _) = decoded
    want, want_score = brute_force_best(1)
    np.testing.assert_array_equal(best[1], want)
    np.testing.assert_array_equal(greedy[1], want)
    np.testing.assert_allclose(best_score[1], want_score, rtol=1e-5)


def test_length_penalty_prefers_longer_hypotheses():
    rows = jnp.zeros(1, jnp.int32)
    search = jax.jit(lambda c, alpha: beam_search(step_fn, c, 1, bos=BOS, eos=EOS, max_len=MAX_LEN, beam_size=3,
                                                  length_penalty=alpha), static_argnums=1)
    plain, long = search(rows, 0.0), search(rows, 2.0)
    n_plain = int(np.sum(np.asarray(plain[0][0]) != PAD))
    n_long = int(np.sum(np.asarray(long[0][0]) != PAD))
    assert n_long > n_plain == 2
