"""jaxdl BatchNorm equals flax's on one device, and ignores masked (padding) examples."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.nn import batch_norm
from jaxdl.nn.batch_norm import EXAMPLE_MASK_COLLECTION, BatchNorm, example_mask_tree


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_equals_flax_batchnorm(dtype):
    x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, size=(6, 4, 4, 5)), dtype)
    ours, theirs = BatchNorm(momentum=0.9, dtype=dtype), nn.BatchNorm(momentum=0.9, dtype=dtype)
    variables = theirs.init(jax.random.PRNGKey(0), x, use_running_average=False)
    assert jax.tree_util.tree_structure(ours.init(jax.random.PRNGKey(0), x, use_running_average=False)) == \
        jax.tree_util.tree_structure(variables)
    variables = {"params": {"scale": jnp.linspace(0.5, 2, 5), "bias": jnp.linspace(-1, 1, 5)},
                 "batch_stats": variables["batch_stats"]}
    y1, u1 = ours.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    y2, u2 = theirs.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    assert y1.dtype == y2.dtype == dtype
    np.testing.assert_allclose(np.asarray(y1, np.float32), np.asarray(y2, np.float32), atol=1e-5 if dtype == jnp.float32 else 2e-2)
    for k in ("mean", "var"):
        np.testing.assert_allclose(u1["batch_stats"][k], u2["batch_stats"][k], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ours.apply(variables, x, use_running_average=True), np.float32),
                               np.asarray(theirs.apply(variables, x, use_running_average=True), np.float32), atol=1e-5)


def test_mask_ignores_padding_through_the_collection():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return batch_norm(True)(name="bn")(nn.Dense(3)(x))

    x = jnp.asarray(np.random.default_rng(1).normal(size=(7, 4)), jnp.float32)
    net = Net()
    variables = net.init(jax.random.PRNGKey(0), x)
    mask = jnp.asarray([1, 1, 1, 1, 1, 0, 0], jnp.float32)
    padded = x.at[5:].set(100.0)  # garbage in the padding must not matter
    masks = {EXAMPLE_MASK_COLLECTION: example_mask_tree(variables["batch_stats"], mask)}
    y, upd = net.apply({**variables, **masks}, padded, mutable=["batch_stats"])
    y_ref, upd_ref = net.apply(variables, x[:5], mutable=["batch_stats"])
    np.testing.assert_allclose(y[:5], y_ref, atol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["bn"]["var"], upd_ref["batch_stats"]["bn"]["var"], rtol=1e-5)
