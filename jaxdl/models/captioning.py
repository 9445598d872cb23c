"""Show and Tell image captioning (Vinyals, Toshev, Bengio & Erhan 2015, "Show and tell: a neural
image caption generator", sec. 3.1): any zoo CNN as encoder, an LSTM decoder.

The CNN's pooled features (its ``pre_logits`` feature tap, ``model(x, features=("pre_logits",))``)
are projected to the word-embedding size and fed to the LSTM once, as the input of step -1
(eq. 10: ``x_{-1} = CNN(I)``); then the embedded words ``S_0 = <bos>, S_1, ...`` are fed one per
step and the ``head`` predicts the next word (eq. 11-12). Training uses teacher forcing (the true
previous word is the input); inference decodes greedily or by beam search
(``jaxdl.models.decoding``) with a fixed maximum length.

Deviations, stated: the paper's encoder is a pretrained GoogLeNet (Inception) kept fixed at first;
here any registered model (default ``resnet20``, trained from scratch on the generated shapes set).
The LSTM has the forget-gate bias 1 (``jaxdl.nn.recurrent.LSTMCell``).

Parameters: ``cnn/...`` (the encoder, built with ``num_classes=0``), ``image_embed``, ``embed``, ``cell/{ih,hh}``
(the decoder LSTM, the same cell for the teacher-forced scan and the decoding steps), ``head``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.data.captions import BOS, EOS, PAD
from jaxdl.models import registry
from jaxdl.models.decoding import beam_search, greedy_decode
from jaxdl.nn.recurrent import LSTMCell

__all__ = ["ShowAndTell", "caption_loss", "generate"]


class ShowAndTell(nn.Module):
    """``images: <f32>[N, H, W, C]``, ``words: <i32>[N, L]`` (``<bos> w1 ..``) -> logits ``<f32>[N, L, V]``.

    ``logits[:, t]`` predicts ``words[:, t + 1]`` (the word after the ``t``-th input word).

    Attributes:
      vocab_size: V, including ``<pad> <bos> <eos> <unk>``.
      encoder: a registered model name; its ``pre_logits`` tap is the image feature.
      encoder_options: overrides for ``jaxdl.models.create`` (e.g. ``(("width_multiplier", 0.5),)``).
      embed_size, hidden_size: word/image embedding and LSTM sizes (512 and 512 in the paper).
      dropout_rate: on the embeddings and the LSTM outputs (the paper's main regulariser, sec. 4.3.1).
    """

    vocab_size: int
    encoder: str = "resnet20"
    encoder_options: tuple[tuple[str, Any], ...] = ()
    embed_size: int = 128
    hidden_size: int = 256
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    def setup(self):
        self.cnn = registry.create(self.encoder, num_classes=0, **dict(self.encoder_options))
        self.image_embed = nn.Dense(self.embed_size, dtype=self.dtype)
        self.embed = nn.Embed(self.vocab_size, self.embed_size, dtype=self.dtype)
        self.cell = LSTMCell(self.hidden_size, dtype=self.dtype)
        self.rnn = nn.RNN(self.cell)
        self.drop = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.vocab_size, dtype=self.dtype)

    def image_features(self, images: jax.Array, train: bool = False) -> jax.Array:
        """The encoder's ``pre_logits`` tap projected to the embedding: ``<f32>[N, E]``."""
        feats = self.cnn(images, train=train, features=("pre_logits",))["pre_logits"]
        return self.image_embed(feats)

    def __call__(self, images: jax.Array, words: jax.Array, train: bool = False) -> jax.Array:
        x_img = self.image_features(images, train)
        x = jnp.concatenate([x_img[:, None], self.embed(words)], axis=1)  # step -1, then S_0 .. S_{L-1}
        x = self.drop(x, deterministic=not train)
        y = self.rnn(x)[:, 1:]  # the output at step -1 predicts nothing (eq. 10)
        y = self.drop(y, deterministic=not train)
        return self.head(y).astype(jnp.float32)

    def start(self, images: jax.Array) -> Any:
        """Decoder carry after reading the image (step -1), inference mode: ``(h, c)`` each ``[N, H]``."""
        x_img = self.image_features(images, False)
        carry = self.cell.initialize_carry(None, x_img.shape)
        carry, _ = self.cell(carry, x_img)
        return carry

    def step(self, carry: Any, tokens: jax.Array) -> tuple[jax.Array, Any]:
        """One decoding step: ``tokens <i32>[M]`` -> ``(log_probs <f32>[M, V], carry)``."""
        carry, y = self.cell(carry, self.embed(tokens))
        return jax.nn.log_softmax(self.head(y).astype(jnp.float32)), carry


def caption_loss(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over non-pad target words (eq. 13, averaged instead of summed):
    ``logits <f32>[N, L, V]``, ``targets <i32>[N, L]`` -> ``(loss, number of words)``."""
    mask = (targets != PAD).astype(jnp.float32)
    per_word = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    count = jnp.maximum(mask.sum(), 1.0)
    return jnp.sum(per_word * mask) / count, mask.sum()


def generate(model: ShowAndTell, variables: Any, images: jax.Array, *, max_len: int, beam_size: int = 1,
             length_penalty: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """Captions for ``images``: ``(tokens <i32>[N, max_len], score <f32>[N])``; greedy when ``beam_size == 1``.

    Jit with ``model``, ``max_len``, ``beam_size`` and ``length_penalty`` static
    (``jax.jit(generate, static_argnums=0, static_argnames=(...))``).
    """
    carry = model.apply(variables, images, method=ShowAndTell.start)
    step_fn = functools.partial(model.apply, variables, method=ShowAndTell.step)
    n = images.shape[0]
    if beam_size == 1:
        return greedy_decode(step_fn, carry, n, bos=BOS, eos=EOS, pad=PAD, max_len=max_len)
    best, score, _ = beam_search(step_fn, carry, n, bos=BOS, eos=EOS, pad=PAD, max_len=max_len,
                                 beam_size=beam_size, length_penalty=length_penalty)
    return best, score
