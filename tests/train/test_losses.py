import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.train import (binary_cross_entropy, get_loss, mean_squared_error, multiclass_hinge,
                         softmax_cross_entropy, topk_correct)

rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(6, 4)).astype(np.float32)
LABELS = np.array([0, 1, 2, 3, 1, 2], np.int32)


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_cross_entropy_matches_numpy():
    expected = -np_log_softmax(LOGITS)[np.arange(6), LABELS]
    np.testing.assert_allclose(softmax_cross_entropy(LOGITS, LABELS), expected, rtol=1e-5)


def test_label_smoothing_matches_numpy():
    eps, k = 0.1, LOGITS.shape[1]
    target = np.full((6, k), eps / k)
    target[np.arange(6), LABELS] += 1 - eps
    expected = -(target * np_log_softmax(LOGITS)).sum(-1)
    np.testing.assert_allclose(softmax_cross_entropy(LOGITS, LABELS, label_smoothing=eps), expected, rtol=1e-5)


def test_bce_multi_and_single_unit():
    p = 1 / (1 + np.exp(-LOGITS))
    onehot = np.eye(4)[LABELS]
    expected = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(binary_cross_entropy(LOGITS, LABELS), expected, rtol=1e-5)
    single = LOGITS[:, :1]
    y = (LABELS % 2).astype(np.float32)
    p1 = 1 / (1 + np.exp(-single[:, 0]))
    np.testing.assert_allclose(binary_cross_entropy(single, (LABELS % 2)),
                               -(y * np.log(p1) + (1 - y) * np.log(1 - p1)), rtol=1e-5)


def test_mse_against_onehot():
    expected = ((LOGITS - np.eye(4)[LABELS]) ** 2).mean(-1)
    np.testing.assert_allclose(mean_squared_error(LOGITS, LABELS), expected, rtol=1e-6)


def test_hinge_weston_watkins_and_perceptron_margin():
    expected = np.zeros(6)
    for i in range(6):
        for j in range(4):
            if j != LABELS[i]:
                expected[i] += max(0.0, LOGITS[i, j] - LOGITS[i, LABELS[i]] + 1.0)
    np.testing.assert_allclose(multiclass_hinge(LOGITS, LABELS), expected, rtol=1e-5)
    # margin 0: zero loss exactly when the true class wins (perceptron criterion)
    perceptron = np.asarray(multiclass_hinge(LOGITS, LABELS, margin=0.0))
    correct = LOGITS.argmax(-1) == LABELS
    assert np.all(perceptron[correct] == 0) and np.all(perceptron[~correct] > 0)


def test_losses_are_differentiable_and_jittable():
    for name in ("cross_entropy", "bce", "mse", "hinge"):
        fn = get_loss(name)
        g = jax.jit(jax.grad(lambda z: fn(z, jnp.asarray(LABELS)).mean()))(jnp.asarray(LOGITS))
        assert g.shape == LOGITS.shape and np.all(np.isfinite(g))


def test_topk():
    logits = np.array([[3.0, 2.0, 1.0, 0.0]] * 4, np.float32)
    labels = np.array([0, 1, 2, 3])
    np.testing.assert_array_equal(topk_correct(logits, labels, 1), [1, 0, 0, 0])
    np.testing.assert_array_equal(topk_correct(logits, labels, 3), [1, 1, 1, 0])


def test_bad_loss_names_and_options():
    with pytest.raises(ConfigError, match="cross_entropy"):
        get_loss("crossentropy")
    with pytest.raises(ConfigError, match="margin"):
        get_loss("mse", margin=1.0)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        get_loss("cross_entropy", label_smoothing=1.5)
