"""Recurrent cells and layers: Elman RNN, LSTM, GRU; uni/bidirectional, stacked, variable length.

One scan idiom for every recurrent computation in jaxdl: a cell (a ``flax.linen.RNNCellBase``
with the step ``(carry, x_t) -> (carry, y_t)``) is run over time by ``flax.linen.RNN`` (which is
``nn.scan`` over the cell). :class:`Recurrent` (one layer, one or two directions) and
:class:`StackedRecurrent` (layers with dropout between them) are built on it, and so are the
sequence classifiers, the character language model and the caption decoder of
``jaxdl.models``.

Gate layout, the same as ``torch.nn.RNN / LSTM / GRU`` so that weights import one to one
(``jaxdl.models.rnn.params_from_torch``): each cell has two ``Dense`` layers, ``ih`` (input to
hidden, ``kernel: [F, G*H]`` = torch ``weight_ih.T``, ``bias`` = ``bias_ih``) and ``hh``
(hidden to hidden, ``kernel: [H, G*H]`` = ``weight_hh.T``, ``bias`` = ``bias_hh``), with the
gates stacked along the last axis in torch's order:

* Elman (G=1):  ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (Elman 1990, "Finding structure in time").
* LSTM (G=4, order i, f, g, o) (Hochreiter & Schmidhuber 1997; forget gate: Gers, Schmidhuber &
  Cummins 2000)::

      i = sig(x_i + h_i [+ p_i * c])   f = sig(x_f + h_f [+ p_f * c])   g = tanh(x_g + h_g)
      c' = f * c + i * g               o = sig(x_o + h_o [+ p_o * c'])  h' = o * tanh(c')

  with ``x_* = W_i* x + b_i*``, ``h_* = W_h* h + b_h*``; the bracketed peephole terms (Gers &
  Schmidhuber 2000, "Recurrent nets that time and count") only with ``peepholes=True``
  (diagonal peephole weights ``peephole_i, peephole_f, peephole_o: [H]``; torch has no
  peepholes). The forget-gate part of ``ih/bias`` starts at ``forget_bias`` = 1.0 (Gers et al.
  2000 sec. 2; Jozefowicz, Zaremba & Sutskever 2015 sec. 3.1 found +1 closes most of the gap
  to the GRU), so the cell starts by remembering.
* GRU (G=3, order r, z, n), torch's formula (Cho et al. 2014, with the reset gate applied after
  the recurrent matrix product)::

      r = sig(x_r + h_r)   z = sig(x_z + h_z)   n = tanh(x_n + r * h_n)   h' = (1 - z) * n + z * h

Carries: Elman and GRU carry ``h: [N, H]``; the LSTM carries ``(h, c)`` (torch's order of
``(h_n, c_n)``). Carries stay float32 even when ``dtype`` is bfloat16, so long sequences do
not accumulate rounding in the state.

Variable-length batches: ``lengths: <int>[N]`` (or a prefix ``mask: <bool>[N, T]``, padding at
the end). Outputs at padded steps are zero (as torch's ``pad_packed_sequence``), the final carry
of each sequence is the carry at its true last step, and the reverse direction of a
bidirectional layer reads each sequence from its own last true step back to step 0 (not from
the padding). A sequence of length 0 keeps its initial carry.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

__all__ = ["ElmanCell", "LSTMCell", "GRUCell", "CELLS", "make_cell", "Recurrent", "StackedRecurrent",
           "lengths_from_mask", "sequence_mask", "final_hidden"]

Carry = Any


def _stacked_orthogonal(gates: int):
    """Recurrent-kernel init: one orthogonal [H, H] block per gate, stacked to [H, G*H].

    Orthogonal recurrent weights keep the norm of back-propagated errors at first (Saxe et al. 2014;
    Le, Jaitly & Hinton 2015 use identity for ReLU RNNs); one block per gate keeps every gate's
    matrix orthogonal, which one orthogonal [H, G*H] matrix would not.
    """
    base = nn.initializers.orthogonal()

    def init(key, shape, dtype=jnp.float32):
        rows, cols = shape
        if cols != gates * rows:
            return base(key, shape, dtype)
        keys = jax.random.split(key, gates)
        return jnp.concatenate([base(k, (rows, rows), dtype) for k in keys], axis=-1)

    return init


def _gate_bias(gates: int, hidden: int, values: dict[int, float]):
    """Bias init: zeros, with gate block ``g`` set to ``values[g]``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        b = jnp.zeros(shape, dtype)
        for gate, value in values.items():
            b = b.at[gate * hidden:(gate + 1) * hidden].set(value)
        return b

    return init


