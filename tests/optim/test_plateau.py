"""Reduce-on-plateau: the rule epoch by epoch, its effect on updates, jit and checkpoint round-trips."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.errors import ConfigError
from jaxdl.optim import Plateau, current_learning_rate, optimizer, plateau_update, schedule

PARAMS = {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}


def rates(values, jit=False, accumulate_steps=1, **plateau):
    """Learning rate after each epoch whose validation loss is `values[i]`."""
    tx = optimizer("momentum", schedule("plateau", learning_rate=1.0, **plateau), clip_norm=1.0,
                   weight_decay=1e-4, accumulate_steps=accumulate_steps)
    state = tx.init(PARAMS)
    step = jax.jit(plateau_update) if jit else plateau_update
    out = []
    for v in values:
        state = step(state, v)
        out.append(current_learning_rate(state))
    return out


@pytest.mark.parametrize("jit", [False, True])
def test_unchanged_while_improving(jit):
    assert rates([5.0, 4.0, 3.0, 2.5, 2.0, 1.0], jit=jit, patience=0) == [1.0] * 6


@pytest.mark.parametrize("jit", [False, True])
def test_reduced_once_patience_is_exceeded(jit):
    # patience=2: bad epochs 1 and 2 are tolerated, the 3rd cuts the rate; the count then restarts.
    got = rates([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], jit=jit, patience=2, factor=0.5)
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25])


def test_threshold_is_relative():
    # best = 1.0, threshold = 0.1: 0.95 is not 10 % better (bad epoch), 0.85 is (reset).
    got = rates([1.0, 0.95, 0.85, 0.84, 0.80], patience=1, threshold=0.1, factor=0.5)
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, 1.0, 0.5])


def test_cooldown_is_honoured():
    # patience=0: every bad epoch cuts, except during the 2 cooldown epochs after a cut.
    got = rates([1.0] * 8, patience=0, cooldown=2, factor=0.5)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125])


def test_floor_at_min_lr():
    got = rates([1.0] * 6, patience=0, factor=0.1, min_lr=0.005)
    np.testing.assert_allclose(got, [1.0, 0.1, 0.01, 0.005, 0.005, 0.005], rtol=1e-6)


def test_nan_loss_counts_as_bad_epoch():
    np.testing.assert_allclose(rates([1.0, float("nan"), float("nan")], patience=1, factor=0.5),
                               [1.0, 1.0, 0.5])


def test_works_through_multisteps():
    np.testing.assert_allclose(rates([1.0, 1.0], patience=0, factor=0.5, accumulate_steps=3), [1.0, 0.5])


def test_updates_use_the_reduced_rate():
    tx = optimizer("sgd", schedule("plateau", learning_rate=0.2, patience=0, factor=0.5))
    state = tx.init(PARAMS)
    grads = {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.full(2, -1.0)}
    u, state = tx.update(grads, state)
    np.testing.assert_allclose(u["kernel"], -0.6)
    state = plateau_update(plateau_update(state, 2.0), 2.0)  # second epoch does not improve
    u, state = jax.jit(tx.update)(grads, state)
    np.testing.assert_allclose(u["kernel"], -0.3)
    np.testing.assert_allclose(u["bias"], 0.1)
    # update itself never changes the plateau state: only plateau_update does
    assert current_learning_rate(state) == pytest.approx(0.1)


def test_no_plateau_part_returns_state_unchanged():
    tx = optimizer("adam", 1e-3, accumulate_steps=2)
    state = tx.init(PARAMS)
    after = plateau_update(state, 1.0)
    assert jax.tree.structure(after) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(state)):
        assert a is b


def continue_epochs(tx_state, values):
    out = []
    for v in values:
        tx_state = plateau_update(tx_state, v)
        out.append(current_learning_rate(tx_state))
    return out


@pytest.mark.parametrize("how", ["numpy_leaves", "msgpack"])
def test_state_survives_a_checkpoint_round_trip(how):
    tx = optimizer("nesterov", schedule("plateau", learning_rate=1.0, patience=1, factor=0.5, cooldown=1),
                   weight_decay=1e-4)
    state = tx.init(PARAMS)
    for v in [1.0, 1.0, 1.0]:  # a cut at epoch 2, cooldown running
        state = plateau_update(state, v)
    _, state = tx.update(PARAMS, state, PARAMS)
    if how == "numpy_leaves":
        leaves, treedef = jax.tree.flatten(state)
        restored = jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves])
    else:
        fresh = tx.init(PARAMS)  # the target a resumed run builds
        restored = flax.serialization.from_bytes(fresh, flax.serialization.to_bytes(state))
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    later = [1.0, 1.0, 0.5, 0.5, 0.5]
    assert continue_epochs(restored, later) == continue_epochs(state, later)
    assert current_learning_rate(restored) == 0.5


@pytest.mark.parametrize("kw", [{"factor": 0.0}, {"factor": 1.0}, {"patience": 1.5}, {"cooldown": -1},
                                {"threshold": 1.0}, {"min_lr": 2.0}, {"learning_rate": -1.0}])
def test_bad_settings_raise_config_error(kw):
    settings = {"learning_rate": 1.0, **kw}
    with pytest.raises(ConfigError, match=next(iter(kw))):
        Plateau(**settings)


def test_plateau_object_is_accepted_directly():
    tx = optimizer("sgd", Plateau(learning_rate=0.3))
    assert current_learning_rate(tx.init(PARAMS)) == pytest.approx(0.3)
    assert isinstance(tx, optax.GradientTransformation)
