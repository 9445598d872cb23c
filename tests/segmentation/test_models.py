"""Segmentation models: registry entries, paper-size parameter counts (shape-only), geometry,
and one compiled training step of every registered model at its smoke size."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models, optim
from jaxdl.errors import ConfigError
from jaxdl.models import count_params
from jaxdl.segmentation import convolutionalize_vgg_params, pixel_cross_entropy, segmentation_sums
from jaxdl.train import create_train_state, train_step

NAMES = models.available("segmentation")


def _keys():
    return {"params": jax.random.key(0), "dropout": jax.random.key(0)}


def _abstract(model, shape, batch=1):
    x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init_with_output(_keys(), x), x)


def test_registered_family():
    assert NAMES == ["deconvnet", "fcn16s", "fcn32s", "fcn8s", "segnet"]
    for name in NAMES:
        entry = models.info(name)
        assert entry.family == "segmentation" and entry.paper and entry.smoke_input_shape == (64, 64, 3)


# Counts of the full-size paper configurations (computed here; FCN-VGG16 is "134M" in Table 1 of
# Long et al. 2015, SegNet's encoder "14.7M" in sec. 3 of Badrinarayanan et al. 2017).
FULL_COUNTS = {"fcn32s": 134_346_581, "fcn16s": 134_364_410, "fcn8s": 134_376_863, "segnet": 29_449_355,
               "deconvnet": 251_805_653}


@pytest.mark.parametrize("name", NAMES)
def test_full_size_output_and_parameter_count(name):
    entry = models.info(name)
    logits, variables = _abstract(models.create(name), entry.input_shape)
    assert logits.shape == (1, *entry.input_shape[:2], entry.num_classes)
    assert count_params(variables) == FULL_COUNTS[name]
    if entry.num_params is not None:  # FCN: within 1% of the paper's 134M
        assert abs(count_params(variables) - entry.num_params) <= 0.01 * entry.num_params
    if name == "segnet":
        assert count_params({"params": variables["params"]["encoder"]}) == 14_723_136  # 14.7M + BN scale/offset


def test_fcn_skip_layers_and_odd_sizes():
    tiny = dict(width=0.0625, fc_width=8, num_classes=3)
    names = {n: set(_abstract(models.create(n, **tiny), (64, 64, 3))[1]["params"]) for n in ("fcn32s", "fcn16s", "fcn8s")}
    assert names["fcn32s"] == {"backbone", "fc6", "fc7", "score_fr"}
    assert names["fcn16s"] == names["fcn32s"] | {"score_pool4", "upscore2"}
    assert names["fcn8s"] == names["fcn16s"] | {"score_pool3", "upscore_pool4"}
    # Any size >= 32 works: padded to a multiple of 32 inside, cropped back.
    out, _ = _abstract(models.create("fcn8s", **tiny), (50, 70, 3))
    assert out.shape == (1, 50, 70, 3)
    out, variables = _abstract(models.create("fcn8s", learn_final_upsample=True, **tiny), (64, 64, 3))
    assert "upscore8" in variables["params"] and out.shape == (1, 64, 64, 3)
    out, _ = _abstract(models.create("segnet", width=0.0625, num_classes=3), (72, 88, 3))
    assert out.shape == (1, 72, 88, 3)


def test_fcn_backbone_is_the_zoo_vgg16():
    tiny = dict(width=0.0625, fc_width=8, num_classes=3)
    _, fcn = _abstract(models.create("fcn8s", **tiny), (64, 64, 3))
    backbone = fcn["params"]["backbone"]
    assert sorted(backbone) == sorted(f"block{b}_conv{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1)
                                      for i in range(1, n + 1))
    _, full = _abstract(models.create("fcn8s"), (224, 224, 3))
    _, vgg = _abstract(models.create("vgg16", num_classes=0), (224, 224, 3))
    assert count_params({"params": full["params"]["backbone"]}) == count_params(
        {"params": {k: v for k, v in vgg["params"].items() if k.startswith("block")}})


def test_convolutionalized_fc6_equals_the_dense_layer():
    # FCN sec. 3.1: VGG's fc6 applied to a 7x7 pool5 map is a 7x7 convolution.
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(7 * 7 * 8, 5)).astype(np.float32)
    params = {"fc6": {"kernel": kernel, "bias": np.zeros(5, np.float32)},
              "fc7": {"kernel": rng.normal(size=(5, 5)).astype(np.float32), "bias": np.zeros(5, np.float32)}}
    conv = convolutionalize_vgg_params(params)
    x = rng.normal(size=(2, 7, 7, 8)).astype(np.float32)
    dense = x.reshape(2, -1) @ kernel
    y = jax.lax.conv_general_dilated(x, conv["fc6"]["kernel"], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(np.asarray(y)[:, 0, 0], dense, rtol=1e-4, atol=1e-4)
    assert conv["fc7"]["kernel"].shape == (1, 1, 5, 5)


def test_bad_configurations():
    with pytest.raises(ConfigError, match="stride"):
        _abstract(models.create("fcn8s", stride=4, width=0.0625, fc_width=8), (64, 64, 3))
    with pytest.raises(ConfigError, match="fc_kernel"):
        _abstract(models.create("deconvnet", width=0.0625, fc_width=8), (64, 64, 3))
    with pytest.raises(ConfigError, match="NHWC"):
        models.create("segnet", width=0.0625).init(_keys(), jnp.zeros((64, 64, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_training_step(name):
    """One compiled train step (forward, pixel loss, gradient, Adam) at the smoke size: finite, params move."""
    entry = models.info(name)
    model = models.create(name, num_classes=4, **dict(entry.smoke_overrides))
    state = create_train_state(model, optim.optimizer("adam", 1e-2), input_shape=entry.smoke_input_shape)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(2, *entry.smoke_input_shape)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, 4, size=(2, *entry.smoke_input_shape[:2])), jnp.int32)}
    step = jax.jit(functools.partial(train_step, loss_fn=pixel_cross_entropy, metrics_fn=segmentation_sums),
                   donate_argnums=0)
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    assert int(np.asarray(metrics["confusion"]).sum()) == 2 * 64 * 64
    if name.startswith("fcn"):
        # Zero-initialised score layers (FCN sec. 4.1): the first logits are all 0, the loss log(4).
        assert float(metrics["loss"]) == pytest.approx(math.log(4), rel=1e-5)
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params, before)
    assert max(jax.tree_util.tree_leaves(moved)) > 0
