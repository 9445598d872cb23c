"""Fine-tuning: frozen leaves, head reset, per-group learning rates, frozen BatchNorm, the trainer path."""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import models, optim
from jaxdl.errors import ConfigError, WeightImportError
from jaxdl.train import TrainConfig, fit
from jaxdl.train.checkpoint import load_run
from jaxdl.train.losses import get_loss
from jaxdl.train.state import create_train_state
from jaxdl.train.steps import train_step
from jaxdl.transfer.finetune import finetune_optimizer, freeze_labels, merge_pretrained

LENET = models.create("lenet5", num_classes=10)


@functools.lru_cache(maxsize=1)
def lenet_params():
    return jax.jit(LENET.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))["params"]


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return {"image": jnp.asarray(rng.standard_normal((8, 32, 32, 1)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}


def run_steps(tx, batch, n=3):
    state = create_train_state(LENET, tx, input_shape=(32, 32, 1))
    start = state.params
    step = jax.jit(functools.partial(train_step, loss_fn=get_loss("cross_entropy")))
    for _ in range(n):
        state, _ = step(state, batch)
    return start, state


def test_frozen_leaves_do_not_move_and_have_no_optimizer_state(batch):
    tx = finetune_optimizer(optim.optimizer("adam", 1e-2), lenet_params(), freeze=("c1/", "c3"))
    start, state = run_steps(tx, batch)
    for name in ("c1", "c3"):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(state.params[name][leaf], start[name][leaf])
    assert not np.allclose(state.params["c5"]["kernel"], start["c5"]["kernel"])
    assert not np.allclose(state.params["head"]["kernel"], start["head"]["kernel"])
    # Adam's moments exist only for trainable leaves: count the optimizer-state floats.
    trainable = sum(v.size for k, v in flax.traverse_util.flatten_dict(start, sep="/").items()
                    if not k.startswith(("c1/", "c3/")))
    moment_sizes = sum(x.size for x in jax.tree_util.tree_leaves(state.opt_state) if x.ndim > 0)
    assert moment_sizes == 2 * trainable


def test_backbone_keyword_freezes_all_but_the_head():
    labels = flax.traverse_util.flatten_dict(freeze_labels(lenet_params(), ("backbone",)), sep="/")
    assert {k for k, v in labels.items() if v == "trainable"} == {"head/kernel", "head/bias"}


def test_bad_freeze_pattern():
    with pytest.raises(ConfigError, match="match no parameter"):
        freeze_labels(lenet_params(), ("stage1",))
    with pytest.raises(ConfigError, match="not a regular expression"):
        freeze_labels(lenet_params(), ("c1(",))


def test_backbone_learning_rate_multiplier(batch):
    """SGD: the backbone moves by exactly 0.1x the step it takes without the multiplier; the head by 1x."""
    plain_start, plain = run_steps(optim.optimizer("sgd", 0.1), batch, n=1)
    scaled_start, scaled = run_steps(finetune_optimizer(optim.optimizer("sgd", 0.1), lenet_params(),
                                                        backbone_lr_multiplier=0.1), batch, n=1)
    delta = lambda a, b: np.asarray(a) - np.asarray(b)  # noqa: E731
    np.testing.assert_allclose(delta(scaled.params["c5"]["kernel"], scaled_start["c5"]["kernel"]),
                               0.1 * delta(plain.params["c5"]["kernel"], plain_start["c5"]["kernel"]),
                               rtol=1e-4, atol=2e-8)
    np.testing.assert_allclose(delta(scaled.params["head"]["kernel"], scaled_start["head"]["kernel"]),
                               delta(plain.params["head"]["kernel"], plain_start["head"]["kernel"]),
                               rtol=1e-4, atol=2e-8)
    assert np.abs(delta(plain.params["c5"]["kernel"], plain_start["c5"]["kernel"])).max() > 0


def test_head_reset_takes_the_new_shape():
    old = {"params": lenet_params()}
    new_model = models.create("lenet5", num_classes=5)
    fresh = jax.jit(new_model.init)(jax.random.PRNGKey(3), jnp.zeros((1, 32, 32, 1)))
    merged = merge_pretrained(fresh, old)
    assert merged["params"]["head"]["kernel"].shape == (84, 5)
    np.testing.assert_array_equal(merged["params"]["head"]["kernel"], fresh["params"]["head"]["kernel"])
    np.testing.assert_array_equal(merged["params"]["c3"]["kernel"], old["params"]["c3"]["kernel"])
    with pytest.raises(WeightImportError, match="mis-shaped.*head/kernel"):
        merge_pretrained(fresh, old, reset_head=False)


def test_frozen_bn_keeps_statistics_while_dropout_trains():
    model = models.create("resnet18", num_classes=4, stage_sizes=(1, 1, 1, 1), width=8, head_dropout_rate=0.5,
                          frozen_bn=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)

    @jax.jit
    def forward(key):
        return model.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

    out1, updates = forward(jax.random.PRNGKey(2))
    out2, _ = forward(jax.random.PRNGKey(3))
    for a, b in zip(jax.tree_util.tree_leaves(updates["batch_stats"]),
                    jax.tree_util.tree_leaves(variables["batch_stats"])):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(out1, out2)  # dropout is on


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pre"
    config = TrainConfig(model="lenet5", dataset="digits", epochs=1, batch_size=32, steps_per_epoch=2,
                         train_limit=256, test_limit=64, classes=(0, 1, 2, 3, 4))
    fit(config, out, progress=False, log=lambda s: None)
    return out


def test_fit_finetunes_from_a_run_folder(pretrained_run, tmp_path):
    config = TrainConfig(model="lenet5", dataset="digits", epochs=1, batch_size=10, steps_per_epoch=2,
                         test_limit=64, classes=(5, 6, 7, 8, 9), train_per_class=4, init=str(pretrained_run),
                         freeze=("c1", "c3"), backbone_lr_multiplier=0.1)
    summary = fit(config, tmp_path / "ft", progress=False, log=lambda s: None)
    assert summary["train_examples"] == 20 and summary["test_examples"] == 64
    _, before, _ = load_run(pretrained_run)
    saved, after, _ = load_run(tmp_path / "ft")
    assert saved.freeze == ("c1", "c3") and saved.init == str(pretrained_run)
    for name in ("c1", "c3"):
        np.testing.assert_array_equal(after["params"][name]["kernel"], before["params"][name]["kernel"])
    assert not np.allclose(after["params"]["c5"]["kernel"], before["params"]["c5"]["kernel"])


def test_cli_finetune_bad_init(tmp_path, capsys):
    from jaxdl.cli import main

    code = main(["finetune", "--model", "lenet5", "--init", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
