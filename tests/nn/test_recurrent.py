"""Recurrent cells and layers: cell equations against hand-written numpy, masking, bidirectionality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.nn.recurrent import GRUCell, ElmanCell, LSTMCell, Recurrent, StackedRecurrent, make_cell, sequence_mask

F, H, N, T = 3, 4, 2, 6


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _random_params(variables, seed=0):
    """Replace every parameter by a random normal one (0.5 std) so no gate sits at its init value."""
    leaves, tree = jax.tree_util.tree_flatten(variables)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(tree, [jnp.asarray(rng.normal(0, 0.5, l.shape), jnp.float32) for l in leaves])


def _dense(p, x):
    return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def np_elman(p, h, x):
    return np.tanh(_dense(p["ih"], x) + _dense(p["hh"], h))


def np_lstm(p, h, c, x, peep=None):
    a = _dense(p["ih"], x) + _dense(p["hh"], h)
    ai, af, ag, ao = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    if peep is not None:
        ai, af = ai + peep["i"] * c, af + peep["f"] * c
    c2 = sigmoid(af) * c + sigmoid(ai) * np.tanh(ag)
    if peep is not None:
        ao = ao + peep["o"] * c2
    return sigmoid(ao) * np.tanh(c2), c2


def np_gru(p, h, x):
    a, b = _dense(p["ih"], x), _dense(p["hh"], h)
    r = sigmoid(a[:, :H] + b[:, :H])
    z = sigmoid(a[:, H:2 * H] + b[:, H:2 * H])
    n = np.tanh(a[:, 2 * H:] + r * b[:, 2 * H:])
    return (1 - z) * n + z * h


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(1)
    return rng.normal(size=(N, F)).astype(np.float32), rng.normal(size=(N, H)).astype(np.float32), \
        rng.normal(size=(N, H)).astype(np.float32)


def test_elman_cell_equation(inputs):
    x, h, _ = inputs
    cell = ElmanCell(H)
    p = _random_params(cell.init(jax.random.key(0), jnp.asarray(h), jnp.asarray(x)))["params"]
    new, y = cell.apply({"params": p}, jnp.asarray(h), jnp.asarray(x))
    np.testing.assert_allclose(new, np_elman(p, h, x), atol=1e-6)
    np.testing.assert_array_equal(new, y)


@pytest.mark.parametrize("peepholes", [False, True])
def test_lstm_cell_equation(inputs, peepholes):
    x, h, c = inputs
    cell = LSTMCell(H, peepholes=peepholes)
    p = _random_params(cell.init(jax.random.key(0), (jnp.asarray(h), jnp.asarray(c)), jnp.asarray(x)))["params"]
    (h2, c2), y = cell.apply({"params": p}, (jnp.asarray(h), jnp.asarray(c)), jnp.asarray(x))
    peep = {g: np.asarray(p[f"peephole_{g}"]) for g in "ifo"} if peepholes else None
    want_h, want_c = np_lstm(p, h, c, x, peep)
    np.testing.assert_allclose(c2, want_c, atol=1e-6)
    np.testing.assert_allclose(h2, want_h, atol=1e-6)
    np.testing.assert_array_equal(h2, y)
    if peepholes:  # the peepholes really enter the equations
        assert np.abs(want_h - np_lstm(p, h, c, x, None)[0]).max() > 1e-3


def test_gru_cell_equation(inputs):
    x, h, _ = inputs
    cell = GRUCell(H)
    p = _random_params(cell.init(jax.random.key(0), jnp.asarray(h), jnp.asarray(x)))["params"]
    new, _ = cell.apply({"params": p}, jnp.asarray(h), jnp.asarray(x))
    np.testing.assert_allclose(new, np_gru(p, h, x), atol=1e-6)


def test_lstm_forget_bias_and_orthogonal_recurrent_init():
    cell = LSTMCell(H, forget_bias=1.0)
    z = jnp.zeros((1, H))
    p = cell.init(jax.random.key(0), (z, z), jnp.zeros((1, F)))["params"]
    b = np.asarray(p["ih"]["bias"])
    np.testing.assert_array_equal(b[H:2 * H], 1.0)  # forget gate block (order i, f, g, o)
    np.testing.assert_array_equal(np.delete(b, np.s_[H:2 * H]), 0.0)
    np.testing.assert_array_equal(p["hh"]["bias"], 0.0)
    w = np.asarray(p["hh"]["kernel"])
    for g in range(4):
        block = w[:, g * H:(g + 1) * H]
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)


def _unrolled(cell_name, p, xs, h0, reverse=False):
    """Reference loop in numpy over one sequence batch, returns (outputs [N, T, H], final state)."""
    steps = range(xs.shape[1] - 1, -1, -1) if reverse else range(xs.shape[1])
    h, c = h0, np.zeros_like(h0)
    out = np.zeros((xs.shape[0], xs.shape[1], H), np.float32)
    for t in steps:
        if cell_name == "lstm":
            h, c = np_lstm(p, h, c, xs[:, t])
        elif cell_name == "gru":
            h = np_gru(p, h, xs[:, t])
        else:
            h = np_elman(p, h, xs[:, t])
        out[:, t] = h
    return out, (h, c)


@pytest.fixture(scope="module")
def bilayer():
    """A bidirectional GRU layer with random weights, its inputs and lengths (shared compile)."""
    layer = Recurrent("gru", H, bidirectional=True)
    xs = np.random.default_rng(2).normal(size=(3, T, F)).astype(np.float32)
    lengths = np.array([T, 3, 1])
    v = _random_params(layer.init(jax.random.key(0), jnp.asarray(xs), jnp.asarray(lengths)))
    apply = jax.jit(layer.apply)
    return layer, v, xs, lengths, apply


def test_bidirectional_layer_matches_two_numpy_loops_with_lengths(bilayer):
    _, v, xs, lengths, apply = bilayer
    (fc, bc), y = apply(v, jnp.asarray(xs), jnp.asarray(lengths))
    assert y.shape == (3, T, 2 * H)
    p = v["params"]
    h0 = np.zeros((1, H), np.float32)
    for n, length in enumerate(lengths):
        seq = xs[n:n + 1, :length]
        fo, (fh, _) = _unrolled("gru", p["forward"], seq, h0)
        bo, (bh, _) = _unrolled("gru", p["backward"], seq, h0, reverse=True)
        np.testing.assert_allclose(y[n, :length, :H], fo[0], atol=1e-5)
        np.testing.assert_allclose(y[n, :length, H:], bo[0], atol=1e-5)  # reverse reads from the true last step
        np.testing.assert_array_equal(y[n, length:], 0.0)  # padding gives zeros
        np.testing.assert_allclose(fc[n], fh[0], atol=1e-5)  # carry at the true last step
        np.testing.assert_allclose(bc[n], bh[0], atol=1e-5)  # backward carry after reading step 0


def test_padding_content_does_not_matter(bilayer):
    _, v, xs, lengths, apply = bilayer
    noisy = xs.copy()
    mask = np.asarray(sequence_mask(jnp.asarray(lengths), T))
    noisy[~mask] = 1e3
    a = apply(v, jnp.asarray(xs), jnp.asarray(lengths))
    b = apply(v, jnp.asarray(noisy), jnp.asarray(lengths))
    for u, w in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(u, w)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_stack_with_mask_equals_lengths_and_zero_length_keeps_initial_carry(cell):
    stack = StackedRecurrent(cell, H, num_layers=2, dropout_rate=0.5)
    xs = jnp.asarray(np.random.default_rng(3).normal(size=(3, T, F)), jnp.float32)
    lengths = jnp.array([T, 2, 0])
    v = jax.jit(lambda k, x: stack.init(k, x, lengths=lengths))(jax.random.key(0), xs)
    init = tuple(make_cell(cell, H).initialize_carry(None, (3, F)) for _ in range(2))
    init = jax.tree_util.tree_map(lambda z: z + 0.25, init)

    @jax.jit
    def both(v, xs, lengths, init):
        return (stack.apply(v, xs, lengths=lengths, initial_carry=init),
                stack.apply(v, xs, mask=sequence_mask(lengths, T), initial_carry=init))

    (c1, y1), (c2, y2) = both(v, xs, lengths, init)
    for u, w in zip(jax.tree_util.tree_leaves((c1, y1)), jax.tree_util.tree_leaves((c2, y2))):
        np.testing.assert_array_equal(u, w)
    for layer in range(2):  # length 0: the carry is the one we passed in
        for leaf in jax.tree_util.tree_leaves(c1[layer]):
            np.testing.assert_array_equal(leaf[2], 0.25)
    assert len(c1) == 2 and y1.shape == (3, T, H)


def test_dropout_only_in_training_and_between_layers():
    stack = StackedRecurrent("gru", H, num_layers=2, dropout_rate=0.5)
    xs = jnp.ones((2, T, F))
    one = StackedRecurrent("gru", H, num_layers=1, dropout_rate=0.5)

    @jax.jit
    def run(xs):
        v = stack.init(jax.random.key(0), xs)
        v1 = one.init(jax.random.key(0), xs)  # one layer: nothing between layers, no dropout at all
        train = {"train": True, "rngs": {"dropout": jax.random.key(1)}}
        return (stack.apply(v, xs)[1], stack.apply(v, xs, **train)[1], one.apply(v1, xs)[1],
                one.apply(v1, xs, **train)[1])

    a, b, a1, b1 = run(xs)
    assert np.abs(np.asarray(a - b)).max() > 1e-4
    np.testing.assert_array_equal(a1, b1)


def test_bad_configuration_errors():
    with pytest.raises(ConfigError, match="unknown recurrent cell"):
        make_cell("transformer", 4)
    with pytest.raises(ConfigError, match="unknown cell option.*forget_bais"):
        make_cell("lstm", 4, forget_bais=1.0)
    assert make_cell("gru", 4, peepholes=True).hidden_size == 4  # another cell's option is ignored
    with pytest.raises(ConfigError, match="num_layers"):
        StackedRecurrent("lstm", 4, num_layers=0).init(jax.random.key(0), jnp.ones((1, 2, 3)))
    with pytest.raises(ConfigError, match=r"\[N, T, F\]"):
        Recurrent("lstm", 4).init(jax.random.key(0), jnp.ones((2, 3)))
