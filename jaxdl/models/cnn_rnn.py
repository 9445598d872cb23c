"""CNN + RNN over image sequences: a zoo CNN reads every frame, a recurrent stack reads the features.

The long-term recurrent convolutional network pattern (Donahue et al. 2015, "Long-term recurrent
convolutional networks for visual recognition and description", sec. 3, the "LRCN" for activity
recognition): per-frame CNN features (here any registered model's ``pre_logits`` tap) are the
inputs of an LSTM, and the final hidden state is classified. The CNN weights are shared across
frames (the frames are folded into the batch axis for one CNN call).

``frames: <f32>[N, T, H, W, C]`` -> ``<f32>[N, num_classes]``; ``lengths: <int>[N]`` for
sequences of different lengths (padded frames are ignored by the recurrent stack).
Parameters: ``cnn/...``, ``rnn/layer{l}/forward/{ih,hh}``, ``head``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models import registry
from jaxdl.nn.recurrent import StackedRecurrent, final_hidden

__all__ = ["CNNRNN"]


class CNNRNN(nn.Module):
    """Per-frame CNN (``encoder``'s ``pre_logits``) -> recurrent stack -> ``head`` on the final hidden state."""

    num_classes: int
    encoder: str = "lenet5"
    encoder_options: tuple[tuple[str, Any], ...] = ()
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    def setup(self):
        self.cnn = registry.create(self.encoder, num_classes=0, dtype=self.dtype, **dict(self.encoder_options))
        self.rnn = StackedRecurrent(self.cell, self.hidden_size, self.num_layers, False, self.dropout_rate,
                                    dtype=self.dtype)
        self.drop = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.num_classes, dtype=self.dtype)

    def __call__(self, frames: jax.Array, train: bool = False, lengths: jax.Array | None = None) -> jax.Array:
        if frames.ndim != 5:
            raise ConfigError(f"a CNN-RNN takes image sequences [N, T, H, W, C], got shape {tuple(frames.shape)}")
        n, t = frames.shape[:2]
        feats = self.cnn(frames.reshape((n * t, *frames.shape[2:])), train=train,
                         features=("pre_logits",))["pre_logits"]
        carries, _ = self.rnn(feats.reshape((n, t, -1)), lengths=lengths, train=train)
        h = final_hidden(carries[-1], self.cell, False)
        return self.head(self.drop(h, deterministic=not train))
