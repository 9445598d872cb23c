"""Recurrent models: sequence classifiers (Elman RNN, LSTM, GRU), a character language model, and
the weight importer from torch ``nn.RNN / nn.LSTM / nn.GRU`` state dicts.

All are built on :class:`jaxdl.nn.recurrent.StackedRecurrent` (``nn.RNN`` over a cell: the one scan
idiom of jaxdl); the cell equations and gate layouts are in :mod:`jaxdl.nn.recurrent`.

Sequence classifiers read an image as a sequence of its rows, so they train with the image
pipeline of ``jaxdl train``: ``x: <f32>[N, H, W, C]`` becomes ``H`` steps of ``W*C`` features
(sequential Fashion-MNIST: 28 steps of 28 pixels; the row-by-row task of Le, Jaitly & Hinton 2015
sec. 4 reads pixels one at a time, ours reads one row per step as in most course material).
The classifier's ``pre_logits`` is the top layer's final hidden state (forward and backward
concatenated when bidirectional), followed by the ``head``.

    >>> from jaxdl import models
    >>> model = models.create("lstm_classifier", hidden_size=128)       # doctest: +SKIP

Registered: ``rnn_classifier`` (Elman 1990), ``lstm_classifier`` (Hochreiter & Schmidhuber 1997,
forget gate of Gers et al. 2000), ``gru_classifier`` (Cho et al. 2014), ``bilstm_classifier``
(Schuster & Paliwal 1997 / Graves & Schmidhuber 2005).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import FeatureTaps
from jaxdl.nn.recurrent import CELLS, StackedRecurrent, final_hidden

__all__ = ["SequenceClassifier", "SequenceTagger", "CharLanguageModel", "sample_tokens", "params_from_torch", "GATES"]

# Gates per cell: torch stacks this many [H, *] blocks in weight_ih / weight_hh.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class SequenceClassifier(nn.Module):
    """Recurrent classifier over the rows of an image (or any ``[N, T, F]`` sequence).

    ``x: <f32>[N, H, W, C]`` (read as ``T = H`` steps of ``W*C`` features) or ``<f32>[N, T, F]``
    -> ``<f32>[N, num_classes]``. ``lengths: <int>[N]`` (optional) marks padded sequences.

    Attributes:
      cell: ``"rnn"`` (tanh Elman), ``"lstm"`` or ``"gru"``.
      hidden_size, num_layers, bidirectional: the recurrent stack.
      dropout_rate: between recurrent layers and before the head (rng stream ``"dropout"``).
      forget_bias, peepholes: LSTM options (ignored by the other cells).

    Taps: ``sequence`` (top layer outputs ``[N, T, D]``), ``pre_logits`` (final hidden ``[N, D]``),
    ``logits``. Parameters: ``rnn/layer{l}/{forward,backward}/{ih,hh}/{kernel,bias}``, ``head``.
    """

    num_classes: int = 10
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    forget_bias: float = 1.0
    peepholes: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: Any = None, lengths: jax.Array | None = None):
        if self.cell not in CELLS:
            raise ConfigError(f"unknown recurrent cell {self.cell!r}; choose one of: {', '.join(CELLS)}")
        if x.ndim == 4:  # image rows as time steps
            x = x.reshape((x.shape[0], x.shape[1], -1))
        elif x.ndim != 3:
            raise ConfigError(f"a sequence classifier takes [N, H, W, C] images or [N, T, F] sequences, "
                              f"got shape {tuple(x.shape)}")
        taps = FeatureTaps(features, valid=("sequence", "pre_logits", "logits"))
        options = (("forget_bias", self.forget_bias), ("peepholes", self.peepholes))
        carries, y = StackedRecurrent(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                      self.dropout_rate, options, dtype=self.dtype, name="rnn")(
            jnp.asarray(x, self.dtype), lengths=lengths, train=train)
        if taps.add("sequence", y):
            return taps.result
        h = final_hidden(carries[-1], self.cell, self.bidirectional).astype(self.dtype)
        if taps.add("pre_logits", h):
            return taps.result
        if self.num_classes == 0:
            return taps.finish(h)
        if self.dropout_rate > 0:
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return taps.finish(nn.Dense(self.num_classes, dtype=self.dtype, name="head")(h))


class SequenceTagger(nn.Module):
    """One output per step: recurrent stack -> ``head`` applied at every step.

    ``x: <f32>[N, T, F]`` -> ``<f32>[N, T, num_classes]`` (the copy task's per-step symbols; with
    ``num_classes=1`` a per-step regression). Fields as :class:`SequenceClassifier`.
    """

    num_classes: int
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, lengths: jax.Array | None = None) -> jax.Array:
        _, y = StackedRecurrent(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                self.dropout_rate, dtype=self.dtype, name="rnn")(
            jnp.asarray(x, self.dtype), lengths=lengths, train=train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(y)


class CharLanguageModel(nn.Module):
    """Character-level language model: embedding -> recurrent stack -> ``head`` over the vocabulary.

    ``tokens: <i32>[N, T]`` -> ``(logits <f32>[N, T, vocab_size], carries)``; ``carry`` is the
    previous chunk's ``carries`` (truncated BPTT, sampling) or ``None`` for zeros. Graves 2013,
    "Generating sequences with recurrent neural networks", sec. 3 (text prediction).
    """

    vocab_size: int
    cell: str = "lstm"
    embed_size: int = 64
    hidden_size: int = 256
    num_layers: int = 2
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, carry: Any = None, train: bool = False):
        x = nn.Embed(self.vocab_size, self.embed_size, dtype=self.dtype, name="embed")(tokens)
        carries, y = StackedRecurrent(self.cell, self.hidden_size, self.num_layers, False, self.dropout_rate,
                                      dtype=self.dtype, name="rnn")(x, initial_carry=carry, train=train)
        if self.dropout_rate > 0:
            y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        return nn.Dense(self.vocab_size, dtype=self.dtype, name="head")(y).astype(jnp.float32), carries


def sample_tokens(model: CharLanguageModel, params: Any, prime: jax.Array, steps: int, key: jax.Array,
                  temperature: float = 1.0) -> jax.Array:
    """Sample ``steps`` tokens after ``prime: <i32>[P]`` (P >= 1): ``-> <i32>[steps]``.

    Each next token is drawn from ``softmax(logits / temperature)``; ``temperature=0`` takes the
    argmax (greedy). Lower temperatures give likelier, more repetitive text (Graves 2013 sec. 3.2
    samples at 1; char-rnn demos commonly use 0.5 - 1). Jit-able with ``steps`` static: the prime is
    read in one pass, then one ``model.apply`` per generated token inside ``lax.scan``.
    """
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    variables = {"params": params}
    logits, carry = model.apply(variables, prime[None, :])
    last = logits[0, -1]

    def pick(logits, k):
        if temperature == 0:
            return jnp.argmax(logits).astype(jnp.int32)
        return jax.random.categorical(k, logits / temperature).astype(jnp.int32)

    def step(state, k):
        carry, logits = state
        token = pick(logits, k)
        out, carry = model.apply(variables, token[None, None], carry)
        return (carry, out[0, -1]), token

    _, tokens = jax.lax.scan(step, (carry, last), jax.random.split(key, steps))
    return tokens


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch itself is not imported here
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float32)


def params_from_torch(state_dict: Mapping[str, Any], cell: str, *, num_layers: int = 1,
                      bidirectional: bool = False, prefix: str = "") -> dict[str, Any]:
    """Parameters of a :class:`~jaxdl.nn.recurrent.StackedRecurrent` from a torch RNN/LSTM/GRU state dict.

    ``state_dict`` maps torch names (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
    ``..._reverse`` for the backward direction, optionally under ``prefix``, e.g. ``"rnn."``) to
    tensors or arrays. The gate order of torch is jaxdl's, so each weight is only transposed:
    ``ih/kernel = weight_ih.T`` (``[F, G*H]``), ``ih/bias = bias_ih``, same for ``hh``.

    Returns ``{"layer0": {"forward": {"ih": ..., "hh": ...}, "backward": ...}, ...}``, to put under
    the stack's name (``params["rnn"] = ...`` for the models here). Raises ConfigError for a
    missing key, a shape that does not fit the cell, or a torch feature jaxdl does not have
    (``proj_size``, ``bias=False``).
    """
    if cell not in GATES:
        raise ConfigError(f"unknown recurrent cell {cell!r}; choose one of: {', '.join(GATES)}")
    if any(k.startswith(prefix) and "weight_hr_l" in k for k in state_dict):
        raise ConfigError("the torch LSTM has proj_size > 0 (weight_hr_l* keys); jaxdl's LSTM has no projection")
    gates = GATES[cell]
    out: dict[str, Any] = {}
    for layer in range(num_layers):
        directions = {}
        for direction, suffix in (("forward", ""), ("backward", "_reverse"))[: 2 if bidirectional else 1]:
            part = {}
            for proj in ("ih", "hh"):
                names = {kind: f"{prefix}{kind}_{proj}_l{layer}{suffix}" for kind in ("weight", "bias")}
                missing = [n for n in names.values() if n not in state_dict]
                if missing:
                    raise ConfigError(f"torch state dict has no {', '.join(missing)} (needed for layer {layer} "
                                      f"{direction}); check cell, num_layers, bidirectional and prefix "
                                      f"(keys present: {', '.join(sorted(state_dict)[:8])} ...)")
                weight, bias = _as_numpy(state_dict[names["weight"]]), _as_numpy(state_dict[names["bias"]])
                if weight.ndim != 2 or weight.shape[0] % gates or bias.shape != (weight.shape[0],):
                    raise ConfigError(f"{names['weight']} has shape {weight.shape} and {names['bias']} "
                                      f"{bias.shape}; a torch {cell.upper()} has [{gates}*H, F] and [{gates}*H]")
                part[proj] = {"kernel": jnp.asarray(weight.T), "bias": jnp.asarray(bias)}
            directions[direction] = part
        out[f"layer{layer}"] = directions
    return out


_SMOKE = {"hidden_size": 8}
_PAPERS = {
    "rnn": "Elman 1990, 'Finding structure in time' (tanh simple recurrent network)",
    "lstm": "Hochreiter & Schmidhuber 1997, 'Long short-term memory'; forget gate: Gers, Schmidhuber & "
            "Cummins 2000, 'Learning to forget'",
    "gru": "Cho et al. 2014, 'Learning phrase representations using RNN encoder-decoder', sec. 2.3 "
           "(torch's variant: reset gate after the recurrent product)",
}

# Parameter counts at the defaults (28 features, hidden 128, 10 classes) are torch's for
# nn.{RNN,LSTM,GRU}(28, 128[, bidirectional=True]) + nn.Linear(D, 10): G*H*(F + H) + 2*G*H per
# direction (torch's two biases), e.g. LSTM 4*128*156 + 1,024 + 1,290 = 82,186.
_COUNTS = {"rnn_classifier": 21514, "lstm_classifier": 82186, "gru_classifier": 61962, "bilstm_classifier": 164362}

for _name, _cell, _bi in (("rnn_classifier", "rnn", False), ("lstm_classifier", "lstm", False),
                          ("gru_classifier", "gru", False), ("bilstm_classifier", "lstm", True)):
    register(
        _name,
        functools.partial(SequenceClassifier, cell=_cell, bidirectional=_bi),
        input_shape=(28, 28, 1),
        num_classes=10,
        family="rnn",
        paper=_PAPERS[_cell] + ("; bidirectional: Schuster & Paliwal 1997" if _bi else ""),
        description=f"{'bidirectional ' if _bi else ''}{_cell.upper()} over image rows "
                    f"(28 steps x 28 features for Fashion-MNIST), hidden 128, final hidden state -> head",
        num_params=_COUNTS[_name],
        params_reference=f"torch nn.{_cell.upper()}(28, 128{', bidirectional=True' if _bi else ''}) + nn.Linear",
        params_exact=True,
        smoke_input_shape=(6, 5, 1),
        smoke_overrides=_SMOKE,
        fixed_input=False,
    )
del _name, _cell, _bi
