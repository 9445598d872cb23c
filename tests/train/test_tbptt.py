"""Truncated BPTT: chunking of a stream, the carry handed on without gradient, clipping, sampling, text data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import optim
from jaxdl.data.text import CharVocab, load_text, split_text
from jaxdl.errors import ConfigError, DatasetNotFoundError
from jaxdl.models.rnn import CharLanguageModel, sample_tokens
from jaxdl.train.tbptt import create_sequence_state, stream_chunks, tbptt_eval_step, tbptt_train_step


def test_stream_chunks_rows_continue_and_targets_shift():
    tokens = np.arange(103)
    chunks = list(stream_chunks(tokens, batch_size=4, chunk_len=5))
    assert len(chunks) == 5  # 102 usable pairs / 4 rows = 25 per row = 5 chunks of 5
    inputs = np.concatenate([c[0] for c in chunks], axis=1)
    targets = np.concatenate([c[1] for c in chunks], axis=1)
    np.testing.assert_array_equal(inputs[1], np.arange(25, 50))  # row 1 reads one contiguous slice
    np.testing.assert_array_equal(targets, inputs + 1)
    with pytest.raises(ConfigError, match="too short"):
        list(stream_chunks(np.arange(10), batch_size=4, chunk_len=5))


@pytest.fixture(scope="module")
def lm_state():
    model = CharLanguageModel(vocab_size=7, embed_size=4, hidden_size=8, num_layers=1)
    state = create_sequence_state(model, optax.sgd(0.1), seq_len=5)
    return model, state


def test_gradient_stops_at_the_chunk_border(lm_state):
    """The TBPTT step's gradient is that of the chunk loss with the incoming carry held constant, and
    differs from the full-BPTT gradient that also flows into the previous chunk."""
    model, state = lm_state
    rng = np.random.default_rng(0)
    first, second, targets = (jnp.asarray(rng.integers(0, 7, (2, 5)), jnp.int32) for _ in range(3))

    def chunk_loss(params, carry):
        logits, _ = model.apply({"params": params}, second, carry)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    @jax.jit
    def reference(params):
        _, carry = model.apply({"params": params}, first)
        truncated = jax.grad(chunk_loss)(params, carry)
        full = jax.grad(lambda p: chunk_loss(p, model.apply({"params": p}, first)[1]))(params)
        _, want_carry = model.apply({"params": params}, second, carry)
        return carry, truncated, full, want_carry

    carry, truncated, full, want_carry = reference(state.params)
    new_state, next_carry, metrics = jax.jit(tbptt_train_step)(state, carry, second, targets)
    expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.params, truncated)
    for a, b in zip(jax.tree_util.tree_leaves(new_state.params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    diff = optax.tree.norm(jax.tree_util.tree_map(jnp.subtract, truncated, full))
    assert float(diff) > 1e-4, "full BPTT must differ from truncated, or the test shows nothing"
    for a, b in zip(jax.tree_util.tree_leaves(next_carry), jax.tree_util.tree_leaves(want_carry)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(metrics["count"]) == 10


def test_clip_norm_bounds_the_update(lm_state):
    model, _ = lm_state
    state = create_sequence_state(model, optim.optimizer("sgd", 1.0, clip_norm=1e-3), seq_len=5)
    tokens = jnp.zeros((2, 5), jnp.int32)
    new_state, _, metrics = jax.jit(tbptt_train_step)(state, None, tokens, tokens + 1)
    step = optax.tree.norm(jax.tree_util.tree_map(jnp.subtract, new_state.params, state.params))
    assert float(metrics["grad_norm"]) > 1e-2
    np.testing.assert_allclose(float(step), 1e-3, rtol=1e-4)


def test_eval_step_and_sampling(lm_state):
    model, state = lm_state
    tokens = jnp.zeros((2, 5), jnp.int32)
    carry, sums = jax.jit(tbptt_eval_step)(state, None, tokens, tokens)
    assert float(sums["count"]) == 10 and np.isfinite(float(sums["loss_sum"]))
    prime = jnp.array([1, 2], jnp.int32)
    sample = jax.jit(sample_tokens, static_argnums=(0, 3), static_argnames=("temperature",))
    greedy = sample(model, state.params, prime, 6, jax.random.key(0), temperature=0.0)
    again = sample(model, state.params, prime, 6, jax.random.key(5), temperature=0.0)
    np.testing.assert_array_equal(greedy, again)  # temperature 0 is the argmax: no randomness
    hot = sample(model, state.params, prime, 40, jax.random.key(0), temperature=50.0)
    assert greedy.shape == (6,) and len(set(np.asarray(hot).tolist())) > 3  # near-uniform at high temperature
    # the first greedy token is the argmax after reading the prime
    logits, _ = jax.jit(model.apply)({"params": state.params}, prime[None])
    assert int(greedy[0]) == int(jnp.argmax(logits[0, -1]))


def test_offline_text_corpus_and_vocab(tmp_path):
    text = load_text("pydoc_topics")
    assert len(text) > 100_000
    vocab = CharVocab.from_text(text[:5000])
    assert vocab.decode(vocab.encode(text[:300])) == text[:300]
    train, held = split_text("abcdefghij", 0.2)
    assert (train, held) == ("abcdefgh", "ij")
    with pytest.raises(DatasetNotFoundError, match="nowhere.txt"):
        load_text(str(tmp_path / "nowhere.txt"))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        CharVocab("ab").encode("abc")
