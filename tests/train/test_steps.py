"""Pure steps on tiny modules: gradients, BatchNorm statistics, dropout keys, aux losses, donation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.nn import batch_norm, sow_aux_logits
from jaxdl.train import TrainState, create_train_state, eval_step, get_loss, train_step
from jaxdl.train.steps import step_keys


class Tiny(nn.Module):
    num_classes: int = 3
    dropout_rate: float = 0.0
    frozen_bn: bool = False
    aux_weight: float = 0.0

    @nn.compact
    def __call__(self, x, train=False, features=None):
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(8)(x)
        x = batch_norm(train, frozen=self.frozen_bn)()(x)
        x = nn.relu(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        if self.aux_weight and (train or self.is_initializing()):
            aux = nn.Dense(self.num_classes, name="aux_head")(x)
            if train:
                sow_aux_logits(self, "aux1", aux, self.aux_weight)
        return nn.Dense(self.num_classes, name="head")(x)


def make_batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.normal(size=(n, 2, 2, 1)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 3, size=n), jnp.int32)}


LOSS = get_loss("cross_entropy")


def new_state(model, lr=0.1):
    return create_train_state(model, optax.sgd(lr), input_shape=(2, 2, 1), seed=0)


def test_train_step_lowers_loss_and_updates_batch_stats():
    state = new_state(Tiny())
    step = jax.jit(functools.partial(train_step, loss_fn=LOSS), donate_argnums=0)
    batch = make_batch()
    stats0 = jax.tree_util.tree_map(np.array, state.batch_stats)
    first = None
    for _ in range(30):
        state, metrics = step(state, batch)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.7 * first
    assert int(state.step) == 30
    assert int(metrics["count"]) == 16
    moved = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), stats0, state.batch_stats)
    assert any(jax.tree_util.tree_leaves(moved)), "running statistics did not update in training"


def test_eval_step_does_not_touch_state_and_masks_padding():
    state = new_state(Tiny())
    batch = make_batch()
    ev = jax.jit(functools.partial(eval_step, loss_fn=LOSS))
    full = ev(state, batch)
    masked = ev(state, {**batch, "mask": jnp.concatenate([jnp.ones(8), jnp.zeros(8)])})
    half = ev(state, {k: v[:8] for k, v in batch.items()})
    assert float(full["count"]) == 16 and float(masked["count"]) == 8
    np.testing.assert_allclose(masked["loss_sum"], half["loss_sum"], rtol=1e-5)


def test_frozen_bn_keeps_running_stats_in_training():
    state = new_state(Tiny(frozen_bn=True))
    stats0 = jax.tree_util.tree_map(np.array, state.batch_stats)
    step = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    state, _ = step(state, make_batch())
    for a, b in zip(jax.tree_util.tree_leaves(stats0), jax.tree_util.tree_leaves(state.batch_stats)):
        np.testing.assert_array_equal(a, b)


def test_dropout_keys_follow_step_and_are_reproducible():
    state = new_state(Tiny(dropout_rate=0.5))
    k0 = step_keys(state)
    k0_again = step_keys(state)
    k1 = step_keys(state.replace(step=state.step + 1))
    np.testing.assert_array_equal(np.asarray(k0[1]), np.asarray(k0_again[1]))
    assert not np.array_equal(np.asarray(k0[1]), np.asarray(k1[1]))
    step = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    a, _ = step(state, make_batch())
    b, _ = step(state, make_batch())
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(x, y)


def test_aux_logits_add_weighted_loss_in_training_only():
    batch = make_batch()
    with_aux = new_state(Tiny(aux_weight=0.3))
    assert "aux_head" in with_aux.params  # created at init even though init runs with train=False
    step = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    _, metrics = step(with_aux, batch)
    variables = with_aux.variables
    _, upd = with_aux.apply_fn(variables, batch["image"], train=True,
                               rngs={"dropout": step_keys(with_aux)[1]}, mutable=["batch_stats", "aux_logits"])
    aux_logits = upd["aux_logits"]["aux1"]["logits"]
    expected = float(metrics["loss"]) + 0.3 * float(jnp.mean(LOSS(aux_logits, batch["label"])))
    np.testing.assert_allclose(float(metrics["total_loss"]), expected, rtol=1e-5)
    assert float(metrics["total_loss"]) > float(metrics["loss"])
    # nothing is sown at inference
    _, upd_eval = with_aux.apply_fn(variables, batch["image"], train=False, mutable=["aux_logits"])
    assert not upd_eval.get("aux_logits")


def test_train_step_is_pure():
    state = new_state(Tiny())
    batch = make_batch()
    step = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    s1, m1 = step(state, batch)
    s2, m2 = step(state, batch)
    assert float(m1["loss"]) == float(m2["loss"])
    assert isinstance(s1, TrainState)
