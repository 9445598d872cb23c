"""Optimizers against the textbook update rules (numpy, state carried by hand), plus weight decay,
clipping, accumulation, convergence and current_learning_rate."""

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from jaxdl.errors import ConfigError
from jaxdl.optim import available_optimizers, current_learning_rate, optimizer, schedule

NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
LR, MU, RHO, B1, B2, WD = 0.05, 0.9, 0.9, 0.9, 0.999, 0.1


def gradient_sequence(n_steps=5, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=dim), rng.normal(size=(n_steps, dim))


def textbook(name, w, grads):
    """Parameters after each update, by the textbook rules in float64."""
    w = w.copy()
    v = np.zeros_like(w)  # velocity / squared-gradient accumulator / first moment
    s = np.zeros_like(w)  # second moment (Adam)
    out = []
    for t, g in enumerate(grads, start=1):
        if name == "sgd":  # Robbins & Monro
            w = w - LR * g
        elif name == "momentum":  # Polyak heavy ball; Goodfellow et al., Alg. 8.2
            v = MU * v - LR * g
            w = w + v
        elif name == "nesterov":  # Sutskever et al. 2013 / Bengio et al. 2013, eq. 7 (shifted form)
            v = MU * v - LR * g
            w = w + MU * v - LR * g
        elif name == "adagrad":  # Duchi et al. 2011, G_0 = 0
            v = v + g * g
            w = w - LR * g / (np.sqrt(v) + 1e-10)
        elif name == "rmsprop":  # Hinton, Lecture 6e; Goodfellow et al., Alg. 8.5 (eps inside the root)
            v = RHO * v + (1 - RHO) * g * g
            w = w - LR * g / np.sqrt(v + 1e-8)
        elif name in ("adam", "adamw"):  # Kingma & Ba 2015, Alg. 1; AdamW: Loshchilov & Hutter 2019, Alg. 2
            v = B1 * v + (1 - B1) * g
            s = B2 * s + (1 - B2) * g * g
            m_hat, s_hat = v / (1 - B1 ** t), s / (1 - B2 ** t)
            decay = WD * w if name == "adamw" else 0.0
            w = w - LR * (m_hat / (np.sqrt(s_hat) + 1e-8) + decay)
        out.append(w.copy())
    return out


class TextbookRulesTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters((n, n) for n in NAMES)
    def test_first_updates_match_textbook(self, name):
        w0, grads = gradient_sequence()
        kw = {"weight_decay": WD, "decay_mask": None} if name == "adamw" else {}
        tx = optimizer(name, LR, momentum=MU, decay=RHO, b1=B1, b2=B2, **kw)
        update = self.variant(tx.update)
        params = jnp.asarray(w0, jnp.float32)
        state = tx.init(params)
        for g, expected in zip(grads, textbook(name, w0, grads)):
            updates, state = update(jnp.asarray(g, jnp.float32), state, params)
            params = optax.apply_updates(params, updates)
            np.testing.assert_allclose(params, expected, rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_sgd_with_schedule_uses_schedule_at_update_count(self):
        # The first update uses lr(0), the t-th lr(t - 1).
        w0, grads = gradient_sequence()
        lr = schedule("exponential", learning_rate=0.3, k=0.5)
        tx = optimizer("sgd", lr)
        update = self.variant(tx.update)
        params, state = jnp.asarray(w0, jnp.float32), tx.init(jnp.asarray(w0, jnp.float32))
        expected = w0.copy()
        for t, g in enumerate(grads):
            updates, state = update(jnp.asarray(g, jnp.float32), state, params)
            params = optax.apply_updates(params, updates)
            expected = expected - 0.3 * np.exp(-0.5 * t) * g
            np.testing.assert_allclose(params, expected, rtol=1e-5, atol=1e-6)


class Tiny(nn.Module):
    """Conv, BatchNorm, Dense and Embed: every kind of leaf the 'kernels' mask must sort."""

    @nn.compact
    def __call__(self, x, tokens):
        x = nn.Conv(2, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.Dense(3)(x.mean(axis=(1, 2)))
        return x + nn.Embed(5, 3)(tokens).sum(1)


@pytest.fixture(scope="module")
def flax_params():
    variables = Tiny().init(jax.random.key(0), jnp.ones((1, 4, 4, 1)), jnp.zeros((1, 2), jnp.int32))
    params = variables["params"]
    # Non-zero biases / scales so that "not decayed" is visible.
    return jax.tree.map(lambda p: p + 0.5, params)


def leaf_names(tree):
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in paths}


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov"])
def test_coupled_weight_decay_only_on_kernels(flax_params, name):
    # With zero gradients the first update is exactly -lr * wd * w on kernels and 0 elsewhere
    # (times 1 + mu for Nesterov, whose first step also takes the look-ahead mu * v).
    tx = optimizer(name, 0.1, weight_decay=0.01, momentum=0.9)
    scale = 1.9 if name == "nesterov" else 1.0
    zeros = jax.tree.map(jnp.zeros_like, flax_params)
    updates, _ = tx.update(zeros, tx.init(flax_params), flax_params)
    names = leaf_names(updates)
    assert {n.split("/")[-1] for n in names} == {"kernel", "bias", "scale", "embedding"}
    for n, u in names.items():
        p = leaf_names(flax_params)[n]
        if n.endswith(("kernel", "embedding")):
            np.testing.assert_allclose(u, -0.1 * 0.01 * scale * p, rtol=1e-6)
        else:
            np.testing.assert_array_equal(u, 0.0)


def test_adam_decay_is_coupled_and_adamw_decoupled(flax_params):
    zeros = jax.tree.map(jnp.zeros_like, flax_params)
    kernel = flax_params["Dense_0"]["kernel"]
    lr, wd = 0.1, 0.01
    # adamw: Adam direction of a zero gradient is 0, so the update is -lr * wd * w (decoupled).
    tx = optimizer("adamw", lr, weight_decay=wd)
    u, _ = tx.update(zeros, tx.init(flax_params), flax_params)
    np.testing.assert_allclose(u["Dense_0"]["kernel"], -lr * wd * kernel, rtol=1e-6)
    np.testing.assert_array_equal(u["Dense_0"]["bias"], 0.0)
    # adam: L2 enters the gradient (g = wd * w), which Adam normalises to ~sign(w) on step 1.
    tx = optimizer("adam", lr, weight_decay=wd)
    u, _ = tx.update(zeros, tx.init(flax_params), flax_params)
    g = wd * np.asarray(kernel)
    np.testing.assert_allclose(u["Dense_0"]["kernel"], -lr * g / (np.abs(g) + 1e-8), rtol=1e-5)
    np.testing.assert_array_equal(u["BatchNorm_0"]["scale"], 0.0)


def test_decay_mask_all_and_callable(flax_params):
    zeros = jax.tree.map(jnp.zeros_like, flax_params)
    for mask in (None, "all"):
        tx = optimizer("sgd", 1.0, weight_decay=0.5, decay_mask=mask)
        u, _ = tx.update(zeros, tx.init(flax_params), flax_params)
        chex.assert_trees_all_close(u, jax.tree.map(lambda p: -0.5 * p, flax_params), rtol=1e-6)
    only_bn = lambda params: {k: jax.tree.map(lambda _: k.startswith("BatchNorm"), v)  # noqa: E731
                              for k, v in params.items()}
    tx = optimizer("sgd", 1.0, weight_decay=0.5, decay_mask=only_bn)
    u, _ = tx.update(zeros, tx.init(flax_params), flax_params)
    np.testing.assert_allclose(u["BatchNorm_0"]["scale"], -0.5 * flax_params["BatchNorm_0"]["scale"])
    np.testing.assert_array_equal(u["Dense_0"]["kernel"], 0.0)


def test_frozen_dict_params_are_masked_too(flax_params):
    frozen = flax.core.freeze(flax_params)
    tx = optimizer("sgd", 1.0, weight_decay=0.5)
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, frozen), tx.init(frozen), frozen)
    np.testing.assert_array_equal(u["Dense_0"]["bias"], 0.0)
    np.testing.assert_allclose(u["Dense_0"]["kernel"], -0.5 * frozen["Dense_0"]["kernel"])


