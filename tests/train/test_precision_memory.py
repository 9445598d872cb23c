"""Mixed precision (bfloat16 compute, float16 + dynamic loss scaling), remat, gradient accumulation,
device-resident data: each is a TrainConfig option of the one trainer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models, optim
from jaxdl.errors import ConfigError
from jaxdl.train import TrainConfig, build_experiment, create_train_state, fit, get_loss, train_step
from jaxdl.train.io import read_jsonl
from jaxdl.train.loss_scale import DynamicLossScale

LOSS = get_loss("cross_entropy")
BASE = dict(model="mlp", dataset="digits", epochs=1, batch_size=32, train_limit=128, test_limit=64,
            steps_per_epoch=3, eval_batch_size=64, model_options={"hidden_sizes": (16,), "batch_norm": True})


def batch_of(n, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(n, *shape)).astype(np.float32), "label": rng.integers(0, 10, n).astype(np.int32)}


@pytest.mark.parametrize("precision, dtype", [("bfloat16", jnp.bfloat16), ("float16", jnp.float16)])
def test_half_precision_compute_keeps_float32_state(precision, dtype):
    exp = build_experiment(TrainConfig(**BASE, precision=precision))
    assert exp.model.dtype == dtype
    state = exp.init_state()
    assert (state.loss_scale is not None) == (precision == "float16")
    x = jnp.zeros((2, *exp.input_shape), jnp.float32)
    assert exp.model.apply(state.variables, x).dtype == dtype
    batch = {"image": exp.train_set.images[:32], "label": exp.train_set.labels[:32]}
    new, metrics = exp.train_step(state, batch)
    for leaf in jax.tree_util.tree_leaves((new.params, new.opt_state, new.batch_stats)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    assert np.isfinite(float(metrics["loss"]))
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params, exp.init_state().params)
    assert max(jax.tree_util.tree_leaves(moved)) > 0


def test_dynamic_loss_scale_skips_overflow_and_grows():
    scale = DynamicLossScale.create(initial=8.0, period=2)
    assert float(scale.adjust(jnp.asarray(False)).scale) == 4.0
    grown = scale.adjust(jnp.asarray(True)).adjust(jnp.asarray(True))
    assert float(grown.scale) == 16.0 and int(grown.good_steps) == 0
    model = models.create("mlp", num_classes=10, hidden_sizes=(16,), dtype=jnp.float16)
    tx = optim.optimizer("sgd", 0.1)
    state = create_train_state(model, tx, input_shape=(8, 8, 1)).replace(
        loss_scale=DynamicLossScale.create(initial=3e38))  # scaled loss overflows float32: inf gradients
    step = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    new, metrics = step(state, batch_of(8))
    np.testing.assert_array_equal(new.params["head"]["kernel"], state.params["head"]["kernel"])  # skipped
    assert float(new.loss_scale.scale) == pytest.approx(1.5e38) and int(new.step) == 1
    ok = state.replace(loss_scale=DynamicLossScale.create())
    new, _ = step(ok, batch_of(8))
    ref, _ = step(state.replace(loss_scale=None), batch_of(8))  # unscaled float16 step
    np.testing.assert_allclose(new.params["head"]["kernel"], ref.params["head"]["kernel"], atol=2e-3)
    assert not np.array_equal(new.params["head"]["kernel"], state.params["head"]["kernel"])


@pytest.mark.parametrize("name, kw, size", [
    ("resnet20", dict(stage_sizes=(1, 1, 1), width=4), 8),
    # two rows of Table 2 shrunk: an expanding stride-2 block, then one with the residual connection
    ("mobilenet_v2", dict(width_multiplier=0.25, settings=((1, 8, 1, 1), (6, 8, 2, 2)), last_channels=16,
                          dropout_rate=0.0), 16),
    ("densenet_bc_100_k12", dict(growth_rate=4, block_config=(2, 2, 2)), 8),  # memory_efficient
])
def test_remat_gives_the_same_gradients(name, kw, size):
    field = models.remat_field(name)
    tx = optim.optimizer("sgd", 0.1)
    step = functools.partial(train_step, loss_fn=LOSS)
    batch = batch_of(4, (size, size, 3))
    outs = []
    for remat in (False, True):
        model = models.create(name, num_classes=10, **kw, **{field: remat})
        state = create_train_state(model, tx, input_shape=(size, size, 3))
        outs.append(jax.jit(step)(state, batch)[0].params)
    assert jax.tree_util.tree_structure(outs[0]) == jax.tree_util.tree_structure(outs[1])  # same names
    for a, b in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1])):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_remat_flag_sets_each_familys_switch():
    assert [models.remat_field(n) for n in ("resnet50", "mobilenet_v2", "densenet121", "vgg16")] == [
        "remat", "remat", "memory_efficient", None]
    small = {**BASE, "model_options": {}}
    assert build_experiment(TrainConfig(**{**small, "model": "resnet20"}, remat=True)).model.remat
    assert build_experiment(TrainConfig(**{**small, "model": "densenet_bc_100_k12"}, remat=True)).model.memory_efficient
    with pytest.raises(ConfigError, match="remat"):
        build_experiment(TrainConfig(**BASE, remat=True))  # the MLP has no blocks to rematerialise


def test_gradient_accumulation_equals_the_big_batch():
    model = models.create("mlp", num_classes=10, hidden_sizes=(16,))  # no BatchNorm: halves = whole
    step_big = jax.jit(functools.partial(train_step, loss_fn=LOSS))
    big = create_train_state(model, optim.optimizer("sgd", 0.1), input_shape=(8, 8, 1))
    acc = create_train_state(model, optim.optimizer("sgd", 0.1, accumulate_steps=2), input_shape=(8, 8, 1))
    batch = batch_of(8)
    big, _ = step_big(big, batch)
    for half in (slice(0, 4), slice(4, 8)):
        acc, _ = step_big(acc, {k: v[half] for k, v in batch.items()})
    for a, b in zip(jax.tree_util.tree_leaves(big.params), jax.tree_util.tree_leaves(acc.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_data_on_device_sees_the_same_batches(tmp_path):
    rows = []
    for on_device in (False, True):
        fit(TrainConfig(**{**BASE, "epochs": 2}, data_on_device=on_device), tmp_path / str(on_device),
            progress=False, log=lambda s: None)
        rows.append(read_jsonl(tmp_path / str(on_device) / "metrics.jsonl"))
    for a, b in zip(*rows):
        for key in ("train_loss", "train_accuracy", "test_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_data_on_device_with_pmap_is_refused_before_the_run_folder_is_written(tmp_path):
    """The refusal comes from build_experiment, so a failed start leaves no folder (no --overwrite needed)."""
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="--data-on-device works with --parallel none or jit"):
        fit(TrainConfig(**BASE, data_on_device=True, parallel="pmap"), out, progress=False, log=lambda s: None)
    assert not out.exists()