class _GatedCell(nn.RNNCellBase):
    """Shared fields and the two fused projections ``ih`` and ``hh`` of every cell."""

    hidden_size: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    gates = 1  # overridden per cell

    def _projections(self, x: jax.Array, h: jax.Array, ih_bias_init=nn.initializers.zeros_init()):
        g = self.gates * self.hidden_size
        xi = nn.Dense(g, dtype=self.dtype, param_dtype=self.param_dtype, bias_init=ih_bias_init, name="ih")(x)
        hi = nn.Dense(g, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=_stacked_orthogonal(self.gates), name="hh")(h.astype(self.dtype))
        return xi, hi

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        del rng
        return jnp.zeros((*input_shape[:-1], self.hidden_size), jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return 1


class ElmanCell(_GatedCell):
    """Elman (1990) RNN step: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    ``carry: <f32>[N, H]``, ``x: <f>[N, F]`` -> ``(h', h')``. ``nonlinearity="relu"`` as torch's option.
    """

    nonlinearity: str = "tanh"
    gates = 1

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"Elman RNN nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        xi, hi = self._projections(x, carry)
        act = jnp.tanh if self.nonlinearity == "tanh" else nn.relu
        h = act(xi + hi).astype(carry.dtype)
        return h, h


class LSTMCell(_GatedCell):
    """LSTM step with a forget gate and optional peepholes (equations in the module docstring).

    ``carry: (h, c)`` each ``<f32>[N, H]``, ``x: <f>[N, F]`` -> ``((h', c'), h')``.
    """

    forget_bias: float = 1.0
    peepholes: bool = False
    gates = 4

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array):
        h, c = carry
        H = self.hidden_size
        xi, hi = self._projections(x, h, _gate_bias(4, H, {1: self.forget_bias}))
        i, f, g, o = jnp.split(xi + hi, 4, axis=-1)
        if self.peepholes:
            p = {n: self.param(f"peephole_{n}", nn.initializers.zeros_init(), (H,), self.param_dtype)
                 for n in "ifo"}
            i = i + p["i"] * c
            f = f + p["f"] * c
        c_new = (nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)).astype(c.dtype)
        if self.peepholes:
            o = o + p["o"] * c_new
        h_new = (nn.sigmoid(o) * jnp.tanh(c_new)).astype(h.dtype)
        return (h_new, c_new), h_new

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        zeros = jnp.zeros((*input_shape[:-1], self.hidden_size), jnp.float32)
        return zeros, zeros


class GRUCell(_GatedCell):
    """GRU step, torch's formula (module docstring): ``carry: <f32>[N, H]``, ``x`` -> ``(h', h')``."""

    gates = 3

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        xi, hi = self._projections(x, carry)
        xr, xz, xn = jnp.split(xi, 3, axis=-1)
        hr, hz, hn = jnp.split(hi, 3, axis=-1)
        r = nn.sigmoid(xr + hr)
        z = nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = ((1.0 - z) * n + z * carry).astype(carry.dtype)
        return h, h


