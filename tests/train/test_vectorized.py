"""vmapped ensembles, 10-crop TTA and per-example gradients equal their loops."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models, optim
from jaxdl.train import create_train_state, get_loss, predict_step, train_step
from jaxdl.errors import ConfigError
from jaxdl.train.vectorized import (create_ensemble_state, ensemble_probabilities, ensemble_strategy,
                                    ensemble_train_step, member,
                                    per_example_grads, grad_norm_stats, tta_probabilities, ten_crop)

LOSS = get_loss("cross_entropy")
SHAPE = (6, 6, 1)


def tree_close(a, b, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5)


@pytest.fixture(scope="module")
def setup():
    model = models.create("mlp", num_classes=5, hidden_sizes=(8,), batch_norm=True, dropout_rate=0.2)
    tx = optim.optimizer("sgd", 0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(7, *SHAPE)).astype(np.float32),
             "label": rng.integers(0, 5, size=7).astype(np.int32)}
    return model, tx, batch


@pytest.mark.parametrize("strategy", ["vmap", "unroll"])
def test_ensemble_step_equals_separate_steps(setup, strategy):
    model, tx, batch = setup
    seeds = (0, 1, 2)
    states = create_ensemble_state(model, tx, input_shape=SHAPE, seeds=seeds)
    step = jax.jit(functools.partial(ensemble_train_step, loss_fn=LOSS, strategy=strategy))
    single = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    for _ in range(2):
        states, metrics = step(states, batch)
    for k, seed in enumerate(seeds):
        ref = create_train_state(model, tx, input_shape=SHAPE, seed=seed)
        assert not np.allclose(jax.tree_util.tree_leaves(ref.params)[0], jax.tree_util.tree_leaves(member(states, k).params)[0])
        for _ in range(2):
            ref, ref_metrics = single(ref, batch)
        tree_close(member(states, k).params, ref.params)
        tree_close(member(states, k).batch_stats, ref.batch_stats)
        np.testing.assert_allclose(metrics["loss"][k], ref_metrics["loss"], rtol=1e-5)
    probs = jax.jit(functools.partial(ensemble_probabilities, strategy=strategy))(states, batch["image"])
    predict = jax.jit(predict_step)
    manual = np.mean([jax.nn.softmax(predict(member(states, k), batch["image"])) for k in range(3)], axis=0)
    np.testing.assert_allclose(probs, manual, atol=1e-6)
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, rtol=1e-5)


def test_ten_crop_and_tta_equal_a_loop(setup):
    images = jnp.arange(2 * 5 * 6 * 1, dtype=jnp.float32).reshape(2, 5, 6, 1)
    crops = ten_crop(images, (3, 4))
    assert crops.shape == (10, 2, 3, 4, 1)
    np.testing.assert_array_equal(crops[0], images[:, 0:3, 0:4])
    np.testing.assert_array_equal(crops[3], images[:, 2:5, 2:6])
    np.testing.assert_array_equal(crops[4], images[:, 1:4, 1:5])
    np.testing.assert_array_equal(crops[9], images[:, 1:4, 1:5][:, :, ::-1])
    model, tx, batch = setup
    state = create_train_state(models.create("mlp", num_classes=5, hidden_sizes=(8,)), tx, input_shape=(4, 4, 1))
    big = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6, 6, 1)), jnp.float32)
    got = jax.jit(functools.partial(tta_probabilities, size=(4, 4)))(state, big)
    predict = jax.jit(predict_step)
    loop = np.mean([jax.nn.softmax(predict(state, c)) for c in ten_crop(big, (4, 4))], axis=0)
    np.testing.assert_allclose(got, loop, atol=1e-6)


def test_per_example_grads_equal_a_loop(setup):
    model, tx, batch = setup
    state = create_train_state(model, tx, input_shape=SHAPE, seed=3)
    grads = jax.jit(functools.partial(per_example_grads, loss_fn=LOSS))(state, batch)

    @jax.jit
    def one(image, label):  # the gradient on a batch of one example
        def loss(params):
            logits = state.apply_fn({**state.variables, "params": params}, image, train=False)
            return LOSS(logits, label)[0]
        return jax.grad(loss)(state.params)

    norms = []
    for i in range(len(batch["label"])):
        ref = one(batch["image"][i:i + 1], batch["label"][i:i + 1])
        tree_close(jax.tree_util.tree_map(lambda g: g[i], grads), ref)
        norms.append(np.sqrt(sum(float(np.sum(np.asarray(g) ** 2)) for g in jax.tree_util.tree_leaves(ref))))
    stats = grad_norm_stats(grads)
    np.testing.assert_allclose(stats["norms"], norms, rtol=1e-5)
    assert float(stats["max"]) == pytest.approx(max(norms), rel=1e-5)


def test_ensemble_strategy_default_and_bad_name():
    assert ensemble_strategy() == ("unroll" if jax.default_backend() == "cpu" else "vmap")
    with pytest.raises(ConfigError, match="vmap, unroll"):
        ensemble_strategy("pmap")
