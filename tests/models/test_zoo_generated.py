"""Tests generated from the registry: every model in ``jaxdl.models.available()`` is covered.

Per model (test ids are the model names; all tests of one model share an xdist group so the
cached shape-only build is reused under ``pytest -n 2 --dist loadgroup``):

* builds at its default input (shape-only) and returns ``[N, num_classes]`` logits;
* parameter count equals the published ``num_params`` (exactly, or within 1%);
* one forward + gradient really runs at ``smoke_input_shape`` with ``smoke_overrides``
  (``test_forward_and_gradient``, the only test here that compiles anything);
* ``features="all"`` returns ``pre_logits`` and ``logits``, ``num_classes=0`` the pooled features;
* a bfloat16 build keeps float32 parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import models
from jaxdl.models import count_params
from jaxdl.nn import AUX_COLLECTION

BATCH = 2
# Segmentation models (per-pixel logits [N, H, W, K]) have their own generated tests in tests/segmentation.
NAMES = [n for n in models.available() if models.info(n).family != "segmentation"]
WITH_COUNT = [n for n in NAMES if models.info(n).num_params is not None]


def _params(names):
    return [pytest.param(n, id=n, marks=pytest.mark.xdist_group(f"zoo-{n}")) for n in names]


def _smoke(name):
    entry = models.info(name)
    return entry.smoke_input_shape or entry.input_shape, dict(entry.smoke_overrides)


def _keys():
    key = jax.random.key(0)
    return {"params": key, "dropout": key}


def _abstract_build(model, shape, **call_kw):
    """(output, variables) of ``model.init_with_output`` as shapes only."""
    x = jax.ShapeDtypeStruct((BATCH, *shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init_with_output(_keys(), x, train=False, **call_kw), x)


@functools.lru_cache(maxsize=None)
def _default_build(name):
    return _abstract_build(models.create(name), models.info(name).input_shape)


@pytest.mark.parametrize("name", _params(NAMES))
def test_builds_at_default_input(name):
    entry = models.info(name)
    logits, variables = _default_build(name)
    assert logits.shape == (BATCH, entry.num_classes)
    assert "head" in variables["params"], "the final layer must be named 'head'"


@pytest.mark.parametrize("name", _params(WITH_COUNT))
def test_parameter_count_matches_reference(name):
    entry = models.info(name)
    if entry.count_overrides:
        got = count_params(name, **dict(entry.count_overrides))
    else:
        got = count_params(_default_build(name)[1])
    if entry.params_exact:
        assert got == entry.num_params, f"{name}: {got:,} params, {entry.params_reference} says {entry.num_params:,}"
    else:
        assert abs(got - entry.num_params) <= 0.01 * entry.num_params, (
            f"{name}: {got:,} params, more than 1% from {entry.num_params:,} ({entry.params_reference})")


def _aux_terms(tree):
    if isinstance(tree, Mapping) and "logits" in tree and "weight" in tree:
        yield tree
    elif isinstance(tree, Mapping):
        for value in tree.values():
            yield from _aux_terms(value)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            yield from _aux_terms(value)


@pytest.mark.parametrize("name", _params(NAMES))
def test_forward_and_gradient(name):
    entry = models.info(name)
    shape, overrides = _smoke(name)
    model = models.create(name, **overrides)
    x = jax.random.normal(jax.random.key(1), (BATCH, *shape), jnp.float32)
    labels = jnp.arange(BATCH) % entry.num_classes
    variables = jax.jit(functools.partial(model.init, train=False))(_keys(), x)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    @jax.jit
    def loss_and_grad(params):
        def loss_fn(params):
            logits, updates = model.apply({"params": params, **state}, x, train=True,
                                          rngs={"dropout": jax.random.key(2)},
                                          mutable=["batch_stats", AUX_COLLECTION])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            for aux in _aux_terms(updates.get(AUX_COLLECTION, {})):
                loss += aux["weight"] * optax.softmax_cross_entropy_with_integer_labels(aux["logits"], labels).mean()
            return loss, (logits, updates)
        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    (loss, (logits, updates)), grads = loss_and_grad(params)
    assert logits.shape == (BATCH, entry.num_classes)
    assert np.isfinite(float(loss)), f"{name}: loss {loss}"
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves), f"{name}: non-finite gradient"
    assert float(optax.tree.norm(grads)) > 0, f"{name}: all gradients are zero"
    assert float(optax.tree.norm(grads["head"])) > 0, f"{name}: no gradient reaches the head"
    if "batch_stats" in state:
        stats = jax.tree_util.tree_leaves(updates["batch_stats"])
        assert stats and all(np.isfinite(np.asarray(s)).all() for s in stats)


@pytest.mark.parametrize("name", _params(NAMES))
def test_feature_taps_and_headless(name):
    entry = models.info(name)
    shape, overrides = _smoke(name)
    feats, _ = _abstract_build(models.create(name, **overrides), shape, features="all")
    assert isinstance(feats, Mapping) and {"pre_logits", "logits"} <= set(feats)
    assert feats["logits"].shape == (BATCH, entry.num_classes)
    assert all(v.shape[0] == BATCH for v in feats.values())
    pooled, variables = _abstract_build(models.create(name, num_classes=0, **overrides), shape)
    assert pooled.shape == feats["pre_logits"].shape == (BATCH, feats["pre_logits"].shape[-1])
    assert "head" not in variables.get("params", {})


@pytest.mark.parametrize("name", _params(NAMES))
def test_bfloat16_build(name):
    shape, overrides = _smoke(name)
    logits, variables = _abstract_build(models.create(name, dtype=jnp.bfloat16, **overrides), shape)
    assert logits.dtype in (jnp.bfloat16, jnp.float32)
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables["params"])}
    assert dtypes == {jnp.dtype(jnp.float32)}, f"{name}: params are {dtypes}"
