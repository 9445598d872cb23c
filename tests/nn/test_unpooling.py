"""Max pooling with indices and max unpooling: numpy loops, gradients, torch parity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import ConfigError
from jaxdl.nn import max_pool_with_indices, max_unpool

GEOMETRIES = [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (3, 3, 0)]


def numpy_pool(x, k, s, p):
    n, h, w, c = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    vals = np.zeros((n, oh, ow, c), x.dtype)
    idx = np.zeros((n, oh, ow, c), np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, where = -np.inf, -1
                    for a in range(k):
                        for d in range(k):
                            r, q = i * s - p + a, j * s - p + d
                            if 0 <= r < h and 0 <= q < w and x[b, r, q, ch] > best:
                                best, where = x[b, r, q, ch], r * w + q
                    vals[b, i, j, ch], idx[b, i, j, ch] = best, where
    return vals, idx


def numpy_unpool(vals, idx, h, w):
    n, _, _, c = vals.shape
    out = np.zeros((n, h * w, c), vals.dtype)
    for b in range(n):
        for ch in range(c):
            out[b, idx[b, ..., ch].ravel(), ch] = vals[b, ..., ch].ravel()
    return out.reshape(n, h, w, c)


@pytest.mark.parametrize("k, s, p", GEOMETRIES)
def test_against_numpy(k, s, p):
    x = np.random.default_rng(k * 10 + s + p).normal(size=(2, 7, 9, 3)).astype(np.float32)
    vals, idx = jax.jit(lambda x: max_pool_with_indices(x, k, s, p))(jnp.asarray(x))
    ref_vals, ref_idx = numpy_pool(x, k, s, p)
    np.testing.assert_array_equal(np.asarray(vals), ref_vals)
    np.testing.assert_array_equal(np.asarray(idx), ref_idx)
    up = jax.jit(lambda v, i: max_unpool(v, i, k, s, p, output_size=(7, 9)))(vals, idx)
    np.testing.assert_array_equal(np.asarray(up), numpy_unpool(ref_vals, ref_idx, 7, 9))


def test_eager_equals_jit():
    # Both code paths (non-overlapping fast path, overlapping scatter) outside jit too.
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 6, 6, 2)), jnp.float32)
    for k, s, p in ((2, 2, 0), (3, 2, 1)):
        vals, idx = max_pool_with_indices(x, k, s, p)
        ref_vals, ref_idx = numpy_pool(np.asarray(x), k, s, p)
        np.testing.assert_array_equal(np.asarray(idx), ref_idx)
        np.testing.assert_array_equal(np.asarray(max_unpool(vals, idx, k, s, p, output_size=(6, 6))),
                                      numpy_unpool(ref_vals, ref_idx, 6, 6))


def test_ties_pick_the_first_in_the_window():
    x = jnp.zeros((1, 2, 2, 1))
    _, idx = max_pool_with_indices(x, 2)
    assert int(idx[0, 0, 0, 0]) == 0


def test_default_output_size_and_odd_sizes():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 5, 5, 2)), jnp.float32)
    vals, idx = max_pool_with_indices(x, 2, 2)
    assert vals.shape == (1, 2, 2, 2)
    assert max_unpool(vals, idx, 2).shape == (1, 4, 4, 2)
    up = max_unpool(vals, idx, 2, output_size=(5, 5))
    assert up.shape == (1, 5, 5, 2)
    # Unpooling keeps exactly the maxima: pooling it again returns the same values.
    np.testing.assert_array_equal(np.asarray(max_pool_with_indices(up, 2)[0]), np.asarray(vals))


def test_gradients_route_through_the_maxima():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, 3, 3, 3)), jnp.float32)
    _, idx = max_pool_with_indices(x, 2)
    grad_x = jax.jit(jax.grad(lambda x: jnp.sum(max_pool_with_indices(x, 2)[0] * g)))(x)
    np.testing.assert_allclose(np.asarray(grad_x), np.asarray(max_unpool(g, idx, 2)), atol=0)
    # d/dv sum(unpool(v) * G) = G at the indexed positions.
    big = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
    grad_v = jax.jit(jax.grad(lambda v: jnp.sum(max_unpool(v, idx, 2) * big)))(g)
    expected = np.take_along_axis(np.asarray(big).reshape(2, 36, 3), np.asarray(idx).reshape(2, 9, 3), axis=1)
    np.testing.assert_allclose(np.asarray(grad_v), expected.reshape(2, 3, 3, 3))
    # Overlapping windows (scatter path) take gradients too.
    gv = jax.jit(jax.grad(lambda v: jnp.sum(max_unpool(v, idx, 3, 2, 1, output_size=(6, 6)) * big)))(g)
    assert np.isfinite(np.asarray(gv)).all()


def test_bad_input():
    with pytest.raises(ConfigError, match="NHWC"):
        max_pool_with_indices(jnp.zeros((4, 4, 1)), 2)
    with pytest.raises(ConfigError, match="half the window"):
        max_pool_with_indices(jnp.zeros((1, 4, 4, 1)), 2, 2, 2)
    with pytest.raises(ConfigError, match="does not fit"):
        max_pool_with_indices(jnp.zeros((1, 1, 1, 1)), 2)
    v, i = max_pool_with_indices(jnp.zeros((1, 4, 4, 1)), 2)
    with pytest.raises(ConfigError, match="do not match"):
        max_unpool(v, i[:, :1], 2)
    with pytest.raises(ConfigError, match="output_size"):
        max_unpool(v, i, 2, output_size=(9, 9))


@pytest.mark.parametrize("k, s, p", GEOMETRIES)
def test_torch_parity(k, s, p):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).normal(size=(2, 8, 7, 3)).astype(np.float32)
    vals, idx = max_pool_with_indices(jnp.asarray(x), k, s, p)
    tv, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), k, s, p, return_indices=True)
    np.testing.assert_array_equal(np.asarray(vals), tv.numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(idx), ti.numpy().transpose(0, 2, 3, 1))
    up = max_unpool(vals, idx, k, s, p, output_size=(8, 7))
    tu = torch.nn.functional.max_unpool2d(tv, ti, k, s, p, output_size=(8, 7))
    np.testing.assert_array_equal(np.asarray(up), tu.numpy().transpose(0, 2, 3, 1))