def test_clip_by_global_norm_caps_the_norm():
    tx = optimizer("sgd", 1.0, clip_norm=2.0)
    big = {"a": jnp.full((4,), 3.0), "b": jnp.full((2, 2), -4.0)}  # global norm 10
    u, _ = tx.update(big, tx.init(big))
    assert float(optax.tree.norm(u)) == pytest.approx(2.0, rel=1e-6)
    chex.assert_trees_all_close(u, jax.tree.map(lambda g: -0.2 * g, big), rtol=1e-6)  # direction kept
    small = jax.tree.map(lambda g: g / 20, big)  # norm 0.5: untouched
    u, _ = tx.update(small, tx.init(small))
    chex.assert_trees_all_close(u, jax.tree.map(lambda g: -g, small), rtol=1e-6)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_accumulation_equals_one_step_on_the_mean(name):
    k = 3
    w0, grads = gradient_sequence(n_steps=2 * k, seed=1)
    grads = jnp.asarray(grads, jnp.float32)
    lr = schedule("inverse_time", learning_rate=0.1, k=0.5)
    acc = optimizer(name, lr, accumulate_steps=k, weight_decay=0.1, decay_mask=None, clip_norm=1.0)
    plain = optimizer(name, lr, weight_decay=0.1, decay_mask=None, clip_norm=1.0)
    p_acc = p_plain = jnp.asarray(w0, jnp.float32)
    s_acc, s_plain = acc.init(p_acc), plain.init(p_plain)
    acc_update = jax.jit(acc.update)
    for big_step in range(2):
        for i in range(k):
            u, s_acc = acc_update(grads[big_step * k + i], s_acc, p_acc)
            if i < k - 1:
                np.testing.assert_array_equal(u, 0.0)  # only the k-th micro-step moves the weights
            p_acc = optax.apply_updates(p_acc, u)
        u, s_plain = plain.update(grads[big_step * k:(big_step + 1) * k].mean(0), s_plain, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
        np.testing.assert_allclose(p_acc, p_plain, rtol=1e-5, atol=1e-6)
        # The next update is the (big_step + 1)-th real one, whatever the micro-step count.
        assert current_learning_rate(s_acc) == pytest.approx(float(lr(big_step + 1)))


def quadratic(dim=5, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a = q @ np.diag(np.linspace(1.0, 10.0, dim)) @ q.T  # condition number 10
    b = rng.normal(size=dim)
    return jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)


def run(tx, a, b, steps):
    """Minimise f(w) = 0.5 w^T A w - b^T w from w = 0; one compiled scan."""

    @jax.jit
    def go(w):
        def body(carry, _):
            w, state = carry
            u, state = tx.update(a @ w - b, state, w)
            return (optax.apply_updates(w, u), state), None
        return jax.lax.scan(body, (w, tx.init(w)), None, length=steps)[0][0]

    return go(jnp.zeros_like(b))


# Rates from the curvature range [1, 10]; the adaptive methods get a decaying rate, as a constant
# one leaves them oscillating at a distance ~ lr from the optimum.
CONVERGENCE = {
    "sgd": 0.15, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5,
    "rmsprop": schedule("exponential", learning_rate=0.02, k=0.01),
    "adam": schedule("exponential", learning_rate=0.05, k=0.01),
    "adamw": schedule("exponential", learning_rate=0.05, k=0.01),
}


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
    a, b = quadratic()
    w_star = np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64))
    w = run(optimizer(name, CONVERGENCE[name]), a, b, steps=1500)
    assert np.linalg.norm(np.asarray(w) - w_star) < 1e-3 * np.linalg.norm(w_star)


def test_coupled_l2_moves_the_optimum_to_the_ridge_solution():
    a, b = quadratic()
    w = run(optimizer("sgd", 0.15, weight_decay=0.5, decay_mask=None), a, b, steps=1500)
    ridge = np.linalg.solve(np.asarray(a, np.float64) + 0.5 * np.eye(5), np.asarray(b, np.float64))
    np.testing.assert_allclose(w, ridge, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("accumulate_steps", [1, 2])
def test_current_learning_rate_follows_the_schedule(accumulate_steps):
    lr = schedule("cosine", learning_rate=0.2, total_steps=20, warmup_steps=4, min_lr=0.01)
    tx = optimizer("nesterov", lr, weight_decay=1e-3, clip_norm=5.0, accumulate_steps=accumulate_steps)
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    assert current_learning_rate(state) == pytest.approx(0.0)  # warmup starts at 0
    for n in range(1, 25):
        for _ in range(accumulate_steps):
            _, state = update(params, state, params)
        assert current_learning_rate(state) == pytest.approx(float(lr(n)), rel=1e-6, abs=1e-9)
    assert current_learning_rate(state) == pytest.approx(0.01)  # past total_steps: min_lr
    traced = jax.jit(current_learning_rate)(state)  # also usable inside a compiled step
    assert float(traced) == pytest.approx(0.01)


def test_current_learning_rate_of_a_constant_rate():
    tx = optimizer("adam", 3e-4)
    assert current_learning_rate(tx.init(jnp.zeros(3))) == pytest.approx(3e-4)


def test_current_learning_rate_rejects_foreign_state():
    with pytest.raises(ConfigError, match="jaxdl.optim.optimizer"):
        current_learning_rate(optax.adam(1e-3).init(jnp.zeros(3)))


def test_available_optimizers():
    assert available_optimizers() == sorted(NAMES)


@pytest.mark.parametrize("args,kw,needle", [
    (("adamm", 0.1), {}, "'adam'"),
    (("sgd", -0.1), {}, "learning_rate"),
    (("sgd", "0.1"), {}, "learning_rate"),
    (("sgd", 0.1), {"accumulate_steps": 0}, "accumulate_steps"),
    (("sgd", 0.1), {"accumulate_steps": 1.5}, "accumulate_steps"),
    (("momentum", 0.1), {"momentum": 1.2}, "momentum"),
    (("adam", 0.1), {"b2": 1.0}, "b2"),
    (("sgd", 0.1), {"weight_decay": -1e-4}, "weight_decay"),
    (("sgd", 0.1), {"clip_norm": 0.0}, "clip_norm"),
    (("sgd", 0.1), {"decay_mask": "kernel"}, "'kernels'"),
    (("rmsprop", 0.1), {"eps": -1.0}, "eps"),
])
def test_bad_values_raise_config_error(args, kw, needle):
    with pytest.raises(ConfigError) as info:
        optimizer(*args, **kw)
    assert needle in str(info.value), str(info.value)


def test_unknown_name_lists_all_optimizers():
    with pytest.raises(ConfigError) as info:
        optimizer("lbfgs", 0.1)
    for name in NAMES:
        assert name in str(info.value)
