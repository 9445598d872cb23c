"""Show and Tell and the CNN-RNN: teacher forcing agrees with step-by-step decoding; encoders come from the zoo."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.models.captioning import ShowAndTell, caption_loss, generate
from jaxdl.models.cnn_rnn import CNNRNN

SMALL_MLP = (("hidden_sizes", (16,)),)


@pytest.fixture(scope="module")
def captioner():
    model = ShowAndTell(vocab_size=12, encoder="mlp", encoder_options=SMALL_MLP, embed_size=8, hidden_size=16)
    images = jax.random.uniform(jax.random.key(0), (3, 6, 6, 3))
    words = jax.random.randint(jax.random.key(1), (3, 5), 3, 12).at[:, 0].set(1)
    variables = jax.jit(model.init)(jax.random.key(2), images, words)
    return model, variables, images, words


def test_teacher_forcing_equals_decoding_steps(captioner):
    model, variables, images, words = captioner
    assert "head" not in variables["params"]["cnn"]  # the encoder is headless: its pre_logits tap is the feature
    logits = jax.jit(model.apply)(variables, images, words)
    carry = jax.jit(functools.partial(model.apply, method=ShowAndTell.start))(variables, images)
    step = jax.jit(functools.partial(model.apply, method=ShowAndTell.step))
    for t in range(words.shape[1]):
        log_probs, carry = step(variables, carry, words[:, t])
        np.testing.assert_allclose(log_probs, jax.nn.log_softmax(logits[:, t]), atol=1e-5)


def test_generate_greedy_and_beam(captioner):
    model, variables, images, _ = captioner
    decode = jax.jit(functools.partial(generate, model, max_len=6), static_argnames=("beam_size",))
    greedy, g_score = decode(variables, images, beam_size=1)
    beam, b_score = decode(variables, images, beam_size=4)
    assert greedy.shape == beam.shape == (3, 6)
    assert np.all(np.asarray(b_score) >= np.asarray(g_score) - 1e-5)  # beam never scores below greedy here


def test_caption_loss_ignores_padding():
    logits = jnp.zeros((1, 3, 5)).at[0, 0, 2].set(10.0)
    loss, count = caption_loss(logits, jnp.array([[2, 0, 0]]))
    assert float(count) == 1 and float(loss) < 1e-3


def test_cnn_rnn_reads_frames_in_order_and_respects_lengths():
    model = CNNRNN(5, encoder="mlp", encoder_options=SMALL_MLP, hidden_size=8)
    frames = jax.random.uniform(jax.random.key(0), (2, 4, 6, 6, 1))
    v = jax.jit(model.init)(jax.random.key(1), frames)
    apply = jax.jit(model.apply)
    out = apply(v, frames)
    assert out.shape == (2, 5)
    assert np.abs(np.asarray(apply(v, frames[:, ::-1]) - out)).max() > 1e-4  # order matters
    lengths = jnp.array([2, 4])
    cut = apply(v, frames, lengths=lengths)
    short = apply(v, frames[:, :2])
    np.testing.assert_allclose(cut[0], short[0], atol=1e-5)  # padded frames 3-4 of sequence 0 ignored
    np.testing.assert_allclose(cut[1], out[1], atol=1e-5)
    with pytest.raises(ConfigError, match=r"\[N, T, H, W, C\]"):
        model.init(jax.random.key(1), frames[:, 0])