CELLS = {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(cell: str, hidden_size: int, *, dtype: Any = jnp.float32, name: str | None = None,
              **options: Any) -> nn.RNNCellBase:
    """The cell called ``cell`` (``"rnn"``, ``"lstm"``, ``"gru"``); ConfigError if unknown.

    ``options`` are cell fields (``forget_bias``, ``peepholes`` for the LSTM, ``nonlinearity`` for
    the Elman RNN); an option another cell has is ignored, so one config can switch cells.
    """
    try:
        cls = CELLS[cell]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown recurrent cell {cell!r}; choose one of: {', '.join(CELLS)}") from None
    if int(hidden_size) < 1:
        raise ConfigError(f"hidden_size must be >= 1, got {hidden_size}")
    known = {f for c in CELLS.values() for f in c.__dataclass_fields__} - {"parent", "name", "hidden_size"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown cell option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    fields = set(cls.__dataclass_fields__)
    kept = {k: v for k, v in options.items() if k in fields}
    return cls(hidden_size=int(hidden_size), dtype=dtype, name=name, **kept)


def sequence_mask(lengths: jax.Array, max_len: int) -> jax.Array:
    """``<bool>[N, T]``: True at steps ``t < lengths[n]``."""
    return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def lengths_from_mask(mask: jax.Array) -> jax.Array:
    """Lengths ``<i32>[N]`` of a prefix mask ``<bool>[N, T]`` (True = real step, padding at the end)."""
    return jnp.sum(jnp.asarray(mask).astype(jnp.int32), axis=-1)


def _where_carry(keep: jax.Array, a: Carry, b: Carry) -> Carry:
    """Per-sequence select between two carries: ``a`` where ``keep[n]``, else ``b``."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(keep.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b)


class Recurrent(nn.Module):
    """One recurrent layer over ``x: <f>[N, T, F]``, forward or both directions.

    Returns ``(carry, y)``: ``y: <f>[N, T, H]`` (``[N, T, 2H]`` bidirectional: forward then
    backward features, as torch) with zeros at padded steps, and the final carry (bidirectional:
    a tuple ``(forward_carry, backward_carry)``; the backward one is its state after reading step
    0). Parameters: ``forward/{ih,hh}`` and ``backward/{ih,hh}``.

    Attributes:
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      hidden_size: H.
      bidirectional: add a backward direction (Schuster & Paliwal 1997).
      cell_options: fields of the cell (``forget_bias``, ``peepholes``, ``nonlinearity``).
      unroll: steps per scan iteration (``nn.scan``'s ``unroll``; speed only).
    """

    cell: str = "lstm"
    hidden_size: int = 128
    bidirectional: bool = False
    cell_options: tuple[tuple[str, Any], ...] | dict = ()
    unroll: int = 1
    dtype: Any = jnp.float32

    def _direction(self, name: str, x, lengths, initial_carry, reverse: bool):
        options = dict(self.cell_options)
        # The cell is created here, so it belongs to this layer under ``name``: parameters are
        # ``forward/{ih,hh}``; nn.RNN (named ``forward_scan``) only scans it and owns no parameters.
        cell = make_cell(self.cell, self.hidden_size, dtype=self.dtype, name=name, **options)
        rnn = nn.RNN(cell, unroll=self.unroll, name=f"{name}_scan")
        if initial_carry is None:
            initial_carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
        if lengths is None:
            return rnn(x, initial_carry=initial_carry, return_carry=True, reverse=reverse, keep_order=True)
        carry, y = rnn(x, initial_carry=initial_carry, seq_lengths=lengths, return_carry=True, reverse=reverse,
                       keep_order=True)
        # nn.RNN picks the carry at index lengths-1: a length-0 sequence keeps its initial carry instead.
        carry = _where_carry(lengths > 0, carry, initial_carry)
        y = jnp.where(sequence_mask(lengths, x.shape[1])[..., None], y, jnp.zeros((), y.dtype))
        return carry, y

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, initial_carry: Carry | None = None):
        if x.ndim != 3:
            raise ConfigError(f"a recurrent layer takes [N, T, F] sequences, got shape {tuple(x.shape)}")
        x = jnp.asarray(x, self.dtype)
        if lengths is not None:
            lengths = jnp.asarray(lengths, jnp.int32)
        if not self.bidirectional:
            return self._direction("forward", x, lengths, initial_carry, reverse=False)
        fwd0, bwd0 = (None, None) if initial_carry is None else initial_carry
        fc, fy = self._direction("forward", x, lengths, fwd0, reverse=False)
        bc, by = self._direction("backward", x, lengths, bwd0, reverse=True)
        return (fc, bc), jnp.concatenate([fy, by], axis=-1)


class StackedRecurrent(nn.Module):
    """``num_layers`` :class:`Recurrent` layers ``layer0 .. layer{L-1}``, dropout between them.

    ``x: <f>[N, T, F]`` -> ``(carries, y)`` with ``y: <f>[N, T, D]`` (D = H, or 2H bidirectional) the
    top layer's outputs and ``carries`` a tuple of each layer's final carry. ``initial_carry`` is
    ``None`` (zeros) or such a tuple (e.g. the carries of the previous chunk in truncated BPTT).
    Dropout (rate ``dropout_rate``, rng stream ``"dropout"``) acts on the outputs of every layer
    but the last, as torch's ``dropout`` argument and Zaremba, Sutskever & Vinyals 2014 (sec. 3:
    non-recurrent connections only).
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    cell_options: tuple[tuple[str, Any], ...] | dict = ()
    unroll: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, mask: jax.Array | None = None,
                 initial_carry: Sequence[Carry] | None = None, train: bool = False):
        if self.num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if mask is not None:
            if lengths is not None:
                raise ConfigError("pass either lengths or mask to a recurrent layer, not both")
            lengths = lengths_from_mask(mask)
        if initial_carry is not None and len(initial_carry) != self.num_layers:
            raise ConfigError(f"initial_carry has {len(initial_carry)} entries for {self.num_layers} layers")
        carries = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            carry, x = Recurrent(self.cell, self.hidden_size, self.bidirectional, self.cell_options, self.unroll,
                                 self.dtype, name=f"layer{layer}")(
                x, lengths, None if initial_carry is None else initial_carry[layer])
            carries.append(carry)
        return tuple(carries), x


def final_hidden(carry: Carry, cell: str, bidirectional: bool) -> jax.Array:
    """The hidden state ``h: [N, H]`` (``[N, 2H]`` bidirectional) of one layer's final carry."""

    def h_of(c):
        return c[0] if cell == "lstm" else c

    if bidirectional:
        return jnp.concatenate([h_of(carry[0]), h_of(carry[1])], axis=-1)
    return h_of(carry)

